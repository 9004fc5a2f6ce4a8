"""The Streamlit web demo, run headless with Streamlit's own testing API against a real tiny checkpoint."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("streamlit", reason="the web demo needs streamlit (pip install streamlit)")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = str(Path(__file__).resolve().parents[1] / "webdemo" / "app.py")


def open_app(monkeypatch, model: str | None) -> AppTest:
    if model is None:
        monkeypatch.delenv("MINIMIND_MODEL", raising=False)
    else:
        monkeypatch.setenv("MINIMIND_MODEL", model)
    at = AppTest.from_file(APP, default_timeout=120)
    return at.run()


def test_without_a_model_the_page_asks_for_one(monkeypatch):
    at = open_app(monkeypatch, None)
    assert not at.exception
    assert "Enter a model path" in at.info[0].value
    assert len(at.chat_input) == 0


def test_a_missing_model_path_from_the_command_line_is_reported(monkeypatch, tmp_path):
    # `streamlit run webdemo/app.py -- --model PATH` hands the script argv ["app.py", "--model", PATH]
    monkeypatch.setattr("sys.argv", [APP, "--model", str(tmp_path / "nope.gguf")])
    at = open_app(monkeypatch, None)
    assert not at.exception
    assert "no such GGUF file" in at.error[0].value


def test_chat_streams_a_non_empty_reply_and_clear_empties_it(monkeypatch, tiny_checkpoint):
    at = open_app(monkeypatch, str(tiny_checkpoint))
    assert not at.exception, at.exception
    assert at.sidebar.text_input(key="model_path").value == str(tiny_checkpoint)
    at.sidebar.slider(key="max_new_tokens").set_value(16)
    at.sidebar.slider(key="temperature").set_value(1.0)
    at.sidebar.number_input(key="seed").set_value(7)  # a seeded sample: the random-init model's greedy path is "\n"
    at.chat_input[0].set_value("Hello").run()
    assert not at.exception, at.exception
    assert [m.name for m in at.chat_message] == ["user", "assistant"]
    reply = at.session_state.messages[-1]
    assert reply["role"] == "assistant" and reply["content"].strip()
    assert "tokens/s" in at.caption[-1].value

    at.sidebar.button(key="clear").click().run()
    assert at.session_state.messages == []
    assert len(at.chat_message) == 0
