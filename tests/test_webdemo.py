"""The Streamlit web demo, run headless with Streamlit's own testing API against real tiny checkpoints; its
shared model; its launcher and settings. The same page in a real browser: test_webdemo_browser.py."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

pytest.importorskip("streamlit", reason="the web demo needs streamlit (pip install streamlit)")
from streamlit import config as st_config  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

tomllib = pytest.importorskip("tomllib", reason="Python 3.11 reads TOML")
from tests.fixtures.tool_model import ANSWER, QUESTION, REASONING_FIRST, REASONING_SECOND, RESULT  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "webdemo" / "app.py")
CONFIG = REPO / "webdemo" / ".streamlit" / "config.toml"


@pytest.fixture
def loopback(monkeypatch):
    """The page as the launcher serves it: `server.address` set (by the shipped config)."""
    before = st_config.get_option("server.address")
    st_config.set_option("server.address", "127.0.0.1")
    yield
    st_config.set_option("server.address", before)


def open_app(monkeypatch, model: str | None) -> AppTest:
    if model is None:
        monkeypatch.delenv("MINIMIND_MODEL", raising=False)
    else:
        monkeypatch.setenv("MINIMIND_MODEL", model)
    at = AppTest.from_file(APP, default_timeout=120)
    return at.run()


# ---- settings and launcher ----------------------------------------------------------------------------------
def test_the_shipped_settings_bind_loopback_headless_without_usage_statistics():
    settings = tomllib.loads(CONFIG.read_text(encoding="utf-8"))
    assert settings["server"]["address"] == "127.0.0.1"
    assert settings["server"]["headless"] is True
    assert settings["browser"]["gatherUsageStats"] is False
    assert settings["client"]["toolbarMode"] == "minimal"  # no "clear cache" for visitors
    for section, options in settings.items():  # every name is one Streamlit knows (a typo would be ignored)
        for name in options:
            assert f"{section}.{name}" in st_config._config_options_template, f"{section}.{name}"


def test_the_launcher_serves_the_page_from_the_folder_of_its_settings(tmp_path, monkeypatch):
    import webdemo.__main__ as launcher

    model = tmp_path / "model.gguf"
    model.write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    ran = {}
    monkeypatch.setattr(launcher.os, "chdir", lambda path: ran.setdefault("cwd", Path(path)))
    monkeypatch.setattr(launcher.os, "execv", lambda exe, argv: ran.setdefault("argv", argv))
    launcher.main(["--model", "model.gguf", "--port", "8765"])
    assert ran["cwd"] == CONFIG.parent.parent  # where Streamlit looks for .streamlit/config.toml
    assert ran["argv"][1:5] == ["-m", "streamlit", "run", APP]
    assert ran["argv"][-3:] == ["--", "--model", str(model)]  # resolved before the working folder changed
    assert ran["argv"][ran["argv"].index("--server.port") + 1] == "8765"
    assert "--server.address" not in ran["argv"]  # the shipped loopback address stands


def test_the_launcher_refuses_to_start_without_a_model(monkeypatch, capsys):
    import webdemo.__main__ as launcher

    monkeypatch.delenv("MINIMIND_MODEL", raising=False)
    with pytest.raises(SystemExit):
        launcher.main([])
    assert "give the model to serve" in capsys.readouterr().err


def test_a_page_started_without_the_settings_refuses_to_serve(monkeypatch, tiny_checkpoint):
    at = open_app(monkeypatch, str(tiny_checkpoint))  # `streamlit run webdemo/app.py` from elsewhere: no address
    assert not at.exception
    assert "listens on every network interface" in at.error[0].value
    assert len(at.chat_input) == 0


# ---- the operator's model -----------------------------------------------------------------------------------
def test_without_a_model_the_page_says_the_operator_gives_one(monkeypatch, loopback):
    at = open_app(monkeypatch, None)
    assert not at.exception
    assert "No model was given" in at.info[0].value
    assert len(at.chat_input) == 0
    assert len(at.text_input) == 0  # nowhere to type a model path


def test_a_missing_model_path_from_the_command_line_is_reported(monkeypatch, tmp_path, loopback):
    # `streamlit run webdemo/app.py -- --model PATH` hands the script argv ["app.py", "--model", PATH]
    monkeypatch.setattr("sys.argv", [APP, "--model", str(tmp_path / "nope.gguf")])
    at = open_app(monkeypatch, None)
    assert not at.exception
    assert "no such GGUF file" in at.error[0].value


def test_chat_streams_a_non_empty_reply_and_clear_empties_it(monkeypatch, tiny_checkpoint, loopback):
    at = open_app(monkeypatch, str(tiny_checkpoint))
    assert not at.exception, at.exception
    assert len(at.text_input) == 0  # visitors see the model's name, and cannot change it
    assert any("chosen by the operator" in c.value for c in at.sidebar.caption)
    at.sidebar.slider(key="max_new_tokens").set_value(16)
    at.sidebar.slider(key="temperature").set_value(1.0)
    at.sidebar.number_input(key="seed").set_value(7)  # a seeded sample: the random-init model's greedy path is "\n"
    at.chat_input[0].set_value("Hello").run()
    assert not at.exception, at.exception
    assert [m.name for m in at.chat_message] == ["user", "assistant"]
    reply = at.session_state.messages[-1]
    assert reply["role"] == "assistant" and reply["content"].strip()
    assert "tokens/s" in at.main.caption[-1].value

    at.sidebar.button(key="clear").click().run()
    assert at.session_state.messages == []
    assert len(at.chat_message) == 0


# ---- thinking and tools -------------------------------------------------------------------------------------
def test_an_offered_tool_is_called_run_and_answered_with_thinking_shown(monkeypatch, tool_checkpoint, loopback,
                                                                        torch_single_thread):
    at = open_app(monkeypatch, str(tool_checkpoint))
    at.sidebar.checkbox(key="tool_calculate_math").check()
    at.sidebar.radio(key="thinking").set_value("on")
    at.chat_input[0].set_value(QUESTION).run()
    assert not at.exception, at.exception
    turns = at.session_state.messages
    assert [m["role"] for m in turns] == ["user", "assistant", "tool", "assistant"]
    call = turns[1]["tool_calls"][0]
    assert call["function"]["name"] == "calculate_math" and turns[2]["tool_call_id"] == call["id"]
    assert turns[2]["content"] == RESULT  # run by the built-in registry
    assert turns[3]["content"] == ANSWER
    codes = [c.value for c in at.code]
    assert 'calculate_math({"expression": "37 * 48"})' in codes and RESULT in codes
    assert [e.text[0].value for e in at.expander if e.label == "Thinking"] == [REASONING_FIRST, REASONING_SECOND]
    assert [m.name for m in at.chat_message] == ["user", "assistant"]  # the calls and results sit in the reply

    at.run()  # redrawn from the history, the same
    assert [c.value for c in at.code] == codes


# ---- the reply loop and the shared model --------------------------------------------------------------------
CALL = '<tool_call>\n{"name": "calculate_math", "arguments": {"expression": "6*7"}}\n</tool_call>'


def scripted_reply(tokenizer, replies: list[str], tools: list[str], rounds: int = 4):
    """(messages, shown, stats, backend) of a web demo reply from a backend that replays `replies`."""
    from core.infer import SamplingParams
    from core.tools import builtin_registry
    from tests.scripted_backend import ScriptedReplayBackend
    from webdemo.chat import SharedModel, reply

    backend = ScriptedReplayBackend(tokenizer, replies)
    registry = builtin_registry()
    messages, shown = [{"role": "user", "content": "what is 6*7?"}], []
    stats = reply(SharedModel("scripted", backend), messages, SamplingParams(max_new_tokens=64), registry,
                  registry.schemas(tools) or None, None, rounds, shown.append)
    return messages, shown, stats, backend


def test_a_call_to_a_tool_not_offered_is_not_run(tiny_tokenizer):
    messages, _shown, stats, backend = scripted_reply(tiny_tokenizer, [CALL], tools=[])
    assert [m["role"] for m in messages] == ["user", "assistant"] and stats.answers == 1
    assert "<tools>" not in backend.prompts[0]


def test_tool_rounds_stop_at_the_limit(tiny_tokenizer):
    messages, shown, stats, _backend = scripted_reply(tiny_tokenizer, [CALL, CALL, CALL, "done"],
                                                      tools=["calculate_math"], rounds=2)
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant", "tool", "assistant"]
    assert stats.answers == 3 and messages[-1]["tool_calls"]  # the third answer's call is not run
    assert [m for m in shown if isinstance(m, dict)] == messages[1:]


def test_replacing_the_model_waits_for_the_generation_in_progress(tiny_gguf, tmp_path):
    """A second path to the same GGUF once crashed the server: the first model was closed mid-generation."""
    pytest.importorskip("llama_cpp", reason="needs llama-cpp-python")
    from core.infer import SamplingParams
    from webdemo.chat import ModelClosed, shared_model

    first = shared_model(str(tiny_gguf))
    alias = tmp_path / "same.gguf"
    alias.symlink_to(tiny_gguf)
    streaming, go_on, done = threading.Event(), threading.Event(), {}

    def generate():
        with first.generating() as backend:
            pieces = backend.complete_stream("Hello", SamplingParams(temperature=0.0, max_new_tokens=24))
            done["text"] = next(pieces)
            streaming.set()
            go_on.wait(60)
            done["text"] += "".join(pieces)  # llama.cpp decodes on: the model must still be open
            done["finish"] = backend.finish_reason

    generator = threading.Thread(target=generate)
    generator.start()
    assert streaming.wait(60)
    swapper = threading.Thread(target=lambda: done.setdefault("second", shared_model(str(alias))))
    swapper.start()
    swapper.join(0.5)
    assert swapper.is_alive() and not first.closed  # waiting on the generation's lock
    go_on.set()
    generator.join(60)
    swapper.join(60)
    assert done["finish"] in ("stop", "length") and first.closed
    assert done["second"].path == str(alias) and not done["second"].closed
    with pytest.raises(ModelClosed):  # a session still holding the old model is told, not crashed
        with first.generating():
            pass
    done["second"].close()
