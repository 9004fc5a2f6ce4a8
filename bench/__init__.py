"""Benchmarks: `python -m bench` runs them all and prints one table (bench/__main__.py); each module also runs
alone (`python -m bench.<name>`) and exposes `run() -> dict`."""
