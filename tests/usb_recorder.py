"""A recorder emulated at the libusb level: a pyusb backend whose one device has a
vendor-specific interface with a bulk IN and a bulk OUT endpoint, behind which the
reference Recorder runs. pyusb, the UsbTransport and the host link above it are the real
code; only the USB hardware is replaced.
"""

from __future__ import annotations

import errno
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import usb.backend
import usb.core

from firmware_bridge.recorder import Recorder
from firmware_bridge.stream import LinkError, StreamDecoder

VID, PID = 0x1D6B, 0x0104
EP_IN, EP_OUT = 0x81, 0x02


def _descriptor(**fields: Any) -> SimpleNamespace:
    return SimpleNamespace(extra_descriptors=[], **fields)


@dataclass
class EmulatedRecorder(usb.backend.IBackend):  # type: ignore[misc]
    """The device. ``frames`` are captured up front. After ``unplug_after`` bulk reads it
    is unplugged and plugged back in: the open handle fails with ENODEV from then on,
    and a new open gets a fresh handle, as libusb does after re-enumeration."""

    frames: list[bytes]
    chunk: int = 16384
    unplug_after: int | None = None
    recorder: Recorder = field(init=False)
    handle: int = 0  # the live handle; older ones belong to an unplugged device
    reads: int = 0
    _out: bytearray = field(default_factory=bytearray)

    def __post_init__(self) -> None:
        self.recorder = Recorder(session=7, max_chunk=self.chunk)
        self._dead = 0
        for data in self.frames:
            self.recorder.capture(data)
        self._decoder = StreamDecoder(4096)

    # --- enumeration and descriptors -----------------------------------------------------

    def enumerate_devices(self) -> Iterator[str]:
        yield "recorder"

    def get_device_descriptor(self, dev: Any) -> SimpleNamespace:
        return _descriptor(
            bLength=18,
            bDescriptorType=1,
            bcdUSB=0x0200,
            bDeviceClass=0,
            bDeviceSubClass=0,
            bDeviceProtocol=0,
            bMaxPacketSize0=64,
            idVendor=VID,
            idProduct=PID,
            bcdDevice=0x0100,
            iManufacturer=0,
            iProduct=0,
            iSerialNumber=0,
            bNumConfigurations=1,
            address=1,
            bus=1,
            port_number=1,
            port_numbers=(1,),
            speed=3,
        )

    def get_configuration_descriptor(self, dev: Any, config: int) -> SimpleNamespace:
        return _descriptor(
            bLength=9,
            bDescriptorType=2,
            wTotalLength=32,
            bNumInterfaces=1,
            bConfigurationValue=1,
            iConfiguration=0,
            bmAttributes=0x80,
            bMaxPower=50,
        )

    def get_interface_descriptor(self, dev: Any, intf: int, alt: int, config: int) -> Any:
        return _descriptor(
            bLength=9,
            bDescriptorType=4,
            bInterfaceNumber=0,
            bAlternateSetting=0,
            bNumEndpoints=2,
            bInterfaceClass=0xFF,
            bInterfaceSubClass=0,
            bInterfaceProtocol=0,
            iInterface=0,
        )

    def get_endpoint_descriptor(self, dev: Any, ep: int, intf: int, alt: int, config: int) -> Any:
        return _descriptor(
            bLength=7,
            bDescriptorType=5,
            bEndpointAddress=(EP_IN, EP_OUT)[ep],
            bmAttributes=0x02,
            wMaxPacketSize=512,
            bInterval=0,
            bRefresh=0,
            bSynchAddress=0,
        )

    # --- the device --------------------------------------------------------------------

    def open_device(self, dev: Any) -> int:
        self.handle += 1
        if self.handle > 1:
            self.recorder.reconnected()  # it was plugged back in: HELLO again
        return self.handle

    def close_device(self, dev_handle: Any) -> None:
        pass

    def set_configuration(self, dev_handle: Any, config_value: int) -> None:
        self._check(dev_handle)

    def get_configuration(self, dev_handle: Any) -> int:
        return 1

    def claim_interface(self, dev_handle: Any, intf: int) -> None:
        self._check(dev_handle)

    def release_interface(self, dev_handle: Any, intf: int) -> None:
        pass

    def bulk_write(self, dev_handle: Any, ep: int, intf: int, data: Any, timeout: int) -> int:
        self._check(dev_handle)
        for event in self._decoder.feed(bytes(data)):
            if not isinstance(event, LinkError):
                self.recorder.on_message(event)
        return len(data)

    def bulk_read(self, dev_handle: Any, ep: int, intf: int, buff: Any, timeout: int) -> int:
        self._check(dev_handle)
        self.reads += 1
        if not self._out:
            messages = self.recorder.next_messages()
            if not messages:
                messages = [self.recorder.heartbeat()]
            for m in messages:
                self._out += m.data
        if self.unplug_after is not None and self.reads == self.unplug_after:
            # Unplugged in the middle of a frame: what was in the device's FIFO is gone.
            self._dead = dev_handle
            self._out.clear()
            self._check(dev_handle)
        n = min(len(buff), len(self._out))
        buff[:n] = array("B", self._out[:n])
        del self._out[:n]
        if n == 0:
            raise usb.core.USBTimeoutError("timeout", errno.ETIMEDOUT, -7)
        return n

    def _check(self, dev_handle: Any) -> None:
        if dev_handle != self.handle or dev_handle == self._dead:
            raise usb.core.USBError("No such device", errno.ENODEV, -4)
