"""Entry point of ``pulumi preview`` / ``pulumi up`` (``Pulumi.yaml``: ``main: infra/``).

The stack's virtualenv (``.venv``) has kvstack installed with the ``infra`` extra; nothing else is needed.
"""

from __future__ import annotations

from kvstack.infra.program import main

main()
