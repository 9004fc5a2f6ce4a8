"""Start the web demo: `python -m webdemo --model PATH [--address 127.0.0.1] [--port 8501]`.

Streamlit reads its settings from `.streamlit/config.toml` in the working directory, so the launcher starts it
in this folder: the shipped settings (loopback only, no usage statistics, headless, no developer menu) apply
wherever the operator starts from. The model is the operator's choice, made here; the page offers visitors no
way to change it. A relative model path is resolved before the working directory changes.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from webdemo import MODEL_ENV

HERE = Path(__file__).resolve().parent


def streamlit_command(model: Path, address: str | None = None, port: int | None = None) -> list[str]:
    """The command that serves the page; run it in `HERE`. Flags given here override the shipped config."""
    command = [sys.executable, "-m", "streamlit", "run", str(HERE / "app.py")]
    if address:
        command += ["--server.address", address]
    if port is not None:
        command += ["--server.port", str(port)]
    return command + ["--", "--model", str(model)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m webdemo", description="Serve the MiniMind web chat demo.")
    parser.add_argument("--model", default=os.environ.get(MODEL_ENV),
                        help=f"a run folder, a checkpoint folder or a .gguf (default: ${MODEL_ENV})")
    parser.add_argument("--address", help="interface to listen on (default 127.0.0.1; 0.0.0.0 serves your whole "
                                          "network, without any login)")
    parser.add_argument("--port", type=int, help="port (default 8501)")
    args = parser.parse_args(argv)
    if not args.model:
        parser.error(f"give the model to serve: --model PATH or ${MODEL_ENV}")
    model = Path(args.model).expanduser().resolve()
    if not model.exists():
        parser.error(f"{model}: no such file or folder")
    command = streamlit_command(model, args.address, args.port)
    if os.name == "nt":  # no exec on Windows: wait for the server instead
        return subprocess.call(command, cwd=HERE)
    os.chdir(HERE)
    os.execv(sys.executable, command)  # the server takes this process's place (and its pid, for signals)


if __name__ == "__main__":
    sys.exit(main())
