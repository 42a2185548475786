"""The runtime's settings: a TOML file, then command-line flags over it.

Every key is declared once below with its type, default and check; an unknown key or a
bad value is a one-line error naming the key and the file.

    source = "serial:///dev/ttyACM0?baud=921600"
    study = "studies/patient-17"
    profile = "colon"       # the bundled models to run: colon (classifier + polyp
                            # detector) or capsule (bleeding detector); a role's own
                            # enabled/model below overrides its profile

    [classifier]            # and [detector]: the same keys
    enabled = true
    model = ""              # "" = the profile's; a bundled name (capsule-edge models) or a file
    backend = "litert"      # litert | openvino | onnxruntime
    threads = 0             # 0 = every core; at most 256
    # Each backend takes only its own settings; one given to another backend is an error.
    device = "CPU"          # OpenVINO only: CPU, GPU, NPU, AUTO
    precision = "f32"       # OpenVINO only: inference precision hint f32 | f16 | bf16
    delegate = ""           # LiteRT only: delegate library, e.g. libedgetpu.so.1
    providers = []          # ONNX Runtime only: providers, e.g. ["CUDAExecutionProvider"]
    # [detector] only:
    conf = 0.25             # findings at or above this confidence
    iou = 0.45              # NMS overlap

    [detector.bleeding]     # more detectors beside [detector], each named, each with the
    model = "yolov5s-bleeding-224"  # keys of [detector] (its own backend, threads, conf);
    backend = "openvino"    # model is required. Findings, RESULT boxes, /stats and the
                            # study carry each detector's name ("detector.bleeding")

    [pipeline]
    backlog = 256           # frames stored but not yet inferred, at most (1-65536)
    policy = "skip-oldest"  # when the backlog is full: skip-oldest | skip-newest
    workers = 0             # frames inferred at once, each worker with its own models.
                            # 0 = chosen by source: 1 using every core for a live one
                            # (lowest latency); one per core, threads = 1, for a
                            # recording (dir://, a video file, demo --fps 0): most frames/s
    drain_s = 10.0          # at SIGINT/SIGTERM, infer the backlog for at most this long;
                            # what is left is inferred when the study is resumed

    [link]
    capacity = 64           # frames the recorder may have beyond the last ACK (1-1024)
    retransmit = true
    chunk = 0               # largest chunk accepted (bytes, 16-65535; the recorder may offer
                            # less); 0 = 1024 on serial and sockets, 16384 on USB

    [http]                  # GET /stats (JSON) and /metrics (Prometheus)
    enabled = true
    address = "127.0.0.1"   # loopback; any other address needs a token
    port = 8321
    token = ""              # requests then need "Authorization: Bearer <token>" (16+ chars)
    token_file = ""         # or: a file holding the token (keep it out of the config)
    max_connections = 32    # open at once; more are answered 503
    timeout_s = 5.0         # a connection with nothing to answer this long is closed
                            # (idle, or a request that never completes)

    [storage]               # the study's disk
    reserve_mb = 256        # stop receiving when free space falls to this; below it at
                            # start the study does not start (0: no reserve, the disk
                            # may fill: frames then stop being acknowledged)
    fps = 0.0               # for the start-up estimate: the recorder's frames a second
    hours = 12.0            # and the study's length (0 fps: no estimate)
    frame_kb = 0.0          # mean frame size; 0 = measured from the study's frames
    key_file = ""           # a new study's frames (AES-256-GCM) and database (SQLCipher)
                            # encrypted with this key (`capsule-edge study keygen FILE`;
                            # or $CAPSULE_EDGE_STUDY_KEY); never inside the study

    [output]
    jsonl = false           # findings as JSON lines on stdout
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.backends.options import MAX_THREADS, PRECISIONS, not_taken, settings_of
from edge.backends.registry import BACKENDS
from edge.bundled import PROFILES
from edge.errors import BadInputError
from firmware_bridge.limits import MAX_CHUNK_LIMIT, MIN_CHUNK

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

Check = Callable[[Any], str | None]  # None when the value is fine, else what is wrong


def _one_of(*allowed: str) -> Check:
    return lambda v: None if v in allowed else f"must be one of {', '.join(allowed)}"


def _between(low: float, high: float) -> Check:
    return lambda v: None if low <= v <= high else f"must be between {low} and {high}"


# The settings that belong to one backend or another (threads belongs to all).
BACKEND_SETTINGS = ("device", "precision", "delegate", "providers")
# Frames waiting for inference. Each is held until inferred, so the bound keeps a typo
# (backlog = 10000000) from becoming unbounded memory; 65536 frames is over half an hour
# of a 30 frames/s recording.
MAX_BACKLOG = 65536
# Frames the recorder may send beyond the last ACK. The wire could say 65535 (the credits
# are a u16), but every credit is a frame the host must be ready to hold while it is
# assembled: 1024 frames of 100 kB are 100 MB, the most a Pi-sized device should risk.
MAX_CAPACITY = 1024


def _chunk(v: int) -> str | None:
    ok = v == 0 or MIN_CHUNK <= v <= MAX_CHUNK_LIMIT
    return None if ok else f"must be 0 (by transport) or {MIN_CHUNK}-{MAX_CHUNK_LIMIT}"


def _port(v: int) -> str | None:
    return None if 0 <= v <= 65535 else "must be a port number (0-65535)"


def _strings(v: list[Any]) -> str | None:
    return None if all(isinstance(x, str) for x in v) else "must be a list of strings"


@dataclass(frozen=True)
class Key:
    type: type
    default: Any
    check: Check | None = None


MODEL_KEYS = {
    "enabled": Key(bool, True),
    "model": Key(str, ""),
    "backend": Key(str, "litert", _one_of(*sorted(BACKENDS))),
    "threads": Key(int, 0, _between(0, MAX_THREADS)),
    "device": Key(str, "CPU"),
    "delegate": Key(str, ""),
    "providers": Key(list, [], _strings),
    "precision": Key(str, "f32", _one_of(*PRECISIONS)),
}
DETECTOR_KEYS = {
    **MODEL_KEYS,
    "conf": Key(float, 0.25, _between(0.0, 1.0)),
    "iou": Key(float, 0.45, _between(0.01, 1.0)),
}
SCHEMA: dict[str, dict[str, Key] | Key] = {
    "source": Key(str, ""),
    "study": Key(str, ""),
    "profile": Key(str, "colon", _one_of(*PROFILES)),
    "classifier": MODEL_KEYS,
    "detector": DETECTOR_KEYS,
    "pipeline": {
        "backlog": Key(int, 256, _between(1, MAX_BACKLOG)),
        "policy": Key(str, "skip-oldest", _one_of("skip-oldest", "skip-newest")),
        "workers": Key(int, 0, _between(0, 64)),
        "drain_s": Key(float, 10.0, _between(0.0, 3600.0)),
    },
    "link": {
        "capacity": Key(int, 64, _between(1, MAX_CAPACITY)),
        "retransmit": Key(bool, True),
        "chunk": Key(int, 0, _chunk),
    },
    "http": {
        "enabled": Key(bool, True),
        "address": Key(str, "127.0.0.1"),
        "port": Key(int, 8321, _port),
        "token": Key(str, ""),
        "token_file": Key(str, ""),
        "max_connections": Key(int, 32, _between(1, 1024)),
        "timeout_s": Key(float, 5.0, _between(0.1, 300.0)),
    },
    "reading": {
        "confirm_frames": Key(int, 3, _between(1, 1000)),
    },
    "storage": {
        "reserve_mb": Key(int, 256, _between(0, 10_000_000)),
        "fps": Key(float, 0.0, _between(0.0, 1000.0)),
        "hours": Key(float, 12.0, _between(0.0, 168.0)),
        "frame_kb": Key(float, 0.0, _between(0.0, 100_000.0)),
        "key_file": Key(str, ""),
    },
    "output": {"jsonl": Key(bool, False)},
}


# A further detector's name: [detector.<name>], its role "detector.<name>".
EXTRA_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")


@dataclass
class Config:
    values: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)  # key -> "default", file or "--flag"

    def __getitem__(self, dotted: str) -> Any:
        return self.values[dotted]

    def roles(self) -> list[str]:
        """Every model's settings prefix: classifier, detector, then each further
        detector (detector.<name>) in the order the file gives them."""
        extra = [
            k[: -len(".model")] for k in self.values if k.count(".") == 2 and k.endswith(".model")
        ]
        return ["classifier", "detector", *extra]


def choose_workers(config: Config, recording: bool, cores: int | None = None) -> Config:
    """``workers = 0`` made a number for this source: the config to run with.

    A live source wants each frame's findings soon: one worker, every core on it. A
    recording wants the most frames per second: a small model does not keep two cores
    busy with one frame, so one single-threaded worker per core (threads set by hand
    are kept, with fewer workers to match)."""
    if config["pipeline.workers"]:
        return config
    cores = cores or os.cpu_count() or 1
    chosen = Config(dict(config.values), dict(config.origin))
    why = "chosen for a recording" if recording else "chosen for a live source"
    workers = 1
    if recording and cores > 1:
        threads = 1
        for role in chosen.roles():
            if not chosen.values[f"{role}.threads"]:
                chosen.values[f"{role}.threads"] = 1
                chosen.origin[f"{role}.threads"] = why
            if chosen.values[f"{role}.enabled"]:
                threads = max(threads, chosen.values[f"{role}.threads"])
        workers = max(1, cores // threads)
    chosen.values["pipeline.workers"] = workers
    chosen.origin["pipeline.workers"] = why
    return chosen


def _check(name: str, key: Key, value: Any, where: str) -> Any:
    # bool is an int in Python; a count given as true is a mistake, not 1.
    if key.type is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise BadInputError(f"{where}: {name} must be a whole number, got {value!r}")
    if key.type is float and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise BadInputError(f"{where}: {name} must be a number, got {value!r}")
    if key.type is float:
        value = float(value)
    elif key.type is not int and not isinstance(value, key.type):
        raise BadInputError(f"{where}: {name} must be a {key.type.__name__}, got {value!r}")
    problem = key.check(value) if key.check else None
    if problem:
        raise BadInputError(f"{where}: {name} {problem}, got {value!r}")
    return value


def defaults() -> Config:
    config = Config()
    for name, entry in SCHEMA.items():
        items = entry.items() if isinstance(entry, dict) else [(None, entry)]
        for sub, key in items:
            dotted = f"{name}.{sub}" if sub else name
            config.values[dotted] = key.default
            config.origin[dotted] = "default"
    return config


def _extra_detector(config: Config, name: str, table: dict[str, Any], where: str) -> None:
    """A further detector, [detector.<name>]: the keys of [detector], model required."""
    role = f"detector.{name}"
    if not EXTRA_NAME.fullmatch(name):
        raise BadInputError(
            f"{where}: [{role}]: a detector's name is lower-case letters, digits, - and _ "
            "(at most 32, a letter first)"
        )
    for sub in table:
        if sub not in DETECTOR_KEYS:
            raise BadInputError(f"{where}: unknown key {role}.{sub}")
    if not table.get("model"):
        raise BadInputError(f"{where}: [{role}] needs a model (a bundled name or a file)")
    for sub, key in DETECTOR_KEYS.items():
        dotted = f"{role}.{sub}"
        if sub in table:
            config.values[dotted] = _check(dotted, key, table[sub], where)
            config.origin[dotted] = where
        else:
            config.values[dotted] = key.default
            config.origin[dotted] = "default"


def _lookup(dotted: str, config: Config) -> Key | None:
    if dotted.count(".") == 2 and dotted.startswith("detector."):  # a further detector's
        role, _, sub = dotted.rpartition(".")
        return DETECTOR_KEYS.get(sub) if f"{role}.model" in config.values else None
    name, _, sub = dotted.partition(".")
    entry = SCHEMA.get(name)
    if isinstance(entry, dict):
        return entry.get(sub) if sub else None
    return entry if not sub else None


def load(path: Path | None, overrides: dict[str, Any] | None = None) -> Config:
    """Defaults, then the file (if any), then ``overrides`` ({"detector.backend": ...})."""
    config = defaults()
    if path is not None:
        where = str(path)
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BadInputError(f"{path}: no such config file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInputError(f"{path}: unreadable ({exc})") from None
        except tomllib.TOMLDecodeError as exc:
            raise BadInputError(f"{path}: not valid TOML ({exc})") from None
        for name, value in doc.items():
            entry = SCHEMA.get(name)
            if entry is None:
                raise BadInputError(f"{where}: unknown key {name!r}")
            if isinstance(entry, dict):
                if not isinstance(value, dict):
                    raise BadInputError(f"{where}: {name} must be a [{name}] table")
                for sub, item in value.items():
                    if name == "detector" and isinstance(item, dict):
                        _extra_detector(config, sub, item, where)
                        continue
                    if sub not in entry:
                        raise BadInputError(f"{where}: unknown key {name}.{sub}")
                    dotted = f"{name}.{sub}"
                    config.values[dotted] = _check(dotted, entry[sub], item, where)
                    config.origin[dotted] = where
            else:
                config.values[name] = _check(name, entry, value, where)
                config.origin[name] = where
    for given, value in (overrides or {}).items():
        # "*.backend": the same setting for every model (--backend, --threads)
        every = given.startswith("*.")
        for dotted in [f"{r}.{given[2:]}" for r in config.roles()] if every else [given]:
            key = _lookup(dotted, config)
            if key is None:
                raise BadInputError(f"command line: unknown setting {given}")
            config.values[dotted] = _check(dotted, key, value, "command line")
            config.origin[dotted] = "command line"
    _check_backend_settings(config)
    _apply_profile(config)
    return config


def _apply_profile(config: Config) -> None:
    """The profile's model for each role whose ``model`` and ``enabled`` were not given."""
    profile = config["profile"]
    why = f"profile {profile} ({config.origin['profile']})"
    for role, name in PROFILES[profile].items():
        if name is None:
            if config.origin[f"{role}.enabled"] == "default":
                config.values[f"{role}.enabled"] = False
                config.origin[f"{role}.enabled"] = why
        elif config.origin[f"{role}.model"] == "default":
            config.values[f"{role}.model"] = name
            config.origin[f"{role}.model"] = why


def _check_backend_settings(config: Config) -> None:
    """A backend setting given for a model whose backend does not take it (LiteRT with
    ``device = "NPU"``) is an error naming where it was given, not silently ignored."""
    for role in config.roles():
        backend = config[f"{role}.backend"]
        for key in BACKEND_SETTINGS:
            dotted = f"{role}.{key}"
            value = config[dotted]
            if config.origin[dotted] == "default" or value in ("", []):
                continue
            if key not in settings_of(backend):
                raise BadInputError(
                    f"{config.origin[dotted]}: {dotted} = {value!r}: {not_taken(backend, key)} "
                    f"(it is the backend of [{role}])"
                )
