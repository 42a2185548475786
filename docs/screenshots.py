"""The README's screenshots of the live dashboard and the study report, taken by the same
browser the tests drive (Debian's chromium through playwright), from a demo streaming a
simulated sparse study of real frames (benchmarks/polyp_sequences.py).

    .venv-dev/bin/python docs/screenshots.py [--out docs/images]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.polyp_sequences import (  # noqa: E402
    held_out_backgrounds,
    held_out_polyps,
    write_sequence,
)

DATA = REPO.parent / "shared" / "data"
CHROMIUM = "/usr/bin/chromium"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    p.add_argument("--python", default=str(REPO / ".venv" / "bin" / "python"))
    args = p.parse_args()
    from playwright.sync_api import expect, sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        frames = Path(tmp) / "frames"
        write_sequence(
            frames,
            held_out_polyps(DATA / "kvasir-seg"),
            held_out_backgrounds(DATA / "hyper-kvasir"),
            seed=11,
            polyps=3,
        )
        count = len(list(frames.glob("*.jpg")))
        out = Path(tmp) / "demo"
        demo = subprocess.Popen(
            [args.python, "-m", "edge.cli", "demo", "--frames", str(frames), "--count"]
            + [str(count), "--fps", "4", "--out", str(out), "-q"],
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        assert demo.stderr is not None
        url = next(
            line.rsplit(" ", 1)[-1].strip().removesuffix("/stats")
            for line in demo.stderr
            if "stats http://" in line
        )
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            tab = browser.new_page(viewport={"width": 1280, "height": 760})
            tab.goto(url + "/")
            expect(tab.locator("#alerts li").nth(1)).to_be_visible(timeout=120_000)
            expect(tab.locator("#frame-name")).not_to_have_text("—")
            tab.screenshot(path=str(args.out / "dashboard.png"))
            demo.stderr.read()
            demo.wait()
            report = out / "study" / "report.html"
            tab = browser.new_page(viewport={"width": 1200, "height": 1500})
            tab.goto(report.as_uri())
            tab.screenshot(path=str(args.out / "report.png"))
            browser.close()
    print(f"screenshots in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
