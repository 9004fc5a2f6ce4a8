"""`minimind serve`: an OpenAI-compatible HTTP server for a checkpoint, run dir or .gguf file."""
from __future__ import annotations

import ipaddress
import os
import signal
import sys

from core.cli import CLIError
from core.cli.infer_cmd import add_model_args, open_backend_from_args
from core.config.serve import API_KEY_ENV, ServerOptions


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
    access = serve.add_argument_group("access")
    access.add_argument("--api-key", default=os.environ.get(API_KEY_ENV) or None, metavar="KEY",
                        help=f"require 'Authorization: Bearer KEY' on /v1/* (401 otherwise; /health stays open). "
                             f"Default: ${API_KEY_ENV}, else no key")
    access.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                        help="also answer requests whose Host header is NAME (repeat for several; '*' = any). "
                             "Default: 127.0.0.1, localhost, [::1] and the address bound, if an IP")
    limits = serve.add_argument_group("limits (per server; the defaults suit one desktop user)")
    defaults = ServerOptions()
    limits.add_argument("--max-queue", type=int, default=defaults.max_queue, metavar="N",
                        help=f"requests waiting or generating before 429 (default {defaults.max_queue})")
    limits.add_argument("--max-scored-tokens", type=int, default=defaults.max_scored_tokens, metavar="N",
                        help="/v1/completions with logprobs: (prompt + completion tokens) x (1 + logprobs), summed "
                             f"over the batch, before 400 (default {defaults.max_scored_tokens:,})")
    limits.add_argument("--max-connections", type=int, default=defaults.max_connections, metavar="N",
                        help=f"open connections before 503 (default {defaults.max_connections})")
    limits.add_argument("--keep-alive-timeout", type=int, default=defaults.keep_alive_timeout, metavar="S",
                        help=f"close a kept-alive connection idle S seconds (default {defaults.keep_alive_timeout})")
    limits.add_argument("--read-timeout", type=float, default=defaults.read_timeout, metavar="S",
                        help="close a connection whose request (line, headers, body) has not arrived whole S "
                             f"seconds after it began (default {defaults.read_timeout:g})")
    serve.set_defaults(func=_serve)


def options_from_args(args) -> ServerOptions:
    from pydantic import ValidationError

    try:
        return ServerOptions(api_key=args.api_key, allow_hosts=tuple(args.allow_host), max_queue=args.max_queue,
                             max_scored_tokens=args.max_scored_tokens, max_connections=args.max_connections,
                             keep_alive_timeout=args.keep_alive_timeout, read_timeout=args.read_timeout)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "serve"
        flag = "--allow-host" if field == "allow_hosts" else "--" + field.replace("_", "-")
        raise CLIError(f"{flag}: {err['msg'].removeprefix('Value error, ')}") from None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def access_notes(host: str, options: ServerOptions) -> list[str]:
    """What a user binding beyond this machine should know: which Host names are answered, and the key."""
    notes = ["API key required (Authorization: Bearer ...; /health is open)"] if options.api_key else []
    if not _is_loopback(host):
        if not options.allow_hosts:
            notes.append(f"bound to {host}: answering only requests whose Host is 127.0.0.1, localhost, [::1] or "
                         "the bound address (when an IP); add --allow-host NAME for each name or address that "
                         "other machines use")
        if not options.api_key:
            notes.append("warning: reachable from other machines without an API key (--api-key)")
    return notes


def _serve(args) -> int:
    from core.serve import make_server

    options = options_from_args(args)
    backend = open_backend_from_args(args, dtype="auto")
    try:
        server = make_server(backend, args.host, args.port, verbose=args.verbose, max_batch=max(1, args.max_batch),
                             options=options)
    except OSError as exc:
        backend.close()
        raise CLIError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}; "
                       "pick another --port") from None
    print(f"serving {backend.name!r} at {server.url} (Ctrl+C to stop)", file=sys.stderr, flush=True)
    for note in access_notes(args.host, options):
        print(note, file=sys.stderr, flush=True)

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
