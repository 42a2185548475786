"""How the command line ends when something goes wrong: bad input is one line and exit
2; a bug is one line naming it and exit 70 (EX_SOFTWARE), the traceback only with -v."""

from __future__ import annotations

import pytest

import edge.cli.models
from edge.cli import main


def _boom(args: object) -> int:
    raise RuntimeError("boom")


def test_a_bug_is_one_line_and_exit_70(monkeypatch, capsys):
    monkeypatch.setattr(edge.cli.models, "cmd_models", _boom)
    assert main(["models"]) == 70
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("capsule-edge: internal error: RuntimeError: boom")


def test_with_verbose_the_bug_comes_with_its_traceback(monkeypatch, caplog):
    monkeypatch.setattr(edge.cli.models, "cmd_models", _boom)
    with caplog.at_level("INFO"):
        assert main(["-v", "models"]) == 70
    (record,) = [r for r in caplog.records if r.exc_info]
    assert record.exc_info[0] is RuntimeError


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://recorder", "ftp://recorder: unknown source"),
        ("usb://recorder", "usb://recorder: expected usb://VID:PID"),
        ("serial:///dev/null?baud=fast", "baud must be a number"),
    ],
)
def test_a_source_that_cannot_be_used_is_one_line_and_exit_2(tmp_path, capsys, url, message):
    assert main(["run", "--source", url, "--study", str(tmp_path / "s"), "--no-http"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("capsule-edge: ") and message in err[0], err
