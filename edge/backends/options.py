"""One options type per backend, chosen by the backend's name.

Every backend takes ``threads``; what else it takes is its own: a LiteRT delegate, an
OpenVINO device and precision hint, ONNX Runtime providers. A setting given to a backend
that does not take it is an :class:`~edge.errors.OptionError` naming the setting, never a
silent no-op (LiteRT given ``device = "NPU"`` would otherwise run on the CPU without a
word). The options check themselves without doing any I/O.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from edge.errors import OptionError

# Threads a model may be given. A fixed bound, not one from this machine's core count,
# so that a settings file is valid or invalid the same way on every machine. 256 is
# above the core count of anything this runs on (a Pi has 4, a Jetson Orin 12, a large
# host 128) and more threads than cores is never faster; each thread costs a stack, and
# 100000 of them crashed LiteRT inside its thread pool (a segfault, exit 139).
MAX_THREADS = 256
PRECISIONS = ("f32", "f16", "bf16")


def thread_count(threads: int) -> int:
    """The threads a backend is given for the setting ``threads``: 0 is every core.

    The one place this is decided, for the library (``Detector.open(path)``) and the
    runtime alike. LiteRT's own default is a single thread: YOLOv5s int8 at 256 px took
    6.5 ms a frame with it and 4.4 ms with every core of a 2-core machine."""
    return threads or os.cpu_count() or 1


def _whole(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise OptionError(f"{name} must be a whole number, got {value!r}")
    return value


@dataclass(frozen=True)
class BackendOptions:
    """What every backend takes: inference threads, 0 (the default) for every core.
    ``None`` is taken for 0, as callers from before this default pass it."""

    threads: int | None = 0

    def __post_init__(self) -> None:
        if self.threads is None:
            object.__setattr__(self, "threads", 0)
        threads = _whole("threads", self.threads)
        if not 0 <= threads <= MAX_THREADS:
            raise OptionError(
                f"threads must be 0 (every core) to {MAX_THREADS}, got {self.threads}"
            )

    @property
    def thread_count(self) -> int:
        return thread_count(self.threads or 0)


@dataclass(frozen=True)
class LiteRTOptions(BackendOptions):
    delegate: str | None = None  # a delegate library, e.g. libedgetpu.so.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.delegate is not None and (not isinstance(self.delegate, str) or not self.delegate):
            raise OptionError(f"delegate must name a library, got {self.delegate!r}")


@dataclass(frozen=True)
class OpenVINOOptions(BackendOptions):
    device: str = "CPU"  # CPU, GPU, NPU, AUTO, AUTO:NPU,CPU, ...
    precision: str = "f32"  # inference precision hint; OpenVINO picks bf16 on CPUs that have it

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.device, str) or not self.device.strip():
            raise OptionError(f"device must name an OpenVINO device, got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise OptionError(
                f"precision must be {', '.join(PRECISIONS[:-1])} or {PRECISIONS[-1]}, "
                f"got {self.precision!r}"
            )


@dataclass(frozen=True)
class OnnxRuntimeOptions(BackendOptions):
    providers: tuple[str, ...] = ("CPUExecutionProvider",)

    def __post_init__(self) -> None:
        super().__post_init__()
        providers = self.providers
        if isinstance(providers, str) or not all(isinstance(p, str) and p for p in providers):
            raise OptionError(f"providers must be a list of provider names, got {providers!r}")
        if not providers:
            raise OptionError("providers must name at least one ONNX Runtime provider")
        object.__setattr__(self, "providers", tuple(providers))


OPTIONS: dict[str, type[BackendOptions]] = {
    "litert": LiteRTOptions,
    "openvino": OpenVINOOptions,
    "onnxruntime": OnnxRuntimeOptions,
}


def settings_of(backend: str) -> tuple[str, ...]:
    """The settings a backend takes."""
    return tuple(f.name for f in fields(OPTIONS[backend]))


def takers(setting: str) -> list[str]:
    """The backends that take ``setting``."""
    return [name for name in OPTIONS if setting in settings_of(name)]


def not_taken(backend: str, setting: str) -> str:
    """Why ``setting`` cannot go to ``backend``, in words."""
    who = takers(setting)
    also = f" (only {' and '.join(who)} does)" if who else ""
    return f"backend {backend!r} does not take it{also}"


def options_for(
    backend: str,
    settings: Mapping[str, Any],
    label: Callable[[str, Any], str] = lambda key, value: f"{key} {value!r}",
) -> BackendOptions:
    """The options of ``backend`` made from ``settings``; one that backend does not take
    is an ``OptionError`` that names it with ``label(key, value)``."""
    cls = OPTIONS.get(backend)
    if cls is None:
        raise OptionError(f"unknown backend {backend!r}; choose one of {', '.join(OPTIONS)}")
    taken = settings_of(backend)
    for key, value in settings.items():
        if key not in taken:
            raise OptionError(f"{label(key, value)}: {not_taken(backend, key)}")
    try:
        return cls(**settings)
    except OptionError as exc:
        raise OptionError(f"backend {backend!r}: {exc}") from None


def as_options_of(backend: str, options: BackendOptions | None) -> BackendOptions:
    """``options`` checked to be ``backend``'s own type. Plain :class:`BackendOptions`
    (threads only, which every backend takes) become that type; another backend's
    options are an ``OptionError``."""
    cls = OPTIONS[backend]
    if options is None:
        return cls()
    if type(options) is cls:
        return options
    if type(options) is BackendOptions:
        return cls(threads=options.threads)
    raise OptionError(f"backend {backend!r} takes {cls.__name__}, not {type(options).__name__}")
