"""The column and role mapping: how a row of someone else's dataset becomes a MiniMind record.

As LLaMA-Factory's `dataset_info.json` does, a mapping names a `format`, the `columns` a row is read from and,
for message lists, the `tags` of roles and contents:

    {"format": "sharegpt", "columns": {"messages": "conversations", "system": "system", "tools": "tools"},
     "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt", ...}}

Formats: `minimind` (the native records, columns renamable), `sharegpt` (turns of from/value; function_call and
observation turns become tool calls and tool results), `alpaca` (instruction/input/output, optional system and
history), `openai` (`messages` with role/content, tool_calls, and a `tools` column) and `preference`
(chosen/rejected as message lists or strings, with an optional prompt/question column). The first four give SFT
(or RL prompt) records, `preference` gives DPO pairs.

A file's mapping is, in this order: the one a run's config recorded (`using_mappings`, installed by the engine),
the sidecar `<file>.mapping.json` (written by the Datasets pane or by hand), or the one detected from its first
rows. Errors keep naming the file's own fields: a bad role in a ShareGPT row is `conversations[3].from`, not the
MiniMind field it became.
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import re
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from core.data.errors import DataError
from core.data.sources import TableSource, check_source, is_table, source_stamp

FORMATS = ("minimind", "sharegpt", "alpaca", "openai", "preference")
NATIVE_KEYS = ("text", "conversations", "chosen", "rejected", "answer", "gt")
SIDECAR_SUFFIX = ".mapping.json"
PROBE_ROWS = 20

# LLaMA-Factory's defaults (data/README.md of hiyouga/LLaMA-Factory), plus ours for openai and preference.
_CHAT_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
              "system_tag": "system", "tool_tag": "tool"}
DEFAULTS: dict[str, dict] = {
    "minimind": {"columns": {}, "tags": {}},
    "sharegpt": {"columns": {"messages": "conversations", "system": "system", "tools": "tools"},
                 "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                          "system_tag": "system", "function_tag": "function_call",
                          "observation_tag": "observation"}},
    "alpaca": {"columns": {"prompt": "instruction", "query": "input", "response": "output", "system": "system",
                           "history": "history"}, "tags": {}},
    "openai": {"columns": {"messages": "messages", "tools": "tools"}, "tags": dict(_CHAT_TAGS)},
    "preference": {"columns": {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected", "system": "system"},
                   "tags": dict(_CHAT_TAGS)},
}
TAG_NAMES = set(DEFAULTS["sharegpt"]["tags"]) | set(_CHAT_TAGS)
_ROLE_OF_TAG = {"user_tag": "user", "assistant_tag": "assistant", "system_tag": "system", "tool_tag": "tool",
                "observation_tag": "tool", "function_tag": "function_call"}


class MappingError(ValueError):
    """A mapping that cannot be used: names the key that is wrong."""


@dataclass
class Origins:
    """Where each field of a converted record came from in the row (for error messages)."""

    fields: dict = field(default_factory=dict)    # record key -> row column
    messages: dict = field(default_factory=dict)  # record key -> [{"": path, "role": path, "content": path, ...}]

    def source(self, name: str) -> str:
        m = re.match(r"^([a-z_]+)(?:\[(\d+)\])?(.*)$", name)
        if not m:
            return name
        key, index, rest = m.group(1), m.group(2), m.group(3)
        if index is None:
            return self.fields.get(key, key) + rest
        msgs = self.messages.get(key)
        if not msgs or int(index) >= len(msgs):
            return name
        origin = msgs[int(index)]
        sub = re.match(r"^\.([a-z_]+)(.*)$", rest)
        if sub and sub.group(1) in origin:
            return origin[sub.group(1)] + sub.group(2)
        return origin[""] + rest


IDENTITY = Origins()


@dataclass
class Mapping:
    format: str = "minimind"
    columns: dict = field(default_factory=dict)
    tags: dict = field(default_factory=dict)
    origin: str = "detected"  # where it came from: detected, sidecar, config, given (not saved)

    # ---- data ------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": self.format, "columns": dict(self.columns), "tags": dict(self.tags)}

    @classmethod
    def from_dict(cls, data, origin: str = "given") -> "Mapping":
        if not isinstance(data, dict):
            raise MappingError(f"a mapping must be an object, got {type(data).__name__}")
        fmt = data.get("format", "minimind")
        if fmt not in FORMATS:
            raise MappingError(f"format: unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
        unknown = set(data) - {"format", "columns", "tags", "version"}
        if unknown:
            raise MappingError(f"{sorted(unknown)[0]}: unknown key; a mapping has format, columns and tags")
        parts = {}
        for part in ("columns", "tags"):
            given = data.get(part) or {}
            if not isinstance(given, dict) or not all(isinstance(v, str) and v for v in given.values()):
                raise MappingError(f"{part}: must map names to non-empty strings")
            if part == "columns":
                allowed = set(DEFAULTS[fmt]["columns"]) | {"answer"} | (set(NATIVE_KEYS) if fmt == "minimind" else set())
            else:
                allowed = TAG_NAMES if DEFAULTS[fmt]["tags"] else set()
            bad = sorted(set(given) - allowed)
            if bad:
                raise MappingError(f"{part}.{bad[0]}: not a {part[:-1]} of the {fmt} format; "
                                   f"it has {', '.join(sorted(allowed)) or 'none'}")
            parts[part] = {**DEFAULTS[fmt][part], **given}
        return cls(fmt, parts["columns"], parts["tags"], origin)

    @property
    def native(self) -> bool:
        """Rows are MiniMind records as they are: nothing to convert."""
        return self.format == "minimind" and all(self.columns.get(k, k) == k for k in NATIVE_KEYS)

    # ---- conversion ------------------------------------------------------------------------------------------
    def apply(self, row, fail) -> tuple[dict, Origins]:
        """The MiniMind record of `row` and where its fields came from; `fail(field, message)` raises."""
        if not isinstance(row, dict):
            fail("(record)", f"must be a JSON object, got {type(row).__name__}")
        if self.native:
            return row, IDENTITY
        rec, origins = _CONVERTERS[self.format](self, row, fail)
        answer = self.columns.get("answer")
        if answer and row.get(answer) is not None and self.format != "minimind":
            rec["answer"], origins.fields["answer"] = row[answer], answer
        return rec, origins

    def turn_roles(self) -> dict:
        """Role tag -> MiniMind role ("function_call" for a call turn)."""
        return {self.tags[k]: role for k, role in _ROLE_OF_TAG.items() if k in self.tags}


def _present(row: dict, column: str | None):
    """A column's value, None when absent or empty (Parquet gives None for a missing cell)."""
    if not column:
        return None
    value = row.get(column)
    return None if value is None or value == "" or value == [] else value


