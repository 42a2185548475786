"""``capsule-edge run``: a study from a recorder, camera or folder."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from edge.bundled import PROFILES


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.source:
        out["source"] = args.source
    if args.study:
        out["study"] = str(args.study)
    if args.profile:
        out["profile"] = args.profile
    for role in ("classifier", "detector"):
        model = getattr(args, f"{role}_model")
        if model:
            out[f"{role}.model"] = model
        if getattr(args, f"no_{role}"):
            out[f"{role}.enabled"] = False
    if args.backend:  # every model's, further detectors' too
        out["*.backend"] = args.backend
    if args.threads is not None:
        out["*.threads"] = args.threads
    if args.backlog is not None:
        out["pipeline.backlog"] = args.backlog
    if args.policy:
        out["pipeline.policy"] = args.policy
    if args.workers is not None:
        out["pipeline.workers"] = args.workers
    if args.http_port is not None:
        out["http.port"] = args.http_port
    if args.no_http:
        out["http.enabled"] = False
    if args.jsonl:
        out["output.jsonl"] = True
    return out


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML settings file (flags override it)")
    p.add_argument("--study", type=Path, help="study folder (created, or resumed)")
    p.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        help="bundled models: colon (classifier + polyp detector, the default) or capsule "
        "(bleeding detector)",
    )
    p.add_argument("--backend", help="backend for every model: litert, openvino, onnxruntime")
    p.add_argument("--threads", type=int, help="inference threads per model")
    p.add_argument("--classifier-model", help="classifier model file (default: bundled)")
    p.add_argument("--detector-model", help="detector model file (default: bundled)")
    p.add_argument("--no-classifier", action="store_true", help="run the detector only")
    p.add_argument("--no-detector", action="store_true", help="run the classifier only")
    p.add_argument("--backlog", type=int, help="frames stored but waiting for inference, at most")
    p.add_argument("--policy", help="when the backlog is full: skip-oldest or skip-newest")
    p.add_argument(
        "--workers",
        type=int,
        help="frames inferred at once, each with its own models (0: chosen by source)",
    )
    p.add_argument("--http-port", type=int, help="port of /stats and /metrics (0: any free one)")
    p.add_argument("--no-http", action="store_true", help="no /stats and /metrics")
    p.add_argument("--jsonl", action="store_true", help="findings as JSON lines on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no live status line")


def stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt  # a second signal: stop draining
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def cmd_run(args: argparse.Namespace) -> int:
    from edge.runtime import config as settings
    from edge.runtime.study_run import run_study

    config = settings.load(args.config, overrides(args))
    stop = threading.Event()
    stop_on_signals(stop)
    summary = run_study(config, stop, status=not args.quiet)
    print(json.dumps(summary, indent=1), file=sys.stderr)
    problem = summary["error"] or summary.get("stop_reason")
    if problem:
        print(f"capsule-edge: {problem}", file=sys.stderr)
        return 1
    return 0


def add_parsers(sub: Any) -> None:
    r = sub.add_parser("run", help="run a study: frames in, stored, classified and detected")
    r.add_argument("--source", help="serial://, socket://, usb://, video://, dir:// or a path")
    add_common(r)
    r.set_defaults(func=cmd_run)
