"""studio.threads.Task: the worker thread never calls into Qt; everything it reports reaches the UI thread's
slots in order, from the UI thread."""
from __future__ import annotations

import threading


def _on_ui_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def test_a_task_reports_progress_then_its_result_then_finished_on_the_ui_thread(qtbot):
    from studio.threads import Task

    def work(progress, cancelled):
        for i in range(3):
            progress(i + 1, 3, f"step {i + 1}")
        return {"rows": 3}

    seen = []
    task = Task(work)
    task.progress.connect(lambda done, total, text: seen.append(("progress", done, text, _on_ui_thread())))
    task.succeeded.connect(lambda result: seen.append(("succeeded", result, _on_ui_thread())))
    task.finished.connect(lambda: seen.append(("finished", _on_ui_thread())))
    with qtbot.waitSignal(task.finished, timeout=10_000):
        task.start()
    assert seen == [("progress", 1, "step 1", True), ("progress", 2, "step 2", True), ("progress", 3, "step 3", True),
                    ("succeeded", {"rows": 3}, True), ("finished", True)]


def test_a_failing_task_says_why_on_the_ui_thread(qtbot):
    from studio.threads import Task

    def work(progress, cancelled):
        raise ValueError("bad row 7")

    seen = []
    task = Task(work)
    task.failed.connect(lambda message: seen.append((message, _on_ui_thread())))
    with qtbot.waitSignal(task.finished, timeout=10_000):
        task.start()
    assert seen == [("ValueError: bad row 7", True)] and task.error == "ValueError: bad row 7"
