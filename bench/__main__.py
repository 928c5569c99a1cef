"""``python -m bench``: run ``kvstack verify`` without the kvstack command (e.g. on a bare GPU image)."""

from kvstack.bench.cli import main

raise SystemExit(main())
