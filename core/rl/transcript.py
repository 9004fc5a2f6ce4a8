"""A logged rollout sample (the `sample` event's `prompt` and `completion`, docs/events.md) as people read it.

What the trainer logs is text: the prompt as the chat template rendered it (ChatML, special tokens included, so
a tool task's prompt starts with a system turn carrying a ~300-token tools block and ends with the generation
prompt), and the completion either as the model wrote it (GRPO/PPO/SPO) or, for agent episodes, as the
transcript written here: each generated turn, then its tool responses one per line marked `[tool] `. Agent runs
from before the transcript logged the raw decode of the episode's tokens, template glue included.

`read_sample` turns either back into messages in the chat template's form (a system message with its `tools`,
user turns, assistant turns with `reasoning_content` and `tool_calls`, `tool` messages), so the studio can show
the question and render the conversation with the same blocks as a dataset record.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from core.infer.chat_output import THINK_OPEN, parse_chat_output
from core.tokenizer.special_tokens import BOS_TOKEN, EOS_TOKEN, TOOL_RESPONSE_END, TOOL_RESPONSE_START

TOOL_MARK = "[tool] "
UNFINISHED = "[unfinished: turn limit]"

# The chat template's tools block inside the system turn (core/tokenizer/chat_template.py, MiniMind v3's own).
_TOOLS_HEADER = "# Tools\n\n"
# One schema per line; the header's own mention "within <tools></tools> XML tags" has no newline inside.
_TOOLS_BLOCK = re.compile(r"<tools>\n(.*?)\n</tools>", re.DOTALL)
_TOOL_RESPONSE = re.compile(re.escape(TOOL_RESPONSE_START) + r"\n?(.*?)\n?" + re.escape(TOOL_RESPONSE_END),
                            re.DOTALL)


def write_transcript(turns: list[str], results: list[list[str]], unfinished: bool) -> str:
    """An agent episode as one text: each generated turn as written, each tool response after it on its own line
    marked `[tool] ` (tool results are one-line JSON), then `[unfinished: turn limit]` if it was cut off."""
    parts = []
    for turn, turn_results in zip(turns, results + [[]] * (len(turns) - len(results))):
        parts.append(turn.strip())
        parts += [f"{TOOL_MARK}{r}" for r in turn_results]
    if unfinished:
        parts.append(UNFINISHED)
    return "\n".join(parts)


@dataclass
class SampleView:
    question: str                 # the last user turn of the prompt (what a person wants to see in a list)
    prompt: list[dict]            # the prompt's messages (a system message keeps its tools under `tools`)
    completion: list[dict]        # assistant turns and tool responses
    notes: list[str] = field(default_factory=list)   # e.g. the turn limit was reached


def read_sample(prompt: str, completion: str) -> SampleView:
    """Messages of a logged sample; text that is not ChatML is shown as one user turn and one assistant turn."""
    turns = _chatml_turns(prompt or "")
    if not turns:
        done, notes = _transcript(completion or "", False)
        return SampleView(_summary(prompt or ""), [{"role": "user", "content": prompt or ""}], done, notes)
    open_turn = turns[-1] if not turns[-1][2] else None  # the generation prompt: "assistant\n<think>\n..."
    messages = [m for role, body, _ in (turns[:-1] if open_turn else turns) for m in _messages(role, body)]
    notes = []
    completion = completion or ""
    if BOS_TOKEN in completion or EOS_TOKEN in completion:  # an older agent run: the episode's raw tokens
        head = f"{BOS_TOKEN}assistant\n{open_turn[1] if open_turn else ''}"
        done = [m for role, body, _ in _chatml_turns(head + completion) for m in _messages(role, body)]
    else:
        in_reasoning = bool(open_turn) and open_turn[1].rstrip().endswith(THINK_OPEN)
        done, notes = _transcript(completion, in_reasoning)
    return SampleView(question(messages), messages, done, notes)


def prompt_question(prompt: str) -> str:
    """The question of a logged prompt, without reading the completion (a rollout list's label)."""
    turns = _chatml_turns(prompt or "")
    if not turns:
        return _summary(prompt or "")
    return question([m for role, body, closed in turns if closed for m in _messages(role, body)])


def question(messages: list[dict]) -> str:
    """The last user turn's text (a prompt's question), else the last message's."""
    for m in reversed(messages):
        if m.get("role") == "user" and m.get("content"):
            return m["content"].strip()
    return (messages[-1].get("content") or "").strip() if messages else ""


def _summary(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _chatml_turns(text: str) -> list[tuple[str, str, bool]]:
    """(role, body, closed) per `<|im_start|>role\\n ... <|im_end|>` turn; the last may be open."""
    turns = []
    for chunk in text.split(BOS_TOKEN)[1:]:
        role, _, body = chunk.partition("\n")
        closed = EOS_TOKEN in body
        turns.append((role.strip(), body.split(EOS_TOKEN)[0], closed))
    return turns


def _messages(role: str, body: str) -> list[dict]:
    if role == "system" and _TOOLS_HEADER in body and (block := _TOOLS_BLOCK.search(body)):
        text = body.split(_TOOLS_HEADER)[0].strip()
        return [{"role": "system", "content": text, "tools": [_tool(line) for line in block.group(1).splitlines()
                                                                 if line.strip()]}]
    if role == "user" and body.lstrip().startswith(TOOL_RESPONSE_START):
        return [{"role": "tool", "content": r.strip()} for r in _TOOL_RESPONSE.findall(body)]
    if role == "assistant":
        return [_assistant(body, in_reasoning=False)]
    return [{"role": role or "?", "content": body}]


def _tool(line: str) -> dict:
    try:
        value = json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        value = None
    return value if isinstance(value, dict) else {"name": "?"}


def _assistant(text: str, in_reasoning: bool) -> dict:
    message = parse_chat_output(text, in_reasoning=in_reasoning).assistant_message()
    if not message.get("reasoning_content"):
        message.pop("reasoning_content", None)
    return message


def _transcript(text: str, in_reasoning: bool) -> tuple[list[dict], list[str]]:
    """The turns and tool responses of `write_transcript`'s text (a plain completion is one turn)."""
    messages, notes, turn = [], [], []

    def close_turn():
        if turn:
            messages.append(_assistant("\n".join(turn), in_reasoning))
            turn.clear()

    for line in text.split("\n"):
        if line.startswith(TOOL_MARK):
            close_turn()
            messages.append({"role": "tool", "content": line[len(TOOL_MARK):]})
        elif line == UNFINISHED:
            close_turn()
            notes.append("unfinished: turn limit reached while still calling tools")
        else:
            turn.append(line)
    close_turn()
    return messages or [{"role": "assistant", "content": ""}], notes
