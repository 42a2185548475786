"""Flood a runtime's ``/metrics`` (or any path) on loopback at a set rate, for a set time.

    python -m benchmarks.http_flood URL [--rate 700] [--seconds 30] [--threads 8]
        [--token TOKEN] [--keep-alive]

Each request opens its own connection unless ``--keep-alive`` (a scraper gone wrong, a
``curl`` loop); the requests are paced to ``--rate`` per second in all. Prints one JSON
line: requests sent, answered by status, failed, the rate reached. Loopback only: the
URL's host must be 127.0.0.0/8, ::1 or localhost.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import socket
import sys
import threading
import time
from collections import Counter
from urllib.parse import urlsplit


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read_response(sock: socket.socket, buffer: bytearray) -> int:
    """One response off ``sock`` (Content-Length framed or up to EOF): its status."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a response")
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = bytearray(rest)
    if length is None:
        while chunk := sock.recv(65536):
            body += chunk
        length = len(body)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-body")
        body += chunk
    buffer[:] = body[length:]
    return status


def flood(
    url: str,
    rate: float,
    seconds: float,
    threads: int = 8,
    token: str = "",
    keep_alive: bool = False,
) -> dict[str, object]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    if not _loopback(host):
        raise SystemExit(f"http_flood: {host} is not a loopback address; refusing")
    path = parts.path or "/metrics"
    headers = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}"]
    if token:
        headers.append(f"Authorization: Bearer {token}")
    headers.append("Connection: keep-alive" if keep_alive else "Connection: close")
    request = ("\r\n".join(headers) + "\r\n\r\n").encode()
    statuses: Counter[str] = Counter()
    lock = threading.Lock()
    start = time.monotonic()
    end = start + seconds
    interval = threads / rate  # each thread's share of the pace

    def worker(n: int) -> None:
        due = start + n * interval / threads
        sock: socket.socket | None = None
        buffer = bytearray()
        while (now := time.monotonic()) < end:
            if now < due:
                time.sleep(due - now)
            due += interval
            try:
                if sock is None:
                    sock = socket.create_connection((host, port), timeout=10)
                    buffer.clear()
                sock.sendall(request)
                status = str(_read_response(sock, buffer))
            except (OSError, ValueError, IndexError) as exc:
                status = type(exc).__name__
                if sock is not None:
                    sock.close()
                sock = None
            if not keep_alive and sock is not None:
                sock.close()
                sock = None
            with lock:
                statuses[status] += 1
        if sock is not None:
            sock.close()

    pool = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.monotonic() - start
    sent = sum(statuses.values())
    return {
        "sent": sent,
        "statuses": dict(statuses),
        "seconds": round(elapsed, 2),
        "rate": round(sent / elapsed, 1) if elapsed else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("url")
    p.add_argument("--rate", type=float, default=700.0, help="requests per second in all")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--token", default="")
    p.add_argument("--keep-alive", action="store_true")
    args = p.parse_args(argv)
    result = flood(args.url, args.rate, args.seconds, args.threads, args.token, args.keep_alive)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
