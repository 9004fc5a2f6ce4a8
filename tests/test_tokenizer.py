"""Tokenizer: training, exact round trips, atomic specials, the ChatML template, save/load, HF compatibility."""
from __future__ import annotations

import json

import pytest

from core.tokenizer import MiniMindTokenizer, train_tokenizer

SAMPLES = {
    "english": "The quick brown fox jumps over the lazy dog.\n  Indented, with   spaces and a tab\there.",
    "chinese": "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
    "emoji": "Emoji 🙂👍🏽 and a family 👨‍👩‍👧 plus 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 and a null-ish \u0001 byte",
    "code": 'def f(x: int) -> dict:\n    return {"x": x ** 2}  # <|not special|>\n\n\tif a != b: pass\r\n',
}

CONVERSATION = [
    {"role": "user", "content": "What is a fox?"},
    {"role": "assistant", "content": "A small wild dog."},
    {"role": "user", "content": "你好"},
]
DEFAULT_SYSTEM = "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n"
RENDERED_TURNS = ("<|im_start|>user\nWhat is a fox?<|im_end|>\n"
                  "<|im_start|>assistant\nA small wild dog.<|im_end|>\n"
                  "<|im_start|>user\n你好<|im_end|>\n")


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_round_trip_is_exact(tiny_tokenizer, name):
    text = SAMPLES[name]
    ids = tiny_tokenizer.encode(text)
    assert all(0 <= i < tiny_tokenizer.vocab_size for i in ids)
    assert tiny_tokenizer.decode(ids) == text
    assert tiny_tokenizer.encode_batch([text, "x"]) == [ids, tiny_tokenizer.encode("x")]


def test_ids_and_vocab(tiny_tokenizer):
    assert (tiny_tokenizer.pad_id, tiny_tokenizer.bos_id, tiny_tokenizer.eos_id) == (0, 1, 2)
    assert tiny_tokenizer.special_tokens == {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2,
                                             "<think>": 3, "</think>": 4, "<tool_call>": 5, "</tool_call>": 6,
                                             "<tool_response>": 7, "</tool_response>": 8}
    assert tiny_tokenizer.has_tool_tokens
    assert tiny_tokenizer.vocab_size == 1024 == len(tiny_tokenizer.tokens)
    # 256 byte symbols + 9 reserved + merges make up the vocabulary (MiniMind: 256 + 3 + 6141 = 6400).
    assert len(tiny_tokenizer.merges) == 1024 - 256 - 9
    assert all(len(m.split(" ")) == 2 for m in tiny_tokenizer.merges)
    assert tiny_tokenizer.id_to_token(tiny_tokenizer.token_to_id("Ġthe")) == "Ġthe"


def test_batch_encoding_gives_the_ids_of_encoding_one_text_at_a_time(tiny_tokenizer):
    texts = [*SAMPLES.values(), "<|im_start|>user\n你好<think>x</think><|im_end|>\n", ""]
    assert tiny_tokenizer.encode_batch(texts) == [tiny_tokenizer.encode(t) for t in texts]


def test_special_tokens_stay_atomic(tiny_tokenizer):
    assert tiny_tokenizer.encode("<|im_start|>") == [1]
    ids = tiny_tokenizer.encode("hi<|im_start|>user\nyo<|im_end|><think>x</think><|endoftext|>"
                                "<tool_call>{}</tool_call><tool_response>ok</tool_response>")
    for token_id in range(9):
        assert ids.count(token_id) == 1
    assert ids[tiny_tokenizer.encode("hi").__len__()] == 1
    # Without the exact spelling no special id appears.
    assert not set(tiny_tokenizer.encode("<|im_start |> <think > <tool_call")) & set(range(9))


def test_skip_special_tokens_keeps_think_tags(tiny_tokenizer):
    ids = tiny_tokenizer.encode("<|im_start|>assistant\n<think>r</think>a<tool_call>{}</tool_call><|im_end|>")
    assert tiny_tokenizer.decode(ids, skip_special_tokens=True) == "assistant\n<think>r</think>a<tool_call>{}</tool_call>"
    assert tiny_tokenizer.control_ids == {0, 1, 2}


def test_chat_template_adds_default_system_prompt(tiny_tokenizer):
    assert tiny_tokenizer.apply_chat_template(CONVERSATION) == DEFAULT_SYSTEM + RENDERED_TURNS


def test_chat_template_keeps_given_system_prompt(tiny_tokenizer):
    messages = [{"role": "system", "content": "Answer briefly."}] + CONVERSATION
    expected = "<|im_start|>system\nAnswer briefly.<|im_end|>\n" + RENDERED_TURNS
    assert tiny_tokenizer.apply_chat_template(messages) == expected


