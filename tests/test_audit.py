"""The study's audit trail: each read (show, verify, export, report) leaves who, when and
what in audit.log, owner-only; a study that cannot take the line is still read, and says so."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from edge.study.audit import AUDIT_FILE, entries
from tests import mounts
from tests.study_runs import cli


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("audit")
    done = cli("demo", "--count", "6", "--fps", "0", "--out", out, "--no-http", "-q", "--no-report")
    assert done.returncode == 0, done.stderr[-2000:]
    return out / "study"


def test_each_read_is_recorded_with_who_when_and_what(study: Path, tmp_path: Path) -> None:
    assert cli("study", "show", study).returncode == 0
    assert cli("study", "verify", study).returncode == 0
    assert cli("study", "export", study, "--frames", tmp_path / "frames").returncode == 0
    assert cli("report", study, "--out", tmp_path).returncode == 0
    trail = json.loads(cli("study", "audit", study, "--json").stdout)
    assert [e["action"] for e in trail[-4:]] == ["show", "verify", "export frames", "report"]
    for e in trail[-4:]:
        assert e["user"] == getpass.getuser() and e["uid"] == os.getuid()
        assert e["host"] == socket.gethostname() and e["at"].endswith("Z")
    assert trail[-3]["ok"] is True and trail[-3]["frames"] == 6
    assert trail[-2]["to"] == str((tmp_path / "frames").resolve())
    assert trail[-1]["to"] == str((tmp_path / "report.html").resolve())
    assert stat.S_IMODE((study / AUDIT_FILE).stat().st_mode) == 0o600


def test_a_study_that_cannot_take_the_line_is_read_and_says_so(study: Path, tmp_path: Path) -> None:
    with mounts.tmpfs(tmp_path / "ro", "16m") as mount:
        copy = mount / "study"
        shutil.copytree(study, copy)
        before = entries(copy)
        assert subprocess.run(["mount", "-o", "remount,ro", str(mount)]).returncode == 0
        done = cli("study", "verify", copy)
        assert done.returncode == 0, done.stderr  # read all the same
        assert "this verify was not audited (Read-only file system)" in done.stderr
        assert entries(copy) == before
