"""Built-in tools and the registry: correct answers, malicious input refused, failures become error results."""
from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone

import pytest

from core.tools import Tool, ToolRegistry, builtin_registry
from core.tools.calculator import evaluate
from core.tools.clock import get_current_time
from core.tools.registry import ToolError
from core.tools.units import convert


def run(name: str, **args) -> dict:
    return json.loads(builtin_registry().run(name, json.dumps(args)))


# ---- calculator --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("expr, value", [("1 + 2 * 3", 7), ("(2 + 3) * sqrt(16) / 5", 4), ("2 ** 10", 1024),
                                         ("2^10", 1024), ("7 // 2 + 7 % 2", 4), ("-3 + +1", -2), ("1 / 4", 0.25),
                                         ("factorial(5)", 120), ("log(e)", 1), ("max(1, 4, 2)", 4), ("3×4÷2", 6),
                                         ("2 ** -1", 0.5), ("round(pi, 2)", 3.14)])
def test_calculator_evaluates_arithmetic(expr, value):
    assert evaluate(expr) == pytest.approx(value)
    assert run("calculate_math", expression=expr) == {"result": pytest.approx(value)}


@pytest.mark.parametrize("expr", [
    "__import__('os').system('touch /tmp/pwned')", "open('/etc/passwd').read()", "(1).__class__.__bases__",
    "[x for x in range(10**9)]", "lambda: 1", "'a' * 10**9", "exec('1')", "eval('1')", "globals()", "x",
    "sqrt.__globals__", "1 if 1 else 2", "print(1)", "a := 1", "\"abc\"", "factorial(10**6)", "factorial(-1)",
    "1 / 0", "10.0 ** 400", "sqrt(-1)", "(" * 300 + "1" + ")" * 300, "1 +", "",
])
def test_calculator_refuses_anything_else(expr):
    result = run("calculate_math", expression=expr)
    assert set(result) == {"error"} and result["error"].startswith("calculate_math: ")


@pytest.mark.parametrize("expr", ["9**9**9", "(10**1000)**10", "2**4097", "10**999 * 10**999 * 10**999",
                                  "factorial(170) * factorial(170) * factorial(170) * factorial(170) * factorial(170)"])
def test_runaway_integer_arithmetic_is_refused_at_once(expr):
    started = time.perf_counter()
    with pytest.raises(ToolError, match="too large"):
        evaluate(expr)  # refused before it is computed, in this process
    # 9**9**9 computed would take hours; returning at all shows it was not (a wide bound: CI machines are shared)
    assert time.perf_counter() - started < 20
    assert "too large" in run("calculate_math", expression=expr)["error"]


@pytest.mark.parametrize("expr", ["round(7, -10**7)", "round(7, 10**7)", "round(1.5, -10**100)",
                                  "round(10**1000, -10**6)", "round(7, 0.5)"])
def test_round_takes_a_bounded_number_of_digits(expr):
    with pytest.raises(ToolError, match="round takes a whole number of digits"):
        evaluate(expr)
    assert evaluate("round(123456, -3)") == 123000 and evaluate("round(10**1000 + 7, -999)") == 10**1000


def test_calculator_input_length_is_capped():
    assert "longer than" in run("calculate_math", expression="1+" * 300 + "1")["error"]


# ---- unit conversion -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, a, b, expected", [(1, "km", "m", 1000), (10, "mi", "km", 16.09344),
                                                   (100, "C", "F", 212), (32, "fahrenheit", "celsius", 0),
                                                   (0, "K", "C", -273.15), (1, "GiB", "MB", 1073.741824),
                                                   (2, "公斤", "斤", 4), (90, "km/h", "m/s", 25), (1, "lb", "oz", 16)])
def test_unit_converter(value, a, b, expected):
    assert convert(value, a, b) == pytest.approx(expected)
    assert run("unit_converter", value=value, from_unit=a, to_unit=b)["result"]["value"] == pytest.approx(expected)


