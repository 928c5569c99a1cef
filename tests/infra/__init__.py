"""Tests of kvstack (a package, so that mypy --strict checks them under their own names)."""
