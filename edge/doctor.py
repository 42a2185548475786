"""``capsule-edge doctor``: everything a study needs, checked before the study starts.

Each check is a line: ok, warn (the study runs, but look) or fail (the study would not
start or would not last). The models are opened as ``run`` would open them, on their
configured backend and device, so a missing delegate, a device that falls back to the
CPU or a model whose sha256 is not its card's shows here, not at the patient's side.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import time
import urllib.parse
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edge.errors import CapsuleEdgeError

OK, WARN, FAIL = "ok", "warn", "fail"
MIN_FREE_GB = 2.0  # below this a study of any length is at risk
EARLIEST_SANE = 1_767_225_600  # 2026-01-01: a clock before it was never set


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str

    def line(self) -> str:
        return f"{self.status.upper():<5} {self.name}: {self.detail}"


PACKAGES = {"litert": "ai-edge-litert", "openvino": "openvino", "onnxruntime": "onnxruntime"}


def backends() -> list[Check]:
    """Each backend: installed (and its version), or what brings it. Not having one is a
    warning: only the configured models' backends must be there (``models`` says)."""
    from edge.backends.registry import BACKENDS
    from edge.bench.machine import available_backends

    out = []
    for name, present in available_backends().items():
        if not present:
            out.append(Check(f"backend {name}", WARN, f"not installed ({BACKENDS[name].install})"))
            continue
        try:
            version = importlib.metadata.version(PACKAGES[name])
        except importlib.metadata.PackageNotFoundError:
            version = "version unknown"
        out.append(Check(f"backend {name}", OK, f"{PACKAGES[name]} {version}"))
    return out


def accelerators() -> list[Check]:
    from edge.bench.machine import accelerators_seen, available_backends

    found = accelerators_seen(available_backends())
    out = [
        Check(
            "Edge TPU delegate",
            OK if found.get("edgetpu_delegate") else WARN,
            found.get("edgetpu_delegate") or "libedgetpu not found (only needed for an Edge TPU)",
        )
    ]
    if "openvino_devices" in found:
        out.append(Check("OpenVINO devices", OK, ", ".join(map(str, found["openvino_devices"]))))
    if "onnxruntime_providers" in found:
        out.append(Check("ONNX Runtime providers", OK, ", ".join(found["onnxruntime_providers"])))
    return out


def models(config: Any) -> list[Check]:
    """Each configured model opened as ``run`` opens it: where it really runs, or why not."""
    from edge.runtime.models import Models, threads

    try:
        opened = Models.open(config)
    except CapsuleEdgeError as exc:
        return [Check("models", FAIL, str(exc))]
    out = []
    try:
        for role, d in opened.describe().items():
            where = f"{d['backend']} on {d['device']}, {threads(config, role)} thread(s)"
            detail = f"{d['name']} ({d['precision']}), {where}, sha256 {d['sha256'][:16]}... ok"
            status = OK
            if d["fallback"]:
                status, detail = WARN, f"{detail}; {d['fallback']}"
            out.append(Check(f"model [{role}]", status, detail))
    finally:
        opened.close()
    return out


def serial_port(source: str) -> list[Check]:
    """The recorder's port: there, this user may open it, and no other program has it."""
    parsed = urllib.parse.urlsplit(source)
    if parsed.scheme not in ("serial", "") or not (parsed.path or source).startswith("/dev/"):
        return [Check("source", OK, f"{source or '(none given)'}: not a serial port")]
    path = Path(parsed.path or source)
    if not path.exists():
        return [Check("serial port", FAIL, f"{path}: no such device (is the recorder plugged in?)")]
    if not os.access(path, os.R_OK | os.W_OK):
        group = _group_of(path)
        return [
            Check(
                "serial port",
                FAIL,
                f"{path}: this user may not open it "
                f"(add the user to group {group}, then log in again)",
            )
        ]
    from firmware_bridge.transport import LinkDown, SerialTransport

    transport = SerialTransport(str(path))
    try:
        transport.open()
    except LinkDown as exc:
        return [Check("serial port", FAIL, str(exc))]
    transport.close()
    return [Check("serial port", OK, f"{path}: present, may be opened, not in use")]


def _group_of(path: Path) -> str:
    try:
        import grp

        return grp.getgrgid(path.stat().st_gid).gr_name
    except (KeyError, OSError, ImportError):
        return "dialout"


def listed_ports() -> list[Check]:
    try:
        from serial.tools import list_ports
    except ImportError:
        return []
    ports = [p.device for p in list_ports.comports()]
    return [Check("serial ports seen", OK, ", ".join(ports) if ports else "none")]


def disk(study: str) -> list[Check]:
    from edge.runtime.disk import existing_parent, free_bytes

    probe = existing_parent(Path(study) if study else Path.cwd())
    try:
        free = free_bytes(probe) / 1e9
    except OSError as exc:
        return [Check("disk", FAIL, f"{probe}: {exc.strerror}")]
    if not os.access(probe, os.W_OK):
        return [Check("disk", FAIL, f"{probe}: this user may not write there")]
    status = OK if free >= MIN_FREE_GB else FAIL
    return [Check("disk", status, f"{free:.1f} GB free at {probe} (at least {MIN_FREE_GB} GB)")]


def encryption(key_file: str) -> list[Check]:
    """Where a key is configured (or in the environment): it reads, and both libraries
    that use it are here; a study would otherwise be refused at its start."""
    from edge.study import database, sealing

    try:
        keyed = sealing.use_key(Path(key_file) if key_file else None)
    except sealing.StudyKeyError as exc:
        return [Check("encryption", FAIL, str(exc))]
    if not keyed:
        return [Check("encryption", OK, "off (no [storage] key_file): studies in the clear")]
    ident = sealing.current_key_id()
    sealing.forget_key()
    sqlcipher = database.version()
    usable = {  # imported, not only installed: a wheel for another machine fails here
        "cryptography": _imports("cryptography.hazmat.primitives.ciphers.aead"),
        "sqlcipher3": sqlcipher is not None,
    }
    missing = [name for name, ok in usable.items() if not ok]
    if missing:
        return [Check("encryption", FAIL, f"key {ident}, but {' and '.join(missing)} missing")]
    return [
        Check(
            "encryption",
            OK,
            f"key {ident}: frames AES-256-GCM (cryptography "
            f"{importlib.metadata.version('cryptography')}), database SQLCipher {sqlcipher}",
        )
    ]


def _imports(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def clock(now: float | None = None) -> list[Check]:
    now = time.time() if now is None else now
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
    if now < EARLIEST_SANE:
        return [Check("clock", FAIL, f"{stamp}: not set (frames would carry wrong times)")]
    synced = _ntp_synchronized()
    if synced is False:
        return [Check("clock", WARN, f"{stamp}: not synchronised (NTP); fine offline, check it")]
    return [Check("clock", OK, stamp + (", synchronised" if synced else ""))]


def _ntp_synchronized() -> bool | None:
    import subprocess

    try:
        done = subprocess.run(
            ["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    value = done.stdout.strip()
    return {"yes": True, "no": False}.get(value) if done.returncode == 0 else None


def run_checks(config: Any) -> list[Check]:
    return [
        *backends(),
        *accelerators(),
        *models(config),
        *serial_port(config["source"]),
        *listed_ports(),
        *disk(config["study"]),
        *encryption(config["storage.key_file"]),
        *clock(),
    ]


def as_json(checks: list[Check]) -> dict[str, Any]:
    return {"ok": all(c.status != FAIL for c in checks), "checks": [asdict(c) for c in checks]}
