"""Soak: the runtime against the recorder simulator on a pty for minutes at a live frame
rate, sampling the runtime's memory (RSS) and open files from /proc.

    python -m benchmarks.soak --minutes 10 --fps 30 [--frames DIR ...] [--out DIR]

Prints one line per sample and a verdict: growth of RSS and of open files from the end
of the first minute (warm-up: models, caches, SQLite pages) to the end. Linux only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edge.cli.simulate import spawn_simulator

REPO = Path(__file__).resolve().parents[1]
RSS_BOUND_MB = 20.0  # allowed growth after warm-up
FILES_BOUND = 2  # allowed growth of open file descriptors after warm-up


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _open_files(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--frames", type=Path, nargs="*", help="folders of frames (default: synthetic)")
    p.add_argument("--python", default=sys.executable, help="the environment to run in")
    p.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    p.add_argument("--out", type=Path, help="keep the study here (default: a temporary folder)")
    p.add_argument("runtime_args", nargs="*", help="extra arguments for capsule-edge run")
    args = p.parse_args(argv)

    out = args.out or Path(tempfile.mkdtemp(prefix="capsule-edge-soak-"))
    out.mkdir(parents=True, exist_ok=True)
    count = int(args.minutes * 60 * args.fps)
    link = out / "recorder.pty"
    frames = ["--frames", *map(str, args.frames), "--loop"] if args.frames else ["--mucosa"]
    sim, _ = spawn_simulator(
        *("--pty", str(link), "--count", str(count), "--fps", str(args.fps), *frames),
        python=args.python,
        cwd=REPO,
        stderr=subprocess.DEVNULL,
    )
    run = subprocess.Popen(
        [
            *(args.python, "-m", "edge.cli", "run", "--source", f"serial://{link}"),
            *("--study", str(out / "study"), "--no-http", "-q", *args.runtime_args),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    samples: list[tuple[float, float, int]] = []
    start = time.monotonic()
    while sim.poll() is None and run.poll() is None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            sim.wait(timeout=args.every)
        if run.poll() is None:
            t = time.monotonic() - start
            samples.append((t, _rss_mb(run.pid), _open_files(run.pid)))
            print(
                f"{t:7.0f} s  RSS {samples[-1][1]:7.1f} MB  open files {samples[-1][2]}", flush=True
            )
    run.send_signal(signal.SIGINT)
    _, err = run.communicate()
    at = err.find("\n{")
    summary = json.JSONDecoder().raw_decode(err[at + 1 :])[0] if at >= 0 else {}
    warm = [s for s in samples if s[0] >= 60] or samples
    rss_growth = warm[-1][1] - warm[0][1]
    files_growth = warm[-1][2] - warm[0][2]
    ok = rss_growth <= RSS_BOUND_MB and files_growth <= FILES_BOUND and run.returncode == 0
    print(
        json.dumps(
            {
                "minutes": args.minutes,
                "fps": args.fps,
                "frames_sent": count,
                "frames_stored": summary.get("frames_stored"),
                "frames_inferred": summary.get("frames_inferred"),
                "frames_skipped": summary.get("frames_skipped"),
                "latency_ms": summary.get("latency_ms"),
                "rss_mb_after_warmup": round(warm[0][1], 1),
                "rss_growth_mb": round(rss_growth, 1),
                "open_files_growth": files_growth,
                "bounds": {"rss_growth_mb": RSS_BOUND_MB, "open_files_growth": FILES_BOUND},
                "within_bounds": ok,
            },
            indent=1,
        )
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