def test_chat_template_generation_prompt_and_tokenize(tiny_tokenizer):
    text = tiny_tokenizer.apply_chat_template(CONVERSATION, add_generation_prompt=True)
    assert text == DEFAULT_SYSTEM + RENDERED_TURNS + "<|im_start|>assistant\n"
    ids = tiny_tokenizer.apply_chat_template(CONVERSATION, add_generation_prompt=True, tokenize=True)
    assert ids == tiny_tokenizer.encode(text)
    assert ids[0] == 1 and ids.count(2) == 4


def test_chat_template_is_sandboxed(tiny_tokenizer, tmp_path):
    tiny_tokenizer.save(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["chat_template"] = "{{ messages.__class__.__mro__[1].__subclasses__() }}"
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    from jinja2.exceptions import SecurityError

    with pytest.raises(SecurityError, match="unsafe"):
        MiniMindTokenizer.load(tmp_path).apply_chat_template(CONVERSATION)


def test_save_load_preserves_ids_template_and_hash(tiny_tokenizer, tmp_path):
    tiny_tokenizer.save(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert (config["bos_token"], config["eos_token"], config["pad_token"]) == ("<|im_start|>", "<|im_end|>",
                                                                               "<|endoftext|>")
    assert config["add_bos_token"] is False and config["model_max_length"] == 32768
    assert config["added_tokens_decoder"]["1"]["content"] == "<|im_start|>"
    loaded = MiniMindTokenizer.load(tmp_path)
    text = "".join(SAMPLES.values())
    assert loaded.encode(text) == tiny_tokenizer.encode(text)
    assert loaded.tokens == tiny_tokenizer.tokens and loaded.merges == tiny_tokenizer.merges
    assert loaded.chat_template == tiny_tokenizer.chat_template
    assert loaded.hash == tiny_tokenizer.hash and len(loaded.hash) == 64


def test_hash_depends_on_the_chat_template(tiny_tokenizer):
    other = MiniMindTokenizer(tiny_tokenizer.backend, chat_template=tiny_tokenizer.chat_template + " ")
    assert other.hash != tiny_tokenizer.hash


def test_transformers_autotokenizer_agrees(tiny_tokenizer_dir, tiny_tokenizer):
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoTokenizer.from_pretrained(str(tiny_tokenizer_dir))
    text = "".join(SAMPLES.values()) + "<|im_start|>user\nhi<|im_end|><think>x</think>"
    assert hf.encode(text) == tiny_tokenizer.encode(text)  # add_bos_token false: nothing added
    assert (hf.pad_token_id, hf.bos_token_id, hf.eos_token_id) == (0, 1, 2)
    for messages in (CONVERSATION, [{"role": "system", "content": "Be brief."}] + CONVERSATION):
        for gen in (False, True):
            expected = tiny_tokenizer.apply_chat_template(messages, add_generation_prompt=gen)
            assert hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen) == expected


def test_tools_are_listed_in_the_system_turn(tiny_tokenizer):
    tools = [{"type": "function", "function": {"name": "now", "description": "time in a city",
                                               "parameters": {"type": "object", "properties": {}}}}]
    messages = [{"role": "user", "content": "时间?"},
                {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "now",
                                                                                 "arguments": {"city": "北京"}}}]},
                {"role": "tool", "content": "12:00"}]
    text = tiny_tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\n# Tools\n")
    assert '"name": "now", "description": "time in a city"' in text
    assert ('<|im_start|>assistant\n<think>\n\n</think>\n\n<tool_call>\n{"name": "now", "arguments": '
            '{"city": "北京"}}\n</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n12:00\n</tool_response>'
            '<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n') in text


