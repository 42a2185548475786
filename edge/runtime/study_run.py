"""A study from start to end: the source, the study folder, the models, the runtime and
the stats server opened from the settings, run until stopped, and closed in reverse."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from edge.errors import BadInputError
from edge.reading.events import TrackerSettings
from edge.runtime import config as settings
from edge.runtime import disk
from edge.runtime.http import StatsServer, http_settings
from edge.runtime.live import LiveReading
from edge.runtime.models import Models, threads
from edge.runtime.notify import Notifier, Watchdog, watchdog_interval
from edge.runtime.pipeline import Runtime
from edge.runtime.sources import LOCAL_SESSION, FrameSource, LinkSource, open_source
from edge.runtime.status_line import StatusLine
from edge.study import sealing
from edge.study.errors import StudyError
from edge.study.store import Study
from firmware_bridge.transport import LinkDown

log = logging.getLogger(__name__)


def open_configured_source(config: settings.Config) -> FrameSource:
    url = config["source"]
    if not url:
        raise BadInputError('no source: give --source URL or source = "..." in the config')
    source = open_source(
        url,
        capacity=config["link.capacity"],
        retransmit=config["link.retransmit"],
        hold_replies=True,
        chunk=config["link.chunk"],
    )
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
    with contextlib.ExitStack() as lifetimes:
        source = open_configured_source(config)
        lifetimes.callback(_close, source)
        recording = source.recording if recording is None else recording
        config = settings.choose_workers(config, recording)
        folder = Path(config["study"])
        try:  # before the disk check: it reads a resumed study's frame sizes
            if config["storage.key_file"]:
                sealing.use_key(Path(config["storage.key_file"]))
        except StudyError as exc:
            raise BadInputError(str(exc)) from None
        warning = disk.check_at_start(
            folder,
            config["storage.reserve_mb"],
            config["storage.fps"],
            config["storage.hours"],
            config["storage.frame_kb"],
        )
        if warning:
            log.warning("%s", warning)
            print(f"capsule-edge: warning: {warning}", file=announce)
        try:
            study = Study(folder)
        except StudyError as exc:
            raise BadInputError(str(exc)) from None
        # Until the run ends, closing (on an error) commits nothing.
        guard = lifetimes.enter_context(contextlib.ExitStack())
        guard.callback(_close, study, "abandon")
        source.attach(study.origins(LOCAL_SESSION), study.next_index(LOCAL_SESSION))
        models = Models.open(config)
        lifetimes.callback(_close, models)
        # One set of models per inference worker: an interpreter runs one frame at a time.
        workers = [models]
        for _ in range(config["pipeline.workers"] - 1):
            workers.append(Models.open(config))
            lifetimes.callback(_close, workers[-1])
        if isinstance(source, LinkSource):
            # The recorder hears one RESULT for every frame, with the names of its ids.
            source.link.results = True
            source.link.set_classes(*models.class_names())
        for warning in models.fallbacks:
            log.warning("%s", warning)
            print(f"capsule-edge: warning: {warning}", file=announce)
        line = StatusLine(announce, status)
        # Under systemd (Type=notify): READY once receiving, pings while the pipeline moves.
        notifier = Notifier.from_env()
        lifetimes.callback(notifier.close)
        interval = watchdog_interval()
        watchdog = Watchdog(notifier, interval) if notifier.active and interval else None

        def tick(rt: Runtime) -> None:
            line(rt)
            if watchdog is not None:
                watchdog(rt)

        runtime = Runtime(
            source,
            study,
            workers,
            backlog=config["pipeline.backlog"],
            policy=config["pipeline.policy"],
            drain_s=config["pipeline.drain_s"],
            jsonl=sys.stdout if config["output.jsonl"] else None,
            on_tick=tick,
            recording=recording,
        )
        if config["storage.reserve_mb"]:  # 0: no reserve, nothing watched
            runtime.disk = disk.DiskWatch(study.folder, config["storage.reserve_mb"])
        live = runtime.live = LiveReading(
            study.archive_dir,
            *models.class_names(),
            runtime.queue_alert,
            timed=not recording,
            publish=http is not None,
            settings=TrackerSettings(confirm_frames=config["reading.confirm_frames"]),
        )
        lifetimes.callback(_close, live)
        server = None
        if http is not None:
            server = StatsServer(
                lambda: (
                    runtime.stats.snapshot()
                    | {"link": runtime.link_status, "models": runtime.model_figures()}
                    | live.snapshot()
                ),
                http,
                idle=not recording,
            )
            lifetimes.callback(_close, server)
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
        notifier.ready(f"study {study.folder}, source {source.name}")
        summary = runtime.run(stop, done)
        notifier.stopping(
            f"{summary['frames_stored']} stored, {summary['frames_inferred']} inferred"
        )
        live.close()  # what was queued is linked
        summary["alerts"] = live.events  # events confirmed live, each an alert
        line.end()
        summary["study"] = str(study.folder)
        guard.pop_all()  # the run ended: the study is closed as its outcome says
        if runtime.error:
            study.abandon()
        else:
            study.stop_run(run, time.time_ns() // 1000, json.dumps(summary))
            study.close()
        return summary


def _close(thing: Any, method: str = "close") -> None:
    try:
        getattr(thing, method)()
    except Exception as exc:  # closing must not hide why the run ended
        log.warning("closing %s: %s", type(thing).__name__, exc)
