"""Tool-use evaluation (`minimind eval tools`; MiniMind v3 `scripts/eval_toolcall.py`, reference §4.3).

A case is a prompt conversation, the tools it may call, the tool it should call and the ground truth (`gt`: values
the final answer must contain). The model answers greedily; each tool call it makes runs on the built-in registry
(core/tools) and the result goes back as a `tool` turn, for up to `max_turns` answers. Per case it reports: a
well-formed call (every `<tool_call>` block parsed, at least one), the right tool, valid arguments (every call
passes its tool's argument check), a correct final answer (every `gt` item found: core.rl.agent.gt_share), and
the answers used. Targets: a checkpoint or a GGUF (core.infer backends, same parser as chat and serve) or any
OpenAI-compatible endpoint (the official `openai` client, tool calls as the server returns them).

Case files are JSONL in the agent-task form ({"conversations": [system with "tools", user], "gt": [...]}), with
an optional "tool" (the expected tool name; default: the only declared tool). `builtin_cases()` are 20 cases
(arithmetic that needs the calculator, unit conversions; English and Chinese).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.infer.chat_output import CALL_OPEN, ChatOutput, ToolCall


@dataclass
class ToolCase:
    """`messages` may be a record's conversation: its system message's `tools` (a list or JSON string) become
    `tools` when none are given, and a trailing assistant turn is dropped."""
    messages: list[dict]
    gt: list
    tool: str = ""
    tools: list[dict] | None = None
    id: str = ""

    def __post_init__(self) -> None:
        from core.tokenizer.messages import normalize_messages, tool_name

        msgs, tools = normalize_messages(self.messages, self.tools)
        if msgs and msgs[-1].get("role") == "assistant":
            msgs = msgs[:-1]
        self.messages, self.tools = msgs, tools or []
        names = [tool_name(t) for t in self.tools]
        self.tool = self.tool or (names[0] if len(names) == 1 else "")

    @property
    def question(self) -> str:
        return next((m.get("content", "") for m in reversed(self.messages) if m.get("role") == "user"), "")

    def without_tools(self) -> list[dict]:
        """The same conversation with no tools declared (the model must answer on its own)."""
        return [{k: v for k, v in m.items() if k != "tools"} for m in self.messages]


@dataclass
class CaseResult:
    id: str
    well_formed: bool
    right_tool: bool
    valid_arguments: bool
    correct: bool
    turns: int
    calls: list[dict] = field(default_factory=list)
    answer: str = ""


# ---- cases ----------------------------------------------------------------------------------------------------

_ARITHMETIC = [("What is 256 * 37?", "256 * 37", 9472), ("Compute 1234 + 5678.", "1234 + 5678", 6912),
               ("What is 98765 - 43210?", "98765 - 43210", 55555), ("What is 144 / 12 * 7?", "144 / 12 * 7", 84),
               ("What is 17 squared plus 3?", "17**2 + 3", 292), ("帮我算一下 256 乘以 37 等于多少", "256 * 37", 9472),
               ("计算 3600 除以 45", "3600 / 45", 80), ("请计算 (12 + 8) * 15", "(12 + 8) * 15", 300),
               ("What is 7 * 8 * 9?", "7 * 8 * 9", 504), ("计算 1000 减去 387", "1000 - 387", 613),
               ("What is 2 to the power 10?", "2**10", 1024), ("What is 45 * 45?", "45 * 45", 2025)]
_UNITS = [("How many meters are 5 kilometers?", 5, "km", "m", 5000), ("Convert 3 hours to minutes.", 3, "h", "min", 180),
          ("How many grams are 2.5 kilograms?", 2.5, "kg", "g", 2500), ("把 2 公里换算成米", 2, "km", "m", 2000),
          ("Convert 90 minutes to hours.", 90, "min", "h", 1.5), ("How many centimeters are 1.2 meters?", 1.2, "m", "cm", 120),
          ("把 4 小时换算成分钟", 4, "h", "min", 240), ("How many milliliters are 3 liters?", 3, "l", "ml", 3000)]


def builtin_cases() -> list[ToolCase]:
    from core.tools import builtin_registry

    tools = builtin_registry().schemas(["calculate_math", "unit_converter"])
    system = {"role": "system", "content": "You are a helpful assistant. Use a tool when it helps."}
    cases = [ToolCase([system, {"role": "user", "content": q}], [gt], "calculate_math", tools, f"math-{i + 1}")
             for i, (q, _expr, gt) in enumerate(_ARITHMETIC)]
    cases += [ToolCase([system, {"role": "user", "content": q}], [gt], "unit_converter", tools, f"unit-{i + 1}")
              for i, (q, _v, _f, _t, gt) in enumerate(_UNITS)]
    return cases


def load_cases(path: str | Path) -> list[ToolCase]:
    """Cases from an agent-task JSONL file; problems are DataErrors naming file:line:field."""
    from core.data.records import read_records

    return [ToolCase(rec["conversations"], rec["gt"], rec.get("tool") or "", id=str(rec.get("id", n + 1)))
            for n, rec in enumerate(read_records(path, "agent"))]


# ---- targets: something that answers a conversation with tools ------------------------------------------------

class BackendTarget:
    """A checkpoint or GGUF through core.infer (greedy). `constrain`: decode every answer under the grammar of
    tool_choice "auto" for its tools (core.infer.answer_format: text, or calls to the offered tools with arguments
    valid for their schemas)."""

    def __init__(self, backend, max_new_tokens: int = 256, constrain: bool = False, think: bool | None = None):
        from core.infer.sampling import SamplingParams

        self.backend, self.constrain, self.think = backend, constrain, think  # think None: the template decides
        self.sampling = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0)

    def answer(self, messages: list[dict], tools: list[dict]) -> tuple[ChatOutput, int]:
        """(the parsed answer, the number of `<tool_call>` blocks in the raw text)."""
        from core.infer.answer_format import AnswerFormat
        from core.infer.chat_output import ChatOutputParser, collect

        fmt = AnswerFormat.from_openai(tools) if self.constrain else None
        prompt, constraint = self.backend.prepare_chat(messages, tools or None, self.think, fmt)
        raw = "".join(self.backend.stream_ids(self.backend.tokenize(prompt), self.sampling, constraint))
        return collect(ChatOutputParser.for_prompt(prompt), [raw]), raw.count(CALL_OPEN)


class EndpointTarget:
    """Any OpenAI-compatible chat endpoint (tool calls as the server returns them)."""

    def __init__(self, base_url: str, model: str | None = None, api_key: str = "none", max_new_tokens: int = 256):
        from openai import OpenAI

        self.client, self.max_tokens = OpenAI(base_url=base_url, api_key=api_key), max_new_tokens
        self.model = model or self.client.models.list().data[0].id  # default: the server's (first) model

    def answer(self, messages: list[dict], tools: list[dict]) -> tuple[ChatOutput, int]:
        extra = {"tools": tools} if tools else {}
        reply = self.client.chat.completions.create(model=self.model, messages=messages, temperature=0.0,
                                                    max_tokens=self.max_tokens, **extra)
        msg = reply.choices[0].message
        out = ChatOutput(content=msg.content or "", reasoning=getattr(msg, "reasoning_content", None) or "")
        for call in msg.tool_calls or []:
            out.tool_calls.append(ToolCall(call.function.name, call.function.arguments or "{}", call.id))
        return out, len(out.tool_calls) + out.content.count(CALL_OPEN)  # a tag left in content did not parse


# ---- the loop -------------------------------------------------------------------------------------------------

def run_case(target, case: ToolCase, registry, max_turns: int = 3) -> CaseResult:
    from core.rl.agent import gt_share

    messages = [dict(m) for m in case.messages]
    calls, blocks, answer, turns = [], 0, "", 0
    for turns in range(1, max_turns + 1):
        out, n_blocks = target.answer(messages, case.tools)
        blocks += n_blocks
        calls += out.tool_calls
        answer = out.content.strip()
        if not out.tool_calls:
            break
        messages += [out.assistant_message(), *registry.answer(out.tool_calls)]
    valid = []
    for c in calls:
        tool = registry.tools.get(c.name)
        try:
            ok = tool is not None and c.name in {t["function"]["name"] for t in case.tools}
            ok = ok and (tool.check_arguments(json.loads(c.arguments)) is None)
        except Exception:
            ok = False
        valid.append(ok)
    return CaseResult(case.id, well_formed=bool(calls) and len(calls) == blocks,
                      right_tool=any(c.name == case.tool for c in calls), valid_arguments=bool(calls) and all(valid),
                      correct=gt_share(answer, case.gt) == 1.0, turns=turns,
                      calls=[{"name": c.name, "arguments": c.arguments} for c in calls], answer=answer[:500])


def answers_without_tools(target, case: ToolCase) -> bool:
    """Whether the model's own answer, with no tools declared, contains the ground truth."""
    from core.rl.agent import gt_share

    out, _ = target.answer(case.without_tools(), [])
    return gt_share(out.content, case.gt) == 1.0


