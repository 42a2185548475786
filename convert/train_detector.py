"""Train a YOLOv5 detector with the `yolov5` package (the detector profile).

The original anchor-based YOLOv5 (``--model yolov5s``, or the smaller ``yolov5n``) and
its v7.0 recipe (mosaic, EMA, AutoAnchor, hyp.scratch-low), from scratch or, with
``init``, from another exported detector (``convert.detector_init``): COCO weights
cannot be downloaded here.

Two kinds of data: the polyp detector's (Kvasir-SEG with HyperKvasir backgrounds, split
by the classifier's ``split.json``), and a YOLO folder of capsule frames (WCEBleedGen)
with no split given: the run makes its own (``convert.detector_split``, written to the
run as ``split.json``), estimates the field of view from the training frames
(``fov.json``, later in the cards) and trains on frames blacked out beyond it. A capsule
has no "up", so capsule runs flip frames vertically as well as horizontally. The run lives under
``~/.cache/capsule-edge/detector/runs/<name>``; yolov5 saves ``weights/last.pt`` every
epoch, and calling ``train`` again with the same name resumes from it, so a run survives
any interruption. The curve is yolov5's ``results.csv`` and ``results.png`` in the run.

Runs in its own environment (torch, no tensorflow): ``make detector-env``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from convert import yolov5_compat
from convert.detector_data import prepare
from convert.detector_split import split_detection_folder, write_split
from edge.eval.detector import labelled_frames, load_detection_folder
from edge.fov import FieldOfView, estimate
from edge.frames import read_image

log = logging.getLogger(__name__)

RUNS = Path.home() / ".cache" / "capsule-edge" / "detector" / "runs"


@dataclass
class DetectorConfig:
    data: Path  # Kvasir-SEG or YOLO-format folder
    split: Path | None = None  # the classifier's split.json; None: the run makes its own
    background: Path | None = None  # HyperKvasir tree: non-polyp classes as background
    name: str = "yolov5s-256"
    model: str = "yolov5s"  # the yolov5 architecture: yolov5n, yolov5s, ...
    fov: bool = False  # capsule frames: estimate the field of view, black out beyond it
    init: Path | None = None  # an exported detector (fp32.onnx) to start from, not random
    augment: str = "yolov5"  # or "hospital": yolov5's plus convert.detector_augment's shifts
    hyp: dict[str, float] = field(default_factory=dict)  # over hyp.scratch-low
    img: int = 256
    epochs: int = 120
    batch: int = 16
    n_background: int = 250
    inset_blackout: float = 0.75
    seed: int = 0
    workers: int = 2
    runs: Path = RUNS


def run_dir(config: DetectorConfig) -> Path:
    return config.runs / config.name


def _hyp(config: DetectorConfig, out: Path) -> Path:
    """yolov5's hyp.scratch-low, with vertical flips for capsule frames, then the
    config's own overrides (e.g. ``scale`` 0.9: frames zoomed out to a tenth of their size,
    for polyps smaller than the development data's)."""
    import yaml
    import yolov5

    base = Path(yolov5.__file__).parent / "data" / "hyps" / "hyp.scratch-low.yaml"
    hyp = yaml.safe_load(base.read_text(encoding="utf-8"))
    if config.fov:
        hyp["flipud"] = 0.5
    unknown = sorted(set(config.hyp) - set(hyp))
    if unknown:
        raise ValueError(f"--hyp {unknown[0]}: not a yolov5 hyperparameter ({', '.join(hyp)})")
    hyp.update(config.hyp)
    path = out / f"{config.name}.hyp.yaml"
    path.write_text(yaml.safe_dump(hyp), encoding="utf-8")
    return path


def _split_and_fov(config: DetectorConfig, out: Path) -> tuple[Path, FieldOfView | None]:
    split = config.split
    if split is None:
        split = write_split(
            split_detection_folder(load_detection_folder(config.data), seed=config.seed),
            out / "split.json",
        )
    fov = None
    if config.fov:
        frames, _ = labelled_frames(config.data, split, config.background, side="train")
        fov = estimate(read_image(f.path) for f in frames)
        (out / "fov.json").write_text(json.dumps(fov.to_card()), encoding="utf-8")
        log.info("field of view %s", fov.to_card())
    return split, fov


def train(config: DetectorConfig) -> Path:
    """Train (or resume) and return the run folder holding ``weights/best.pt``."""
    out = run_dir(config)
    last = out / "weights" / "last.pt"
    done = out / "done.json"
    if done.is_file():
        log.info("%s already finished; delete it to train again", out)
        return out
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # steadier epochs on 2 cores
    yolov5_compat.apply()
    from yolov5 import train as yolo_train  # after the shims

    saved = out.parent / f"{config.name}.config.json"
    augment = config.augment
    if last.is_file() and saved.is_file():  # a resumed run keeps the augmentation it began with
        augment = json.loads(saved.read_text(encoding="utf-8")).get("augment", "yolov5")
    if augment == "hospital":
        from convert import detector_augment

        detector_augment.install()
        log.info(
            "augmentation: yolov5's and %s", ", ".join(f.__name__ for f in detector_augment.SHIFTS)
        )
    elif augment != "yolov5":
        raise ValueError(f"augment {augment!r}: expected yolov5 or hospital")
    if last.is_file():
        log.info("resuming %s", last)
        yolo_train.run(resume=str(last))
    else:
        out.mkdir(parents=True, exist_ok=True)
        split, fov = _split_and_fov(config, out)
        prepared = prepare(
            config.data,
            config.runs.parent / "data" / config.name,
            split,
            config.background,
            n_background=config.n_background,
            inset_blackout=0.0 if config.fov else config.inset_blackout,
            seed=config.seed,
            fov=fov,
        )
        log.info("training frames: %s", prepared.counts)
        for skip in prepared.skipped:
            log.warning("skipped %s: %s", skip.source, skip.reason)
        saved.write_text(
            json.dumps(asdict(config) | {"prepared": prepared.counts}, indent=2, default=str),
            encoding="utf-8",
        )
        cfg, weights = f"{config.model}.yaml", ""
        if config.init is not None:
            from convert.detector_init import checkpoint_from_onnx

            # cfg "" builds the model from the checkpoint, its anchors included
            weights = str(checkpoint_from_onnx(config.init, cfg, out / "init.pt"))
            cfg = ""
            log.info("starting from %s", config.init)
        yolo_train.run(
            data=str(prepared.yaml),
            cfg=cfg,
            hyp=str(_hyp(config, out)),
            weights=weights,
            imgsz=config.img,
            epochs=config.epochs,
            batch_size=config.batch,
            workers=config.workers,
            cache="ram",
            device="cpu",
            seed=config.seed,
            project=str(config.runs),
            name=config.name,
            exist_ok=True,
        )
    done.write_text(json.dumps(asdict(config), indent=2, default=str), encoding="utf-8")
    return out
