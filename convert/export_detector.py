"""First half of the detector conversion, in the detector (torch) profile.

From a yolov5 checkpoint write, into ``<run>/export``:

- ``fp32.onnx``: the decoded layout [1, N, 5 + nc] (xywh in input pixels, objectness,
  class scores), as yolov5's own ONNX export gives it;
- ``raw.onnx``: the raw-heads layout, one [1, H, W, anchors * (5 + nc)] tensor per stride
  with the sigmoid applied and nothing else. Grid and anchor decoding, where int8 would
  hurt most (pixel-unit boxes and 0-1 scores in one tensor), is left to numpy;
- ``weights.npz`` (the fused model's tensors by name) and ``detector.json`` (the model's
  yaml, anchors in pixels, strides, names, input size) for the LiteRT half, which runs
  where tensorflow is and torch is not (``convert.quantize_detector``).

Every graph takes what the runtime gives every model: RGB, NHWC, float 0-255.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from convert import yolov5_compat

log = logging.getLogger(__name__)

OPSET = 17


def load_checkpoint(weights: Path) -> Any:
    yolov5_compat.apply()
    import torch

    ckpt = torch.load(weights, map_location="cpu", weights_only=False)
    model = (ckpt.get("ema") or ckpt["model"]).float()
    model.fuse().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def export(weights: Path, out: Path, img: int) -> Path:
    """Write the export folder for ``weights`` (a yolov5 best.pt / last.pt)."""
    import numpy as np
    import torch

    model = load_checkpoint(weights)
    detect = model.model[-1]
    out.mkdir(parents=True, exist_ok=True)

    class Decoded(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            detect.training, detect.export = False, True
            return self.model(x.permute(0, 3, 1, 2) / 255.0)[0]

    class RawHeads(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            detect.training = True  # yolov5's Detect then returns the undecoded heads
            heads = self.model(x.permute(0, 3, 1, 2) / 255.0)
            outs = []
            for h in heads:  # (1, anchors, H, W, 5 + nc) -> (1, H, W, anchors * (5 + nc))
                b, a, ny, nx, no = h.shape
                outs.append(h.sigmoid().permute(0, 2, 3, 1, 4).reshape(b, ny, nx, a * no))
            return tuple(outs)

    sample = torch.zeros(1, img, img, 3)
    for module, name, outputs in (
        (Decoded(), "fp32.onnx", ["detections"]),
        (RawHeads(), "raw.onnx", [f"stride{int(s)}" for s in detect.stride]),
    ):
        torch.onnx.export(
            module.eval(),
            (sample,),
            str(out / name),
            input_names=["image"],
            output_names=outputs,
            opset_version=OPSET,
            dynamo=False,
        )
    detect.training = False

    np.savez(out / "weights.npz", **{k: v.numpy() for k, v in model.state_dict().items()})
    strides = [int(s) for s in detect.stride]
    meta = {
        "yaml": model.yaml,
        "input_size": img,
        "names": [
            str(n) for n in (model.names.values() if isinstance(model.names, dict) else model.names)
        ],
        "strides": strides,
        "anchors": (detect.anchors * detect.stride.view(-1, 1, 1)).tolist(),
        "num_anchors": int(detect.na),
        "num_classes": int(detect.nc),
        "checkpoint": str(weights),
    }
    (out / "detector.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    log.info("exported %s to %s", weights, out)
    return out
