"""Refuse an output path of the wrong kind before anything is written.

``--out DIR``, ``--outputs FILE``, ``--state-dir DIR``: a file where a folder is wanted, a folder where a
file is wanted, or a place where nothing can be created is a usage error that names the flag and the
path, found before the command writes its first byte (so a refused run leaves nothing behind).
"""

from __future__ import annotations

import tempfile
from pathlib import Path


class OutputPathError(ValueError):
    """An output path that cannot be used; the message names the flag and the path."""


def _nearest_existing(path: Path) -> Path:
    current = path.absolute()
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def _probe(folder: Path, flag: str, path: Path) -> None:
    """Create and remove an empty folder in ``folder``: the only test that holds for root too."""
    try:
        with tempfile.TemporaryDirectory(dir=folder, prefix=".kvstack-probe-"):
            pass
    except OSError as exc:
        raise OutputPathError(
            f"{flag} {path}: nothing can be written in {folder} ({exc.strerror or exc})"
        ) from None


def check_output_dir(path: Path, flag: str) -> None:
    """``path`` is a folder we can write in, or one that can be created."""
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{flag} {path}: is a file, not a folder; give a folder (it is created)")
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise OutputPathError(f"{flag} {path}: {existing} is a file, so no folder can be created under it")
    _probe(existing, flag, path)


def check_output_file(path: Path, flag: str) -> None:
    """``path`` is a file we can (over)write, in a folder that exists or can be created."""
    if path.is_dir():
        raise OutputPathError(
            f"{flag} {path}: is a folder, not a file; give a file name (e.g. {path / 'outputs.json'})"
        )
    existing = _nearest_existing(path.parent)
    if not existing.is_dir():
        raise OutputPathError(f"{flag} {path}: {existing} is a file, so {path.name} cannot be created")
    _probe(existing, flag, path)