@pytest.mark.parametrize("args, message", [({"value": 1, "from_unit": "km", "to_unit": "kg"}, "cannot convert"),
                                           ({"value": 1, "from_unit": "parsec", "to_unit": "m"}, "unknown unit"),
                                           ({"value": 1e308, "from_unit": "mi", "to_unit": "mm"}, "too large"),
                                           ({"value": "1", "from_unit": "m", "to_unit": "km"}, "expected number"),
                                           ({"value": 1, "from_unit": "C", "to_unit": "m"}, "cannot convert"),
                                           ({"value": 1, "from_unit": "m"}, "missing argument")])
def test_unit_converter_errors(args, message):
    assert message in run("unit_converter", **args)["error"]


# ---- date/time -----------------------------------------------------------------------------------------------------
def test_current_time_in_zones():
    now = datetime(2026, 3, 1, 12, 30, tzinfo=timezone.utc)
    assert get_current_time("Asia/Shanghai", now)["datetime"] == "2026-03-01T20:30:00+08:00"
    assert get_current_time("UTC-05:30", now)["time"] == "07:00:00"
    assert get_current_time("UTC", now)["weekday"] == "Sunday"
    assert run("get_current_time")["result"]["date"] == datetime.now(timezone.utc).date().isoformat()


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../../etc/passwd", "/etc/localtime", "UTC+99", "x" * 100])
def test_current_time_refuses_unknown_zones(zone):
    assert "time zone" in run("get_current_time", timezone=zone)["error"] or "offset" in \
        run("get_current_time", timezone=zone)["error"]


# ---- registry ------------------------------------------------------------------------------------------------------
def test_schemas_are_openai_function_descriptions():
    schemas = builtin_registry().schemas()
    assert [s["function"]["name"] for s in schemas] == ["calculate_math", "unit_converter", "get_current_time"]
    for s in schemas:
        assert s["type"] == "function" and s["function"]["description"]
        assert s["function"]["parameters"]["type"] == "object"
    assert builtin_registry().schemas(["unit_converter", "nope"])[0]["function"]["name"] == "unit_converter"


@pytest.mark.parametrize("name, arguments, message", [
    ("nope", "{}", "tool not found"), ("calculate_math", "{not json", "not valid JSON"),
    ("calculate_math", "[1]", "must be a JSON object"), ("calculate_math", '{"expression": 5}', "expected string"),
    ("calculate_math", '{"expression": "1", "extra": 1}', "unknown argument"),
])
def test_bad_calls_become_error_results(name, arguments, message):
    assert message in json.loads(builtin_registry().run(name, arguments))["error"]


def test_a_slow_tool_times_out_and_a_crashing_one_reports_why():
    registry = ToolRegistry()
    registry.register(Tool("slow", "sleeps", {"type": "object", "properties": {}}, lambda: time.sleep(60),
                           timeout_s=0.2))
    registry.register(Tool("boom", "fails", {"type": "object", "properties": {}}, lambda: 1 / 0))
    registry.register(Tool("huge", "big", {"type": "object", "properties": {}}, lambda: "x" * 10_000))
    started = time.perf_counter()
    assert "timed out after 0.2 s" in json.loads(registry.run("slow", "{}"))["error"]
    assert time.perf_counter() - started < 20  # long before the tool's 60 s sleep ends (its thread is a daemon)
    assert json.loads(registry.run("boom", {}))["error"] == "boom: ZeroDivisionError: division by zero"
    assert "exceeds the 2048-character limit" in json.loads(registry.run("huge", {}))["error"]


def test_answer_turns_calls_into_tool_messages():
    from core.infer.chat_output import ToolCall

    call = ToolCall("calculate_math", '{"expression": "6*7"}')
    [msg] = builtin_registry().answer([call])
    assert msg == {"role": "tool", "tool_call_id": call.id, "name": "calculate_math", "content": '{"result": 42}'}


# ---- integers past Python's 4,300-digit limit ------------------------------------------------------------------------
HUGE = "1" * 5000  # json.loads raises a plain ValueError (int_max_str_digits), not a JSONDecodeError


