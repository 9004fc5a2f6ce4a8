"""The web demo's page: a Streamlit chat over MiniMind's inference backends, with thinking and tools.

Start it with the launcher, which applies the shipped settings (webdemo/.streamlit/config.toml: loopback only,
no usage statistics, headless):

    python -m webdemo --model PATH       # a run folder, a checkpoint folder or a .gguf (or $MINIMIND_MODEL)

The operator chooses the model at launch; visitors cannot. They choose the sampling, the thinking switch and
which built-in tools the model is offered. Replies stream through `core.infer` (the backends of `minimind chat`
and the studio's Chat pane); reasoning shows in a collapsible "Thinking" box, and each tool call and its result
show in the reply (webdemo/chat.py runs them as the Chat pane does).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import streamlit as st

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `streamlit run` puts only webdemo/ on the path
    sys.path.insert(0, str(REPO))

from core.infer import SamplingParams  # noqa: E402
from core.infer.chat_output import OutputDelta  # noqa: E402
from core.tools import builtin_registry  # noqa: E402
from webdemo import MODEL_ENV  # noqa: E402
from webdemo.chat import (DEFAULT_SYSTEM, ModelClosed, fit_history, model_from_args, reply,  # noqa: E402
                          shared_model)

THINKING = {"template default": None, "on": True, "off": False}
MAX_MESSAGE_CHARS = 8000  # one visitor's message; the conversation is trimmed to the context anyway


def listens_on_every_interface() -> bool:
    """True when nobody set `server.address`: Streamlit then listens on every interface (its default)."""
    return not st.get_option("server.address")


def sidebar(registry) -> dict:
    sb = st.sidebar
    sb.title("MiniMind chat")
    system = sb.text_area("System prompt", value=DEFAULT_SYSTEM, key="system")
    sb.subheader("Thinking and tools")
    think = THINKING[sb.radio("Thinking", list(THINKING), key="thinking", horizontal=True,
                              help="open the reasoning block (on), skip it (off), or leave it to the chat template")]
    show_thinking = sb.checkbox("Show thinking expanded", value=True, key="show_thinking")
    sb.caption("Tools offered to the model (run here, with their time and size limits)")
    tools = [t.name for t in registry.tools.values()
             if sb.checkbox(t.name, value=False, key=f"tool_{t.name}", help=t.description)]
    rounds = sb.slider("Tool rounds", 1, 16, 4, 1, key="tool_rounds",
                       help="answers per message that may call tools")
    sb.subheader("Sampling")
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
    return {"system": system, "think": think, "show_thinking": show_thinking, "tools": tools, "rounds": rounds,
            "params": params}


# ---- drawing ------------------------------------------------------------------------------------------------
def thinking_box(expanded: bool):
    """A collapsible box for the model's reasoning; returns the placeholder its text goes in."""
    return st.expander("Thinking", expanded=expanded).empty()


def draw_call(call: dict) -> None:
    """One tool call (OpenAI shape); arguments pretty-printed when they are JSON."""
    fn = call["function"]
    try:
        args = json.dumps(json.loads(fn["arguments"]), ensure_ascii=False)
    except (json.JSONDecodeError, TypeError):
        args = str(fn["arguments"])
    st.caption("Tool call")
    st.code(f"{fn['name']}({args})", language=None)


def draw_result(message: dict) -> None:
    st.caption(f"Tool result · {message.get('name', '')}")
    st.code(message["content"], language=None)


def draw_turn(message: dict, show_thinking: bool) -> None:
    """A finished assistant or tool turn, as the live reply drew it."""
    if message["role"] == "tool":
        draw_result(message)
        return
    if message.get("reasoning_content"):
        thinking_box(show_thinking).text(message["reasoning_content"])
    if message.get("content"):
        st.markdown(message["content"])
    for call in message.get("tool_calls") or []:
        draw_call(call)


def draw_history(messages: list[dict], show_thinking: bool) -> None:
    """One bubble per user turn, and one for all that answered it (answers, tool calls, tool results)."""
    bubble, role = None, None
    for message in messages:
        bubble_role = "user" if message["role"] == "user" else "assistant"
        if bubble is None or bubble_role == "user" or role == "user":
            bubble = st.chat_message(bubble_role)
        role = bubble_role
        with bubble:
            if bubble_role == "user":
                st.markdown(message["content"])
            else:
                draw_turn(message, show_thinking)


