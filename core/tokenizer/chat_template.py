"""The default chat template, the thinking switch, and the sandboxed jinja environment that renders templates.

One template, two forms (docs/tokenizer.md, "Chat template"):

- a conversation that uses tools or reasoning renders exactly as MiniMind v3's own template (minimind-3) renders
  it: the tools block in the system turn, `<tool_call>` JSON in assistant turns, `<tool_response>` turns, a
  `<think>` block in every assistant turn, no default system prompt, and a generation prompt that opens or skips
  thinking. "Uses tools or reasoning": `tools` given, a `tool` message, `tool_calls`, `reasoning_content`, a
  `</think>` in an assistant's content, or the thinking switch set (True or False);
- any other conversation renders as plain ChatML, as before: MiniMind's April-2025 template (default system
  prompt when there is none), every turn under its own `<|im_start|>{role}` header. Upstream v3 trains most plain
  replies without their empty `<think>\n\n</think>\n\n` too (it drops it with p = 0.8), so plain data keeps the
  form models trained here have always seen.

The thinking switch is upstream's `open_thinking`, also accepted under Qwen3's name `enable_thinking` (what
llama.cpp and the OpenAI-compatible servers pass). The template is stored in tokenizer_config.json, so
`transformers` renders exactly the same string; the environment below copies its settings (trim_blocks,
lstrip_blocks, loopcontrols, a non-ASCII-preserving `tojson`) for that reason.
"""
from __future__ import annotations

import json
from functools import lru_cache

import jinja2

from core.tokenizer.messages import normalize_messages
from core.tokenizer.template_sandbox import LimitedSandbox

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant"

# Tools block text: MiniMind v2/v3 template, itself Qwen2.5's. `thinking` = open_thinking, else enable_thinking.
CHAT_TEMPLATE = """\
{%- if open_thinking is defined and open_thinking is not none %}
    {%- set thinking = open_thinking %}
{%- elif enable_thinking is defined and enable_thinking is not none %}
    {%- set thinking = enable_thinking %}
{%- else %}
    {%- set thinking = none %}
{%- endif %}
{%- set ns = namespace(v3=(tools is defined and tools) or thinking is not none) %}
{%- for message in messages %}
    {%- if message.role == 'tool' or message.tool_calls or message.reasoning_content is string
           or (message.role == 'assistant' and message.content is string and '</think>' in message.content) %}
        {%- set ns.v3 = true %}
    {%- endif %}
{%- endfor %}
{%- if ns.v3 %}
    {%- if tools %}
        {{- '<|im_start|>system\\n' }}
        {%- if messages and messages[0].role == 'system' %}
            {{- messages[0].content + '\\n\\n' }}
        {%- endif %}
        {{- "# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
        {%- for tool in tools %}
            {{- '\\n' + tool | tojson }}
        {%- endfor %}
        {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
    {%- elif messages and messages[0].role == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
    {%- endif %}
    {%- for message in messages %}
        {%- set content = message.content if message.content is string else '' %}
        {%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}
            {{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>\\n' }}
        {%- elif message.role == 'assistant' %}
            {%- set reasoning = '' %}
            {%- if message.reasoning_content is string %}
                {%- set reasoning = message.reasoning_content %}
            {%- elif '</think>' in content %}
                {%- set reasoning = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}
                {%- set content = content.split('</think>')[-1].lstrip('\\n') %}
            {%- endif %}
            {{- '<|im_start|>assistant\\n<think>\\n' + reasoning.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') }}
            {%- for call in message.tool_calls or [] %}
                {%- set fn = call.function if call.function else call %}
                {{- ('\\n' if content or not loop.first else '') + '<tool_call>\\n{"name": "' }}
                {{- fn.name }}
                {{- '", "arguments": ' }}
                {{- fn.arguments if fn.arguments is string else fn.arguments | tojson }}
                {{- '}\\n</tool_call>' }}
            {%- endfor %}
            {{- '<|im_end|>\\n' }}
        {%- elif message.role == 'tool' %}
            {%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}
                {{- '<|im_start|>user' }}
            {%- endif %}
            {{- '\\n<tool_response>\\n' + content + '\\n</tool_response>' }}
            {%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}
                {{- '<|im_end|>\\n' }}
            {%- endif %}
        {%- endif %}
    {%- endfor %}
    {%- if add_generation_prompt %}
        {{- '<|im_start|>assistant\\n' + ('<think>\\n' if thinking else '<think>\\n\\n</think>\\n\\n') }}
    {%- endif %}
{%- else %}
    {%- if messages and messages[0].role == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nDEFAULT_SYSTEM_PROMPT<|im_end|>\\n' }}
    {%- endif %}
    {%- for message in messages %}
        {%- if not (loop.first and message.role == 'system') %}
            {{- '<|im_start|>' + message.role + '\\n' + (message.content if message.content is string else '') + '<|im_end|>\\n' }}
        {%- endif %}
    {%- endfor %}
    {%- if add_generation_prompt %}
        {{- '<|im_start|>assistant\\n' }}
    {%- endif %}
{%- endif %}
""".replace("DEFAULT_SYSTEM_PROMPT", DEFAULT_SYSTEM_PROMPT)


def _raise(message: str):
    raise jinja2.exceptions.TemplateError(message)


@lru_cache(maxsize=8)
def compile_template(source: str) -> jinja2.Template:
    """Compile a chat template in a sandbox with limits on size and work (templates come with downloaded
    tokenizers and GGUF files; core.tokenizer.template_sandbox)."""
    env = LimitedSandbox(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = _tojson
    env.limit_filters()
    env.globals["raise_exception"] = _raise
    return env.from_string(source)


def _tojson(value, indent=None, separators=None, sort_keys=False) -> str:  # = transformers' tojson
    return json.dumps(value, ensure_ascii=False, indent=indent, separators=separators, sort_keys=sort_keys)


def thinking_kwargs(enable_thinking: bool | None = None, open_thinking: bool | None = None) -> dict:
    """The thinking switch under both names (upstream v3 reads `open_thinking`, Qwen3/v2 `enable_thinking`), so
    any template sees it; {} when unset (None), which leaves the switch undefined for the template."""
    thinking = enable_thinking if enable_thinking is not None else open_thinking
    return {} if thinking is None else {"enable_thinking": bool(thinking), "open_thinking": bool(thinking)}


def render(source: str, messages: list[dict], add_generation_prompt: bool = False, tools=None,
           enable_thinking: bool | None = None, open_thinking: bool | None = None, **extra) -> str:
    """Render `messages` with the template `source`.

    Messages may be in a record's minimind-3 form (`tools` / `tool_calls` as JSON strings): they are normalised
    first (`normalize_messages`); `tools` given here wins over a system message's. `enable_thinking` (alias
    `open_thinking`): True opens a `<think>` block in the generation prompt, False closes an empty one, None
    leaves the choice to the template (ours: plain ChatML unless the conversation uses tools or reasoning).
    """
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message:
            raise ValueError(f"messages[{i}]: expected a dict with 'role' and 'content', got {message!r}")
    messages, tools = normalize_messages(messages, tools)
    extra.update(thinking_kwargs(enable_thinking, open_thinking))
    try:
        return compile_template(source).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                               tools=tools, **extra)
    except jinja2.TemplateError:
        raise
    except Exception as exc:  # 1/0, a range limit (OverflowError), 'a' + 1, RecursionError: the template's fault
        raise jinja2.exceptions.TemplateRuntimeError(
            f"the chat template failed while rendering: {type(exc).__name__}: {exc}") from exc
