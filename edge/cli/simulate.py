"""``capsule-edge simulate``: the recorder simulator on the command line."""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from edge.cli.feeds import mucosa_frames, video_frames
from edge.errors import BadInputError
from firmware_bridge.faults import Faults
from firmware_bridge.feeds import folder_frames, mixed_frames, synthetic_frames
from firmware_bridge.protocol import UART_MAX_CHUNK, VERSION, VERSIONS
from firmware_bridge.recorder import Policy
from firmware_bridge.simulator import Plan, Simulator
from firmware_bridge.wires import PtyWire, SocketWire


def _indices(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected frame indices like 10,250: {text!r}") from None


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a rate between 0 and 1, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"a positive number of seconds, got {value}")
    return value


def cmd_simulate(args: argparse.Namespace) -> int:
    wire: PtyWire | SocketWire
    wire = (
        SocketWire(args.listen)
        if args.listen is not None
        else PtyWire(args.pty_link, stall_s=args.linger)
    )
    link = args.pty_link if args.listen is None and args.pty_link else None
    print(str(link) if link else wire.path, flush=True)
    if args.frames:
        for folder in args.frames:
            if not folder.is_dir():
                print(f"capsule-edge: {folder}: no such folder", file=sys.stderr)
                return 2
        try:
            frames = (
                folder_frames(args.frames[0])
                if len(args.frames) == 1 and not args.loop
                else mixed_frames(args.frames)
            )
            first = next(frames)
        except (ValueError, StopIteration):
            print(
                f"capsule-edge: no image files in {' '.join(map(str, args.frames))}",
                file=sys.stderr,
            )
            return 2
        frames = itertools.chain([first], frames)
    elif args.mucosa:
        frames = mucosa_frames(args.seed)
    elif args.video is not None:
        try:
            frames = video_frames(args.video)
            first = next(frames)
        except (ValueError, StopIteration):
            print(f"capsule-edge: {args.video}: no frames OpenCV can read", file=sys.stderr)
            return 2
        frames = itertools.chain([first], frames)
    else:
        frames = synthetic_frames(args.size, args.seed)
    faults = Faults(
        ber=args.ber,
        burst_rate=args.burst_rate,
        burst_len=args.burst_len,
        drop_rate=args.drop_rate,
        insert_rate=args.insert_rate,
        truncate_rate=args.truncate_rate,
        duplicate_rate=args.duplicate_rate,
        reorder_rate=args.reorder_rate,
        seed=args.seed,
    )
    plan = Plan(
        count=args.count,
        fps=args.fps,
        retransmit=not args.no_retransmit,
        unplug_at=args.unplug_at,
        reboot_at=args.reboot_at,
        stall_at=args.stall_at,
        stall_s=args.stall_s,
        line_rate=args.baud / 10 if args.baud else 0.0,
        linger_s=args.linger,
    )
    sim = Simulator(
        wire,
        frames,
        plan,
        faults,
        chunk=args.chunk,
        window=args.window,
        policy=Policy(args.policy),
        session=args.session,
        log=args.log,
        version=args.protocol,
    )
    try:
        sent = sim.run()
    except KeyboardInterrupt:
        sent = sim.sent
    finally:
        wire.close()
    if sim.gave_up:
        print(f"capsule-edge: simulate: {sim.gave_up}", file=sys.stderr)
        return 1
    summary: dict[str, Any] = {
        "frames_sent": len(sent),
        "bytes_on_wire": sim.injector.truth.bytes_sent,
        "damaged_frames": len(sim.injector.truth.damaged),
        "dropped": {r.session: len(r.drops) for r in sim.sessions},
        "results": {r.session: dict(r.counters.results) for r in sim.sessions},
    }
    print(json.dumps(summary), file=sys.stderr)
    return 0


