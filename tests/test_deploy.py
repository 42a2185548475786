"""The offline bundle: its pins and hashes, and its install script run by a real shell
into a real venv with no index, on a bundle holding one small wheel (the full bundle and
its arm64 proof are `make bundle` and `make arm64-check`, minutes each)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from deploy import bundle
from deploy.targets import TARGETS
from edge.models.card import sha256_of

pytestmark = pytest.mark.skipif(shutil.which("sha256sum") is None, reason="no sha256sum")


def _wheel(folder: Path, name: str = "hello_bundle", version: str = "1.0") -> Path:
    """A pure-Python wheel made by hand: one module saying hello."""
    files = {
        f"{name}/__init__.py": b"GREETING = 'hello from the bundle'\n",
        f"{name}-{version}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
        ),
        f"{name}-{version}.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = f"{name}-{version}.dist-info/RECORD"
    lines = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        lines.append(f"{path},sha256={digest},{len(data)}")
    files[record] = ("\n".join([*lines, f"{record},,"]) + "\n").encode()
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in files.items():
            zf.writestr(member, data)
    return path


def _bundle(tmp: Path, machine: str | None = None, python: str | None = None) -> Path:
    """A bundle laid out as deploy.bundle lays it out, for this machine by default."""
    root = tmp / "capsule-edge-0.0-test"
    (root / "wheels").mkdir(parents=True)
    wheel = _wheel(root / "wheels")
    (root / "requirements.txt").write_text(bundle.requirements([wheel], project=Path("none")))
    shutil.copy(bundle.INSTALL_SH, root / "install.sh")
    target = {
        "target": "test",
        "board": "this machine",
        "python": python or "{}.{}".format(*sys.version_info[:2]),
        "machine": machine or platform.machine(),
        "capsule_edge": "0.0",
        "commit": "test",
    }
    (root / "target.json").write_text(json.dumps(target, indent=1) + "\n")
    sums = "".join(
        f"{sha256_of(p)}  {p.relative_to(root)}\n" for p in sorted(root.rglob("*")) if p.is_file()
    )
    (root / "SHA256SUMS").write_text(sums)
    return root


def _install(root: Path, prefix: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": sys.executable, "PIP_CONFIG_FILE": os.devnull}
    return subprocess.run(
        ["sh", str(root / "install.sh"), "--prefix", str(prefix), "--no-service"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_requirements_pin_every_wheel_with_its_hash_and_the_project_with_its_extras(
    tmp_path: Path,
):
    dep = _wheel(tmp_path, "opencv_python_headless", "4.10.0.84")
    project = _wheel(tmp_path, "capsule_edge", "0.1.0")
    lines = bundle.requirements([project, dep], project).splitlines()
    assert lines == [
        f"capsule-edge[edge]==0.1.0 --hash=sha256:{sha256_of(project)}",
        f"opencv-python-headless==4.10.0.84 --hash=sha256:{sha256_of(dep)}",
    ]


def test_a_target_takes_no_wheel_newer_than_its_glibc():
    # JetPack 6 is Ubuntu 22.04, glibc 2.35: a manylinux_2_36 wheel would not load there.
    jetson = TARGETS["jetpack6"].platforms
    assert "manylinux_2_35_aarch64" in jetson and "manylinux_2_36_aarch64" not in jetson
    assert "manylinux2014_aarch64" in jetson
    assert TARGETS["pi-bookworm"].abi == "cp311" and TARGETS["jetpack6"].abi == "cp310"


@pytest.mark.slow
def test_the_install_script_installs_the_pinned_wheels_with_no_index(tmp_path: Path):
    root = _bundle(tmp_path)
    done = _install(root, tmp_path / "opt")
    assert done.returncode == 0, done.stderr
    python = tmp_path / "opt" / "venv" / "bin" / "python"
    said = subprocess.run(
        [str(python), "-c", "import hello_bundle; print(hello_bundle.GREETING)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert said.stdout.strip() == "hello from the bundle"


def test_a_damaged_bundle_is_refused_before_anything_is_installed(tmp_path: Path):
    root = _bundle(tmp_path)
    wheel = next((root / "wheels").glob("*.whl"))
    wheel.write_bytes(wheel.read_bytes()[:-10])  # cut short on its way to the site
    done = _install(root, tmp_path / "opt")
    assert done.returncode == 1
    assert "the bundle is damaged" in done.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "opt").exists()


@pytest.mark.parametrize(
    ("machine", "python", "said"),
    [("riscv64", None, "this bundle is for riscv64"), (None, "3.9", "for Python 3.9")],
)
def test_a_bundle_for_another_board_says_so_in_one_line(tmp_path: Path, machine, python, said):
    root = _bundle(tmp_path, machine=machine, python=python)
    done = _install(root, tmp_path / "opt")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and said in lines[0], done.stderr
    assert not (tmp_path / "opt").exists()
