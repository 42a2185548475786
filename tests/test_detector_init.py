"""A checkpoint rebuilt from an exported detector computes what the export computes.

Needs the detector-train environment (torch, yolov5): `.venv-yolo/bin/python -m pytest
tests/test_detector_init.py`; skips elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("yolov5")
ort = pytest.importorskip("onnxruntime")

from convert import yolov5_compat  # noqa: E402
from edge.bundled import models_root  # noqa: E402

ONNX = models_root() / "detector" / "yolov5s-256" / "fp32.onnx"


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory: pytest.TempPathFactory) -> object:
    import torch

    from convert.detector_init import checkpoint_from_onnx

    yolov5_compat.apply()
    path = checkpoint_from_onnx(ONNX, "yolov5s.yaml", tmp_path_factory.mktemp("init") / "init.pt")
    return torch.load(path, map_location="cpu", weights_only=False)["model"].eval()


def test_rebuilt_checkpoint_matches_the_export(rebuilt: object) -> None:
    import torch

    frame = np.random.default_rng(0).integers(0, 256, (1, 256, 256, 3)).astype(np.float32)
    session = ort.InferenceSession(str(ONNX))
    exported = session.run(None, {session.get_inputs()[0].name: frame})[0]
    with torch.no_grad():
        ours = rebuilt(torch.from_numpy(frame).permute(0, 3, 1, 2) / 255.0)[0].numpy()  # type: ignore[operator]
    assert ours.shape == exported.shape
    # boxes in pixels of a 256-px input; objectness and class scores in [0, 1]
    np.testing.assert_allclose(ours[..., :4], exported[..., :4], atol=2e-3)
    np.testing.assert_allclose(ours[..., 4:], exported[..., 4:], atol=1e-5)


def test_anchors_come_from_the_export(rebuilt: object) -> None:
    from convert.detector_init import onnx_weights

    _, grids = onnx_weights(ONNX)
    detect = rebuilt.model[-1]  # type: ignore[attr-defined]
    for grid, anchors, stride in zip(grids, detect.anchors, detect.stride, strict=True):
        np.testing.assert_allclose(anchors.numpy() * float(stride), grid.reshape(3, 2), rtol=1e-6)


def test_another_architecture_is_refused_naming_the_weight(tmp_path: Path) -> None:
    from convert.detector_init import checkpoint_from_onnx

    yolov5_compat.apply()
    with pytest.raises(ValueError, match=r"model\.0\.conv\.weight .* does not fit yolov5n"):
        checkpoint_from_onnx(ONNX, "yolov5n.yaml", tmp_path / "init.pt")
