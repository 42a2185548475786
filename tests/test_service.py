"""`capsule-edge service install|uninstall --root DIR`: the files a systemd site gets (this
machine has no systemd to run them under; the unit's command itself is tested in
tests/test_notify.py) and the commands it would run."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

from edge.runtime import config as settings

REPO = Path(__file__).resolve().parents[1]
UNIT = Path("etc/systemd/system/capsule-edge.service")
CONFIG = Path("etc/capsule-edge/capsule-edge.toml")


def _service(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", "service", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )


def test_install_writes_the_unit_and_a_config_and_says_the_commands(tmp_path: Path) -> None:
    done = _service("install", "--root", str(tmp_path))
    assert done.returncode == 0, done.stderr
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string((tmp_path / UNIT).read_text())
    service = unit["Service"]
    assert service["Type"] == "notify" and service["Restart"] == "on-failure"
    assert int(service["WatchdogSec"]) > 0
    assert service["User"] == "capsule-edge" and service["SupplementaryGroups"] == "dialout"
    assert service["UMask"] == "0077"
    program, *args = service["ExecStart"].split()
    assert program == f"{sys.prefix}/bin/capsule-edge"  # this install's venv
    assert args == ["run", "--config", "/etc/capsule-edge/capsule-edge.toml", "--quiet"]
    config = settings.load(tmp_path / CONFIG)  # a config the runtime takes as it is
    assert config["study"].startswith("/var/lib/capsule-edge/")
    assert (tmp_path / CONFIG).stat().st_mode & 0o777 == 0o640
    said = done.stdout
    assert "to run as root: useradd --system --user-group --groups dialout" in said
    assert "to run as root: systemctl enable capsule-edge.service" in said


def test_a_sites_own_config_is_kept_and_uninstall_keeps_it(tmp_path: Path) -> None:
    (tmp_path / CONFIG).parent.mkdir(parents=True)
    (tmp_path / CONFIG).write_text('study = "/data/trial-7"\n')
    assert _service("install", "--root", str(tmp_path)).returncode == 0
    assert (tmp_path / CONFIG).read_text() == 'study = "/data/trial-7"\n'
    done = _service("uninstall", "--root", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / UNIT).exists() and (tmp_path / CONFIG).exists()
    assert "to run as root: systemctl disable --now capsule-edge.service" in done.stdout


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    done = _service("install", "--root", str(tmp_path), "--dry-run")
    assert done.returncode == 0 and "would write" in done.stdout
    assert not any(tmp_path.iterdir())
