"""A recorder simulator: streams frames over a pty it creates (or a TCP socket) at a
given rate, honouring ACK/NACK/credits, with seeded faults and a ground-truth log.

    capsule-edge simulate [--pty LINK | --listen PORT] [--count N] [--fps F] [--ber P] ...

With ``--pty``, the device path is printed on the first line of stdout (and a stable
symlink is kept at LINK if given, which follows the pty across simulated unplugs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from firmware_bridge.faults import FaultInjector, Faults
from firmware_bridge.feeds import frame_bytes as frame_bytes  # re-exported for the tests
from firmware_bridge.protocol import (
    UART_MAX_CHUNK,
    VERSION,
    ClassList,
    MessageType,
    ResultStatus,
    crc32,
)
from firmware_bridge.recorder import Outgoing, Policy, Recorder
from firmware_bridge.stream import LinkError, StreamDecoder
from firmware_bridge.wires import Wire, WireStalled

HELLO_RETRY_S = 0.2
HEARTBEAT_S = 0.25


@dataclass
class Plan:
    """What the simulated study does besides sending frames."""

    count: int = 100
    fps: float = 0.0  # 0: as fast as the link and the host's credits allow
    retransmit: bool = True  # False: the recorder ignores NACKs (a link without them)
    unplug_at: list[int] = field(default_factory=list)  # in the middle of these frames
    reboot_at: list[int] = field(default_factory=list)  # in the middle of these frames
    stall_at: list[int] = field(default_factory=list)  # go quiet after these frames
    stall_s: float = 2.0  # for this long (it still listens)
    line_rate: float = 0.0  # bytes per second on the wire, 0: unlimited
    # How long to go on without hearing from the host (no HELLO_ACK, ACK, NACK, RESULT):
    # then the recorder gives up (``Simulator.gave_up``). Also how long to wait, once
    # everything is acknowledged, for RESULTs a host said it would send.
    linger_s: float = 10.0


@dataclass
class FrameRecord:
    session: int
    index: int
    size: int
    crc: int


class Simulator:
    def __init__(
        self,
        wire: Wire,
        frames: Iterator[tuple[bytes, int, int, int]],
        plan: Plan,
        faults: Faults | None = None,
        *,
        chunk: int = UART_MAX_CHUNK,
        window: int = 64,
        policy: Policy = Policy.WAIT,
        session: int = 1,
        log: Path | None = None,
        version: int = VERSION,
    ) -> None:
        self.wire = wire
        self.frames = frames
        self.plan = plan
        self.injector = FaultInjector(faults or Faults())
        self.chunk, self.window, self.policy = chunk, window, policy
        self.version = version
        self.recorder = self._new_recorder(session)
        self.sessions = [self.recorder]
        self.log = log
        self.sent: list[FrameRecord] = []
        self._decoder = StreamDecoder(4096)
        self._stopped = False
        self.gave_up: str | None = None  # why the run ended before its end, if it did
        self._heard = time.monotonic()  # when the host last said anything
        self._last_result = time.monotonic()

    def _new_recorder(self, session: int) -> Recorder:
        return Recorder(
            session,
            max_chunk=self.chunk,
            window=self.window,
            policy=self.policy,
            retransmit=self.plan.retransmit,
            version=self.version,
        )

    def stop(self) -> None:
        self._stopped = True

    def _pump_replies(self, timeout: float) -> None:
        data = self.wire.read(timeout)
        for event in self._decoder.feed(data) if data else []:
            if isinstance(event, LinkError):
                continue
            self._heard = time.monotonic()
            if event.type == MessageType.RESULT:
                self._last_result = self._heard
            self.recorder.on_message(event)

    def _send(self, messages: list[Outgoing]) -> None:
        data = self.injector.apply(messages)
        if self.plan.line_rate:
            # A UART takes this long to shift the bytes out; listen meanwhile.
            done = time.monotonic() + len(data) / self.plan.line_rate
            self.wire.write(data)
            while (left := done - time.monotonic()) > 0:
                self._pump_replies(left)
        else:
            self.wire.write(data)

    def run(self) -> list[FrameRecord]:
        self._heard = time.monotonic()
        try:
            self._loop()
        except WireStalled as exc:
            self.gave_up = f"{exc} (--linger); giving up"
        with contextlib.suppress(WireStalled):
            self._send([self.recorder.heartbeat()])
        if self.log is not None:
            self.write_log(self.log)
        return self.sent

    def _loop(self) -> None:
        plan = self.plan
        captured = 0
        next_capture = time.monotonic()
        last_hello = last_beat = 0.0
        unplug_at, reboot_at = set(plan.unplug_at), set(plan.reboot_at)
        stall_at = set(plan.stall_at)
        while not self._stopped:
            now = time.monotonic()
            rec = self.recorder
            if now - self._heard > plan.linger_s:
                # Nobody answers: a recorder would keep trying, a simulator gives up.
                self.gave_up = self._why_give_up(now - self._heard)
                break
            # Capture at the frame rate (or whenever there is room when unthrottled).
            while captured < plan.count and (
                (plan.fps and now >= next_capture)
                or (not plan.fps and rec.unacknowledged + 4 < rec.window)
            ):
                data, codec, w, h = next(self.frames)
                index = rec.capture(data, codec, w, h, int(now * 1e6))
                self.sent.append(FrameRecord(rec.session, index, len(data), crc32(data)))
                captured += 1
                next_capture += 1 / plan.fps if plan.fps else 0
                if not plan.fps and rec.queued > 2:  # keep the queue short
                    break
            if rec.needs_hello:
                if now - last_hello >= HELLO_RETRY_S:
                    self._send([rec.hello()])
                    last_hello = now
                self._pump_replies(0.02)
                continue
            messages = rec.next_messages()
            if messages:
                frame = messages[-1].frame
                cut = frame is not None and messages[-1].type == MessageType.META
                if cut and frame in unplug_at:
                    # Pull the cable in the middle of the frame.
                    unplug_at.discard(frame)
                    self._send(messages[: len(messages) // 2])
                    self.wire.unplug()
                    rec.reconnected()
                elif cut and frame in reboot_at:
                    # Reboot in the middle of the frame: a new session, the RAM is gone.
                    reboot_at.discard(frame)
                    self._send(messages[: len(messages) // 2])
                    self.recorder = self._new_recorder(rec.session + 1)
                    self.sessions.append(self.recorder)
                else:
                    self._send(messages)
                if cut and frame in stall_at:
                    # The recorder goes quiet (busy, brown-out) but keeps listening.
                    stall_at.discard(frame)
                    until = time.monotonic() + plan.stall_s
                    while (left := until - time.monotonic()) > 0:
                        self._pump_replies(left)
                    self._heard = max(self._heard, time.monotonic())  # quiet by choice
                self._pump_replies(0.0)
                continue
            if now - last_beat >= HEARTBEAT_S:
                self._send([rec.heartbeat()])
                last_beat = now
            if captured >= plan.count and rec.idle and self._results_done(now):
                break
            wait = (next_capture - now) if plan.fps and captured < plan.count else HEARTBEAT_S
            self._pump_replies(max(0.0, min(wait, HEARTBEAT_S)))

    def _results_done(self, now: float) -> bool:
        """Every frame sent has its RESULT, if the host said it would send them; a
        frame the host lost has none, so give up waiting linger_s after the last."""
        rec = self.recorder
        if not rec.host_sends_results or now - self._last_result > self.plan.linger_s:
            return True
        sent = {r.index for r in self.sent if r.session == rec.session}
        return sent - set(rec.drops) <= set(rec.results)

    def _why_give_up(self, silent: float) -> str:
        rec = self.recorder
        if rec.needs_hello or rec.chunk_size == 0:
            waiting = "its HELLO is unanswered"
        else:
            waiting = (
                f"{rec.unacknowledged} frames unacknowledged, {rec.queued} not yet sent, "
                f"{self.plan.count - len(self.sent)} not yet captured"
            )
        return f"no reply from the host for {silent:.1f} s (--linger); giving up: {waiting}"

    def write_log(self, path: Path) -> None:
        truth = self.injector.truth
        drops = {
            f"{r.session}:{i}": reason.name.lower()
            for r in self.sessions
            for i, reason in r.drops.items()
        }
        doc = {
            "frames": [[r.session, r.index, r.size, r.crc] for r in self.sent],
            "damaged": sorted(truth.damaged),
            "truncated": sorted(truth.truncated),
            "dropped": drops,
            "duplicated": truth.duplicated,
            "reordered": truth.reordered,
            "bursts": truth.bursts,
            "bytes_sent": truth.bytes_sent,
            "sessions": [r.session for r in self.sessions],
            "results": {
                f"{r.session}:{i}": [res.class_id, round(res.confidence, 4), len(res.boxes)]
                for r in self.sessions
                for i, res in sorted(r.results.items())
            },
            # Each RESULT's boxes: [class id, its name from the host's CLASSES or null].
            "result_boxes": {
                f"{r.session}:{i}": [
                    [b.class_id, r.class_name(ClassList.BOX, b.class_id)] for b in res.boxes
                ]
                for r in self.sessions
                for i, res in sorted(r.results.items())
            },
            # Per session: RESULTs by status, RESULTs for a frame that had one already,
            # and the class names the host sent (by list: "frame", "box").
            "result_status": {
                f"{r.session}:{i}": _status_name(res.status)
                for r in self.sessions
                for i, res in sorted(r.results.items())
            },
            "result_counts": {r.session: dict(r.counters.results) for r in self.sessions},
            "result_repeats": {r.session: r.counters.result_repeats for r in self.sessions},
            "classes": {
                r.session: {ClassList(k).name.lower(): v for k, v in r.classes.items()}
                for r in self.sessions
            },
            "alerts": [  # findings the host confirmed, at the frame that confirmed each
                {"frame": f"{r.session}:{frame}", **dataclasses.asdict(alert)}
                for r in self.sessions
                for frame, alert in r.alerts
            ],
            "gave_up": self.gave_up,
            # Per session: every index below this was acknowledged (the host stored it).
            "acked_below": {r.session: r.acked_next for r in self.sessions},
        }
        path.write_text(json.dumps(doc) + "\n", encoding="utf-8")


def _status_name(status: int) -> str:
    known = ResultStatus._value2member_map_.get(status)
    return known.name.lower() if isinstance(known, ResultStatus) else f"status_{status}"
