"""A study is patient data: a new study's folders are 0700 and its files 0600 whatever the
umask, so that no other user of the board can read it. A folder the site made itself
keeps the mode it was given."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.study.store import Study


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0o022)  # the usual default: files 0644, folders 0755
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("open_umask")
def test_a_new_study_is_owner_only(tmp_path: Path) -> None:
    folder = tmp_path / "studies" / "patient-17"
    study = Study(folder)
    for i in range(5):
        study.add(1, i, os.urandom(900), codec=1, timestamp_us=i)
    study.commit()
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    assert {p.name for p in files} >= {"study.db", "lock", "000001.bin"}
    assert any(p.name.endswith("-wal") for p in files)  # SQLite's, created while open
    study.close()
    assert _mode(folder) == _mode(folder / "archive") == 0o700
    for path in files:
        if path.exists():  # the -wal and -shm go at close
            assert _mode(path) == 0o600, path
    assert _mode(tmp_path / "studies") == 0o755  # a parent is not the study's to close


@pytest.mark.usefixtures("open_umask")
def test_a_folder_the_site_made_keeps_its_mode(tmp_path: Path) -> None:
    folder = tmp_path / "shared-study"
    folder.mkdir(mode=0o750)
    Study(folder).close()
    assert _mode(folder) == 0o750
    assert _mode(folder / "study.db") == 0o600
