"""Logic of the Chat pane: model list, per-model histories (persisted), streamed replies, stop, compare.

Generation runs on a worker thread per reply through `core.infer` (torch checkpoint or llama.cpp GGUF behind
one interface); each text piece is emitted as a signal, queued to the UI thread, so the window never blocks.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from studio.store.model_sources import ModelSource, list_checkpoints, list_ggufs

DEFAULT_SAMPLING = {"temperature": 0.7, "top_k": 50, "top_p": 0.9, "repetition_penalty": 1.0,
                    "max_new_tokens": 256}


class ChatPresenter(QObject):
    # What each reply is generated on. Tests that check the drawing of every streamed piece set a runner that
    # answers on the calling thread (tests/test_studio_chat.py), so no piece depends on the scheduler.
    thread_class = threading.Thread

    modelsChanged = Signal(list)              # [ModelSource]
    pieceReceived = Signal(int, str)          # slot (0 = left/only, 1 = right), text piece
    replyFinished = Signal(int, dict)         # slot, {"text", "reason": stop|length|stopped, "tokens", "seconds"}
    replyFailed = Signal(int, str)
    reasoningReceived = Signal(int, str)      # slot, reasoning piece (thinking models)
    messageAdded = Signal(int, dict)          # slot, a finished assistant/tool turn of the reply in progress
    toolCallsPending = Signal(int, list)      # slot, calls (OpenAI dicts) waiting for results typed by the person
    historyChanged = Signal(int)              # slot whose transcript must be redrawn
    busyChanged = Signal(bool)
    _replyDone = Signal(int)                  # worker thread -> UI thread hand-over of a finished reply

    def __init__(self, context, parent: QObject | None = None):
        super().__init__(parent)
        self.context = context
        self.models: list[ModelSource] = []
        self.selected: list[str | None] = [None, None]
        self.compare = False
        self.system_prompt = ""
        self.sampling = dict(DEFAULT_SAMPLING)
        self.histories: dict[str, list[dict]] = self._load_histories()
        self.partial = ["", ""]
        self.partial_reasoning = ["", ""]
        self.live: list[list[dict]] = [[], []]   # turns of the reply in progress (tool calls, results)
        self.think: bool | None = None           # open/skip the reasoning block; None = the template's default
        self.tool_names: list[str] = []          # built-in tools offered to the model (core.tools)
        self.tool_choice: str | None = "auto"    # OpenAI's tool_choice, enforced while decoding; None = free
        self.manual_tools = False                # True: the person types each tool result
        self.max_tool_rounds = 4                 # answers per message that may call tools (automatic mode)
        self.pending: dict[int, list] = {}       # slot -> ToolCalls waiting for a typed result (manual mode)
        self._backends: dict[str, object] = {}
        self._load_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: dict[int, threading.Thread] = {}
        self._done_info: dict[int, dict | None] = {}
        self._replyDone.connect(self._on_finished)
        self.pieceReceived.connect(self._on_piece)
        self.reasoningReceived.connect(self._on_reasoning)
        self.messageAdded.connect(self._on_message)

    # ---- models ----------------------------------------------------------------------------------
    def refresh_models(self) -> list[ModelSource]:
        """Re-list the models (also when runs, checkpoints or exports change: MainWindow._connect_pane)."""
        self.models = list_checkpoints(self.context) + list_ggufs(self.context)
        self.modelsChanged.emit(self.models)
        return self.models

    def select(self, slot: int, path: str | None) -> None:
        self.selected[slot] = path
        self.historyChanged.emit(slot)

    def active_slots(self) -> list[int]:
        return [0, 1] if self.compare else [0]

    def history(self, slot: int) -> list[dict]:
        path = self.selected[slot]
        return self.histories.setdefault(path, []) if path else []

    def _backend(self, path: str):
        with self._load_lock:  # two slots may load at once; each path loads once
            if path not in self._backends:
                from core.infer import open_backend
                self._backends[path] = open_backend(path)
            return self._backends[path]

    # ---- chatting --------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return any(t.is_alive() for t in self._threads.values())

    def send(self, text: str) -> str | None:
        """Send `text` to the selected model (both in compare mode). Returns a message when it cannot."""
        if self.busy:
            return "A reply is still streaming; stop it first."
        slots = self.active_slots()
        paths = [self.selected[s] for s in slots]
        if not all(paths):
            return "Choose a model first" + (" on both sides." if self.compare else ".")
        if self.compare and paths[0] == paths[1]:
            return "Compare needs two different models."
        text = text.strip()
        if not text:
            return "Type a message first."
        self.pending.clear()
        for slot in slots:
            self.history(slot).append({"role": "user", "content": text})
        self._start(slots)
        return None

    def _start(self, slots: list[int]) -> None:
        self._stop.clear()
        params = dict(self.sampling)
        for slot in slots:
            messages = ([{"role": "system", "content": self.system_prompt}] if self.system_prompt.strip() else [])
            messages += list(self.history(slot))
            self.partial[slot] = self.partial_reasoning[slot] = ""
            self.historyChanged.emit(slot)
            t = self.thread_class(target=self._generate, args=(slot, self.selected[slot], messages, params),
                                  daemon=True, name=f"chat-{slot}")
            self._threads[slot] = t
        self.busyChanged.emit(True)
        for slot in slots:
            self._threads[slot].start()

    def submit_tool_result(self, slot: int, text: str) -> str | None:
        """Manual tools: `text` answers the first waiting call; the reply continues once all are answered."""
        from core.tools import tool_message

        calls = self.pending.get(slot)
        if not calls:
            return "No tool call is waiting for a result."
        if self.busy:
            return "A reply is still streaming; stop it first."
        call = calls.pop(0)
        self.history(slot).append(tool_message(call.id, call.name, text))
        self.save_histories()
        self.historyChanged.emit(slot)
        if calls:
            self.toolCallsPending.emit(slot, [c.openai() for c in calls])
        else:
            del self.pending[slot]
            self._start([slot])
        return None

    def _generate(self, slot: int, path: str, messages: list[dict], params) -> None:
        """Worker thread: answer, run the tools it calls (automatic mode) and answer again, up to
        `max_tool_rounds`; in manual mode stop at the first calls, which wait for `submit_tool_result`."""
        t0 = time.perf_counter()
        reason, tokens, output, pending = "stopped", 0, None, []
        try:
            from core.infer import SamplingParams  # imported here: the first import takes seconds
            from core.tools import builtin_registry

            sampling = SamplingParams(**params)
            backend = self._backend(path)
            registry = builtin_registry()
            tools = registry.schemas(self.tool_names) or None
            for round_ in range(self.max_tool_rounds + 1):
                output, stopped = self._answer_once(slot, backend, messages, sampling, tools)
                tokens += getattr(getattr(backend, "usage", None), "completion_tokens", 0) or 0
                messages.append(output.assistant_message())
                self._emit(self.messageAdded, slot, messages[-1])
                if stopped:
                    break
                reason = backend.finish_reason or "stop"
                if not (tools and output.tool_calls) or round_ == self.max_tool_rounds:
                    break
                if self.manual_tools:
                    pending = list(output.tool_calls)
                    reason = "tool_calls"
                    break
                for message in registry.answer(output.tool_calls):
                    messages.append(message)
                    self._emit(self.messageAdded, slot, message)
        except Exception as exc:  # the user sees why the model could not answer
            self._emit(self.replyFailed, slot, f"{Path(path).name}: {type(exc).__name__}: {exc}")
            self._finish(slot, None)
            return
        info = {"text": output.content, "reason": reason, "tokens": tokens, "seconds": time.perf_counter() - t0,
                "model": path, "pending": pending}
        self._finish(slot, info)

    def _answer_once(self, slot: int, backend, messages: list[dict], sampling, tools):
        """Stream one answer; returns (ChatOutput, stopped by the person)."""
        from core.infer.answer_format import AnswerFormat
        from core.infer.chat_output import ChatOutput

        output = ChatOutput()
        fmt = AnswerFormat.from_openai(tools, self.tool_choice) if tools and self.tool_choice else None
        events = backend.chat_events(messages, sampling, tools, self.think, fmt)
        try:
            for delta in events:
                if self._stop.is_set():
                    return output, True
                output.add(delta)
                if delta.kind == "content" and not self._emit(self.pieceReceived, slot, delta.text):
                    return output, True
                if delta.kind == "reasoning" and not self._emit(self.reasoningReceived, slot, delta.text):
                    return output, True
        finally:
            events.close()
        return output, self._stop.is_set()

    def _finish(self, slot: int, info: dict | None) -> None:
        # runs on the worker thread; the signal is queued, `_on_finished` runs on the UI thread
        self._done_info[slot] = info
        self._emit(self._replyDone, slot)

    def _emit(self, signal, *args) -> bool:
        """Emit from the worker thread; False when the presenter is gone (its pane was closed)."""
        try:
            signal.emit(*args)
            return True
        except RuntimeError:
            self._stop.set()
            return False

    def _on_piece(self, slot: int, piece: str) -> None:
        self.partial[slot] += piece

    def _on_reasoning(self, slot: int, piece: str) -> None:
        self.partial_reasoning[slot] += piece

    def _on_message(self, slot: int, message: dict) -> None:
        self.live[slot].append(message)
        self.partial[slot] = self.partial_reasoning[slot] = ""
        self.historyChanged.emit(slot)

    def _on_finished(self, slot: int) -> None:
        info = self._done_info.pop(slot, None)
        self._threads.pop(slot, None)
        model = info["model"] if info is not None else self.selected[slot]
        if self.live[slot] and model:
            self.histories.setdefault(model, []).extend(self.live[slot])
        self.live[slot] = []
        self.partial[slot] = self.partial_reasoning[slot] = ""
        self.save_histories()
        if info is not None:
            pending = info.pop("pending")
            if pending:
                self.pending[slot] = pending
            self.replyFinished.emit(slot, info)
            if pending:
                self.toolCallsPending.emit(slot, [c.openai() for c in pending])
        self.historyChanged.emit(slot)
        if not self._threads:
            self.busyChanged.emit(False)

    def stop(self) -> None:
        """Stop streaming; what came so far stays in the history."""
        self._stop.set()

    def wait(self, seconds: float = 30.0) -> None:
        for t in list(self._threads.values()):
            t.join(seconds)

    def new_chat(self) -> None:
        """Forget the conversation of the selected model(s)."""
        for slot in self.active_slots():
            if self.selected[slot]:
                self.histories[self.selected[slot]] = []
                self.historyChanged.emit(slot)
        self.save_histories()

    # ---- persistence -----------------------------------------------------------------------------
    def history_file(self) -> Path:
        return self.context.workspace.root / "chats" / "history.json"

    def _load_histories(self) -> dict[str, list[dict]]:
        path = self.history_file()
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return {str(k): list(v) for k, v in data.items()} if isinstance(data, dict) else {}
        except (json.JSONDecodeError, OSError):
            return {}  # an unreadable history must not keep the chat from opening

    def save_histories(self) -> None:
        path = self.history_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({k: v for k, v in self.histories.items() if v}, ensure_ascii=False, indent=1),
                       encoding="utf-8")
        tmp.replace(path)

    def shutdown(self) -> None:
        self.stop()
        self.wait(10)
        for backend in self._backends.values():
            try:
                backend.close()
            except Exception:
                pass
        self._backends.clear()
