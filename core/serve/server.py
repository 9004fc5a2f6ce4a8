"""OpenAI-compatible HTTP server on the standard library (`http.server.ThreadingHTTPServer`).

Endpoints: GET /v1/models, POST /v1/chat/completions, POST /v1/completions (both with `stream`: Server-Sent
Events, `data: {...}` chunks ending with `data: [DONE]`), GET /health. Connections are handled on threads,
but generation runs one request at a time under a lock (others wait their turn): a backend holds one KV cache.
Every failure is answered with an OpenAI-style JSON error and a 4xx/5xx status; nothing a client sends can
stop the server.

    server = make_server(open_backend("runs/sft-1"), "127.0.0.1", 8998)
    server.serve_forever()
"""
from __future__ import annotations

import json
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from core.infer.backend import Backend
from core.serve import protocol as p
from core.serve.protocol import APIError

MAX_BODY_BYTES = 4 * 1024 * 1024
SOCKET_TIMEOUT_S = 120  # a client that stops sending mid-request frees its thread after this


class MiniMindServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, backend: Backend, verbose: bool = False):
        super().__init__(address, Handler)
        self.backend, self.verbose = backend, verbose
        self.generation_lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start_background(self) -> threading.Thread:
        """Serve on a daemon thread (tests, the studio); stop with `shutdown()` then `server_close()`."""
        thread = threading.Thread(target=self.serve_forever, name="minimind-serve", daemon=True)
        thread.start()
        return thread


