"""Render dataset records as readable HTML for a QTextBrowser.

Conversations become bubbles (user and assistant in different colours, system muted), DPO pairs are shown
chosen | rejected side by side, pretrain text plain, RL prompt + expected answer. minimind-3 parts get their own
blocks inside a bubble: the tools a system message declares, an assistant's reasoning and each tool call, and
tool responses as their own bubbles. With `show_loss`, each bubble says whether training learns it
(core.tokenizer.messages.carries_loss, the rule of core.data's loss masks). Qt's rich text supports a subset of
HTML 4 (tables, background colours, no flexbox), hence the table layout.
"""
from __future__ import annotations

import html
import json
from typing import Any

from core.tokenizer.messages import (MessageError, call_function, carries_loss, normalize_messages,
                                     split_reasoning, tool_name)

from .theme import COLORS

_ROLE_BG = {"user": COLORS["user"], "assistant": COLORS["assistant"], "system": COLORS["system"],
            "tool": COLORS["system"]}
_ROLE_LABEL = {"tool": "tool response"}


def _esc(text: Any) -> str:
    return html.escape(str(text)).replace("\n", "<br>")


def _label(text: str) -> str:
    return f'<span style="color:{COLORS["muted"]}; font-size:8pt">{_esc(text)}</span>'


def _block(label: str, body: str, bg: str) -> str:
    """A labelled inner block (reasoning, tool call, tools) inside a bubble."""
    return (f'<table width="100%" cellpadding="5" style="margin:3px 0; background:{bg}"><tr><td>'
            f'{_label(label)}<br>{body}</td></tr></table>')


def _code(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return f'<span style="font-family:monospace">{_esc(text)}</span>'


def _parts(msg: dict, role: str, tools) -> list[str]:
    """The blocks of one message: tools, reasoning, the reply, tool calls."""
    parts = []
    if role == "system" and tools:
        parts.append(_block("tools", _code(", ".join(tool_name(t) or "?" for t in tools)), COLORS["panel"]))
    reasoning, content = split_reasoning(msg) if role == "assistant" else ("", msg.get("content") or "")
    if reasoning:
        parts.append(_block("reasoning", f'<i style="color:{COLORS["muted"]}">{_esc(reasoning)}</i>',
                            COLORS["panel"]))
    color = COLORS["muted"] if role == "system" else COLORS["text"]
    if content or not parts:
        parts.append(_code(content) if role == "tool" else f'<span style="color:{color}; white-space:pre-wrap">{_esc(content or "")}</span>')
    calls = msg.get("tool_calls")
    for call in calls if isinstance(calls, list) else ([calls] if calls else []):
        fn = call_function(call)
        name, args = (fn.get("name", "?"), fn.get("arguments", "")) if fn else ("(unreadable)", call)
        parts.append(_block(f"tool call · {name}", _code(args), COLORS["accent_soft"]))
    return parts


def bubbles(messages: list[dict], show_loss: bool = False) -> str:
    """One bubble per message; `show_loss` tags each with whether training learns it."""
    messages = messages if isinstance(messages, list) else []
    try:
        messages, tools = normalize_messages(messages)
    except MessageError:  # shown as written; `minimind data check` names the problem
        tools = None
    rows = []
    for msg in messages:
        msg = msg if isinstance(msg, dict) else {"role": "?", "content": msg}
        role = str(msg.get("role", "?"))
        bg = _ROLE_BG.get(role, COLORS["system"])
        align = "right" if role == "user" else "left"
        head = _label(_ROLE_LABEL.get(role, role))
        if show_loss:
            head += (f' <span style="background:{COLORS["loss"]}; font-size:8pt">learned</span>'
                     if carries_loss(msg) else _label(" · no loss"))
        rows.append(
            f'<table width="100%" cellspacing="0" cellpadding="0" style="margin:3px 0"><tr><td align="{align}">'
            f'<table cellpadding="7" style="background:{bg}; border-radius:8px"><tr><td>'
            f'{head}<br>{"".join(_parts(msg, role, tools))}</td></tr></table></td></tr></table>')
    return "".join(rows)


def record_html(record: Any, line_no: int | None = None) -> str:
    """HTML for one record of any kind; unknown shapes fall back to pretty JSON."""
    head = (f'<div style="color:{COLORS["muted"]}; font-size:8pt; margin-top:8px">line {line_no}</div>'
            if line_no is not None else "")
    if not isinstance(record, dict):
        return head + f"<pre>{_esc(record)}</pre>"
    if "chosen" in record and "rejected" in record:
        body = ('<table width="100%" cellspacing="6"><tr>'
                f'<td width="50%" valign="top" style="background:{COLORS["chosen"]}"><b>chosen</b>'
                f'{bubbles(record["chosen"], show_loss=True)}</td>'
                f'<td width="50%" valign="top" style="background:{COLORS["rejected"]}"><b>rejected</b>'
                f'{bubbles(record["rejected"], show_loss=True)}</td></tr></table>')
    elif "conversations" in record and "answer" in record:
        body = (bubbles(record["conversations"]) +
                f'<div style="margin:4px 0"><span style="color:{COLORS["muted"]}">expected answer:</span> '
                f'<b>{_esc(record["answer"])}</b></div>')
    elif "conversations" in record:
        body = bubbles(record["conversations"], show_loss=True)
    elif "text" in record:
        body = f'<div style="white-space:pre-wrap">{_esc(record["text"])}</div>'
    else:
        body = f"<pre>{_esc(json.dumps(record, ensure_ascii=False, indent=1))}</pre>"
    return head + body


def raw_line_html(line: str, error: str, line_no: int | None = None) -> str:
    """A line that is not valid JSON: show the problem and the raw text."""
    head = f'<div style="color:{COLORS["muted"]}; font-size:8pt; margin-top:8px">line {line_no}</div>'
    return (head + f'<div style="color:{COLORS["bad"]}">{_esc(error)}</div>'
            f'<pre style="color:{COLORS["muted"]}">{_esc(line[:2000])}</pre>')


def page_html(items: list[tuple[int, str]]) -> str:
    """Join rendered records, separated by thin rules."""
    # Qt draws <hr> as a heavy black rule; a one-pixel table row in the border colour reads lighter
    sep = (f'<table width="100%" cellspacing="0" cellpadding="0" style="margin:6px 0"><tr>'
           f'<td style="background:{COLORS["border"]}; font-size:1px">&nbsp;</td></tr></table>')
    return sep.join(h for _, h in items)
