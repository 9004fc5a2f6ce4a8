"""A small Streamlit chat page over MiniMind's inference backends (a torch checkpoint/run dir, or a .gguf).

    streamlit run webdemo/app.py -- --model PATH        # or: MINIMIND_MODEL=PATH streamlit run webdemo/app.py

Offline use: add `--browser.gatherUsageStats false` before the `--` (Streamlit otherwise tries to send usage stats).
The model path can also be typed in the sidebar. Replies stream token by token through `core.infer` (the same
backends as `minimind chat` and the studio's Chat pane), with sampling settings from the sidebar sliders.
"""
from __future__ import annotations

import argparse
import atexit
import os
import sys
import threading
from pathlib import Path

import streamlit as st

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `streamlit run` puts only webdemo/ on the path
    sys.path.insert(0, str(REPO))

from core.infer import SamplingParams, open_backend  # noqa: E402

ENV_VAR = "MINIMIND_MODEL"
DEFAULT_SYSTEM = "You are a helpful assistant"


def model_from_args(argv: list[str]) -> str:
    """`--model PATH` after streamlit's `--`, else $MINIMIND_MODEL, else empty (the user types one in)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--model", default=None)
    args, _ = parser.parse_known_args(argv)
    return args.model or os.environ.get(ENV_VAR, "")


def _release(entry) -> None:
    entry[0].close()  # llama.cpp must be closed explicitly (Llama.__del__ raises at interpreter exit)


@st.cache_resource(max_entries=1, show_spinner="Loading the model…", on_release=_release)
def load_backend(path: str):
    """(backend, lock): one loaded model shared by all browser sessions; the lock serialises generation."""
    backend = open_backend(path)
    atexit.register(backend.close)
    return backend, threading.Lock()


def fit_history(backend, messages: list[dict], max_new_tokens: int) -> list[dict]:
    """Drop the oldest turns (keeping the system prompt) until prompt + reply fit the model's context."""
    system, turns = messages[:1], list(messages[1:])
    while len(turns) > 1:
        ids = backend.tokenize(backend.render_chat(system + turns))
        if len(ids) + max_new_tokens <= backend.max_context:
            break
        turns = turns[2:] if len(turns) > 2 else turns[-1:]
    return system + turns


def sidebar() -> tuple[str, SamplingParams, str]:
    sb = st.sidebar
    sb.title("MiniMind chat")
    path = sb.text_input("Model (checkpoint dir, run dir or .gguf)", value=model_from_args(sys.argv[1:]),
                         key="model_path", help=f"also: --model PATH after `--`, or ${ENV_VAR}")
    system = sb.text_area("System prompt", value=DEFAULT_SYSTEM, key="system")
    params = SamplingParams(
        temperature=sb.slider("Temperature", 0.0, 2.0, 0.85, 0.05, key="temperature",
                              help="0 = greedy (always the most likely token)"),
        top_p=sb.slider("Top-p", 0.05, 1.0, 0.85, 0.05, key="top_p"),
        top_k=sb.slider("Top-k (0 = off)", 0, 200, 50, 1, key="top_k"),
        repetition_penalty=sb.slider("Repetition penalty", 1.0, 2.0, 1.0, 0.05, key="repetition_penalty"),
        max_new_tokens=sb.slider("Max new tokens", 8, 2048, 256, 8, key="max_new_tokens"),
        seed=sb.number_input("Seed (0 = random)", 0, 2**31 - 1, 0, key="seed") or None,
    )
    if sb.button("Clear chat", key="clear"):
        st.session_state.messages = []
    return path.strip(), params, system


def main() -> None:
    st.set_page_config(page_title="MiniMind chat", page_icon=str(REPO / "resources/icons/minimind-studio-64.png"))
    path, params, system = sidebar()
    st.session_state.setdefault("messages", [])
    if not path:
        st.info("Enter a model path in the sidebar: a run folder, a checkpoint folder, or a .gguf file "
                f"(e.g. the one `minimind demo` exports). You can also start with `-- --model PATH` or ${ENV_VAR}.")
        return
    try:
        backend, lock = load_backend(path)
    except (FileNotFoundError, OSError, ValueError, RuntimeError) as exc:
        st.error(f"Could not open {path}: {exc}")
        return
    st.caption(f"{backend.name} · {type(backend).__name__} · context {backend.max_context} tokens")

    for message in st.session_state.messages:
        with st.chat_message(message["role"]):
            st.markdown(message["content"])

    prompt = st.chat_input("Say something")
    if not prompt:
        return
    st.session_state.messages.append({"role": "user", "content": prompt})
    with st.chat_message("user"):
        st.markdown(prompt)
    history = fit_history(backend, [{"role": "system", "content": system}] + st.session_state.messages,
                          params.max_new_tokens)
    with st.chat_message("assistant"), lock:
        reply = st.write_stream(backend.chat_stream(history, params))
        usage = backend.usage
    reply = reply if isinstance(reply, str) else "".join(map(str, reply))
    st.session_state.messages.append({"role": "assistant", "content": reply})
    speed = usage.completion_tokens / usage.decode_s if usage.decode_s > 0 else 0.0
    st.caption(f"{usage.completion_tokens} tokens · {speed:.1f} tokens/s · finish: {backend.finish_reason}")


main()
