"""Multiple-choice benchmark tasks: the local file formats, one prompt template each, and the built-in sets.

A task is a list of `Item`s. Each item is a prompt (the question through its template) and the options that may
continue it; scoring (core/eval/bench.py) compares log P(option | prompt), as lm-evaluation-harness does. The
templates follow lm-eval's for the same benchmarks (tasks/ceval, cmmlu, mmlu, arc, openbookqa, hellaswag, piqa),
so figures are comparable with MiniMind's published tables.

Formats (docs/evaluation.md shows an example line of each):
  ceval      C-Eval / CMMLU CSV with a header: [id,] question, A, B, C, D, answer (any case)
  mmlu       MMLU CSV without a header (question, A, B, C, D, answer) or JSONL {"question", "choices", "answer"}
  arc        ARC JSONL: {"question": {"stem", "choices": [{"text", "label"}]}, "answerKey"} or the flat
             {"question": str, "choices": {"text": [...], "label": [...]}, "answerKey"}
  obqa       OpenBookQA JSONL: as ARC, or {"question_stem", "choices": {"text", "label"}, "answerKey"}
  hellaswag  HellaSwag JSONL: {"ctx" or "ctx_a"+"ctx_b", "endings", "label", "activity_label"}
  piqa       PIQA JSONL: {"goal", "sol1", "sol2", "label"}, or labels in the sibling NAME-labels.lst
Built-in (no file): `demo-facts` (the demo data's facts, core/data/demo.py) and `shared-poems` (next lines of
Tang/Song poems from ../shared/data/rl.jsonl). Every problem is a DataError naming FILE:LINE: field.
"""
from __future__ import annotations

import csv
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from core.data.records import DataError

LETTERS = "ABCDEFGHIJ"
FORMATS = ("ceval", "mmlu", "arc", "obqa", "hellaswag", "piqa")
BUILTIN = ("demo-facts", "shared-poems")
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@dataclass
class Item:
    """One question. `prompt` is what the options continue; `options` are scored exactly as written (the
    delimiter, usually a leading space, included); `choices` are the options' texts for people and for the
    contamination check."""
    question: str
    prompt: str
    options: list[str]
    choices: list[str]
    gold: int
    id: str = ""


@dataclass
class Task:
    name: str
    format: str
    items: list[Item]
    path: str | None = None
    settings: dict = field(default_factory=dict)

    def fewshot_prefix(self, index: int, k: int, seed: int = 1234) -> str:
        """k solved examples drawn from the task's other items (seeded per item), each followed by a blank
        line: lm-eval's few-shot layout where a task has no separate few-shot split."""
        if k <= 0:
            return ""
        pool = [i for i in range(len(self.items)) if i != index]
        picks = random.Random(seed * 1_000_003 + index).sample(pool, min(k, len(pool)))
        return "".join(f"{self.items[i].prompt}{self.items[i].options[self.items[i].gold]}\n\n" for i in picks)


# ---- templates ------------------------------------------------------------------------------------------------

def _lettered(question: str, choices: list[str], answer_cue: str) -> tuple[str, list[str]]:
    lines = [question.strip()] + [f"{LETTERS[i]}. {c}" for i, c in enumerate(choices)]
    return "\n".join(lines) + f"\n{answer_cue}", [f" {LETTERS[i]}" for i in range(len(choices))]


def _item(question: str, prompt: str, options: list[str], choices: list[str], gold: int, item_id: str) -> Item:
    return Item(question=question, prompt=prompt, options=options, choices=choices, gold=gold, id=item_id)


