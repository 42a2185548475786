"""The link over USB bulk endpoints: pyusb and the UsbTransport are real, the device is a
recorder emulated at the libusb level (tests/usb_recorder.py)."""

from __future__ import annotations

import random

import pytest

from firmware_bridge.host import HostLink
from firmware_bridge.ledger import Outcome
from firmware_bridge.transport import Receiver
from firmware_bridge.usb import UsbTransport, parse_usb_url

pytest.importorskip("usb")

from tests.usb_recorder import PID, VID, EmulatedRecorder

URL = f"usb://{VID:04x}:{PID:04x}"


def _run(device: EmulatedRecorder, count: int) -> tuple[HostLink, dict[int, bytes]]:
    link = HostLink(chunk_size=16384)
    receiver = Receiver(UsbTransport(URL, backend=device), link, max_backoff=0.05)
    got: dict[int, bytes] = {}
    for _ in range(5_000):  # bounded: each poll is one bulk transfer
        for frame in receiver.poll():
            got[frame.index] = frame.data
            link.confirm(frame)
        receiver.flush()
        ledger = link.ledger.sessions.get(7)
        if ledger and len(ledger.outcomes) == count and not ledger.pending():
            break
    return link, got


def test_frames_arrive_over_bulk_endpoints():
    frames = [random.Random(i).randbytes(50_000) for i in range(40)]
    device = EmulatedRecorder(frames)
    link, got = _run(device, len(frames))
    assert got == dict(enumerate(frames))
    assert link.hello is not None and link.hello.max_chunk == 16384
    assert {o for o in link.ledger.sessions[7].outcomes} == {Outcome.DELIVERED}


def test_unplugged_device_is_reopened_and_the_open_frame_resent():
    frames = [random.Random(i).randbytes(50_000) for i in range(30)]
    device = EmulatedRecorder(frames, unplug_after=25)
    link, got = _run(device, len(frames))
    assert got == dict(enumerate(frames))
    assert link.counters["disconnects"] == 1
    assert link.counters["rx_hello"] == 2
    outcomes = [Outcome(o) for o in link.ledger.sessions[7].outcomes]
    assert Outcome.DELIVERED_AFTER_RETRANSMIT in outcomes


def test_usb_url_is_checked():
    assert parse_usb_url("usb://1d6b:0104") == (0x1D6B, 0x0104)
    with pytest.raises(ValueError, match="expected usb://VID:PID"):
        parse_usb_url("usb://recorder")
