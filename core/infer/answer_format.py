"""What an answer may be — text, a call to an offered tool, JSON of a schema — and that rule as a grammar.

`AnswerFormat` holds OpenAI's `tools`, `tool_choice` and `response_format` once they are validated. Its grammar is
written for the two engines that enforce it while decoding (core.infer.constraint): a Lark grammar for llguidance
(torch backend) and a GBNF grammar for llama.cpp (GGUF backend). Both say the same thing:

    text          free text without a tool tag, or JSON of `json_schema` when a response format is set
    call          <tool_call>\\n{"name": <an offered tool>, "arguments": <JSON valid for its parameters>}\\n</tool_call>
    none          text
    auto          text, optionally followed by calls (with a response format: that JSON, or calls)
    required      one or more calls, nothing else
    named         one or more calls to that tool
    (thinking)    when the prompt opened <think>, free reasoning up to </think> comes first

Calls are written exactly as the chat template renders them (", " and ": " separators, one newline inside each
tag), the form the model was trained on. Argument objects whose schema lists properties and says nothing about
`additionalProperties` are closed: a small model's invented keys are exactly what the constraint is for
(OpenAI's strict mode closes them too).
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field

from core.tokenizer.messages import tool_name

TOOL_CHOICES = ("none", "auto", "required")
# The template's own JSON (core.tokenizer.chat_template: tojson = json.dumps defaults), for llguidance.
JSON_FORM = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


class AnswerFormatError(ValueError):
    """A tool choice or response format that cannot be served; `param` names the request field."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class AnswerFormat:
    tools: list[dict] = field(default_factory=list)   # OpenAI function tools offered
    tool_choice: str = "auto"                          # "none" | "auto" | "required" | an offered tool's name
    json_schema: dict | None = None                    # a text answer must be JSON of this schema
    parallel_calls: bool = True                        # False: at most one call per answer

    @classmethod
    def from_openai(cls, tools: list[dict] | None = None, tool_choice=None, response_format=None,
                    parallel_tool_calls: bool | None = None) -> "AnswerFormat":
        """OpenAI's request fields -> an AnswerFormat; an AnswerFormatError names the field that is wrong.
        `tool_choice` is "none" | "auto" | "required" | {"type": "function", "function": {"name": ...}} (None:
        auto); `response_format` is {"type": "text" | "json_object" | "json_schema", "json_schema": {...}}."""
        tools = [t for t in tools or []]
        names = [tool_name(t) for t in tools]
        choice = "auto" if tool_choice is None else tool_choice
        if isinstance(choice, dict):
            fn = choice.get("function") if isinstance(choice.get("function"), dict) else {}
            choice = fn.get("name")
            if choice not in names:
                raise AnswerFormatError(f"tool_choice names {choice!r}, which is not among the offered tools "
                                        f"{names}", "tool_choice")
        elif choice not in TOOL_CHOICES:
            raise AnswerFormatError(f"tool_choice must be one of {TOOL_CHOICES} or a function, got {choice!r}",
                                    "tool_choice")
        if choice == "required" and not tools:
            raise AnswerFormatError("tool_choice 'required' needs at least one tool in tools", "tool_choice")
        return cls(tools, choice, _response_schema(response_format), parallel_tool_calls is not False)

    # ---- what the request asks ------------------------------------------------------------------------------
    @property
    def callable_tools(self) -> list[dict]:
        if self.tool_choice == "none":
            return []
        if self.tool_choice in ("auto", "required"):
            return self.tools
        return [t for t in self.tools if tool_name(t) == self.tool_choice]

    @property
    def rendered_tools(self) -> list[dict] | None:
        """The tools the prompt shows (none for tool_choice "none", as the model must not call)."""
        return (self.tools or None) if self.tool_choice != "none" else None

    @property
    def allows_text(self) -> bool:
        return self.tool_choice in ("none", "auto") or not self.callable_tools

    @property
    def constrains(self) -> bool:
        """Whether decoding needs a grammar at all (free text with no tools offered needs none)."""
        return bool(self.tools) or self.json_schema is not None

    def call_schema(self) -> dict:
        """JSON schema of the object inside <tool_call> tags: one of the callable tools with its parameters."""
        options = [{"type": "object",
                    "properties": {"name": {"const": tool_name(t)}, "arguments": _parameters(t)},
                    "required": ["name", "arguments"], "additionalProperties": False}
                   for t in self.callable_tools]
        return options[0] if len(options) == 1 else {"anyOf": options}

    # ---- grammars ---------------------------------------------------------------------------------------------
    def _answer(self) -> str:
        """The answer rule, the same in both grammars (text, json, calls, ws are rules or lexemes of each)."""
        text = "ws json" if self.json_schema is not None else "text"
        if not self.callable_tools:
            return text
        if not self.allows_text:
            return "ws calls"
        return "ws json | ws calls" if self.json_schema is not None else "text calls?"

    def lark(self, thinking: bool = False) -> str:
        """The grammar for llguidance. Tags are single tokens (`<tool_call>`), which its text lexemes never match;
        TEXT also refuses the tag spelled out in pieces, so no call escapes the constraint."""
        answer = self._answer().replace("text", "TEXT").replace("ws", "WS?")
        lines = ["%llguidance {}", f"start: {'REASONING </think> ' if thinking else ''}{answer}",
                 r"TEXT: /(.|\n)*/ & ~/(.|\n)*<\/?tool_call>(.|\n)*/", r"REASONING: /(.|\n)*/", r"WS: /[ \t\n]{1,4}/"]
        if self.callable_tools:
            lines += ['calls: call ("\\n" call)*' if self.parallel_calls else "calls: call", 'call: <tool_call> "\\n" call_json "\\n" </tool_call>',
                      "call_json: %json " + json.dumps(_with_form(self.call_schema()))]
        if self.json_schema is not None:
            lines.append("json: %json " + json.dumps(_with_form(self.json_schema)))
        return "\n".join(lines)

    def gbnf(self, thinking: bool = False) -> tuple[str, list[str]]:
        """(the grammar for llama.cpp, the tokens that start it). Without trigger tokens the grammar holds from
        the first token; with them it holds from the first trigger token on (llama.cpp's lazy grammar): free text
        runs until `<tool_call>`, a reasoning block until `</think>`. JSON rules come from llama-cpp-python's
        schema converter."""
        from llama_cpp.llama_grammar import SchemaConverter

        answer = self._answer()
        if answer == "text":
            return "root ::= (!<tool_call>)*", []
        converter = SchemaConverter(prop_order={"name": 0, "arguments": 1}, allow_fetch=False, dotall=False,
                                    raw_pattern=False)
        rules = ['ws ::= [ \\t\\n]{0,4}']  # bounded: a small model can loop on whitespace
        if self.callable_tools:
            converter.visit(converter.resolve_refs(self.call_schema(), "tool_call"), "call-json")
            rules += ['call ::= <tool_call> "\\n" call-json "\\n" </tool_call>', ('calls ::= call ("\\n" call)*' if self.parallel_calls else "calls ::= call")]
        if self.json_schema is not None:
            converter.visit(converter.resolve_refs(copy.deepcopy(self.json_schema), "response_format"), "json")
        rules.insert(0, converter.format_grammar())
        if answer == "text calls?":
            return "\n".join(rules + ["root ::= calls"]), ["<tool_call>"]
        if thinking:
            return "\n".join(rules + [f"root ::= </think> ({answer})"]), ["</think>"]
        return "\n".join(rules + [f"root ::= {answer}"]), []


