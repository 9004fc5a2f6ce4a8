"""Runs › Open in TensorBoard: a real `tensorboard` server on 127.0.0.1 for the run's logs, opened in the browser
through QDesktopServices; a Python without tensorboard gives a message saying how to install it."""
from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

import pytest
from PySide6.QtCore import QObject, Qt, QUrl, Slot
from PySide6.QtGui import QDesktopServices


def _tensorboard_run(store, run_dir: Path) -> str:
    """A finished run whose folder holds TensorBoard files written by the trainer's own tracker."""
    from core.train.trackers import TensorBoardTracker

    tracker = TensorBoardTracker(run_dir / "tensorboard")
    tracker.handle({"type": "run_started", "step": 0, "config": {"method": "pretrain"}, "resumed_from": None})
    for step, loss in ((1, 6.0), (2, 5.5)):
        tracker.handle({"type": "metric", "step": step, "epoch": 0.1 * step, "metrics": {"loss": loss}})
    tracker.handle({"type": "run_finished", "step": 2, "status": "completed"})
    store.create_run("tb", run_dir=run_dir, method="pretrain", status="completed")
    return "tb"


class Browser(QObject):
    """Where QDesktopServices sends http URLs during the test (Qt's own URL-handler hook), instead of a browser."""

    def __init__(self) -> None:
        super().__init__()
        self.opened: list[str] = []

    @Slot(QUrl)
    def open(self, url: QUrl) -> None:
        self.opened.append(url.toString())


@pytest.fixture()
def browser():
    handler = Browser()
    QDesktopServices.setUrlHandler("http", handler, "open")
    yield handler
    QDesktopServices.unsetUrlHandler("http")


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def test_open_in_tensorboard_serves_the_runs_logs_on_127_0_0_1_and_opens_the_browser(qtbot, context, store,
                                                                                       tmp_path, browser):
    from studio.panes.runs.view import RunsPane

    run_id = _tensorboard_run(store, tmp_path / "run")
    store.create_run("plain", run_dir=tmp_path / "plain", method="pretrain", status="completed")
    pane = RunsPane(context)
    qtbot.addWidget(pane)
    pane.select_run("plain")
    assert not pane.buttons["tensorboard"].isEnabled()  # it logged no TensorBoard files
    pane.select_run(run_id)
    assert pane.buttons["tensorboard"].isEnabled()
    with qtbot.waitSignal(pane.tensorboard.ready, timeout=60000) as ready:
        qtbot.mouseClick(pane.buttons["tensorboard"], Qt.MouseButton.LeftButton)
    logdir, url = ready.args
    assert logdir == str(tmp_path / "run" / "tensorboard") and url.startswith("http://127.0.0.1:")
    assert browser.opened == [url]
    process = pane.tensorboard.processes[logdir]
    try:
        assert b"TensorBoard" in _get(url)
        tags = lambda: json.loads(_get(url + "data/plugin/scalars/tags")).get(".", {})  # noqa: E731
        qtbot.waitUntil(lambda: "loss" in tags(), timeout=30000)  # it loads the folder after it starts serving
        with qtbot.assertNotEmitted(pane.tensorboard.failed):
            qtbot.mouseClick(pane.buttons["tensorboard"], Qt.MouseButton.LeftButton)  # again: the same server
        assert browser.opened == [url, url] and pane.tensorboard.processes[logdir] is process
    finally:
        pane.tensorboard.stop_all()
    assert process.state() == process.ProcessState.NotRunning and not pane.tensorboard.processes


@pytest.mark.skipif(not Path("/usr/bin/python3").is_file(), reason="needs a Python without tensorboard")
def test_a_python_without_tensorboard_gets_a_message_saying_how_to_install_it(qtbot, context, store, tmp_path,
                                                                             browser):
    import subprocess

    from studio.panes.runs.view import RunsPane

    python = shutil.which("python3", path="/usr/bin")
    if subprocess.run([python, "-c", "import tensorboard"], capture_output=True).returncode == 0:
        pytest.skip(f"{python} has tensorboard")
    run_id = _tensorboard_run(store, tmp_path / "run")
    pane = RunsPane(context)
    qtbot.addWidget(pane)
    pane.tensorboard.python = python
    pane.select_run(run_id)
    with qtbot.waitSignal(pane.tensorboard.failed, timeout=30000):
        qtbot.mouseClick(pane.buttons["tensorboard"], Qt.MouseButton.LeftButton)
    text = pane.message_box.text()
    assert text.startswith("TensorBoard is not installed") and f"{python} -m pip install tensorboard" in text
    assert browser.opened == [] and not pane.tensorboard.processes