def evaluate_tool_use(target, cases: list[ToolCase], max_turns: int = 3, max_new_tokens: int = 256,
                      without_tools: bool = True, progress=None, constrain: bool = False) -> dict:
    """Run every case (`target`: a BackendTarget/EndpointTarget, or a core.infer Backend, wrapped greedily, under
    constraints when `constrain`).

    Returns {"cases": [CaseResult as dict], "summary": rates and mean turns} plus the headline figures:
    prompts, well_formed_call_rate, right_tool_rate, accuracy_with_tools, accuracy_without_tools (the same
    prompts answered with no tools declared; None when `without_tools` is off) and a few examples."""
    from core.tools import builtin_registry

    if not hasattr(target, "answer"):
        target = BackendTarget(target, max_new_tokens, constrain)
    registry = builtin_registry()
    results, alone = [], []
    for i, case in enumerate(cases):
        results.append(run_case(target, case, registry, max_turns))
        if without_tools:
            alone.append(answers_without_tools(target, case))
        if progress is not None:
            progress(i + 1, len(cases))
    n = max(len(results), 1)
    summary = {key: sum(getattr(r, key) for r in results) / n
               for key in ("well_formed", "right_tool", "valid_arguments", "correct")}
    summary.update(cases=len(results), mean_turns=sum(r.turns for r in results) / n,
                   correct_without_tools=sum(alone) / n if without_tools else None)
    examples = [{"question": c.question, "calls": r.calls, "answer": r.answer} for c, r in zip(cases, results)][:3]
    return {"cases": [asdict(r) for r in results], "summary": summary, "prompts": len(results),
            "well_formed_call_rate": summary["well_formed"], "right_tool_rate": summary["right_tool"],
            "accuracy_with_tools": summary["correct"], "accuracy_without_tools": summary["correct_without_tools"],
            "examples": examples}


