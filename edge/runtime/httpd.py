"""The process that answers ``/stats``, ``/metrics`` and the dashboard (``/``):
``python -m edge.runtime.httpd --fd N``, started by :class:`edge.runtime.http.StatsServer`
with the listening socket as file descriptor N.

Its standard input carries one JSON document a line: first its settings (the token among
them, kept off the command line), then the runtime's figures as they are published. The
end of its input (the runtime closed it, or died) is the end of this process. Requests
are answered from the latest figures; each body is rendered at most once per figures, so
a flood costs a lookup and a write per request. One thread, an asyncio loop, at a
lower priority than the study (the runtime renices it as it starts).

Connections: at most ``max_connections`` at once (more are answered 503 and closed); one
on which the server has had nothing to answer for ``timeout_s`` is closed — idle, or a
request that never completes, however slowly it trickles in. (A handler that streams,
such as server-sent events, keeps its connection while it runs.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import logging
import signal
import socket
import sys
import weakref
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from edge.runtime.dashboard import Dashboard, add_routes
from edge.runtime.figures import METRICS_TYPE, Figures

log = logging.getLogger("capsule-edge.http")

FIRST_FIGURES_S = 2.0  # wait this long for the first figures before serving without


class Connections:
    """Open connections, bounded, each closed once it has waited ``timeout_s`` with
    nothing being answered on it. The clock starts when it opens and again after each
    answer; what the client sends does not reset it (a request trickled in a byte at a
    time is still cut), a request being handled stops it."""

    def __init__(self, limit: int, timeout_s: float) -> None:
        self.server: web.Server | None = None  # aiohttp's, once its runner is set up
        self.limit = limit
        self.timeout_s = timeout_s
        self.open: dict[asyncio.BaseTransport, asyncio.TimerHandle | None] = {}
        # Counted as they are made: several are accepted before any is connected. Weak,
        # so one whose transport never came is not counted for ever.
        self.live: weakref.WeakSet[_Guarded] = weakref.WeakSet()
        self.refused = 0
        self.refusing = 0  # refused connections not yet closed

    def factory(self) -> asyncio.Protocol:
        assert self.server is not None
        if len(self.live) >= self.limit:
            self.refused += 1
            return _Refuse(self)
        guarded = _Guarded(self.server(), self)
        self.live.add(guarded)
        return guarded

    def arm(self, transport: asyncio.BaseTransport) -> None:
        if transport in self.open:
            self._cancel(transport)
            loop = asyncio.get_running_loop()
            self.open[transport] = loop.call_later(self.timeout_s, self._expire, transport)

    def busy(self, transport: asyncio.BaseTransport) -> None:
        if transport in self.open:
            self._cancel(transport)
            self.open[transport] = None

    def lost(self, transport: asyncio.BaseTransport) -> None:
        self._cancel(transport)
        self.open.pop(transport, None)

    def _cancel(self, transport: asyncio.BaseTransport) -> None:
        timer = self.open.get(transport)
        if timer is not None:
            timer.cancel()

    def _expire(self, transport: asyncio.BaseTransport) -> None:
        self.open[transport] = None
        transport.close()
        # A client that reads nothing back keeps close() waiting on its buffer.
        if isinstance(transport, asyncio.WriteTransport):
            asyncio.get_running_loop().call_later(1.0, transport.abort)


class _Guarded(asyncio.Protocol):
    """aiohttp's protocol for one connection, with the connection counted and timed."""

    def __init__(self, inner: asyncio.Protocol, connections: Connections) -> None:
        self.inner = inner
        self.connections = connections
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.connections.open[transport] = None
        self.connections.arm(transport)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.live.discard(self)
        if self.transport is not None:
            self.connections.lost(self.transport)
        self.inner.connection_lost(exc)


class _Refuse(asyncio.Protocol):
    """A connection over the limit: 503 at once, then closed once the request is in
    (closing on an unread request would reset the connection before the client reads
    the 503) or after a moment; at once when many are being refused."""

    BODY = b"too many connections\n"
    WAIT_S = 0.5

    def __init__(self, connections: Connections) -> None:
        self.connections = connections

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.connections.refusing += 1
        transport.write(
            b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n"
            b"Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
            % (len(self.BODY), self.BODY)
        )
        if self.connections.refusing > self.connections.limit:
            transport.close()
        else:
            asyncio.get_running_loop().call_later(self.WAIT_S, transport.close)

    def data_received(self, data: bytes) -> None:
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.refusing -= 1


