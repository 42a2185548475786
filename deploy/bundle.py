"""``python -m deploy.bundle --target pi-bookworm``: one archive that installs capsule-edge
on a board with no network.

    capsule-edge-0.1.0-pi-bookworm/
        install.sh          venv + pip --no-index --require-hashes, then the service
        requirements.txt    every wheel, pinned, with its sha256
        wheels/             the project's wheel (models inside) and its dependencies,
                            built for the target's Python and platform
        capsule-edge.toml   the site's config (only with --config)
        target.json         what it is for, from which commit, when
        SHA256SUMS          of every file above

Built on a host with pip and the package index; nothing is compiled for the target (only
wheels, ``--only-binary :all:``), so a package without a wheel for it stops the build here,
not at the field site.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from deploy.targets import TARGETS, Target
from edge.models.card import sha256_of

REPO = Path(__file__).resolve().parents[1]
INSTALL_SH = Path(__file__).with_name("install.sh")
EXTRAS = "edge"


def _run(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise SystemExit(f"bundle: {what} failed: " + " | ".join(tail))


def project_wheel(into: Path) -> Path:
    _run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(into), str(REPO)],
        "building the project's wheel",
    )
    (wheel,) = into.glob("capsule_edge-*.whl")
    return wheel


def download(target: Target, wheel: Path, into: Path, find_links: Path | None) -> None:
    """The wheels ``wheel[edge]`` needs on the target, and nothing built from source."""
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check"]
    cmd += ["--only-binary", ":all:", "--dest", str(into)]
    cmd += ["--python-version", target.python, "--implementation", "cp", "--abi", target.abi]
    for platform in target.platforms:
        cmd += ["--platform", platform]
    if find_links is not None:
        cmd += ["--no-index", "--find-links", str(find_links)]
    _run([*cmd, f"{wheel}[{EXTRAS}]"], f"downloading the wheels for {target.name}")


def wheel_name_version(path: Path) -> tuple[str, str]:
    """``opencv_python_headless-4.10.0.84-cp37-abi3-...whl`` -> the distribution and its
    version (a wheel's file name escapes dashes in both as underscores)."""
    name, version = path.name.split("-")[:2]
    return name.replace("_", "-").lower(), version


def requirements(wheels: list[Path], project: Path) -> str:
    """Every wheel pinned with its hash: pip --require-hashes then installs exactly these
    files, or nothing."""
    lines = []
    for path in sorted(wheels, key=lambda p: wheel_name_version(p)[0]):
        name, version = wheel_name_version(path)
        spec = f"{name}[{EXTRAS}]" if path.name == project.name else name
        lines.append(f"{spec}=={version} --hash=sha256:{sha256_of(path)}")
    return "\n".join(lines) + "\n"


def _commit() -> str:
    done = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def build(
    target: Target, out: Path, config: Path | None = None, find_links: Path | None = None
) -> Path:
    """The archive ``out/capsule-edge-VERSION-TARGET.tar.gz``; its path."""
    with tempfile.TemporaryDirectory(prefix="capsule-edge-bundle-") as tmp:
        wheel = project_wheel(Path(tmp))
        version = wheel_name_version(wheel)[1]
        root = Path(tmp) / f"capsule-edge-{version}-{target.name}"
        wheels = root / "wheels"
        wheels.mkdir(parents=True)
        download(target, wheel, wheels, find_links)
        found = sorted(wheels.glob("*.whl"))
        (root / "requirements.txt").write_text(requirements(found, wheel))
        shutil.copy(INSTALL_SH, root / "install.sh")
        (root / "install.sh").chmod(0o755)
        if config is not None:
            shutil.copy(config, root / "capsule-edge.toml")
        (root / "target.json").write_text(
            json.dumps(
                {
                    "target": target.name,
                    "board": target.board,
                    "python": target.python,
                    "machine": target.machine,
                    "capsule_edge": version,
                    "commit": _commit(),
                    "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "wheels": [p.name for p in found],
                },
                indent=1,
            )
            + "\n"
        )
        files = sorted(p for p in root.rglob("*") if p.is_file())
        sums = "".join(f"{sha256_of(p)}  {p.relative_to(root)}\n" for p in files)
        (root / "SHA256SUMS").write_text(sums)
        out.mkdir(parents=True, exist_ok=True)
        archive = out / f"{root.name}.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(root, arcname=root.name)
    return archive


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.bundle", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--target", required=True, choices=sorted(TARGETS))
    parser.add_argument("--out", type=Path, default=REPO / "dist")
    parser.add_argument("--config", type=Path, help="the site's capsule-edge.toml (if it has none)")
    parser.add_argument("--find-links", type=Path, help="the wheels from this folder, no index")
    args = parser.parse_args(argv)
    if args.config is not None and not args.config.is_file():
        raise SystemExit(f"bundle: --config {args.config}: no such file")
    started = time.monotonic()
    archive = build(TARGETS[args.target], args.out, args.config, args.find_links)
    size = archive.stat().st_size / 1e6
    print(f"{archive} ({size:.0f} MB, {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
