"""Chat pane presenter with a real tiny checkpoint: streaming, stop, history per model (persisted), compare."""
from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("core.infer")

from core.infer.chat_output import parse_chat_output  # noqa: E402


@pytest.fixture
def workspace_with_runs(context, infer_checkpoint):
    """The shared context, its workspace's runs/ folder holding two runs, each with the tiny checkpoint."""
    for run in ("run-a", "run-b"):
        shutil.copytree(infer_checkpoint, context.workspace.runs_dir / run / "checkpoints" / infer_checkpoint.name)
    return context


@pytest.fixture
def presenter(qtbot, workspace_with_runs, torch_single_thread):
    from studio.panes.chat.presenter import ChatPresenter

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
        raw = llm.chat([{"role": "user", "content": "Hello there"}], SamplingParams(temperature=0.0, max_new_tokens=12))
        assert parse_chat_output(raw).content == info["text"]


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
    from studio.panes.chat.view import ChatPane

    pane = ChatPane(workspace_with_runs)
    qtbot.addWidget(pane)
    pane.max_tokens.setValue(5)
    pane.input.setPlainText("Hello")
    with qtbot.waitSignal(pane.presenter.replyFinished, timeout=60_000):
        pane.send()
    assert "Hello" in pane.views[0].toPlainText()
    assert "tokens in" in pane.status.text()
    pane.presenter.shutdown()


class AnswerOnTheCallingThread:
    """Stands in for the reply's worker thread: `start` answers at once on the calling thread, so every piece
    reaches the presenter, the pane and the test in order, one at a time, whatever the scheduler does."""

    def __init__(self, target, args=(), daemon=None, name=None):
        self.target, self.args, self.alive = target, args, False

    def start(self) -> None:
        self.alive = True
        try:
            self.target(*self.args)
        finally:
            self.alive = False

    def is_alive(self) -> bool:
        return self.alive

    def join(self, _timeout=None) -> None:
        pass


def test_the_transcript_redraws_only_what_changed_and_reads_as_a_full_redraw(qtbot, workspace_with_runs,
                                                                          tiny_tokenizer, torch_single_thread):
    """Piece by piece: after every streamed piece the pane's transcript (drawn incrementally) equals a transcript
    drawn from scratch. The reply is generated on the test's thread (AnswerOnTheCallingThread), so the checks run
    after each piece in turn, not whenever the scheduler lets a queued piece through."""
    from studio.panes.chat.view import ChatPane
    from tests.scripted_backend import ScriptedReplayBackend

    pane = ChatPane(workspace_with_runs)
    full = ChatPane(workspace_with_runs)  # draws the same presenter's state from scratch, for comparison
    for widget in (pane, full):
        qtbot.addWidget(widget)
    full.presenter.shutdown()
    full.presenter = p = pane.presenter
    p.thread_class = AnswerOnTheCallingThread
    replies = ["Hello! How can I help?", "def add():\n    return  2 + 2\n\tThat is all.",  # spaces are kept
               "The sea ▍ is wide.\n\nIt is deep,\nand blue."]  # a reply may hold the cursor mark itself
    p._backends[p.selected[0]] = ScriptedReplayBackend(tiny_tokenizer, replies)
    view = pane.views[0]
    full_draws, compared, streamed = [], [], []
    real_set_html = view.setHtml
    view.setHtml = lambda text: (full_draws.append(len(text)), real_set_html(text))

    typed = []
    real_append = pane._append_piece
    pane._append_piece = lambda *args: typed.append(real_append(*args)) or typed[-1]

    def compare(*_args) -> None:
        pane._render(0)  # what the redraw timer does, here after every piece
        full._settled.clear()
        full._render(0)
        compared.append(((view.toPlainText(), view.document().blockCount()),  # a typed line break is no new block
                         (full.views[0].toPlainText(), full.views[0].document().blockCount())))

    def after_piece(_slot, _piece) -> None:
        compare()
        streamed.append(compared[-1][0][0])

    p.pieceReceived.connect(after_piece)
    for turn, question in enumerate(("Hi", "What is 2+2?", "Tell me about the sea.")):
        pane.input.setPlainText(question)
        with qtbot.waitSignal(p.replyFinished, timeout=60_000):
            pane.send()  # returns once the reply has finished: every piece went through after_piece
        compare()  # the finished transcript
        assert question in compared[-1][0][0] and replies[turn].split("\n")[-1] in compared[-1][0][0]
        assert compared[-1][0][0].count("▍") == sum(reply.count("▍") for reply in replies[:turn + 1])
        assert "    return  2 + 2\n\tThat is all." in compared[-1][0][0] or turn != 1
        if turn == 0:
            full_draws.clear()
    pieces = len(streamed)
    assert pieces > 20  # each reply came as many pieces (one token each)
    assert all(text.rstrip().endswith("▍") for text in streamed)  # every piece was drawn while streaming
    for drawn, reference in compared:
        assert drawn == reference
    assert full_draws == []  # after the first turn: only appended messages and typed pieces
    assert typed.count(True) >= pieces - 3 * 2  # pieces are typed into the bubble; a reply's first is laid out
    # and it looks the same: the two transcripts, drawn at one size, are the same pixels
    for browser in (view, full.views[0]):
        browser.setFixedSize(420, 2000)
        browser.show()
    full._render(0)
    image = view.grab().toImage()  # grab() lays out and paints the widget itself
    assert image == full.views[0].grab().toImage()
    colours = {image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)}
    assert len(colours) > 3  # text and bubbles were drawn, not two blank images
    pane.presenter.shutdown()


