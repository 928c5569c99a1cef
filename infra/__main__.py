"""Entry point of ``pulumi preview`` / ``pulumi up`` (``Pulumi.yaml``: ``main: infra/``)."""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import infra.program
except ModuleNotFoundError:  # kvstack not installed into the stack's virtualenv: use this checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import infra.program

infra.program.main()
