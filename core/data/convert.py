"""Writing any readable dataset (ShareGPT, Alpaca, OpenAI messages, preference pairs; JSONL, JSON, Parquet,
Arrow) as MiniMind JSONL: `minimind data convert`.

The rows are read and checked exactly as training reads them (`core.data.records.iter_records_at` with the
file's mapping), so a converted file trains the same as its source. Bad rows are left out and counted with
`file:row: field: message`; the output is written under a temporary name and renamed when complete.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from core.data.formats import FORMATS, Mapping, detect_mapping, probe_rows, resolve_mapping
from core.data.records import DataReport, detect_kind, iter_records_at
from core.data.sources import source_size
from core.tokenizer.messages import normalize_messages


class ConversionStopped(Exception):
    """`should_stop()` answered True: nothing was written."""


def mapping_for(path, fmt: str = "auto") -> Mapping:
    """The file's own mapping (auto), or the given format with columns and tags detected from its rows."""
    if fmt == "auto":
        return resolve_mapping(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use auto or one of {', '.join(FORMATS)}")
    return detect_mapping(probe_rows(path), fmt)


def _normalized(rec: dict) -> dict:
    """Message lists with tools and tool calls as lists (not JSON strings), as MiniMind JSONL holds them."""
    out = dict(rec)
    for key in ("conversations", "chosen", "rejected"):
        if isinstance(out.get(key), list):
            msgs, tools = normalize_messages(out[key])
            if tools and msgs and msgs[0].get("role") == "system":
                msgs[0] = {**msgs[0], "tools": tools}
            out[key] = msgs
    return out


def convert_file(src, dst, fmt: str = "auto", kind: str | None = None, max_errors: int = 100,
                 progress: Callable[[int, int, int], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> tuple[DataReport, str, Mapping]:
    """Write `src` as MiniMind JSONL to `dst`; returns (report, kind, mapping). `progress(bytes done, total,
    records)` is called every 2,000 rows; `should_stop()` then too, and a stop raises ConversionStopped."""
    mapping = mapping_for(src, fmt)
    kind = kind or ("dpo" if mapping.format == "preference" else detect_kind(src, mapping=mapping))
    report = DataReport(max_errors=max_errors)
    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    total = max(1, source_size(src))
    try:
        with open(tmp, "w", encoding="utf-8") as out:
            for n, (rec, _row, pos, _count) in enumerate(iter_records_at(src, kind, "skip", report,
                                                                          mapping=mapping)):
                out.write(json.dumps(_normalized(rec), ensure_ascii=False) + "\n")
                if n % 2000 == 0:
                    if progress:
                        progress(pos, total, report.records)
                    if should_stop and should_stop():
                        raise ConversionStopped(f"stopped after {report.records} records; {dst} not written")
        if progress:
            progress(total, total, report.records)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return report, kind, mapping
