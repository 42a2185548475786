"""The bench's two plots (matplotlib, the report extra): p50 latency of every measured
row, and accuracy against latency, one point per artefact and backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge.errors import MissingDependencyError


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError(
            "the bench's plots need matplotlib (pip install 'capsule-edge[report]')"
        ) from None
    return plt


def _label(r: dict[str, Any]) -> str:
    return f"{r['model']} {r['precision']} {r['backend']} x{r['threads']}"


def write(doc: dict[str, Any], out: Path) -> list[Path]:
    plt = _pyplot()
    rows = [r for r in doc["rows"] if "p50_ms" in r]
    written = []
    if rows:
        fig, ax = plt.subplots(figsize=(9, 0.32 * len(rows) + 1.2))
        names = [_label(r) for r in rows]
        ax.barh(names, [r["p50_ms"] for r in rows], color=[_colour(r) for r in rows])
        ax.errorbar(
            [r["p50_ms"] for r in rows],
            names,
            xerr=[[0] * len(rows), [r["p99_ms"] - r["p50_ms"] for r in rows]],
            fmt="none",
            ecolor="#444",
            capsize=2,
        )
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlim(left=min(r["p50_ms"] for r in rows) / 2)
        ax.set_xlabel("ms per frame, p50 (whisker to p99), log scale")
        ax.set_title(f"Latency per model, backend and precision: {doc['machine']['cpu']}")
        fig.tight_layout()
        written.append(out / "latency.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    scored = [r for r in rows if "accuracy" in r or "map50" in r]
    if scored:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        fastest: dict[str, dict[str, Any]] = {}
        for r in scored:
            y = r.get("accuracy", r.get("map50"))
            ax.scatter(r["p50_ms"], y, color=_colour(r), marker="o" if r["threads"] == 1 else "s")
            key = f"{r['model']} {r['precision']}"
            if key not in fastest or r["p50_ms"] < fastest[key]["p50_ms"]:
                fastest[key] = r
        for key, r in fastest.items():  # one label a model and precision, at its fastest
            y = r.get("accuracy", r.get("map50"))
            ax.annotate(
                key, (r["p50_ms"], y), fontsize=7, xytext=(0, 6), textcoords="offset points"
            )
        ax.set_xscale("log")
        ax.set_xlabel("ms per frame, p50, log scale")
        ax.set_ylabel("accuracy (classifiers) / mAP@0.5 (detectors)")
        ax.set_title("Accuracy against latency (circle: 1 thread, square: more)")
        fig.tight_layout()
        written.append(out / "accuracy_latency.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    return written


def _colour(r: dict[str, Any]) -> str:
    if r["backend"] == "torch":
        return "#999999"
    return "#1f77b4" if r["precision"] == "int8" else "#ff7f0e"
