"""``capsule-edge demo``: a study against the recorder simulator on a pty, checked
against what the simulator says it sent."""

from __future__ import annotations

import argparse
import json
import logging
import resource
import secrets
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from edge.cli.run import add_common, overrides, stop_on_signals
from edge.cli.simulate import spawn_simulator
from edge.errors import BadInputError, CapsuleEdgeError
from firmware_bridge.protocol import CODEC_BY_SUFFIX, UART_MAX_CHUNK, USB_MAX_CHUNK, crc32

DATA = Path("../shared/data")


def _demo_frames(args: argparse.Namespace, profile: str) -> tuple[list[str], str]:
    if args.frames is not None:
        if not args.frames.is_dir():
            raise BadInputError(f"{args.frames}: no such folder (--frames)")
        if not any(p.suffix.lower() in CODEC_BY_SUFFIX for p in args.frames.rglob("*")):
            raise BadInputError(f"{args.frames}: no .jpg, .jpeg or .png files in it (--frames)")
        return ["--frames", str(args.frames), "--loop"], f"frames from {args.frames}"
    capsule = DATA / "wce-bleedgen" / "images"
    if profile == "capsule" and capsule.is_dir():
        return (
            ["--frames", str(capsule), "--loop"],
            f"real capsule frames from {capsule} (WCEBleedGen, bleeding and not)",
        )
    polyps, others = DATA / "kvasir-seg" / "images", DATA / "hyper-kvasir" / "labeled-images"
    if profile == "colon" and polyps.is_dir() and others.is_dir():
        return (
            ["--frames", str(polyps), str(others)],
            f"real frames from {DATA} (Kvasir-SEG polyps and HyperKvasir, in turn)",
        )
    return ["--mucosa"], f"synthetic frames ({DATA} not found and no --frames given)"


