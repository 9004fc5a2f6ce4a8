"""The parity check run after every GGUF export: does llama.cpp compute what our torch model computes?

llama.cpp loads the file in a child process (`core.export.parity_worker`); a crash there, including the
SIGABRT llama.cpp raises on some malformed files, becomes a `ParityError` here, never a dead caller.

Checks, on a fixed multilingual prompt (English, Chinese, emoji, code) followed by every added token of the
tokenizer (control and user-defined alike, `parity_text`):
- tokenizer: llama.cpp's token ids == ours, with special-token parsing on (every type);
- chat template: llama-cpp-python's formatter, built from the file's `tokenizer.chat_template` as `Llama` builds
  it, renders CHAT_CASES (tools, tool calls, tool responses, reasoning, the thinking switch, plain chat) to the
  same prompt text as our `apply_chat_template`, and llama.cpp tokenizes those prompts to our ids (every type);
- f32: per-position logits within 1e-3 of the logit range, and the 32-token greedy continuation identical;
- other types: top-1 agreement along our greedy continuation >= MIN_AGREEMENT[type] (reported, enforced).
A greedy divergence at a near-tie (our top-2 margin below twice the measured logit error) is reported as a
tie, not a failure: at that margin both continuations are equally right.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

PROMPT_TEXT = ("Hello, world! The quick brown fox jumps over 13 lazy dogs.\n"
               "你好，世界！今天天气很好。 Emoji: 🙂🚀👍🏽\n"
               "def add(a, b):\n    return a + b  # sum\n"
               "<think>check</think><|im_end|>")
# Text between the added tokens: none, a word, a newline, CJK, spaces (an added token must split all of them off).
FILLERS = ("", " x", "\n", "好", "  ")
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "查询城市天气 (current weather of a city)",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "城市名"}},
                   "required": ["city"]}}}
TOOL_TURNS = [
    {"role": "system", "content": "你是一个会调用工具的助手。"},
    {"role": "user", "content": "北京和上海今天天气怎么样？"},
    {"role": "assistant", "content": "", "reasoning_content": "需要查两个城市。",
     "tool_calls": [{"id": "call_0", "type": "function",
                     "function": {"name": "get_weather", "arguments": {"city": "北京"}}},
                    {"id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\": \"上海\"}"}}]},
    {"role": "tool", "tool_call_id": "call_0", "content": "{\"temp\": 25, \"sky\": \"晴\"}"},
    {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 28, \"sky\": \"多云\"}"},
    {"role": "assistant", "content": "<think>\n两地都不下雨。\n</think>\n\n北京晴 25°C，上海多云 28°C。"},
    {"role": "user", "content": "Thanks! What about Shenzhen?"},
]
# Every chat is rendered with add_generation_prompt=True, as llama-cpp-python's chat handler does.
CHAT_CASES = [
    {"messages": TOOL_TURNS, "tools": [WEATHER_TOOL], "enable_thinking": None},
    {"messages": TOOL_TURNS[1:], "tools": [WEATHER_TOOL], "enable_thinking": True},
    {"messages": [{"role": "user", "content": "1+1=?"}], "tools": None, "enable_thinking": False},
    {"messages": [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好！"},
                  {"role": "user", "content": "Tell me a joke."}], "tools": None, "enable_thinking": None},
]
N_PREDICT = 32
REL_LOGIT_TOLERANCE = 1e-3
MIN_AGREEMENT = {"f32": 1.0, "f16": 0.9, "bf16": 0.9, "q8_0": 0.9, "q6_k": 0.9, "q5_k_m": 0.8, "q4_k_m": 0.5,
                 "q4_0": 0.5}
WORKER_TIMEOUT_S = 600
WORKER = Path(__file__).resolve().with_name("parity_worker.py")


def parity_text(tokenizer) -> str:
    """PROMPT_TEXT followed by every added token of `tokenizer` in id order, each once, between FILLERS."""
    added = list(tokenizer.special_tokens)  # every atomic added token, control or not
    return PROMPT_TEXT + "\n" + "".join(t + FILLERS[i % len(FILLERS)] for i, t in enumerate(added))


def render_ours(tokenizer, case: dict) -> dict:
    """Our prompt for a chat case and its ids, or the error our renderer raised."""
    try:
        prompt = tokenizer.apply_chat_template(case["messages"], add_generation_prompt=True, tools=case["tools"],
                                               enable_thinking=case["enable_thinking"])
    except Exception as exc:  # a template without tool support may refuse; llama.cpp's side must refuse too
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"prompt": prompt, "token_ids": tokenizer.encode(prompt)}


def chat_requests() -> list[dict]:
    """CHAT_CASES as llama-cpp-python receives them: the thinking switch under both of its names."""
    from core.tokenizer.chat_template import thinking_kwargs

    return [{"messages": c["messages"], "tools": c["tools"], "kwargs": thinking_kwargs(c["enable_thinking"])}
            for c in CHAT_CASES]


def compare_chats(ours: list[dict], theirs: list[dict]) -> tuple[dict, list[str]]:
    """(report fields, problems): rendered prompt text, then token ids, case by case."""
    problems = []
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if "error" in a or "error" in b:
            if ("error" in a) != ("error" in b):
                problems.append(f"chat case {i}: ours {a.get('error', 'renders')}, llama-cpp-python "
                                f"{b.get('error', 'renders')}")
            continue
        if a["prompt"] != b["prompt"]:
            k = next((j for j, (x, y) in enumerate(zip(a["prompt"], b["prompt"])) if x != y),
                     min(len(a["prompt"]), len(b["prompt"])))
            problems.append(f"chat case {i}: the file's chat template renders differently from character {k}: "
                            f"ours {a['prompt'][k:k + 40]!r} vs llama-cpp-python {b['prompt'][k:k + 40]!r}")
        elif a["token_ids"] != b["token_ids"]:
            problems.append(f"chat case {i}: llama.cpp tokenizes the chat prompt differently")
    fields = {"chat_cases": len(ours), "chat_template_match": not problems,
              "chat_prompt_tokens": [len(a.get("token_ids", [])) for a in ours]}
    return fields, problems


def worker_threads(gguf_file: Path) -> int:
    """One thread for small files: ggml's spinning worker threads slow tiny models down on busy machines."""
    size = gguf_file.stat().st_size if gguf_file.is_file() else 0
    return 1 if size < 64 * 2**20 else min(4, os.cpu_count() or 1)


