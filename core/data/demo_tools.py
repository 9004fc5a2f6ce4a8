"""Tool-use tasks of the built-in demo data: arithmetic for the calculator and unit conversions, English and Chinese.

Each `ToolTask` becomes a minimind-3 tool conversation (system message carrying `tools`, assistant `tool_calls`,
a `tool` result, the final answer; optionally with reasoning) for SFT, or an agent-RL prompt with its ground
truth `gt`. Tool names, arguments and results are core.tools' built-ins, and each result is what the registry
really returns for the call, so a chat that executes the model's calls sees exactly what training showed it.

Held-out tasks: `is_held_out(task.key)` (a hash of the call) picks a fixed fifth of all possible calls; those
appear only in the held-out lines of agent_rl.jsonl, never in SFT data or agent-RL training lines, whatever the
seed or file sizes.
"""
from __future__ import annotations

import json
import random
import zlib
from dataclasses import dataclass
from functools import lru_cache

HELD_OUT_SHARE = 5  # one call in 5 (by key hash) is held out; one agent-RL line in 5 is a held-out task
THINK_SHARE = 0.2   # share of tool conversations whose assistant turns carry reasoning
ALL_TOOLS_SHARE = 0.3  # share of conversations declaring every built-in tool

# English conversions: (from, to, value range); units as a person writes them, which core.tools understands
EN_UNITS = [("km", "m", (1, 50)), ("m", "cm", (1, 30)), ("kg", "g", (1, 40)), ("hours", "minutes", (1, 24)),
            ("minutes", "seconds", (1, 60)), ("days", "hours", (1, 30)), ("liters", "ml", (1, 20)),
            ("km", "miles", (1, 100)), ("miles", "km", (1, 100)), ("pounds", "kg", (1, 200)),
            ("kg", "pounds", (1, 100)), ("celsius", "fahrenheit", (-20, 100)), ("fahrenheit", "celsius", (0, 212)),
            ("gb", "mb", (1, 64)), ("feet", "m", (1, 100)), ("inches", "cm", (1, 60)), ("weeks", "days", (1, 52))]
ZH_UNITS = [("公里", "米", (1, 50)), ("千米", "米", (1, 50)), ("米", "厘米", (1, 30)), ("千克", "克", (1, 40)),
            ("公斤", "斤", (1, 100)), ("斤", "公斤", (1, 100)), ("公斤", "克", (1, 40)),
            ("摄氏度", "华氏度", (-20, 100)), ("华氏度", "摄氏度", (0, 212))]
SYSTEM_PROMPTS = ("", "You are a helpful assistant.", "你是一个乐于助人的助手。")


@dataclass(frozen=True)
class ToolTask:
    key: str              # the call, canonical: decides the held-out split
    zh: bool
    question: str
    tool: str
    arguments: dict
    answer: str           # the final reply once the tool has answered
    gt: tuple             # what the final reply must contain (agent RL ground truth)
    thought: str          # reasoning before the call
    after: str            # reasoning before the final reply


@lru_cache(maxsize=1)
def _registry():
    from core.tools import builtin_registry
    return builtin_registry()


def tool_result(task: ToolTask) -> str:
    """The `tool` message content: what the registry returns for this call."""
    return _registry().run(task.tool, task.arguments)


def result_value(task: ToolTask):
    """The number the tool computed (calculator: the result; unit converter: the converted value)."""
    value = json.loads(tool_result(task))["result"]
    return value["value"] if isinstance(value, dict) else value


def is_held_out(key: str) -> bool:
    return zlib.crc32(key.encode("utf-8")) % HELD_OUT_SHARE == 0


def _key(tool: str, arguments: dict) -> str:
    return tool + json.dumps(arguments, ensure_ascii=False, sort_keys=True)


def _operands(r: random.Random, op: str) -> tuple[int, int]:
    if op == "*":
        return r.randint(2, 99), r.randint(2, 99)
    if op == "/":
        b = r.randint(2, 25)
        return b * r.randint(2, 99), b
    a, b = r.randint(10, 999), r.randint(10, 999)
    return (max(a, b), min(a, b)) if op == "-" else (a, b)


def _finish(tool: str, arguments: dict, zh: bool, question: str, answer_of, thought: str, after_of) -> ToolTask:
    """A task whose answer and reasoning quote the number the tool really returns."""
    key = _key(tool, arguments)
    value = result_value(ToolTask(key, zh, question, tool, arguments, "", (), "", ""))
    text = json.dumps(value)
    return ToolTask(key, zh, question, tool, arguments, answer_of(text), (value,), thought, after_of(text))


