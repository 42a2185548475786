"""`capsule-edge doctor` as a field site runs it: passes here, and names what would fail
a study (a missing delegate, a busy or absent port, a model not its card's, no clock)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from edge.bundled import models_root
from edge.doctor import FAIL, OK, clock
from firmware_bridge.transport import SerialTransport

REPO = Path(__file__).resolve().parents[1]


def _doctor(lean_python: Path, *args: str, env: dict | None = None) -> tuple[int, dict]:
    done = subprocess.run(
        [str(lean_python), "-m", "edge.cli", "doctor", "--json", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        env=env,
    )
    return done.returncode, json.loads(done.stdout)


def _by_name(doc: dict) -> dict[str, dict]:
    return {c["name"]: c for c in doc["checks"]}


def test_doctor_passes_here_with_each_models_device_and_sha256(
    lean_python: Path, tmp_path: Path
) -> None:
    rc, doc = _doctor(lean_python, "--study", str(tmp_path / "study"))
    assert rc == 0 and doc["ok"], doc
    checks = _by_name(doc)
    for role in ("classifier", "detector"):
        model = checks[f"model [{role}]"]
        assert model["status"] == OK and "on CPU" in model["detail"] and "sha256" in model["detail"]
    assert checks["backend litert"]["status"] == OK
    assert checks["disk"]["status"] == OK and checks["clock"]["status"] == OK


def test_a_missing_delegate_fails_naming_it(lean_python: Path, tmp_path: Path) -> None:
    config = tmp_path / "tpu.toml"
    config.write_text('[detector]\ndelegate = "libedgetpu.so.1"\n')
    rc, doc = _doctor(lean_python, "--config", str(config))
    assert rc == 1 and not doc["ok"]
    failed = [c for c in doc["checks"] if c["status"] == FAIL]
    assert len(failed) == 1 and "libedgetpu.so.1" in failed[0]["detail"]


def test_a_busy_port_and_an_absent_one_fail(lean_python: Path) -> None:
    parent, child = os.openpty()
    port = os.ttyname(child)
    holder = SerialTransport(port)  # another program has it: the runtime's exclusive lock
    holder.open()
    try:
        rc, doc = _doctor(lean_python, "--source", f"serial://{port}")
    finally:
        holder.close()
        os.close(parent)
        os.close(child)
    assert rc == 1
    check = _by_name(doc)["serial port"]
    assert check["status"] == FAIL and "busy" in check["detail"], check
    rc, doc = _doctor(lean_python, "--source", "serial:///dev/ttyNOPE0")
    assert rc == 1 and "no such device" in _by_name(doc)["serial port"]["detail"]


def test_a_model_that_is_not_its_cards_fails(lean_python: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(models_root(), models)
    model = models / "classifier" / "edgecnn" / "int8.tflite"
    model.write_bytes(model.read_bytes()[:-8] + b"\0" * 8)
    env = {**os.environ, "CAPSULE_EDGE_MODELS": str(models)}
    rc, doc = _doctor(lean_python, "--no-detector", env=env)
    assert rc == 1
    (failed,) = [c for c in doc["checks"] if c["status"] == FAIL]
    assert "sha256" in failed["detail"]


@pytest.mark.parametrize(("now", "status"), [(0.0, FAIL), (1_796_000_000.0, None)])
def test_a_clock_never_set_fails(now: float, status: str | None) -> None:
    (check,) = clock(now)
    if status is None:
        assert check.status != FAIL and check.detail.startswith("2026-")
    else:
        assert check.status == FAIL and "not set" in check.detail


def test_a_configured_key_is_checked_and_one_that_does_not_read_fails(
    lean_python: Path, tmp_path: Path
) -> None:
    key = tmp_path / "site.key"
    done = subprocess.run(
        [str(lean_python), "-m", "edge.cli", "study", "keygen", str(key)],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    config = tmp_path / "keyed.toml"
    config.write_text(f'[storage]\nkey_file = "{key}"\n')
    rc, doc = _doctor(lean_python, "--config", str(config), "--study", str(tmp_path / "s"))
    check = _by_name(doc)["encryption"]
    assert rc == 0 and check["status"] == OK and "database SQLCipher 4." in check["detail"], doc
    key.write_text("not a key\n")
    rc, doc = _doctor(lean_python, "--config", str(config), "--study", str(tmp_path / "s"))
    check = _by_name(doc)["encryption"]
    assert rc == 1 and check["status"] == FAIL and "64 hex digits" in check["detail"], doc

    # The libraries it needs, imported (not only installed): sqlcipher3 kept from loading.
    key.unlink()
    done = subprocess.run(
        [str(lean_python), "-m", "edge.cli", "study", "keygen", str(key)],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "sqlcipher3.py").write_text("raise ImportError('kept from loading')\n")
    env = {**os.environ, "PYTHONPATH": str(shadow)}
    rc, doc = _doctor(lean_python, "--config", str(config), "--study", str(tmp_path / "s"), env=env)
    check = _by_name(doc)["encryption"]
    assert rc == 1 and check["status"] == FAIL and "sqlcipher3 missing" in check["detail"], doc
