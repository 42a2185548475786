"""The bench's end-to-end rows: one real run over the pty (its figures are the run's own),
and the saturation logic on known outcomes."""

from __future__ import annotations

import pytest

from edge.bench import e2e


@pytest.mark.slow
def test_one_rate_over_the_pty_reports_the_runs_own_figures() -> None:
    row = e2e.run_rate(5, 2.0, ["--no-detector"])
    assert "error" not in row, row
    assert row["frames"] == 10 and row["inferred"] == 10 and row["stored"] == 10
    assert row["sustained"] and row["skipped"] == 0 and row["lost"] == 0
    assert set(row["stage_p50_ms"]) >= {"decode", "classifier"}
    assert "detector" not in row["stage_p50_ms"]
    # the share of each line is the wire bytes at this rate over its bytes a second
    for baud, share in row["line_share"].items():
        assert share == pytest.approx(row["wire_bytes_per_frame"] * 5 * 10 / int(baud), abs=1e-3)


def test_saturation_stops_at_the_first_rate_not_kept_and_keeps_it(monkeypatch) -> None:
    tried = []

    def fake(fps: float, seconds: float, extra: list[str]) -> dict:
        tried.append(fps)
        return {"fps": fps, "sustained": fps < 30, "wire_bytes_per_frame": 20_000}

    monkeypatch.setattr(e2e, "run_rate", fake)
    got = e2e.saturate((5, 10, 20, 35, 50), 1.0)
    assert tried == [5, 10, 20, 35]
    assert got["sustained_fps"] == 20 and got["saturated"]
    assert got["line_fps"] == {"921600": 4.6, "3000000": 15.0}


def test_a_demo_that_fails_is_a_row_with_its_reason() -> None:
    row = e2e.run_rate(5, 2.0, ["--frames", "/nonexistent-frames"])
    assert row["error"].startswith("exit 2: ") and "no such folder" in row["error"]
