"""Byte transports for the host end, and the receive loop that drives a HostLink.

``SerialTransport`` opens anything pyserial's ``serial_for_url`` opens: /dev/ttyACM0 (USB
CDC-ACM), /dev/ttyUSB0 (a UART adapter), a pty, ``socket://host:port``, ``loop://``.
Measured with pyserial 3.5 on a pty: an unplug makes the next read raise at once (the
bytes still buffered are gone) while ``is_open`` stays true, so a read error, not
``is_open``, is what says the link is down.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import time
from collections.abc import Callable
from typing import Any, Protocol

from firmware_bridge.host import HostLink, ReceivedFrame
from firmware_bridge.outbox import Outbox

log = logging.getLogger(__name__)

READ_SIZE = 1 << 16
READ_BUDGET = 1 << 18  # bytes taken in one read() when they are already waiting
EMPTY_READS_DOWN = 3  # a tty readable this many times in a row with nothing to read is gone


class LinkDown(Exception):
    """The transport went away (unplugged, closed, reset)."""


class Transport(Protocol):
    name: str

    def open(self) -> None: ...
    def read(self) -> bytes: ...
    def write(self, data: memoryview) -> int:
        """As much of ``data`` as the wire takes now, without waiting for a peer that
        does not read; the bytes taken."""
        ...

    def close(self) -> None: ...


class SerialTransport:
    def __init__(self, url: str, baudrate: int = 921600, read_timeout: float = 0.05) -> None:
        self.name = url
        self.url = url
        self.baudrate = baudrate
        self.read_timeout = read_timeout
        self._port: Any = None
        self._fd: int | None = None
        self._empty_reads = 0

    def open(self) -> None:
        import serial  # pyserial: part of the edge profile

        try:
            # A device path is locked (flock) so that two programs never share a port.
            exclusive = {} if "://" in self.url else {"exclusive": True}
            self._port = serial.serial_for_url(
                self.url, baudrate=self.baudrate, timeout=0, **exclusive
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            reason = str(exc)
            if "lock" in reason.lower():
                reason = "busy: another program has it open"
            raise LinkDown(f"{self.url}: cannot open ({reason})") from None
        self._empty_reads = 0
        try:
            self._fd = self._port.fileno()
        except (AttributeError, OSError, serial.SerialException):
            self._fd = None  # loop:// and friends: poll instead
        if self._fd is None:
            self._port.timeout = self.read_timeout

    def read(self) -> bytes:
        import serial

        if self._port is None:
            raise LinkDown(f"{self.url}: not open")
        try:
            if self._fd is not None:
                # Wait for bytes here, then take all there are without blocking: a
                # blocking read of N bytes would wait for all N (pyserial's sockets).
                ready, _, _ = select.select([self._fd], [], [], self.read_timeout)
                if not ready:
                    return b""
                data = self._take()
                # A pty gives about 4 KiB a read: take what else is there already, so a
                # poll sees whole frames (and their storage shares one fsync).
                if data:
                    data = self._read_waiting(data)
            else:
                data = self._port.read(max(1, min(self._port.in_waiting, READ_SIZE)))
        except (serial.SerialException, OSError) as exc:
            self.close()
            raise LinkDown(f"{self.url}: {exc}") from None
        return data

    def _take(self) -> bytes:
        """One read of a port that polled readable. A socket that reads nothing is
        closed. A tty that reads nothing is unplugged, or was woken for nothing (seen
        once on a pty reopened under load, which pyserial takes for a disconnect): only
        EMPTY_READS_DOWN such reads in a row say the link is down."""
        import serial

        if self.url.startswith("socket://"):
            data: bytes = self._port.read(READ_SIZE)
            if not data:
                raise serial.SerialException("connection closed by the peer")
            return data
        assert self._fd is not None
        try:
            data = os.read(self._fd, READ_SIZE)
        except BlockingIOError:
            data = b""
        if data:
            self._empty_reads = 0
            return data
        self._empty_reads += 1
        if self._empty_reads >= EMPTY_READS_DOWN:
            raise serial.SerialException(
                f"ready to read {self._empty_reads} times but returned no data (unplugged?)"
            )
        return b""

    def _read_waiting(self, first: bytes) -> bytes:
        """``first`` and whatever is already waiting, up to READ_BUDGET bytes. A failure
        here leaves what was read intact: the next read() meets it again."""
        import serial

        parts = [first]
        total = len(first)
        fd = None if self.url.startswith("socket://") else self._fd
        with contextlib.suppress(serial.SerialException, OSError):
            while total < READ_BUDGET:
                more = self._port.read(READ_SIZE) if fd is None else os.read(fd, READ_SIZE)
                if not more:
                    break
                parts.append(more)
                total += len(more)
        return b"".join(parts)

    def write(self, data: memoryview) -> int:
        import serial

        if self._port is None or not data:
            return 0
        try:
            if self._fd is None:  # loop:// and friends never fill
                self._port.write(bytes(data))
                return len(data)
            _, ready, _ = select.select([], [self._fd], [], 0)
            if not ready:
                return 0
            try:
                return os.write(self._fd, data)
            except BlockingIOError:
                return 0
        except (serial.SerialException, OSError) as exc:
            self.close()
            raise LinkDown(f"{self.url}: {exc}") from None

    def close(self) -> None:
        if self._port is not None:
            with contextlib.suppress(Exception):
                self._port.close()
            self._port = None


class Receiver:
    """Reads a transport into a HostLink, writes its replies back, survives unplugs.

    ``poll()`` does one read and returns the frames it completed; the caller stores them
    and calls ``link.confirm(frame)``. A lost link is reopened with backoff (50 ms
    doubling to ``max_backoff``); the recorder introduces itself again with HELLO.
    """

    def __init__(
        self,
        transport: Transport,
        link: HostLink,
        *,
        max_backoff: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport = transport
        self.link = link
        self.max_backoff = max_backoff
        self.connected = False
        self.write_replies = True  # False: replies wait for flush()
        self.reconnects = 0
        self.outbox = Outbox()
        self._backoff = 0.05
        self._retry_at = 0.0
        self._clock = clock

    def poll(self) -> list[ReceivedFrame]:
        if not self.connected and not self._connect():
            return []
        try:
            data = self.transport.read()
            if data:
                self.link.receive(data)
            self._send(self.link.outgoing_messages() if self.write_replies else [])
        except LinkDown as exc:
            log.warning("link down: %s", exc)
            self._down()
        frames = []
        while (frame := self.link.take()) is not None:
            frames.append(frame)
        return frames

    def _connect(self) -> bool:
        now = self._clock()
        if now < self._retry_at:
            time.sleep(min(self._retry_at - now, 0.05))
            return False
        try:
            self.transport.open()
        except LinkDown as exc:
            log.info("%s; retrying in %.2f s", exc, self._backoff)
            self._retry_at = now + self._backoff
            self._backoff = min(self._backoff * 2, self.max_backoff)
            return False
        if self.reconnects or self.link.counters["disconnects"]:
            self.reconnects += 1
        self.connected = True
        self._backoff = 0.05
        return True

    def flush(self) -> None:
        """Send whatever the link has queued (ACKs after confirms, RESULTs)."""
        if self.connected:
            try:
                self._send(self.link.outgoing_messages())
            except LinkDown as exc:
                log.warning("link down: %s", exc)
                self._down()

    def _send(self, messages: list[bytes]) -> None:
        """Queue ``messages`` and send what the wire takes now (what waits from before
        first): a recorder that is not reading fills the outbox (bounded, counted),
        never stalls the reading."""
        dropped = self.outbox.dropped_bytes
        for message in messages:
            self.outbox.put(message)
        self.outbox.send(self.transport.write)
        if self.outbox.dropped_bytes > dropped:
            if not dropped:
                log.warning(
                    "the recorder is not reading replies: %d bytes of ACKs dropped "
                    "(it sends unacknowledged frames again)",
                    self.outbox.dropped_bytes,
                )
            self.link.counters["tx_bytes_dropped"] = self.outbox.dropped_bytes
            self.link.counters["tx_messages_dropped"] = self.outbox.dropped_messages

    def _down(self) -> None:
        self.connected = False
        self.link.on_disconnect()
        self._retry_at = self._clock()
        if unsent := self.outbox.clear():
            self.link.counters["tx_bytes_unsent_link_down"] += unsent

    def close(self, drain_s: float = 1.0) -> None:
        """Close the transport, having given the replies still waiting up to ``drain_s``
        to go out (the last ACKs of a study; those unsent are counted, and the recorder
        sends those frames again to the next host)."""
        deadline = time.monotonic() + drain_s
        with contextlib.suppress(LinkDown):
            while self.connected and self.outbox.queued and time.monotonic() < deadline:
                if not self.outbox.send(self.transport.write):
                    time.sleep(0.01)  # the wire is full: the recorder is reading, or not
        if unsent := self.outbox.clear():
            self.link.counters["tx_bytes_unsent_at_close"] += unsent
        self.transport.close()
