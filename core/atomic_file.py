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
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if durable:
        fsync_path(path.parent)


def fsync_path(path: str | Path) -> None:
    """fsync a file or a directory by path (a directory: its entries, e.g. a rename, reach the disk)."""
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename is still atomic
    finally:
        os.close(fd)