def _response_schema(response_format) -> dict | None:
    if response_format is None:
        return None
    if not isinstance(response_format, dict) or response_format.get("type") not in ("text", "json_object",
                                                                                    "json_schema"):
        raise AnswerFormatError("response_format must be {\"type\": \"text\" | \"json_object\" | \"json_schema\"}",
                                "response_format")
    if response_format["type"] == "text":
        return None
    if response_format["type"] == "json_object":
        return {"type": "object"}
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise AnswerFormatError("response_format.json_schema.schema must be a JSON schema object",
                                "response_format.json_schema.schema")
    return schema


def _parameters(tool: dict) -> dict:
    fn = tool.get("function") if isinstance(tool.get("function"), dict) else tool
    params = copy.deepcopy(fn.get("parameters")) if isinstance(fn.get("parameters"), dict) else {}
    params.setdefault("type", "object")
    return _closed(params)


def _closed(schema: dict) -> dict:
    """Objects that list their properties accept no others unless the schema says so (module docstring)."""
    if schema.get("type") == "object" and schema.get("properties") and "additionalProperties" not in schema:
        schema["additionalProperties"] = False
    for sub in (schema.get("properties") or {}).values():
        if isinstance(sub, dict):
            _closed(sub)
    return schema


def _with_form(schema: dict) -> dict:
    return {**schema, "x-guidance": JSON_FORM}