def _with_tools(msgs: list, origins: list, tools, column: str) -> None:
    """MiniMind declares tools on the first, system message: put them there (adding an empty one if needed)."""
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except json.JSONDecodeError:
            pass  # left as a string: check_messages names the JSON error at this column
    if tools in (None, "", []):
        return
    if msgs and msgs[0]["role"] == "system":
        msgs[0]["tools"] = tools
        origins[0]["tools"] = column
    else:
        msgs.insert(0, {"role": "system", "content": "", "tools": tools})
        origins.insert(0, {"": column, "role": column, "content": column, "tools": column})


def _turns(mapping: Mapping, value, column: str, fail) -> tuple[list, list]:
    """A list of turns under the mapping's tags -> MiniMind messages and their origins."""
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        fail(column, f"must be a list of messages, got {type(value).__name__}")
    tags, roles = mapping.tags, mapping.turn_roles()
    role_tag, content_tag = tags.get("role_tag", "role"), tags.get("content_tag", "content")
    msgs, origins = [], []
    for i, turn in enumerate(value):
        base = f"{column}[{i}]"
        if not isinstance(turn, dict):
            fail(base, f"must be an object with {role_tag} and {content_tag}, got {type(turn).__name__}")
        if role_tag not in turn:
            fail(f"{base}.{role_tag}", "missing")
        tag = turn[role_tag]
        role = roles.get(tag) if isinstance(tag, str) else None
        if role is None:
            known = ", ".join(f"{t} → {'a tool call' if r == 'function_call' else r}" for t, r in roles.items())
            fail(f"{base}.{role_tag}", f"unknown role {tag!r}; the mapping reads {known} (edit its tags)")
        origin = {"": base, "role": f"{base}.{role_tag}", "content": f"{base}.{content_tag}"}
        content = turn.get(content_tag)
        if content_tag not in turn and not turn.get("tool_calls"):
            fail(f"{base}.{content_tag}", "missing")
        if role == "function_call":  # ShareGPT: the turn's value is the call, {"name", "arguments"} or a list
            calls = content
            if isinstance(calls, str):
                try:
                    calls = json.loads(calls)
                except json.JSONDecodeError as exc:
                    fail(f"{base}.{content_tag}", f"a function_call turn must hold JSON: {exc.msg} at column "
                                                  f"{exc.colno}")
            msg = {"role": "assistant", "content": "", "tool_calls": calls if isinstance(calls, list) else [calls]}
            origin["tool_calls"] = f"{base}.{content_tag}"
        else:
            msg = {k: v for k, v in turn.items() if k not in (role_tag, content_tag) and v is not None}
            msg.update(role=role, content=content)
        msgs.append(msg)
        origins.append(origin)
    return msgs, origins


