"""``python -m kvstack COMMAND ...``: the ``kvstack`` command without its console script (e.g. on a bare
GPU image with ``PYTHONPATH`` pointing at a checkout), with the same one-line error reporting."""

from kvstack.cli import main

raise SystemExit(main())
