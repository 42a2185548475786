"""The research prototype's way of running a detector, as a bench row: YOLOv5 in PyTorch
through yolov5's own model, letterbox and NMS, fp32, batch 1.

    python -m convert.torch_reference SPEC    (the detector-train environment)

SPEC is a JSON object: ``onnx`` (an exported detector; its weights are rebuilt into
yolov5's model, ``convert.detector_init``, then fused as yolov5 runs them), ``img``,
``threads``, ``runs``, ``warmup``, ``frame`` (an image file, or null for 512x430 noise).
Prints one JSON row: the same fields as ``edge.bench.row``'s, measured the same way
(``edge.bench.timing``), so the speed-up of the int8 artefacts is a ratio in one run.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from convert import yolov5_compat
from edge.bench.timing import time_calls


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    yolov5_compat.apply()
    import torch
    from yolov5.utils.augmentations import letterbox
    from yolov5.utils.general import non_max_suppression

    from convert.detector_init import checkpoint_from_onnx

    torch.set_num_threads(int(spec["threads"]))
    img = int(spec["img"])
    if spec.get("frame"):
        import cv2

        frame = cv2.imread(str(spec["frame"]))  # BGR, as yolov5 reads frames
    else:
        frame = np.random.default_rng(0).integers(0, 256, (430, 512, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        ckpt = checkpoint_from_onnx(
            Path(spec["onnx"]), spec.get("cfg", "yolov5s.yaml"), Path(tmp) / "m.pt"
        )
        size_mb = ckpt.stat().st_size / 1e6
        model = (
            torch.load(ckpt, map_location="cpu", weights_only=False)["model"].float().fuse().eval()
        )
        load_s = time.perf_counter() - start

    def tensor() -> torch.Tensor:
        boxed = letterbox(frame, img, auto=False)[0]
        chw = np.ascontiguousarray(boxed[:, :, ::-1].transpose(2, 0, 1))
        return torch.from_numpy(chw)[None].float() / 255.0

    x = tensor()

    def whole() -> object:
        with torch.inference_mode():
            return non_max_suppression(model(tensor())[0], 0.25, 0.45)

    def infer() -> object:
        with torch.inference_mode():
            return model(x)

    w = time_calls(whole, int(spec["runs"]), int(spec["warmup"]))
    i = time_calls(infer, int(spec["runs"]), int(spec["warmup"]))
    return {
        "load_s": round(load_s, 4),
        "first_ms": round(w.first_ms, 3),
        **{k: round(getattr(w, k), 3) for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms")},
        "fps": round(w.fps, 2),
        "infer_p50_ms": round(i.p50_ms, 3),
        "infer_p99_ms": round(i.p99_ms, 3),
        "runs": int(spec["runs"]),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "size_mb": round(size_mb, 2),
        "device": "CPU",
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        row = measure(json.loads(args[0]))
    except (OSError, ValueError, KeyError, IndexError, ImportError) as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
