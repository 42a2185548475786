"""The bench's Markdown: one table of model rows, the machine and the floor above it."""

from __future__ import annotations

from typing import Any

from edge.bench.machine import label

COLUMNS = (
    ("model", "model"),
    ("precision", "precision"),
    ("format", "format"),
    ("backend", "backend"),
    ("threads", "threads"),
    ("p50 ms", "p50_ms"),
    ("p90 ms", "p90_ms"),
    ("p99 ms", "p99_ms"),
    ("frames/s", "fps"),
    ("infer p50 ms", "infer_p50_ms"),
    ("first ms", "first_ms"),
    ("load s", "load_s"),
    ("peak RSS MB", "peak_rss_mb"),
    ("size MB", "size_mb"),
    ("GMACs", "gmacs"),
    ("x floor", "floor_ratio"),
    ("x faster than PyTorch", "speedup_vs_torch"),
    ("accuracy / mAP@0.5", "quality"),
    ("macro-F1 / mAP@.5:.95", "quality2"),
)


def _quality(row: dict[str, Any]) -> tuple[Any, Any]:
    if "accuracy" in row:
        return row["accuracy"], row.get("macro_f1")
    if "map50" in row:
        return row["map50"], row.get("map50_95")
    return None, None


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def model_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| " + " | ".join(h for h, _ in COLUMNS) + " |",
        "|"
        + "|".join(
            "---" if k in ("model", "precision", "format", "backend") else "---:"
            for _, k in COLUMNS
        )
        + "|",
    ]
    notes = []
    for row in rows:
        q1, q2 = _quality(row)
        full = row | {"quality": q1, "quality2": q2}
        if "skipped" in row or "error" in row:
            notes.append(
                f"- {row['model']} {row['precision']} {row['format']} on {row['backend']}: "
                f"{row.get('skipped') or row.get('error')}"
            )
            continue
        lines.append("| " + " | ".join(_cell(full.get(k)) for _, k in COLUMNS) + " |")
    return "\n".join(lines + (["", *sorted(set(notes))] if notes else []))


def markdown(doc: dict[str, Any]) -> str:
    machine = doc["machine"]
    peaks = "; ".join(
        f"{p['backend']} {p['precision']} x{p['threads']} {p['gmacs_per_s']:.0f} GMAC/s"
        for p in doc.get("floor", [])
    )
    head = [
        f"Batch 1, {doc['runs']} timed runs after {doc['warmup']} warm-up, on {label(machine)} "
        f"({machine['os']}, Python {machine['python']}).",
        f"Floor (a large matrix product through each backend): "
        f"{peaks or '; '.join(doc.get('floor_notes') or []) or 'not measured'}.",
        "p50/p90/p99 and frames/s: the whole frame after decoding; infer: the backend call alone.",
        "",
    ]
    text = "\n".join(head) + model_table(doc["rows"]) + "\n"
    if doc.get("e2e"):
        from edge.bench.e2e import table

        text += "\nEnd to end: the runtime (default models, a live source) fed by the recorder "
        text += "simulator over a pty, each rate for its own run.\n\n" + table(doc["e2e"]) + "\n"
    return text


def merged(docs: list[dict[str, Any]]) -> str:
    """Several machines' results in one table, each row under its machine."""
    rows = [r | {"model": f"{label(d['machine'])}: {r['model']}"} for d in docs for r in d["rows"]]
    runs = ", ".join(sorted({str(d["runs"]) for d in docs}))
    return (
        f"Batch 1, {runs} timed runs a row; machines as each row says.\n\n"
        + model_table(rows)
        + "\n"
    )


BEGIN, END = "<!-- capsule-edge bench -->", "<!-- /capsule-edge bench -->"


def into(text: str, generated: str, where: str) -> str:
    """``text`` with what lies between the bench's markers replaced by ``generated``."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{where}: no {BEGIN} ... {END} markers to write between")
    return text[: start + len(BEGIN)] + "\n" + generated.rstrip() + "\n" + text[end:]
