"""The recorder link's efficiency and speed, over real ptys with the simulator.

    python -m benchmarks.link [--frames 60] [--size 30000] [--baud 921600]

1. Line efficiency: frames streamed through a pty at a UART's line rate (8N1: 10 bits a
   byte); useful payload delivered per second as a share of the line's byte rate, and
   the same share counted from the bytes the simulator put on the wire.
2. Parser throughput: frames streamed unthrottled; the host's time inside
   ``HostLink.receive`` (decode, CRCs, reassembly) per byte, and the end-to-end rate.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from firmware_bridge.host import HostLink
from firmware_bridge.transport import Receiver, SerialTransport


def stream(count: int, size: int, *sim_args: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "truth.json"
        cmd = [
            sys.executable,
            "-m",
            "edge.cli",
            "simulate",
            "--count",
            str(count),
            "--size",
            str(size),
            "--log",
            str(log),
            "--linger",
            "2",
            *sim_args,
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        path = proc.stdout.readline().strip()
        link = HostLink()
        receiver = Receiver(SerialTransport(path), link)
        parse_s = 0.0
        delivered = 0
        first: float | None = None
        last = 0.0
        original = link.receive

        def timed(data: bytes) -> None:
            nonlocal parse_s
            t0 = time.perf_counter()
            original(data)
            parse_s += time.perf_counter() - t0

        link.receive = timed  # type: ignore[method-assign]
        while proc.poll() is None:
            for frame in receiver.poll():
                now = time.perf_counter()
                first = first if first is not None else now
                last = now
                delivered += 1
                link.confirm(frame)
            receiver.flush()
        receiver.close()
        truth = json.loads(log.read_text())
    wire_bytes = link.decoder.counters.bytes_in
    seconds = last - (first or last)
    return {
        "frames": delivered,
        "payload_bytes": delivered * size,
        "wire_bytes": wire_bytes,
        "sent_bytes": truth["bytes_sent"],
        "seconds": seconds,
        "parse_seconds": parse_s,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--frames", type=int, default=60, help="frames for the line-rate run")
    p.add_argument("--fast-frames", type=int, default=2000, help="frames for the fast run")
    p.add_argument("--size", type=int, default=30_000)
    p.add_argument("--baud", type=int, default=921_600)
    args = p.parse_args(argv)

    line = stream(args.frames, args.size, "--fps", "0", "--baud", str(args.baud))
    byte_rate = args.baud / 10
    # The first frame's time is not in ``seconds``: count the frames after it.
    useful = (line["frames"] - 1) * args.size / line["seconds"] if line["seconds"] else 0.0
    print(
        f"line rate {args.baud} baud (8N1, {byte_rate:.0f} bytes/s), {line['frames']} "
        f"frames of {args.size} bytes:"
    )
    print(f"  payload delivered {useful:,.0f} bytes/s = {useful / byte_rate:.1%} of the line")
    print(f"  payload / bytes on the wire = {line['payload_bytes'] / line['sent_bytes']:.1%}")

    fast = stream(args.fast_frames, args.size, "--fps", "0")
    parse = fast["wire_bytes"] / fast["parse_seconds"] / 1e6 if fast["parse_seconds"] else 0.0
    end = fast["payload_bytes"] / fast["seconds"] / 1e6 if fast["seconds"] else 0.0
    print(f"unthrottled pty, {fast['frames']} frames of {args.size} bytes:")
    print(f"  host parser (decode, CRCs, reassembly) {parse:.0f} MB/s of wire bytes")
    print(f"  end to end (simulator encoding in another process) {end:.1f} MB/s of payload")
    return 0


if __name__ == "__main__":
    sys.exit(main())
