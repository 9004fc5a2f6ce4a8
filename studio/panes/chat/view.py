"""Chat pane: pick a checkpoint or GGUF, stream replies, sampling controls, compare two models side by side."""
from __future__ import annotations

import html

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QKeySequence, QShortcut, QTextCursor, QTextDocument
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QHBoxLayout,
                               QListWidget, QListWidgetItem, QPlainTextEdit, QPushButton, QScrollArea, QSpinBox,
                               QSplitter, QTextBrowser, QVBoxLayout, QWidget)

from studio.panes.chat.presenter import DEFAULT_SAMPLING, ChatPresenter
from studio.widgets.common import banner, label, primary_button, quit_hook, set_banner
from studio.widgets.records_html import bubbles
from studio.widgets.theme import COLORS, pane_style


RENDER_MS = 50


class ChatPane(QWidget):
    def __init__(self, context, parent: QWidget | None = None):
        super().__init__(parent)
        pane_style(self)
        self.context = context
        self.presenter = ChatPresenter(context, self)
        # Streamed pieces redraw the transcript at most every RENDER_MS (a redraw lays out the whole
        # conversation; one per token held the UI thread for most of each token at 50+ tokens/s).
        self._dirty: set[int] = set()
        self._settled: dict[int, tuple] = {}  # slot -> (what it shows, ids of its messages, where the tail starts)
        self._tail_drawn: dict[int, tuple[str, str]] = {}  # slot -> (reply text, reasoning) its bubble shows
        self._render_timer = QTimer(self)
        self._render_timer.setSingleShot(True)
        self._render_timer.setInterval(RENDER_MS)
        self._render_timer.timeout.connect(self._render_dirty)
        self._build()
        self._wire()
        self.presenter.refresh_models()

    def _build(self) -> None:
        root = QHBoxLayout(self)
        root.setContentsMargins(12, 12, 12, 12)
        side = QWidget()
        side.setMaximumWidth(330)
        sv = QVBoxLayout(side)
        sv.setContentsMargins(0, 0, 8, 0)
        sv.addWidget(label("Chat", "title"))
        models = QGroupBox("Model")
        mv = QVBoxLayout(models)
        self.model_boxes = [QComboBox(), QComboBox()]
        mv.addWidget(self.model_boxes[0])
        self.compare_box = QCheckBox("Compare with a second model")
        mv.addWidget(self.compare_box)
        mv.addWidget(self.model_boxes[1])
        self.model_boxes[1].setVisible(False)
        self.refresh_btn = QPushButton("Refresh list")
        mv.addWidget(self.refresh_btn)
        sv.addWidget(models)

        sampling = QGroupBox("Sampling")
        form = QFormLayout(sampling)
        self.temperature = self._dspin(0, 2, 0.05, DEFAULT_SAMPLING["temperature"])
        self.top_p = self._dspin(0.01, 1, 0.05, DEFAULT_SAMPLING["top_p"])
        self.rep = self._dspin(0.5, 2, 0.05, DEFAULT_SAMPLING["repetition_penalty"])
        self.top_k = QSpinBox()
        self.top_k.setRange(0, 1000)
        self.top_k.setValue(DEFAULT_SAMPLING["top_k"])
        self.top_k.setSpecialValueText("off")
        self.max_tokens = QSpinBox()
        self.max_tokens.setRange(1, 8192)
        self.max_tokens.setValue(DEFAULT_SAMPLING["max_new_tokens"])
        for name, w in (("Temperature", self.temperature), ("Top-k", self.top_k), ("Top-p", self.top_p),
                        ("Repetition penalty", self.rep), ("Max tokens", self.max_tokens)):
            form.addRow(name, w)
        sv.addWidget(sampling)
        sv.addWidget(self._build_tools())
        sysbox = QGroupBox("System prompt")
        syv = QVBoxLayout(sysbox)
        self.system = QPlainTextEdit()
        self.system.setPlaceholderText("Empty: the chat template's default (“You are a helpful assistant”)")
        self.system.setMaximumHeight(80)
        syv.addWidget(self.system)
        sv.addWidget(sysbox)
        self.new_btn = QPushButton("New chat")
        sv.addWidget(self.new_btn)
        sv.addStretch(1)
        # Scrolls: the settings column is ~830 px high, more than a 1280x800 screen gives the pane.
        side_scroll = QScrollArea()
        side_scroll.setWidget(side)
        side_scroll.setWidgetResizable(True)
        side_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        side_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        bar = side_scroll.verticalScrollBar().sizeHint().width()
        side_scroll.setMaximumWidth(side.maximumWidth() + bar)
        side_scroll.setMinimumWidth(side.minimumSizeHint().width() + bar)
        root.addWidget(side_scroll)

        main = QVBoxLayout()
        self.notice = banner()
        main.addWidget(self.notice)
        self.split = QSplitter(Qt.Horizontal)
        self.views = [QTextBrowser(), QTextBrowser()]
        for v in self.views:
            self.split.addWidget(v)
        self.views[1].setVisible(False)
        main.addWidget(self.split, 1)
        self.status = label("", "muted")
        main.addWidget(self.status)
        row = QHBoxLayout()
        self.input = QPlainTextEdit()
        self.input.setPlaceholderText("Message… (Ctrl+Enter to send)")
        self.input.setMaximumHeight(70)
        self.send_btn = primary_button("Send")
        self.stop_btn = QPushButton("Stop")
        self.stop_btn.setEnabled(False)
        row.addWidget(self.input, 1)
        buttons = QVBoxLayout()
        buttons.addWidget(self.send_btn)
        buttons.addWidget(self.stop_btn)
        row.addLayout(buttons)
        main.addLayout(row)
        root.addLayout(main, 1)

    def _build_tools(self) -> QGroupBox:
        """Thinking switch, reasoning shown or collapsed, tool picker, automatic or manual tool results."""
        from core.tools import builtin_registry  # no torch: cheap on the UI thread

        box = QGroupBox("Thinking and tools")
        form = QFormLayout(box)
        self.thinking = QComboBox()
        for text, value in (("template default", None), ("on", True), ("off", False)):
            self.thinking.addItem(text, value)
        self.show_reasoning = QCheckBox("Show reasoning")
        self.show_reasoning.setChecked(True)
        self.tool_list = QListWidget()
        self.tool_list.setMaximumHeight(70)
        for name in builtin_registry().names():
            item = QListWidgetItem(name)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Unchecked)
            self.tool_list.addItem(item)
        self.tool_choice = QComboBox()
        self.tool_choice.setToolTip("Calls are decoded under the offered tools' schemas (OpenAI's tool_choice); "
                                    "'free' lets the model write anything")
        for text, value in (("auto: text or a valid call", "auto"), ("required: must call", "required"),
                            ("none: never call", "none"), ("free: unconstrained", None)):
            self.tool_choice.addItem(text, value)
        self.tool_mode = QComboBox()
        self.tool_mode.addItems(["run automatically", "I type the results"])
        self.tool_rounds = QSpinBox()
        self.tool_rounds.setRange(1, 16)
        self.tool_rounds.setValue(self.presenter.max_tool_rounds)
        form.addRow("Thinking", self.thinking)
        form.addRow(self.show_reasoning)
        form.addRow("Tools", self.tool_list)
        form.addRow("Calls", self.tool_choice)
        form.addRow("Results", self.tool_mode)
        form.addRow("Tool rounds", self.tool_rounds)
        return box

    def checked_tools(self) -> list[str]:
        items = (self.tool_list.item(i) for i in range(self.tool_list.count()))
        return [item.text() for item in items if item.checkState() == Qt.Checked]

    @staticmethod
    def _dspin(lo: float, hi: float, step: float, value: float) -> QDoubleSpinBox:
        w = QDoubleSpinBox()
        w.setRange(lo, hi)
        w.setSingleStep(step)
        w.setDecimals(2)
        w.setValue(value)
        return w

    def _wire(self) -> None:
        p = self.presenter
        p.modelsChanged.connect(self._on_models)
        for slot, box in enumerate(self.model_boxes):
            box.currentIndexChanged.connect(lambda _i, s=slot: p.select(s, self.model_boxes[s].currentData()))
        self.compare_box.toggled.connect(self._on_compare)
        self.refresh_btn.clicked.connect(p.refresh_models)
        self.send_btn.clicked.connect(self.send)
        self.stop_btn.clicked.connect(p.stop)
        self.new_btn.clicked.connect(p.new_chat)
        p.pieceReceived.connect(lambda slot, _piece: self._render_soon(slot))
        p.reasoningReceived.connect(lambda slot, _piece: self._render_soon(slot))
        p.toolCallsPending.connect(self._on_tool_calls_pending)
        self.show_reasoning.toggled.connect(lambda _on: [self._render(s) for s in (0, 1)])
        p.historyChanged.connect(self._render)
        p.replyFinished.connect(self._on_reply)
        p.replyFailed.connect(lambda _slot, msg: set_banner(self.notice, msg))
        p.busyChanged.connect(self._on_busy)
        for keys in ("Ctrl+Return", "Ctrl+Enter"):
            QShortcut(QKeySequence(keys), self.input, self.send)
        quit_hook(self.presenter.shutdown)

    def _on_models(self, models: list) -> None:
        for slot, box in enumerate(self.model_boxes):
            current = box.currentData()
            box.blockSignals(True)
            box.clear()
            for src in models:
                box.addItem(src.label, src.path)
            i = box.findData(current)
            box.setCurrentIndex(i if i >= 0 else min(slot, box.count() - 1))
            box.blockSignals(False)
            self.presenter.select(slot, box.currentData())
        if not models:
            set_banner(self.notice, "No models yet: train a run (Config pane) or export a GGUF.")

    def _on_compare(self, on: bool) -> None:
        self.presenter.compare = on
        self.model_boxes[1].setVisible(on)
        self.views[1].setVisible(on)
        self._render(1)

    def send(self) -> None:
        p = self.presenter
        p.sampling = {"temperature": self.temperature.value(), "top_k": self.top_k.value(),
                      "top_p": self.top_p.value(), "repetition_penalty": self.rep.value(),
                      "max_new_tokens": self.max_tokens.value()}
        p.system_prompt = self.system.toPlainText()
        p.think = self.thinking.currentData()
        p.tool_names = self.checked_tools()
        p.tool_choice = self.tool_choice.currentData()
        p.manual_tools = self.tool_mode.currentIndex() == 1
        p.max_tool_rounds = self.tool_rounds.value()
        if p.pending.get(0):  # manual tools: the input is the result of the waiting call
            problem = p.submit_tool_result(0, self.input.toPlainText())
        else:
            problem = p.send(self.input.toPlainText())
        set_banner(self.notice, problem or "")
        if problem is None:
            self.input.clear()

    def _render_soon(self, slot: int) -> None:
        self._dirty.add(slot)
        if not self._render_timer.isActive():
            self._render_timer.start()

    def _render_dirty(self) -> None:
        for slot in sorted(self._dirty):
            self._render(slot)

    def _render(self, slot: int) -> None:
        """Draw a transcript: the settled messages, then the reply streaming in. Only what changed is laid out
        again: a settled part that grew by whole messages gets them appended, and a streamed piece replaces
        just the streaming bubble. Laying out the whole conversation cost 30-40 ms at a
        dozen long messages (bench.ui_stall's chat phase), the streaming bubble 3-6 ms."""
        self._dirty.discard(slot)
        p = self.presenter
        view = self.views[slot]
        originals = list(p.history(slot)) + list(p.live[slot])
        tail = ([{"role": "assistant", "content": p.partial[slot] + "▍",
                  "reasoning_content": p.partial_reasoning[slot]}]
                if p.busy and slot in p.active_slots() else [])
        shown = self.show_reasoning.isChecked()

        def strip(msgs: list[dict]) -> list[dict]:  # collapsed: the reasoning is kept, not shown
            return msgs if shown else [{k: v for k, v in m.items() if k != "reasoning_content"} for m in msgs]

        title = ""
        if p.compare:
            name = self.model_boxes[slot].currentText() or "(no model)"
            title = f"<p style='color:{COLORS['muted']}'><b>{html.escape(name)}</b></p>"
        key = (title, shown, id(p.history(slot)))
        ids = [id(m) for m in originals]
        doc = view.document()
        before = self._settled.get(slot)
        if tail and self._append_piece(slot, key, ids):
            return
        if before is not None and before[0] == key and before[1] and ids[:len(before[1])] == before[1]:
            # the same conversation, maybe longer: drop the old streaming bubble, append what settled since
            cursor = QTextCursor(doc)
            cursor.setPosition(min(before[2], doc.characterCount() - 1))
            cursor.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
            cursor.removeSelectedText()
            new = originals[len(before[1]):]
            if new:
                cursor.insertHtml(bubbles(strip(new)))
        else:
            empty = ("" if originals or tail else
                     f"<p style='color:{COLORS['muted']}'>Say something to start.</p>")
            view.setHtml(title + (bubbles(strip(originals)) or empty))
        self._settled[slot] = (key, ids, doc.characterCount() - 1)  # where the streaming bubble starts
        self._tail_drawn.pop(slot, None)
        if tail:
            cursor = QTextCursor(doc)
            cursor.movePosition(QTextCursor.MoveOperation.End)
            cursor.insertHtml(bubbles(strip(tail)))
            self._tail_drawn[slot] = (p.partial[slot], p.partial_reasoning[slot])
        view.verticalScrollBar().setValue(view.verticalScrollBar().maximum())

    def _append_piece(self, slot: int, key: tuple, ids: list[int]) -> bool:
        """The streaming reply only grew: type the new text in before its cursor mark, as plain text (a long
        reply's bubble re-laid out per redraw cost 15-20 ms at 1,000 tokens). False when anything else changed."""
        p = self.presenter
        before, drawn = self._settled.get(slot), self._tail_drawn.get(slot)
        if (before is None or before[0] != key or before[1] != ids or drawn is None or not drawn[0]
                or drawn[1] != p.partial_reasoning[slot] or not p.partial[slot].startswith(drawn[0])):
            return False
        view = self.views[slot]
        added = p.partial[slot][len(drawn[0]):]
        if added:
            doc = view.document()  # the last mark is the cursor (a reply may contain the character itself)
            mark = doc.find("▍", doc.characterCount() - 1, QTextDocument.FindFlag.FindBackward)
            if mark.isNull():
                return False
            cursor = QTextCursor(doc)
            cursor.setPosition(mark.selectionStart())  # typed with the format of the reply's last character
            cursor.insertText(added.replace("\n", "\u2028"))  # a line break inside the bubble, as <br> is
            self._tail_drawn[slot] = (p.partial[slot], drawn[1])
        view.verticalScrollBar().setValue(view.verticalScrollBar().maximum())
        return True

    def _on_tool_calls_pending(self, slot: int, calls: list) -> None:
        call = calls[0]["function"]
        set_banner(self.notice, f"Tool call {call['name']}({call['arguments']}): type its result and press Send "
                                f"({len(calls)} waiting).")
        self.input.setPlaceholderText(f"Result of {call['name']}…")

    def _on_reply(self, slot: int, info: dict) -> None:
        rate = info["tokens"] / info["seconds"] if info["seconds"] else 0
        self.status.setText(f"{info['tokens']} tokens in {info['seconds']:.1f} s ({rate:.0f}/s) · "
                            f"ended: {info['reason']}")

    def _on_busy(self, busy: bool) -> None:
        self.send_btn.setEnabled(not busy)
        self.stop_btn.setEnabled(busy)
        if busy:
            self.status.setText("Generating…")

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        self.presenter.shutdown()
        super().closeEvent(event)
