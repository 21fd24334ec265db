"""Where a process's own files live: one folder per process id under the data dir.

The folder's name is a readable slug of the id followed by a hash of the exact id, so two
different ids never share a folder (`a/b`, `a_b` and `a@b`; `A` and `a` on a filesystem that
ignores case; ids cut to the same prefix). Folders are 0700: a process's files are its own."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_SLUG_MAX = 64
_HASH_CHARS = 16  # 64 bits of the id's SHA-256


def path_name(process_id: str) -> str:
    """A file name for `process_id`: distinct for distinct ids, of safe characters only."""
    slug = "".join(c if (c.isascii() and c.isalnum()) or c in "-_." else "_" for c in process_id)
    slug = slug.lstrip(".")[:_SLUG_MAX] or "_"
    digest = hashlib.sha256(process_id.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_CHARS]
    return f"{slug}-{digest}"


def _old_name(process_id: str) -> str:
    """The name the folder had before it carried a hash (not one-to-one)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in process_id)


def workdir_for(data_dir: Path, process_id: str) -> Path:
    """The process's folder (data_dir/work/<name>), created 0700 on first use. A folder of
    the old layout is taken over (renamed) when the id was its own old name: such an id was
    mapped to itself, so the folder was its own unless another id was folded onto it."""
    work = data_dir / "work"
    path = work / path_name(process_id)
    if not path.is_dir():
        old = _old_name(process_id)
        if old == process_id and old not in ("", ".", "..") and len(os.fsencode(old)) <= 255 \
                and (work / old).is_dir():
            try:
                os.rename(work / old, path)
            except OSError:
                pass  # e.g. taken over by a concurrent first use: the mkdir below settles it
    work.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.mkdir(mode=0o700, exist_ok=True)
    return path
