"""systemd's notify protocol from a real runtime process (a fake NOTIFY_SOCKET: a unix
datagram socket this test binds), and the watchdog's rule on a pipeline that hangs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from edge.runtime.notify import Notifier, Watchdog, watchdog_interval
from tests.study_runs import ENV, REPO, start_simulator, watchdog, write_frames


class Listener:
    """A notify socket: every datagram, in order, until STOPPING=1."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(120)
        self.messages: list[str] = []
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096).decode()
            except (TimeoutError, OSError):
                return
            self.messages.append(data)
            if "STOPPING=1" in data:
                return


UNIT = REPO / "edge" / "service" / "capsule-edge.service"


def _unit_command(venv: Path, config: Path) -> list[str]:
    """The unit's ExecStart, with its placeholders filled in as the installer fills them."""
    (line,) = [x for x in UNIT.read_text().splitlines() if x.startswith("ExecStart=")]
    return line.removeprefix("ExecStart=").format(venv=venv, config=config).split()


@pytest.mark.slow
def test_the_units_command_is_ready_then_pings_then_stops_on_sigterm(
    lean_python: Path, tmp_path: Path
) -> None:
    listener = Listener(str(tmp_path / "notify.sock"))
    # 4 s of frames: the recorder streams from its start, the runtime needs a second to
    # load its model first, and what is left after READY must span several pings.
    frames = write_frames(tmp_path / "frames", 60)
    sim, link = start_simulator(tmp_path, "--count", "60", "--fps", "15", "--frames", frames)
    config = tmp_path / "capsule-edge.toml"
    config.write_text(
        f'source = "serial://{link}"\nstudy = "{tmp_path / "study"}"\n'
        "[detector]\nenabled = false\n[http]\nenabled = false\n"
    )
    env = ENV | {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "400000"}
    command = _unit_command(lean_python.parent.parent, config)
    run = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    with watchdog(sim, run):
        assert sim.wait() == 0
        run.send_signal(signal.SIGTERM)  # the unit's KillSignal
        _, err = run.communicate(timeout=120)
    assert run.returncode == 0, err[-2000:]
    listener.thread.join(timeout=30)
    kinds = [m.split("\n")[0] for m in listener.messages]
    assert kinds[0] == "READY=1" and kinds[-1] == "STOPPING=1", kinds
    assert kinds.count("WATCHDOG=1") >= 3  # a ping due every 0.2 s
    assert "STATUS=study " in listener.messages[0]
    last_ping = [m for m in listener.messages if m.startswith("WATCHDOG=1")][-1]
    assert "inferred" in last_ping and "waiting" in last_ping
    assert "\r" not in err  # the journal gets plain lines, no status line


def _runtime(inferred: int, waiting: int) -> SimpleNamespace:
    return SimpleNamespace(
        stats=SimpleNamespace(counters=Counter(inferred=inferred, stored=inferred + waiting)),
        backlog=[None] * waiting,
    )


class Sent:
    def __init__(self) -> None:
        self.fields: list[tuple[str, ...]] = []
        self.active = True

    def send(self, *fields: str) -> None:
        self.fields.append(fields)


def test_pings_stop_while_inference_is_stuck_and_resume_when_it_moves() -> None:
    now = [0.0]
    sent = Sent()
    dog = Watchdog(sent, interval_s=1.0, stall_s=5.0, clock=lambda: now[0])  # type: ignore[arg-type]

    def at(t: float, inferred: int, waiting: int) -> int:
        now[0] = t
        before = len(sent.fields)
        dog(_runtime(inferred, waiting))  # type: ignore[arg-type]
        return len(sent.fields) - before

    assert at(0.0, 0, 0) == 1  # the first tick pings
    assert at(0.5, 10, 3) == 0  # not yet due
    assert at(1.0, 20, 3) == 1
    # inference stuck at 20 with frames waiting: pings go on until stall_s, then stop
    assert at(2.0, 20, 8) == 1 and at(5.9, 20, 9) == 1
    assert at(6.0, 20, 10) == 0 and dog.stalled
    assert at(9.0, 20, 12) == 0
    assert at(9.5, 21, 11) == 1 and not dog.stalled  # it moved: pings again
    # nothing waiting is idle, not stuck (a recorder between frames)
    assert at(30.0, 21, 0) == 1


def test_the_abstract_namespace_and_no_socket() -> None:
    name = f"@capsule-edge-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name[1:])
    sock.settimeout(5)
    notifier = Notifier(name)
    notifier.ready("hello")
    assert sock.recv(100) == b"READY=1\nSTATUS=hello"
    sock.close()
    quiet = Notifier.from_env({})
    assert not quiet.active
    quiet.ready("nobody listens")  # a no-op, not an error


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({"WATCHDOG_USEC": "10000000"}, 5.0),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "ten"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(env: dict, interval: float | None) -> None:
    assert watchdog_interval(env) == interval
