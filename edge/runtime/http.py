"""``GET /stats`` (JSON) and ``GET /metrics`` (Prometheus) of a running study.

The runtime does not answer requests itself: a flood of them must not take its time. It
binds the socket (so a busy port is a start-up error and the URL is known at once) and
hands it to a process of its own, ``edge.runtime.httpd`` (aiohttp, ``prometheus_client``,
niced, one thread), then publishes its figures to that process's standard input a few
times a second from a thread of its own. Requests read the latest published figures; they
never take a lock of the pipeline, and whatever they cost is that process's CPU time, at a
lower priority than the study's.

Loopback by default: the figures are about a patient's study. Any other address needs a
token (``[http] token`` or ``token_file``), and with a token every request needs
``Authorization: Bearer <token>``. Connections are bounded (``max_connections``) and one
on which the server has had nothing to answer for ``timeout_s`` (idle, or a request that
never completes) is closed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import ipaddress
import json
import logging
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.errors import BadInputError

log = logging.getLogger(__name__)

Snapshot = Callable[[], dict[str, Any]]

PUBLISH_EVERY_S = 0.25  # the figures reach /stats at most this late
MIN_TOKEN = 16  # characters: a token is a secret, not a password to type
NEEDS = ("aiohttp", "prometheus_client")
NICE = 19  # the lowest priority: a flood, or the dashboard's smoothing, takes what the study leaves


@dataclass(frozen=True)
class HttpSettings:
    address: str = "127.0.0.1"
    port: int = 8321
    token: str = ""
    max_connections: int = 32
    timeout_s: float = 5.0

    @property
    def loopback(self) -> bool:
        return is_loopback(self.address)


def is_loopback(address: str) -> bool:
    """Whether every address ``address`` names is a loopback one (a name is resolved)."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(address, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    return bool(found) and all(ipaddress.ip_address(f[4][0]).is_loopback for f in found)


def http_settings(config: Any) -> HttpSettings:
    """``[http]`` made into settings, checked: a one-line error for a non-loopback address
    without a token, a short token, or a token file that cannot be read. The token itself
    is taken out of ``config`` (``http.token`` reads "(set)"), so that it is not stored
    with the run's settings in the study."""
    address = config["http.address"]
    token = config["http.token"]
    token_file = config["http.token_file"]
    if token and token_file:
        raise BadInputError("[http] token and token_file: give one of them, not both")
    if token_file:
        path = Path(token_file).expanduser()
        try:
            token = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise BadInputError(f"[http] token_file {path}: cannot read it ({why})") from None
        if not token:
            raise BadInputError(f"[http] token_file {path}: the file is empty")
    if token and (len(token) < MIN_TOKEN or any(c.isspace() for c in token)):
        raise BadInputError(
            f"[http] token must be at least {MIN_TOKEN} characters with no spaces "
            "(e.g. python3 -c 'import secrets; print(secrets.token_urlsafe())')"
        )
    if not token and not is_loopback(address):
        raise BadInputError(
            f"[http] address {address} is not loopback: /stats would show a patient's study "
            "to anyone who can reach it; set [http] token or token_file (requests then need "
            "'Authorization: Bearer <token>') or serve on 127.0.0.1"
        )
    if config["http.token"]:
        config.values["http.token"] = "(set)"
    return HttpSettings(
        address=address,
        port=config["http.port"],
        token=token,
        max_connections=config["http.max_connections"],
        timeout_s=config["http.timeout_s"],
    )


