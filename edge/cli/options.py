"""Command-line options every model-running command shares."""

from __future__ import annotations

import argparse
from typing import Any

from edge.backends import BACKENDS, BackendOptions, options_for

# flag -> the backend setting it gives; each backend takes only its own (plus --threads)
_FLAGS = {
    "threads": "--threads",
    "device": "--device",
    "precision": "--precision",
    "delegate": "--delegate",
    "providers": "--providers",
}


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        help="model file or card, or a bundled name (`capsule-edge models`); default: bundled",
    )
    p.add_argument("--backend", choices=sorted(BACKENDS), default="litert")
    p.add_argument("--threads", type=int, help="inference threads, 0-256 (default 0: every core)")
    p.add_argument("--device", help="OpenVINO only: CPU (default), GPU, NPU, AUTO")
    p.add_argument("--precision", help="OpenVINO only: precision hint f32 (default), f16, bf16")
    p.add_argument("--delegate", help="LiteRT only: delegate library, e.g. libedgetpu.so.1")
    p.add_argument("--providers", help="ONNX Runtime only: providers, comma-separated")


def backend_options(args: argparse.Namespace) -> BackendOptions:
    """The chosen backend's options from the flags given; a flag that backend does not
    take is an ``OptionError`` naming it (``--device NPU: backend 'litert' does not...``)."""
    given: dict[str, Any] = {}
    for key in _FLAGS:
        value = getattr(args, key, None)
        if value is None:
            continue
        if key == "providers":
            value = tuple(p.strip() for p in value.split(",") if p.strip())
        given[key] = value

    def label(key: str, value: Any) -> str:
        shown = ",".join(value) if isinstance(value, tuple) else value
        return f"{_FLAGS[key]} {shown}"

    return options_for(args.backend, given, label)
