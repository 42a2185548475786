"""Every way frames reach the runtime, behind one interface, each with a ledger.

    serial:///dev/ttyACM0?baud=921600   a recorder on a UART or USB CDC-ACM port
    /dev/ttyUSB0, rfc2217://..., loop:// any other pyserial URL
    socket://127.0.0.1:5555             the link over TCP (the simulator's --listen)
    usb://1d6b:0104                      a recorder's USB bulk interface (pyusb)
    video:///dev/video0, video://0       a UVC camera or capture card (OpenCV)
    video://study.mp4, study.mp4         a video file (OpenCV)
    dir://frames/                        a folder of image files, replayed in name order

Link sources acknowledge frames only when the consumer ``confirm``s them. Video and
folder sources have no link-level acknowledgement, but every frame still enters the
ledger: read (DELIVERED) or not (LOST with a reason).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from edge.frames import VIDEO_SUFFIXES
from firmware_bridge.host import HostLink, ReceivedFrame
from firmware_bridge.ledger import Ledger, Outcome
from firmware_bridge.protocol import (
    CODEC_BY_SUFFIX,
    UART_MAX_CHUNK,
    USB_MAX_CHUNK,
    Codec,
    Result,
    crc32,
)
from firmware_bridge.transport import Receiver, SerialTransport

LOCAL_SESSION = 0  # the ledger session of sources without a recorder session
# A folder session's frames in the study: origin -> (index, CRC-32C of its bytes).
Known = dict[str, tuple[int, int]]


@dataclass(frozen=True)
class SourceFrame:
    """One frame as it arrived: encoded bytes (``data``) or decoded RGB (``image``)."""

    session: int
    index: int
    codec: int
    timestamp_us: int
    data: bytes | None = None
    image: Any = None  # numpy RGB uint8, for sources that decode themselves
    link_frame: ReceivedFrame | None = None
    width: int = 0  # for raw pixel codecs (from the recorder's META)
    height: int = 0
    origin: str | None = None  # a folder frame's relative path


class FrameSource(Protocol):
    name: str
    ledger: Ledger
    # A recording (a folder, a video file) is read as fast as inference goes; a live
    # source (a recorder, a camera) sets its own pace.
    recording: bool

    def poll(self) -> list[SourceFrame]:
        """The frames that arrived since the last call (waits briefly when none)."""
        ...

    def confirm(self, frame: SourceFrame) -> None:
        """The frame is stored; a link may now acknowledge it."""
        ...

    def send_result(self, frame: SourceFrame, result: Result) -> None:
        """Findings for a frame, back to where it came from (if that listens)."""
        ...

    def flush(self) -> None:
        """Send the replies queued so far (acknowledgements, results)."""
        ...

    def status(self) -> dict[str, Any]: ...

    def attach(self, known: Known) -> None:
        """What the study already holds of this source (before the first poll)."""
        ...

    @property
    def finished(self) -> bool: ...

    def close(self) -> None: ...


class LinkSource:
    """A recorder over the link protocol (serial, socket or USB).

    With ``hold_replies`` nothing goes back to the recorder until ``flush()``: the
    caller first makes durable what the replies will acknowledge (frames and the
    ledger outcomes an ACK moves past).
    """

    def __init__(self, receiver: Receiver, *, hold_replies: bool = False) -> None:
        self.receiver = receiver
        self.link: HostLink = receiver.link
        self.ledger = self.link.ledger
        self.name = receiver.transport.name
        self.hold_replies = hold_replies
        self.recording = False
        receiver.write_replies = not hold_replies

    def connect(self) -> None:
        """Open the transport now; LinkDown (one line) if it cannot be opened."""
        self.receiver.transport.open()
        self.receiver.connected = True

    def poll(self) -> list[SourceFrame]:
        out = [
            SourceFrame(
                f.session,
                f.index,
                f.codec,
                f.timestamp_us,
                data=f.data,
                link_frame=f,
                width=f.meta.width,
                height=f.meta.height,
            )
            for f in self.receiver.poll()
        ]
        if not self.hold_replies:
            self.receiver.flush()
        return out

    def confirm(self, frame: SourceFrame) -> None:
        if frame.link_frame is not None:
            self.link.confirm(frame.link_frame)

    def send_result(self, frame: SourceFrame, result: Result) -> None:
        if frame.link_frame is not None:
            self.link.send_result(frame.link_frame, result)

    def flush(self) -> None:
        self.receiver.flush()

    def status(self) -> dict[str, Any]:
        return {
            "connected": self.receiver.connected,
            "reconnects": self.receiver.reconnects,
            **self.link.status(),
        }

    def attach(self, known: Known) -> None:
        pass  # the recorder's session and indices identify its frames

    @property
    def finished(self) -> bool:
        return False  # a recorder link ends when the caller stops it

    def close(self) -> None:
        self.receiver.flush()
        self.receiver.close()


class LocalSource:
    """What the sources without a link share: every frame enters the ledger, but there
    is nobody to acknowledge it to or to send findings back to."""

    name: str
    ledger: Ledger

    def __init__(self, name: str) -> None:
        self.name = name
        self.ledger = Ledger()
        self._session = self.ledger.session(LOCAL_SESSION)

    def confirm(self, frame: SourceFrame) -> None:
        pass

    def send_result(self, frame: SourceFrame, result: Result) -> None:
        pass

    def flush(self) -> None:
        pass

    def status(self) -> dict[str, Any]:
        return {"ledger": dict(self.ledger.counts())}

    def attach(self, known: Known) -> None:
        pass


class VideoSource(LocalSource):
    """A UVC device or a video file, decoded by OpenCV."""

    def __init__(self, target: str | int) -> None:
        import cv2

        super().__init__(f"video:{target}")
        self._cap = cv2.VideoCapture(target)
        if not self._cap.isOpened():
            raise ValueError(f"{target}: not a video device or file OpenCV can open")
        self.is_file = isinstance(target, str) and Path(target).is_file()
        self.recording = self.is_file
        self.expected = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)) if self.is_file else 0
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS)) or 0.0
        self._index = 0
        self._done = False

    def poll(self) -> list[SourceFrame]:
        import cv2

        if self._done:
            return []
        ok, frame = self._cap.read()
        if not ok:
            self._done = self.is_file
            if self.is_file:
                # Frames the container announced but that could not be decoded.
                for index in range(self._index, self.expected):
                    self._session.settle(index, Outcome.LOST, "undecodable")
            return []
        index = self._index
        self._index += 1
        self._session.settle(index, Outcome.DELIVERED)
        stamp = int(self._cap.get(cv2.CAP_PROP_POS_MSEC) * 1000)
        image = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        return [SourceFrame(LOCAL_SESSION, index, int(Codec.RAW_RGB), stamp, image=image)]

    @property
    def finished(self) -> bool:
        return self._done

    def close(self) -> None:
        self._cap.release()


class DirSource(LocalSource):
    """Image files of a folder, in name order (a recorded study replayed).

    A frame is its file: relative path and content. Replayed into a study that holds
    the folder already, files it has (same path, same bytes) are not sent again, and
    new or changed files become new frames after the ones it has."""

    def __init__(self, folder: Path) -> None:
        if not folder.is_dir():
            raise ValueError(f"{folder}: no such folder")
        super().__init__(f"dir:{folder}")
        self.folder = folder
        self.recording = True
        self.files = sorted(
            p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
        )
        self._position = 0
        self._next = 0  # the index the next new frame gets
        self._known: Known = {}
        self.unchanged = 0  # files the study already held

    def attach(self, known: Known) -> None:
        self._known = known
        self._next = max((index for index, _ in known.values()), default=-1) + 1
        # Indices below are earlier runs' account: this run's ledger starts after them.
        del self.ledger.sessions[LOCAL_SESSION]
        self._session = self.ledger.session(LOCAL_SESSION, start=self._next)

    def poll(self) -> list[SourceFrame]:
        while self._position < len(self.files):
            path = self.files[self._position]
            self._position += 1
            frame = self._read(path)
            if frame is not None:
                return [frame]
        return []

    def _read(self, path: Path) -> SourceFrame | None:
        origin = path.relative_to(self.folder).as_posix()
        codec = CODEC_BY_SUFFIX.get(path.suffix.lower())
        if codec is None:
            self._settle_new(Outcome.LOST, "not an image file")
            return None
        try:
            data = path.read_bytes()
            stamp = int(path.stat().st_mtime * 1e6)
        except OSError as exc:
            self._settle_new(Outcome.LOST, f"unreadable: {exc.strerror}")
            return None
        crc = crc32(data)
        if self._known.get(origin, (0, None))[1] == crc:
            self.unchanged += 1
            return None
        index = self._settle_new(Outcome.DELIVERED)
        return SourceFrame(LOCAL_SESSION, index, int(codec), stamp, data=data, origin=origin)

    def _settle_new(self, outcome: Outcome, reason: str | None = None) -> int:
        index, self._next = self._next, self._next + 1
        self._session.settle(index, outcome, reason)
        return index

    @property
    def finished(self) -> bool:
        return self._position >= len(self.files)

    def close(self) -> None:
        pass


def open_source(
    url: str,
    *,
    capacity: int = 64,
    retransmit: bool = True,
    hold_replies: bool = False,
    chunk: int = 0,
) -> FrameSource:
    """A frame source for ``url`` (see the module docstring); ValueError if unusable.

    ``chunk`` is the largest chunk the host accepts, negotiated down to what the
    recorder offers; 0 is the transport's own: 1 KiB on a UART (a bit error costs one
    chunk, docs/protocol.md section 1), 16 KiB on USB, whose bulk transfers are checked
    in hardware and where per-chunk work would otherwise dominate."""
    parsed = urllib.parse.urlsplit(url)
    scheme = parsed.scheme
    if scheme == "dir":
        return DirSource(Path(parsed.netloc + parsed.path))
    if scheme == "video":
        target = parsed.netloc + parsed.path
        return VideoSource(int(target) if target.isdigit() else target)
    if not scheme and Path(url).suffix.lower() in VIDEO_SUFFIXES:
        return VideoSource(url)
    size = chunk or (USB_MAX_CHUNK if scheme == "usb" else UART_MAX_CHUNK)
    link = HostLink(chunk_size=size, capacity=capacity, retransmit=retransmit)
    if scheme == "usb":
        from firmware_bridge.usb import UsbTransport

        return LinkSource(Receiver(UsbTransport(url), link), hold_replies=hold_replies)
    if scheme == "serial":
        query = urllib.parse.parse_qs(parsed.query)
        try:
            baud = int(query.get("baud", ["921600"])[0])
        except ValueError:
            raise ValueError(f"{url}: baud must be a number") from None
        transport = SerialTransport(parsed.path, baudrate=baud)
        return LinkSource(Receiver(transport, link), hold_replies=hold_replies)
    if scheme in ("socket", "rfc2217", "loop", "spy", "hwgrep", "alt", ""):
        return LinkSource(Receiver(SerialTransport(url), link), hold_replies=hold_replies)
    raise ValueError(
        f"{url}: unknown source (serial://, socket://, usb://, video://, dir://, or a device path)"
    )
