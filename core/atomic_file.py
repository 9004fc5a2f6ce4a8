"""Files replaced whole or not at all: a temporary file beside the target, renamed over it (a kill leaves the old
file or the new one, never half of one)."""
from __future__ import annotations

import os
from pathlib import Path


def replace_file(path: str | Path, text: str, durable: bool = False) -> None:
    """Write `text` to `path` through a temporary file renamed over it; `durable`: fsync the file and then its
    directory, so the new content also survives a power loss."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk or any exception leaves no stray temporary file behind
        raise
    if durable:
        fsync_path(path.parent)


def fsync_path(path: str | Path) -> None:
    """fsync a file or a directory by path (a directory: its entries, e.g. a rename, reach the disk). Where a
    directory cannot be opened or synced (Windows, some filesystems) it does nothing: the rename is still atomic."""
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
