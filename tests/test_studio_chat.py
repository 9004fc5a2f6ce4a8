"""Chat pane presenter with a real tiny checkpoint: streaming, stop, history per model (persisted), compare."""
from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("core.infer")


@pytest.fixture
def workspace_with_runs(context, infer_checkpoint):
    """The shared context, its workspace's runs/ folder holding two runs, each with the tiny checkpoint."""
    for run in ("run-a", "run-b"):
        shutil.copytree(infer_checkpoint, context.workspace.runs_dir / run / "checkpoints" / infer_checkpoint.name)
    return context


@pytest.fixture
def presenter(qtbot, workspace_with_runs, torch_single_thread):
    from studio.panes.chat_presenter import ChatPresenter

    p = ChatPresenter(workspace_with_runs)
    p.refresh_models()
    yield p
    p.shutdown()


def test_lists_checkpoints_of_workspace_runs(presenter):
    assert [m.run_id for m in presenter.models] == ["run-b", "run-a"]
    assert all(m.kind == "checkpoint" for m in presenter.models)


def test_streams_a_reply_and_keeps_it_in_the_models_history(qtbot, presenter, workspace_with_runs):
    presenter.select(0, presenter.models[0].path)
    presenter.sampling.update(temperature=0.0, max_new_tokens=12)
    pieces = []
    presenter.pieceReceived.connect(lambda slot, piece: pieces.append(piece))
    with qtbot.waitSignal(presenter.replyFinished, timeout=60_000) as done:
        assert presenter.send("Hello there") is None
    slot, info = done.args
    assert slot == 0 and info["text"] and info["text"] == "".join(pieces) and len(pieces) > 1
    assert info["tokens"] <= 12
    assert presenter.history(0) == [{"role": "user", "content": "Hello there"},
                                    {"role": "assistant", "content": info["text"]}]
    saved = json.loads(presenter.history_file().read_text(encoding="utf-8"))
    assert saved[presenter.models[0].path][1]["content"] == info["text"]
    # same prompt, greedy: the backend gives the same text (streamed pieces join to the full reply)
    from core.infer import open_backend, SamplingParams

    with open_backend(presenter.models[0].path) as llm:
        assert llm.chat([{"role": "user", "content": "Hello there"}],
                        SamplingParams(temperature=0.0, max_new_tokens=12)) == info["text"]


def test_stop_ends_the_stream_early(qtbot, presenter):
    presenter.select(0, presenter.models[0].path)
    presenter.sampling.update(temperature=1.0, max_new_tokens=4000, stop_token_ids=[])  # never ends by itself
    presenter.pieceReceived.connect(lambda slot, piece: presenter.stop())
    with qtbot.waitSignal(presenter.replyFinished, timeout=60_000) as done:
        presenter.send("Tell me a long story")
    info = done.args[1]
    assert info["reason"] == "stopped" and 0 < info["tokens"] < 200
    assert presenter.history(0)[-1]["content"] == info["text"] and not presenter.busy


def test_compare_sends_the_same_prompt_to_two_models(qtbot, presenter):
    presenter.compare = True
    presenter.select(0, presenter.models[0].path)
    presenter.select(1, presenter.models[1].path)
    presenter.sampling.update(temperature=0.0, max_new_tokens=6)
    finished = []
    presenter.replyFinished.connect(lambda slot, info: finished.append((slot, info["text"])))
    with qtbot.waitSignal(presenter.busyChanged, timeout=60_000, check_params_cb=lambda busy: not busy):
        presenter.send("Hi")
    assert sorted(s for s, _ in finished) == [0, 1]
    assert finished[0][1] == finished[1][1]  # the two runs hold the same weights: same greedy text
    assert [m["content"] for m in presenter.history(1)] == ["Hi", finished[0][1]]


def test_pane_renders_the_transcript(qtbot, workspace_with_runs, torch_single_thread):
    from studio.panes.chat import ChatPane

    pane = ChatPane(workspace_with_runs)
    qtbot.addWidget(pane)
    pane.max_tokens.setValue(5)
    pane.input.setPlainText("Hello")
    with qtbot.waitSignal(pane.presenter.replyFinished, timeout=60_000):
        pane.send()
    assert "Hello" in pane.views[0].toPlainText()
    assert "tokens in" in pane.status.text()
    pane.presenter.shutdown()
