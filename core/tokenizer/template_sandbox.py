"""The Jinja sandbox chat templates render in, with limits on size and work.

Templates come with downloaded tokenizers and GGUF files. Jinja's ImmutableSandboxedEnvironment keeps them away
from Python's internals, but not from the CPU and memory: `{{ "a" * 10**8 }}`, `{{ 9**9**9 }}`, a string doubled
in a loop or two nested `range(100000)` loops hang the process or fill memory. So, as llama.cpp's minja and
transformers guard their renderers, every operation that can grow a value is checked before or as it runs:

- `*`, `**`, `+`, `%` (intercepted binary operators): a string, list or tuple of more than MAX_VALUE items, an
  integer power or product past MAX_INT_BITS bits, a %-format with a width or precision past MAX_ARG;
- `~` (string concatenation), slices, calls (str methods, macros, globals) and filters: a result past
  MAX_VALUE; an integer argument to a filter or a str method past MAX_ARG (`center(10**8)`, `slice(10**8)`);
  `join`, `replace`, `indent`, `expandtabs`, `translate` are estimated before they run;
- every loop step, call, operator and filter counts against MAX_STEPS per render, and the characters and items
  they produce against MAX_PRODUCED (a value of MAX_VALUE copied a hundred thousand times is small each time);
- the rendered text stops at MAX_OUTPUT characters.

A template past a limit fails with TemplateLimitError naming the limit. Real templates stay far below them: the
default template renders a 1,000-turn conversation in about 20,000 steps.
"""
from __future__ import annotations

import re
from contextvars import ContextVar
from functools import wraps

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_VALUE = 4_000_000       # characters of a string, items of a list/tuple/dict
MAX_OUTPUT = 4_000_000      # characters of the rendered text
MAX_ARG = 100_000           # an integer argument to a filter or a str method (widths, counts)
MAX_INT_BITS = 4096
MAX_STEPS = 1_000_000       # loop steps, calls, operators and filters per render
MAX_PRODUCED = 200_000_000  # characters and items produced per render

_FORMAT_WIDTH = re.compile(r"%[-#0 +]*(?:\d{6,}|\*)|%[-#0 +]*\d*\.(?:\d{6,}|\*)")  # %-formats: 6+ digits, or *
_BRACE_WIDTH = re.compile(r"\{[^{}]*:[^{}]*\d{6,}[^{}]*\}")                        # str.format: {:>100000000}
_NESTED_FIELD = re.compile(r"\{[^{}]*:[^{}]*\{")                                     # str.format: {:{width}}
# Filters and str methods whose integer arguments are sizes (widths, counts): at most MAX_ARG.
SIZE_ARGUMENTS = {"center", "ljust", "rjust", "zfill", "expandtabs", "indent", "wordwrap", "truncate", "slice",
                  "batch", "tojson", "pprint"}


class TemplateLimitError(jinja2.exceptions.TemplateRuntimeError):
    """A chat template went past a limit of the sandbox; the message names it."""


class _Budget:
    def __init__(self) -> None:
        self.steps = 0
        self.produced = 0

    def step(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise TemplateLimitError(f"the chat template took more than {MAX_STEPS:,} steps (loop iterations, calls "
                                     "and operations); it may loop without end")

    def produce(self, value):
        size = _size(value)
        if size > MAX_VALUE:
            raise TemplateLimitError(f"the chat template built a value of {size:,} characters or items, over the "
                                     f"limit of {MAX_VALUE:,}")
        self.produced += size
        if self.produced > MAX_PRODUCED:
            raise TemplateLimitError(f"the chat template produced more than {MAX_PRODUCED:,} characters and items "
                                     "in all")
        return value


_BUDGET: ContextVar[_Budget | None] = ContextVar("chat_template_budget", default=None)


def _budget() -> _Budget:
    budget = _BUDGET.get()
    return budget if budget is not None else _Budget()  # Template.generate called directly: per-value limits only


def _size(value) -> int:
    return len(value) if isinstance(value, (str, list, tuple, dict)) else 0


def _refuse(what: str) -> None:
    raise TemplateLimitError(f"the chat template asked for {what}")


def _check_int_args(what: str, args, kwargs) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_ARG:
            _refuse(f"{what} with a number over {MAX_ARG:,}")


def _check_binop(operator: str, left, right) -> None:
    if operator == "*":
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * max(n, 0) > MAX_VALUE:
                _refuse(f"a value of {len(seq) * n:,} characters or items (at most {MAX_VALUE:,})")
        if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            _refuse(f"an integer product of more than {MAX_INT_BITS} bits")
    elif operator == "**":
        if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0 \
                and left.bit_length() * right > MAX_INT_BITS:
            _refuse(f"an integer power of more than {MAX_INT_BITS} bits")
    elif operator == "+":
        if _size(left) + _size(right) > MAX_VALUE and not isinstance(left, dict):
            _refuse(f"a value of {_size(left) + _size(right):,} characters or items (at most {MAX_VALUE:,})")
    elif operator == "%" and isinstance(left, str):
        if _FORMAT_WIDTH.search(left):
            _refuse(f"a %-format with a width or precision of six digits or '*' ({left[:40]!r})")


def _joined_size(separator, items: list) -> int:
    return sum(len(str(x)) for x in items) + len(str(separator)) * max(len(items) - 1, 0)


def _estimate(name: str, target, args) -> int:
    """How long the result of a growing str method or filter will be (0 when it cannot grow much)."""
    if name == "replace" and isinstance(target, str) and len(args) >= 2 and isinstance(args[0], str):
        count = target.count(args[0]) if args[0] else len(target) + 1
        return len(target) + count * len(str(args[1]))
    if name == "expandtabs" and isinstance(target, str):
        tab = args[0] if args and isinstance(args[0], int) else 8
        return len(target) + target.count("\t") * max(tab, 0)
    if name == "translate" and isinstance(target, str) and args and isinstance(args[0], dict):
        longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=1)
        return len(target) * longest
    if name == "indent" and isinstance(target, str) and args:
        width = len(args[0]) if isinstance(args[0], str) else args[0] if isinstance(args[0], int) else 0
        return len(target) + (target.count("\n") + 1) * width
    return 0


