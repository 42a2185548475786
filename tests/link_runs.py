"""A recorder simulator streaming to a HostLink over a real pty, for the link tests."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edge.cli.simulate import spawn_simulator
from firmware_bridge.host import HostLink, ReceivedFrame
from firmware_bridge.ledger import Outcome
from firmware_bridge.protocol import Result
from firmware_bridge.simulator import frame_bytes
from firmware_bridge.transport import Receiver, SerialTransport

DEADLINE_S = 240
pytestmark = pytest.mark.slow  # the simulator in a process of its own, on ptys


@dataclass
class LinkRun:
    link: HostLink
    receiver: Receiver
    truth: dict
    frames: dict[tuple[int, int], ReceivedFrame] = field(default_factory=dict)
    corrupt: int = 0
    duplicates: int = 0
    credit_ran_out: bool = False
    peak_held: int = 0

    def outcomes(self, session: int = 1) -> dict[int, tuple[Outcome, str | None]]:
        ledger = self.link.ledger.sessions[session]
        return {i: (ledger.outcome(i), ledger.reasons.get(i)) for i in range(len(ledger.outcomes))}


def run_link(
    tmp_path: Path,
    *sim_args: str,
    count: int,
    size: int = 30_000,
    retransmit: bool = True,
    stall_until_dropped: bool = False,
    stall_until_no_credit: bool = False,
    capacity: int = 64,
    seed: int = 0,
    synthetic: bool = True,
    results: Callable[[ReceivedFrame], Result] | None = None,
    class_names: tuple[list[str], list[str]] | None = None,
) -> LinkRun:
    """Stream ``count`` synthetic frames from the simulator to a HostLink over a pty."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    log = tmp_path / "truth.json"
    symlink = tmp_path / "ttyRECORDER"
    cmd = [
        "--pty",
        str(symlink),
        "--count",
        str(count),
        "--size",
        str(size),
        "--log",
        str(log),
        # How long the recorder waits for a host that makes no progress before it gives
        # up. Runs end when everything is acknowledged; 3 s cut 5 of 50 runs short with
        # both cores of this VM kept busy by other work, 10 s none of 25.
        "--linger",
        "10",
        "--seed",
        str(seed),
        *sim_args,
    ]
    if not retransmit:
        cmd.append("--no-retransmit")
    proc, address = spawn_simulator(*cmd)
    assert address == str(symlink)
    link = HostLink(retransmit=retransmit, capacity=capacity, results=results is not None)
    if class_names is not None:
        link.set_classes(*class_names)
    run = LinkRun(link, Receiver(SerialTransport(str(symlink)), link), {})
    deadline = time.monotonic() + DEADLINE_S
    held: list[ReceivedFrame] = []
    try:
        while proc.poll() is None:
            assert time.monotonic() < deadline, "the link did not finish"
            frames = run.receiver.poll()
            run.peak_held = max(run.peak_held, link.held_bytes())
            for frame in frames:
                key = (frame.session, frame.index)
                if key in run.frames:
                    run.duplicates += 1
                run.frames[key] = frame
                if synthetic and frame.data != frame_bytes(seed, frame.index, size):
                    run.corrupt += 1
                held.append(frame)
            if stall_until_no_credit and link.credits == 0:
                stall_until_no_credit = False  # seen the recorder run out: resume
                run.credit_ran_out = True
            stalled = (stall_until_dropped and not link.counters["drops"]) or stall_until_no_credit
            if not stalled:
                for frame in held:
                    link.confirm(frame)
                run.receiver.flush()
                # Findings come after the frames are stored and acknowledged, as in the
                # runtime: the recorder waits for them.
                for frame in held if results is not None else ():
                    link.send_result(frame, results(frame))
                held.clear()
            run.receiver.flush()
        # What the simulator sent last (its closing heartbeat) may still be in the pty.
        for _ in range(5):
            for frame in run.receiver.poll():
                run.frames[(frame.session, frame.index)] = frame
                link.confirm(frame)
    finally:
        if proc.poll() is None:
            proc.kill()
        run.receiver.close()
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err[-2000:]
    # Memory stays bounded by what the window and the credits allow, never by the study.
    assert run.peak_held <= (capacity + 8) * size + link.decoder.max_token
    run.truth = json.loads(log.read_text())
    return run
