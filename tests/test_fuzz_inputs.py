"""Bad input never crashes deeper code: dataset lines, config files and chat templates under hypothesis.

Each property states the one allowed failure (DataError with file:line, TrainConfigError naming a field, a
jinja2 TemplateError) and fails on anything else, so a fuzz failure is a bug to fix where it is raised.
"""
from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import jinja2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config import ModelConfig
from core.config.errors import TrainConfigError
from core.config.load import load_train_config, validate_train_config
from core.config.train import TrainConfig
from core.data.records import KINDS, DataError, read_records

FAST = settings(max_examples=80, deadline=2000, suppress_health_check=[HealthCheck.too_slow], database=None)

scalars = (st.none() | st.booleans() | st.integers() | st.integers(-3, 70000)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
json_values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4)
                           | st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=12)


def _near(keys, values=json_values):
    """Dicts that use real field names (so validation goes deep) with arbitrary values."""
    return st.fixed_dictionaries({}, optional={k: values for k in keys})


# ---- dataset lines ------------------------------------------------------------------------------------------
record_fields = ["text", "conversations", "chosen", "rejected", "answer", "role", "content", "prompt"]
message = _near(["role", "content", "reasoning_content", "tool_calls"],
                st.sampled_from(["user", "assistant", "system", "tool", ""]) | json_values)
record = st.fixed_dictionaries({}, optional={
    "text": json_values, "conversations": st.lists(message, max_size=3) | json_values,
    "chosen": st.lists(message, max_size=3) | json_values, "rejected": st.lists(message, max_size=3) | json_values,
    "answer": json_values})
line = (st.binary(max_size=60).map(lambda b: b.replace(b"\n", b" "))
        | json_values.map(lambda v: json.dumps(v).encode())
        | record.map(lambda r: json.dumps(r, ensure_ascii=False).encode("utf-8", "surrogatepass")))


@FAST
@given(lines=st.lists(line, min_size=1, max_size=6), kind=st.sampled_from([None, *KINDS]))
def test_dataset_lines_give_records_or_a_data_error_naming_file_and_line(lines, kind):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("data.txt" if kind == "text" else "data.jsonl")
        path.write_bytes(b"\n".join(lines) + b"\n")
        try:
            records = list(read_records(path, kind))
        except DataError as exc:
            assert re.match(rf"{re.escape(str(path))}:\d+: \S", str(exc)), str(exc)
            assert 1 <= exc.line <= len(lines) + 1, (exc.line, len(lines))
            return
        assert all(isinstance(r, dict) for r in records)


