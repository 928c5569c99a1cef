"""``python -m kvstack.bench``: ``kvstack verify`` without the kvstack command (e.g. on a bare GPU image).

It goes through ``kvstack.cli`` so that its errors are reported the same way (one line, no traceback).
"""

import sys

from kvstack.cli import main

raise SystemExit(main(["verify", *sys.argv[1:]]))
