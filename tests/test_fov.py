"""The capsule field of view: estimated from frames, kept in the card, and everything
outside it set to 0 before a capsule detector sees a frame."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge.bundled import default_model
from edge.errors import ModelError
from edge.fov import FieldOfView, estimate
from edge.models.card import card_path_for
from edge.models.detector import Detector
from edge.preprocess import FOV_LETTERBOX_ID

WCE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wce-bleedgen"


def disc_frame(rng: np.random.Generator, size: int, cx: float, cy: float, r: float) -> np.ndarray:
    """Mucosa-like noise (never dark) inside a disc, black outside."""
    frame = rng.integers(60, 230, (size, size, 3), dtype=np.uint8)
    y, x = np.mgrid[0:size, 0:size] + 0.5
    frame[(x - cx * size) ** 2 + (y - cy * size) ** 2 > (r * size) ** 2] = 0
    return frame


def octagon_frame(rng: np.random.Generator, size: int, leg: float) -> np.ndarray:
    frame = rng.integers(60, 230, (size, size, 3), dtype=np.uint8)
    y, x = np.mgrid[0:size, 0:size] + 0.5
    far = size
    cut = (x + y < leg) | (far - x + y < leg) | (x + far - y < leg) | (2 * far - x - y < leg)
    frame[cut] = 0
    return frame


def test_estimate_finds_the_disc() -> None:
    rng = np.random.default_rng(0)
    frames = [disc_frame(rng, 200, 0.52, 0.47, 0.40) for _ in range(12)]
    fov = estimate(frames)
    assert fov.cx == pytest.approx(0.52, abs=0.01)
    assert fov.cy == pytest.approx(0.47, abs=0.01)
    assert 0.38 <= fov.r <= 0.40  # never beyond the disc; a pixel's margin inside


def test_estimate_of_an_octagon_is_its_inscribed_circle() -> None:
    rng = np.random.default_rng(1)
    fov = estimate([octagon_frame(rng, 256, 80) for _ in range(6)])
    # A cut edge, x + y = 80, lies (128 + 128 - 80) / sqrt(2) = 124.4 px from the centre,
    # nearer than the flat sides (128 px).
    assert fov.r * 256 == pytest.approx(124.4 - 1.0, abs=1.0)
    inside = fov.mask(256, 256)
    frame = octagon_frame(rng, 256, 80)
    assert (frame[inside].max(axis=1) > 0).all()  # everything kept shows something


def test_estimate_ignores_dark_frames_in_the_minority() -> None:
    rng = np.random.default_rng(2)
    frames = [disc_frame(rng, 128, 0.5, 0.5, 0.45) for _ in range(8)]
    frames += [np.zeros((128, 128, 3), np.uint8)] * 3  # a capsule in the dark
    assert estimate(frames).r == pytest.approx(0.45, abs=0.015)


def test_apply_zeroes_only_outside() -> None:
    rng = np.random.default_rng(3)
    frame = rng.integers(1, 256, (90, 120, 3), dtype=np.uint8)
    fov = FieldOfView(0.5, 0.5, 0.4)
    out = fov.apply(frame)
    inside = fov.mask(120, 90)
    assert np.array_equal(out[inside], frame[inside])
    assert not out[~inside].any()
    assert inside.sum() == pytest.approx(np.pi * 36**2, rel=0.03)  # r = 0.4 x 90 px
    assert frame.any(axis=2).all()  # the input is untouched


@pytest.mark.parametrize(
    "raw",
    [None, {"cx": 0.5, "cy": 0.5}, {"cx": 0.5, "cy": 0.5, "r": 0}, {"cx": 2, "cy": 0.5, "r": 1}],
)
def test_bad_fov_in_a_card_is_one_line(raw: object) -> None:
    with pytest.raises(ModelError, match=r"preprocessing\.fov"):
        FieldOfView.from_card(raw, "card.json")


def _with_fov(tmp_path: Path, fov: FieldOfView) -> Path:
    """The bundled int8 detector with a capsule card (the model's bytes unchanged)."""
    model = default_model("detection", "litert").model_path
    shutil.copyfile(model, tmp_path / model.name)
    card = json.loads(card_path_for(model).read_text(encoding="utf-8"))
    card["preprocessing"] = {"id": FOV_LETTERBOX_ID, "fov": fov.to_card()}
    card_path_for(tmp_path / model.name).write_text(json.dumps(card), encoding="utf-8")
    return tmp_path / model.name


def test_black_outside_the_fov_does_not_change_the_decisions(tmp_path: Path) -> None:
    """A frame with anything at all outside the field of view (noise, a bright rim)
    gets the same detections as the frame blacked out there."""
    fov = FieldOfView(0.5, 0.5, 0.45)
    rng = np.random.default_rng(4)
    frame = disc_frame(rng, 256, 0.5, 0.5, 0.47)
    frame[40:120, 60:140] = (200, 40, 40)  # something to find inside
    noisy = frame.copy()
    outside = ~fov.mask(256, 256)
    noisy[outside] = rng.integers(0, 256, (int(outside.sum()), 3), dtype=np.uint8)
    blacked = fov.apply(frame)
    with Detector.open(_with_fov(tmp_path, fov), "litert", conf_threshold=0.001) as det:
        assert det.fov == fov
        a, b = det.detect(noisy), det.detect(blacked)
    assert a.items and a == b
    # The check is sensitive: without the field of view, the surround changes the output.
    with Detector.open(
        default_model("detection", "litert").model_path, conf_threshold=0.001
    ) as det:
        assert det.detect(noisy) != det.detect(blacked)


@pytest.mark.data
def test_wce_bleedgen_field_of_view() -> None:
    """The real capsule frames: a circle about the centre, inscribed in their octagon."""
    if not WCE.is_dir():
        pytest.skip(f"real data not present at {WCE}")
    from edge.frames import read_image

    paths = sorted((WCE / "images").glob("*.jpg"))[::4]
    frames = [read_image(p) for p in paths]
    fov = estimate(frames)
    assert fov.cx == pytest.approx(0.5, abs=0.01) and fov.cy == pytest.approx(0.5, abs=0.01)
    assert 0.47 <= fov.r <= 0.5
    inside = fov.mask(256, 256)
    lit = np.mean([f[inside].max(axis=1) > 15 for f in frames], axis=0)
    assert np.percentile(lit, 1) > 0.9  # what is kept shows mucosa in nearly every frame
