"""``python -m edge.cli``: the same as ``capsule-edge``."""

import sys

from edge.cli import main

sys.exit(main())