def _listen(settings: HttpSettings) -> socket.socket:
    try:
        family = socket.getaddrinfo(settings.address, settings.port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server(
            (settings.address, settings.port),
            family=family,
            backlog=min(128, 4 * settings.max_connections),
        )
    except OSError as exc:
        raise BadInputError(
            f"[http] {settings.address}:{settings.port}: cannot listen "
            f"({exc.strerror or exc}); choose another [http] port or disable [http]"
        ) from None


class StatsServer:
    """The socket, the serving process and the thread that publishes ``snapshot()``."""

    def __init__(self, snapshot: Snapshot, settings: HttpSettings, *, idle: bool = True) -> None:
        missing = [name for name in NEEDS if importlib.util.find_spec(name) is None]
        if missing:
            raise BadInputError(
                f"[http] needs {' and '.join(missing)}: pip install 'capsule-edge[edge]', "
                "or set [http] enabled = false (--no-http)"
            )
        self.snapshot = snapshot
        self.settings = settings
        sock = _listen(settings)
        self.port = int(sock.getsockname()[1])
        host = f"[{settings.address}]" if ":" in settings.address else settings.address
        self.url = f"http://{host}:{self.port}"
        read, self._pipe = os.pipe()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "edge.runtime.httpd", "--fd", str(sock.fileno())],
                stdin=read,
                stdout=subprocess.DEVNULL,
                pass_fds=(sock.fileno(),),
                env=_child_env(),
                close_fds=True,
            )
        except OSError as exc:
            os.close(self._pipe)
            raise BadInputError(f"[http] cannot start the server process ({exc})") from None
        finally:
            os.close(read)
            sock.close()  # the server process has it: if that process dies, it closes
        with contextlib.suppress(OSError):  # at once, before it has imported aiohttp
            os.setpriority(
                os.PRIO_PROCESS, self.process.pid, os.getpriority(os.PRIO_PROCESS, 0) + NICE
            )
        # Linux, a live study: it runs only on a core the study leaves idle. A merely
        # niced process still takes its slices, and one taken while inference waits on
        # both of its threads delays the frame (benchmarks/dashboard_flood.py: p95 +6 to
        # +18 % under a flood at nice 19, +0 to +2 % idle). A recording keeps every core
        # busy, which would leave an idle server nothing: it stays niced.
        if idle:
            with contextlib.suppress(OSError, AttributeError):
                os.sched_setscheduler(self.process.pid, os.SCHED_IDLE, os.sched_param(0))
        first = {
            "token": settings.token,
            "max_connections": settings.max_connections,
            "timeout_s": settings.timeout_s,
        }
        self._stop = threading.Event()
        self._pending = json.dumps(first).encode() + b"\n"
        os.set_blocking(self._pipe, False)
        if not settings.loopback:
            log.warning(
                "/stats and /metrics are served on %s:%d to whoever has the token, over "
                "plain HTTP (the token is not encrypted on the wire)",
                settings.address,
                self.port,
            )
        self._thread = threading.Thread(target=self._publish, name="http-publish", daemon=True)
        self._thread.start()

    def _publish(self) -> None:
        """The figures to the server process every ``PUBLISH_EVERY_S``. New ones are
        taken only once the last are handed over: a server process slow to read gets
        fewer, never a queue of stale ones, and never holds up the study."""
        next_at = 0.0
        failing = False
        while not self._stop.is_set():
            now = time.monotonic()
            if not self._pending and now >= next_at:
                try:
                    doc = self.snapshot() | {"at": round(time.time(), 3)}
                    self._pending = json.dumps(doc, separators=(",", ":")).encode() + b"\n"
                    failing = False
                except Exception as exc:  # the figures must never stop the study
                    if not failing:
                        log.warning("/stats: cannot take the figures (%s)", exc)
                    failing = True
                next_at = now + PUBLISH_EVERY_S
            wait = max(0.0, next_at - time.monotonic()) if not self._pending else PUBLISH_EVERY_S
            if self._pending:
                _, writable, _ = select.select([], [self._pipe], [], wait)
                if not writable:
                    continue
                try:
                    sent = os.write(self._pipe, self._pending)
                except BlockingIOError:
                    continue
                except OSError:  # the server process is gone
                    code = self.process.poll()
                    log.warning(
                        "the /stats server stopped (%s); the study goes on without it",
                        f"exit {code}" if code is not None else "its input closed",
                    )
                    return
                self._pending = self._pending[sent:]
            else:
                self._stop.wait(wait)

    def close(self) -> None:
        """Stop publishing; the server process sees its input end and exits."""
        self._stop.set()
        self._thread.join(timeout=2 * PUBLISH_EVERY_S + 1)
        with contextlib.suppress(OSError):
            os.close(self._pipe)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _child_env() -> dict[str, str]:
    """This process's environment, with the folder ``edge`` was imported from first on the
    path, so the server process runs the same code from whatever folder."""
    import edge

    env = dict(os.environ)
    root = str(Path(edge.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env
