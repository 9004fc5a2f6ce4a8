"""Worker entry: `python -m core.train --config FILE [--set k=v ...] [--resume RUN_DIR]` (also under torchrun).

This is what the studio launches; it speaks the event stream on stdout (docs/events.md).
"""
import sys

from core.train.cli import main

if __name__ == "__main__":
    sys.exit(main())
