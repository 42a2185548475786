"""Soak: the runtime against the recorder simulator on a pty for minutes or hours at a
live frame rate, sampling the runtime's memory (RSS), open files, threads and CPU time
from /proc.

    python -m benchmarks.soak --minutes 240 --fps 35 [--frames DIR ...] [--out DIR]
        [--clock-jump-at 30 --clock-jump-s -3600] [--key FILE]

Prints one line per sample and a verdict: growth of RSS, open files and threads from the
end of the first minute (warm-up: models, caches, SQLite pages) to the end; every frame
sent stored and inferred, none skipped; the study's size against the runtime's own
estimate for it (edge.runtime.disk); the runtime's CPU a frame, and the CPU a VM's
hypervisor took meanwhile (steal); each minute in which findings came more than a second
after their frame (when it fell behind: a steady cost or a stall). ``--clock-jump-at``
sets the runtime's wall clock back (or forward) that many minutes in, and reports the
latency and the order of the frames' timestamps across it. The jump is the wall clock as
the runtime's Python sees it (``time.time``, ``time.time_ns``, offset by a
``sitecustomize`` in the runtime's process only); the monotonic clock is left alone, as
a real jump leaves it. (libfaketime cannot do this: with the monotonic clock left real,
Python 3.11's ``time.sleep`` fails there with EINVAL.) Linux only.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edge.cli.simulate import spawn_simulator
from edge.study import sealing
from edge.study.readonly import connect_readonly

REPO = Path(__file__).resolve().parents[1]
RSS_BOUND_MB = 20.0  # allowed growth after warm-up
FILES_BOUND = 2  # allowed growth of open file descriptors after warm-up
THREADS_BOUND = 0  # allowed growth of threads after warm-up
DISK_BOUND = 0.05  # the study's size within 5 % of the start-up estimate
WALL_CLOCK = """# The soak's wall clock: time.time() and time.time_ns() offset by the seconds in
# $CAPSULE_EDGE_SOAK_OFFSET (read again at most once a second); monotonic time untouched.
import os, time
_path = os.environ["CAPSULE_EDGE_SOAK_OFFSET"]
_time, _time_ns, _mono = time.time, time.time_ns, time.monotonic
_seen = [0.0, -1e9]
def _offset():
    if _mono() - _seen[1] >= 1.0:
        try:
            with open(_path) as f:
                _seen[0] = float(f.read())
        except (OSError, ValueError):
            pass
        _seen[1] = _mono()
    return _seen[0]
