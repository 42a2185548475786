"""Command-line options every model-running command shares."""

from __future__ import annotations

import argparse

from edge.backends import BACKENDS, BackendOptions


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model file or card (default: the bundled model)")
    p.add_argument("--backend", choices=sorted(BACKENDS), default="litert")
    p.add_argument("--threads", type=int, help="inference threads (default: the backend's)")
    p.add_argument("--device", default="CPU", help="OpenVINO device: CPU, GPU, NPU, AUTO")
    p.add_argument("--precision", default="f32", help="OpenVINO precision hint (f32, f16, bf16)")
    p.add_argument("--delegate", help="LiteRT delegate library, e.g. libedgetpu.so.1")
    p.add_argument("--providers", help="ONNX Runtime providers, comma-separated")


def backend_options(args: argparse.Namespace) -> BackendOptions:
    providers = tuple(p for p in (args.providers or "").split(",") if p)
    return BackendOptions(
        threads=args.threads,
        device=args.device,
        precision=args.precision,
        delegate=args.delegate,
        **({"providers": providers} if providers else {}),
    )
