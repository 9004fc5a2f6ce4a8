"""Render dataset records as readable HTML for a QTextBrowser.

Conversations become bubbles (user and assistant in different colours, system muted), DPO pairs are shown
chosen | rejected side by side, pretrain text plain, RL prompt + expected answer. Qt's rich text supports a
subset of HTML 4 (tables, background colours, no flexbox), hence the table layout.
"""
from __future__ import annotations

import html
import json
from typing import Any

from .theme import COLORS

_ROLE_BG = {"user": COLORS["user"], "assistant": COLORS["assistant"], "system": COLORS["system"]}


def _esc(text: Any) -> str:
    return html.escape(str(text)).replace("\n", "<br>")


def bubbles(messages: list[dict]) -> str:
    rows = []
    for msg in messages if isinstance(messages, list) else []:
        role = str(msg.get("role", "?")) if isinstance(msg, dict) else "?"
        content = msg.get("content", "") if isinstance(msg, dict) else msg
        bg = _ROLE_BG.get(role, COLORS["system"])
        color = COLORS["muted"] if role == "system" else COLORS["text"]
        align = "right" if role == "user" else "left"
        rows.append(
            f'<table width="100%" cellspacing="0" cellpadding="0" style="margin:3px 0"><tr><td align="{align}">'
            f'<table cellpadding="7" style="background:{bg}; border-radius:8px"><tr><td>'
            f'<span style="color:{COLORS["muted"]}; font-size:8pt">{_esc(role)}</span><br>'
            f'<span style="color:{color}">{_esc(content)}</span></td></tr></table></td></tr></table>')
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
                f'{bubbles(record["chosen"])}</td>'
                f'<td width="50%" valign="top" style="background:{COLORS["rejected"]}"><b>rejected</b>'
                f'{bubbles(record["rejected"])}</td></tr></table>')
    elif "conversations" in record and "answer" in record:
        body = (bubbles(record["conversations"]) +
                f'<div style="margin:4px 0"><span style="color:{COLORS["muted"]}">expected answer:</span> '
                f'<b>{_esc(record["answer"])}</b></div>')
    elif "conversations" in record:
        body = bubbles(record["conversations"])
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
