"""Worker entry: `python -m core.train --config FILE [--set k=v ...] [--resume RUN_DIR]` (also under torchrun).

This is what the studio launches; it speaks the event stream on stdout (docs/events.md). Under torchrun, `record`
writes an exception that ends a rank into torchrun's error file, so torchrun's summary names it instead of
"To enable traceback see ...".
"""
import sys

from torch.distributed.elastic.multiprocessing.errors import record

from core.train.cli import main

if __name__ == "__main__":
    sys.exit(record(main)())
