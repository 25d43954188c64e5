"""`dtmm prune` and `dtmm demo` (registered into dtmm.cli as a plugin module).

    dtmm prune MODEL.keras --data fashion-mnist --flash 64KiB --sram 32KiB --out DIR
    dtmm demo --out DIR
"""

from __future__ import annotations

from dtmm.cli import register


def _budget(s: str) -> int:
    import argparse

    from dtmm.errors import DtmmError
    from dtmm.schedule.cost import parse_bytes

    try:
        return parse_bytes(s)
    except DtmmError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _common(p, flash_default=None, sram_default=None):
    req = flash_default is None
    p.add_argument("--flash", type=_budget, required=req, default=flash_default,
                   metavar="BYTES", help="flash budget for the DTMM .tflite (65536, 64KiB, "
                                        "64KB, 0.5MiB)")
    p.add_argument("--sram", type=_budget, required=req, default=sram_default,
                   metavar="BYTES", help="peak TFLM arena budget (same units)")
    p.add_argument("--max-drop", type=float, default=1.0, metavar="POINTS",
                   help="largest allowed int8 test-accuracy drop in points (default 1.0)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--epochs", type=int, default=None, metavar="N",
                   help="masked fine-tuning epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _prune_args(p):
    p.add_argument("model", metavar="MODEL.keras")
    p.add_argument("--data", required=True, metavar="DATASET",
                   help="'digits', 'fashion-mnist' (Debian package dataset-fashion-mnist) "
                        "or an .npz with x_train, y_train, x_test, y_test")
    _common(p)
    p.add_argument("--objective", choices=("loss", "latency"), default="loss",
                   help="'loss': keep the most importance under the budgets (default); "
                        "'latency': fastest model that removes at most --max-loss")
    p.add_argument("--max-loss", type=float, default=5.0, metavar="PCT",
                   help="with --objective latency: largest share of the (per-layer "
                        "normalized) importance to remove, percent (default 5)")
    p.add_argument("--latency-csv", metavar="CSV", default=None,
                   help="bench/kernels CSV to calibrate the latency model")
    p.add_argument("--importance", choices=("taylor", "magnitude"), default="taylor",
                   help="filterlet/filter importance (default taylor; magnitude did "
                        "better on the BatchNorm CNN of bench/accuracy)")
    p.add_argument("--max-train", type=int, default=None, metavar="N",
                   help="use only the first N training images (faster)")


def _prune_run(args) -> int:
    from dtmm import pipeline

    pipeline.prune(args.model, args.data, args.flash, args.sram, args.out,
                   max_drop=args.max_drop, objective=args.objective,
                   latency_csv=args.latency_csv, max_loss=args.max_loss / 100.0,
                   epochs=2 if args.epochs is None else args.epochs,
                   max_train=args.max_train, seed=args.seed,
                   importance_method=args.importance,
                   progress=not args.no_progress)
    print(f"wrote {args.out}/report.json")
    return 0


def _demo_args(p):
    _common(p, flash_default=24 * 1024, sram_default=16 * 1024)


def _demo_run(args) -> int:
    from dtmm import pipeline

    pipeline.demo(args.out, flash=args.flash, sram=args.sram, max_drop=args.max_drop,
                  epochs=3 if args.epochs is None else args.epochs, seed=args.seed,
                  progress=not args.no_progress)
    print(f"wrote {args.out}/report.json")
    return 0


register("prune", "prune a Keras CNN to flash/SRAM budgets and convert it for TFLM",
         _prune_args, _prune_run)
register("demo", "train a small CNN on sklearn digits and run `dtmm prune` on it",
         _demo_args, _demo_run)
