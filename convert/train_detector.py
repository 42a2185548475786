"""Train the YOLOv5s polyp detector with the `yolov5` package (the detector profile).

The original anchor-based YOLOv5s and its v7.0 recipe (mosaic, EMA, AutoAnchor,
hyp.scratch-low) from scratch: COCO weights cannot be downloaded here. The run lives under
``~/.cache/capsule-edge/detector/runs/<name>``; yolov5 saves ``weights/last.pt`` every
epoch, and calling ``train`` again with the same name resumes from it, so a run survives
any interruption. The curve is yolov5's ``results.csv`` and ``results.png`` in the run.

Runs in its own environment (torch, no tensorflow): ``make detector-env``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from convert import yolov5_compat
from convert.detector_data import prepare

log = logging.getLogger(__name__)

RUNS = Path.home() / ".cache" / "capsule-edge" / "detector" / "runs"


@dataclass
class DetectorConfig:
    data: Path  # Kvasir-SEG or YOLO-format folder of polyp frames
    split: Path  # the classifier's split.json
    background: Path | None = None  # HyperKvasir tree: non-polyp classes as background
    name: str = "yolov5s-256"
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

    if last.is_file():
        log.info("resuming %s", last)
        yolo_train.run(resume=str(last))
    else:
        prepared = prepare(
            config.data,
            config.runs.parent / "data" / config.name,
            config.split,
            config.background,
            n_background=config.n_background,
            inset_blackout=config.inset_blackout,
            seed=config.seed,
        )
        log.info("training frames: %s", prepared.counts)
        for skip in prepared.skipped:
            log.warning("skipped %s: %s", skip.source, skip.reason)
        out.parent.mkdir(parents=True, exist_ok=True)
        (out.parent / f"{config.name}.config.json").write_text(
            json.dumps(asdict(config) | {"prepared": prepared.counts}, indent=2, default=str),
            encoding="utf-8",
        )
        yolo_train.run(
            data=str(prepared.yaml),
            cfg="yolov5s.yaml",
            weights="",
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
