"""`study export --deidentify`: frames without what could name the patient (EXIF, XMP,
comments, PNG text) but with the same pixels; findings without recorder sessions, dates
or file origins. Without the flag, frames come out byte-identical as before."""

from __future__ import annotations

import csv
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.study.deidentify import strip_jpeg, strip_png
from tests.study_runs import cli, finish_study, popen, start_simulator, watchdog

NAME = b"Jane Doe 1961-04-02 MRN 0048213"


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def _tagged_jpeg(seed: int) -> bytes:
    image = np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, seed % 2])
    assert ok
    data = bytes(jpeg)
    tags = _segment(0xE1, b"Exif\x00\x00" + NAME) + _segment(0xFE, b"Patient: " + NAME)
    return data[:2] + tags + data[2:]


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def _tagged_png() -> bytes:
    image = np.random.default_rng(9).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    ok, png = cv2.imencode(".png", image)
    assert ok
    data = bytes(png)
    at = 8 + 25  # after the signature and IHDR
    return (
        data[:at]
        + _chunk(b"tEXt", b"Author\x00" + NAME)
        + _chunk(b"tIME", b"\x07\xe6\x0c\x03\x09\x00\x00")
        + data[at:]
    )


def _pixels(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


@pytest.mark.parametrize("seed", [0, 1])  # baseline and progressive
def test_a_jpegs_tags_go_and_its_pixels_stay(seed: int) -> None:
    tagged = _tagged_jpeg(seed)
    clean = strip_jpeg(tagged)
    assert NAME not in clean and b"Exif" not in clean
    assert np.array_equal(_pixels(clean), _pixels(tagged))
    assert strip_jpeg(clean) == clean  # nothing more to take


def test_a_pngs_text_goes_and_its_pixels_stay() -> None:
    tagged = _tagged_png()
    clean = strip_png(tagged)
    assert NAME not in clean and b"tIME" not in clean
    assert np.array_equal(_pixels(clean), _pixels(tagged))


def test_what_does_not_parse_is_left_as_it_is() -> None:
    assert strip_jpeg(b"\xff\xd8\x00garbage") == b"\xff\xd8\x00garbage"
    assert strip_png(b"\x89PNG\r\n\x1a\n\x00\x00") == b"\x89PNG\r\n\x1a\n\x00\x00"


@pytest.mark.slow
def test_export_deidentified_from_a_real_study(tmp_path: Path) -> None:
    frames = tmp_path / "frames" / "Doe_Jane"
    frames.mkdir(parents=True)
    for i in range(6):
        (frames / f"{i:02d}.jpg").write_bytes(_tagged_jpeg(i))
    sim, link = start_simulator(tmp_path, "--count", "6", "--frames", frames, "--session", "48213")
    study = tmp_path / "study"
    run = popen(
        "run", "--source", f"serial://{link}", "--study", study, "--no-detector", "--no-http", "-q"
    )
    with watchdog(sim, run):
        finish_study(sim, run)
    plain, clean = tmp_path / "plain", tmp_path / "clean"
    assert cli("study", "export", study, "--frames", plain).returncode == 0
    done = cli(
        "study",
        "export",
        study,
        "--frames",
        clean,
        "--findings",
        tmp_path / "f.csv",
        "--deidentify",
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in plain.iterdir()) == [f"48213-{i}.jpg" for i in range(6)]
    assert sorted(p.name for p in clean.iterdir()) == [f"1-{i}.jpg" for i in range(6)]
    for i in range(6):
        sent = (frames / f"{i:02d}.jpg").read_bytes()
        assert (plain / f"48213-{i}.jpg").read_bytes() == sent  # as received
        out = (clean / f"1-{i}.jpg").read_bytes()
        assert NAME not in out and np.array_equal(_pixels(out), _pixels(sent))
    with open(tmp_path / "f.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["session"] for r in rows} == {"1"}
    assert min(int(r["timestamp_us"]) for r in rows) == 0
    assert all(not r["origin"] for r in rows)
    trail = cli("study", "audit", study).stdout
    assert "deidentified True" in trail
