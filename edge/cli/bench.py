"""``capsule-edge bench``: every bundled model on every backend here, fast and good."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from edge.errors import BadInputError

DATA_ROOT = Path("../shared/data")
QUICK = {"runs": 30, "warmup": 5}
FULL = {"runs": 300, "warmup": 20}


def _threads(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected numbers, e.g. 1,4") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: each at least 1")
    return sorted(set(values))


def _rates(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected frame rates, e.g. 5,10,20") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: each above 0")
    return sorted(set(values))


def _load(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such file (--merge)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInputError(f"{path}: not a bench result ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list) or "machine" not in doc:
        raise BadInputError(f"{path}: not a bench result (no machine and rows)")
    return doc


def _write_readme(path: Path, text: str) -> None:
    from edge.bench.tables import into

    try:
        old = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInputError(f"{path}: unreadable ({exc.strerror})") from None
    try:
        path.write_text(into(old, text, str(path)), encoding="utf-8")
    except ValueError as exc:
        raise BadInputError(str(exc)) from None


def cmd_bench(args: argparse.Namespace) -> int:
    from edge.bench import e2e, floor, machine, models, plots, tables
    from edge.bundled import base_name
    from edge.errors import CapsuleEdgeError, MissingDependencyError

    if args.merge:
        text = tables.merged([_load(p) for p in args.merge])
        print(text)
        for readme in args.readme or []:
            _write_readme(readme, text)
        return 0

    cores = os.cpu_count() or 1
    threads = args.threads or sorted({1, cores})
    counts = QUICK if args.quick else FULL
    runs = args.runs or counts["runs"]
    planned = models.plan(None, args.data, threads, args.every_backend, not args.no_accuracy)
    if args.model:
        unknown = set(args.model) - {base_name(p.card) for p in planned}
        if unknown:
            raise BadInputError(
                f"--model {sorted(unknown)[0]}: not a bundled model (capsule-edge models)"
            )
        planned = [p for p in planned if base_name(p.card) in args.model]
    started = time.monotonic()
    done = [0]

    def progress(p: models.Planned) -> None:
        done[0] += 1
        what = f"{base_name(p.card)} {p.card.precision} {p.card.format} {p.backend} x{p.threads}"
        print(f"bench: [{done[0]}/{len(planned)}] {what}", file=sys.stderr, flush=True)

    rows = models.measure(planned, runs, counts["warmup"], args.frame, progress)
    if args.torch:
        if not args.torch.is_file():
            raise BadInputError(f"--torch {args.torch}: no such python")
        extra = models.torch_rows(
            args.torch,
            None,
            threads,
            runs,
            counts["warmup"],
            args.frame,
            lambda what: print(f"bench: {what}", file=sys.stderr, flush=True),
        )
        rows += [r for r in extra if not args.model or r["model"] in args.model]
        models.speedups(rows)
    peaks: dict[tuple[str, str, int], floor.Peak] = {}
    floor_notes = []
    for backend, present in machine.available_backends().items():
        if not present:
            continue
        print(f"bench: the floor through {backend}", file=sys.stderr, flush=True)
        for precision in ("fp32", "int8"):
            for n in threads:
                try:
                    peaks[(backend, precision, n)] = floor.measure(backend, precision, n)
                except (MissingDependencyError, CapsuleEdgeError) as exc:
                    floor_notes.append(f"{backend} {precision}: {exc}")
    for row in rows:
        row["floor_ratio"] = floor.ratio(row, peaks)
    end_to_end = None
    if not args.no_e2e:
        end_to_end = e2e.saturate(
            tuple(args.rates or e2e.RATES),
            3.0 if args.quick else 10.0,
            progress=lambda fps: print(
                f"bench: end to end at {fps} frames/s", file=sys.stderr, flush=True
            ),
        )
    doc: dict[str, Any] = {
        "machine": machine.describe(),
        "quick": args.quick,
        "runs": runs,
        "warmup": counts["warmup"],
        "threads": threads,
        "data": str(args.data),
        "floor": [vars(p) for p in peaks.values()],
        "floor_notes": floor_notes,
        "rows": rows,
        "e2e": end_to_end,
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    text = tables.markdown(doc)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        (args.out / "bench.md").write_text(text, encoding="utf-8")
        try:
            for png in plots.write(doc, args.out):
                print(f"bench: wrote {png}", file=sys.stderr)
        except MissingDependencyError as exc:
            print(f"bench: no plots: {exc}", file=sys.stderr)
    for readme in args.readme or []:
        _write_readme(readme, text)
    print(text)
    print(f"bench: {len(rows)} rows in {doc['elapsed_s']} s", file=sys.stderr)
    return 0


def add_parsers(sub: Any) -> None:
    b = sub.add_parser(
        "bench",
        help="latency and accuracy of every bundled model, backend, precision and thread count",
    )
    b.add_argument("--quick", action="store_true", help=f"{QUICK['runs']} timed runs a row")
    b.add_argument("--json", type=Path, help="write the results here")
    b.add_argument("--out", type=Path, help="folder for bench.json, bench.md and the plots")
    b.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        metavar="RESULT.json",
        help="measure nothing: one table of these results (several machines)",
    )
    b.add_argument(
        "--readme",
        type=Path,
        action="append",
        help="write the tables into this Markdown file, between its "
        "<!-- capsule-edge bench --> markers (repeatable)",
    )
    b.add_argument("--model", action="append", help="only this bundled model (repeatable)")
    b.add_argument(
        "--threads", type=_threads, help="thread counts, e.g. 1,4 (default: 1 and every core)"
    )
    b.add_argument("--runs", type=int, help="timed runs a row (default 300, --quick 30)")
    b.add_argument(
        "--data", type=Path, default=DATA_ROOT, help="validation data root (default ../shared/data)"
    )
    b.add_argument("--no-accuracy", action="store_true", help="time only")
    b.add_argument("--no-e2e", action="store_true", help="no end-to-end runs over the pty")
    b.add_argument(
        "--rates",
        type=_rates,
        help="end-to-end frame rates to try in turn, e.g. 5,10,20 (default 5 to 200)",
    )
    b.add_argument("--frame", type=Path, help="an image to time on (default: 512x430 noise)")
    b.add_argument(
        "--torch",
        type=Path,
        metavar="PYTHON",
        help="add the PyTorch reference of each detector (yolov5's model and NMS), measured by "
        "this python (one with torch and yolov5: .venv-yolo/bin/python)",
    )
    b.add_argument(
        "--every-backend", action="store_true", help="also OpenVINO on the LiteRT and ONNX files"
    )
    b.set_defaults(func=cmd_bench)