def make_server(backend: Backend, host: str = "127.0.0.1", port: int = 8998, verbose: bool = False) -> MiniMindServer:
    """Bind (port 0 picks a free one: read `server.server_address`) without serving yet."""
    return MiniMindServer((host, port), backend, verbose)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "MiniMindServe/1"
    timeout = SOCKET_TIMEOUT_S
    server: MiniMindServer

    # ---- routing ------------------------------------------------------------------------------------
    def do_GET(self):
        self._dispatch({"/v1/models": self._models, "/health": self._health}, "GET")

    def do_POST(self):
        self._dispatch({"/v1/chat/completions": self._chat, "/v1/completions": self._completions}, "POST")

    def do_PUT(self):
        self._dispatch({}, "PUT")

    do_DELETE = do_PATCH = do_PUT

    def _dispatch(self, routes: dict, method: str):
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        try:
            route = routes.get(path)
            if route is None:
                known = {"/v1/models", "/health", "/v1/chat/completions", "/v1/completions"}
                if path in known:
                    raise APIError(405, f"{method} is not allowed on {path}", code="method_not_allowed")
                raise APIError(404, f"unknown path {path!r}; this server offers /v1/models, "
                                    "/v1/chat/completions and /v1/completions", code="not_found")
            route()
        except APIError as exc:
            self._send_json(exc.status, exc.body())
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away; nothing to answer
        except Exception as exc:  # a bug of ours: answer 500, keep serving
            traceback.print_exc(file=sys.stderr)
            try:
                self._send_json(500, APIError(500, f"internal error: {type(exc).__name__}: {exc}",
                                              type_="server_error").body())
            except OSError:
                self.close_connection = True

    # ---- endpoints ----------------------------------------------------------------------------------
    def _health(self):
        self._send_json(200, {"status": "ok", "model": self.server.backend.name})

    def _models(self):
        self._send_json(200, {"object": "list", "data": [
            {"id": self.server.backend.name, "object": "model", "created": 0, "owned_by": "minimind"}]})

    def _chat(self):
        req = p.parse(p.ChatCompletionRequest, self._read_json())
        backend = self._backend_for(req.model)
        sampling = req.sampling(backend.max_context)
        messages = [m.as_template_message() for m in req.messages]
        prompt_ids = backend.tokenize(backend.render_chat(messages))
        self._generate(backend, prompt_ids, sampling, req, chat=True)

    def _completions(self):
        req = p.parse(p.CompletionRequest, self._read_json())
        backend = self._backend_for(req.model)
        sampling = req.sampling(backend.max_context)
        prompt = req.prompt_value()
        if isinstance(prompt, list):
            bad = [t for t in prompt if not 0 <= t < backend.vocab_size]
            if bad:
                raise APIError(400, f"prompt: token id {bad[0]} is outside the vocabulary (0..{backend.vocab_size - 1})",
                               param="prompt", code="invalid_value")
            prompt_ids = prompt
        else:
            prompt_ids = backend.tokenize(prompt)
        self._generate(backend, prompt_ids, sampling, req, chat=False)

    def _generate(self, backend: Backend, prompt_ids: list[int], sampling, req, chat: bool):
        if not prompt_ids:
            raise APIError(400, "the prompt is empty; send at least one character", param="prompt",
                           code="invalid_value")
        if len(prompt_ids) >= backend.max_context:
            raise APIError(400, f"the prompt has {len(prompt_ids)} tokens; this model's context holds "
                                f"{backend.max_context}; shorten it", param="messages" if chat else "prompt",
                           code="context_length_exceeded")
        cid = p.new_id("chatcmpl" if chat else "cmpl")
        with self.server.generation_lock:
            pieces = backend.stream_ids(prompt_ids, sampling)
            if req.stream:
                self._stream(backend, pieces, cid, req, chat)
                return
            text = "".join(pieces)
            reason = backend.finish_reason or "length"
            body = (p.chat_completion if chat else p.text_completion)(cid, backend.name, text, reason, backend.usage)
        self._send_json(200, body)

    def _stream(self, backend: Backend, pieces, cid: str, req, chat: bool):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")  # the stream ends when the connection does
        self.end_headers()
        self.close_connection = True
        name = backend.name
        try:
            if chat:
                self._event(p.chat_chunk(cid, name, {"role": "assistant", "content": ""}))
            for piece in pieces:
                self._event(p.chat_chunk(cid, name, {"content": piece}) if chat
                            else p.text_completion(cid, name, piece, None))
            reason = backend.finish_reason or "length"
            self._event(p.chat_chunk(cid, name, {}, reason, backend.usage) if chat
                        else p.text_completion(cid, name, "", reason, backend.usage))
            if req.stream_options is not None and req.stream_options.include_usage:
                self._event(p.chat_chunk(cid, name, {}, usage=backend.usage, no_choices=True) if chat
                            else {**p.text_completion(cid, name, "", None, backend.usage), "choices": []})
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # client disconnected: stop generating, release the lock
        except Exception as exc:  # headers are sent: report in-band, as OpenAI does
            traceback.print_exc(file=sys.stderr)
            try:
                self._event(APIError(500, f"generation failed: {exc}", type_="server_error").body())
            except OSError:
                pass
        finally:
            pieces.close()

    # ---- plumbing -----------------------------------------------------------------------------------
    def _backend_for(self, model: str) -> Backend:
        backend = self.server.backend
        if model != backend.name:
            raise APIError(404, f"the model {model!r} does not exist here; this server serves "
                                f"{backend.name!r} (see GET /v1/models)", param="model", code="model_not_found")
        return backend

    def _read_json(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            raise APIError(411, "chunked request bodies are not supported; send Content-Length")
        ctype = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        length_header = self.headers.get("Content-Length")
        try:
            length = int(length_header) if length_header is not None else 0
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise APIError(400, f"invalid Content-Length {length_header!r}")
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # the unread body would be taken for the next request
            raise APIError(413, f"request body of {length} bytes exceeds the {MAX_BODY_BYTES}-byte limit",
                           code="request_too_large")
        raw = self.rfile.read(length) if length else b""
        if ctype != "application/json":
            raise APIError(415, f"Content-Type must be application/json, got {ctype or 'none'!r}")
        if not raw:
            raise APIError(400, "the request body is empty; send a JSON object")
        try:
            payload = json.loads(raw.decode("utf-8"))
            # "\ud800" escapes decode to lone surrogates, which no tokenizer can encode: refuse them here.
            json.dumps(payload, ensure_ascii=False).encode("utf-8")
            return payload
        except UnicodeDecodeError:
            raise APIError(400, "the request body is not valid UTF-8") from None
        except UnicodeEncodeError:
            raise APIError(400, "the request contains an unpaired UTF-16 surrogate escape (\\ud800-\\udfff); "
                                "send valid Unicode text") from None
        except json.JSONDecodeError as exc:
            raise APIError(400, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
        except RecursionError:
            raise APIError(400, "the JSON body is nested too deeply") from None

    def _send_json(self, status: int, body: dict):
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _event(self, body: dict):
        self.wfile.write(b"data: " + json.dumps(body, ensure_ascii=False).encode("utf-8") + b"\n\n")
        self.wfile.flush()

    def send_error(self, code, message=None, explain=None):
        """http.server's own errors (malformed request line, unsupported method, oversized headers) as JSON."""
        self.close_connection = True
        try:
            self._send_json(code, APIError(code, message or explain or "malformed request").body())
        except OSError:
            pass

    def log_message(self, format, *args):
        if self.server.verbose:
            super().log_message(format, *args)