def add_parsers(sub: Any) -> None:
    s = sub.add_parser(
        "simulate", help="a recorder streaming frames over a pty or socket, with faults"
    )
    where = s.add_mutually_exclusive_group()
    where.add_argument(
        "--pty",
        dest="pty_link",
        type=Path,
        nargs="?",
        const=None,
        help="serve on a new pty (default); with a path, keep a symlink to it there",
    )
    where.add_argument("--listen", type=int, help="serve on TCP 127.0.0.1:PORT (0: any)")
    s.add_argument("--count", type=int, default=100, help="frames to send")
    s.add_argument("--fps", type=float, default=5.0, help="capture rate (0: as fast as it goes)")
    s.add_argument("--size", type=int, default=30_000, help="synthetic frame size in bytes")
    s.add_argument(
        "--frames",
        type=Path,
        nargs="+",
        help="send the image files of this folder (several: one from each in turn, repeating)",
    )
    s.add_argument("--loop", action="store_true", help="repeat the --frames files as needed")
    s.add_argument("--mucosa", action="store_true", help="synthetic mucosa-coloured JPEG frames")
    s.add_argument("--video", type=Path, help="send the frames of this video (as JPEG)")
    s.add_argument("--chunk", type=int, default=UART_MAX_CHUNK, help="largest chunk payload")
    s.add_argument("--window", type=int, default=64, help="unacknowledged frames kept")
    s.add_argument(
        "--policy",
        choices=[p.value for p in Policy],
        default="wait",
        help="without credits: wait (queue) or drop captured frames",
    )
    s.add_argument("--no-retransmit", action="store_true", help="ignore NACKs")
    s.add_argument("--baud", type=int, default=0, help="limit the line rate (8N1), e.g. 921600")
    s.add_argument("--session", type=int, default=1, help="first recorder session id")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--ber", type=_rate, default=0.0, help="bit-error rate")
    s.add_argument("--burst-rate", type=_rate, default=0.0, help="noise burst per message")
    s.add_argument("--burst-len", type=int, default=64)
    s.add_argument("--drop-rate", type=_rate, default=0.0, help="byte drops per byte")
    s.add_argument("--insert-rate", type=_rate, default=0.0, help="byte insertions per byte")
    s.add_argument("--truncate-rate", type=_rate, default=0.0, help="chunks cut short")
    s.add_argument("--duplicate-rate", type=_rate, default=0.0, help="chunks sent twice")
    s.add_argument("--reorder-rate", type=_rate, default=0.0, help="chunks swapped")
    s.add_argument("--unplug-at", type=_indices, default=[], help="unplug after these frames")
    s.add_argument("--reboot-at", type=_indices, default=[], help="reboot after these frames")
    s.add_argument("--stall-at", type=_indices, default=[], help="go quiet after these frames")
    s.add_argument("--stall-s", type=float, default=2.0, help="how long each stall lasts")
    s.add_argument(
        "--linger",
        type=_seconds,
        default=10.0,
        help="give up (exit 1) after this many seconds without a word from the host",
    )
    s.add_argument(
        "--protocol",
        type=int,
        choices=VERSIONS,
        default=VERSION,
        help=f"protocol version to speak (default {VERSION})",
    )
    s.add_argument("--log", type=Path, help="write the ground truth (JSON) here")
    s.set_defaults(func=cmd_simulate)


def spawn_simulator(
    *args: str,
    python: str = sys.executable,
    cwd: Path | None = None,
    stderr: int | None = subprocess.PIPE,
    own_session: bool = False,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[str], str]:
    """``capsule-edge simulate ARGS`` in a process of its own, once it is listening: the
    process and the address it printed first (a pty's path, or ``socket://`` with
    ``--listen``). ``own_session``: a Ctrl-C meant for the caller does not reach it.
    BadInputError, with its last line, if it did not start."""
    proc = subprocess.Popen(
        [python, "-m", "edge.cli", "simulate", *args],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        cwd=cwd,
        start_new_session=own_session,
        env=env,
    )
    assert proc.stdout is not None
    address = proc.stdout.readline().strip()
    if not address:
        said = proc.stderr.read().strip().splitlines() if proc.stderr else []
        proc.wait()
        raise BadInputError(f"the recorder simulator did not start: {(said or ['no message'])[-1]}")
    return proc, address