def test_a_tool_call_with_a_huge_integer_is_an_invalid_call_not_an_exception():
    from core.infer.chat_output import ToolCall, parse_chat_output, parse_tool_call
    from core.rl.agent import _count_calls

    body = '{"name": "unit_converter", "arguments": {"value": ' + HUGE + ', "from_unit": "m", "to_unit": "km"}}'
    assert parse_tool_call(body) is None
    assert parse_tool_call('{"name": "unit_converter", "arguments": "{\\"value\\": ' + HUGE + '}"}') is None
    out = parse_chat_output(f"<tool_call>{body}</tool_call>")
    assert out.tool_calls == [] and HUGE in out.content  # shown as the text it was
    valid, invalid, calls = _count_calls(f"<tool_call>{body}</tool_call>", {"unit_converter"}, builtin_registry())
    assert (valid, invalid, calls) == (0, 1, [])  # an agent RL episode counts it as an invalid call
    assert ToolCall("unit_converter", '{"value": ' + HUGE + "}").arguments_dict() == {}


def test_a_huge_integer_in_arguments_or_messages_becomes_an_error_result():
    from core.tokenizer.messages import MessageError, parse_tools

    result = json.loads(builtin_registry().run("unit_converter", '{"value": ' + HUGE + "}"))
    assert result == {"error": "arguments are not valid JSON"}
    with pytest.raises(MessageError, match="tools: invalid JSON: .*4300"):
        parse_tools("[" + HUGE + "]")


# ---- tools run where they can be killed ------------------------------------------------------------------------------
FREEZERS = ["round(7, -10**7)", "round(7, 10**9)", "9**9**9", "2**2**2**2**2", "factorial(factorial(20))",
            "factorial(170)**factorial(170)", "(2**4000)**(2**4000)", "10**4000 // 3", "exp(exp(exp(10)))",
            "-" * 400 + "1", "abs(" * 100 + "1" + ")" * 100, "+".join(["9**999"] * 60),
            "*".join(["factorial(170)"] * 20), "round(" * 60 + "1" + ", -10**7)" * 60]


@pytest.mark.parametrize("expr", FREEZERS)
def test_expressions_that_try_to_freeze_the_process_come_back_as_errors(expr):
    started = time.monotonic()
    result = run("calculate_math", expression=expr)
    assert set(result) == {"error"} and result["error"].startswith("calculate_math: ")
    assert time.monotonic() - started < 30  # a generous bound: the point is that it returns


def test_the_built_in_tools_run_in_the_tool_worker_process():
    import os

    from tests.fixtures.tools import worker_pid

    assert all(tool.isolated for tool in builtin_registry().tools.values())
    registry = ToolRegistry()
    registry.register(Tool("pid", "its process", {"type": "object", "properties": {}}, worker_pid, isolated=True))
    assert json.loads(registry.run("pid", {}))["result"] != os.getpid()
    with pytest.raises(ValueError, match="module-level function"):
        Tool("inline", "a lambda", {"type": "object", "properties": {}}, lambda: 1, isolated=True)


def test_a_tool_that_holds_the_gil_is_killed_at_its_timeout_and_this_process_keeps_running():
    """The tool's C loop would hold the GIL for hours; in the worker it holds only the worker's. A ticker thread
    here keeps counting while the call waits, the call ends with a timeout error, and the next call works."""
    import threading

    from tests.fixtures.tools import spin

    registry = builtin_registry()
    registry.register(Tool("spin", "never ends", {"type": "object", "properties": {}}, spin, timeout_s=1.0,
                           isolated=True))
    ticks, stop = [0], threading.Event()

    def ticker():
        while not stop.is_set():
            ticks[0] += 1
            stop.wait(0.01)

    thread = threading.Thread(target=ticker, daemon=True)
    thread.start()
    try:
        before = ticks[0]
        started = time.monotonic()
        assert json.loads(registry.run("spin", {})) == {"error": "spin: timed out after 1 s"}
        during = ticks[0] - before
    finally:
        stop.set()
        thread.join()
    assert during > 0 and time.monotonic() - started < 30
    assert run("calculate_math", expression="6*7") == {"result": 42}  # a fresh worker took the killed one's place


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS is enforced on Linux")
def test_a_tool_that_asks_for_too_much_memory_gets_a_memory_error():
    from tests.fixtures.tools import allocate

    registry = ToolRegistry()
    registry.register(Tool("big", "4 GiB", {"type": "object", "properties": {}}, allocate, isolated=True))
    assert json.loads(registry.run("big", {}))["error"].startswith("big: MemoryError")
