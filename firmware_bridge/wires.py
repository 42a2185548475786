"""The simulator's end of the wire: a pty it creates (optionally behind a stable symlink
that follows it across simulated unplugs) or a TCP socket it listens on."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import time
import tty
from pathlib import Path
from typing import Protocol


class Wire(Protocol):
    def write(self, data: bytes) -> None: ...
    def read(self, timeout: float) -> bytes: ...
    def unplug(self) -> None: ...
    def close(self) -> None: ...


class WireStalled(Exception):
    """The host has stopped reading: nothing could be written for ``stall_s``."""


class PtyWire:
    """The recorder's end of a pseudo-terminal; the host opens ``path`` as a serial port.

    ``link`` (optional) is a symlink kept pointing at the current pty, so a host can
    reopen the same name after an unplug, as udev names a USB serial adapter. A pty
    blocks once its buffer is full (about 20 KiB); a host that has gone for ``stall_s``
    raises WireStalled rather than holding the recorder forever. While a write waits,
    the host's replies are still taken in (as a UART's receive interrupt would), so a
    host that is itself waiting to write is never deadlocked against it.
    """

    def __init__(self, link: Path | None = None, stall_s: float = 10.0) -> None:
        self.link = link
        self.stall_s = stall_s
        self._inbox = bytearray()  # replies taken in while a write waited
        self._open()

    def _open(self) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        tty.setraw(self.master)
        os.set_blocking(self.master, False)  # a tty write blocks until all of it is taken
        self.path = os.ttyname(self._slave)
        if self.link is not None:
            tmp = self.link.with_name(self.link.name + ".new")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(self.path)
            tmp.replace(self.link)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        progress = time.monotonic()
        while view:
            readable, ready, _ = select.select([self.master], [self.master], [], 1.0)
            if readable:
                if got := self._read_now():
                    self._inbox += got
                elif not ready:  # no host on the other side (a hang-up reads as readable)
                    _, ready, _ = select.select([], [self.master], [], 1.0)
            written = 0
            if ready:
                with contextlib.suppress(BlockingIOError):
                    written = os.write(self.master, view)
            if written:
                view = view[written:]
                progress = time.monotonic()
            elif time.monotonic() - progress > self.stall_s:
                raise WireStalled(f"the host has read nothing for {self.stall_s:.1f} s")

    def read(self, timeout: float) -> bytes:
        if self._inbox:
            taken, self._inbox = bytes(self._inbox), bytearray()
            return taken
        ready, _, _ = select.select([self.master], [], [], max(0.0, timeout))
        return self._read_now() if ready else b""

    def _read_now(self) -> bytes:
        try:
            return os.read(self.master, 65536)
        except OSError:  # the host side is not open (yet)
            return b""

    def unplug(self) -> None:
        """Pull the cable: this pty disappears and a new one takes its place."""
        self.close()
        self._inbox.clear()  # what the old host said goes with the cable
        self._open()

    def close(self) -> None:
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class SocketWire:
    """A TCP listener; the host connects with ``socket://host:port``."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self._server = socket.create_server((host, port))
        self.port = self._server.getsockname()[1]
        self.path = f"socket://{host}:{self.port}"
        self._conn: socket.socket | None = None

    def _connection(self, timeout: float) -> socket.socket | None:
        if self._conn is None:
            ready, _, _ = select.select([self._server], [], [], timeout)
            if ready:
                self._conn, _ = self._server.accept()
        return self._conn

    def write(self, data: bytes) -> None:
        conn = self._connection(1.0)
        if conn is not None:
            try:
                conn.sendall(data)
            except OSError:
                self._conn = None

    def read(self, timeout: float) -> bytes:
        conn = self._connection(timeout)
        if conn is None:
            return b""
        ready, _, _ = select.select([conn], [], [], max(0.0, timeout))
        if not ready:
            return b""
        try:
            data = conn.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._conn = None
        return data

    def unplug(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        self.unplug()
        self._server.close()