def cmd_demo(args: argparse.Namespace) -> int:
    out: Path = args.out or Path(tempfile.mkdtemp(prefix="capsule-edge-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    link, truth = out / "recorder.pty", out / "recorder.json"
    study = args.study or out / "study"
    from edge.runtime import config as settings
    from edge.runtime.study_run import run_study

    given = overrides(args) | {"source": f"serial://{link}", "study": str(study)}
    if args.http_port is None:
        given["http.port"] = 0  # any free port: a demo must not clash with a real run
    config = settings.load(args.config, given)
    frames, described = _demo_frames(args, config["profile"])
    if not args.fps and not config["link.chunk"]:
        # A recorded study re-read at full speed comes over USB (no UART moves 100 frames
        # of 49 kB a second): the pty stands in for that link, with its chunk size.
        config.values["link.chunk"] = USB_MAX_CHUNK
        config.origin["link.chunk"] = "chosen for an unthrottled demo"
    command = [
        *("--pty", str(link)),
        *("--count", str(args.count), "--fps", str(args.fps), "--ber", str(args.ber)),
        *("--seed", str(args.seed), "--log", str(truth), *frames),
        # The recorder waits for the host as long as loading the models may take on a
        # slow device; the demo stops it itself if the runtime ends first.
        *("--linger", "300"),
        # Every demo is a recorder session of its own, as every boot of a recorder is:
        # a second demo into the same study adds its frames instead of matching them.
        *("--session", str(secrets.randbelow(0x7FFF_0000) + 1)),
        # The simulated recorder offers the chunk size the runtime is set to accept.
        *(("--chunk", str(config["link.chunk"])) if config["link.chunk"] else ()),
    ]
    print(
        f"demo: recorder simulator on a pty, {args.count} frames at {args.fps or 'full'} fps, "
        f"BER {args.ber}, chunks of {config['link.chunk'] or UART_MAX_CHUNK} bytes at most; "
        f"{described}",
        file=sys.stderr,
    )
    # Its own session: a Ctrl-C meant for the demo must not kill the recorder before it
    # has written its account of what it sent.
    sim, _ = spawn_simulator(*command, own_session=True)
    stop = threading.Event()
    stop_on_signals(stop)
    # The simulated recorder closes its pty when it is done: that is the end of the
    # demo, not a link failure worth a warning (losses still show in the summary).
    logging.getLogger("firmware_bridge.transport").setLevel(logging.ERROR)

    # The recorder is done once everything it sent is acknowledged, i.e. stored: the
    # stream has ended, and the runtime infers what it holds to the end (Ctrl-C still
    # stops it, draining for drain_s).
    done = threading.Event()

    def watch() -> None:
        sim.wait()
        done.set()

    threading.Thread(target=watch, daemon=True).start()
    try:
        summary = run_study(config, stop, status=not args.quiet, done=done, recording=not args.fps)
    finally:
        if sim.poll() is None:
            sim.terminate()
        sim.wait()
    doc = demo_summary(out, study, summary)
    # The simulated recorder shares this machine's cores, a real one does not: say how
    # much of them it took (the simulator is this process's only child).
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    doc["recorder_cpu_s"] = round(child.ru_utime + child.ru_stime, 2)
    doc["elapsed_s"] = summary["elapsed_s"]
    (out / "summary.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(
        f"demo: {doc['frames_sent']} sent, {doc['frames_stored']} stored, "
        f"lost {doc['frames_lost'] or 0}, {doc['frames_inferred']} inferred, "
        f"{doc['frames_skipped']} skipped, {doc['fps']} fps, latency p50 "
        f"{doc['latency_ms']['p50']} / p95 {doc['latency_ms']['p95']} / p99 "
        f"{doc['latency_ms']['p99']} ms"
        + "".join(
            f", {n} frames with {'/'.join(summary['models'][role]['labels'])}"
            for role, n in doc["detection_frames"].items()
        ),
        file=sys.stderr,
    )
    print(f"demo: study in {study}, summary in {out / 'summary.json'}", file=sys.stderr)
    if not args.no_report and not doc["error"]:
        try:
            print(f"demo: report in {_report(study, out)}", file=sys.stderr)
        except (CapsuleEdgeError, OSError) as exc:  # the study itself is whole
            print(f"demo: no report: {exc}", file=sys.stderr)
    return 1 if doc["error"] else 0


def _report(study: Path, out: Path) -> Path:
    """The study's report (and its JSON twin beside summary.json): what a reader opens."""
    from edge.reading.analysis import read_study
    from edge.reading.report import write
    from edge.study import sealing

    # An encrypted study's report shows frames in the clear: beside the study, not in it.
    html = (out if sealing.is_sealed(study) else study) / "report.html"
    write(read_study(study), html, out / "report.json")
    return html


def demo_summary(out: Path, folder: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """The run's summary checked against the simulator's ground truth (when it wrote
    one: a recorder stopped by force does not)."""
    from edge.study.store import Study

    truth_path = out / "recorder.json"
    try:
        truth = json.loads(truth_path.read_text(encoding="utf-8"))
        sent: dict[tuple[int, int], int] | None = {(s, i): crc for s, i, _, crc in truth["frames"]}
    except (OSError, ValueError, KeyError, TypeError):
        sent = None
    with Study(folder) as study:
        sessions = {key[0] for key in sent} if sent is not None else set()
        stored = [key for key in study.frames() if sent is None or key[0] in sessions]
        corrupt = sum(
            1
            for key in stored
            if sent is not None and key in sent and crc32(study.read(*key).data) != sent[key]
        )
        lost: dict[str, int] = {}
        for outcome, reason, n in study.db.execute(
            "SELECT outcome, reason, COUNT(*) FROM ledger WHERE outcome IN ('lost', 'dropped') "
            "GROUP BY outcome, reason"
        ):
            lost[f"{outcome}:{reason or 'unknown'}"] = int(n)
    return {
        "frames_sent": len(sent) if sent is not None else None,
        "frames_stored": len(stored),
        "frames_lost": lost,
        "corrupt_delivered": corrupt,
        **{k: summary[k] for k in ("frames_inferred", "frames_skipped", "fps", "latency_ms")},
        "alerts": summary.get("alerts", 0),  # findings confirmed live (ALERTs sent)
        "frames_not_inferred": summary["frames_not_inferred"],  # after a Ctrl-C: on resume
        "detection_frames": summary["detection_frames"],  # by detector role
        "stage_ms": summary["stage_ms"],
        "runtime_cpu_s": summary["cpu_s"],  # the runtime's process, model loading excluded
        "models": summary["models"],
        "error": summary["error"],
        "study": str(folder),
    }


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def add_parsers(sub: Any) -> None:
    d = sub.add_parser("demo", help="a study against the recorder simulator on a pty")
    d.add_argument("--count", type=_positive, default=300, help="frames the recorder sends")
    d.add_argument("--fps", type=float, default=30.0, help="capture rate (0: as fast as it goes)")
    d.add_argument("--ber", type=float, default=0.0, help="bit-error rate on the link")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--frames", type=Path, help="folder of frames to send (default: shared data)")
    d.add_argument("--out", type=Path, help="folder for the study and summary.json")
    d.add_argument(
        "--no-report", action="store_true", help="do not write the study report at the end"
    )
    d.set_defaults(source=None)
    add_common(d)
    d.set_defaults(func=cmd_demo)
