"""capsule-convert: train classifiers and convert them to int8 LiteRT and OpenVINO."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from edge.errors import BadInputError, CapsuleEdgeError


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


def _train_detector(args: argparse.Namespace) -> int:
    from convert.train_detector import DetectorConfig, train

    config = DetectorConfig(
        data=args.data,
        split=args.split,
        background=args.background,
        name=args.name,
        model=args.model,
        fov=args.fov,
        init=args.init,
        augment=args.augment,
        hyp=dict(args.hyp or []),
        img=args.img,
        epochs=args.epochs,
        batch=args.batch,
        n_background=args.n_background,
        seed=args.seed,
        workers=args.workers,
    )
    out = train(config)
    print(f"trained detector: {out / 'weights' / 'best.pt'} (curve: {out / 'results.csv'})")
    return 0


def _hyp_item(text: str) -> tuple[str, float]:
    key, sep, value = text.partition("=")
    try:
        if not sep or not key:
            raise ValueError
        return key.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=NUMBER, e.g. scale=0.9") from None


def _export_detector(args: argparse.Namespace) -> int:
    from convert.export_detector import export
    from convert.train_detector import RUNS

    run = args.run or RUNS / args.name
    weights = args.weights or run / "weights" / "best.pt"
    if not weights.is_file():
        raise BadInputError(f"{weights}: no such checkpoint (train-detector writes it)")
    out = export(weights, run / "export", args.img)
    print(
        f"exported {weights} to {out}; next, in the convert profile: "
        f"capsule-convert quantize-detector --run {run} ..."
    )
    return 0


def _quantize_detector(args: argparse.Namespace) -> int:
    from convert.quantize_detector import quantize_detector

    report = quantize_detector(
        args.run,
        args.data,
        args.split,
        args.background,
        name=args.name,
        tolerance=args.tolerance,
        calibration=args.calibration,
    )
    print(report.table())
    if not report.passed:
        print(f"capsule-convert: {report.failure}", file=sys.stderr)
        return 1
    return 0


# Which install profile each command runs in: torch and tensorflow never share one.
PROFILES = {"train-detector": "detector-train", "export-detector": "detector-train"}
PROFILE_HINTS = {
    "convert": "make test builds it as .venv-dev; pip install 'capsule-edge[convert]'",
    "detector-train": "make detector-env; pip install 'capsule-edge[detector-train]'",
}


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

    d = sub.add_parser(
        "train-detector",
        help="train YOLOv5s on polyp boxes (detector profile: make detector-env); resumes",
    )
    d.add_argument("--data", type=Path, required=True, help="Kvasir-SEG or YOLO-format folder")
    d.add_argument(
        "--split", type=Path, help="the classifier's split.json (default: the run makes one)"
    )
    d.add_argument("--model", default="yolov5s", help="yolov5 architecture (yolov5n, yolov5s)")
    d.add_argument(
        "--hyp",
        type=_hyp_item,
        action="append",
        metavar="KEY=VALUE",
        help="override a yolov5 hyperparameter of hyp.scratch-low (repeatable), e.g. scale=0.9",
    )
    d.add_argument(
        "--fov", action="store_true", help="capsule frames: black out beyond the field of view"
    )
    d.add_argument(
        "--init",
        type=Path,
        metavar="ONNX",
        help="start from an exported detector of the same architecture (e.g. the bundled "
        "polyp detector's fp32.onnx) instead of random weights",
    )
    d.add_argument(
        "--augment",
        choices=("yolov5", "hospital"),
        default="yolov5",
        help="hospital: add white balance, exposure, resolution, blur, noise, JPEG, vignette "
        "and specular highlights to yolov5's augmentation (polyp frames; not for bleeding, "
        "whose colour is the finding)",
    )
    d.add_argument("--background", type=Path, help="HyperKvasir tree for polyp-free frames")
    d.add_argument("--name", default="yolov5s-256", help="run name; the same name resumes")
    d.add_argument("--img", type=int, default=256, help="input side (256; 320 as an option)")
    d.add_argument("--epochs", type=int, default=120)
    d.add_argument("--batch", type=int, default=16)
    d.add_argument("--n-background", type=int, default=250, help="background training frames")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--workers", type=int, default=2, help="data loader processes")
    d.set_defaults(func=_train_detector)

    x = sub.add_parser("export-detector", help="checkpoint -> ONNX and weights (detector profile)")
    x.add_argument("--run", type=Path, help="train-detector run folder")
    x.add_argument("--name", default="yolov5s-256", help="run name, when --run is not given")
    x.add_argument("--weights", type=Path, help="checkpoint (default: the run's best.pt)")
    x.add_argument("--img", type=int, default=256, help="input side the model was trained at")
    x.set_defaults(func=_export_detector)

    qd = sub.add_parser(
        "quantize-detector",
        help="int8/fp32 LiteRT and OpenVINO, fp32 ONNX, cards (convert profile)",
    )
    qd.add_argument("--run", type=Path, required=True, help="run folder holding export/")
    qd.add_argument("--data", type=Path, required=True, help="Kvasir-SEG or YOLO-format folder")
    qd.add_argument("--split", type=Path, required=True, help="the split it was trained with")
    qd.add_argument("--background", type=Path, help="HyperKvasir tree for polyp-free frames")
    qd.add_argument("--name", default="yolov5s-256", help="model name for the cards")
    qd.add_argument("--tolerance", type=float, default=1.5, help="allowed int8 mAP@0.5 loss")
    qd.add_argument("--calibration", type=int, default=300, help="calibration frames")
    qd.set_defaults(func=_quantize_detector)

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
    except ModuleNotFoundError as exc:
        profile = PROFILES.get(args.command, "convert")
        print(
            f"capsule-convert: {args.command} needs {exc.name!r}, which this environment "
            f"lacks: install the {profile!r} profile ({PROFILE_HINTS[profile]})",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("capsule-convert: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