# ---- thinking and tools, with scripted answers (tests/scripted_backend.py: a test-only replay backend) -----------
CALL = '<tool_call>\n{"name": "calculate_math", "arguments": {"expression": "6*7"}}\n</tool_call>'


def scripted(presenter, tiny_tokenizer, *replies):
    from tests.scripted_backend import ScriptedReplayBackend

    presenter.select(0, presenter.models[0].path)
    backend = presenter._backends[presenter.models[0].path] = ScriptedReplayBackend(tiny_tokenizer, replies)
    return backend


def send_and_wait(qtbot, presenter, text):
    with qtbot.waitSignal(presenter.busyChanged, timeout=60_000, check_params_cb=lambda busy: not busy):
        assert presenter.send(text) is None


def test_built_in_tools_run_automatically_and_the_reply_continues(qtbot, presenter, tiny_tokenizer):
    backend = scripted(presenter, tiny_tokenizer, f"Let me compute.\n{CALL}", "It is 42.")
    presenter.tool_names = ["calculate_math"]
    added = []
    presenter.messageAdded.connect(lambda slot, msg: added.append(msg["role"]))
    send_and_wait(qtbot, presenter, "6 times 7?")
    history = presenter.history(0)
    assert [m["role"] for m in history] == ["user", "assistant", "tool", "assistant"]
    assert added == ["assistant", "tool", "assistant"]
    call = history[1]["tool_calls"][0]
    assert history[1]["content"] == "Let me compute." and call["function"]["name"] == "calculate_math"
    assert history[2] == {"role": "tool", "tool_call_id": call["id"], "name": "calculate_math",
                          "content": '{"result": 42}'}
    assert history[3]["content"] == "It is 42."
    assert "calculate_math" in backend.prompts[0] and '{"result": 42}' in backend.prompts[1]


def test_manual_mode_waits_for_the_typed_result(qtbot, presenter, tiny_tokenizer):
    backend = scripted(presenter, tiny_tokenizer, CALL, "Done: 42.")
    presenter.tool_names, presenter.manual_tools = ["calculate_math"], True
    with qtbot.waitSignal(presenter.toolCallsPending, timeout=60_000) as pending:
        presenter.send("6 times 7?")
    assert pending.args[1][0]["function"]["name"] == "calculate_math"
    presenter.wait()
    qtbot.waitUntil(lambda: not presenter.busy)
    assert [m["role"] for m in presenter.history(0)] == ["user", "assistant"]
    with qtbot.waitSignal(presenter.replyFinished, timeout=60_000) as done:
        assert presenter.submit_tool_result(0, "forty-two") is None
    assert done.args[1]["text"] == "Done: 42."
    assert [m["role"] for m in presenter.history(0)] == ["user", "assistant", "tool", "assistant"]
    assert presenter.history(0)[2]["content"] == "forty-two" and "forty-two" in backend.prompts[1]
    assert presenter.submit_tool_result(0, "again") == "No tool call is waiting for a result."


def test_thinking_streams_reasoning_apart_and_the_pane_can_collapse_it(qtbot, workspace_with_runs, tiny_tokenizer,
                                                                    torch_single_thread):
    from studio.panes.chat.view import ChatPane

    pane = ChatPane(workspace_with_runs)
    qtbot.addWidget(pane)
    backend = scripted(pane.presenter, tiny_tokenizer, "weighing words\n</think>\n\nHi!")
    pane.thinking.setCurrentIndex(pane.thinking.findData(True))
    reasoning = []
    pane.presenter.reasoningReceived.connect(lambda slot, piece: reasoning.append(piece))
    pane.input.setPlainText("Hello")
    with qtbot.waitSignal(pane.presenter.replyFinished, timeout=60_000) as done:
        pane.send()
    assert backend.prompts[0].endswith("<think>\n") and "".join(reasoning) == "weighing words"
    assert done.args[1]["text"] == "Hi!"
    assert pane.presenter.history(0)[-1]["reasoning_content"] == "weighing words"
    assert "weighing words" in pane.views[0].toPlainText()
    pane.show_reasoning.setChecked(False)
    assert "weighing words" not in pane.views[0].toPlainText() and "Hi!" in pane.views[0].toPlainText()
    pane.presenter.shutdown()