def _system_first(row, column, msgs, origins) -> None:
    system = _present(row, column)
    if system is not None and not (msgs and msgs[0]["role"] == "system"):
        msgs.insert(0, {"role": "system", "content": system})
        origins.insert(0, {"": column, "role": column, "content": column})


def _chat(mapping: Mapping, row: dict, fail) -> tuple[dict, Origins]:
    """sharegpt and openai: one message list, a system column, a tools column."""
    cols = mapping.columns
    column = cols["messages"]
    if row.get(column) is None:
        fail(column, f"missing; the {mapping.format} mapping reads the conversation from this column "
                     f"(columns.messages)")
    msgs, origins = _turns(mapping, row[column], column, fail)
    _system_first(row, cols.get("system"), msgs, origins)
    _with_tools(msgs, origins, _present(row, cols.get("tools")), cols.get("tools", "tools"))
    return {"conversations": msgs}, Origins({"conversations": column}, {"conversations": origins})


def _alpaca(mapping: Mapping, row: dict, fail) -> tuple[dict, Origins]:
    cols = mapping.columns
    prompt, query, response = cols["prompt"], cols.get("query"), cols["response"]
    if not isinstance(row.get(prompt), str):
        fail(prompt, "missing; the alpaca mapping reads the instruction from this column (columns.prompt)"
             if row.get(prompt) is None else f"must be a string, got {type(row[prompt]).__name__}")
    msgs, origins = [], []
    history = _present(row, cols.get("history"))
    for i, pair in enumerate(history or []):
        where = f"{cols['history']}[{i}]"
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            fail(where, "must be a [question, answer] pair")
        msgs += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
        origins += [{"": f"{where}[0]", "role": where, "content": f"{where}[0]"},
                    {"": f"{where}[1]", "role": where, "content": f"{where}[1]"}]
    extra = _present(row, query)
    if extra is not None and not isinstance(extra, str):
        fail(query, f"must be a string, got {type(extra).__name__}")
    msgs.append({"role": "user", "content": row[prompt] + (f"\n{extra}" if extra else "")})
    origins.append({"": prompt, "role": prompt, "content": prompt})
    if row.get(response) is not None:
        msgs.append({"role": "assistant", "content": row[response]})
        origins.append({"": response, "role": response, "content": response})
    _system_first(row, cols.get("system"), msgs, origins)
    return {"conversations": msgs}, Origins({"conversations": response}, {"conversations": origins})


def _preference(mapping: Mapping, row: dict, fail) -> tuple[dict, Origins]:
    cols = mapping.columns
    prompt_msgs, prompt_origins = [], []
    prompt = _present(row, cols.get("prompt"))
    if isinstance(prompt, str):
        prompt_msgs, prompt_origins = [{"role": "user", "content": prompt}], [
            {"": cols["prompt"], "role": cols["prompt"], "content": cols["prompt"]}]
    elif prompt is not None:
        prompt_msgs, prompt_origins = _turns(mapping, prompt, cols["prompt"], fail)
    _system_first(row, cols.get("system"), prompt_msgs, prompt_origins)
    rec, origins = {}, Origins()
    for side in ("chosen", "rejected"):
        column = cols[side]
        value = row.get(column)
        if value is None:
            fail(column, f"missing; the preference mapping reads the {side} answer from this column")
        if isinstance(value, str):
            if not prompt_msgs:
                fail(column, f"is a plain answer, but the mapping names no prompt column with a value here "
                             f"(columns.prompt is {cols.get('prompt')!r})")
            msgs, side_origins = [{"role": "assistant", "content": value}], [
                {"": column, "role": column, "content": column}]
        else:
            msgs, side_origins = _turns(mapping, value, column, fail)
        if prompt_msgs and not (msgs and msgs[0]["role"] in ("system", "user")):
            msgs, side_origins = [dict(m) for m in prompt_msgs] + msgs, prompt_origins + side_origins
        rec[side] = msgs
        origins.fields[side], origins.messages[side] = column, side_origins
    return rec, origins


