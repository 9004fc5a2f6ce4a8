"""Chat templates from downloaded tokenizers and GGUF files render within limits: a hostile template fails with
a clear error instead of hanging the process or filling its memory (core/tokenizer/template_sandbox.py)."""
from __future__ import annotations

import time

import jinja2
import pytest

from core.tokenizer.chat_template import CHAT_TEMPLATE, render
from core.tokenizer.template_sandbox import MAX_OUTPUT, TemplateLimitError

CHAT = [{"role": "user", "content": "hi"}]
DOUBLE = "{% set ns = namespace(s='a') %}{% for i in range(40) %}{% set ns.s = ns.s OP ns.s %}{% endfor %}{{ ns.s }}"

HOSTILE = {
    "string times a huge number": '{{ "a" * 10**8 }}',
    "a huge number times a string": '{{ 10**8 * "a" }}',
    "a list times a huge number": "{{ ([0] * 10**8)|length }}",
    "a power tower": "{{ 9**(9**9) }}",  # Jinja's ** groups from the left: 9**9**9 is (9**9)**9, 261 bits
    "a huge integer product": "{{ (10**1000) * (10**1000) }}",
    "doubling with ~": DOUBLE.replace("OP", "~"),
    "doubling with +": DOUBLE.replace("OP", "+"),
    "nested loops": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "a loop over a long string": '{% for c in "a" * 3000000 %}{% endfor %}',
    "center filter": '{{ "a"|center(10**8) }}',
    "center method": '{{ "a".center(10**8) }}',
    "ljust method": '{{ "a".ljust(10**8) }}',
    "indent filter": '{{ "a\na"|indent(10**8) }}',
    "slice filter": "{{ [1, 2]|slice(10**8)|list }}",
    "str.format width": '{{ "{:>100000000}".format(1) }}',
    "str.format nested width": '{{ "{:>{}}".format(1, 10**8) }}',
    "%-format width": '{{ "%0100000000d" % 1 }}',
    "%-format star": '{{ "%*d" % (10**8, 1) }}',
    "format filter": '{{ "%*d"|format(10**8, 1) }}',
    "replace filter": '{{ ("a" * 1000000)|replace("a", "aaaaaaaaaaaa") }}',
    "replace method": '{{ ("a" * 1000000).replace("a", "aaaaaaaaaaaa") }}',
    "expandtabs": '{{ ("\t" * 100000).expandtabs(100000) }}',
    "join filter": '{{ (["a" * 1000000] * 10)|join }}',
    "join method": '{{ ",".join(["a" * 1000000] * 10) }}',
    "translate": '{{ ("a" * 1000000).translate({97: "bbbbbbbbbb"}) }}',
    "tojson indent": "{{ [[[1]]]|tojson(indent=10**8) }}",
    "recursive macro": "{% macro f(n) %}{{ f(n + 1) }}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "a huge range": "{{ range(10**9)|list }}",
    "lipsum": "{{ lipsum(n=100000) }}",
    "output": '{% for i in range(100000) %}{{ "a" * 100 }}{% endfor %}',
}


@pytest.mark.parametrize("source", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_template_fails_with_a_clear_error(source):
    started = time.monotonic()
    with pytest.raises(jinja2.TemplateError, match="chat template|undefined|range too big"):
        render(source, CHAT)
    assert time.monotonic() - started < 30  # a generous bound: the point is that it returns


def test_the_limits_name_what_was_passed():
    with pytest.raises(TemplateLimitError, match=r"a value of 100,000,000 characters or items \(at most 4,0"):
        render('{{ "a" * 10**8 }}', CHAT)
    with pytest.raises(TemplateLimitError, match="an integer power of more than 4096 bits"):
        render("{{ 9**(9**9) }}", CHAT)
    with pytest.raises(TemplateLimitError, match="more than 1,000,000 steps"):
        render(HOSTILE["nested loops"], CHAT)
    with pytest.raises(TemplateLimitError, match=f"output passed {MAX_OUTPUT:,} characters"):
        render(HOSTILE["output"], CHAT)


def test_ordinary_templates_still_render():
    source = ('{{ "{:>5}|{:<3}|".format(1, 2) }}{{ "%05d"|format(42) }}{{ "%.2f" % 3.14159 }}'
              '{{ [1, 2]|tojson(indent=2) }}{{ "ab"|center(6) }}{{ ",".join(["x", "y"]) }}{{ ("a" ~ "b") * 3 }}'
              '{{ 2**10 }}{{ "a\nb"|indent(2) }}')
    assert render(source, CHAT) == '    1|2  |000423.14[\n  1,\n  2\n]  ab  x,yababab1024a\n  b'


def test_a_long_conversation_renders_with_the_default_template():
    conversation = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "x" * 200}
                    for i in range(2000)]
    text = render(CHAT_TEMPLATE, conversation, add_generation_prompt=True)
    assert text.count("<|im_start|>") == 2002 and text.endswith("<|im_start|>assistant\n")