class ParityError(RuntimeError):
    """llama.cpp could not load the file, or computes something else; `.report` holds the measurements."""

    def __init__(self, message: str, report: dict | None = None):
        super().__init__(message)
        self.report = report or {}


@contextmanager
def one_torch_thread():
    """Run on one intra-op thread, then restore: on a busy CPU, OpenMP hand-offs made the MoE layer's small
    index_add ~4000x slower with 2 threads (31 ms vs 8 µs, measured here); one short sequence needs no more."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@torch.no_grad()
def torch_reference(model, ids: list[int], n_predict: int) -> tuple[list[int], np.ndarray]:
    """Greedy continuation (KV cache) and the teacher-forced logits of prompt + continuation."""
    with one_torch_thread():
        return _greedy_and_logits(model, ids, n_predict)


def _greedy_and_logits(model, ids: list[int], n_predict: int) -> tuple[list[int], np.ndarray]:
    device = next(model.parameters()).device
    out = model(torch.tensor([ids], device=device), use_cache=True)
    past, greedy = out.past_key_values, []
    nxt = int(out.logits[0, -1].argmax())
    for _ in range(n_predict):
        greedy.append(nxt)
        out = model(torch.tensor([[nxt]], device=device), past_key_values=past, use_cache=True)
        past, nxt = out.past_key_values, int(out.logits[0, -1].argmax())
    logits = model(torch.tensor([ids + greedy], device=device)).logits[0].float().cpu().numpy()
    return greedy, logits


def run_worker(gguf_file: Path, text: str, reference: list[int], prompt_len: int, n_predict: int,
               timeout: float = WORKER_TIMEOUT_S, chats: list[dict] | None = None,
               logits_only: bool = False) -> tuple[dict, np.ndarray]:
    """Run llama.cpp on the file in a child process -> (its JSON answer, its logits of `reference`).
    `logits_only`: nothing but those logits (no tokenizing, greedy run or chats)."""
    with tempfile.TemporaryDirectory(prefix="minimind-parity-") as tmp:
        req_path, npy = Path(tmp) / "request.json", Path(tmp) / "logits.npy"
        req_path.write_text(json.dumps({
            "gguf": str(Path(gguf_file).resolve()), "text": text, "reference_ids": reference,
            "prompt_len": prompt_len, "n_predict": n_predict, "logits_npy": str(npy),
            "n_threads": worker_threads(Path(gguf_file)), "chats": chats or [], "logits_only": logits_only}),
            encoding="utf-8")
        # Run the worker as a script, not `-m core.export...`: importing the package would load torch (seconds).
        try:
            proc = subprocess.run(worker_command(req_path), capture_output=True, text=True,
                                  timeout=timeout, cwd=tmp)
        except subprocess.TimeoutExpired:
            raise ParityError(f"{gguf_file}: llama.cpp did not finish the parity run within {timeout:.0f} s") from None
        if proc.returncode != 0 or not npy.is_file():
            raise ParityError(f"{gguf_file}: llama.cpp could not load or run this file "
                              f"({describe_exit(proc.returncode)}):\n{explain(proc.stderr)}",
                              {"returncode": proc.returncode, "stderr_tail": proc.stderr[-4000:]})
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        return json.loads(lines[-1]), np.load(npy)


def worker_command(req_path: Path) -> list[str]:
    """The parity child's argv. In a PyInstaller bundle `sys.executable` is the app and there is no .py file to
    run: the app becomes the worker when given `--parity-worker` (studio/app.py)."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "--parity-worker", str(req_path)]
    return [sys.executable, str(WORKER), str(req_path)]


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            import signal
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def explain(stderr: str) -> str:
    """The lines of llama.cpp's log that say why, without its pages of tensor listings."""
    keep = [ln for ln in stderr.splitlines()
            if any(w in ln.lower() for w in ("error", "failed", "invalid", "abort", "exception", "assert",
                                               "missing", "wrong", "unknown", "cannot", "not found"))]
    return "\n".join((keep or stderr.splitlines())[-12:]) or "(no output)"


