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
import os
import sys
import tempfile
from dataclasses import dataclass
from typing import Callable

from dtmm.core.errors import DtmmError

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


def quiet_tensorflow() -> None:
    """The command line's one place that silences TensorFlow: its C++ log level,
    its start-up lines on stderr (captured while it imports, replayed if the import
    fails), absl/Python logging, and the deprecation warnings of tf.lite. Library
    calls never change these; a `dtmm` command is a process of its own."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import warnings

    warnings.filterwarnings("ignore", message=".*(Statistics|experimental_new_quantizer|"
                                              "tf.lite.Interpreter).*")
    if "tensorflow" not in sys.modules:
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as log:
            os.dup2(log.fileno(), 2)
            try:
                import tensorflow  # noqa: F401
            except BaseException:
                os.dup2(saved, 2)
                log.seek(0)
                sys.stderr.write(log.read().decode("utf-8", "replace"))
                raise
            finally:
                os.dup2(saved, 2)
                os.close(saved)
    import logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        from absl import logging as absl_logging
        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:
        pass


class console_silenced:
    """Context manager: fd 1 and 2 to /dev/null (Python and C++ writers alike), for
    the TFLite converter's pages of SavedModel and quantizer chatter. Only the
    command line uses it (dtmm prune / demo pass it to the pipeline)."""

    def __enter__(self):
        sys.stdout.flush()
        sys.stderr.flush()
        self.saved = [os.dup(1), os.dup(2)]
        self.null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(self.null, 1)
        os.dup2(self.null, 2)

    def __exit__(self, *exc):
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self.saved[0], 1)
        os.dup2(self.saved[1], 2)
        for fd in (*self.saved, self.null):
            os.close(fd)
        return False


def _number(convert, name: str, lo, hi=None):
    """An argparse type: `convert` the text, then require lo <= value (<= hi)."""
    def parse(s: str):
        try:
            v = convert(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {name}: {s!r}") from None
        if v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(
                f"must be between {lo} and {hi}, got {s}" if hi is not None
                else f"must be >= {lo}, got {s}")
        return v
    return parse


_fraction = _number(float, "a number", 0, 1)
_count = _number(int, "an integer", 0)


# -- convert -------------------------------------------------------------------------
def _convert_args(p):
    p.add_argument("input", metavar="IN.tflite")
    p.add_argument("-o", "--output", metavar="OUT.tflite", required=True)
    p.add_argument("--min-sparsity", type=_fraction, default=0.0, metavar="X",
                   help="rewrite only convs with at least this filterlet sparsity "
                        "(0..1, default 0)")
    p.add_argument("--always", action="store_true",
                   help="rewrite every eligible int8 CONV_2D, even where the dense "
                        "form is smaller or faster")
    import inspect

    from dtmm.convert import PREFER, convert_model
    from dtmm.core import latency
    from dtmm.core.latency import conv_targets

    d = {k: v.default for k, v in inspect.signature(convert_model).parameters.items()}
    p.add_argument("--target", choices=conv_targets() + ["any"], default=d["target"],
                   help="rewrite only where the modeled DTMM op is faster than "
                        "dense CMSIS-NN on this target (any: on every target; "
                        f"default {d['target']})")
    p.add_argument("--prefer", choices=PREFER, default=d["prefer"],
                   help="speed: rewrite where smaller and modeled at least "
                        f"{latency.margin_text()}% faster; size: where smaller "
                        f"(default {d['prefer']})")
    p.add_argument("--format-version", type=int, choices=(1, 2),
                   default=d["format_version"],
                   help="DTMM_CONV_2D format to write: 2 (one packed constant, blocks "
                        "for 1x1 convs) or 1 (for a runtime built before version 2; "
                        f"no blocks). Default {d['format_version']}")
    p.add_argument("--smaller-image", action="store_true",
                   help="keep the model dense unless the whole image shrinks: the file's "
                        "saving must exceed the code the DTMM ops add on every target "
                        "(measured, docs/models.md)")


def _convert_run(args) -> int:
    from dtmm.convert import convert_file

    report = convert_file(args.input, args.output, min_sparsity=args.min_sparsity,
                          always=args.always, target=args.target, prefer=args.prefer,
                          format_version=args.format_version,
                          smaller_image=args.smaller_image)
    print(report.table())
    if report.num_rewritten == 0 and report.num_fc_rewritten == 0:
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
    from dtmm.core.tflite import read_file
    from dtmm.inspect_model import inspect_table

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
    quiet_tensorflow()
    from dtmm.verify import verify_files

    report = verify_files(args.original, args.converted, input_files=args.input,
                          random=args.random, seed=args.seed, check=False)
    print(report.summary())
    if not report.ok:
        print(f"dtmm: verify: {one_line(report.failures[0])}", file=sys.stderr)
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


def one_line(message) -> str:
    """`message` as one printable line: names taken from a model may hold newlines or
    control characters, which are shown escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1]
                   for c in str(message).strip())


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except DtmmError as e:
        print(f"dtmm: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dtmm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
