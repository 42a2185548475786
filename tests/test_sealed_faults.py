"""An encrypted study under the faults a plain one survives (``test_study_done_when``):
SIGKILLs during a link study and a full disk. ``study verify`` proves it whole after
each (its database encrypted too: with the key), and every frame acknowledged opens
byte-identical to what the recorder sent (the simulator's ground truth)."""

from __future__ import annotations

import random
import shutil
import signal
from pathlib import Path

import pytest

from tests.study_runs import (
    HANG_S,
    check_content,
    cli,
    finish_study,
    read_truth,
    start_runtime,
    start_simulator,
    verify_json,
    watchdog,
    write_frames,
)

pytest.importorskip("cryptography")
pytestmark = pytest.mark.slow


def _keyed(tmp: Path) -> tuple[Path, str]:
    """A key, and a config that seals with it (no disk reserve: a small disk fills)."""
    key = tmp / "site.key"
    done = cli("study", "keygen", key)
    assert done.returncode == 0, done.stderr
    config = tmp / "keyed.toml"
    config.write_text(f'[storage]\nkey_file = "{key}"\nreserve_mb = 0\n')
    return key, str(config)


def _database_encrypted(study: Path) -> None:
    """study.db and its write-ahead log hold no page in the clear after the faults."""
    raw = b"".join(p.read_bytes() for p in study.glob("study.db*"))
    assert not raw.startswith(b"SQLite format 3") and b"CREATE TABLE" not in raw


def test_sigkills_during_a_sealed_link_study_lose_nothing(tmp_path: Path):
    key, config = _keyed(tmp_path)
    frames = write_frames(tmp_path / "frames")
    sim, link = start_simulator(
        tmp_path, "--count", "400", "--frames", frames, "--loop", "--linger", "30"
    )
    study = tmp_path / "study"
    rng = random.Random(3)
    with watchdog(sim):
        for _ in range(3):
            run = start_runtime(link, study, "--jsonl", "--config", config)
            assert run.stdout is not None
            with watchdog(run):
                for _ in range(rng.randrange(5, 80)):  # mid-frame, mid-seal, mid-commit
                    assert run.stdout.readline(), run.stderr.read() if run.stderr else ""
                run.send_signal(signal.SIGKILL)
                run.wait()
            report = verify_json(study, "--key", key)
            for problem in report["problems"]:  # a kill's tail, never acknowledged
                assert problem["message"].endswith("stored, but not in the ledger"), problem
        run = start_runtime(link, study, "--config", config)
        with watchdog(run):
            finish_study(sim, run)
    truth, sent = read_truth(tmp_path)
    dropped = {tuple(map(int, k.split(":"))) for k in truth["dropped"]}
    delivered = {k: crc for k, crc in sent.items() if k not in dropped}
    assert len(delivered) > 300
    assert (study / "sealed.json").exists()
    _database_encrypted(study)
    check_content(study, tmp_path, delivered, "--key", key)


def test_a_full_disk_under_a_sealed_study_loses_nothing(tmp_path: Path, small_disk: Path):
    key, config = _keyed(tmp_path)
    sim, link = start_simulator(tmp_path, "--count", "400", "--size", "16000", "--linger", "30")
    study = small_disk / "study"
    with watchdog(sim):
        run = start_runtime(link, study, "--config", config)
        with watchdog(run):
            _, err = run.communicate(timeout=HANG_S)
        assert run.returncode == 1, err[-3000:]
        last = err.strip().splitlines()[-1]
        assert "cannot store frames" in last and ("disk is full" in last or "No space" in last)
        report = verify_json(small_disk / "study", "--key", key)
        assert report["ok"], report["problems"][:5]
        assert 0 < report["frames"] < 400
        moved = tmp_path / "study"
        shutil.copytree(study, moved)
        shutil.rmtree(study)
        run = start_runtime(link, moved, "--config", config)
        with watchdog(run):
            finish_study(sim, run)
    _, sent = read_truth(tmp_path)
    assert len(sent) == 400
    assert (moved / "sealed.json").exists()
    _database_encrypted(moved)
    check_content(moved, tmp_path, sent, "--key", key)
