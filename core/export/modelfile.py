"""The Ollama Modelfile written beside every GGUF: `ollama create minimind -f FILE.Modelfile`.

Ollama renders prompts with its own Go template, not the file's jinja chat template, so OLLAMA_TEMPLATE restates
our default chat template (core/tokenizer/chat_template.py) in Ollama's variables (its docs/template.md):

- a conversation with tools (`.Tools`), a tool turn, tool calls (`.ToolCalls`), reasoning (`.Thinking`) or the
  think switch set (`.IsThinkSet`) renders in the minimind-3 form: the tools block in the system turn,
  `<tool_call>` JSON in assistant turns, consecutive tool results in one user turn of `<tool_response>` blocks,
  a `<think>` block in every assistant turn, and a generation prompt that opens thinking when `.Think` is true and
  closes an empty block otherwise;
- any other conversation renders as plain ChatML with the default system prompt.

What Ollama does its own way (not checkable here; Ollama is not installed on our machines): it writes tool
schemas and call arguments with Go's JSON encoder (no space after `,` and `:`), and it merges consecutive
messages of the same role before rendering.
"""
from __future__ import annotations

from pathlib import Path

OLLAMA_TEMPLATE = """\
{{- $v3 := or .Tools .IsThinkSet }}
{{- range .Messages }}{{ if or (eq .Role "tool") .ToolCalls .Thinking }}{{ $v3 = true }}{{ end }}{{ end }}
{{- if $v3 }}
{{- if .Tools }}<|im_start|>system
{{ if .System }}{{ .System }}

{{ end }}# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{{- range .Tools }}
{"type": "function", "function": {{ .Function }}}
{{- end }}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> \
XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
{{ else if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}
{{- $prev := "" }}
{{- range .Messages }}
{{- if and (eq $prev "tool") (ne .Role "tool") }}<|im_end|>
{{ end }}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
<think>
{{ .Thinking }}
</think>

{{ .Content }}
{{- $content := .Content }}
{{- range $i, $call := .ToolCalls }}{{ if or $i $content }}
{{ end }}<tool_call>
{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}
</tool_call>{{ end }}<|im_end|>
{{ else if eq .Role "tool" }}{{ if ne $prev "tool" }}<|im_start|>user{{ end }}
<tool_response>
{{ .Content }}
</tool_response>
{{- end }}
{{- $prev = .Role }}
{{- end }}
{{- if eq $prev "tool" }}<|im_end|>
{{ end }}<|im_start|>assistant
{{ if .Think }}<think>
{{ else }}<think>

</think>

{{ end }}
{{- else }}<|im_start|>system
{{ if .System }}{{ .System }}{{ else }}DEFAULT_SYSTEM_PROMPT{{ end }}<|im_end|>
{{ range .Messages }}{{ if ne .Role "system" }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}{{ end }}<|im_start|>assistant
{{ end }}"""

STOP_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|im_start|>")


def modelfile_text(gguf_name: str) -> str:
    from core.tokenizer.chat_template import DEFAULT_SYSTEM_PROMPT

    template = OLLAMA_TEMPLATE.replace("DEFAULT_SYSTEM_PROMPT", DEFAULT_SYSTEM_PROMPT)
    stops = "".join(f'PARAMETER stop "{t}"\n' for t in STOP_TOKENS)
    return f'FROM ./{gguf_name}\n\nTEMPLATE """{template}"""\n\n{stops}'


def write_modelfile(gguf_file: Path) -> Path:
    """`<stem>.Modelfile` beside the GGUF (one per file: f16 and q8_0 exports may share a folder)."""
    path = Path(gguf_file).with_suffix(".Modelfile")
    path.write_text(modelfile_text(Path(gguf_file).name), encoding="utf-8")
    return path