def sampled_coverage(target, cases: list[ToolCase], samples: int, temperature: float = 1.0, max_turns: int = 3,
                     progress=None) -> dict:
    """What an RL run could reinforce: every case answered `samples` times sampled as RL rollouts sample
    (`temperature`, no top-k or top-p) by a BackendTarget. Group advantages only move a model towards answers
    its samples find, so a case that is never solved gives its group no signal (docs/rl.md, "Before an RL run").

    Returns {"samples", "temperature", "solved": [times solved per case], "sampled": success rate over all
    answers, "pass_at_k": share of cases solved at least once, "signal": share solved sometimes but not always,
    "by_tool": the same three rates per case.tool}."""
    import torch

    from core.infer.sampling import SamplingParams
    from core.tools import builtin_registry

    if not isinstance(target, BackendTarget):
        raise ValueError("sampled coverage needs a checkpoint or a GGUF (an endpoint's sampling is its own)")
    greedy, registry = target.sampling, builtin_registry()
    target.sampling = SamplingParams(max_new_tokens=greedy.max_new_tokens, temperature=temperature, top_k=0,
                                     top_p=1.0)
    solved = [0] * len(cases)
    try:
        for k in range(samples):
            torch.manual_seed(k)  # a torch backend samples from torch's generator: the same draws on every call
            for i, case in enumerate(cases):
                solved[i] += run_case(target, case, registry, max_turns).correct
                if progress is not None:
                    progress(k * len(cases) + i + 1, samples * len(cases))
    finally:
        target.sampling = greedy

    def rates(idx: list[int]) -> dict:
        n = max(len(idx), 1)
        return {"cases": len(idx), "sampled": sum(solved[i] for i in idx) / (n * samples),
                "pass_at_k": sum(solved[i] > 0 for i in idx) / n,
                "signal": sum(0 < solved[i] < samples for i in idx) / n}

    by_tool: dict[str, list[int]] = {}
    for i, case in enumerate(cases):
        by_tool.setdefault(case.tool or "-", []).append(i)
    return {"samples": samples, "temperature": temperature, "solved": solved, **rates(list(range(len(cases)))),
            "by_tool": {tool: rates(idx) for tool, idx in sorted(by_tool.items())}}
