"""`python -m core`: the `minimind` command (core/cli)."""
import sys

from core.cli import main

sys.exit(main())