def _check_growth(name: str, target, args, kwargs) -> None:
    if name in SIZE_ARGUMENTS:
        _check_int_args(name, args, kwargs)
    if name in ("format", "format_map") and isinstance(target, str):
        if _BRACE_WIDTH.search(target):
            _refuse(f"a str.format with a width or precision of six digits ({target[:40]!r})")
        if _NESTED_FIELD.search(target):  # {:{width}}: the width is an argument
            _check_int_args(name, args, kwargs)
        if _FORMAT_WIDTH.search(target):  # the `format` filter formats with %
            _refuse(f"a %-format with a width or precision of six digits or '*' ({target[:40]!r})")
    estimate = _estimate(name, target, args)
    if estimate > MAX_VALUE:
        _refuse(f"{name} making {estimate:,} characters (at most {MAX_VALUE:,})")


def _limited_filter(name: str, func):
    """A filter wrapped with the checks; Jinja's pass_context/pass_eval_context marks travel with @wraps."""
    passes = getattr(func, "jinja_pass_arg", None) is not None

    @wraps(func)
    def limited(*args, **kwargs):
        budget = _budget()
        budget.step()
        at = 1 if passes else 0
        value, rest = args[at], args[at + 1:]
        if name == "join":  # the items, listed once so they can be measured and still be joined
            value = list(value)
            args = (*args[:at], value, *rest)
            if _joined_size(rest[0] if rest else kwargs.get("d", ""), value) > MAX_VALUE:
                _refuse(f"a join of more than {MAX_VALUE:,} characters")
        _check_growth(name, value, rest, kwargs)
        return budget.produce(func(*args, **kwargs))

    return limited


class _LimitedCodeGenerator(CodeGenerator):
    """Every loop's iterable goes through environment.limited_iter, every `~` through environment.limited_concat
    (Jinja compiles both straight to Python, out of the sandbox's reach)."""

    def visit_For(self, node: nodes.For, frame) -> None:
        if not getattr(node, "limited", False):
            node.iter = nodes.Call(nodes.EnvironmentAttribute("limited_iter"), [node.iter], [], None, None,
                                   lineno=node.lineno)
            node.limited = True
        super().visit_For(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame) -> None:
        self.write("environment.limited_concat(")
        super().visit_Concat(node, frame)
        self.write(")")


class LimitedTemplate(jinja2.Template):
    def render(self, *args, **kwargs) -> str:
        """The template rendered within the limits, with a budget of its own."""
        token = _BUDGET.set(_Budget())
        try:
            out, size = [], 0
            for piece in self.generate(*args, **kwargs):
                size += len(piece)
                if size > MAX_OUTPUT:
                    raise TemplateLimitError(f"the chat template's output passed {MAX_OUTPUT:,} characters")
                out.append(piece)
            return "".join(out)
        finally:
            _BUDGET.reset(token)


class LimitedSandbox(ImmutableSandboxedEnvironment):
    code_generator_class = _LimitedCodeGenerator
    template_class = LimitedTemplate
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.globals.pop("lipsum", None)  # lipsum(n=10**6): text made to order, no use in a chat template

    def limit_filters(self) -> None:
        """Wrap every filter (call once the environment's own filters are added)."""
        self.filters = {name: _limited_filter(name, f) for name, f in self.filters.items()}

    def call_binop(self, context, operator, left, right):
        budget = _budget()
        budget.step()
        _check_binop(operator, left, right)
        return budget.produce(super().call_binop(context, operator, left, right))

    def getitem(self, obj, argument):
        value = super().getitem(obj, argument)
        return _budget().produce(value) if isinstance(argument, slice) else value  # only a slice makes a value

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 - the sandbox's own signature
        budget = _budget()
        budget.step()
        method = getattr(__obj, "__wrapped__", __obj)  # str.format comes wrapped by the sandbox
        target = getattr(method, "__self__", None)
        if isinstance(target, str):
            name = getattr(method, "__name__", "")
            if name == "join" and args:  # separator.join(items)
                args = (list(args[0]), *args[1:])
                if _joined_size(target, args[0]) > MAX_VALUE:
                    _refuse(f"a join of more than {MAX_VALUE:,} characters")
            _check_growth(name, target, args, kwargs)
        return budget.produce(super().call(__context, __obj, *args, **kwargs))

    def limited_iter(self, iterable):
        budget = _budget()
        for item in iterable:
            budget.step()
            yield item

    def limited_concat(self, text):
        return _budget().produce(text)
