"""USB bulk transport: the same link protocol over a recorder's vendor-specific bulk
interface, through pyusb (libusb underneath).

``usb://VID:PID`` (hex) names the device; the first interface with a bulk IN and a bulk
OUT endpoint carries the link. A vanished device (unplugged, reset) is ``LinkDown``; the
Receiver then reopens it with backoff, as for a serial port.
"""

from __future__ import annotations

import contextlib
import errno
from typing import Any

from firmware_bridge.limits import USB_MAX_CHUNK
from firmware_bridge.transport import LinkDown

READ_SIZE = USB_MAX_CHUNK * 4


def parse_usb_url(url: str) -> tuple[int, int]:
    """``usb://1d6b:0104`` -> (0x1d6b, 0x0104)."""
    spec = url.removeprefix("usb://")
    try:
        vid, pid = spec.split(":")
        return int(vid, 16), int(pid, 16)
    except ValueError:
        raise ValueError(f"{url}: expected usb://VID:PID in hex, e.g. usb://1d6b:0104") from None


class UsbTransport:
    def __init__(self, url: str, *, backend: Any = None, read_timeout_ms: int = 50) -> None:
        self.name = url
        self.vid, self.pid = parse_usb_url(url)
        self.backend = backend  # None: pyusb's default (libusb1)
        self.read_timeout_ms = read_timeout_ms
        self._dev: Any = None
        self._in: Any = None
        self._out: Any = None

    def open(self) -> None:
        import usb.core
        import usb.util

        try:
            dev = usb.core.find(idVendor=self.vid, idProduct=self.pid, backend=self.backend)
        except usb.core.NoBackendError:
            raise LinkDown(f"{self.name}: no libusb backend (install libusb-1.0)") from None
        if dev is None:
            raise LinkDown(f"{self.name}: no such USB device")
        try:
            dev.set_configuration()
            for intf in dev.get_active_configuration():
                endpoints = {
                    usb.util.endpoint_direction(e.bEndpointAddress): e
                    for e in intf
                    if usb.util.endpoint_type(e.bmAttributes) == usb.util.ENDPOINT_TYPE_BULK
                }
                if usb.util.ENDPOINT_IN in endpoints and usb.util.ENDPOINT_OUT in endpoints:
                    usb.util.claim_interface(dev, intf.bInterfaceNumber)
                    self._in = endpoints[usb.util.ENDPOINT_IN]
                    self._out = endpoints[usb.util.ENDPOINT_OUT]
                    break
            else:
                raise LinkDown(f"{self.name}: no interface with bulk IN and OUT endpoints")
        except usb.core.USBError as exc:
            raise LinkDown(f"{self.name}: {exc}") from None
        self._dev = dev

    def read(self) -> bytes:
        import usb.core

        if self._in is None:
            raise LinkDown(f"{self.name}: not open")
        try:
            return bytes(self._in.read(READ_SIZE, timeout=self.read_timeout_ms))
        except usb.core.USBTimeoutError:
            return b""
        except usb.core.USBError as exc:
            if exc.errno == errno.ETIMEDOUT:
                return b""
            self.close()
            raise LinkDown(f"{self.name}: {exc}") from None

    def write(self, data: memoryview) -> int:
        import usb.core

        if self._out is None or not data:
            return 0
        try:
            # One packet at a time, which goes whole or not at all (pyusb does not say
            # how much of a longer transfer went before a timeout); a packet the device
            # does not take within 50 ms waits in the outbox.
            packet = data[: self._out.wMaxPacketSize or len(data)]
            return int(self._out.write(packet, timeout=50))
        except usb.core.USBTimeoutError:
            return 0
        except usb.core.USBError as exc:
            if exc.errno == errno.ETIMEDOUT:
                return 0
            self.close()
            raise LinkDown(f"{self.name}: {exc}") from None

    def close(self) -> None:
        if self._dev is not None:
            import usb.util

            with contextlib.suppress(Exception):
                usb.util.dispose_resources(self._dev)
        self._dev = self._in = self._out = None
