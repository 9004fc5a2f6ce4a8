"""What a quantized GGUF costs in quality, measured against the f32 export on held-out text.

The figures are the ones llama.cpp's `llama-perplexity --kl-divergence` reports for a quantized model against its
full-precision base, computed here from both files' per-position logits (llama.cpp runs each file in a child
process, `parity_worker.py`):
- perplexity of the text under each file, and its relative change;
- top-1 agreement: the share of positions where both files predict the same next token;
- mean KL(P_f32 || P_quant) over positions, in nats (0 for identical distributions).
The f32 export is the reference, not the torch model: it equals the torch model to ~1e-5 (the parity check) and
it is the file a user compares against.

Held-out text: a file the caller names, else the first `data.eval_files` entry of the run the checkpoint came
from (text the model did not train on), else HELDOUT_TEXT, a built-in passage in English and Chinese.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from core.export.parity import run_worker

HELDOUT_TOKENS = 512  # enough for a stable mean KL on small models; the logits of two files stay small in memory
HELDOUT_TEXT = (
    "The river rose slowly through the night, and by morning the low fields along its banks were under water. "
    "Farmers moved their animals to the hills while children watched from the bridge. In the town, the baker "
    "opened early and handed out bread to anyone who had walked in from the flooded roads. Nobody could say when "
    "the water would fall again, but the old maps showed the same floods every few decades.\n"
    "A small program reads a list of numbers, sorts them, and prints the middle one: the median. If the list "
    "has an even length, it prints the mean of the two middle numbers instead.\n"
    "清晨的图书馆很安静，只有几位学生在窗边读书。管理员把新到的杂志放上书架，又给门口的花浇了水。"
    "午饭以后，人渐渐多了起来，有人借书，有人还书，还有人只是来这里躲避外面的炎热。\n"
    "Questions worth asking of any measurement: what was measured, on which data, and how large is the noise?")


def heldout_text(source: str | Path | None = None, path: str | Path | None = None, tokenizer=None) -> tuple[str, str]:
    """(text, where it came from): `path`; else the source run's first eval file; else HELDOUT_TEXT."""
    candidate = Path(path) if path else run_eval_file(source)
    if candidate is not None and candidate.is_file():
        text = read_text_sample(candidate, tokenizer)
        if text.strip():
            return text, str(candidate)
    if path:
        raise FileNotFoundError(f"held-out text {path}: no such file, or no text in it")
    return HELDOUT_TEXT, "built-in passage (core/export/quality.py)"


def run_eval_file(source) -> Path | None:
    """The first `data.eval_files` entry of the run a checkpoint belongs to (run dir or run/checkpoints/step-N)."""
    if source is None or not Path(source).exists():
        return None
    src = Path(source)
    for run_dir in (src, src.parent.parent):
        config = run_dir / "config.json"
        if config.is_file():
            try:
                files = (json.loads(config.read_text(encoding="utf-8")).get("data") or {}).get("eval_files") or []
            except (OSError, json.JSONDecodeError, AttributeError):
                files = []
            if files:
                return Path(files[0])
    return None


def read_text_sample(path: Path, tokenizer=None, max_chars: int = 8 * HELDOUT_TOKENS) -> str:
    """Up to `max_chars` of text: plain text as it is; JSONL records by their "text", or their conversation
    ("conversations", "messages", "chosen") rendered with the tokenizer's chat template, as the model reads it."""
    parts, size = [], 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        if path.suffix not in (".jsonl", ".json"):
            return fh.read(max_chars)
        for line in fh:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            text = record_text(rec, tokenizer) if isinstance(rec, dict) else ""
            parts.append(text)
            size += len(text)
            if size >= max_chars:
                break
    return "\n".join(p for p in parts if p)[:max_chars]


def record_text(rec: dict, tokenizer=None) -> str:
    if isinstance(rec.get("text"), str):
        return rec["text"]
    turns = next((rec[k] for k in ("conversations", "messages", "chosen") if isinstance(rec.get(k), list)), None)
    if turns is None or tokenizer is None:
        return ""
    try:
        return tokenizer.apply_chat_template(turns)
    except Exception:  # a record the template cannot render says nothing about the quantization
        return ""


def heldout_ids(tokenizer, text: str, max_positions: int) -> list[int]:
    ids = tokenizer.encode(text)[: min(HELDOUT_TOKENS, max_positions)]
    if len(ids) < 2:
        raise ValueError("the held-out text has fewer than 2 tokens: nothing to predict")
    return ids


def heldout_logits(gguf_file: Path, ids: list[int]) -> np.ndarray:
    """llama.cpp's logits at every position of `ids` (teacher-forced), from a child process."""
    _answer, logits = run_worker(Path(gguf_file), "", ids, len(ids), 0, logits_only=True)
    return logits


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def compare_logits(reference: np.ndarray, logits: np.ndarray, ids: list[int]) -> dict:
    """Quality figures of `logits` against `reference` (both (T, V) over the same `ids`); position t predicts
    ids[t + 1]."""
    if reference.shape != logits.shape or reference.shape[0] != len(ids):
        raise ValueError(f"logits of shape {logits.shape} and {reference.shape} for {len(ids)} tokens")
    ref, q = log_softmax(reference[:-1]), log_softmax(logits[:-1])
    targets = np.asarray(ids[1:])
    rows = np.arange(targets.size)
    ppl_ref = math.exp(-ref[rows, targets].mean())
    ppl = math.exp(-q[rows, targets].mean())
    # KL is >= 0; rounding can leave ~-1e-16 where the two distributions are equal
    kl = np.maximum((np.exp(ref) * (ref - q)).sum(axis=-1), 0.0)
    return {"n_tokens": int(targets.size), "perplexity_f32": ppl_ref, "perplexity": ppl,
            "perplexity_change": ppl / ppl_ref - 1.0,
            "top1_agreement": float(np.mean(ref.argmax(-1) == q.argmax(-1))),
            "mean_kl": float(kl.mean()), "max_kl": float(kl.max())}


def measure_quality(reference_gguf: Path, gguf_file: Path, ids: list[int], text_source: str = "") -> dict:
    """Quality figures of `gguf_file` against the f32 export `reference_gguf` on the held-out `ids`."""
    figures = compare_logits(heldout_logits(reference_gguf, ids), heldout_logits(gguf_file, ids), ids)
    figures["heldout"] = text_source
    return figures
