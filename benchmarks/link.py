"""The recorder link's efficiency and speed, over real ptys with the simulator.

    python -m benchmarks.link [--frames 60] [--size 30000] [--baud 921600]

1. Line efficiency: frames streamed through a pty at a UART's line rate (8N1: 10 bits a
   byte); useful payload delivered per second as a share of the line's byte rate, and
   the same share counted from the bytes the simulator put on the wire.
2. Parser throughput: frames streamed unthrottled; the host's time inside
   ``HostLink.receive`` (decode, CRCs, reassembly) per byte, and the end-to-end rate.
3. Bit errors (``--ber``, default 1e-4) at the line rate, with retransmission: how long
   the stream takes, and its longest stall (the longest wait between two frames
   delivered: the recorder out of credit while a damaged frame waits to be asked for).

    python -m benchmarks.link --only ber --ber-frames 100
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edge.cli.simulate import spawn_simulator
from firmware_bridge.host import HostLink
from firmware_bridge.transport import Receiver, SerialTransport


def stream(count: int, size: int, *sim_args: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "truth.json"
        cmd = [
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
        proc, path = spawn_simulator(*cmd, stderr=None)
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
        stall = 0.0  # the longest wait for the next frame, from the start
        no_credit = longest_no_credit = 0.0  # time the recorder had no credit left
        started = time.perf_counter()
        since: float | None = None
        before = started
        while proc.poll() is None:
            frames = receiver.poll()
            now = time.perf_counter()
            if link.session is not None and link.credits == 0:
                since = now if since is None else since
                no_credit += now - before
                longest_no_credit = max(longest_no_credit, now - since)
            else:
                since = None
            before = now
            for frame in frames:
                first = first if first is not None else now
                stall = max(stall, now - (last or started))
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
        "longest_stall_s": stall,
        "total_seconds": last - started if last else 0.0,
        "no_credit_s": no_credit,
        "longest_no_credit_s": longest_no_credit,
        "ledger": dict(link.ledger.counts()),
        "requests": link.counters["tx_nack"] + link.counters["tx_ack"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--frames", type=int, default=60, help="frames for the line-rate run")
    p.add_argument("--fast-frames", type=int, default=2000, help="frames for the fast run")
    p.add_argument("--size", type=int, default=30_000)
    p.add_argument("--baud", type=int, default=921_600)
    p.add_argument("--ber", type=float, default=1e-4, help="bit-error rate of the third run")
    p.add_argument("--ber-frames", type=int, default=100, help="frames for the bit-error run")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--only", choices=["line", "fast", "ber"], help="one run only")
    args = p.parse_args(argv)
    if args.only in (None, "line"):
        _line(args)
    if args.only in (None, "fast"):
        _fast(args)
    if args.only in (None, "ber"):
        _ber(args)
    return 0


def _ber(args: argparse.Namespace) -> None:
    run = stream(
        args.ber_frames,
        args.size,
        *("--fps", "0", "--baud", str(args.baud), "--ber", str(args.ber)),
        *("--seed", str(args.seed)),
    )
    total = run["total_seconds"]
    useful = run["frames"] * args.size / total if total else 0.0
    print(
        f"bit-error rate {args.ber:g} at {args.baud} baud, {run['frames']} frames of "
        f"{args.size} bytes (seed {args.seed}):"
    )
    print(
        f"  {total:.2f} s to the last frame, payload {useful / (args.baud / 10):.1%} of the "
        f"line; longest wait for a frame {run['longest_stall_s']:.2f} s; recorder without "
        f"credit {run['no_credit_s']:.2f} s in all, {run['longest_no_credit_s']:.2f} s at most"
    )
    print(f"  ledger {run['ledger']}, {run['requests']} ACK/NACKs sent")


def _line(args: argparse.Namespace) -> None:

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


def _fast(args: argparse.Namespace) -> None:
    fast = stream(args.fast_frames, args.size, "--fps", "0")
    parse = fast["wire_bytes"] / fast["parse_seconds"] / 1e6 if fast["parse_seconds"] else 0.0
    end = fast["payload_bytes"] / fast["seconds"] / 1e6 if fast["seconds"] else 0.0
    print(f"unthrottled pty, {fast['frames']} frames of {args.size} bytes:")
    print(f"  host parser (decode, CRCs, reassembly) {parse:.0f} MB/s of wire bytes")
    print(f"  end to end (simulator encoding in another process) {end:.1f} MB/s of payload")


if __name__ == "__main__":
    sys.exit(main())
