"""``capsule-edge run`` (a study from a recorder, camera or folder) and ``capsule-edge
demo`` (the same against the recorder simulator on a pty)."""

from __future__ import annotations

import argparse
import json
import logging
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from edge.errors import BadInputError
from edge.runtime import config as settings
from edge.runtime.http import StatsServer, http_settings
from edge.runtime.models import Models, threads
from edge.runtime.pipeline import Runtime
from edge.study.errors import StudyError
from edge.study.store import Study
from firmware_bridge.protocol import CODEC_BY_SUFFIX, UART_MAX_CHUNK, USB_MAX_CHUNK, crc32
from firmware_bridge.sources import LOCAL_SESSION, FrameSource, LinkSource, open_source
from firmware_bridge.transport import LinkDown

log = logging.getLogger(__name__)

DATA = Path("../shared/data")


class StatusLine:
    """One live line on a terminal (rewritten in place); elsewhere a line every 10 s."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.tty = stream.isatty()
        self._last = 0.0

    def __call__(self, runtime: Runtime) -> None:
        now = time.monotonic()
        if not self.enabled or (not self.tty and now - self._last < 10.0):
            return
        self._last = now
        snap = runtime.stats.snapshot()
        c = snap["counters"]
        ledger = runtime.source.ledger.counts()
        lost = sum(v for k, v in ledger.items() if k.startswith(("LOST", "DROPPED")))
        latest = snap["latest_class"]
        p95 = snap["latency_ms"]["p95"]
        line = (
            f"{c.get('stored', 0):,} stored  {c.get('inferred', 0):,} inferred  "
            f"{snap['fps_in']:.1f}/{snap['fps_processed']:.1f} fps  "
            f"p95 {p95 if p95 is not None else '-'} ms  "
            f"backlog {snap['gauges'].get('backlog', 0)}  "
            f"skipped {c.get('skipped', 0)}  link lost {lost}  "
            f"class {latest[0] if latest else '-'}  polyp frames {c.get('polyp_frames', 0)}"
        )
        if self.tty:
            print(f"\r\033[K{line}", end="", file=self.stream, flush=True)
        else:
            print(line, file=self.stream, flush=True)

    def end(self) -> None:
        if self.enabled and self.tty:
            print(file=self.stream)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.source:
        out["source"] = args.source
    if args.study:
        out["study"] = str(args.study)
    for role in ("classifier", "detector"):
        model = getattr(args, f"{role}_model")
        if model:
            out[f"{role}.model"] = model
        if getattr(args, f"no_{role}"):
            out[f"{role}.enabled"] = False
        if args.backend:
            out[f"{role}.backend"] = args.backend
        if args.threads is not None:
            out[f"{role}.threads"] = args.threads
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


def _open_source(config: settings.Config) -> FrameSource:
    url = config["source"]
    if not url:
        raise BadInputError('no source: give --source URL or source = "..." in the config')
    try:
        source = open_source(
            url,
            capacity=config["link.capacity"],
            retransmit=config["link.retransmit"],
            hold_replies=True,
            chunk=config["link.chunk"],
        )
    except ValueError as exc:
        raise BadInputError(str(exc)) from None
    if isinstance(source, LinkSource):
        try:
            source.connect()  # a wrong or busy port is an error now, a lost one later is retried
        except LinkDown as exc:
            raise BadInputError(str(exc)) from None
    return source


def run_study(
    config: settings.Config,
    stop: threading.Event,
    *,
    status: bool = True,
    announce: TextIO | None = None,
    done: threading.Event | None = None,
    recording: bool | None = None,
) -> dict[str, Any]:
    """Open everything the settings name, run until ``stop``, close; the run's summary.
    Start-up lines and the status line go to ``announce`` (standard error). Whether the
    source is a recording (for ``workers = 0``) is the source's to say unless given."""
    announce = announce or sys.stderr  # looked up now: whatever stderr is at the call
    if not config["study"]:
        raise BadInputError('no study folder: give --study DIR or study = "..." in the config')
    # Checked before anything opens; the token is taken out of config (never stored).
    http = http_settings(config) if config["http.enabled"] else None
    # The source first: whether it is a recording decides how many workers to open.
    source = _open_source(config)
    closers: list[Any] = [source]
    try:
        recording = source.recording if recording is None else recording
        config = settings.choose_workers(config, recording)
        try:
            study = Study(Path(config["study"]))
        except StudyError as exc:
            raise BadInputError(str(exc)) from None
        guard = _Abandon(study)  # until the run ends: closing on an error commits nothing
        closers.append(guard)
        source.attach(study.origins(LOCAL_SESSION))
        models = Models.open(config)
        closers.append(models)
        # One set of models per inference worker: an interpreter runs one frame at a time.
        workers = [models]
        for _ in range(config["pipeline.workers"] - 1):
            workers.append(Models.open(config))
            closers.append(workers[-1])
        for warning in models.fallbacks:
            log.warning("%s", warning)
            print(f"capsule-edge: warning: {warning}", file=announce)
        line = StatusLine(announce, status)
        runtime = Runtime(
            source,
            study,
            workers,
            backlog=config["pipeline.backlog"],
            policy=config["pipeline.policy"],
            drain_s=config["pipeline.drain_s"],
            jsonl=sys.stdout if config["output.jsonl"] else None,
            on_tick=line,
            recording=recording,
        )
        server = None
        if http is not None:
            server = StatsServer(
                lambda: runtime.stats.snapshot() | {"link": runtime.link_status}, http
            )
            closers.append(server)
        described = models.describe()
        for role, d in described.items():
            print(
                f"capsule-edge: {role} {d['name']} ({d['precision']}) on {d['backend']}, "
                f"device {d['device']}, {threads(config, role)} thread(s)",
                file=announce,
            )
        origin = config.origin["pipeline.workers"]
        if origin == "command line":
            origin = "as set on the command line"
        elif not origin.startswith("chosen"):
            origin = f"as set in {origin}"
        print(f"capsule-edge: {len(workers)} inference worker(s), {origin}", file=announce)
        print(
            f"capsule-edge: study {study.folder}, source {source.name}"
            + (f", stats {server.url}/stats" if server else ""),
            file=announce,
            flush=True,
        )
        settings_json = json.dumps({"settings": config.values, "models": described})
        run = runtime.writer.call(
            lambda s: s.start_run(time.time_ns() // 1000, source.name, settings_json)
        )
        summary = runtime.run(stop, done)
        line.end()
        summary["study"] = str(study.folder)
        closers.remove(guard)
        if runtime.error:
            study.abandon()
        else:
            study.stop_run(run, time.time_ns() // 1000, json.dumps(summary))
            study.close()
        return summary
    finally:
        for closer in reversed(closers):
            try:
                closer.close()
            except Exception as exc:  # closing must not hide why the run ended
                log.warning("closing %s: %s", type(closer).__name__, exc)


class _Abandon:
    """Closes a study without committing, when a run ends on an error."""

    def __init__(self, study: Study) -> None:
        self.study = study

    def close(self) -> None:
        self.study.abandon()


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt  # a second signal: stop draining
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def cmd_run(args: argparse.Namespace) -> int:
    config = settings.load(args.config, _overrides(args))
    stop = threading.Event()
    _stop_on_signals(stop)
    summary = run_study(config, stop, status=not args.quiet)
    print(json.dumps(summary, indent=1), file=sys.stderr)
    if summary["error"]:
        print(f"capsule-edge: {summary['error']}", file=sys.stderr)
        return 1
    return 0


def _demo_frames(args: argparse.Namespace) -> tuple[list[str], str]:
    if args.frames is not None:
        if not args.frames.is_dir():
            raise BadInputError(f"{args.frames}: no such folder (--frames)")
        if not any(p.suffix.lower() in CODEC_BY_SUFFIX for p in args.frames.rglob("*")):
            raise BadInputError(f"{args.frames}: no .jpg, .jpeg or .png files in it (--frames)")
        return ["--frames", str(args.frames), "--loop"], f"frames from {args.frames}"
    polyps, others = DATA / "kvasir-seg" / "images", DATA / "hyper-kvasir" / "labeled-images"
    if polyps.is_dir() and others.is_dir():
        return (
            ["--frames", str(polyps), str(others)],
            f"real frames from {DATA} (Kvasir-SEG polyps and HyperKvasir, in turn)",
        )
    return ["--mucosa"], f"synthetic frames ({DATA} not found and no --frames given)"


def cmd_demo(args: argparse.Namespace) -> int:
    out: Path = args.out or Path(tempfile.mkdtemp(prefix="capsule-edge-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    frames, described = _demo_frames(args)
    link, truth = out / "recorder.pty", out / "recorder.json"
    study = args.study or out / "study"
    overrides = _overrides(args) | {"source": f"serial://{link}", "study": str(study)}
    if args.http_port is None:
        overrides["http.port"] = 0  # any free port: a demo must not clash with a real run
    config = settings.load(args.config, overrides)
    if not args.fps and not config["link.chunk"]:
        # A recorded study re-read at full speed comes over USB (no UART moves 100 frames
        # of 49 kB a second): the pty stands in for that link, with its chunk size.
        config.values["link.chunk"] = USB_MAX_CHUNK
        config.origin["link.chunk"] = "chosen for an unthrottled demo"
    command = [
        *(sys.executable, "-m", "edge.cli", "simulate", "--pty", str(link)),
        *("--count", str(args.count), "--fps", str(args.fps), "--ber", str(args.ber)),
        *("--seed", str(args.seed), "--log", str(truth), *frames),
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
    sim = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert sim.stdout is not None
    if not sim.stdout.readline():
        said = (sim.stderr.read().strip().splitlines() or ["no message"])[-1] if sim.stderr else ""
        raise BadInputError(f"the recorder simulator did not start: {said}")
    stop = threading.Event()
    _stop_on_signals(stop)
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
        f"{doc['latency_ms']['p99']} ms, {doc['polyp_frames']} frames with polyps",
        file=sys.stderr,
    )
    print(f"demo: study in {study}, summary in {out / 'summary.json'}", file=sys.stderr)
    return 1 if doc["error"] else 0


def demo_summary(out: Path, folder: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """The run's summary checked against the simulator's ground truth (when it wrote
    one: a recorder stopped by force does not)."""
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
        "frames_not_inferred": summary["frames_not_inferred"],  # after a Ctrl-C: on resume
        "polyp_frames": summary["polyp_frames"],
        "stage_ms": summary["stage_ms"],
        "models": summary["models"],
        "error": summary["error"],
        "study": str(folder),
    }


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML settings file (flags override it)")
    p.add_argument("--study", type=Path, help="study folder (created, or resumed)")
    p.add_argument("--backend", help="backend for both models: litert, openvino, onnxruntime")
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


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def add_parsers(sub: Any) -> None:
    r = sub.add_parser("run", help="run a study: frames in, stored, classified and detected")
    r.add_argument("--source", help="serial://, socket://, usb://, video://, dir:// or a path")
    _add_common(r)
    r.set_defaults(func=cmd_run)

    d = sub.add_parser("demo", help="a study against the recorder simulator on a pty")
    d.add_argument("--count", type=_positive, default=300, help="frames the recorder sends")
    d.add_argument("--fps", type=float, default=30.0, help="capture rate (0: as fast as it goes)")
    d.add_argument("--ber", type=float, default=0.0, help="bit-error rate on the link")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--frames", type=Path, help="folder of frames to send (default: shared data)")
    d.add_argument("--out", type=Path, help="folder for the study and summary.json")
    d.set_defaults(source=None)
    _add_common(d)
    d.set_defaults(func=cmd_demo)
