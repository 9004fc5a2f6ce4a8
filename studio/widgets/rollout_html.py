"""Render one logged RL rollout sample (core.rl.transcript.SampleView) as HTML for a QTextBrowser.

The prompt's turns, then the completion's, with the blocks of a dataset record (records_html.bubbles): a system
turn shows its tools as a short list of names instead of the template's JSON block, tool calls and tool
responses are blocks of their own. A heading line separates the prompt from the completion and carries the
reward and its breakdown.
"""
from __future__ import annotations

import html

from core.rl.transcript import SampleView

from .records_html import bubbles
from .theme import COLORS


def _heading(text: str) -> str:
    return (f'<div style="color:{COLORS["muted"]}; font-size:8pt; margin-top:8px; font-weight:bold">'
            f'{html.escape(text)}</div>')


def _reward_text(sample: dict) -> str:
    reward = sample.get("reward")
    parts = [f"reward {reward:.3f}"] if isinstance(reward, (int, float)) else []
    parts += [f"{k} {v:.2f}" if isinstance(v, (int, float)) else f"{k} {v}"
              for k, v in (sample.get("rewards") or {}).items()]
    return " · ".join(parts)


def rollout_html(view: SampleView, sample: dict) -> str:
    """The whole sample: step, prompt, completion, reward; `sample` is the stored row (step, reward, rewards)."""
    head = f"step {sample.get('step', '?')} · prompt"
    done = " · ".join(x for x in ("completion", _reward_text(sample)) if x)
    notes = "".join(f'<div style="color:{COLORS["bad"]}">{html.escape(n)}</div>' for n in view.notes)
    return _heading(head) + bubbles(view.prompt) + _heading(done) + bubbles(view.completion) + notes
