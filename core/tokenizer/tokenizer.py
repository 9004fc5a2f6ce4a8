"""`MiniMindTokenizer`: a byte-level BPE `tokenizers.Tokenizer` plus its chat template, saved HF-compatibly.

A saved tokenizer is a directory with `tokenizer.json` (the `tokenizers` model) and `tokenizer_config.json`
(the fields `transformers.AutoTokenizer` reads, chat template included), the layout MiniMind ships.
"""
from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path

from tokenizers import Tokenizer

from core.tokenizer.chat_template import CHAT_TEMPLATE, render
from core.tokenizer.special_tokens import (BOS_TOKEN, CONTROL_TOKENS, EOS_TOKEN, PAD_TOKEN,  # noqa: F401 (re-export)
                                           QWEN2_SPLIT, RESERVED_TOKENS, THINK_TOKENS, TOOL_TOKENS)

MODEL_MAX_LENGTH = 32768

TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"


class MiniMindTokenizer:
    """Encode/decode text and render chats. `backend` is the underlying `tokenizers.Tokenizer`."""

    def __init__(self, backend: Tokenizer, chat_template: str = CHAT_TEMPLATE, source: str = "<memory>"):
        for expected_id, token in enumerate(CONTROL_TOKENS):
            if backend.token_to_id(token) != expected_id:
                raise ValueError(
                    f"{source}: not a MiniMind tokenizer: {token!r} must have id {expected_id}, "
                    f"found {backend.token_to_id(token)}; train one with `minimind tokenizer train`")
        self.backend = backend
        self.chat_template = chat_template
        self.source = source  # where it was loaded from (shown with the token caches it made)

    # ---- persistence ---------------------------------------------------------------------------------
    @classmethod
    def load(cls, directory: str | Path) -> "MiniMindTokenizer":
        directory = Path(directory)
        path = directory / TOKENIZER_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no tokenizer here; expected {TOKENIZER_FILE} (+ {CONFIG_FILE})")
        try:
            backend = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on a malformed file
            raise ValueError(f"{path}: cannot read the tokenizer: {exc}") from exc
        template = CHAT_TEMPLATE
        config_path = directory / CONFIG_FILE
        if config_path.is_file():
            try:
                config = json.loads(config_path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{config_path}:{exc.lineno}: invalid JSON: {exc.msg}") from exc
            stored = config.get("chat_template")
            if isinstance(stored, list):  # HF also allows [{"name": "default", "template": ...}, ...]
                stored = next((t.get("template") for t in stored if t.get("name") == "default"), None)
            if isinstance(stored, str) and stored:
                template = stored
        return cls(backend, template, source=str(directory))

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.backend.save(str(directory / TOKENIZER_FILE))
        config = self.hf_config()
        (directory / CONFIG_FILE).write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n",
                                             encoding="utf-8")
        return directory

    def hf_config(self) -> dict:
        """tokenizer_config.json for `transformers` (MiniMind v2's fields)."""
        added = json.loads(self.backend.to_str())["added_tokens"]
        decoder = {str(t["id"]): {k: t[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word",
                                                     "special")} for t in added}
        return {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "add_bos_token": False,
            "add_eos_token": False,
            "add_prefix_space": False,
            "bos_token": BOS_TOKEN,
            "eos_token": EOS_TOKEN,
            "pad_token": PAD_TOKEN,
            "unk_token": PAD_TOKEN,
            "clean_up_tokenization_spaces": False,
            "model_max_length": MODEL_MAX_LENGTH,
            "added_tokens_decoder": decoder,
            "extra_special_tokens": {},
            "chat_template": self.chat_template,
        }

    # ---- text <-> ids --------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; no BOS/EOS added; special tokens written in the text map to their one id."""
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """`encode` for many texts at once: tokenizers spreads the batch over every core (its Rust thread pool).

        `encode_batch_fast` gives the same ids without computing character offsets (about 20 % less CPU measured
        on pretrain.jsonl with MiniMind's v3 tokenizer); older tokenizers without it use `encode_batch`."""
        encode = getattr(self.backend, "encode_batch_fast", None) or self.backend.encode_batch
        return [e.ids for e in encode(list(texts), add_special_tokens=False)]

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = False,
                            tokenize: bool = False, tools: list | str | None = None,
                            enable_thinking: bool | None = None, open_thinking: bool | None = None
                            ) -> str | list[int]:
        """Render a conversation with this tokenizer's template; `tokenize=True` returns its ids instead.

        `messages` may be a record's minimind-3 form (tools on the system message, `tool_calls` as JSON strings);
        `enable_thinking` (or upstream's name `open_thinking`) is the thinking switch. See `render`.
        """
        text = render(self.chat_template, messages, add_generation_prompt=add_generation_prompt, tools=tools,
                      enable_thinking=enable_thinking, open_thinking=open_thinking,
                      bos_token=BOS_TOKEN, eos_token=EOS_TOKEN)
        return self.encode(text) if tokenize else text

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self.backend.id_to_token(token_id)

    # ---- facts ---------------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    pad_id = property(lambda self: 0)
    bos_id = property(lambda self: 1)
    eos_id = property(lambda self: 2)

    @property
    def special_tokens(self) -> dict[str, int]:
        """Every atomic added token (token -> id): the control tokens, then e.g. think and tool tags. Trained
        here: `RESERVED_TOKENS`; MiniMind v3: its 36 reserved ids; v2: the 3 control tokens."""
        return {t["content"]: t["id"] for t in sorted(self._json["added_tokens"], key=lambda t: t["id"])}

    @property
    def has_tool_tokens(self) -> bool:
        """Whether the think and tool tags are single tokens (False for v2 and for tokenizers trained here
        before the tool tags were reserved: their tags are then spelled out in several byte-level tokens)."""
        return all(t in self.special_tokens for t in THINK_TOKENS + TOOL_TOKENS)

    @property
    def control_ids(self) -> set[int]:
        """Ids decode(skip_special_tokens=True) drops (GGUF token type CONTROL)."""
        return {t["id"] for t in self._json["added_tokens"] if t["special"]}

    @property
    def pre_tokenizer_spec(self) -> dict | None:
        """tokenizer.json's ``pre_tokenizer`` object as written (None when it has none): for messages."""
        return self._json.get("pre_tokenizer")

    @property
    def pre_tokenizer(self) -> str | None:
        """How text is split before BPE: "gpt2" (ByteLevel's own regex: MiniMind v2/v3 and tokenizers trained
        here by default), "qwen2" (Qwen2's regex, one token per digit: `train_tokenizer(pre_tokenizer="qwen2")`)
        or None for any other form (llama.cpp has no pre-tokenizer known to match it)."""
        pre = self._json.get("pre_tokenizer") or {}
        if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
            return "gpt2"
        steps = pre.get("pretokenizers") or []
        if (pre.get("type") == "Sequence" and len(steps) == 2 and steps[0].get("type") == "Split"
                and (steps[0].get("pattern") or {}).get("Regex") == QWEN2_SPLIT
                and steps[0].get("behavior") == "Isolated" and not steps[0].get("invert")
                and steps[1].get("type") == "ByteLevel" and not steps[1].get("use_regex", True)):
            return "qwen2"
        return None

    @property
    def tokens(self) -> list[str]:
        return [self.backend.id_to_token(i) for i in range(self.vocab_size)]

    @property
    def merges(self) -> list[str]:
        """BPE merges as "a b" strings (GGUF's form; tokenizers >= 0.20 stores pairs)."""
        return [m if isinstance(m, str) else " ".join(m) for m in self._json["model"]["merges"]]

    @property
    def hash(self) -> str:
        """sha256 of the canonical tokenizer.json text and the chat template: a cache key for token data."""
        digest = hashlib.sha256(self._canonical.encode("utf-8"))
        digest.update(b"\0")
        digest.update(self.chat_template.encode("utf-8"))
        return digest.hexdigest()

    @cached_property
    def _canonical(self) -> str:
        # Round-trip through json so key order and whitespace never depend on how the file was written.
        return json.dumps(self._json, sort_keys=True, ensure_ascii=False, separators=(",", ":"))

    @cached_property
    def _json(self) -> dict:
        return json.loads(self.backend.to_str())

    def __repr__(self) -> str:
        return f"MiniMindTokenizer(vocab_size={self.vocab_size}, hash={self.hash[:12]})"
