"""Datasets in the formats people already have: ShareGPT, Alpaca, OpenAI messages, preference pairs; JSONL,
JSON arrays, Parquet written by `datasets`, and `save_to_disk` folders. Each file is made by the test."""
from __future__ import annotations

import json

import pytest

from core.data import DataError, DataReport, detect_kind, read_records
from core.data.formats import Mapping, resolve_mapping, save_mapping, sidecar_path
from core.data.sources import TableSource

datasets = pytest.importorskip("datasets")

TOOLS = json.dumps([{"name": "get_time", "description": "the time now",
                     "parameters": {"type": "object", "properties": {}}}])


def sharegpt_rows(n: int = 6) -> list[dict]:
    rows = [{"conversations": [{"from": "human", "value": f"What is {i} + 1?"}, {"from": "gpt", "value": f"{i + 1}."}],
             "system": "Be brief.", "tools": ""} for i in range(n)]
    rows.append({"conversations": [{"from": "human", "value": "Time?"},
                                   {"from": "function_call", "value": json.dumps({"name": "get_time", "arguments": {}})},
                                   {"from": "observation", "value": "12:00"}, {"from": "gpt", "value": "It is 12:00."}],
                 "system": "", "tools": TOOLS})
    return rows


ALPACA = [{"instruction": "Add 2 and 3", "input": "", "output": "5", "history": []},
          {"instruction": "Translate", "input": "chat", "output": "cat", "history": [["hi", "hello"]]}]
