"""``capsule-edge service install|status|uninstall``: the study as a systemd service.

install: a system user ``capsule-edge`` in the ``dialout`` group (the recorder's port),
the unit in ``/etc/systemd/system`` with this install's venv, a config in
``/etc/capsule-edge/`` (kept if there is one: it is the site's), studies under
``/var/lib/capsule-edge`` (owner-only), then ``systemctl daemon-reload`` and ``enable``.
``--root DIR`` writes the files under DIR and only prints the commands (an image being
prepared, or a test); ``--dry-run`` prints everything and changes nothing.
uninstall: ``systemctl disable --now`` and the unit removed; the user, the config and
every study stay.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edge.errors import BadInputError

UNIT_NAME = "capsule-edge.service"
USER = "capsule-edge"
UNIT_TEMPLATE = Path(__file__).with_name(UNIT_NAME)
STATE = Path("/var/lib/capsule-edge")
USER_EXISTS = 9  # useradd's exit status when the user is already there

DEFAULT_CONFIG = f"""# capsule-edge as a service: see `capsule-edge service status`.
# Every key: `capsule-edge run --help` and edge/runtime/config.py.
source = "serial:///dev/ttyACM0?baud=921600"
study = "{STATE}/studies/current"
profile = "colon"

[http]
enabled = true
address = "127.0.0.1"
"""


@dataclass
class Plan:
    """What install or uninstall does: files to write or remove, commands to run."""

    writes: dict[Path, tuple[str, int]] = field(default_factory=dict)  # path -> text, mode
    removes: list[Path] = field(default_factory=list)
    commands: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _under(root: Path | None, path: Path) -> Path:
    return root / path.relative_to("/") if root is not None else path


def install_plan(venv: Path, root: Path | None = None) -> Plan:
    plan = Plan()
    config = Path("/etc/capsule-edge/capsule-edge.toml")
    unit = UNIT_TEMPLATE.read_text(encoding="utf-8").format(venv=venv, config=config)
    plan.writes[_under(root, Path("/etc/systemd/system") / UNIT_NAME)] = (unit, 0o644)
    if _under(root, config).exists():
        plan.notes.append(f"{_under(root, config)}: kept (the site's own)")
    else:
        plan.writes[_under(root, config)] = (DEFAULT_CONFIG, 0o640)
    plan.commands += [
        [
            *("useradd", "--system", "--user-group", "--groups", "dialout"),
            *("--home-dir", str(STATE), "--no-create-home", "--shell", "/usr/sbin/nologin", USER),
        ],
        ["install", "-d", "-m", "0700", "-o", USER, "-g", USER, str(STATE), str(STATE / "studies")],
        ["chgrp", USER, str(config)],
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", UNIT_NAME],
    ]
    plan.notes.append(
        f"start it with: systemctl start {UNIT_NAME}; follow it: journalctl -u capsule-edge -f"
    )
    return plan


def uninstall_plan(root: Path | None = None) -> Plan:
    plan = Plan()
    plan.commands.append(["systemctl", "disable", "--now", UNIT_NAME])
    plan.removes.append(_under(root, Path("/etc/systemd/system") / UNIT_NAME))
    plan.commands.append(["systemctl", "daemon-reload"])
    plan.notes.append(f"kept: the user {USER}, /etc/capsule-edge and every study under {STATE}")
    return plan


def carry_out(
    plan: Plan,
    *,
    run_commands: bool,
    dry_run: bool,
    say: Callable[[str], None] = print,
    runner: Callable[[list[str]], int] | None = None,
) -> int:
    """Write and remove the files, then run the commands (or say them). 0 on success."""
    runner = runner or (lambda cmd: subprocess.run(cmd, check=False).returncode)
    for path, (text, mode) in plan.writes.items():
        say(f"{'would write' if dry_run else 'writing'} {path} (mode {mode:o})")
        if not dry_run:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            path.chmod(mode)
    for path in plan.removes:
        if path.exists():
            say(f"{'would remove' if dry_run else 'removing'} {path}")
            if not dry_run:
                path.unlink()
    for command in plan.commands:
        line = " ".join(command)
        if dry_run or not run_commands:
            say(f"{'would run' if dry_run else 'to run as root'}: {line}")
            continue
        if shutil.which(command[0]) is None:
            raise BadInputError(f"{command[0]}: not found (is this a systemd system?)")
        say(f"running: {line}")
        code = runner(command)
        if code != 0 and not (command[0] == "useradd" and code == USER_EXISTS):
            raise BadInputError(f"{line}: failed (exit {code})")
    for note in plan.notes:
        say(note)
    return 0


def venv_of_this_install() -> Path:
    return Path(sys.prefix)
