"""End to end: the runtime fed by the recorder simulator over a pty (``capsule-edge demo``,
each rate a process of its own) at rising frame rates, until it no longer keeps up.

A rate is sustained when every frame sent was stored and inferred with none skipped and
none lost, and the runtime kept pace (frames inferred a second, its drain included, at
least 95 % of the rate): a backlog that only grows is not keeping up, even when the run
is short enough for it to hold every frame.

Beside each rate: latency (frame received to findings stored) p50/p95/p99, the
runtime's CPU per frame (its process's, from the first frame on: loading excluded; the
simulated recorder is a process of its own, as a real one is), each stage's median, and
what the frames cost the link: bytes on the wire per frame (the protocol's framing
included, from the recorder's own count) and the share of a 921,600-baud and a 3-Mbaud
UART (10 bits a byte) they would take.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

BAUDS = (921_600, 3_000_000)
RATES = (5, 10, 20, 35, 50, 70, 100, 140, 200)
TIMEOUT_S = 600
KEEPING_PACE = 0.95  # frames inferred a second over frames sent a second


def run_rate(fps: float, seconds: float, extra: list[str]) -> dict[str, Any]:
    count = max(10, round(fps * seconds))
    with tempfile.TemporaryDirectory(prefix="capsule-edge-bench-") as tmp:
        out = Path(tmp)
        try:
            done = subprocess.run(
                [
                    *(sys.executable, "-m", "edge.cli", "demo"),
                    *("--count", str(count), "--fps", str(fps), "--out", str(out)),
                    *("--no-http", "-q", "--no-report", *extra),
                ],
                capture_output=True,
                text=True,
                timeout=TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            return {"fps": fps, "frames": count, "error": f"no result within {TIMEOUT_S} s"}
        if done.returncode != 0 or not (out / "summary.json").is_file():
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return {"fps": fps, "frames": count, "error": f"exit {done.returncode}: {tail}"}
        s = json.loads((out / "summary.json").read_text())
        truth = json.loads((out / "recorder.json").read_text())
    sent = s["frames_sent"] or 0
    wire = truth.get("bytes_sent", 0) / sent if sent else 0.0
    runtime_cpu = float(s["runtime_cpu_s"])
    sustained = (
        sent == count
        and s["frames_stored"] == count
        and s["frames_inferred"] == count
        and not s["frames_skipped"]
        and not s["frames_lost"]
        and s["fps"] >= KEEPING_PACE * fps
    )
    return {
        "fps": fps,
        "frames": count,
        "sustained": sustained,
        "stored": s["frames_stored"],
        "inferred": s["frames_inferred"],
        "skipped": s["frames_skipped"],
        "lost": s["frames_lost"] or 0,
        "processed_fps": s["fps"],
        "latency_ms": s["latency_ms"],
        "cpu_ms_per_frame": round(1e3 * runtime_cpu / max(s["frames_inferred"], 1), 2),
        "stage_p50_ms": {k: v.get("p50") for k, v in (s.get("stage_ms") or {}).items()},
        "wire_bytes_per_frame": round(wire),
        "line_share": {str(b): round(wire * fps * 10 / b, 3) for b in BAUDS},
    }


def saturate(
    rates: tuple[float, ...] = RATES,
    seconds: float = 8.0,
    extra: list[str] | None = None,
    progress: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """Each rate in turn until the first that is not sustained (it is kept: it shows how)."""
    rows = []
    for fps in rates:
        if progress is not None:
            progress(fps)
        row = run_rate(fps, seconds, extra or [])
        rows.append(row)
        if not row.get("sustained"):
            break
    sustained = [r["fps"] for r in rows if r.get("sustained")]
    wire = [r["wire_bytes_per_frame"] for r in rows if r.get("wire_bytes_per_frame")]
    per_frame = sum(wire) / len(wire) if wire else None
    return {
        "rates": rows,
        "sustained_fps": max(sustained) if sustained else None,
        "saturated": bool(rows) and not rows[-1].get("sustained"),
        "wire_bytes_per_frame": round(per_frame) if per_frame else None,
        # the most frames a second each line carries at that size
        "line_fps": {str(b): round(b / 10 / per_frame, 1) for b in BAUDS} if per_frame else {},
    }


def table(e2e: dict[str, Any]) -> str:
    lines = [
        "| frames/s sent | sustained | inferred | skipped | lost | latency p50 / p95 / p99 ms "
        "| runtime CPU ms/frame | wire bytes/frame | share of 921,600 baud | share of 3 Mbaud |",
        "|---:|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in e2e["rates"]:
        if "error" in r:
            lines.append(f"| {r['fps']} | error: {r['error']} | | | | | | | | |")
            continue
        lat = r["latency_ms"]
        share = r["line_share"]
        percentiles = f"{lat.get('p50')} / {lat.get('p95')} / {lat.get('p99')}"
        lines.append(
            f"| {r['fps']} | {'yes' if r['sustained'] else 'no'} | {r['inferred']}/{r['frames']} "
            f"| {r['skipped']} | {r['lost']} | {percentiles} "
            f"| {r['cpu_ms_per_frame']} | {r['wire_bytes_per_frame']:,} "
            f"| {share[str(BAUDS[0])]:.0%} | {share[str(BAUDS[1])]:.0%} |"
        )
    fits = ", ".join(f"{int(b):,} baud {f} frames/s" for b, f in e2e["line_fps"].items())
    lines += [
        "",
        f"Sustained: {e2e['sustained_fps'] or 'none'} frames/s"
        + ("" if e2e["saturated"] else " (the highest rate tried)")
        + (f"; a UART carries these frames at most at {fits}." if fits else "."),
    ]
    return "\n".join(lines)