class LiveReply:
    """Draws a reply as it streams, inside the assistant bubble: the thinking, the answer, each tool call as it
    is parsed, each result as it comes back. Finished turns are handed to `keep`."""

    def __init__(self, show_thinking: bool, keep):
        self.show_thinking, self.keep = show_thinking, keep
        self._new_answer()

    def _new_answer(self) -> None:
        self.boxes: dict[str, object] = {}
        self.texts = {"reasoning": "", "content": ""}

    def _box(self, kind: str, make):
        if kind not in self.boxes:  # made at the first piece, so the boxes stand in the order the text came
            self.boxes[kind] = make()
        return self.boxes[kind]

    def __call__(self, item) -> None:
        if isinstance(item, OutputDelta):
            if item.kind == "tool_call":
                draw_call(item.call.openai())
                return
            self.texts[item.kind] += item.text
            if item.kind == "reasoning":
                self._box("reasoning", lambda: thinking_box(self.show_thinking)).text(self.texts["reasoning"])
            else:
                self._box("content", st.empty).markdown(self.texts["content"])
            return
        self.keep(item)
        if item["role"] == "tool":
            draw_result(item)
        else:
            self._new_answer()


# ---- the page -----------------------------------------------------------------------------------------------
def open_model():
    """The operator's model (from the launch command), loaded once for every session; None (and why, on the
    page) when there is none."""
    path = model_from_args(sys.argv[1:])
    if not path:
        st.info("No model was given. The operator starts the page with a model: "
                f"`python -m webdemo --model PATH` (a run folder, a checkpoint folder or a .gguf), or ${MODEL_ENV}.")
        return None
    try:
        with st.spinner("Loading the model…"):
            model = shared_model(path)
    except (FileNotFoundError, OSError, ValueError, RuntimeError) as exc:
        st.error(f"Could not open the model: {exc}")
        return None
    backend = model.backend
    st.sidebar.caption(f"Model (chosen by the operator): {backend.name} · {type(backend).__name__} · "
                       f"context {backend.max_context} tokens")
    return model


def answer(model, registry, settings: dict, history: list[dict]) -> None:
    """Stream the reply to the last message of `history` into an assistant bubble; its turns join `history`."""
    params, tools = settings["params"], registry.schemas(settings["tools"]) or None
    system = [{"role": "system", "content": settings["system"]}] if settings["system"].strip() else []
    with st.chat_message("assistant"):
        waiting = st.empty()
        if model.lock.locked():  # a hint only: the lock decides
            waiting.caption("Another visitor's reply is being written; yours follows.")
        try:
            with model.generating() as backend:
                waiting.empty()
                messages = fit_history(backend, system + history, tools, settings["think"], params.max_new_tokens)
            stats = reply(model, messages, params, registry, tools, settings["think"], settings["rounds"],
                          LiveReply(settings["show_thinking"], history.append))
        except (ValueError, ModelClosed) as exc:  # a message longer than the context; the model was replaced
            st.error(str(exc))
            return
    speed = stats.tokens / stats.decode_s if stats.decode_s > 0 else 0.0
    st.caption(f"{stats.tokens} tokens · {speed:.1f} tokens/s · finish: {stats.finish}")


def main() -> None:
    st.set_page_config(page_title="MiniMind chat", page_icon=str(REPO / "resources/icons/minimind-studio-64.png"))
    if listens_on_every_interface():
        st.error("This page was started without the web demo's settings, so it listens on every network "
                 "interface. Start it with `python -m webdemo --model PATH` (loopback only), or choose the "
                 "interface yourself with `--address`.")
        return
    registry = builtin_registry()
    settings = sidebar(registry)
    model = open_model()
    if model is None:
        return
    history = st.session_state.setdefault("messages", [])
    draw_history(history, settings["show_thinking"])
    prompt = st.chat_input("Say something", max_chars=MAX_MESSAGE_CHARS)
    if prompt:
        history.append({"role": "user", "content": prompt})
        with st.chat_message("user"):
            st.markdown(prompt)
        answer(model, registry, settings, history)


main()
