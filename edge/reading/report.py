"""``capsule-edge report``: one self-contained HTML file (no request leaves the page:
the plot is inline SVG, the frames are data URIs) and its JSON twin."""

from __future__ import annotations

import base64
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.annotate import BOX_COLOUR
from edge.errors import BadInputError
from edge.frames import decode_image
from edge.reading.analysis import Reading
from edge.reading.plots import colour, timeline_svg
from edge.study.archive import Reader
from edge.study.errors import CorruptFrameError

GALLERY_MAX = 200  # events shown with frames; the JSON has them all
NEIGHBOURS = 2  # frames each side of the best one, shown when its thumbnail is clicked
THUMB_PX = 224
VIEW_PX = 480


def write(reading: Reading, html: Path, json_path: Path | None = None) -> dict[str, Any]:
    """Write the report (and its JSON twin); returns the JSON-ready dict."""
    data = reading.as_dict()
    page = render(reading, data)
    _atomic(html, page)
    if json_path is not None:
        _atomic(json_path, json.dumps(data, indent=1) + "\n")
    return data


def render(reading: Reading, data: dict[str, Any]) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("edge.reading", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["dur"] = duration
    gallery = _gallery(reading)
    tl = reading.timeline
    return env.get_template("report.html.j2").render(
        r=data,
        svg=timeline_svg(reading),
        gallery=gallery,
        gallery_cut=max(0, len(reading.events) - len(gallery)),
        colours={label: colour(k) for k, label in enumerate(tl.labels)} if tl else {},
    )


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = round(seconds)
    h, rest = divmod(s, 3600)
    return f"{h} h {rest // 60:02d} min" if h else f"{rest // 60} min {rest % 60:02d} s"


def _gallery(reading: Reading) -> list[dict[str, Any]]:
    """Each event's best frame boxed, and its neighbours, as JPEG data URIs."""
    d = reading.data
    out = []
    reader = Reader(d.folder / "archive")
    try:
        for e in reading.events[:GALLERY_MAX]:
            frames = []
            lo, hi = max(0, e.best - NEIGHBOURS), min(d.frames - 1, e.best + NEIGHBOURS)
            for p in range(lo, hi + 1):
                box = e.boxes.get(p)
                uri = _frame_uri(reader, reading, p, box, VIEW_PX)
                frames.append(
                    {"position": p, "name": d.name(p), "uri": uri, "boxed": box is not None}
                )
            out.append(
                {
                    "event": e,
                    "name": d.name(e.best),
                    "time": duration(float(reading.times_s[e.best])),
                    "thumb": _frame_uri(reader, reading, e.best, e.boxes.get(e.best), THUMB_PX),
                    "frames": frames,
                }
            )
    finally:
        reader.close()
    return out


def _frame_uri(
    reader: Reader, reading: Reading, position: int, box: tuple[float, ...] | None, width: int
) -> str | None:
    """The frame scaled to ``width`` with its box drawn; None when it cannot be read."""
    d = reading.data
    try:
        rgb = decode_image(d.frame_bytes(reader, position), d.name(position))
    except (CorruptFrameError, BadInputError, OSError):
        return None
    if box is not None:
        x0, y0, x1, y1 = (round(v) for v in box)
        t = max(2, round(max(rgb.shape[:2]) / 160))
        rgb = rgb.copy()
        cv2.rectangle(rgb, (x0, y0), (x1, y1), BOX_COLOUR, t, cv2.LINE_AA)
    scale = width / rgb.shape[1]
    if scale < 1:
        size = (width, max(1, round(rgb.shape[0] * scale)))
        rgb = np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
    ok, jpeg = cv2.imencode(
        ".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 82]
    )
    if not ok:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode("ascii")


def _atomic(path: Path, text: str) -> None:
    """Written whole or not at all: a report half written is never left under its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