def _renamed(mapping: Mapping, row: dict, fail) -> tuple[dict, Origins]:
    """minimind with renamed columns (e.g. a Parquet file whose text column is `content`)."""
    rec, origins = {}, Origins()
    for key in NATIVE_KEYS:
        column = mapping.columns.get(key, key)
        if column in row:
            rec[key] = row[column]
            origins.fields[key] = column
            if isinstance(row[column], list):
                origins.messages[key] = [{"": f"{column}[{i}]"} for i in range(len(row[column]))]
    return rec, origins


_CONVERTERS = {"minimind": _renamed, "sharegpt": _chat, "openai": _chat, "alpaca": _alpaca,
               "preference": _preference}


# ---- detection ---------------------------------------------------------------------------------------------------

def _first_turn(value) -> dict | None:
    if isinstance(value, dict):
        return value
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return value[0]
    return None


def _turn_tags(rows: list[dict], columns: list[str], base: str) -> dict:
    """Tags for turns under `columns`: from/value (ShareGPT) or role/content, with the role names the rows use."""
    seen: set = set()
    keyed = "role"
    for row in rows:
        for c in columns:
            value = row.get(c)
            for turn in (value if isinstance(value, list) else [value] if isinstance(value, dict) else []):
                if isinstance(turn, dict):
                    keyed = "from" if "from" in turn else keyed
                    tag = turn.get("from", turn.get("role"))
                    if isinstance(tag, str):  # a malformed turn is validation's to name, not detection's
                        seen.add(tag)
    tags = dict(DEFAULTS["sharegpt"]["tags"] if keyed == "from" else DEFAULTS[base]["tags"])
    if keyed == "from" and not seen & {"human", "gpt"} and seen & {"user", "assistant"}:
        tags.update(user_tag="user", assistant_tag="assistant")
    if "observation" not in seen and "tool" in seen and keyed == "from":
        tags["observation_tag"] = "tool"
    return tags


def detect_mapping(rows: list, fmt: str | None = None) -> Mapping:
    """The mapping that reads these (first) rows; `fmt` forces the format and only fills in its columns and tags.
    Rows that match no format give the native mapping (validation then names what is missing)."""
    rows = [r for r in rows if isinstance(r, dict)]
    keys = set().union(*rows) if rows else set()
    if fmt is None:
        fmt = _guess_format(rows, keys)
    cols: dict = {}
    tags: dict = {}
    if fmt == "preference":
        cols["prompt"] = next((c for c in ("prompt", "question", "instruction") if c in keys), "prompt")
        cols.update({c: c for c in ("system",) if c in keys})
        tags = _turn_tags(rows, ["chosen", "rejected", cols["prompt"]], "preference")
    elif fmt in ("sharegpt", "openai"):
        cols["messages"] = next((c for c in ("conversations", "messages") if c in keys),
                                DEFAULTS[fmt]["columns"]["messages"])
        cols.update({c: c for c in ("system", "tools") if c in keys})
        tags = _turn_tags(rows, [cols["messages"]], fmt) if fmt == "sharegpt" else {}
    elif fmt == "alpaca":
        cols.update({role: c for role, c in DEFAULTS["alpaca"]["columns"].items() if c in keys})
    if fmt not in ("minimind", "alpaca") and "answer" in keys:
        cols["answer"] = "answer"
    return Mapping.from_dict({"format": fmt, "columns": cols, "tags": tags}, origin="detected")


