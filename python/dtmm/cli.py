"""`dtmm` command line: convert, inspect, verify (and subcommands other modules add).

Adding a subcommand is one `register(name, help, add_arguments, run)` call: the
`add_arguments(parser)` function declares its options, `run(args)` does the work and
returns the exit status. Modules listed in PLUGIN_MODULES are imported if present
and register themselves the same way.

Exit status: 0 success, 1 `verify` found a difference, 2 a user error (bad file,
bad model, bad arguments): one line "dtmm: error: ..." on stderr, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass
from typing import Callable

from dtmm.errors import DtmmError

PLUGIN_MODULES = ("dtmm.prune_cli",  # registers `prune` and `demo`
                  "dtmm.sparsify")


@dataclass
class Command:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {}


def register(name: str, help: str, add_arguments, run) -> None:
    COMMANDS[name] = Command(help, add_arguments, run)


def _fraction(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {s}")
    return v


def _count(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {s!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {s}")
    return v


# -- convert -------------------------------------------------------------------------
def _convert_args(p):
    p.add_argument("input", metavar="IN.tflite")
    p.add_argument("-o", "--output", metavar="OUT.tflite", required=True)
    p.add_argument("--min-sparsity", type=_fraction, default=0.0, metavar="X",
                   help="rewrite only convs with at least this filterlet sparsity "
                        "(0..1, default 0)")
    p.add_argument("--always", action="store_true",
                   help="rewrite every eligible int8 CONV_2D, even where the dense "
                        "form is smaller")


def _convert_run(args) -> int:
    from dtmm.convert import convert_file

    report = convert_file(args.input, args.output, min_sparsity=args.min_sparsity,
                          always=args.always)
    print(report.table())
    if report.num_rewritten == 0:
        print(f"{args.output} is a byte-identical copy of {args.input}")
    else:
        print(f"wrote {args.output}")
    return 0


# -- inspect -------------------------------------------------------------------------
def _inspect_args(p):
    p.add_argument("model", metavar="FILE.tflite")
    p.add_argument("--all-ops", action="store_true",
                   help="list every operator, not only CONV_2D and DTMM_CONV_2D")


def _inspect_run(args) -> int:
    from dtmm.inspect_model import inspect_table
    from dtmm.tflite_io import read_file

    print(inspect_table(read_file(args.model), all_ops=args.all_ops, name=args.model))
    return 0


# -- verify --------------------------------------------------------------------------
def _verify_args(p):
    p.add_argument("original", metavar="ORIGINAL.tflite")
    p.add_argument("converted", metavar="CONVERTED.tflite")
    p.add_argument("--input", nargs="+", action="extend", default=[], metavar="FILE",
                   help=".npy (single-input models) or .npz (one array per input "
                        "name); an extra leading axis is a sequence of invokes")
    p.add_argument("--random", type=_count, default=4, metavar="N",
                   help="invokes on random inputs, in sequence (default 4)")
    p.add_argument("--seed", type=int, default=0, metavar="S")


def _verify_run(args) -> int:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from dtmm.verify import verify_files

    report = verify_files(args.original, args.converted, input_files=args.input,
                          random=args.random, seed=args.seed, check=False)
    print(report.summary())
    if not report.ok:
        print(f"dtmm: verify: {report.failures[0]}", file=sys.stderr)
        return 1
    return 0


register("convert", "rewrite int8 CONV_2D ops as DTMM_CONV_2D", _convert_args,
         _convert_run)
register("inspect", "per-layer table of a model, DTMM ops decoded and validated",
         _inspect_args, _inspect_run)
register("verify", "check a converted model against its original, bit for bit",
         _verify_args, _verify_run)


def _load_plugins() -> None:
    for name in PLUGIN_MODULES:
        try:
            importlib.import_module(name)  # registers itself via dtmm.cli.register
        except ModuleNotFoundError as e:
            if e.name != name:
                raise


def build_parser() -> argparse.ArgumentParser:
    from dtmm import __version__

    _load_plugins()
    parser = argparse.ArgumentParser(
        prog="dtmm", description="DTMM: filterlet-sparse int8 convolutions for "
                                 "TensorFlow Lite Micro")
    parser.add_argument("--version", action="version", version=f"dtmm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.help)
        cmd.add_arguments(p)
        p.set_defaults(_run=cmd.run)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except DtmmError as e:
        print(f"dtmm: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dtmm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
