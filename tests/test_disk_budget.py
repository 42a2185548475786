"""The study's disk on a small tmpfs: a study does not start below its reserve, warns when
its estimate does not fit, and stops receiving at the reserve with every acknowledged
frame stored, byte-identical, and the study closed cleanly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.runtime.disk import DiskWatch, estimate
from tests import mounts
from tests.study_runs import check_content, cli, popen, read_truth, start_simulator, watchdog


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 40 MB tmpfs of the test's own."""
    with mounts.tmpfs(tmp_path / "disk", "40m") as disk:
        yield disk


def _noise_frames(folder: Path, n: int) -> Path:
    """Frames of ~450 kB each (noise does not compress): 100 of them overfill the tmpfs."""
    folder.mkdir()
    rng = np.random.default_rng(5)
    for i in range(n):
        image = rng.integers(0, 256, (640, 640, 3), dtype=np.uint8)
        assert cv2.imwrite(str(folder / f"{i:03d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return folder


def test_below_the_reserve_a_study_does_not_start(tmpfs: Path) -> None:
    frames = _noise_frames(tmpfs.parent / "few", 2)
    done = cli("run", "--source", f"dir://{frames}", "--study", tmpfs / "s", "-q", "--no-http")
    assert done.returncode == 2
    line = done.stderr.strip().splitlines()[-1]
    assert "at or below the reserve of 256 MB (storage.reserve_mb)" in line
    assert not (tmpfs / "s").exists()  # nothing written


@pytest.mark.slow
def test_at_the_reserve_receiving_stops_with_every_acknowledged_frame_stored(
    tmpfs: Path, tmp_path: Path
) -> None:
    frames = _noise_frames(tmp_path / "frames", 100)
    config = tmp_path / "small-disk.toml"
    config.write_text("[storage]\nreserve_mb = 16\nfps = 20\nhours = 1\nframe_kb = 600\n")
    sim, link = start_simulator(tmp_path, "--count", "100", "--fps", "20", "--frames", frames)
    study = tmpfs / "study"
    run = popen(
        *("run", "--config", config, "--source", f"serial://{link}", "--study", study),
        *("--no-detector", "--no-http", "-q"),
    )
    with watchdog(sim, run):
        _, err = run.communicate()
        sim.wait()
    assert run.returncode == 1, err[-3000:]
    # 20 frames/s for 1 h at 600 kB is 44.5 GB: the start-up estimate says it will not fit
    assert "warning: the study needs about 44.5 GB" in err
    last = err.strip().splitlines()[-1]
    assert "at the reserve of 16 MB: stopped receiving; every acknowledged frame is stored" in last
    summary = json.loads(err[err.index("{") : err.rindex("}") + 1])
    assert summary["stop_reason"] and summary["error"] is None
    truth, sent = read_truth(tmp_path)
    (session,) = {s for s, _ in sent}
    acked = truth["acked_below"][str(session)]
    assert 0 < acked < 100  # it stopped part-way
    # every acknowledged frame is in the study, byte-identical; none lost, none extra
    stored = {k: crc for k, crc in sent.items() if k[1] < summary["frames_stored"]}
    assert summary["frames_stored"] >= acked
    check_content(study, tmp_path, stored)
    assert summary["frames_inferred"] == summary["frames_stored"]  # inferred to its end


def test_the_estimate_uses_the_studys_own_frames(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "study.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE frames (length INTEGER)")
    con.executemany("INSERT INTO frames VALUES (?)", [(40_000,), (60_000,)])
    con.commit()
    con.close()
    got = estimate(fps=2.0, hours=10.0, frame_kb=0.0, db_path=db)
    assert got is not None and got.frame_bytes == 50_000.0
    assert got.frame_size_from == "2 frames of this study"
    assert got.need_bytes == round(2 * 10 * 3600 * 50_000 * 1.03)
    assert estimate(fps=0.0, hours=10.0, frame_kb=50.0, db_path=db) is None  # no rate given


def test_the_watch_looks_once_a_second_and_says_why() -> None:
    now, free = [0.0], [100_000_000]
    watch = DiskWatch(Path("/study"), 16, every_s=1.0, clock=lambda: now[0], free=lambda _: free[0])
    assert watch.low() is None
    free[0] = 10_000_000
    now[0] = 0.5
    assert watch.low() is None  # not looked at yet
    now[0] = 1.0
    assert "10 MB free, at the reserve of 16 MB" in (watch.low() or "")
