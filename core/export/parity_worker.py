"""Child process of the parity check: load a GGUF with llama-cpp-python and report what it computes.

Run as `python core/export/parity_worker.py REQUEST.json` (a plain script: it imports only numpy, llama_cpp and core.llama_load). It runs in its own process because llama.cpp
aborts the whole process (SIGABRT) on some malformed files; the parent turns any crash into a ParityError.

Request: {"gguf", "text", "reference_ids", "prompt_len", "n_predict", "logits_npy", "n_threads", "chats",
"logits_only"}. Writes the teacher-forced logits of `reference_ids` to `logits_npy`; with "logits_only" it stops
there and prints {"n_vocab"}, else it prints one JSON line:
{"token_ids": llama.cpp's ids for `text`, "greedy": free-running greedy ids after the prompt,
 "n_vocab", "chat_template": bool, "chats": [{"prompt", "token_ids"} or {"error"} for each of `chats`]}.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str]) -> int:
    req = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    from core.llama_load import load_llama

    ref = req["reference_ids"]
    n_ctx = max(64, len(ref) + 8)
    # f32 KV cache (type 0): the default f16 cache alone adds ~1e-2 logit noise; logits_all for per-position logits.
    llm = load_llama(model_path=req["gguf"], n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, logits_all=True,
                type_k=0, type_v=0, n_threads=req.get("n_threads", 2), seed=0, verbose=True)
    llm.reset()
    llm.eval(ref)
    logits = np.asarray(llm.scores[: len(ref)], dtype=np.float32)
    np.save(req["logits_npy"], logits)
    if req.get("logits_only"):  # held-out logits for the quality figures (core/export/quality.py)
        print(json.dumps({"n_vocab": llm.n_vocab()}), flush=True)
        return 0
    token_ids = llm.tokenize(req["text"].encode("utf-8"), add_bos=False, special=True)

    llm.reset()
    llm.eval(ref[: req["prompt_len"]])
    greedy = []
    for _ in range(req["n_predict"]):
        token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        greedy.append(token)
        llm.eval([token])
    print(json.dumps({"token_ids": list(token_ids), "greedy": greedy, "n_vocab": llm.n_vocab(),
                      "chat_template": bool(llm.metadata.get("tokenizer.chat_template")),
                      "chats": render_chats(llm, req.get("chats", []))}), flush=True)
    return 0


def render_chats(llm, chats: list[dict]) -> list[dict]:
    """Each chat rendered by the formatter `Llama` builds from the file's `tokenizer.chat_template` (same class,
    bos/eos texts and add_generation_prompt=True as llama_cpp.Llama.__init__), and tokenized by llama.cpp."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        return [{"error": "no tokenizer.chat_template in the file"} for _ in chats]
    formatter = Jinja2ChatFormatter(template=template, eos_token=llm._model.token_get_text(llm.token_eos()),
                                    bos_token=llm._model.token_get_text(llm.token_bos()),
                                    stop_token_ids=[llm.token_eos()])
    out = []
    for chat in chats:
        try:
            prompt = formatter(messages=chat["messages"], tools=chat["tools"], **chat["kwargs"]).prompt
        except Exception as exc:  # the template refuses this conversation
            out.append({"error": f"{type(exc).__name__}: {exc}"})
            continue
        ids = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        out.append({"prompt": prompt, "token_ids": list(ids)})
    return out


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script: core.llama_load (no torch)
    sys.exit(main(sys.argv[1:]))
