"""`indexcalc export FILE.ic`: a model file's loss and gradients as a standalone module.

The model's loss is compiled with its parameters as `wrt`, as `indexcalc train` compiles
it, and planned for the shapes a training step sees: the declared parameters, and a
mini-batch of the data set's arrays (the file's batch_size, or every training row;
`--size n=64` chooses the batch index's size). The module imports the backend's library,
never indexcalc (see indexcalc.export). Everything that can fail is checked before the
file is written: a bad path or option, a missing library, an unwritable -o.
"""

from __future__ import annotations

import os

from ..errors import IndexCalcError
from .train import default_model
from .formula import parse_sizes

BACKENDS = ("numpy", "jax", "torch")


def _command_export(args) -> str:
    from ..export import module_source
    from ..checkpoints import check_output_path
    from ..modelfile import load
    from ..train import check_data_ranks

    args.model = args.model or default_model()
    if args.output is not None:  # never over the model file, data or a module of one's own
        check_output_path(args.output, "the module", replaceable=_is_exported_module)
    mf = load(args.model)
    model = mf.model
    sizes = parse_sizes(args.size or [])
    other = sorted(set(sizes) - {model.batch})
    if other:
        held = f"only the batch index {model.batch} has a size to choose" if model.batch else "the model has no batch index"
        raise IndexCalcError(f"--size {other[0]}: {held} (the parameters' shapes are declared in {args.model})")
    try:
        data = mf.load_data()
        check_data_ranks(model, data)
        shapes = {name: p.shape for name, p in model.parameters.items()}
        for name in model.data:
            shape = tuple(data.train[name].shape)
            if model.batch:
                rows = sizes.get(model.batch) or min(mf.batch_size or shape[0], shape[0])
                shape = (rows,) + shape[1:]
            shapes[name] = shape
        text = module_source(model.gradient, args.backend, shapes=shapes, dtype=args.dtype,
                             program=_program(mf, args.model))
    except IndexCalcError as err:
        raise mf.locate(err) from None
    if args.output is None:
        return text.rstrip("\n")
    try:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as err:
        raise IndexCalcError(f"cannot write {args.output}: {err.strerror or err}") from None
    inputs = ", ".join(f"{k} {v}" for k, v in shapes.items())
    return f"wrote {args.output}: loss_and_grads(arrays) on {args.backend}, {args.dtype}, for {inputs}"


def _is_exported_module(path: str) -> bool:
    """A module this command wrote (its docstring's first line says so), which -o may
    overwrite; anything else it refuses."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        return "exported by indexcalc" in handle.readline()


def _program(mf, path: str) -> str:
    """What the module's docstring names: the file, and the equations the plan computes
    (batched over the batch index, as training runs them)."""
    model = mf.model
    how = f", batched over {model.batch} ({model.reduce} of the loss)" if model.batch else ""
    return f"{os.path.basename(path)}{how}:\n" + "\n".join(f"    {eq}" for eq in model.program.equations)


def register(sub) -> None:
    """The `export` command's parser, on the `indexcalc` command's subparsers."""
    ex = sub.add_parser(
        "export", help="write a model file's loss and gradients as a standalone Python module",
        description="Compile a model file's loss with its parameters as wrt and write it as a Python module with "
        "one function, loss_and_grads(arrays) -> (loss, {parameter: gradient}), that imports only the backend's "
        "library (not indexcalc). The function is specialised to the shapes of a training step: the declared "
        "parameters and a mini-batch of the data set.",
    )
    ex.add_argument("model", nargs="?", help="a model file (.ic); see examples/ (default: the built-in Fizz Buzz)")
    ex.add_argument("--backend", choices=BACKENDS, default="numpy", help="the array library (default numpy)")
    ex.add_argument("-o", "--output", help="write the module to this file (default: standard output)")
    ex.add_argument("--size", nargs="*", default=[], metavar="INDEX=N",
                    help="the batch index's size, e.g. n=64 (default: the file's batch_size, or every training row)")
    ex.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                    help="the float type of every array (default float64)")
    ex.set_defaults(run=_command_export)
