"""`minimind eval tools`: what each case reports, on scripted answers (the scoring) and on a real checkpoint and
GGUF-free torch backend (the loop end to end, through the CLI)."""
from __future__ import annotations

import json

import pytest

from core.eval.tool_use import ToolCase, builtin_cases, evaluate_tool_use, load_cases
from core.infer.chat_output import parse_chat_output


class ScriptedTarget:
    """Answers with fixed model texts in turn (a stand-in for a model whose output is known), parsed by the same
    parser the backends use."""

    def __init__(self, *texts: str):
        self.texts, self.seen = list(texts), []

    def answer(self, messages, tools):
        self.seen.append((messages, tools))
        text = self.texts.pop(0)
        return parse_chat_output(text), text.count("<tool_call>")


CALL = '<tool_call>{"name": "calculate_math", "arguments": {"expression": "256 * 37"}}</tool_call>'


def _case():
    return builtin_cases()[0]  # "What is 256 * 37?" -> 9472 with calculate_math


def test_a_good_call_then_the_answer_scores_every_column():
    target = ScriptedTarget(CALL, "It is 9472.", "Maybe 9000.")
    result = evaluate_tool_use(target, [_case()])
    [case] = result["cases"]
    assert case == {"id": "math-1", "well_formed": True, "right_tool": True, "valid_arguments": True,
                    "correct": True, "turns": 2, "calls": [{"name": "calculate_math",
                                                            "arguments": '{"expression": "256 * 37"}'}],
                    "answer": "It is 9472."}
    second_turn, _ = target.seen[1]
    assert second_turn[-1]["role"] == "tool" and json.loads(second_turn[-1]["content"]) == {"result": 9472}
    without, tools = target.seen[2]  # the baseline: same question, no tools declared
    assert tools == [] and all("tools" not in m for m in without)
    assert result["accuracy_with_tools"] == 1.0 and result["accuracy_without_tools"] == 0.0
    assert result["summary"]["mean_turns"] == 2 and result["well_formed_call_rate"] == 1.0


def test_broken_calls_wrong_tools_and_bad_arguments_are_told_apart():
    broken = ScriptedTarget('<tool_call>{"name": "calculate_math", "arguments": {"expr', "no idea")
    [r] = evaluate_tool_use(broken, [_case()], without_tools=False)["cases"]
    assert (r["well_formed"], r["right_tool"], r["valid_arguments"], r["correct"]) == (False, False, False, False)
    wrong = ScriptedTarget('<tool_call>{"name": "unit_converter", "arguments": {"value": 1}}</tool_call>',
                           "done")
    [r] = evaluate_tool_use(wrong, [_case()], without_tools=False)["cases"]
    assert r["well_formed"] and not r["right_tool"] and not r["valid_arguments"] and r["turns"] == 2


def test_the_turn_limit_bounds_a_model_that_keeps_calling():
    target = ScriptedTarget(CALL, CALL, CALL)
    [r] = evaluate_tool_use(target, [_case()], max_turns=3, without_tools=False)["cases"]
    assert r["turns"] == 3 and len(r["calls"]) == 3 and not r["correct"]


def test_case_files_in_agent_task_form_load_with_their_tools(tmp_path):
    from tests.fixtures.rl import write_agent_tasks

    cases = load_cases(write_agent_tasks(tmp_path / "cases.jsonl", pairs=((3, 4),)))
    assert [(c.question, c.gt, c.tool, [t["function"]["name"] for t in c.tools]) for c in cases] == \
        [("What is 3 * 4?", [12], "calculate_math", ["calculate_math"])]
    assert isinstance(cases[0], ToolCase) and cases[0].messages[0]["role"] == "system"


def test_the_cli_runs_a_real_checkpoint_and_writes_the_report(tiny_sft_checkpoint, tmp_path, capsys):
    from core.cli import main
    from tests.fixtures.rl import write_agent_tasks

    cases = write_agent_tasks(tmp_path / "cases.jsonl", pairs=((3, 4), (5, 6)))
    out = tmp_path / "report.json"
    assert main(["eval", "tools", "--model", str(tiny_sft_checkpoint), "--cases", str(cases), "--max-turns", "2",
                 "--max-new-tokens", "24", "--samples", "2", "--out", str(out)]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["summary"]["cases"] == 2 and len(report["cases"]) == 2
    sampled = report["sampled"]  # --samples: two sampled answers per case, counted per case
    assert sampled["samples"] == 2 and len(sampled["solved"]) == 2 and all(0 <= n <= 2 for n in sampled["solved"])
    assert all(1 <= c["turns"] <= 2 for c in report["cases"])
    printed = capsys.readouterr().out
    assert "well-formed" in printed and "total" in printed and "correct without tools" in printed
    assert "pass@2" in printed and "what RL can reinforce" in printed
    # an endpoint samples as its server does: refused before a single case is asked (nothing listens on port 9)
    assert main(["eval", "tools", "--endpoint", "http://127.0.0.1:9/v1", "--samples", "2"]) == 2
    assert "--samples needs --model" in capsys.readouterr().err


def test_an_openai_compatible_endpoint_is_evaluated_through_the_official_client(api_server, tmp_path):
    """A real `minimind serve` on 127.0.0.1: the tools go out in the request, the answers come back parsed."""
    from core.eval.tool_use import EndpointTarget
    from tests.fixtures.rl import write_agent_tasks

    target = EndpointTarget(api_server.url, max_new_tokens=16)
    cases = load_cases(write_agent_tasks(tmp_path / "cases.jsonl", pairs=((3, 4), (5, 6))))
    result = evaluate_tool_use(target, cases, max_turns=2)
    assert result["summary"]["cases"] == 2 and all(1 <= c["turns"] <= 2 for c in result["cases"])
    assert result["accuracy_without_tools"] is not None


def test_sampled_coverage_counts_what_sampling_solves_per_case_and_tool(tool_checkpoint):
    """The tool model solves its one conversation in every sample and can never produce another product: pass@k
    is the solved case's share, and neither case would give an RL group a signal (always or never solved)."""
    from core.eval.tool_use import BackendTarget, EndpointTarget, ToolCase, sampled_coverage
    from core.infer.backend import TorchBackend
    from core.tools import builtin_registry
    from tests.fixtures.tool_model import QUESTION
    from webdemo.chat import DEFAULT_SYSTEM

    tools = builtin_registry().schemas(["calculate_math"])
    cases = [ToolCase([{"role": "system", "content": DEFAULT_SYSTEM}, {"role": "user", "content": q}], gt, tool,
                      tools=tools) for q, gt, tool in ((QUESTION, [1776], "calculate_math"),
                                                       ("What is 12 * 12?", [144], "other"))]
    with TorchBackend(tool_checkpoint) as backend:
        target = BackendTarget(backend, 160, think=True)  # as the tool model learned its conversation
        cov = sampled_coverage(target, cases, samples=3, temperature=0.5, max_turns=2)
        assert target.sampling.temperature == 0.0  # greedy again afterwards
    assert cov["solved"] == [3, 0] and cov["pass_at_k"] == 0.5 and cov["signal"] == 0.0
    assert cov["by_tool"]["calculate_math"] == {"cases": 1, "sampled": 1.0, "pass_at_k": 1.0, "signal": 0.0}
    assert cov["by_tool"]["other"]["pass_at_k"] == 0.0
    with pytest.raises(ValueError, match="checkpoint or a GGUF"):
        sampled_coverage(EndpointTarget.__new__(EndpointTarget), cases, 1)
