"""A real headless browser for the report and dashboard tests: Debian's chromium driven
by playwright (``executable_path``; playwright downloads no browser here). Without
chromium the tests skip, unless CAPSULE_EDGE_BROWSER=required (CI sets it: there a
missing browser is a failure, not a skip)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

try:
    from playwright.sync_api import expect
except ImportError:  # the tests that use it skip in page()
    expect = None  # type: ignore[assignment]

CHROMIUM = (
    os.environ.get("CAPSULE_EDGE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
)


@dataclass
class Requests:
    """Every request the page made, and those that would have left the machine."""

    seen: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)


def _local(url: str, allowed: tuple[str, ...]) -> bool:
    return url.startswith(("data:", "about:", "blob:", *allowed))


@contextmanager
def page(*allowed: str) -> Iterator[tuple[Any, Requests]]:
    """A fresh page; a request to anything but ``allowed`` URL prefixes (and data: URIs)
    is recorded in ``Requests.outside`` and aborted, so it never leaves."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CAPSULE_EDGE_BROWSER") == "required":
            pytest.fail(f"no chromium at {CHROMIUM} (apt-get install chromium)")
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    requests = Requests()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1200, "height": 900})
            tab = context.new_page()

            def route(r: Any) -> None:
                url = r.request.url
                requests.seen.append(url)
                if _local(url, allowed):
                    r.continue_()
                else:
                    requests.outside.append(url)
                    r.abort()

            context.route("**/*", route)
            yield tab, requests
        finally:
            browser.close()
