"""Does the live dashboard slow the study? The same live demo twice, alone and with a
loopback flood of the dashboard's endpoints (the page, its state, the latest frame, and
open server-sent-event streams); frames/s and latency p95 compared.

    python -m benchmarks.dashboard_flood [--fps 10] [--count 300] [--rate 100] [--streams 8]
        [--runs 1] [--python .venv/bin/python] [--json FILE]

The flood's clients run on the same cores as the study, at the lowest priority
(``--clients-nice 19``; 0 to run them at the study's): on a real board they are another
machine's browsers, and what this measures is the server's cost to the study.
Prints a Markdown table; the README's figure comes from it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
ENDPOINTS = ("/", "/dashboard/state", "/dashboard/frame.jpg", "/stats")


def _demo(python: str, out: Path, fps: float, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            python,
            "-m",
            "edge.cli",
            "demo",
            "--count",
            str(count),
            "--fps",
            str(fps),
            "--out",
            str(out),
            "-q",
            "--no-report",
        ],
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def _url(demo: subprocess.Popen[str]) -> str:
    assert demo.stderr is not None
    for line in demo.stderr:
        if "stats http://" in line:
            return line.rsplit(" ", 1)[-1].strip().removesuffix("/stats")
    raise SystemExit("the demo ended before it served its dashboard")


def _stream(url: str, stop: threading.Event, got: list[int]) -> None:
    """One browser's event stream, read until ``stop``: counts the events."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
            sock.sendall(f"GET /dashboard/events HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
            sock.settimeout(1.0)
            while not stop.is_set():
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    return
                got[0] += data.count(b"data: ")  # one per event (chunked: no line anchor)
    except OSError:
        return


def run(python: str, fps: float, count: int, flood: dict[str, Any] | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "demo"
        demo = _demo(python, out, fps, count)
        url = _url(demo)
        drain = threading.Thread(target=lambda: demo.stderr and demo.stderr.read(), daemon=True)
        drain.start()
        floods: list[subprocess.Popen[str]] = []
        stop, events = threading.Event(), [0]
        streams = []
        if flood is not None:
            seconds = count / fps
            for path in ENDPOINTS:
                floods.append(
                    subprocess.Popen(
                        [
                            *flood["prefix"],
                            python,
                            "-m",
                            "benchmarks.http_flood",
                            url + path,
                            "--rate",
                            str(flood["rate"]),
                            "--seconds",
                            str(seconds),
                            "--threads",
                            "2",
                        ],
                        stdout=subprocess.PIPE,
                        text=True,
                        cwd=REPO,
                    )
                )
            for _ in range(flood["streams"]):
                t = threading.Thread(target=_stream, args=(url, stop, events), daemon=True)
                t.start()
                streams.append(t)
        demo.wait()
        stop.set()
        answered = {}
        for path, f in zip(ENDPOINTS, floods, strict=False):
            outp, _ = f.communicate()
            answered[path] = json.loads(outp or "{}").get("statuses", {})
        summary = json.loads((out / "summary.json").read_text())
    return {
        "flood": flood is not None,
        "fps": summary["fps"],
        "p50_ms": summary["latency_ms"]["p50"],
        "p95_ms": summary["latency_ms"]["p95"],
        "inferred": summary["frames_inferred"],
        "skipped": summary["frames_skipped"],
        "answered": answered,
        "stream_events": events[0],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.dashboard_flood")
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--count", type=int, default=300)
    p.add_argument("--rate", type=float, default=100.0, help="requests/s on each endpoint")
    p.add_argument("--streams", type=int, default=8, help="event streams held open")
    p.add_argument("--clients-nice", type=int, default=19)
    p.add_argument(
        "--clients-idle", action="store_true", help="run the clients SCHED_IDLE (chrt --idle)"
    )
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    prefix = (
        ["chrt", "--idle", "0"] if args.clients_idle else ["nice", "-n", str(args.clients_nice)]
    )
    flood = {"rate": args.rate, "streams": args.streams, "prefix": prefix}
    rows = []
    for _ in range(args.runs):
        rows.append(run(args.python, args.fps, args.count, None))
        rows.append(run(args.python, args.fps, args.count, flood))
    print(f"live demo, {args.count} frames at {args.fps:g} fps; {os.cpu_count()} cores")
    print("| run | fps | latency p50 ms | p95 ms | inferred / skipped | flood answered |")
    print("|---|---:|---:|---:|---|---|")
    for r in rows:
        ok = sum(int(n) for s in r["answered"].values() for k, n in s.items() if k == "200")
        what = f"{ok} x 200, {r['stream_events']} events" if r["flood"] else "-"
        name = "flooded" if r["flood"] else "alone"
        print(
            f"| {name} | {r['fps']} | {r['p50_ms']} | {r['p95_ms']} | "
            f"{r['inferred']} / {r['skipped']} | {what} |"
        )
    if args.json:
        args.json.write_text(
            json.dumps({"args": vars(args) | {"json": str(args.json)}, "runs": rows}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
