"""ALERT (protocol.md 4.12): a finding confirmed, host to recorder, only to a version-2
recorder that said CAP_ALERTS in its HELLO; the host and the reference recorder against
each other in memory."""

from __future__ import annotations

import pytest

from firmware_bridge.host import HostLink
from firmware_bridge.protocol import (
    ALERT,
    CAP_ALERTS,
    Alert,
    Header,
    Hello,
    MessageType,
    ProtocolError,
    encode,
)
from firmware_bridge.recorder import Recorder
from firmware_bridge.stream import LinkError, StreamDecoder
from tests.test_host_link import frames, pump

ALERT_1 = Alert(7, 0, 12, 3, 0.91, 170, 258, 0.1954)


def _deliver(host: HostLink, rec: Recorder) -> None:
    for event in StreamDecoder(4096).feed(host.outgoing()):
        assert not isinstance(event, LinkError)
        rec.on_message(event)


def test_an_alert_is_20_bytes_and_reads_back_as_sent():
    packed = ALERT_1.pack()
    assert len(packed) == ALERT.size == 20
    back = Alert.unpack(packed)
    assert (back.event, back.class_id, back.first, back.frames) == (7, 0, 12, 3)
    assert (back.box_w, back.box_h) == (170, 258)
    assert back.peak_score == pytest.approx(0.91, abs=1 / 65535)
    assert back.box_share == pytest.approx(0.1954, abs=1 / 65535)
    with pytest.raises(ProtocolError):
        Alert.unpack(packed[:19])


def test_the_reference_recorder_says_it_takes_alerts_and_gets_each_one():
    rec, host = Recorder(session=9), HostLink()
    rec.capture(frames(1)[0])
    pump(rec, host)
    assert host.hello is not None and host.hello.capabilities & CAP_ALERTS
    host.send_alert(9, 0, ALERT_1)
    host.send_alert(9, 0, Alert(8, 0, 0, 5, 0.5, 10, 20, 0.01))
    _deliver(host, rec)
    assert [(frame, a.event) for frame, a in rec.alerts] == [(0, 7), (0, 8)]
    assert rec.counters.alerts == 2 and host.counters["tx_alert"] == 2


@pytest.mark.parametrize("version, caps", [(1, CAP_ALERTS), (2, 0)])
def test_no_alert_goes_to_a_recorder_that_did_not_ask_for_them(version: int, caps: int):
    """A version-1 recorder (no ALERT in v1) or one without CAP_ALERTS: nothing is sent,
    the host counts it."""
    host = HostLink()
    hello = Hello(max_chunk=1024, window=8, capabilities=caps)
    host.receive(encode(Header(MessageType.HELLO, session=4, version=version), hello.pack()))
    host.outgoing()  # the HELLO_ACK and CLASSES
    host.send_alert(4, 0, ALERT_1)
    assert host.outgoing() == b""
    assert host.counters["alerts_unsent"] == 1 and host.counters["tx_alert"] == 0


def test_an_alert_of_an_old_session_is_not_sent():
    rec, host = Recorder(session=3), HostLink()
    rec.capture(frames(1)[0])
    pump(rec, host)
    host.send_alert(2, 0, ALERT_1)  # a session the recorder has left (it rebooted)
    assert host.outgoing() == b"" and host.counters["alerts_unsent"] == 1


def test_a_short_alert_is_ignored_by_the_recorder():
    rec, host = Recorder(session=5), HostLink()
    rec.capture(frames(1)[0])
    pump(rec, host)
    header = Header(MessageType.ALERT, session=5, frame=0)
    for event in StreamDecoder(4096).feed(encode(header, ALERT_1.pack()[:12])):
        assert not isinstance(event, LinkError)
        rec.on_message(event)
    assert rec.alerts == [] and rec.counters.alerts == 0


def test_an_alert_from_a_recorder_is_counted_and_ignored_by_the_host():
    rec, host = Recorder(session=5), HostLink()
    rec.capture(frames(1)[0])
    pump(rec, host)
    host.receive(encode(Header(MessageType.ALERT, session=5, frame=0), ALERT_1.pack()))
    assert host.counters["unexpected_alert"] == 1
    assert host.take() is None
