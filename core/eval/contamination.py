"""Benchmark contamination: the share of a task's items whose n-grams (13 by default) occur in a run's training
data, following the run's lineage (`init` → the parent run → its `init` ...), as GPT-3 (Brown et al. 2020,
appendix C) and lm-eval's decontamination do.

Text is normalised to tokens first: lower case, punctuation dropped, each CJK character a token of its own and
every other run of letters/digits one word, so Chinese and English items are both checked. An item (its question
and gold answer) is contaminated when any of its n-grams occurs in any training file; an item with fewer than n
tokens is not checked (reported as such). An item's text is the question and the gold answer (what a training
document that leaks the answer would contain).

Speed: each training file's n-grams are hashed once (64-bit polynomial hash of 64-bit token hashes, numpy,
vectorised over the whole file) and kept as a sorted unique array in a .npy cache keyed by the file's path, size,
mtime and n; later checks only look items up (binary search). Cache: $MINIMIND_NGRAM_CACHE, else
~/.cache/minimind/ngrams.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path

import numpy as np

FLAG_SHARE = 0.10  # a result whose contaminated share reaches this is flagged in every view
_TOKEN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|[^\W_\u3400-\u9fff\uf900-\ufaff]+")
_PRIME = np.uint64(0x100000001B3)  # FNV-64's prime as the polynomial base: odd, so products keep entropy
_FORMAT = 1  # bump when the hashing changes: old cache files are then ignored


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _token_hashes(words: list[str], memo: dict) -> np.ndarray:
    out = np.empty(len(words), dtype=np.uint64)
    for i, w in enumerate(words):
        h = memo.get(w)
        if h is None:
            h = memo[w] = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little")
        out[i] = h
    return out


def ngram_hashes(ids: np.ndarray, n: int, doc: np.ndarray | None = None) -> np.ndarray:
    """Hashes of every n-gram of `ids` (uint64 token hashes); with `doc` (a document number per token) only the
    n-grams inside one document. uint64 arithmetic wraps, which is the hash's modulus 2**64."""
    count = len(ids) - n + 1
    if count <= 0:
        return np.empty(0, dtype=np.uint64)
    h = np.zeros(count, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(n):
            h = h * _PRIME + ids[j:j + count]
    if doc is not None:
        h = h[doc[:count] == doc[n - 1:]]
    return h


def _texts(record) -> list[str]:
    """Every string in a JSON record except role names (conversations, chosen/rejected, text, answers)."""
    if isinstance(record, str):
        return [record]
    if isinstance(record, dict):
        return [t for k, v in record.items() if k != "role" for t in _texts(v)]
    if isinstance(record, list):
        return [t for v in record for t in _texts(v)]
    return []


def _documents(path: Path):
    if path.suffix.lower() == ".txt":
        yield path.read_text(encoding="utf-8", errors="replace")
        return
    with open(path, "rb") as f:
        for raw in f:
            try:
                yield " \n ".join(_texts(json.loads(raw)))
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue  # a bad line is the data checker's business; it cannot leak a benchmark item


def build_file_index(path: Path, n: int) -> np.ndarray:
    """The sorted unique n-gram hashes of one training file."""
    memo: dict = {}
    words, doc = [], []
    for d, text in enumerate(_documents(path)):
        w = tokens(text)
        words += w
        doc += [d] * len(w)
    return np.unique(ngram_hashes(_token_hashes(words, memo), n, np.asarray(doc, dtype=np.int64)))


def _cache_dir(cache_dir) -> Path:
    if cache_dir:
        return Path(cache_dir)
    env = os.environ.get("MINIMIND_NGRAM_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "minimind" / "ngrams"


def file_index(path: Path, n: int, cache_dir=None) -> np.ndarray:
    """`build_file_index`, cached by (resolved path, size, mtime, n)."""
    st = path.stat()
    key = hashlib.sha1(f"{_FORMAT}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{n}".encode()).hexdigest()
    cached = _cache_dir(cache_dir) / f"{path.stem[:40]}-{key[:16]}.npy"
    if cached.is_file():
        try:
            return np.load(cached)
        except (OSError, ValueError):
            pass  # a torn cache file: rebuild it
    index = build_file_index(path, n)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, index)
        os.replace(tmp, cached)
    except OSError:
        pass  # a read-only cache still gives the right answer, only slower next time
    return index


# ---- lineage --------------------------------------------------------------------------------------------------

def find_run_dir(path) -> Path | None:
    """The run directory (it holds config.json) of a run dir, checkpoints dir or checkpoint dir."""
    if path is None:
        return None
    p = Path(path)
    for candidate in (p, p.parent, p.parent.parent):
        if (candidate / "config.json").is_file() and candidate.is_dir():
            return candidate
    return None


def run_lineage(run) -> list[tuple[Path, list[Path]]]:
    """[(run dir, its data files), then its `init`'s run, ...] up the chain; relative paths are tried from the
    working directory, then from the run's parent folder."""
    chain, seen = [], set()
    run_dir = find_run_dir(run)
    while run_dir is not None and run_dir.resolve() not in seen and len(chain) < 64:
        seen.add(run_dir.resolve())
        try:
            cfg = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            break
        files = [_locate(f, run_dir) for f in (cfg.get("data") or {}).get("files") or []]
        chain.append((run_dir, files))
        init = cfg.get("init")
        run_dir = find_run_dir(_locate(init, run_dir)) if init else None
    return chain


def _locate(name: str, run_dir: Path) -> Path:
    p = Path(name)
    if p.is_absolute() or p.exists():
        return p
    beside = run_dir.parent / p
    return beside if beside.exists() else p


# ---- the check ------------------------------------------------------------------------------------------------

def item_text(item) -> str:
    return f"{item.question} {item.choices[item.gold]}"


def check_contamination(task, run, n: int = 13, cache_dir=None) -> dict:
    """{"checked": True, "ngram", "items", "items_checked", "contaminated", "share", "flagged", "runs", "files",
    "missing_files", "seconds", "item_flags"}: `share` = contaminated / items_checked (items with ≥ n tokens);
    `item_flags` holds True/False per item, None for items too short to check."""
    started = time.perf_counter()
    chain = run_lineage(run)
    files = list(dict.fromkeys(f for _, fs in chain for f in fs))
    present = [f for f in files if f.is_file()]
    memo: dict = {}
    grams = [ngram_hashes(_token_hashes(tokens(item_text(it)), memo), n) for it in task.items]
    every = np.concatenate(grams) if grams else np.empty(0, dtype=np.uint64)
    found = np.zeros(len(every), dtype=bool)
    for f in present:
        index = file_index(f, n, cache_dir)
        if len(index) and len(every):
            pos = np.minimum(np.searchsorted(index, every), len(index) - 1)
            found |= index[pos] == every
    ends = np.cumsum([len(g) for g in grams])
    flags = [bool(found[end - len(g):end].any()) if len(g) else None for g, end in zip(grams, ends)]
    checked = sum(f is not None for f in flags)
    dirty = sum(bool(f) for f in flags)
    share = dirty / checked if checked else 0.0
    return {"checked": True, "ngram": n, "items": len(flags), "items_checked": checked, "contaminated": dirty,
            "share": share, "flagged": share >= FLAG_SHARE, "runs": [str(r) for r, _ in chain],
            "files": [str(f) for f in present], "missing_files": [str(f) for f in files if not f.is_file()],
            "seconds": round(time.perf_counter() - started, 3), "item_flags": flags}


def contamination_for(task, run, n: int = 13, cache_dir=None) -> dict:
    """`check_contamination` when `run` leads to a training run, else {"checked": False, "reason"}."""
    if run is None or find_run_dir(run) is None:
        where = f"{run}" if run is not None else "this target"
        return {"checked": False, "reason": f"no training run found for {where} (no config.json in it or its "
                "parents); pass --run RUN_DIR to check against a run's data"}
    return check_contamination(task, run, n, cache_dir)
