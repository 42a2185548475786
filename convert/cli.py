"""capsule-convert: train classifiers and convert them to int8 LiteRT and OpenVINO."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from edge.errors import CapsuleEdgeError


def _train(args: argparse.Namespace) -> int:
    from convert.train_classifier import TrainConfig, train

    cfg = TrainConfig(
        data=args.data,
        arch=args.arch,
        out=args.out,
        size=args.size,
        epochs=args.epochs,
        batch=args.batch,
        seed=args.seed,
        val_fraction=args.val_fraction,
        classes=tuple(c for c in (args.classes or "").split(",") if c),
    )
    model = train(cfg)
    print(f"trained {cfg.arch}: {model}")
    if args.quantize:
        args.run = args.out
        return _quantize(args)
    return 0


def _quantize(args: argparse.Namespace) -> int:
    from convert.quantize import quantize_run

    report = quantize_run(
        args.run, args.data, tolerance=args.tolerance, calibration=args.calibration, name=args.name
    )
    print(report.table())
    if not report.passed:
        print(f"capsule-convert: {report.failure}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="capsule-convert", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train-classifier", help="train a classifier on a class-folder dataset")
    t.add_argument("--data", type=Path, required=True, help="class-folder dataset root")
    t.add_argument("--arch", default="edgecnn", help="seed (the prototype) or edgecnn (default)")
    t.add_argument("--out", type=Path, required=True, help="run folder (resumes if present)")
    t.add_argument("--size", type=int, default=128, help="input side in pixels (default 128)")
    t.add_argument("--epochs", type=int, default=None)
    t.add_argument("--batch", type=int, default=32)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--val-fraction", type=float, default=0.2)
    t.add_argument("--classes", help="comma-separated subset of class folders, e.g. the 6 Kvasir")
    t.add_argument("--quantize", action="store_true", help="convert and evaluate afterwards")
    t.add_argument("--tolerance", type=float, default=1.0, help="allowed int8 loss, points")
    t.add_argument("--calibration", type=int, default=1000, help="calibration frames")
    t.add_argument("--name", help="model name for the cards (default: the arch)")
    t.set_defaults(func=_train)

    q = sub.add_parser("quantize", help="export int8/fp32 LiteRT, OpenVINO and ONNX with cards")
    q.add_argument("--run", type=Path, required=True, help="a train-classifier output folder")
    q.add_argument("--data", type=Path, required=True, help="the dataset it was trained on")
    q.add_argument("--tolerance", type=float, default=1.0, help="allowed int8 loss, points")
    q.add_argument("--calibration", type=int, default=1000, help="calibration frames")
    q.add_argument("--name", help="model name for the cards (default: the arch)")
    q.set_defaults(func=_quantize)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except (CapsuleEdgeError, ValueError) as exc:
        print(f"capsule-convert: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("capsule-convert: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