def _hellaswag_clean(text: str) -> str:
    """lm-eval's hellaswag `preprocess`: drop WikiHow's " [title]" marks and bracketed notes, squeeze spaces."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


# ---- file readers: each yields (line, record) and builds Items, naming FILE:LINE: field on any problem --------

def _letter_index(where: tuple, value, n: int, name: str = "answer") -> int:
    """An answer given as a letter (A-D), a 0-based index, or a 1-based label string ("1"-"4", ARC's old form)."""
    if isinstance(value, bool):
        value = None
    if isinstance(value, int) and 0 <= value < n:
        return value
    text = str(value).strip().upper() if value is not None else ""
    if len(text) == 1 and text in LETTERS[:n]:
        return LETTERS.index(text)
    if text.isdigit() and 1 <= int(text) <= n:
        return int(text) - 1
    hint = " (C-Eval's test split has no answers; use dev or val)" if text == "" else ""
    raise DataError(*where, name, f"expected one of {', '.join(LETTERS[:n])} (or an index), got {value!r}{hint}")


def _text(where: tuple, rec: dict, key: str) -> str:
    value = rec.get(key)
    if not isinstance(value, str) or not value.strip():
        raise DataError(*where, key, f"expected a non-empty string, got {value!r}")
    return value


def _csv_rows(path: Path):
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            for lineno, row in enumerate(csv.reader(f), 1):
                if any(cell.strip() for cell in row):
                    yield lineno, row
    except UnicodeDecodeError as exc:
        raise DataError(path, 1, "(file)", f"not UTF-8 text ({exc.reason}); save it as UTF-8") from None


def _jsonl_rows(path: Path):
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise DataError(path, lineno, "(line)", f"not a JSON object ({exc})") from None
            if not isinstance(rec, dict):
                raise DataError(path, lineno, "(line)", f"expected a JSON object, got {type(rec).__name__}")
            yield lineno, rec


def _read_ceval(path: Path) -> list[Item]:
    rows = _csv_rows(path)
    first = next(rows, None)
    if first is None:
        raise DataError(path, 1, "(file)", "empty file")
    header = [h.strip().lower() for h in first[1]]
    missing = [c for c in ("question", "a", "b", "c", "d", "answer") if c not in header]
    if missing:
        raise DataError(path, first[0], "(header)", f"missing column(s) {', '.join(missing)}; C-Eval/CMMLU CSVs "
                        "start with a header row: [id,]question,A,B,C,D,answer")
    col = {name: header.index(name) for name in header if name}
    items = []
    for lineno, row in rows:
        where = (path, lineno)
        if len(row) < len(header):
            raise DataError(*where, "(row)", f"{len(row)} cells, the header has {len(header)}")
        get = lambda name: row[col[name]]  # noqa: E731
        choices = [get(c) for c in "abcd"]
        question = get("question")
        if not question.strip():
            raise DataError(*where, "question", "empty")
        prompt, options = _lettered(question, choices, "答案：")
        item_id = get("id") if "id" in col else str(lineno)
        items.append(_item(question, prompt, options, choices, _letter_index(where, get("answer"), 4), item_id))
    return items


def _read_mmlu(path: Path) -> list[Item]:
    items = []
    if path.suffix.lower() == ".csv":
        for lineno, row in _csv_rows(path):
            where = (path, lineno)
            if len(row) < 6:
                raise DataError(*where, "(row)", f"{len(row)} cells; MMLU rows are question,A,B,C,D,answer")
            prompt, options = _lettered(row[0], row[1:5], "Answer:")
            items.append(_item(row[0], prompt, options, row[1:5], _letter_index(where, row[5], 4), str(lineno)))
        return items
    for lineno, rec in _jsonl_rows(path):
        where = (path, lineno)
        question, choices = _text(where, rec, "question"), rec.get("choices")
        if not (isinstance(choices, list) and len(choices) >= 2 and all(isinstance(c, str) for c in choices)):
            raise DataError(*where, "choices", f"expected a list of 2-10 strings, got {choices!r}")
        prompt, options = _lettered(question, choices, "Answer:")
        items.append(_item(question, prompt, options, choices,
                           _letter_index(where, rec.get("answer"), len(choices)), str(rec.get("id", lineno))))
    return items


def _labelled_choices(where: tuple, choices) -> tuple[list[str], list[str]]:
    """ARC/OpenBookQA choices in either form: [{"text", "label"}] or {"text": [...], "label": [...]}."""
    if isinstance(choices, dict):
        texts, labels = choices.get("text"), choices.get("label")
    elif isinstance(choices, list) and all(isinstance(c, dict) for c in choices):
        texts, labels = [c.get("text") for c in choices], [c.get("label") for c in choices]
    else:
        texts = labels = None
    if not (isinstance(texts, list) and isinstance(labels, list) and len(texts) == len(labels) >= 2
            and all(isinstance(t, str) for t in texts)):
        raise DataError(*where, "choices", "expected [{\"text\", \"label\"}, ...] or {\"text\": [...], \"label\": [...]}")
    return texts, [str(lab) for lab in labels]


def _read_arc(path: Path, fmt: str) -> list[Item]:
    items = []
    for lineno, rec in _jsonl_rows(path):
        where = (path, lineno)
        q = rec.get("question")
        if isinstance(q, dict):  # the original AI2 layout
            question, choices = _text(where, q, "stem"), q.get("choices")
        elif "question_stem" in rec:
            question, choices = _text(where, rec, "question_stem"), rec.get("choices")
        else:
            question, choices = _text(where, rec, "question"), rec.get("choices")
        texts, labels = _labelled_choices(where, choices)
        key = str(rec.get("answerKey", "")).strip()
        if key not in labels:
            raise DataError(*where, "answerKey", f"{key!r} is not one of the choice labels {labels}")
        prompt = f"Question: {question}\nAnswer:" if fmt == "arc" else question
        items.append(_item(question, prompt, [f" {t}" for t in texts], texts, labels.index(key),
                           str(rec.get("id", lineno))))
    return items


def _read_hellaswag(path: Path) -> list[Item]:
    items = []
    for lineno, rec in _jsonl_rows(path):
        where = (path, lineno)
        endings = rec.get("endings")
        if not (isinstance(endings, list) and len(endings) >= 2 and all(isinstance(e, str) for e in endings)):
            raise DataError(*where, "endings", f"expected a list of strings, got {endings!r}")
        if "ctx_a" in rec:
            ctx = _text(where, rec, "ctx_a") + " " + str(rec.get("ctx_b") or "").capitalize()
        else:
            ctx = _text(where, rec, "ctx")
        activity = str(rec.get("activity_label") or "").strip()
        prompt = _hellaswag_clean(f"{activity}: {ctx}" if activity else ctx)
        choices = [_hellaswag_clean(e) for e in endings]
        gold = _letter_index(where, _int_or(rec.get("label")), len(endings), "label")
        items.append(_item(ctx, prompt, [f" {c}" for c in choices], choices, gold, str(rec.get("ind", lineno))))
    return items


def _int_or(value):
    return int(value) if isinstance(value, str) and value.strip().isdigit() else value


def _read_piqa(path: Path) -> list[Item]:
    labels_file = path.with_name(f"{path.stem}-labels.lst")
    side = labels_file.read_text(encoding="utf-8").split() if labels_file.is_file() else None
    items = []
    for n, (lineno, rec) in enumerate(_jsonl_rows(path)):
        where = (path, lineno)
        goal, sols = _text(where, rec, "goal"), [_text(where, rec, "sol1"), _text(where, rec, "sol2")]
        label = rec.get("label")
        if label is None and side is not None:
            if n >= len(side):
                raise DataError(labels_file, n + 1, "label", f"missing: {labels_file.name} has {len(side)} lines")
            label, where = side[n], (labels_file, n + 1)
        if label is None:
            raise DataError(*where, "label", f"missing; give 0 or 1 in the record or in {labels_file.name}")
        gold = _letter_index(where, _int_or(label), 2, "label")
        items.append(_item(goal, f"Question: {goal}\nAnswer:", [f" {s}" for s in sols], sols, gold,
                           str(rec.get("id", lineno))))
    return items


def detect_format(path: Path) -> str:
    """The format of a benchmark file, from its suffix and the first record's fields."""
    if path.suffix.lower() == ".csv":
        first = next(_csv_rows(path), (1, []))[1]
        header = {h.strip().lower() for h in first}
        return "ceval" if {"question", "answer"} <= header else "mmlu"
    lineno, rec = next(_jsonl_rows(path), (1, None))
    if rec is None:
        raise DataError(path, 1, "(file)", "empty file")
    if "endings" in rec:
        return "hellaswag"
    if "goal" in rec:
        return "piqa"
    if "question_stem" in rec or ("obqa" in path.name.lower() or "openbook" in path.name.lower()):
        return "obqa"
    if "answerKey" in rec:
        return "arc"
    if "choices" in rec:
        return "mmlu"
    if {"question", "A", "B", "answer"} <= set(rec):
        return "ceval"
    raise DataError(path, lineno, "(format)", f"cannot tell the format from the fields {sorted(rec)}; pass "
                    f"--format, one of {', '.join(FORMATS)} (docs/evaluation.md)")


# ---- built-in sets --------------------------------------------------------------------------------------------

def demo_facts(n: int = 200, seed: int = 7) -> list[Item]:
    """The demo data's fact kinds (arithmetic, numbers, colours, animals, days, spelling, stories), each asked
    with its right answer and the demo's plausible wrong one, in a seeded order. Seed 7 is not a demo-data seed,
    but the facts come from small closed sets, so many items also occur in the demo data: the contamination
    check says how many."""
    from core.data.demo import DOMAINS, ZH_SHARE

    r, items = random.Random(seed), []
    for i in range(n):
        fact = r.choice(DOMAINS)(r, r.random() < ZH_SHARE)
        choices = [fact.answer, fact.wrong]
        if r.random() < 0.5:
            choices.reverse()
        prompt = f"Question: {fact.question}\nAnswer:"
        items.append(_item(fact.question, prompt, [f" {c}" for c in choices], choices,
                           choices.index(fact.answer), f"demo-{i + 1}"))
    return items


def shared_poems(n: int = 200, data_dir: Path | None = None, seed: int = 7) -> list[Item]:
    """Next line of a Chinese poem (../shared/data/rl.jsonl): the line, then the true next line and three next
    lines of other poems of the same length."""
    path = Path(data_dir or SHARED_DATA) / "rl.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the shared datasets are needed for the built-in task shared-poems")
    cue = "请只写出下一句："
    pairs = [(rec["conversations"][0]["content"][len(cue):], rec["answer"]) for _, rec in _jsonl_rows(path)
             if rec.get("conversations") and rec["conversations"][0].get("content", "").startswith(cue)]
    by_len: dict[int, list[str]] = {}
    for _, nxt in pairs:
        by_len.setdefault(len(nxt), []).append(nxt)
    r = random.Random(seed)
    pairs = [p for p in pairs if len(set(by_len[len(p[1])])) >= 4]
    items = []
    for i, (line, nxt) in enumerate(r.sample(pairs, min(n, len(pairs)))):
        others = sorted(set(by_len[len(nxt)]) - {nxt})
        choices = r.sample(others, 3) + [nxt]
        r.shuffle(choices)
        items.append(_item(line, f"{line}，", [f"{c}。" for c in choices], choices, choices.index(nxt),
                           f"poem-{i + 1}"))
    return items


# ---- entry point ----------------------------------------------------------------------------------------------

_READERS = {"ceval": _read_ceval, "mmlu": _read_mmlu, "arc": lambda p: _read_arc(p, "arc"),
            "obqa": lambda p: _read_arc(p, "obqa"), "hellaswag": _read_hellaswag, "piqa": _read_piqa}


def load_task(path_or_name: str | Path, format: str | None = None, limit: int | None = None) -> Task:
    """A built-in set by name (BUILTIN) or a benchmark file (format detected unless given; FORMATS).
    `limit` keeps the first N items. Raises DataError (FILE:LINE: field: message) or FileNotFoundError."""
    name = str(path_or_name)
    if name in BUILTIN:
        items = demo_facts() if name == "demo-facts" else shared_poems()
        task = Task(name, "builtin", items)
    else:
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such benchmark file; give a file or a built-in task "
                                    f"({', '.join(BUILTIN)})")
        fmt = format or detect_format(path)
        if fmt not in _READERS:
            raise ValueError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
        items = _READERS[fmt](path)
        if not items:
            raise DataError(path, 1, "(file)", "no items")
        task = Task(path.stem, fmt, items, str(path))
    if limit:
        task.items = task.items[:limit]
    return task
