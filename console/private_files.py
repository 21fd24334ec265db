"""Callers' audio and the speech made for them are private: files 0600 in 0700 folders, as
the database is, whatever the umask."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO


def private_folder(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)  # mkdir's mode is masked by the umask, and the folder may exist
    return folder


def open_private(path: Path) -> BinaryIO:
    """A new file (never an existing one), readable by its owner only from the start."""
    return os.fdopen(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600), "wb")
