"""What machine a bench ran on: enough to compare two runs, or to see why they differ."""

from __future__ import annotations

import ctypes.util
import importlib.metadata
import importlib.util
import os
import platform
from pathlib import Path
from typing import Any

# The CPU features that decide which kernels an inference backend picks.
FLAGS = (
    "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_int8",
    "asimd", "asimddp", "i8mm", "bf16", "sve",
)  # fmt: skip
PACKAGES = ("capsule-edge", "numpy", "opencv-python-headless", "ai-edge-litert", "openvino",
            "onnxruntime", "torch")  # fmt: skip
# Backend name -> the module whose presence makes it available.
BACKEND_MODULES = {"litert": "ai_edge_litert", "openvino": "openvino", "onnxruntime": "onnxruntime"}


def _cpuinfo() -> tuple[str, list[str]]:
    name: str = platform.processor() or platform.machine()
    flags: list[str] = []
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return name, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model", "Hardware") and value.strip():
            name = value.strip()
        elif key in ("flags", "Features") and not flags:
            present = set(value.split())
            flags = [f for f in FLAGS if f in present]
    return name, flags


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except (OSError, ValueError):
        pass
    return None


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.platform()


def available_backends() -> dict[str, bool]:
    return {b: importlib.util.find_spec(m) is not None for b, m in BACKEND_MODULES.items()}


def accelerators_seen(backends: dict[str, bool]) -> dict[str, Any]:
    found: dict[str, Any] = {"edgetpu_delegate": ctypes.util.find_library("edgetpu")}
    if backends["openvino"]:
        try:
            import openvino as ov

            found["openvino_devices"] = list(ov.Core().available_devices)
        except Exception as exc:  # a broken plugin is itself worth reporting
            found["openvino_devices"] = f"error: {exc}"
    if backends["onnxruntime"]:
        import onnxruntime

        found["onnxruntime_providers"] = onnxruntime.get_available_providers()
    return found


def describe() -> dict[str, Any]:
    cpu, flags = _cpuinfo()
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    backends = available_backends()
    return {
        "cpu": cpu,
        "cpu_flags": flags,
        "cores": os.cpu_count(),
        "arch": platform.machine(),
        "memory_gb": _memory_gb(),
        "os": _os_name(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": versions,
        "backends": [b for b, ok in backends.items() if ok],
        "accelerators": accelerators_seen(backends),
    }


def label(machine: dict[str, Any]) -> str:
    """One line for a table's heading: "2 cores of Intel Xeon ..., x86_64"."""
    return f"{machine['cores']} cores of {machine['cpu']}, {machine['arch']}"
