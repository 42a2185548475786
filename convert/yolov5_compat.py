"""Make the `yolov5` package (7.0.14, the original anchor-based YOLOv5) run on today's stack.

Each shim fixes one measured break and nothing else; call ``apply()`` before importing
anything from ``yolov5``.

- numpy 2 removed ``np.trapz`` (validation's AP integral); ``np.trapezoid`` is the same.
- Pillow 10 removed ``FreeTypeFont.getsize`` (label boxes in plots); rebuilt from getbbox.
- torch 2.6 loads checkpoints with ``weights_only=True``, which refuses yolov5's pickled
  model objects. Only our own checkpoints are loaded, so the old default is restored.
- yolov5 downloads ``Arial.ttf`` for its plots; this machine has no internet, so a font
  shipped with matplotlib is put where yolov5 looks first.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

CONFIG_DIR = Path.home() / ".cache" / "capsule-edge" / "yolov5-config"


def apply() -> None:
    import numpy as np

    if not hasattr(np, "trapz"):
        np.trapz = np.trapezoid  # type: ignore[attr-defined]

    from PIL import ImageFont

    if not hasattr(ImageFont.FreeTypeFont, "getsize"):

        def getsize(self: ImageFont.FreeTypeFont, text: str) -> tuple[int, int]:
            left, top, right, bottom = self.getbbox(text)
            return int(right - left), int(bottom - top)

        ImageFont.FreeTypeFont.getsize = getsize  # type: ignore[attr-defined]

    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

    CONFIG_DIR.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("YOLOV5_CONFIG_DIR", str(CONFIG_DIR))
    font_dir = Path(os.environ["YOLOV5_CONFIG_DIR"])
    font_dir.mkdir(parents=True, exist_ok=True)
    import matplotlib

    local = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        if not (font_dir / name).exists() and local.is_file():
            shutil.copyfile(local, font_dir / name)