def make_app(
    figures: Figures,
    token: str,
    connections: Connections | None = None,
    board: Dashboard | None = None,
) -> web.Application:
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        transport = request.transport
        if connections is not None and transport is not None:
            connections.busy(transport)
        try:
            if token:
                # The dashboard's page passes it as ?token= (EventSource sets no headers).
                query = request.query.get("token") if _dashboard(request.path) else None
                given = (
                    f"Bearer {query}" if query else request.headers.get("Authorization", "")
                ).encode()
                if not hmac.compare_digest(given, expected):
                    return web.Response(
                        status=401,
                        text="a token is needed: Authorization: Bearer <token>\n",
                        headers={"WWW-Authenticate": 'Bearer realm="capsule-edge"'},
                    )
            return await handler(request)
        finally:
            if connections is not None and transport is not None:
                connections.arm(transport)

    async def stats(request: web.Request) -> web.Response:
        if figures.doc is None:
            return _not_yet()
        return web.Response(body=figures.stats(), content_type="application/json")

    async def metrics(request: web.Request) -> web.Response:
        if figures.doc is None:
            return _not_yet()
        return web.Response(body=figures.metrics(), headers={"Content-Type": METRICS_TYPE})

    async def other(request: web.Request) -> web.Response:
        return web.Response(status=404, text="try /, /stats or /metrics\n")

    app = web.Application(middlewares=[guard])
    app.router.add_get("/stats", stats)
    app.router.add_get("/metrics", metrics)
    if board is not None:
        add_routes(app, board)
    app.router.add_route("*", "/{tail:.*}", other)
    return app


def _dashboard(path: str) -> bool:
    return path == "/" or path.startswith("/dashboard/")


def _not_yet() -> web.Response:
    return web.Response(status=503, text="no figures yet\n", headers={"Retry-After": "1"})


async def serve(sock: socket.socket, settings: dict[str, Any], lines: asyncio.StreamReader) -> None:
    figures = Figures()
    board = Dashboard()

    def take(line: bytes) -> None:
        doc = json.loads(line)
        board.update(doc)  # takes out what only the dashboard shows
        figures.update(doc)

    try:  # the runtime publishes its first figures at once: serve them from the start
        first = await asyncio.wait_for(lines.readline(), FIRST_FIGURES_S)
        if not first:
            return
        take(first)
    except asyncio.TimeoutError:
        pass
    timeout_s = float(settings["timeout_s"])
    connections = Connections(int(settings["max_connections"]), timeout_s)
    app = make_app(figures, str(settings.get("token", "")), connections, board)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, keepalive_timeout=timeout_s)
    await runner.setup()
    connections.server = runner.server
    loop = asyncio.get_running_loop()
    listening = await loop.create_server(connections.factory, sock=sock)
    try:
        while True:
            try:
                line = await lines.readline()
            except ValueError:  # a line over the reader's limit: figures skipped once
                continue
            if not line:
                break
            with contextlib.suppress(ValueError):
                take(line)
                await board.notify()
    finally:
        listening.close()
        for transport in list(connections.open):
            transport.close()
        await runner.cleanup()


async def _main(fd: int) -> None:
    loop = asyncio.get_running_loop()
    lines = asyncio.StreamReader(limit=1 << 24, loop=loop)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(lines), sys.stdin)
    head = await lines.readline()
    if not head:
        return
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    await serve(sock, json.loads(head), lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edge.runtime.httpd")
    p.add_argument("--fd", type=int, required=True, help="the listening socket")
    args = p.parse_args(argv)
    # Ctrl-C and a service stop reach the whole process group: the runtime drains and
    # then closes this process's input; until then /stats keeps answering.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="capsule-edge http: %(message)s")
    # A malformed request is the client's problem, not a line in the study's log.
    logging.getLogger("aiohttp").setLevel(logging.CRITICAL)
    asyncio.run(_main(args.fd))
    return 0


if __name__ == "__main__":
    sys.exit(main())
