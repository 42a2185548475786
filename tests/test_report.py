"""``capsule-edge report`` on a study made the way a user makes one: a folder of a
study's frames in order (a simulated sparse study from real Kvasir-SEG polyps that leave
and re-enter the view, benchmarks/polyp_sequences.py), ``capsule-edge run --source
dir://``, then the report and its JSON, rendered in a real headless browser."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from benchmarks.polyp_sequences import held_out_backgrounds, held_out_polyps, write_sequence
from tests.browser import page
from tests.conftest import HYPER_KVASIR, SHARED_DATA

REPO = Path(__file__).resolve().parents[1]
KVASIR_SEG = SHARED_DATA / "kvasir-seg"
pytestmark = [pytest.mark.slow, pytest.mark.data]


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> dict:
    if not (KVASIR_SEG / "images").is_dir() or not HYPER_KVASIR.is_dir():
        pytest.skip(f"real data not present at {SHARED_DATA}")
    lean = REPO / ".venv" / "bin" / "python"
    if not lean.exists():
        pytest.skip("the lean environment .venv is not built (make test builds it)")
    root = tmp_path_factory.mktemp("report")
    truth = write_sequence(
        root / "frames",
        held_out_polyps(KVASIR_SEG),
        held_out_backgrounds(HYPER_KVASIR),
        seed=11,
        polyps=3,
    )
    study = root / "study"
    for command in (
        ["run", "--source", f"dir://{root / 'frames'}", "--study", str(study), "--no-http", "-q"],
        ["report", str(study), "--json", str(root / "report.json")],
    ):
        done = subprocess.run(
            [str(lean), "-m", "edge.cli", *command],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr
    return {
        "truth": truth,
        "json": json.loads((root / "report.json").read_text()),
        "html": study / "report.html",
        "stderr": done.stderr,
    }


def test_one_event_per_polyp_that_leaves_and_reenters_the_view(reported: dict):
    truth, r = reported["truth"], reported["json"]
    # The study holds the files in name order: its frame k is truth.frames[k].
    holder = {k: truth.in_view(f) for k, f in enumerate(truth.frames)}
    visits: dict[int, list[int]] = {}
    for k, polyp in holder.items():
        if polyp is not None:
            visits.setdefault(polyp, []).append(k)
    # The sequence is what the test says: each polyp seen more than once, with gaps.
    assert len(visits) == 3
    assert all(max(p) - min(p) + 1 > len(p) for p in visits.values())
    assert r["polyps"] == 3, r["events"]
    assert r["frames"] == len(truth.frames) and r["frames_inferred"] == r["frames"]
    # Each event lies on one polyp's frames: its best frame shows that polyp.
    assert sorted(holder[e["best"]] for e in r["events"]) == [0, 1, 2]
    assert f"{r['polyps']} distinct polyp(s)" in reported["stderr"]


def test_the_json_twin_has_what_a_reader_and_a_trial_team_use(reported: dict):
    r = reported["json"]
    for key in (
        "frames",
        "segments",
        "landmarks",
        "transit_s",
        "events",
        "polyps",
        "link",
        "models",
    ):
        assert key in r
    for seg in r["segments"]:
        assert {"label", "first", "last", "start_s", "end_s"} <= set(seg)
    # The segments cover the study, in order, once.
    assert r["segments"][0]["first"] == 0 and r["segments"][-1]["last"] == r["frames"] - 1
    assert all(
        a["last"] + 1 == b["first"] for a, b in zip(r["segments"], r["segments"][1:], strict=False)
    )
    for e in r["events"]:
        assert {"kind", "id", "first", "last", "best", "frames", "peak_score"} <= set(e)
        assert e["first"] <= e["best"] <= e["last"] and e["frames"] >= 3
        w, h = e["max_box_px"]
        assert 0 < w <= 320 and 0 < h <= 320 and 0 < e["max_box_share"] <= 1
    assert r["models"]["detector"]["name"] == "yolov5s-256"
    assert r["models"]["classifier"]["card"]["labels"] == r["labels"]
    assert "not a diagnosis" in r["disclaimer"]
    # Frames from a folder carry no capture time: the report says what it assumed.
    assert "assumed" in r["times"]


def test_the_report_renders_offline_in_a_real_browser(reported: dict):
    html: Path = reported["html"]
    with page(html.as_uri()) as (tab, requests):
        tab.goto(html.as_uri())
        assert tab.locator("#timeline svg").count() == 1
        assert tab.locator("#timeline svg path").count() > 10  # the plot's lines
        events = tab.locator("#gallery .event")
        assert events.count() == reported["json"]["polyps"]
        assert tab.locator("#polyps").inner_text() == str(reported["json"]["polyps"])
        first = events.first
        dialog = first.locator("dialog")
        assert not dialog.is_visible()
        first.locator("button").first.click()
        assert dialog.is_visible()
        images = dialog.locator("img")
        assert images.count() >= 3  # the best frame and its neighbours
        assert images.evaluate_all("els => els.every(e => e.complete && e.naturalWidth > 0)")
        assert tab.locator("#disclaimer").inner_text().startswith("An aid to reading")
    assert requests.outside == []  # no request left the machine
    assert requests.seen == [html.as_uri()]  # the page itself, nothing else


def test_a_folder_that_is_not_a_study_is_one_line(tmp_path: Path):
    lean = REPO / ".venv" / "bin" / "python"
    if not lean.exists():
        pytest.skip("the lean environment .venv is not built")
    done = subprocess.run(
        [str(lean), "-m", "edge.cli", "report", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"capsule-edge: {tmp_path}: not a study folder (no study.db, no archive/)"
    ]