def _guess_format(rows: list[dict], keys: set) -> str:
    if "chosen" in keys and "rejected" in keys:
        native = all(isinstance(r.get(s), list) and _first_turn(r.get(s)) is not None
                     and "role" in _first_turn(r[s]) for r in rows for s in ("chosen", "rejected"))
        return "minimind" if native and not keys & {"prompt", "question"} else "preference"
    for column in ("conversations", "messages"):
        if column in keys:
            turn = next((t for r in rows if (t := _first_turn(r.get(column))) is not None), {})
            if "from" in turn:
                return "sharegpt"
            if column == "conversations" and not keys & {"tools", "system"}:
                return "minimind"
            return "openai"
    if "instruction" in keys and ("output" in keys or "input" in keys):
        return "alpaca"
    return "minimind"


# ---- per file: sidecar, config, detection ------------------------------------------------------------------------

def sidecar_path(path) -> Path:
    """`<file>.mapping.json` beside the file (or beside a save_to_disk folder)."""
    p = Path(path)
    return p.parent / (p.name + SIDECAR_SUFFIX)


def save_mapping(path, mapping: Mapping) -> Path:
    out = sidecar_path(path)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps({"version": 1, **mapping.to_dict()}, indent=2, ensure_ascii=False) + "\n",
                   encoding="utf-8")
    tmp.replace(out)
    return out


def read_sidecar(path) -> Mapping | None:
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        return Mapping.from_dict(json.loads(side.read_text(encoding="utf-8")), origin="sidecar")
    except (ValueError, OSError) as exc:  # MappingError and JSONDecodeError are ValueErrors
        raise DataError(side, 0, "(mapping)", f"{exc}; fix or delete the file") from None


def probe_rows(path, n: int = PROBE_ROWS) -> list:
    """The first `n` parseable rows of a file (JSONL lines that are valid JSON, or table rows)."""
    path = check_source(path)
    if is_table(path):
        source = TableSource(path)
        return [row for row, _ in islice(source.iter_rows(0), n)]
    rows = []
    with open(path, "rb") as f:
        for raw in f:
            if len(rows) >= n:
                break
            try:
                rows.append(json.loads(raw.decode("utf-8-sig")))
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
    return rows


_CONFIGURED: contextvars.ContextVar[dict] = contextvars.ContextVar("mappings", default={})
_DETECTED: dict = {}


@contextlib.contextmanager
def using_mappings(mappings: dict):
    """Read the files named in `mappings` ({path: mapping dict}, a run config's `data.mappings`) with those."""
    resolved = {str(Path(p).resolve()): Mapping.from_dict(m, origin="config") for p, m in (mappings or {}).items()}
    token = _CONFIGURED.set({**_CONFIGURED.get(), **resolved})
    try:
        yield
    finally:
        _CONFIGURED.reset(token)


def resolve_mapping(path) -> Mapping:
    """The mapping a file is read with: a run's recorded one, else its sidecar, else the detected one."""
    path = check_source(path)
    configured = _CONFIGURED.get().get(str(path.resolve()))
    if configured is not None:
        return configured
    side = read_sidecar(path)
    if side is not None:
        return side
    key = json.dumps(source_stamp(path))
    if key not in _DETECTED:
        _DETECTED.clear() if len(_DETECTED) > 256 else None
        _DETECTED[key] = detect_mapping(probe_rows(path))
    return _DETECTED[key]


def resolve_mappings(files) -> dict:
    """{file: mapping dict} of the files that are not read as native MiniMind records (what a run records)."""
    out = {}
    for f in files:
        try:
            m = resolve_mapping(f)
        except DataError:
            continue  # a missing or unreadable file fails later, with its own error, where it is read
        if not m.native:
            out[str(f)] = m.to_dict()
    return out


def with_data_mappings(cfg):
    """A training config whose `data.mappings` names the mapping of every data file that is not read as native
    MiniMind records (those it already names are kept): what a run writes into its config.json."""
    data = cfg.data
    found = resolve_mappings([*data.files, *data.eval_files])
    merged = {**found, **data.mappings}
    if merged == data.mappings:
        return cfg
    return cfg.model_copy(update={"data": data.model_copy(update={"mappings": merged})})


def convert_row(mapping: Mapping, row, file, number: int) -> tuple[dict, Origins]:
    """`Mapping.apply` with errors as DataError(file, number, field)."""
    def fail(name, message):
        raise DataError(file, number, name, message)

    return mapping.apply(row, fail)
