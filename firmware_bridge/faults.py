"""Seeded, composable line faults for the recorder simulator, with a ground truth.

Faults act on the recorder's outgoing messages as they go onto the wire. Every message
that any fault touched is recorded by frame index, so a test can compare the host's
ledger with what really happened. With the leading delimiter every message carries,
damage never spreads beyond the message it hits.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from firmware_bridge.protocol import MessageType
from firmware_bridge.recorder import Outgoing


@dataclass(frozen=True)
class Faults:
    ber: float = 0.0  # bit-error rate on every byte sent
    burst_rate: float = 0.0  # per message: a noise burst overwrites part of it
    burst_len: int = 64
    drop_rate: float = 0.0  # per byte: the byte vanishes
    insert_rate: float = 0.0  # per byte: a random byte appears after it
    truncate_rate: float = 0.0  # per chunk message: cut in the middle
    duplicate_rate: float = 0.0  # per chunk message: sent twice
    reorder_rate: float = 0.0  # per chunk message: swapped with the next chunk of its frame
    seed: int = 0

    @property
    def any(self) -> bool:
        return any(
            (
                self.ber,
                self.burst_rate,
                self.drop_rate,
                self.insert_rate,
                self.truncate_rate,
                self.duplicate_rate,
                self.reorder_rate,
            )
        )


@dataclass
class GroundTruth:
    damaged: set[int] = field(default_factory=set)  # frames with a damaged message
    truncated: set[int] = field(default_factory=set)
    duplicated: int = 0
    reordered: int = 0
    bursts: int = 0
    bytes_sent: int = 0


class FaultInjector:
    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.truth = GroundTruth()
        self._rng = random.Random(faults.seed)

    def apply(self, messages: list[Outgoing]) -> bytes:
        """The bytes that go on the wire for ``messages``."""
        f = self.faults
        if not f.any:
            data = b"".join(m.data for m in messages)
            self.truth.bytes_sent += len(data)
            return data
        rng = self._rng
        messages = list(messages)
        i = 0
        out = bytearray()
        while i < len(messages):
            m = messages[i]
            if m.type == MessageType.CHUNK:
                if f.reorder_rate and rng.random() < f.reorder_rate and i + 1 < len(messages):
                    nxt = messages[i + 1]
                    if nxt.type == MessageType.CHUNK and nxt.frame == m.frame:
                        messages[i], messages[i + 1] = nxt, m
                        m = nxt
                        self.truth.reordered += 1
                if f.duplicate_rate and rng.random() < f.duplicate_rate:
                    messages.insert(i + 1, m)
                    self.truth.duplicated += 1
            out += self._damage(m)
            i += 1
        self.truth.bytes_sent += len(out)
        return bytes(out)

    def _damage(self, m: Outgoing) -> bytes:
        f, rng = self.faults, self._rng
        data = bytearray(m.data)
        touched = False
        if (
            f.truncate_rate
            and m.type == MessageType.CHUNK
            and rng.random() < f.truncate_rate
            and len(data) > 40
        ):
            # Cut after the header (so the host can tell which chunk), before the end.
            data = data[: rng.randrange(40, len(data) - 1)]
            touched = True
            if m.frame is not None:
                self.truth.truncated.add(m.frame)
        if f.burst_rate and rng.random() < f.burst_rate:
            # Noise over the line: burst_len random bytes replace what was there.
            start = rng.randrange(len(data))
            data[start : start + f.burst_len] = rng.randbytes(f.burst_len)[: len(data) - start]
            self.truth.bursts += 1
            touched = True
        if f.ber:
            bits = len(data) * 8
            position = -1
            while True:
                position += int(rng.expovariate(f.ber)) + 1
                if position >= bits:
                    break
                data[position // 8] ^= 1 << (position % 8)
                touched = True
        if f.drop_rate or f.insert_rate:
            changed = bytearray()
            for byte in data:
                if f.drop_rate and rng.random() < f.drop_rate:
                    touched = True
                    continue
                changed.append(byte)
                if f.insert_rate and rng.random() < f.insert_rate:
                    changed.append(rng.randrange(256))
                    touched = True
            data = changed
        if touched and m.frame is not None:
            self.truth.damaged.add(m.frame)
        return bytes(data)