def calculator_task(r: random.Random, zh: bool) -> ToolTask:
    op = r.choice("+-*/")
    a, b = _operands(r, op)
    expr = f"{a} {op} {b}"
    if r.random() < 0.1:  # a three-number expression
        c = r.randint(2, 9)
        expr = f"({a} {op} {b}) * {c}" if op in "+-" else f"{a} {op} {b} + {c}"
    # questions quote the expression as the call writes it: a tiny model learns to copy it
    if zh:
        question = r.choice([f"{expr} 等于多少？", f"帮我算一下 {expr}。", f"计算 {expr}。"])
        return _finish("calculate_math", {"expression": expr}, zh, question, lambda v: f"{expr} 等于 {v}。",
                       f"用户想计算 {expr}，我调用 calculate_math。", lambda v: f"计算结果是 {v}。")
    question = r.choice([f"What is {expr}?", f"Calculate {expr}.", f"Please work out {expr}."])
    return _finish("calculate_math", {"expression": expr}, zh, question, lambda v: f"{expr} = {v}.",
                   f"The user wants {expr}. I will use calculate_math.", lambda v: f"The calculator says {v}.")


def unit_task(r: random.Random, zh: bool) -> ToolTask:
    src, dst, (lo, hi) = r.choice(ZH_UNITS if zh else EN_UNITS)
    value = r.randint(lo, hi) if r.random() < 0.8 else r.randint(lo * 2, hi * 2 - 1) / 2
    value = int(value) if value == int(value) else value
    args = {"value": value, "from_unit": src, "to_unit": dst}
    if zh:
        question = r.choice([f"把 {value} {src}换算成{dst}。", f"{value} {src}等于多少{dst}？", f"{value} {src}是多少{dst}？"])
        return _finish("unit_converter", args, zh, question, lambda v: f"{value} {src}等于 {v} {dst}。",
                       f"要把 {value} {src}换算成{dst}，我调用 unit_converter。", lambda v: f"换算结果是 {v} {dst}。")
    question = r.choice([f"Convert {value} {src} to {dst}.", f"How many {dst} are in {value} {src}?",
                         f"What is {value} {src} in {dst}?"])
    return _finish("unit_converter", args, zh, question, lambda v: f"{value} {src} is {v} {dst}.",
                   f"The user wants {value} {src} in {dst}. I will use unit_converter.",
                   lambda v: f"The converter says {v} {dst}.")


def tool_task(r: random.Random, zh: bool, held_out: bool = False) -> ToolTask:
    """A calculator or unit task on the requested side of the held-out split."""
    while True:
        task = (calculator_task if r.random() < 0.6 else unit_task)(r, zh)
        if is_held_out(task.key) == held_out:
            return task


def tools_for(r: random.Random, needed: str | None) -> list[dict]:
    """The tool schemas a conversation declares: every built-in (a chat offering them all) or fewer (a chat with
    only the calculator on; shorter, so SFT sees more calls per second); always the one the task needs, in the
    registry's order."""
    names = _registry().names()
    if r.random() < ALL_TOOLS_SHARE:
        chosen = names
    else:
        chosen = [n for n in names if n == needed or r.random() < 0.3] or [r.choice(names)]
    return _registry().schemas(chosen)


def system_message(r: random.Random, tools: list[dict]) -> dict:
    return {"role": "system", "content": r.choice(SYSTEM_PROMPTS), "tools": compact_json(tools)}


def compact_json(value) -> str:
    """Records keep `tools` and `tool_calls` as JSON strings, as upstream's sft_t2t does (the template re-renders
    them, so spacing here changes nothing the model sees)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def tool_conversation(r: random.Random, task: ToolTask) -> list[dict]:
    """[system with tools, user, assistant call, tool result, assistant answer]; a THINK_SHARE of them with
    reasoning, half as `reasoning_content`, half as a `<think>` block in the content."""
    call = compact_json([{"name": task.tool, "arguments": task.arguments}])
    calling = {"role": "assistant", "content": "", "tool_calls": call}
    final = {"role": "assistant", "content": task.answer}
    if r.random() < THINK_SHARE:
        if r.random() < 0.5:
            calling["reasoning_content"], final["reasoning_content"] = task.thought, task.after
        else:
            calling["content"] = f"<think>\n{task.thought}\n</think>\n\n"
            final["content"] = f"<think>\n{task.after}\n</think>\n\n{task.answer}"
    return [system_message(r, tools_for(r, task.tool)), {"role": "user", "content": task.question}, calling,
            {"role": "tool", "content": tool_result(task)}, final]


def agent_prompt(r: random.Random, task: ToolTask) -> dict:
    """An agent-RL record: upstream's agent_rl.jsonl form (the prompt, the ground truth `gt`) plus `tool`, the
    tool the question needs (upstream's loaders ignore it; `minimind eval tools` checks the model picks it)."""
    return {"conversations": [system_message(r, tools_for(r, task.tool)), {"role": "user", "content": task.question}],
            "gt": list(task.gt), "tool": task.tool}


def tool_transcript(r: random.Random, task: ToolTask) -> str:
    """A short pretraining text: the tool conversation rendered by the chat template without its tools block
    (user, call, tool result, answer), so pretraining sees the call format and the copying of the question's
    numbers into the call and of the result into the answer, in well under one 128-token window."""
    from core.tokenizer.chat_template import CHAT_TEMPLATE, render

    return render(CHAT_TEMPLATE, tool_conversation(r, task)[1:])
