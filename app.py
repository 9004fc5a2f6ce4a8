"""Start MiniMind Studio from a source checkout: ``python app.py`` (``--self-test``, ``--workspace DIR``)."""
import sys

from studio.app import main

if __name__ == "__main__":
    sys.exit(main())
