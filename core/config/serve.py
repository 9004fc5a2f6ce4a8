"""What `minimind serve` lets one client use and who may talk to it: `ServerOptions`, validated once at the edge
(its flags, or `core.serve.make_server(..., options=ServerOptions(...))`).

The defaults fit a desktop user serving a model to their own tools on 127.0.0.1: generous enough for
lm-evaluation-harness batches and hundreds of concurrent streams, small enough that one client cannot hold the
machine (a 128-prompt `echo` + `logprobs=20` request once asked for a 326 MB answer).
"""
from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

API_KEY_ENV = "MINIMIND_API_KEY"  # the key, for `minimind serve` and for clients (`eval tools --endpoint`)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
ANY_HOST = "*"


class ServerOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Who may talk to it.
    api_key: Optional[str] = Field(None, min_length=1)  # Bearer key for /v1/*; None: no key (/health stays open)
    allow_hosts: tuple[str, ...] = ()  # Host header names beyond the loopback ones; "*" accepts any (no guard)

    # What one client may use.
    max_queue: int = Field(512, ge=1)  # requests in the engine (waiting or generating) before 429
    max_scored_tokens: int = Field(262_144, ge=1)  # per /v1/completions request with logprobs, see scored_tokens
    max_connections: int = Field(1024, ge=1)  # open connections (or running requests) before uvicorn's 503
    keep_alive_timeout: int = Field(5, ge=1)  # seconds an idle keep-alive connection stays open
    read_timeout: float = Field(10.0, gt=0)  # seconds to send a whole request (line, headers, body)

    @field_validator("allow_hosts")
    @classmethod
    def _lower(cls, hosts: tuple[str, ...]) -> tuple[str, ...]:
        bad = [h for h in hosts if not h or any(c.isspace() or c in "/@" for c in h)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a host name (e.g. myhost.lan, 192.168.1.5, [::1], *)")
        return tuple(h.lower() for h in hosts)