def _decodes(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _rejected_alone(raw: bytes, lineno: int, kind: str) -> bool:
    """Whether raise mode rejects the line on its own, at the same line number (blank lines before it)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "one.jsonl"
        path.write_bytes(b"\n" * (lineno - 1) + raw + b"\n")
        try:
            list(read_records(path, kind))
        except DataError as exc:
            assert exc.line == lineno, (exc.line, lineno)
            return True
        return False


def _expected_text(lines: list[bytes]) -> tuple[list[int], list[str]]:
    """(bad line numbers, kept lines) of a .txt file: only undecodable lines are bad; blank lines separate."""
    bad = [n for n, raw in enumerate(lines, 1) if not _decodes(raw)]
    kept = [raw.decode().rstrip("\r\n") for raw in lines if _decodes(raw) and raw.decode().strip()]
    return bad, kept


def _expected_jsonl(lines: list[bytes], kind: str) -> tuple[list[int], list[int]]:
    """(bad line numbers, kept line numbers): each non-blank line is one record, judged alone in raise mode."""
    records = [n for n, raw in enumerate(lines, 1) if (raw.removeprefix(b"\xef\xbb\xbf") if n == 1 else raw).strip()]
    bad = [n for n in records if _rejected_alone(lines[n - 1], n, kind)]
    return bad, [n for n in records if n not in bad]


@FAST
@given(lines=st.lists(line, min_size=1, max_size=6), kind=st.sampled_from(KINDS))
def test_skip_mode_never_raises_and_accounts_for_every_bad_line(lines, kind):
    """Skip mode keeps every good record and reports every bad line with its number: none vanishes silently."""
    from core.data.records import DataReport, iter_records

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("data.txt" if kind == "text" else "data.jsonl")
        path.write_bytes(b"\n".join(lines) + b"\n")
        report = DataReport()
        kept = list(iter_records(path, kind, on_error="skip", report=report))
    errors = [e.line for e in report.errors]  # six lines at most: fewer than max_errors, so all are listed
    assert report.records == len(kept) and report.skipped == len(errors)
    assert all(str(e).startswith(f"{path}:{e.line}: ") for e in report.errors)
    if kind == "text":  # records are paragraphs: compare the lines they hold
        bad, good = _expected_text(lines)
        assert errors == bad and [ln for rec, *_ in kept for ln in rec["text"].split("\n")] == good
    else:
        bad, good = _expected_jsonl(lines, kind)
        assert errors == bad and [n for _, n, _ in kept] == good
        assert report.records + report.skipped == len(good) + len(bad)  # every non-blank line accounted for


# ---- config files -------------------------------------------------------------------------------------------
model_cfg = _near(list(ModelConfig.model_fields), st.integers(-2, 300) | json_values)
train_cfg = st.fixed_dictionaries({}, optional={
    **{k: json_values for k in TrainConfig.model_fields},
    "model": model_cfg | st.sampled_from(["tiny", "small", "nope"]) | json_values,
    "data": _near(["files", "kind", "seq_len", "max_len", "tokenizer", "on_error", "eval_batches"]),
    "optim": _near(["lr", "betas", "eps", "schedule", "warmup_steps", "accumulation", "grad_clip"]),
    "lora": _near(["rank", "alpha", "dropout", "target_modules"])})


@FAST
@given(data=train_cfg | json_values)
def test_any_json_config_is_valid_or_an_error_naming_the_field(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cfg.json"
        path.write_text(json.dumps(data))
        try:
            cfg = load_train_config(path)
        except TrainConfigError as exc:
            text = str(exc)
            # one "file: field: message" line per problem (split on \n only: field names may hold \x1e etc.)
            assert text and all(ln.startswith(f"{path}: ") for ln in text.split("\n")), text
            return
        assert isinstance(cfg, TrainConfig)


@FAST
@given(data=model_cfg)
def test_any_model_config_is_valid_or_a_validation_error(data):
    from pydantic import ValidationError

    try:
        cfg = ModelConfig.model_validate(data)
    except ValidationError as exc:
        assert all(err["loc"] or err["msg"] for err in exc.errors())
        return
    assert cfg.resolved_head_dim % 2 == 0 and cfg.resolved_intermediate_size >= 8


def test_a_config_that_is_not_an_object_names_the_top_level():
    with pytest.raises(TrainConfigError, match="top level"):
        validate_train_config([1, 2])  # type: ignore[arg-type]


# ---- chat templates -------------------------------------------------------------------------------------------
PIECES = ["{{", "}}", "{%", "%}", "{#", "#}", " ", "for m in messages", "endfor", "if", "else", "endif", "m.role",
          "m.content", "messages[0]", "'x'", "1", "2", "9", "+", "*", "/", "0", "|", "tojson", "upper", "range(",
          ")", "(", "[", "]", ".", "__class__", "__subclasses__()", "__globals__", "mro()", "raise_exception('bad')",
          "loop.index", "set y =", "y", "add_generation_prompt", "tools", "namespace(", "cycler", "lipsum",
          "self", "config", "'%s' % m", "format", "'{0.__class__}'.format(m)", "join", "attr('__dict__')"]
template = st.lists(st.sampled_from(PIECES), max_size=24).map("".join) | st.text(max_size=40)


@FAST
@given(source=template)
def test_any_chat_template_renders_or_raises_a_template_error(source):
    from core.tokenizer.chat_template import render

    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    try:
        out = render(source, messages, add_generation_prompt=True)
    except jinja2.TemplateError as exc:  # syntax, sandbox SecurityError, undefined, template runtime errors
        assert str(exc) or type(exc).__name__
        return
    assert isinstance(out, str)


@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ messages.__class__.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{% for x in range(10**9) %}{% endfor %}",
])
def test_template_escapes_are_refused_by_the_sandbox(source):
    from core.tokenizer.chat_template import render

    with pytest.raises(jinja2.TemplateError):
        render(source, [{"role": "user", "content": "hi"}])