def compare(qtype: str, ours_ids, their_ids, prompt_len, greedy_t, greedy_l, logits_t, logits_l) -> dict:
    diff = np.abs(logits_t - logits_l)
    rng = float(logits_t.max() - logits_t.min())
    max_abs = float(diff.max())
    positions = range(prompt_len - 1, logits_t.shape[0] - 1)  # each predicts the next greedy token
    agree = [int(logits_l[p].argmax()) == int(logits_t[p].argmax()) for p in positions]
    first = next((i for i, (a, b) in enumerate(zip(greedy_t, greedy_l)) if a != b), None)
    tie = False
    if first is not None:
        row = logits_t[prompt_len - 1 + first]
        margin = float(row[greedy_t[first]] - row[greedy_l[first]])
        tie = margin <= 2 * max_abs
    report = {
        "qtype": qtype,
        "tokenizer_match": list(ours_ids) == list(their_ids),
        "n_prompt_tokens": len(ours_ids),
        "max_abs_logit_diff": max_abs,
        "mean_abs_logit_diff": float(diff.mean()),
        "logit_range": rng,
        "rel_logit_diff": max_abs / rng if rng else 0.0,
        "greedy_identical": first is None,
        "greedy_first_divergence": first,
        "greedy_divergence_is_tie": tie,
        "top1_agreement": float(np.mean(agree)),
        "min_agreement": MIN_AGREEMENT.get(qtype, 0.5),
        "greedy_torch": list(greedy_t),
        "greedy_llama_cpp": list(greedy_l),
    }
    problems = []
    if not report["tokenizer_match"]:
        k = next((i for i, (a, b) in enumerate(zip(ours_ids, their_ids)) if a != b), min(len(ours_ids), len(their_ids)))
        problems.append(f"tokenizers differ from token {k}: ours {list(ours_ids)[k:k + 5]} vs llama.cpp "
                        f"{list(their_ids)[k:k + 5]}")
    if qtype == "f32":
        if report["rel_logit_diff"] > REL_LOGIT_TOLERANCE:
            problems.append(f"logits differ by {max_abs:.3g} ({report['rel_logit_diff']:.2e} of the range "
                            f"{rng:.3g}; allowed {REL_LOGIT_TOLERANCE:g})")
        if first is not None and not tie:
            problems.append(f"greedy continuation diverges at token {first}")
    elif report["top1_agreement"] < report["min_agreement"]:
        problems.append(f"greedy agreement {report['top1_agreement']:.0%} < {report['min_agreement']:.0%}")
    report["passed"] = not problems
    report["problems"] = problems
    return report


def check_parity(model, tokenizer, gguf_file, qtype: str = "f32", n_predict: int = N_PREDICT,
                 text: str | None = None, write: bool = True, extra: dict | None = None) -> dict:
    """Compare the GGUF (via llama.cpp, in a child process) with the torch model; raise ParityError on failure.

    `text` defaults to `parity_text(tokenizer)`. `extra` joins the report (the export puts the quality figures
    against the f32 export there, `core.export.quality`). The report is written to `<file stem>.parity.json`
    beside the GGUF and returned.
    """
    text = parity_text(tokenizer) if text is None else text
    gguf_file = Path(gguf_file)
    if importlib.util.find_spec("llama_cpp") is None:
        raise ParityError(f"{gguf_file}: cannot check the file: llama-cpp-python is not installed "
                          f"(`pip install llama-cpp-python`, a ~3 min build), or export with --no-check")
    ids = tokenizer.encode(text)
    ids = ids[: max(8, min(len(ids), model.config.max_position_embeddings - n_predict - 1))]
    greedy_t, logits_t = torch_reference(model, ids, n_predict)
    chats = chat_requests()
    answer, logits_l = run_worker(gguf_file, text, ids + greedy_t, len(ids), n_predict, chats=chats)
    if logits_l.shape != logits_t.shape:
        raise ParityError(f"{gguf_file}: llama.cpp returned logits of shape {logits_l.shape}, expected "
                          f"{logits_t.shape} (vocabulary size mismatch?)")
    report = compare(qtype, tokenizer.encode(text), answer["token_ids"], len(ids), greedy_t, answer["greedy"],
                     logits_t, logits_l)
    report["chat_template_in_file"] = answer["chat_template"]
    chat_fields, chat_problems = compare_chats([render_ours(tokenizer, c) for c in CHAT_CASES], answer["chats"])
    report.update(chat_fields, n_added_tokens=len(tokenizer.special_tokens))
    report.update(extra or {})
    report["problems"] += chat_problems
    report["passed"] = not report["problems"]
    report["file"] = str(gguf_file)
    if write:
        parity_path(gguf_file).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if not report["passed"]:
        raise ParityError(f"{gguf_file}: parity check failed ({qtype}): " + "; ".join(report["problems"]), report)
    return report


def parity_path(gguf_file: Path) -> Path:
    return Path(gguf_file).with_suffix(".parity.json")