time.time = lambda: _time() + _offset()
time.time_ns = lambda: _time_ns() + int(_offset() * 1e9)
"""


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _open_files(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise RuntimeError(f"no Threads for {pid}")


def _cpu_s(pid: int) -> float:
    """User and system CPU seconds of the process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _steal_s() -> float:
    """CPU seconds the hypervisor gave to others (all cores), since boot: a VM's stall
    that no change in the runtime explains."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK")


def _late(db_path: Path, fps: float, over_ms: float = 1000.0) -> dict[str, list[float]]:
    """For each minute of the recording with a frame whose findings came more than
    ``over_ms`` after it was received (a backlog, or a skip inferred later): how many and
    the longest wait. Says when the runtime fell behind, not only that it did."""
    db = connect_readonly(db_path)
    try:
        rows = db.execute("SELECT inferred_ms FROM inference ORDER BY session, idx").fetchall()
    finally:
        db.close()
    late: dict[str, list[float]] = {}
    for n, (ms,) in enumerate(rows):
        if ms is not None and ms > over_ms:
            entry = late.setdefault(str(int(n / fps // 60)), [0, 0.0])
            entry[0] += 1
            entry[1] = max(entry[1], round(ms))
    return late


def _order(db_path: Path) -> dict[str, int]:
    """Steps back in the frames' recorder timestamps and in their wall-clock arrival
    times, in index order."""
    db = connect_readonly(db_path)
    try:
        rows = db.execute(
            "SELECT timestamp_us, received_us FROM frames ORDER BY session, idx"
        ).fetchall()
    finally:
        db.close()
    back = {"recorder_timestamp_steps_back": 0, "arrival_time_steps_back": 0}
    for (t0, r0), (t1, r1) in itertools.pairwise(rows):
        back["recorder_timestamp_steps_back"] += t1 < t0
        back["arrival_time_steps_back"] += r1 < r0
    return back


def _study_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--frames", type=Path, nargs="*", help="folders of frames (default: synthetic)")
    p.add_argument("--python", default=sys.executable, help="the environment to run in")
    p.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    p.add_argument("--out", type=Path, help="keep the study here (default: a temporary folder)")
    p.add_argument("--clock-jump-at", type=float, help="minutes in: set the wall clock off")
    p.add_argument("--clock-jump-s", type=float, default=-3600.0, help="by this (default -1 h)")
    p.add_argument("--key", type=Path, help="encrypt the study with this key file")
    p.add_argument("runtime_args", nargs="*", help="extra arguments for capsule-edge run")
    args = p.parse_args(argv)
    if args.key is not None:
        try:  # to read the study back; the runtime gets it in its config
            sealing.use_key(args.key)
        except sealing.StudyKeyError as exc:
            p.error(str(exc))

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
        own_session=True,  # a Ctrl-C is the soak's: it stops both as below
    )
    env = dict(os.environ)
    jump_file = out / "wall-clock-offset"
    if args.clock_jump_at is not None:
        jump_file.write_text("0\n")
        (out / "wall-clock").mkdir(exist_ok=True)
        (out / "wall-clock" / "sitecustomize.py").write_text(WALL_CLOCK)
        env |= {
            "PYTHONPATH": os.pathsep.join(filter(None, [str(out / "wall-clock"), str(REPO)])),
            "CAPSULE_EDGE_SOAK_OFFSET": str(jump_file),
        }
    study = out / "study"
    hours = count / args.fps / 3600
    config = out / "soak.toml"
    key = f'key_file = "{args.key.resolve()}"\n' if args.key is not None else ""
    config.write_text(f"[storage]\nfps = {args.fps}\nhours = {hours:.6f}\n{key}")
    run = subprocess.Popen(
        [
            *(args.python, "-m", "edge.cli", "run", "--source", f"serial://{link}"),
            *("--study", str(study), "--config", str(config), "--no-http", "-q"),
            *args.runtime_args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
        start_new_session=True,
    )
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a kill ends it as Ctrl-C
    samples: list[tuple[float, float, int, int, float]] = []
    steal = [_steal_s()]
    start = time.monotonic()
    jump_s = args.clock_jump_at * 60 if args.clock_jump_at is not None else math.inf
    jumped_at = None
    interrupted = False
    try:
        while sim.poll() is None and run.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                sim.wait(timeout=args.every)
            t = time.monotonic() - start
            if jumped_at is None and t >= jump_s:
                jump_file.write_text(f"{args.clock_jump_s:.0f}\n")  # taken within a second
                jumped_at = round(t)
                print(f"{t:7.0f} s  the wall clock set {args.clock_jump_s:+.0f} s", flush=True)
            if run.poll() is not None:
                break
            pid = run.pid
            try:
                sample = (t, _rss_mb(pid), _open_files(pid), _threads(pid), _cpu_s(pid))
            except (OSError, RuntimeError):  # it ended between the poll and the reading
                break
            samples.append(sample)
            _, rss, files, threads, cpu = sample
            steal.append(_steal_s())
            print(
                f"{t:7.0f} s  RSS {rss:7.1f} MB  open files {files}  threads {threads}"
                f"  CPU {cpu:7.1f} s  stolen {steal[-1] - steal[-2]:5.1f} s",
                flush=True,
            )
    except KeyboardInterrupt:
        interrupted = True
    finally:  # never a recorder left sending on a pty after the soak
        if sim.poll() is None:
            sim.terminate()
            sim.wait()
    run.send_signal(signal.SIGINT)  # one, so the study is closed cleanly
    try:
        _, err = run.communicate()
    except KeyboardInterrupt:  # a second: the runtime stops at once, as it does on its own
        run.send_signal(signal.SIGINT)
        run.wait()
        return 130
    if interrupted:
        print(f"soak: interrupted; the runtime stopped with {run.returncode}", flush=True)
        return 130
    at = err.find("\n{")
    summary = json.JSONDecoder().raw_decode(err[at + 1 :])[0] if at >= 0 else {}
    if run.returncode != 0 or not summary:
        print(f"soak: the runtime ended with {run.returncode}: {err.strip()[-2000:]}", flush=True)
    warm = [s for s in samples if s[0] >= 60] or samples
    growth = {
        "rss_growth_mb": round(warm[-1][1] - warm[0][1], 1),
        "open_files_growth": warm[-1][2] - warm[0][2],
        "threads_growth": warm[-1][3] - warm[0][3],
    }
    # The runtime's CPU a frame while frames arrived at the live rate (warm-up left out).
    cpu_ms = (
        (warm[-1][4] - warm[0][4]) / ((warm[-1][0] - warm[0][0]) * args.fps) * 1000
        if len(warm) > 1
        else None
    )
    from edge.runtime import disk

    estimate = disk.estimate(args.fps, hours, 0.0, study / "study.db")
    used = _study_bytes(study)
    disk_error = used / estimate.need_bytes - 1 if estimate else None
    whole = (
        summary.get("frames_stored") == count
        and summary.get("frames_inferred") == count
        and summary.get("frames_skipped") == 0
    )
    ok = (
        run.returncode == 0
        and whole
        and growth["rss_growth_mb"] <= RSS_BOUND_MB
        and growth["open_files_growth"] <= FILES_BOUND
        and growth["threads_growth"] <= THREADS_BOUND
        and disk_error is not None
        and abs(disk_error) <= DISK_BOUND
    )
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
                "late_by_minute": _late(study / "study.db", args.fps),
                "runtime_cpu_ms_per_frame": round(cpu_ms, 1) if cpu_ms is not None else None,
                "cpu_stolen_s": round(steal[-1] - steal[0], 1),
                "rss_mb_after_warmup": round(warm[0][1], 1),
                "threads_after_warmup": warm[0][3],
                **growth,
                "study_bytes": used,
                "estimate_bytes": estimate.need_bytes if estimate else None,
                "disk_vs_estimate": round(disk_error, 4) if disk_error is not None else None,
                "clock_jump": (
                    {"at_s": jumped_at, "by_s": args.clock_jump_s, **_order(study / "study.db")}
                    if args.clock_jump_at is not None
                    else None
                ),
                "bounds": {
                    "rss_growth_mb": RSS_BOUND_MB,
                    "open_files_growth": FILES_BOUND,
                    "threads_growth": THREADS_BOUND,
                    "disk_vs_estimate": DISK_BOUND,
                },
                "within_bounds": ok,
            },
            indent=1,
        )
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
