"""MiniMind Studio: the desktop app (PySide6). Panes are thin widgets over plain presenter objects."""
