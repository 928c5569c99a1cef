"""``python -m kvstack.bench``: ``kvstack verify`` without the kvstack command.

``python -m kvstack verify`` is the same with kvstack.cli's one-line error reporting.
"""

from kvstack.bench.cli import main

raise SystemExit(main())
