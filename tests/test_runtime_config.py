"""Runtime settings: TOML file, then flags; unknown keys and bad values name the key."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from edge.errors import BadInputError
from edge.runtime.config import load


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "capsule.toml"
    path.write_text(text)
    return path


def test_file_then_flags(tmp_path: Path):
    path = write(
        tmp_path,
        'source = "serial:///dev/ttyACM0?baud=921600"\n'
        '[detector]\nbackend = "openvino"\nthreads = 2\n'
        "[pipeline]\nbacklog = 32\n",
    )
    config = load(path, {"detector.threads": 4, "http.port": 9000})
    assert config["source"] == "serial:///dev/ttyACM0?baud=921600"
    assert config["detector.backend"] == "openvino"
    assert config["detector.threads"] == 4 and config.origin["detector.threads"] == "command line"
    assert config["pipeline.backlog"] == 32 and config.origin["pipeline.backlog"] == str(path)
    assert config["classifier.backend"] == "litert"  # default
    assert config["http.port"] == 9000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sorce = 'x'\n", "unknown key 'sorce'"),
        ("[detector]\nbackend = 'tensorrt'\n", "detector.backend must be one of"),
        ("[detector]\nthreds = 2\n", "unknown key detector.threds"),
        ("[pipeline]\nbacklog = 0\n", "pipeline.backlog must be between 1 and 65536"),
        ("[pipeline]\nbacklog = 1000000000\n", "pipeline.backlog must be between 1 and 65536"),
        ("[link]\ncapacity = 0\n", "link.capacity must be between 1 and 1024"),
        ("[link]\ncapacity = 100000\n", "link.capacity must be between 1 and 1024"),
        ("[classifier]\nthreads = 100000\n", "classifier.threads must be between 0 and 256"),
        ("[detector]\nthreads = -1\n", "detector.threads must be between 0 and 256"),
        ("[pipeline]\nbacklog = true\n", "pipeline.backlog must be a whole number"),
        ("[http]\nport = 70000\n", "http.port must be a port number"),
        ("[link]\nretransmit = 'yes'\n", "link.retransmit must be a bool"),
        ("detector = 3\n", "detector must be a [detector] table"),
        ("[detector\n", "not valid TOML"),
        ("[classifier]\nproviders = [1]\n", "classifier.providers must be a list of strings"),
    ],
)
def test_bad_settings_are_one_line_errors(tmp_path: Path, text: str, message: str):
    with pytest.raises(BadInputError, match=re.escape(message)) as info:
        load(write(tmp_path, text))
    assert "\n" not in str(info.value) and "capsule.toml" in str(info.value)


def test_bad_flags_and_missing_file(tmp_path: Path):
    with pytest.raises(
        BadInputError, match=re.escape("command line: unknown setting detector.speed")
    ):
        load(None, {"detector.speed": 2})
    with pytest.raises(
        BadInputError, match=re.escape("command line: detector.threads must be between 0 and 256")
    ):
        load(None, {"detector.threads": -1})
    with pytest.raises(BadInputError, match="no such config file"):
        load(tmp_path / "missing.toml")


def test_the_documented_example_loads():
    example = Path(__file__).resolve().parents[1] / "docs" / "capsule-edge.toml"
    config = load(example)
    assert config["detector.conf"] == 0.25 and config["classifier.threads"] == 2
    assert config.origin["pipeline.policy"] == str(example)


def test_workers_chosen_for_the_source():
    from edge.runtime.config import choose_workers

    auto = load(None)
    assert auto["pipeline.workers"] == 0
    live = choose_workers(auto, recording=False, cores=4)
    assert live["pipeline.workers"] == 1 and live["detector.threads"] == 0  # every core
    replay = choose_workers(auto, recording=True, cores=4)
    assert replay["pipeline.workers"] == 4
    assert replay["classifier.threads"] == replay["detector.threads"] == 1
    assert replay.origin["pipeline.workers"] == "chosen for a recording"
    assert auto["pipeline.workers"] == 0  # the given config is left as it was
    two_threads = choose_workers(load(None, {"detector.threads": 2}), recording=True, cores=4)
    assert two_threads["pipeline.workers"] == 2 and two_threads["detector.threads"] == 2
    assert choose_workers(auto, recording=True, cores=1)["pipeline.workers"] == 1
    fixed = load(None, {"pipeline.workers": 3})
    assert choose_workers(fixed, recording=True, cores=4) is fixed


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        (
            '[classifier]\ndevice = "NPU"\n',
            {},
            "classifier.device = 'NPU': backend 'litert' does not take it (only openvino does)",
        ),
        (
            '[classifier]\nprecision = "f16"\n',
            {},
            "classifier.precision = 'f16': backend 'litert' does not take it",
        ),
        (
            '[detector]\nbackend = "openvino"\ndelegate = "libedgetpu.so.1"\n',
            {},
            "detector.delegate = 'libedgetpu.so.1': backend 'openvino' does not take it",
        ),
        (
            '[detector]\nproviders = ["CUDAExecutionProvider"]\n',
            {},
            "detector.providers = ['CUDAExecutionProvider']: backend 'litert' does not take it",
        ),
        (  # a backend chosen on the command line meets a setting from the file
            '[classifier]\ndelegate = "libedgetpu.so.1"\n',
            {"classifier.backend": "onnxruntime"},
            "classifier.delegate = 'libedgetpu.so.1': backend 'onnxruntime'",
        ),
    ],
)
def test_a_setting_the_backend_does_not_take_is_one_line(tmp_path: Path, text, overrides, message):
    """LiteRT given device = "NPU" ran on the CPU and reported no fall-back."""
    with pytest.raises(BadInputError, match=re.escape(message)) as info:
        load(write(tmp_path, text), overrides)
    assert "\n" not in str(info.value) and str(info.value).startswith(str(tmp_path))


def test_each_backend_takes_its_own_settings(tmp_path: Path):
    config = load(
        write(
            tmp_path,
            '[classifier]\nbackend = "openvino"\ndevice = "AUTO"\nprecision = "f16"\n'
            '[detector]\nbackend = "litert"\ndelegate = ""\nthreads = 256\n',
        )
    )
    from edge.backends import LiteRTOptions, OpenVINOOptions
    from edge.runtime.models import _options, threads

    assert _options(config, "classifier") == OpenVINOOptions(device="AUTO", precision="f16")
    assert _options(config, "detector") == LiteRTOptions(threads=256)  # "" is no delegate
    assert threads(load(None), "classifier") == (os.cpu_count() or 1)


def test_run_with_a_setting_its_backend_does_not_take_stops_at_once(tmp_path: Path, capsys):
    from edge.cli import main

    path = write(tmp_path, '[classifier]\ndevice = "NPU"\nprecision = "f16"\n')
    code = main(["run", "--config", str(path), "--source", f"dir://{tmp_path}", "--no-http"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "backend 'litert' does not take it" in err
