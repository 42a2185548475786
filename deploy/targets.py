"""The boards a field site runs, as pip sees them: Python version and wheel platforms.

A wheel tagged manylinux_2_X runs on glibc 2.X and later, so a target lists every
manylinux tag up to its own glibc (openvino's aarch64 wheel needs 2.35: JetPack 6 and
Raspberry Pi OS bookworm have it, JetPack 5 does not).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    name: str
    board: str
    python: str  # major.minor of the board's python3
    machine: str  # `uname -m` there
    glibc: tuple[int, int]

    @property
    def platforms(self) -> list[str]:
        arch = self.machine
        tags = [f"manylinux_2_{minor}_{arch}" for minor in range(self.glibc[1], 16, -1)]
        return [*tags, f"manylinux2014_{arch}", f"linux_{arch}"]

    @property
    def abi(self) -> str:
        return "cp" + self.python.replace(".", "")


TARGETS = {
    t.name: t
    for t in (
        Target("pi-bookworm", "Raspberry Pi OS bookworm (64-bit)", "3.11", "aarch64", (2, 36)),
        Target("jetpack6", "NVIDIA JetPack 6 (Ubuntu 22.04)", "3.10", "aarch64", (2, 35)),
        Target("x86-64", "Debian bookworm / Ubuntu 24.04 on x86-64", "3.11", "x86_64", (2, 36)),
    )
}
