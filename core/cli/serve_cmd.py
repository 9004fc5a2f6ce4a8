"""`minimind serve`: an OpenAI-compatible HTTP server for a checkpoint, run dir or .gguf file."""
from __future__ import annotations

import signal
import sys

from core.cli import CLIError
from core.cli.infer_cmd import add_model_args, open_backend_from_args


def register(subparsers) -> None:
    serve = subparsers.add_parser("serve", help="serve a model over an OpenAI-compatible HTTP API",
                                  description="Endpoints: GET /v1/models, POST /v1/chat/completions, "
                                              "POST /v1/completions (stream=true for Server-Sent Events).")
    add_model_args(serve)
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 exposes it)")
    serve.add_argument("--port", type=int, default=8998, help="port (default 8998, MiniMind's)")
    serve.add_argument("--max-batch", type=int, default=32,
                       help="torch checkpoints: most concurrent requests decoded as one batch (default 32; "
                            "1 = one at a time). GGUF models always answer one request at a time")
    serve.add_argument("--verbose", action="store_true", help="log every request to stderr")
    serve.set_defaults(func=_serve)


def _serve(args) -> int:
    from core.serve import make_server

    backend = open_backend_from_args(args, dtype="auto")
    try:
        server = make_server(backend, args.host, args.port, verbose=args.verbose, max_batch=max(1, args.max_batch))
    except OSError as exc:
        backend.close()
        raise CLIError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}; "
                       "pick another --port") from None
    print(f"serving {backend.name!r} at {server.url} (Ctrl+C to stop)", file=sys.stderr, flush=True)

    def stop(signum, frame):  # SIGTERM (the studio stopping the process) ends as cleanly as Ctrl+C
        raise KeyboardInterrupt

    # uvicorn catches SIGINT/SIGTERM itself, shuts down gracefully, then re-raises the signal to the handler
    # that was there before: this one, so the `finally` below still closes the backend.
    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
        backend.close()
    return 0
