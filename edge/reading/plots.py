"""The report's timeline plot: the smoothed class strip, every class score over time,
the landmarks and the events; drawn by matplotlib as SVG text for the page itself."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np

from edge.errors import MissingDependencyError

if TYPE_CHECKING:
    from edge.reading.analysis import Reading

MAX_POINTS = 1500  # per score line: a 50,000-frame study still makes a small page
COLOURS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666")


def colour(k: int) -> str:
    return COLOURS[k % len(COLOURS)]


def timeline_svg(reading: Reading) -> str:
    """The plot as an ``<svg>`` element (no XML header), or '' when nothing was classified."""
    tl = reading.timeline
    if tl is None or not len(reading.times_s):
        return ""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError(
            "the report's plots need matplotlib: pip install 'capsule-edge[report]'"
        ) from None
    minutes = reading.times_s[-1] >= 180  # a short study reads better in seconds
    t = reading.times_s / 60.0 if minutes else reading.times_s
    fig, (strip, lines) = plt.subplots(
        2, 1, figsize=(11, 3.6), sharex=True, gridspec_kw={"height_ratios": [1, 3]}
    )
    fig.subplots_adjust(left=0.06, right=0.82, top=0.95, bottom=0.14, hspace=0.08)
    for seg in tl.segments:
        k = tl.labels.index(seg.label)
        strip.axvspan(t[seg.first], t[min(seg.last + 1, len(t) - 1)], color=colour(k), lw=0)
    strip.set_yticks([])
    strip.set_ylabel("class", rotation=0, ha="right", va="center")
    scores = reading.data.scores
    for k, label in enumerate(tl.labels):
        x, y = _thin(t, scores[:, k])
        lines.plot(x, y, color=colour(k), lw=0.8, label=label)
    for mark in tl.landmarks:
        for ax in (strip, lines):
            ax.axvline(t[mark.position], color="black", lw=1, ls="--")
        lines.annotate(
            mark.label,
            (t[mark.position], 1.02),
            xycoords=("data", "axes fraction"),
            ha="center",
            fontsize=8,
        )
    for e in reading.events:
        lines.plot([t[e.best]], [1.04], marker="v", color="#c00000", ms=6, clip_on=False)
    lines.set_ylim(0, 1.0)
    lines.set_ylabel("score")
    lines.set_xlabel(f"{'minutes' if minutes else 'seconds'} from the first frame")
    lines.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    out = io.StringIO()
    fig.savefig(out, format="svg", metadata={"Date": None})
    plt.close(fig)
    svg = out.getvalue()
    return svg[svg.index("<svg") :]


def _thin(t: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most MAX_POINTS points: each bin's largest score, so a short peak stays seen."""
    keep = ~np.isnan(y)
    t, y = t[keep], y[keep]
    if len(y) <= MAX_POINTS:
        return t, y
    edges = np.linspace(0, len(y), MAX_POINTS + 1).astype(int)
    return t[edges[:-1]], np.maximum.reduceat(y, edges[:-1])
