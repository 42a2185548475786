"""Start a detector from another one's exported weights (transfer from an ONNX file).

COCO weights cannot be downloaded here, but the bundled polyp detector's ``fp32.onnx`` is
a YOLOv5 trained on endoscopy frames: a better start for capsule frames than random
weights. Export folded each batch norm into its convolution, so the checkpoint rebuilt
here carries the folded kernel and bias with an identity batch norm (mean 0, variance
1 - eps, scale 1), which computes the same function and trains on from there. Anchors come
from the graph's anchor grids, in stride units, as yolov5's ``Detect`` keeps them.

Runs in the detector-train environment (torch and yolov5; onnx for reading the graph).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PREFIX = "model."  # export wraps the model once more: "model.model.0.conv.weight"


def onnx_weights(path: Path) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """The graph's named weights (prefix dropped) and its anchor grids in graph order."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    weights: dict[str, np.ndarray] = {}
    grids = []
    for init in graph.initializer:
        array = numpy_helper.to_array(init)
        if init.name.startswith(PREFIX + "model."):
            weights[init.name[len(PREFIX) :]] = array
        elif tuple(array.shape) == (1, 3, 1, 1, 2):  # anchor_grid: anchors x stride
            grids.append(array)
    return weights, grids


def checkpoint_from_onnx(onnx_path: Path, cfg: str, out: Path) -> Path:
    """Write a yolov5 checkpoint of architecture ``cfg`` (e.g. ``yolov5s.yaml``) holding
    the exported weights; raise ValueError naming the first weight that does not fit."""
    import torch
    from yolov5.models.yolo import Detect, Model
    from yolov5.utils.general import check_yaml

    weights, grids = onnx_weights(onnx_path)
    head = weights.get("model.24.m.0.bias")
    if head is None:
        raise ValueError(f"{onnx_path}: not an exported YOLOv5 detector (no model.24 head)")
    nc = int(head.shape[0]) // 3 - 5
    model = Model(check_yaml(cfg), ch=3, nc=nc)
    state = model.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    for name, array in weights.items():
        tensor = torch.from_numpy(array.copy()).float()
        if name.endswith(".conv.bias"):  # a folded batch norm: its bias is the BN's shift
            bn = name[: -len(".conv.bias")] + ".bn"
            if bn + ".bias" not in state:
                raise ValueError(f"{onnx_path}: {name} has no batch norm in {cfg}")
            eps = dict(model.named_modules())[bn].eps
            loaded[bn + ".bias"] = tensor
            loaded[bn + ".weight"] = torch.ones_like(tensor)
            loaded[bn + ".running_mean"] = torch.zeros_like(tensor)
            loaded[bn + ".running_var"] = torch.full_like(tensor, 1.0 - eps)
            continue
        if name not in state or state[name].shape != tensor.shape:
            want = tuple(state[name].shape) if name in state else "absent"
            raise ValueError(
                f"{onnx_path}: {name} {tuple(tensor.shape)} does not fit {cfg} ({want})"
            )
        loaded[name] = tensor
    detect = model.model[-1]
    assert isinstance(detect, Detect)
    if len(grids) == detect.nl:
        anchors = torch.stack(
            [
                torch.from_numpy(g.reshape(3, 2).copy()).float() / s
                for g, s in zip(grids, detect.stride, strict=True)
            ]
        )
        loaded["model.24.anchors"] = anchors
    missing = sorted(k for k in state if k not in loaded and not k.endswith("num_batches_tracked"))
    missing = [k for k in missing if k != "model.24.anchors"]
    if missing:
        raise ValueError(f"{onnx_path}: no weight for {missing[0]} of {cfg}")
    model.load_state_dict(loaded, strict=False)
    model.yaml["anchors"] = [
        a.mul(s).flatten().round().tolist()
        for a, s in zip(detect.anchors, detect.stride, strict=True)
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model, "epoch": -1, "optimizer": None, "source": str(onnx_path)}, out)
    return out