def test_reads_every_format_and_respects_max_records(shared_data, tmp_path):
    files = []
    for name, n in (("sft.jsonl", 40), ("dpo.jsonl", 40), ("rl.jsonl", 40)):
        with open(shared_data / name, encoding="utf-8") as f:
            (tmp_path / name).write_text("".join(next(f) for _ in range(n)), encoding="utf-8")
        files.append(tmp_path / name)
    files.append(shared_data / "text" / "tang-poems.txt")
    seen = []
    tok = train_tokenizer(files, vocab_size=300, max_records=150, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (150, 150)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert tok.vocab_size == 300
    # The 30 poem paragraphs that were read put Chinese bytes into merges; the RL answer field was read too.
    assert tok.decode(tok.encode("白日依山尽")) == "白日依山尽"


def test_progress_callback_can_cancel(tmp_path):
    class Cancelled(Exception):
        pass

    def cancel(done, total):
        raise Cancelled

    (tmp_path / "a.txt").write_text("some words\n\nmore words\n", encoding="utf-8")
    with pytest.raises(Cancelled):
        train_tokenizer([tmp_path / "a.txt"], vocab_size=300, progress=cancel)


def test_bad_json_line_names_file_and_line(tmp_path):
    bad = tmp_path / "broken.jsonl"
    bad.write_text('{"text": "fine"}\n\n{"text": "also fine"}\n{"text": broken}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.jsonl:4: invalid JSON"):
        train_tokenizer([bad], vocab_size=300)


def test_record_without_text_names_file_line_and_field(tmp_path):
    bad = tmp_path / "odd.jsonl"
    bad.write_text('{"text": "ok"}\n{"conversations": [{"role": "user", "content": 5}]}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"odd\.jsonl:2: conversations\[0\]\.content: expected a string"):
        train_tokenizer([bad], vocab_size=300)
    (tmp_path / "none.jsonl").write_text('{"prompt": "x"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"none\.jsonl:1: no text field"):
        train_tokenizer([tmp_path / "none.jsonl"], vocab_size=300)


def test_rejects_too_small_vocab_and_unknown_files(tmp_path):
    (tmp_path / "a.csv").write_text("x\n", encoding="utf-8")
    with pytest.raises(ValueError, match="at least 265"):
        train_tokenizer([tmp_path / "a.csv"], vocab_size=100)
    with pytest.raises(ValueError, match=r"a\.csv: unsupported file type"):
        train_tokenizer([tmp_path / "a.csv"], vocab_size=300)
    with pytest.raises(FileNotFoundError, match="missing.jsonl: no such file"):
        train_tokenizer([tmp_path / "missing.jsonl"])


def test_load_rejects_a_foreign_tokenizer(tiny_tokenizer, tmp_path):
    data = json.loads(tiny_tokenizer.backend.to_str())
    data["added_tokens"][1]["content"] = "<s>"  # a Llama-style BOS where MiniMind has <|im_start|>
    data["model"]["vocab"]["<s>"] = data["model"]["vocab"].pop("<|im_start|>")
    (tmp_path / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match="not a MiniMind tokenizer: '<|im_start|>' must have id 1"):
        MiniMindTokenizer.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="no tokenizer here"):
        MiniMindTokenizer.load(tmp_path / "nowhere")


@pytest.mark.slow
def test_cli_train_writes_a_loadable_tokenizer(shared_data, tmp_path, capsys):
    from core.cli import main

    out = tmp_path / "tok"
    rc = main(["tokenizer", "train", "--data", str(shared_data / "pretrain.jsonl"),
               str(shared_data / "text" / "tang-poems.txt"), "--vocab-size", "800", "--out", str(out),
               "--max-records", "2000"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert sorted(p.name for p in out.iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    assert "vocab size: 800" in captured.out and "Chinese:" in captured.out and "chars/token" in captured.out
    assert "reading records 2,000/2,000" in captured.err
    assert MiniMindTokenizer.load(out).vocab_size == 800


def test_cli_reports_user_errors(tmp_path, capsys):
    from core.cli import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n", encoding="utf-8")
    assert main(["tokenizer", "train", "--data", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "bad.jsonl:1: invalid JSON" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_qwen2_split_makes_every_digit_a_token_wherever_the_number_stands(digit_tokenizer, tiny_tokenizer, tmp_path):
    """The demo's split: a number reads as the same digit tokens after a space, a quote or an operator, so a model
    can copy it from a question into a tool call token for token (with GPT-2's split " 272" is one token and
    "\\"272" two others)."""
    tok = digit_tokenizer
    assert tok.pre_tokenizer == "qwen2" and tiny_tokenizer.pre_tokenizer == "gpt2"

    def digits(text):
        return [tok.id_to_token(i) for i in tok.encode(text) if tok.id_to_token(i).isdigit()]

    for text in ("What is 272 - 68?", '{"expression": "272 - 68"}', "272-68", "=272 -68"):
        assert digits(text) == ["2", "7", "2", "6", "8"], text
    assert all(len(t) == 1 for t in tok.tokens if t.isdigit())  # no merge ever joins two digits
    old = [tiny_tokenizer.id_to_token(i) for i in tiny_tokenizer.encode(" 2024")]
    assert old[0] == "Ġ2", f"GPT-2's split glues the space to the digit ({old}); the contrast would be vacuous"
    for text in SAMPLES.values():
        assert tok.decode(tok.encode(text)) == text
    tok.save(tmp_path / "t")
    assert MiniMindTokenizer.load(tmp_path / "t").pre_tokenizer == "qwen2"


def test_unknown_pre_tokenizer_is_refused(tmp_path):
    (tmp_path / "a.txt").write_text("hello world\n" * 20)
    with pytest.raises(ValueError, match="unknown pre_tokenizer 'bert'.*gpt2, qwen2"):
        train_tokenizer([tmp_path / "a.txt"], vocab_size=300, pre_tokenizer="bert")
