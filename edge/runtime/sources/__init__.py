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
from pathlib import Path

from edge.errors import BadInputError
from edge.frames import VIDEO_SUFFIXES
from edge.runtime.sources.base import LOCAL_SESSION, FrameSource, Known, SourceFrame
from edge.runtime.sources.folder import DirSource
from edge.runtime.sources.link import LinkSource
from edge.runtime.sources.local import LocalSource
from edge.runtime.sources.video import VideoSource
from firmware_bridge.host import HostLink
from firmware_bridge.limits import UART_MAX_CHUNK, USB_MAX_CHUNK
from firmware_bridge.transport import Receiver, SerialTransport

__all__ = [
    "LOCAL_SESSION",
    "DirSource",
    "FrameSource",
    "Known",
    "LinkSource",
    "LocalSource",
    "SourceFrame",
    "VideoSource",
    "open_source",
]


def open_source(
    url: str,
    *,
    capacity: int = 64,
    retransmit: bool = True,
    hold_replies: bool = False,
    chunk: int = 0,
) -> FrameSource:
    """A frame source for ``url`` (see the module docstring); BadInputError if unusable.

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
    try:  # the link's own checks say ValueError: here they become input errors
        link = HostLink(chunk_size=size, capacity=capacity, retransmit=retransmit)
        if scheme == "usb":
            from firmware_bridge.usb import UsbTransport

            return LinkSource(Receiver(UsbTransport(url), link), hold_replies=hold_replies)
    except ValueError as exc:
        raise BadInputError(str(exc)) from None
    if scheme == "serial":
        query = urllib.parse.parse_qs(parsed.query)
        try:
            baud = int(query.get("baud", ["921600"])[0])
        except ValueError:
            raise BadInputError(f"{url}: baud must be a number") from None
        transport = SerialTransport(parsed.path, baudrate=baud)
        return LinkSource(Receiver(transport, link), hold_replies=hold_replies)
    if scheme in ("socket", "rfc2217", "loop", "spy", "hwgrep", "alt", ""):
        return LinkSource(Receiver(SerialTransport(url), link), hold_replies=hold_replies)
    raise BadInputError(
        f"{url}: unknown source (serial://, socket://, usb://, video://, dir://, or a device path)"
    )
