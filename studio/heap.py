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
