"""`dtmm prune` and `dtmm demo` (registered into dtmm.cli as a plugin module).

    dtmm prune MODEL.keras --data fashion-mnist --flash 64KiB --sram 32KiB --out DIR
    dtmm demo --out DIR

Every default comes from the signature of dtmm.pipeline.prune / demo, the one place
they are set. TensorFlow is imported (and quieted, once) only when a command runs.
"""

from __future__ import annotations

import argparse
import inspect
import os

from dtmm.cli import console_silenced, quiet_tensorflow, register


def _defaults(name: str) -> dict:
    """Keyword defaults of dtmm.pipeline.<name> (the pipeline module imports
    TensorFlow only inside its functions, so this is cheap)."""
    from dtmm import pipeline

    return {k: p.default for k, p in inspect.signature(getattr(pipeline, name)).parameters.items()
            if p.default is not inspect.Parameter.empty}


def _budget(s: str) -> int:
    from dtmm.core.errors import DtmmError
    from dtmm.schedule.cost import parse_bytes

    try:
        return parse_bytes(s)
    except DtmmError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _targets() -> list:
    from dtmm.core import latency

    return latency.whole_model_targets()


def _target(s: str) -> str:
    if s != "any" and s not in _targets():
        raise argparse.ArgumentTypeError(
            f"unknown target {s!r} (known: {', '.join(_targets() + ['any'])})")
    return s


def _common(p, d, budgets_required: bool):
    p.add_argument("--flash", type=_budget, required=budgets_required,
                   default=None if budgets_required else _budget(d["flash"]),
                   metavar="BYTES", help="flash budget for the DTMM .tflite (65536, 64KiB, "
                                        "64KB, 0.5MiB)"
                                        + ("" if budgets_required else f"; default {d['flash']}"))
    p.add_argument("--sram", type=_budget, required=budgets_required,
                   default=None if budgets_required else _budget(d["sram"]),
                   metavar="BYTES", help="peak TFLM arena budget (same units)"
                   + ("" if budgets_required else f"; default {d['sram']}"))
    p.add_argument("--max-drop", type=float, default=d["max_drop"], metavar="POINTS",
                   help="largest allowed int8 test-accuracy drop in points (default "
                        f"{d['max_drop']})")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--epochs", type=int, default=d["epochs"], metavar="N",
                   help=f"masked fine-tuning epochs (default {d['epochs']})")
    p.add_argument("--seed", type=int, default=d["seed"])
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _prune_args(p):
    d = _defaults("prune")
    p.add_argument("model", metavar="MODEL.keras")
    p.add_argument("--data", required=True, metavar="DATASET",
                   help="'digits', 'fashion-mnist' (Debian package dataset-fashion-mnist) "
                        "or an .npz with x_train, y_train, x_test, y_test")
    _common(p, d, budgets_required=True)
    p.add_argument("--objective", choices=("loss", "latency"), default=d["objective"],
                   help="'loss': keep the most importance under the budgets (default); "
                        "'latency': fastest model that removes at most --max-loss")
    p.add_argument("--max-loss", type=float, default=100 * d["max_loss"], metavar="PCT",
                   help="with --objective latency: largest share of the (per-layer "
                        "normalized) importance to remove, percent (default "
                        f"{100 * d['max_loss']:g})")
    p.add_argument("--target", type=_target, default=d["target"], metavar="TARGET",
                   help="chip the latency objective and the conversion are for: "
                        + ", ".join(_targets()) + f" or any (default {d['target']}: "
                        "the sum of instructions over every fitted target; convs are "
                        "rewritten only where modeled faster on all of them)")
    p.add_argument("--importance", choices=("taylor", "magnitude"),
                   default=d["importance_method"],
                   help=f"filterlet/filter importance (default {d['importance_method']}; "
                        "magnitude did better on the BatchNorm CNN of bench/accuracy)")
    p.add_argument("--max-train", type=int, default=d["max_train"], metavar="N",
                   help="use only the first N training images (faster)")
    p.add_argument("--block-ratios", choices=("auto", "on", "off"),
                   default=d["block_ratios"],
                   help="also schedule a block ratio (fraction of B-blocks pruned) per "
                        "Dense and 1x1 Conv2D layer, priced by the converter's own plan "
                        f"(default {d['block_ratios']}: where the FC latency model covers "
                        "--target; 'off': filterlet and filter ratios only)")
    p.add_argument("--block-size", type=int, default=d["block_size"], metavar="B",
                   help=f"block size B the pruner cuts Dense rows and 1x1 filters into "
                        f"(default {d['block_size']}; a smaller converter candidate where B does "
                        "not divide C_in)")


# First bytes of the two formats keras.models.load_model reads.
_ZIP_MAGIC = b"PK\x03\x04"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def _keras_model(path):
    """The Keras model at `path`, or one DtmmError line: a missing file, a file of
    another kind (Keras itself says "File not found" for those), a layer the
    pipeline cannot convert (said now, not after minutes of conversion)."""
    from dtmm import pipeline
    from dtmm.core.errors import DtmmError
    from dtmm.prune.graph import check_convertible

    if not os.path.exists(path):
        raise DtmmError(f"model file {path} does not exist")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise DtmmError(f"cannot read model {path}: {e.strerror}") from None
    if not (head.startswith(_ZIP_MAGIC) or head.startswith(_HDF5_MAGIC)):
        raise DtmmError(f"{path} is not a Keras model file (a .keras zip archive or a "
                        "legacy .h5 file)")
    model = pipeline.load_model(path)
    check_convertible(model)
    return model


def _prune_run(args) -> int:
    quiet_tensorflow()
    from dtmm import pipeline

    model = _keras_model(args.model)
    pipeline.prune(model, args.data, args.flash, args.sram, args.out,
                   max_drop=args.max_drop, objective=args.objective,
                   target=args.target, max_loss=args.max_loss / 100.0,
                   epochs=args.epochs, max_train=args.max_train, seed=args.seed,
                   importance_method=args.importance, progress=not args.no_progress,
                   quiet=console_silenced, block_ratios=args.block_ratios,
                   block_size=args.block_size)
    print(f"wrote {args.out}/report.json")
    return 0


def _demo_args(p):
    _common(p, _defaults("demo"), budgets_required=False)


def _demo_run(args) -> int:
    quiet_tensorflow()
    from dtmm import pipeline

    pipeline.demo(args.out, flash=args.flash, sram=args.sram, max_drop=args.max_drop,
                  epochs=args.epochs, seed=args.seed, progress=not args.no_progress,
                  quiet=console_silenced)
    print(f"wrote {args.out}/report.json")
    return 0


register("prune", "prune a Keras CNN to flash/SRAM budgets and convert it for TFLM",
         _prune_args, _prune_run)
register("demo", "train a small CNN on sklearn digits and run `dtmm prune` on it",
         _demo_args, _demo_run)
