"""Path containment for names that come from users, configs and datasets.

Where the studio or a command builds a path from a *name* (a tokenizer name typed in a form, a run name, a file
name read from a dataset) the result must stay inside the folder it is meant for: `../../etc`, an absolute
path or a symlink pointing out must not let a write land elsewhere. Paths the user picks explicitly (a save
dialog, `--out`) are the user's choice and are not restricted.
"""
from __future__ import annotations

import os
from pathlib import Path


class UnsafePathError(ValueError):
    """A name that would leave its folder; the message says which name, which folder and what to do."""


def contained_path(root: str | Path, name: str) -> Path:
    """`root / name`, resolved, after checking it stays inside `root` (symlinks followed).

    Refuses empty names, absolute paths, NUL bytes and anything resolving outside `root`.
    """
    root_resolved = Path(root).resolve()
    if not name or not name.strip() or "\x00" in name:
        raise UnsafePathError(f"{name!r}: not a usable name for a folder in {root_resolved}; choose another name")
    if os.path.isabs(name) or Path(name).is_absolute():
        raise UnsafePathError(f"{name!r}: an absolute path is not a name; it would be written outside "
                              f"{root_resolved}. Choose a plain name")
    target = (root_resolved / name).resolve()
    if target != root_resolved and root_resolved not in target.parents:
        raise UnsafePathError(f"{name!r}: resolves to {target}, outside {root_resolved}; "
                              "choose a plain name without '..' or links out of the folder")
    if target == root_resolved:
        raise UnsafePathError(f"{name!r}: names the folder {root_resolved} itself; choose a plain name")
    return target
