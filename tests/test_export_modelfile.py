"""The Ollama Modelfile: its Go template has the tool and thinking branches, and renders what our template does.

Ollama itself is not installed here. Where a Go toolchain is (`go` on PATH), the template runs in Go's own
text/template on data shaped like Ollama's template values (docs/template.md: Messages[].Role/Content/Thinking/
ToolCalls[].Function.Name/Arguments, Tools[].Function, System, Think, IsThinkSet), with tool JSON pre-written in
Python's spacing so that only the template's structure is compared; otherwise those tests skip.
"""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from core.export.modelfile import OLLAMA_TEMPLATE, modelfile_text, write_modelfile
from core.export.parity import CHAT_CASES, TOOL_TURNS, WEATHER_TOOL
from core.tokenizer.chat_template import CHAT_TEMPLATE

GO_RENDERER = r"""
package main

import (
	"encoding/json"
	"os"
	"text/template"
)

type Call struct{ Function struct{ Name, Arguments string } }
type Message struct {
	Role, Content, Thinking string
	ToolCalls               []Call
}
type Tool struct{ Type, Function string }
type Values struct {
	Messages          []Message
	Tools             []Tool
	System, Prompt    string
	Think, IsThinkSet bool
}

func main() {
	var in struct {
		Template string
		Values   Values
	}
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		panic(err)
	}
	t := template.Must(template.New("m").Parse(in.Template))
	if err := t.Execute(os.Stdout, in.Values); err != nil {
		panic(err)
	}
}
"""


def test_modelfile_has_the_tool_and_thinking_branches(tmp_path):
    path = write_modelfile(tmp_path / "m-q8_0.gguf")
    text = path.read_text()
    assert path.name == "m-q8_0.Modelfile" and text.startswith("FROM ./m-q8_0.gguf\n")
    template = text.split('TEMPLATE """', 1)[1].split('"""', 1)[0]
    for piece in ("{{- if .Tools }}", "{{- range .Tools }}", "{{- range .Messages }}", "{{ .Thinking }}",
                  "range $i, $call := .ToolCalls", '"arguments": {{ .Function.Arguments }}}', ".IsThinkSet",
                  "{{ if .Think }}<think>\n{{ else }}<think>\n\n</think>\n\n{{ end }}", "<tool_response>",
                  "You are a helpful assistant"):
        assert piece in template, piece
    assert 'PARAMETER stop "<|im_end|>"' in text and "SYSTEM" not in text  # the default prompt is in the template


def ollama_values(case: dict) -> dict:
    """What Ollama hands its template for a chat: system text apart, reasoning in Thinking, tool JSON as text."""
    system = "\n\n".join(m["content"] for m in case["messages"] if m["role"] == "system")
    messages = []
    for m in case["messages"]:
        content, thinking = m.get("content") or "", m.get("reasoning_content") or ""
        if "</think>" in content:
            thinking = content.split("</think>")[0].split("<think>")[-1].strip("\n")
            content = content.split("</think>")[-1].lstrip("\n")
        calls = [{"Function": {"Name": c["function"]["name"], "Arguments": c["function"]["arguments"]
                               if isinstance(c["function"]["arguments"], str)
                               else json.dumps(c["function"]["arguments"], ensure_ascii=False)}}
                 for c in m.get("tool_calls") or []]
        messages.append({"Role": m["role"], "Content": content, "Thinking": thinking, "ToolCalls": calls})
    tools = [{"Type": "function", "Function": json.dumps(t["function"], ensure_ascii=False)}
             for t in case["tools"] or []]
    think = case["enable_thinking"]
    return {"Messages": messages, "Tools": tools, "System": system, "Think": bool(think),
            "IsThinkSet": think is not None}


@pytest.fixture(scope="module")
def go_render(tmp_path_factory):
    if shutil.which("go") is None:
        pytest.skip("no Go toolchain: the Ollama template cannot be executed here")
    work = tmp_path_factory.mktemp("ollama-template")
    (work / "main.go").write_text(GO_RENDERER)
    subprocess.run(["go", "build", "-o", "render", "main.go"], cwd=work, check=True, capture_output=True,
                   env={"GOCACHE": str(work / "cache"), "HOME": str(work), "PATH": "/usr/bin:/bin",
                        "GO111MODULE": "off"}, timeout=300)

    def render(values: dict) -> str:
        template = OLLAMA_TEMPLATE.replace("DEFAULT_SYSTEM_PROMPT", "You are a helpful assistant")
        out = subprocess.run([str(work / "render")], input=json.dumps({"Template": template, "Values": values}),
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout
    return render


@pytest.mark.parametrize("case", range(len(CHAT_CASES)))
def test_ollama_template_renders_like_our_chat_template(case, go_render, tiny_tokenizer):
    """Tools + tool calls + grouped tool responses + reasoning, thinking on, thinking off, plain chat."""
    c = CHAT_CASES[case]
    assert tiny_tokenizer.chat_template == CHAT_TEMPLATE  # the template the Modelfile restates
    expected = tiny_tokenizer.apply_chat_template(c["messages"], add_generation_prompt=True, tools=c["tools"],
                                                  enable_thinking=c["enable_thinking"])
    assert go_render(ollama_values(c)) == expected


def test_fixtures_cover_tools_calls_responses_and_reasoning():
    roles = [m["role"] for m in TOOL_TURNS]
    assert roles.count("tool") == 2 and any(m.get("tool_calls") for m in TOOL_TURNS)
    assert any(m.get("reasoning_content") for m in TOOL_TURNS) and WEATHER_TOOL["function"]["name"]
    assert modelfile_text("x.gguf").count("TEMPLATE") == 1
