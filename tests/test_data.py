"""The data pipeline: validated readers, token cache, packing, SFT/DPO masks, prompts, batching, demo data."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from core.data import (DataError, DataReport, DPODataset, LengthGroupedBatchSampler, PretrainDataset, PromptDataset,
                       SFTDataset, collate_dpo, collate_pad, detect_kind, generate_demo_data, read_records)
from core.data import cache_build
from core.data.cache import list_caches, token_dtype
from core.preparation import Preparation, PreparationStopped

REPO = Path(__file__).resolve().parents[1]


def head(src: Path, dst: Path, n: int) -> Path:
    with open(src, "rb") as f, open(dst, "wb") as out:
        for i, line in enumerate(f):
            if i >= n:
                break
            out.write(line)
    return dst


def write_lines(path: Path, lines: list) -> Path:
    """Lines given as str are JSON-encoded objects' text; bytes are written as they are."""
    with open(path, "wb") as f:
        for line in lines:
            f.write((line if isinstance(line, bytes) else line.encode()) + b"\n")
    return path


def msg(role, content):
    return {"role": role, "content": content}


@pytest.fixture(scope="module")
def slices(shared_data, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("slices")
    sizes = {"pretrain": 400, "sft": 300, "dpo": 100, "rl": 50}
    return {k: head(shared_data / f"{k}.jsonl", out / f"{k}.jsonl", n) for k, n in sizes.items()}


# --- readers and errors ---------------------------------------------------------------------------------------

BAD_PRETRAIN = [
    '{"text": "a good document"}',
    '{"text": "",}',
    '{"text": ""}',
    '{"content": "wrong field"}',
    b'{"text": "caf\xe9 latin-1"}',
    '{"text": 42}',
    '',
    '{"text": "another good one"}',
]
JSON_ERROR = "invalid JSON: Expecting property name enclosed in double quotes at column 13"


def test_first_bad_record_raises_with_file_line_field(tmp_path):
    path = write_lines(tmp_path / "bad.jsonl", BAD_PRETRAIN)
    records = read_records(path, "pretrain")
    assert next(records) == {"text": "a good document"}
    with pytest.raises(DataError) as info:
        next(records)
    err = info.value
    assert (err.line, err.field) == (2, "(json)")
    assert str(err).startswith(f"{path}:2: (json): invalid JSON")


def test_skip_mode_reports_every_bad_record_and_drops_none_silently(tmp_path):
    path = write_lines(tmp_path / "bad.jsonl", BAD_PRETRAIN)
    report = DataReport()
    good = list(read_records(path, "pretrain", on_error="skip", report=report))
    assert [r["text"] for r in good] == ["a good document", "another good one"]
    assert [(e.line, e.field) for e in report.errors] == [
        (2, "(json)"), (3, "text"), (4, "text"), (5, "(encoding)"), (6, "text")]
    assert str(report.errors[1]) == f"{path}:3: text: is empty"
    assert "not valid UTF-8 (byte 0xe9" in str(report.errors[3])
    assert "must be a string, got int" in str(report.errors[4])
    non_blank = sum(1 for line in BAD_PRETRAIN if line)
    assert report.records + report.skipped == non_blank  # every line is either kept or counted
    assert report.summary() == "2 records read, 5 skipped"


def test_report_keeps_the_first_errors_but_counts_all(tmp_path):
    path = write_lines(tmp_path / "bad.jsonl", ['{"text": ""}'] * 30)
    report = DataReport(max_errors=5)
    assert list(read_records(path, "pretrain", on_error="skip", report=report)) == []
    assert (report.skipped, len(report.errors), report.errors[-1].line) == (30, 5, 5)


@pytest.mark.parametrize("kind, record, field, words", [
    ("sft", {"conversations": [msg("user", "hi"), msg("bot", "hello")]}, "conversations[1].role", "unknown role 'bot'"),
    ("sft", {"conversations": [msg("user", "hi")]}, "conversations", "no assistant turn"),
    ("sft", {"conversations": [msg("user", "hi"), {"role": "assistant"}]}, "conversations[1].content", "missing"),
    ("sft", {"conversations": [msg("user", "a"), msg("system", "b"), msg("assistant", "c")]},
     "conversations[1].role", "only come first"),
    ("sft", {"conversations": "hi"}, "conversations", "must be a list"),
    ("dpo", {"chosen": [msg("user", "q"), msg("assistant", "a")], "rejected": [msg("user", "q")]},
     "rejected[0].role", "must be the assistant's answer"),
    ("dpo", {"chosen": [msg("user", "q"), msg("assistant", "a")]}, "rejected", "missing"),
    ("rl", {"conversations": [msg("user", "q"), msg("assistant", "a"), msg("assistant", "b")]},
     "conversations[2].role", "must end with a user turn"),
    ("rl", {"conversations": [msg("user", "q")], "answer": 7}, "answer", "must be a string"),
    ("pretrain", ["text"], "(record)", "must be a JSON object"),
])
def test_invalid_records_name_the_field(tmp_path, kind, record, field, words):
    good = {"pretrain": {"text": "x"}, "sft": {"conversations": [msg("user", "q"), msg("assistant", "a")]},
            "dpo": {"chosen": [msg("user", "q"), msg("assistant", "a")],
                    "rejected": [msg("user", "q"), msg("assistant", "b")]},
            "rl": {"conversations": [msg("user", "q"), msg("assistant", "placeholder")]}}[kind]
    path = write_lines(tmp_path / "f.jsonl", [json.dumps(good), json.dumps(record)])
    with pytest.raises(DataError) as info:
        list(read_records(path, kind))
    assert (info.value.line, info.value.field) == (2, field)
    assert words in info.value.message


def test_real_files_validate_and_their_kind_is_detected(slices, shared_data):
    for kind, path in slices.items():
        assert detect_kind(path) == kind
        report = DataReport()
        assert sum(1 for _ in read_records(path, kind, report=report)) == report.records > 0
    assert detect_kind(shared_data / "text" / "tang-poems.txt") == "text"


def test_plain_text_paragraphs_become_documents(shared_data):
    path = shared_data / "text" / "tang-poems.txt"
    docs = [r["text"] for r in read_records(path, "text")]
    blocks = [b.strip() for b in path.read_text(encoding="utf-8").split("\n\n") if b.strip()]
    assert len(docs) == len(blocks) > 10
    assert docs[0] == blocks[0]


# --- token cache and packing ----------------------------------------------------------------------------------

def test_packing_keeps_every_document_between_bos_and_eos_without_padding(slices, tiny_tokenizer, tmp_path):
    tok = tiny_tokenizer
    ds = PretrainDataset(slices["pretrain"], tok, seq_len=64, cache_dir=tmp_path)
    texts = [r["text"] for r in read_records(slices["pretrain"], "pretrain")]
    expected = [t for text in texts for t in [tok.bos_id] + tok.encode(text) + [tok.eos_id]]
    assert ds.num_tokens == len(expected)
    assert len(ds) == len(expected) // 64
    stream = torch.cat([ds[i]["input_ids"] for i in range(len(ds))]).tolist()
    assert stream == expected[: len(ds) * 64]  # windows tile the stream: nothing lost, nothing padded
    assert tok.pad_id not in stream
    item = ds[3]
    assert item["input_ids"].dtype == torch.long and item["input_ids"].shape == (64,)
    assert torch.equal(item["labels"], item["input_ids"])
    starts, ends = ds.doc_offsets[:-1], ds.doc_offsets[1:] - 1
    assert (ds.tokens[starts] == tok.bos_id).all() and (ds.tokens[ends] == tok.eos_id).all()
    assert int((np.asarray(ds.tokens) == tok.bos_id).sum()) == len(texts)


def _recorder(calls: list) -> Preparation:
    return Preparation(report=lambda p: calls.append((p.bytes_done, p.bytes_total, p.state)), interval=0)


def test_cache_is_reused_and_rebuilt_when_the_file_changes(slices, tiny_tokenizer, tmp_path):
    src = head(slices["sft"], tmp_path / "sft.jsonl", 100)
    calls = []
    first = SFTDataset(src, tiny_tokenizer, 128, tmp_path / "cache", preparation=_recorder(calls))
    assert not first.cache.reused and calls[-1] == (src.stat().st_size, src.stat().st_size, "done")
    bin_file = first.cache.path / "ids.bin"
    mtime = bin_file.stat().st_mtime_ns
    calls.clear()
    again = SFTDataset(src, tiny_tokenizer, 128, tmp_path / "cache", preparation=_recorder(calls))
    assert again.cache.reused and calls == [] and bin_file.stat().st_mtime_ns == mtime
    assert again.cache.path == first.cache.path and np.array_equal(again.lengths, first.lengths)
    other_len = SFTDataset(src, tiny_tokenizer, 64, tmp_path / "cache")  # a token-changing option
    assert not other_len.cache.reused and other_len.cache.path != first.cache.path
    head(slices["sft"], src, 50)  # the file changed: size and mtime differ
    changed = SFTDataset(src, tiny_tokenizer, 128, tmp_path / "cache")
    assert not changed.cache.reused and len(changed) == 50


def test_a_stopped_build_leaves_no_finished_entry_and_the_next_one_completes_it(slices, tiny_tokenizer, tmp_path,
                                                                                monkeypatch):
    monkeypatch.setattr(cache_build, "BATCH_RECORDS", 50)  # 400 records: 8 batches
    calls = []
    stop = Preparation(report=lambda p: calls.append(p.state), should_stop=lambda: len(calls) >= 2, interval=0)
    with pytest.raises(PreparationStopped):
        PretrainDataset(slices["pretrain"], tiny_tokenizer, 32, tmp_path, preparation=stop)
    assert calls[-1] == "stopped"
    assert [e.complete for e in list_caches(tmp_path)] == [False]  # the partial build, kept for next time
    ds = PretrainDataset(slices["pretrain"], tiny_tokenizer, 32, tmp_path)
    assert not ds.cache.reused and ds.cache.meta["resumed_bytes"] > 0
    assert [e.complete for e in list_caches(tmp_path)] == [True]
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == [ds.cache.path.name]


def test_two_builders_of_the_same_entry_build_it_once(slices, tiny_tokenizer, tmp_path):
    # Two ranks (here: threads) ask for one entry at once: one tokenizes, the other waits on the entry's lock
    # and then opens what the first built.
    import threading

    src, encoded, waiting, results = slices["sft"], [], threading.Event(), {}
    started = threading.Event()

    def slow_report(progress):
        started.set()
        waiting.wait(timeout=60)  # hold the build until the rival is waiting for it

    def rival_report(progress):
        if progress.state == "waiting":
            waiting.set()

    def build(name, prep):
        results[name] = SFTDataset(src, tiny_tokenizer, 128, tmp_path, preparation=prep)

    first = threading.Thread(target=build, args=("first", Preparation(report=slow_report, interval=0)))
    first.start()
    assert started.wait(timeout=60)
    build("second", Preparation(report=rival_report, interval=0))
    first.join(timeout=120)
    assert waiting.is_set() and not results["first"].cache.reused and results["second"].cache.reused
    assert results["first"].cache.path == results["second"].cache.path and len(results["second"]) == 300
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == [results["first"].cache.path.name]


def test_text_files_are_packed_like_pretrain_documents(shared_data, tiny_tokenizer, tmp_path):
    blocks = (shared_data / "text" / "tang-poems.txt").read_text(encoding="utf-8").split("\n\n")[:5]
    txt = tmp_path / "poems.txt"
    txt.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    jsonl = write_lines(tmp_path / "p.jsonl", [json.dumps({"text": "Snow is white."})])
    ds = PretrainDataset([jsonl, txt], tiny_tokenizer, 16, tmp_path / "cache")
    assert ds.num_documents == 1 + len([b for b in blocks if b.strip()])
    first_poem = ds.tokens[ds.doc_offsets[1] + 1:ds.doc_offsets[2] - 1]
    assert tiny_tokenizer.decode(first_poem.tolist()) == blocks[0].strip()


def test_datasets_pickle_their_cache_location_not_their_tokens(slices, tiny_tokenizer, tmp_path):
    ds = PretrainDataset(slices["pretrain"], tiny_tokenizer, 32, tmp_path)
    blob = pickle.dumps(ds)
    assert len(blob) < ds.num_tokens  # far less than the 2-byte tokens: DataLoader workers re-open the map
    copy = pickle.loads(blob)
    assert len(copy) == len(ds) and torch.equal(copy[7]["input_ids"], ds[7]["input_ids"])


def test_cache_uses_the_smallest_token_type():
    assert token_dtype(6400) == np.uint16 and token_dtype(65536) == np.uint16 and token_dtype(151_000) == np.uint32


def test_skipped_records_are_reported_by_the_cached_dataset(tmp_path, tiny_tokenizer):
    path = write_lines(tmp_path / "p.jsonl", BAD_PRETRAIN)
    with pytest.raises(DataError, match=r"p.jsonl:2: \(json\)"):
        PretrainDataset(path, tiny_tokenizer, 4, tmp_path / "cache")
    for _ in range(2):  # the second time from the cache: the report is kept with it
        ds = PretrainDataset(path, tiny_tokenizer, 4, tmp_path / "cache", on_error="skip")
        assert (ds.report.records, ds.report.skipped, ds.num_documents) == (2, 5, 2)
        assert str(ds.report.errors[0]) == f"{path}:2: (json): {JSON_ERROR}"


# --- SFT and DPO masks ----------------------------------------------------------------------------------------

CONVERSATION = [msg("system", "You answer briefly."), msg("user", "What is 3 + 4?"), msg("assistant", "3 + 4 = 7."),
                msg("user", "以及五加五？"), msg("assistant", "五加五等于十。")]


def test_sft_labels_cover_exactly_the_assistant_replies_token_by_token(tmp_path, tiny_tokenizer):
    tok = tiny_tokenizer
    path = write_lines(tmp_path / "sft.jsonl", [json.dumps({"conversations": CONVERSATION}, ensure_ascii=False)])
    item = SFTDataset(path, tok, 512, tmp_path / "cache")[0]
    # The rendering, cut where the loss starts and stops (ChatML as in docs/architecture.md).
    pieces = [("<|im_start|>system\nYou answer briefly.<|im_end|>\n<|im_start|>user\nWhat is 3 + 4?<|im_end|>\n"
               "<|im_start|>assistant\n", False), ("3 + 4 = 7.<|im_end|>\n", True),
              ("<|im_start|>user\n以及五加五？<|im_end|>\n<|im_start|>assistant\n", False),
              ("五加五等于十。<|im_end|>\n", True)]
    ids, labels = [], []
    for text, learned in pieces:
        piece = tok.encode(text)
        ids += piece
        labels += piece if learned else [-100] * len(piece)
    assert item["input_ids"].tolist() == ids
    assert item["labels"].tolist() == labels
    learned = [t for t in item["labels"].tolist() if t != -100]
    assert tok.decode(learned) == "3 + 4 = 7.<|im_end|>\n五加五等于十。<|im_end|>\n"


def test_sft_truncation_keeps_the_cut_reply_and_drops_conversations_with_nothing_to_learn(tmp_path, tiny_tokenizer):
    tok = tiny_tokenizer
    long_system = msg("system", "background " * 80)
    lines = [json.dumps({"conversations": CONVERSATION}, ensure_ascii=False),
             json.dumps({"conversations": [long_system, msg("user", "q"), msg("assistant", "a")]})]
    path = write_lines(tmp_path / "sft.jsonl", lines)
    full = tok.encode(tok.apply_chat_template(CONVERSATION))
    cut = len(full) - 3  # inside the last reply
    ds = SFTDataset(path, tok, cut, tmp_path / "cache")
    assert (len(ds), ds.num_no_target, ds.truncated_fraction) == (1, 1, 1.0)
    item = ds[0]
    assert item["input_ids"].tolist() == full[:cut]
    assert item["labels"][-1].item() == full[cut - 1]  # the reply runs to the end of the window
    assert list(ds.lengths) == [cut]
    only_long = write_lines(tmp_path / "long.jsonl", lines[1:])
    with pytest.raises(DataError, match="no usable sft record: 1 read, 0 bad, 1 with no assistant token"):
        SFTDataset(only_long, tok, cut, tmp_path / "cache")


def test_dpo_pairs_are_masked_and_stacked_chosen_first(slices, tiny_tokenizer, tmp_path):
    ds = DPODataset(slices["dpo"], tiny_tokenizer, 256, tmp_path)
    items = [ds[0], ds[1]]
    batch = collate_dpo(items, pad_id=tiny_tokenizer.pad_id)
    length = max(len(items[i][k]) for i in range(2) for k in ("chosen_ids", "rejected_ids"))
    assert batch["input_ids"].shape == batch["labels"].shape == (4, length)
    assert batch["input_ids"][1, : len(items[1]["chosen_ids"])].tolist() == items[1]["chosen_ids"].tolist()
    assert batch["input_ids"][2, : len(items[0]["rejected_ids"])].tolist() == items[0]["rejected_ids"].tolist()
    for item in items:
        for side in ("chosen", "rejected"):
            learned = [t for t in item[f"{side}_labels"].tolist() if t != -100]
            assert tiny_tokenizer.decode(learned).endswith("<|im_end|>\n") and len(learned) > 2


def test_prompts_end_with_the_generation_prompt_and_are_left_truncated(tmp_path, tiny_tokenizer, slices):
    tok = tiny_tokenizer
    minimind_style = {"conversations": [msg("user", "请解释一下什么是光合作用？"), msg("assistant", "无")]}
    path = write_lines(tmp_path / "rl.jsonl", [json.dumps(minimind_style, ensure_ascii=False),
                                               json.dumps({"conversations": [msg("user", "What is 3 + 4?")],
                                                           "answer": "7"})])
    ds = PromptDataset(path, tok, max_prompt_len=12)
    first, second = ds[0], ds[1]
    assert first["messages"] == minimind_style["conversations"][:1] and first["answer"] is None
    assert first["prompt"].endswith("请解释一下什么是光合作用？<|im_end|>\n<|im_start|>assistant\n")
    assert first["prompt_ids"] == tok.encode(first["prompt"])[-12:]
    assert second["answer"] == "7"
    real = PromptDataset(slices["rl"], tok, 128)
    assert len(real) == 50 and all(isinstance(p["answer"], str) for p in real)


# --- batching -------------------------------------------------------------------------------------------------

def test_collate_pads_ids_with_pad_and_labels_with_ignore():
    batch = collate_pad([{"input_ids": torch.tensor([5, 6, 7]), "labels": torch.tensor([-100, 6, 7])},
                         {"input_ids": [8], "labels": [8]}], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def padding(lengths, batches) -> int:
    return sum(len(b) * lengths[b].max() - lengths[b].sum() for b in map(np.asarray, batches))


def test_length_grouped_batches_pad_less_than_random_batches(slices, tiny_tokenizer, tmp_path):
    lengths = SFTDataset(slices["sft"], tiny_tokenizer, 512, tmp_path).lengths
    grouped = list(LengthGroupedBatchSampler(lengths, batch_size=8, seed=0, epoch=0, mega_batches=10))
    shuffled = np.random.default_rng(0).permutation(len(lengths))
    random_batches = [shuffled[i:i + 8] for i in range(0, len(lengths), 8)]
    assert padding(lengths, grouped) < 0.5 * padding(lengths, random_batches)
    assert sorted(i for b in grouped for i in b) == list(range(len(lengths)))  # each sample once per epoch
    assert lengths[grouped[0]].max() == lengths.max()  # the longest batch first: OOM shows at step 0


def test_two_ranks_see_exactly_the_one_rank_batches():
    lengths = np.random.default_rng(1).integers(5, 300, size=203)
    one = list(LengthGroupedBatchSampler(lengths, 8, seed=3, epoch=2))
    ranks = [list(LengthGroupedBatchSampler(lengths, 8, seed=3, epoch=2, rank=r, world_size=2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(one) == len(LengthGroupedBatchSampler(lengths, 8, 3, 2))
    assert sorted(len(b) for b in one)[0] == 203 % 8  # the one short batch is split too
    for whole, r0, r1 in zip(one, *ranks):
        assert r0 + r1 == whole  # each rank holds a contiguous half of the global batch
        assert len(r0) == len(r1) == 4 or (len(r0), len(r1)) == (2, 1)


def test_batch_order_is_deterministic_per_epoch_and_resumes_exactly():
    lengths = np.random.default_rng(2).integers(1, 100, size=500)
    a = list(LengthGroupedBatchSampler(lengths, 16, seed=7, epoch=1))
    assert a == list(LengthGroupedBatchSampler(lengths, 16, seed=7, epoch=1))
    assert a != list(LengthGroupedBatchSampler(lengths, 16, seed=7, epoch=2))
    resumed = LengthGroupedBatchSampler(lengths, 16, seed=7, epoch=1, skip_batches=5)
    assert list(resumed) == a[5:] and len(resumed) == len(a) - 5
    dropped = list(LengthGroupedBatchSampler(lengths, 16, seed=7, epoch=1, drop_last=True))
    assert all(len(b) == 16 for b in dropped) and len(dropped) == 500 // 16


# --- demo data and CLI ----------------------------------------------------------------------------------------

def test_demo_data_is_deterministic_valid_and_matches_the_shipped_copy(demo_data_dir, tmp_path):
    shipped = REPO / "resources" / "demo"
    assert sum(p.stat().st_size for p in shipped.iterdir()) < 3_000_000
    again = generate_demo_data(tmp_path / "a", seed=0)
    for kind, path in again.items():
        assert path.read_bytes() == (demo_data_dir / path.name).read_bytes() == (shipped / path.name).read_bytes()
        report = DataReport()
        assert sum(1 for _ in read_records(path, kind, report=report)) >= 400 and detect_kind(path) == kind
    other = generate_demo_data(tmp_path / "b", seed=1)
    assert other["sft"].read_bytes() != again["sft"].read_bytes()
    rl = [json.loads(line) for line in again["rl"].read_text(encoding="utf-8").splitlines()]
    assert all(0 < len(r["answer"]) <= 10 for r in rl)


def test_cli_check_lists_every_problem_and_fails(tmp_path, capsys):
    from core.cli import main

    path = write_lines(tmp_path / "bad.jsonl", BAD_PRETRAIN)
    assert main(["data", "check", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{path}:2: (json): {JSON_ERROR}"
    assert [line.split(":")[1] for line in out] == ["2", "3", "4", "5", "6"]
    assert main(["data", "check", str(REPO / "resources" / "demo" / "sft.jsonl")]) == 0


@pytest.mark.slow
def test_cli_prepare_builds_then_reuses_the_cache_and_stats_measures(slices, tiny_tokenizer_dir, tmp_path, capsys):
    from core.cli import main

    args = ["data", "prepare", str(slices["sft"]), "--tokenizer", str(tiny_tokenizer_dir), "--seq-len", "256",
            "--cache-dir", str(tmp_path)]
    assert main(args) == 0
    assert "built in" in capsys.readouterr().out
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "re-used in" in out and "records: 300, skipped: 0" in out
    assert main(["data", "stats", str(slices["pretrain"]), "--tokenizer", str(tiny_tokenizer_dir)]) == 0
    out = capsys.readouterr().out
    assert "records: 400 good, 0 bad" in out and "chars/token" in out and "p99" in out