OPENAI = [{"messages": [{"role": "user", "content": "Time?"},
                        {"role": "assistant", "content": None, "tool_calls": [
                            {"id": "c1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
                        {"role": "tool", "content": "12:00"}, {"role": "assistant", "content": "It is 12:00."}],
           "tools": [{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]}]
PREFERENCE_STRINGS = [{"question": "2+2?", "chosen": "4", "rejected": "5"}]
PREFERENCE_LISTS = [{"prompt": [{"role": "user", "content": "2+2?"}], "chosen": [{"role": "assistant", "content": "4"}],
                     "rejected": [{"role": "assistant", "content": "5"}]}]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("rows, fmt, kind, first", [
    (sharegpt_rows(), "sharegpt", "sft", [("system", "Be brief."), ("user", "What is 0 + 1?"), ("assistant", "1.")]),
    (ALPACA, "alpaca", "sft", [("user", "Add 2 and 3"), ("assistant", "5")]),
    (OPENAI, "openai", "sft", [("system", ""), ("user", "Time?"), ("assistant", None), ("tool", "12:00"),
                               ("assistant", "It is 12:00.")]),
    (PREFERENCE_STRINGS, "preference", "dpo", [("user", "2+2?"), ("assistant", "4")]),
    (PREFERENCE_LISTS, "preference", "dpo", [("user", "2+2?"), ("assistant", "4")]),
])
def test_each_format_is_detected_and_read_as_minimind_records(tmp_path, rows, fmt, kind, first):
    for path in (write_jsonl(tmp_path / "d.jsonl", rows), tmp_path / "d.json"):
        if path.suffix == ".json":
            path.write_text(json.dumps(rows), encoding="utf-8")  # LLaMA-Factory's JSON-array files
        assert resolve_mapping(path).format == fmt
        assert detect_kind(path) == kind
        recs = list(read_records(path, kind))
        assert len(recs) == len(rows)
        msgs = recs[0]["chosen" if kind == "dpo" else "conversations"]
        assert [(m["role"], m["content"]) for m in msgs] == first


def test_sharegpt_tool_turns_become_tool_calls_declared_on_the_system_message(tmp_path):
    rec = list(read_records(write_jsonl(tmp_path / "s.jsonl", sharegpt_rows(1)), "sft"))[-1]["conversations"]
    assert rec[0]["role"] == "system" and json.loads(TOOLS) == rec[0]["tools"]
    assert rec[2] == {"role": "assistant", "content": "", "tool_calls": [{"name": "get_time", "arguments": {}}]}
    assert rec[3] == {"role": "tool", "content": "12:00"}


def test_alpaca_input_and_history_become_turns(tmp_path):
    rec = list(read_records(write_jsonl(tmp_path / "a.jsonl", ALPACA), "sft"))[1]["conversations"]
    assert [(m["role"], m["content"]) for m in rec] == [("user", "hi"), ("assistant", "hello"),
                                                        ("user", "Translate\nchat"), ("assistant", "cat")]


def test_parquet_written_by_datasets_reads_in_row_groups_and_names_row_and_field(tmp_path):
    rows = sharegpt_rows(40)
    rows[25]["conversations"][1]["from"] = "bot"
    path = tmp_path / "sg.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(path), batch_size=10)  # row groups of 10 rows
    source = TableSource(path)
    assert source.num_rows == 41 and len(source._starts) > 4
    assert [r["conversations"][1]["value"] for r in source.read_rows(18, 4)] == ["19.", "20.", "21.", "22."]
    report = DataReport()
    recs = list(read_records(path, "sft", on_error="skip", report=report))
    assert len(recs) == 40 and report.skipped == 1
    err = report.errors[0]
    assert (err.file, err.line, err.field) == (str(path), 26, "conversations[1].from")
    assert "unknown role 'bot'" in err.message


def test_a_save_to_disk_folder_reads_like_its_rows_and_starts_again_at_any_row(tmp_path):
    from core.data.records import iter_records_at

    folder = tmp_path / "sg_arrow"
    datasets.Dataset.from_list(sharegpt_rows(30)).save_to_disk(str(folder))
    assert detect_kind(folder) == "sft"
    every = list(iter_records_at(folder, "sft"))
    assert len(every) == 31 and every[-1][1] == 31  # rows numbered from 1
    rest = list(iter_records_at(folder, "sft", start=every[9][2:]))  # resume after row 10, as the cache does
    assert [r[1] for r in rest] == list(range(11, 32)) and rest[0][0] == every[10][0]


def test_a_sidecar_mapping_wins_over_detection_and_errors_name_its_fields(tmp_path):
    rows = [{"dialog": [{"speaker": "asker", "text": "Hi?"}, {"speaker": "answerer", "text": "Hello."}]}]
    path = write_jsonl(tmp_path / "custom.jsonl", rows + [{"dialog": [{"speaker": "asker", "text": 3}]}])
    with pytest.raises(DataError, match="cannot tell the kind"):
        detect_kind(path)
    save_mapping(path, Mapping.from_dict({"format": "sharegpt", "columns": {"messages": "dialog"}, "tags": {
        "role_tag": "speaker", "content_tag": "text", "user_tag": "asker", "assistant_tag": "answerer"}}))
    assert sidecar_path(path).name == "custom.jsonl.mapping.json"
    assert detect_kind(path) == "sft"
    report = DataReport()
    recs = list(read_records(path, "sft", on_error="skip", report=report))
    assert recs == [{"conversations": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]}]
    assert [(e.line, e.field) for e in report.errors] == [(2, "dialog[0].text")]


def test_a_broken_sidecar_is_named_with_what_to_do(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", ALPACA)
    sidecar_path(path).write_text(json.dumps({"format": "alpaca", "columns": {"messages": "m"}}))
    with pytest.raises(DataError, match=r"x.jsonl.mapping.json:0: \(mapping\): columns.messages: not a column"):
        detect_kind(path)


def test_cli_convert_writes_minimind_jsonl_that_checks_clean(tmp_path, capsys):
    from core.cli import main

    src = tmp_path / "sg.parquet"
    rows = sharegpt_rows(5)
    rows[2]["conversations"] = [{"from": "human", "value": "no answer"}]
    datasets.Dataset.from_list(rows).to_parquet(str(src))
    out = tmp_path / "out.jsonl"
    assert main(["data", "convert", str(src), str(out), "--format", "sharegpt"]) == 1  # one bad row
    printed = capsys.readouterr()
    assert f"{src}:3: conversations: has no assistant turn" in printed.out
    assert len(out.read_text().splitlines()) == 5
    assert main(["data", "check", str(out)]) == 0
    assert "format minimind" in capsys.readouterr().err
    first = json.loads(out.read_text().splitlines()[0])
    assert first == {"conversations": [{"role": "system", "content": "Be brief."},
                                       {"role": "user", "content": "What is 0 + 1?"},
                                       {"role": "assistant", "content": "1."}]}


@pytest.mark.slow
def test_an_sft_run_from_a_sharegpt_parquet_learns_exactly_the_mapped_assistant_turns(tmp_path, tiny_tokenizer_dir,
                                                                                       tiny_tokenizer):
    """The mapping reaches training: the run records it, and the token cache the run trained on labels exactly the
    turns the mapping calls the assistant's (here tagged `answerer`, a name no detection knows)."""
    from core.data import SFTDataset
    from core.train import run_training
    from tests.fixtures.train import read_events, train_config

    rows = [{"dialog": [{"speaker": "asker", "text": f"What comes after {i}?"},
                        {"speaker": "answerer", "text": f"{i + 1} comes after {i}."}]} for i in range(24)]
    data = tmp_path / "data" / "sg.parquet"
    data.parent.mkdir()
    datasets.Dataset.from_list(rows).to_parquet(str(data))
    mapping = {"format": "sharegpt", "columns": {"messages": "dialog"},
               "tags": {"role_tag": "speaker", "content_tag": "text", "user_tag": "asker", "assistant_tag": "answerer"}}
    save_mapping(data, Mapping.from_dict(mapping))
    run_dir = tmp_path / "run"
    cfg = train_config(run_dir, tiny_tokenizer_dir, [data], method="sft", max_steps=2, batch_size=4)
    assert run_training(cfg) == 0
    recorded = json.loads((run_dir / "config.json").read_text())["data"]["mappings"]
    assert recorded == {str(data): Mapping.from_dict(mapping).to_dict()}
    started = next(e for e in read_events(run_dir) if e["type"] == "run_started")
    assert started["config"]["data"]["mappings"] == recorded

    ds = SFTDataset([data], tiny_tokenizer, 128, cfg.data.cache_dir)
    assert ds.cache.reused  # the very entry the run built and trained on
    for i in range(len(ds)):
        item = ds[i]
        learned = item["labels"][item["labels"] != -100].tolist()
        k = int(tiny_tokenizer.decode(item["input_ids"].tolist()).split("What comes after ")[1].split("?")[0])
        assert tiny_tokenizer.decode(learned) == f"{k + 1} comes after {k}.<|im_end|>\n"


def test_a_role_that_is_not_a_string_is_a_data_error_naming_the_field(tmp_path):
    """Found by tests/test_fuzz_inputs.py: a list where a role name belongs raised TypeError in detection."""
    good = {"chosen": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}],
            "rejected": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "No."}]}
    path = write_jsonl(tmp_path / "pairs.jsonl", [good, {**good, "chosen": [{"role": [], "content": "x"}]}])
    report = DataReport()
    recs = list(read_records(path, "dpo", on_error="skip", report=report))
    assert len(recs) == 1 and [(e.line, e.field) for e in report.errors] == [(2, "chosen[0].role")]
