"""Keep full garbage collections short on the UI thread: freeze the heap once imports have settled.

A full (generation 2) collection walks every tracked object. After torch, pyqtgraph and pydantic are imported
that is several hundred thousand objects, and one collection took 136-170 ms of CPU on the UI thread
(bench.ui_stall, bench/stall_causes.py), the studio's longest stalls. ``gc.freeze()`` moves every object alive
now into a permanent generation that collections skip (CPython docs, gc.freeze), so later full collections walk
only what was made since. Freezing is a constant-time list move; it is redone when new modules were imported
(panes build lazily, the Config pane imports torch in a thread), checked on a slow timer. What gets frozen is
almost all module-level state that lives as long as the process; the cost is that a frozen object that later
becomes cyclic garbage is not reclaimed.
"""
from __future__ import annotations

import gc
import sys

from PySide6.QtCore import QObject, QTimer

CHECK_MS = 2000
# Python's GIL switch interval in the studio process (the default is 5 ms). A thread that gives the GIL up around
# a C call (PySide6 releases it in every Qt call) and then wants it back while another thread runs Python (the
# chat's torch decode loop, the ingest thread) waits up to one interval each time; a redraw that makes a few
# dozen Qt calls then waits tens of ms. bench.ui_stall named it: the chat phase's longest stall was 26-37 ms
# blocked while the chat thread ran Python. 8 interleaved runs each (`python -m bench.ui_stall --repeat 8
# --switch-interval 0.005 0.001`, idle machine): chat max stall 19-47 ms (median 29) at 5 ms, 18-36 ms
# (median 22) at 1 ms; ingest and pan/zoom unchanged (docs/studio.md, Measured).
GIL_SWITCH_INTERVAL_S = 0.001


def share_the_gil() -> None:
    """Set the studio process's GIL switch interval (see GIL_SWITCH_INTERVAL_S); not the trainer's."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)


class HeapFreezer(QObject):
    """``gc.freeze()`` now and whenever ``sys.modules`` has grown since the last freeze."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.modules = 0
        self.freezes = 0
        self._timer = QTimer(self)
        self._timer.setInterval(CHECK_MS)
        self._timer.timeout.connect(self.freeze_if_imported)
        self._timer.start()
        self.freeze_if_imported()

    def freeze_if_imported(self) -> None:
        if len(sys.modules) != self.modules:
            self.modules = len(sys.modules)
            gc.freeze()
            self.freezes += 1
