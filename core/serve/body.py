"""A request body as JSON, or an `APIError` saying what is wrong with it.

Checked before the body is read: chunked transfer (411), a declared length over `MAX_BODY_BYTES` (413, refused
unread), a Content-Type other than application/json (415). Checked after: UTF-8, JSON syntax, nesting depth,
lone surrogate escapes, and integers longer than Python converts (`sys.get_int_max_str_digits()`, 4,300 digits
by default): `json.loads` raises a bare ValueError for those, which would otherwise reach the client as a 500.
"""
from __future__ import annotations

import json
import sys

from starlette.requests import ClientDisconnect, Request

from core.serve.protocol import APIError

MAX_BODY_BYTES = 4 * 1024 * 1024


async def read_json(request: Request):
    """The body as JSON: a dict, list or scalar (the caller checks the shape)."""
    headers = request.headers
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise APIError(411, "chunked request bodies are not supported; send Content-Length")
    length_header = headers.get("content-length")
    try:
        length = int(length_header) if length_header is not None else 0
    except ValueError:
        length = -1
    if length < 0:
        raise APIError(400, f"invalid Content-Length {length_header!r}")
    if length > MAX_BODY_BYTES:
        raise APIError(413, f"request body of {length} bytes exceeds the {MAX_BODY_BYTES}-byte limit",
                       code="request_too_large")
    ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype != "application/json":
        raise APIError(415, f"Content-Type must be application/json, got {ctype or 'none'!r}")
    try:
        raw = await request.body()
    except ClientDisconnect:  # nobody reads the answer; the status only keeps the log honest
        raise APIError(400, "the client closed the connection before sending the whole body") from None
    if not raw:
        raise APIError(400, "the request body is empty; send a JSON object")
    return decode_json(raw)


def decode_json(raw: bytes):
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
    except ValueError:  # an integer over the digit limit (JSONDecodeError, caught above, is a ValueError too)
        raise huge_integer_error(raw) from None


class _HugeInt:
    def __init__(self, digits: int):
        self.digits = digits


def huge_integer_error(raw: bytes) -> APIError:
    """A 400 naming the first field that holds an integer over the digit limit. The body is parsed a second
    time, keeping such integers as digit counts: only requests that failed pay for it."""
    limit = sys.get_int_max_str_digits()

    def parse_int(text: str):
        digits = len(text.lstrip("-"))
        return _HugeInt(digits) if limit and digits > limit else int(text)

    found = _find_huge(json.loads(raw.decode("utf-8"), parse_int=parse_int), [])
    path, digits = found if found else ([], 0)
    where = ".".join(map(str, path)) or None
    return APIError(400, f"{where or 'the request'}: an integer of {digits:,} digits; numbers in a request may "
                         f"have at most {limit:,} digits", param=where, code="invalid_value")


def _find_huge(value, path: list) -> tuple[list, int] | None:
    """The path and digit count of the first `_HugeInt` in document order (iterative: any nesting depth)."""
    stack = [(value, path)]
    while stack:
        value, path = stack.pop()
        if isinstance(value, _HugeInt):
            return path, value.digits
        children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        stack.extend((child, path + [key]) for key, child in reversed(list(children)))
    return None
