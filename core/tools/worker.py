"""The tool worker: child processes that run tool calls and can be killed, so a time limit is a real one.

A thread cannot be stopped, and big-integer work holds the GIL: `round(7, -10**7)` on a tool thread once froze
every other thread for seconds, the thread meant to time it out included. So a tool marked ``isolated`` runs in
a child process (``main()`` below; the frozen app runs it when given ``--tool-worker``). The calling thread
only waits on a queue for the answer; when the tool's timeout passes first, the child is killed and the call
becomes an error result. Children are kept (``MAX_IDLE``) and reused: one call at a time each, so concurrent
callers get children of their own.

Protocol, one JSON object a line: the child says ``{"ready": true}`` once it has started; each request
``{"func": "module:qualname", "name", "args", "max_chars"}`` is answered by ``{"text": the tool message}``. The
child caps its own address space (``MEMORY_LIMIT``, where the OS enforces it) so a memory blow-up ends in a
MemoryError result rather than in swapping the machine. It exits when its stdin closes, i.e. with its parent.
"""
from __future__ import annotations

import atexit
import importlib
import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

from core.tools.result import call_text, error_result

FLAG = "--tool-worker"  # the frozen app runs this module's main() when given it (studio.app)
START_TIMEOUT_S = 60.0  # starting Python is not the tool's time: a loaded machine may take seconds
MAX_IDLE = 2
MEMORY_LIMIT = 1 << 30
REPO_ROOT = Path(__file__).resolve().parents[2]


def worker_command() -> list[str]:
    if getattr(sys, "frozen", False):  # a PyInstaller bundle: sys.executable is the app, with no .py files
        return [sys.executable, FLAG]
    # -c, not -m: core.tools imports this module first, and runpy warns when it then runs it again as __main__
    return [sys.executable, "-c", "import sys; from core.tools.worker import main; sys.exit(main())"]


def func_path(func) -> str:
    """``module:qualname`` of a module-level function (what the child imports); ValueError for anything else."""
    path = f"{getattr(func, '__module__', '')}:{getattr(func, '__qualname__', '')}"
    if "<" in path or path.startswith(":") or path.endswith(":"):
        raise ValueError(f"{path}: an isolated tool's function must be a module-level function, so that the tool "
                         "worker process can import it")
    return path


# ------------------------------------------------------------------------------------------- the parent's side
class ToolWorkerError(RuntimeError):
    """The child did not start, answered something else, or ended."""


class _Child:
    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
        self.proc = subprocess.Popen(worker_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                     text=True, encoding="utf-8", bufsize=1)
        self.lines: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._read, name="tool-worker-reader", daemon=True).start()
        if self.answer(START_TIMEOUT_S) != {"ready": True}:
            self.kill()
            raise ToolWorkerError(f"the tool worker did not start within {START_TIMEOUT_S:g} s")

    def _read(self) -> None:
        with self.proc.stdout:
            for line in self.proc.stdout:
                self.lines.put(line)
        self.lines.put(None)  # the child ended (or was killed)

    def answer(self, timeout: float) -> dict | None:
        """The child's next message; None when ``timeout`` passed first; ToolWorkerError when it ended."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            return None
        if line is None:
            raise ToolWorkerError(f"the tool worker ended (exit {self.proc.wait()})")
        return json.loads(line)

    def ask(self, request: str, timeout: float) -> dict | None:
        try:
            self.proc.stdin.write(request + "\n")
            self.proc.stdin.flush()
        except OSError as exc:
            raise ToolWorkerError(f"the tool worker ended ({exc})") from None
        return self.answer(timeout)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.close()

    def close(self) -> None:
        """Closing stdin ends the child by itself (it reads requests until EOF)."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass


class ToolWorkers:
    """The pool of children. Thread-safe; a forked copy of this process starts a pool of its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[_Child] = []
        self._pid = os.getpid()

    def call(self, func, name: str, args: dict, timeout_s: float, max_chars: int) -> str:
        """The tool message for ``func(**args)`` run in a child; an error result after ``timeout_s``."""
        try:
            request = json.dumps({"func": func_path(func), "name": name, "args": args, "max_chars": max_chars},
                                 ensure_ascii=True)
        except (TypeError, ValueError) as exc:
            return error_result(f"{name}: arguments are not JSON ({exc})")
        try:
            child = self._take()
        except (OSError, ToolWorkerError) as exc:
            return error_result(f"{name}: the tool worker could not start ({exc})")
        try:
            reply = child.ask(request, timeout_s)
        except (ToolWorkerError, ValueError) as exc:
            child.kill()
            return error_result(f"{name}: {exc}")
        if reply is None:
            child.kill()  # the work stops here: nothing of it runs in this process
            return error_result(f"{name}: timed out after {timeout_s:g} s")
        self._give_back(child)
        return reply["text"]

    def _take(self) -> _Child:
        with self._lock:
            if self._pid != os.getpid():  # forked: the children and reader threads are the parent's
                self._idle, self._pid = [], os.getpid()
            child = self._idle.pop() if self._idle else None
        return child if child is not None and child.proc.poll() is None else _Child()

    def _give_back(self, child: _Child) -> None:
        with self._lock:
            if self._pid == os.getpid() and len(self._idle) < MAX_IDLE:
                self._idle.append(child)
                return
        child.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for child in idle:
            child.close()


WORKERS = ToolWorkers()
atexit.register(WORKERS.close)


# -------------------------------------------------------------------------------------------- the child's side
def _limit_memory() -> None:
    try:
        import resource
    except ImportError:  # Windows
        return
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY or soft > MEMORY_LIMIT:
            limit = MEMORY_LIMIT if hard == resource.RLIM_INFINITY else min(MEMORY_LIMIT, hard)
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ValueError, OSError):  # not enforced or not allowed here (macOS): the parent's kill still holds
        pass


def _function(path: str):
    module, _, qualname = path.partition(":")
    value = importlib.import_module(module)
    for part in qualname.split("."):
        value = getattr(value, part)
    return value


def main(argv: list[str] | None = None) -> int:
    _limit_memory()
    stdin = open(sys.stdin.fileno(), encoding="utf-8", closefd=False)
    out = sys.stdout

    def send(message: dict) -> None:
        out.write(json.dumps(message, ensure_ascii=True) + "\n")
        out.flush()

    send({"ready": True})
    for line in stdin:
        request = json.loads(line)
        try:
            func = _function(request["func"])
        except (ImportError, AttributeError) as exc:
            send({"text": error_result(f"{request['name']}: not found in the tool worker ({exc})")})
            continue
        send({"text": call_text(request["name"], func, request["args"], request["max_chars"])})
    return 0

