"""MiniMind Studio: the desktop app (PySide6). Panes are thin widgets over plain presenter objects."""
from __future__ import annotations


def _fix_signal_emit_refcount() -> None:
    """Work around PySide6 6.12.0 on Python < 3.12: ``SignalInstance.emit()`` returns ``True`` without taking a
    reference, so each emit from Python drops one reference to ``True``; after a few hundred emits CPython
    aborts ("Fatal Python error: bool_dealloc"). Measured here, and fixed only where the probe shows the leak,
    so a fixed PySide6 (or Python 3.12+, where True is immortal) is left alone.
    """
    import ctypes
    import sys

    try:
        from PySide6.QtCore import QObject, Signal, SignalInstance
    except ImportError:
        return
    if getattr(SignalInstance.emit, "_minimind_refcount_fix", False):
        return

    class _Probe(QObject):
        ping = Signal()

    probe = _Probe()
    before = sys.getrefcount(True)
    probe.ping.emit()
    if sys.getrefcount(True) >= before:
        return
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(True))  # the probe's own lost reference
    original = SignalInstance.emit

    def emit(self, *args):
        result = original(self, *args)
        if result is True:
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(True))
        return result

    emit._minimind_refcount_fix = True
    SignalInstance.emit = emit


_fix_signal_emit_refcount()
