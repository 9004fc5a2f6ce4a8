"""Who may talk to the server: an ASGI guard in front of every route, checking the Host header, then the API key.

- **Host allow-list (DNS rebinding).** A web page the user visits can point its own domain name at 127.0.0.1
  and then call this server from the browser as if it were its own site. Such requests carry the page's name
  in `Host`; requests meant for this server carry 127.0.0.1, localhost or [::1] (any port). Other names get 421
  unless the operator allows them (`--allow-host`, or `*` for any). An IP address that the server is bound to
  is accepted too: a literal address cannot be re-pointed, so it is no rebinding risk.
- **API key.** With `--api-key`, every /v1 request must send `Authorization: Bearer <key>` (as llama.cpp's
  server and vLLM ask); otherwise 401 with OpenAI's error shape (`code: "invalid_api_key"`). `GET /health`
  stays open, so a supervisor can probe the process without the key; it tells nothing but the model's name.
"""
from __future__ import annotations

import hmac
import ipaddress

from core.config.serve import ANY_HOST, LOOPBACK_HOSTS, ServerOptions
from core.serve.protocol import APIError

OPEN_PATHS = frozenset({"/health"})


def accepted_hosts(options: ServerOptions, bound_host: str) -> frozenset[str] | None:
    """The Host names this server answers (lower-case, without port); None: any."""
    if ANY_HOST in options.allow_hosts:
        return None
    names = set(LOOPBACK_HOSTS) | set(options.allow_hosts)
    try:
        address = ipaddress.ip_address(bound_host)
    except ValueError:
        address = None
    if address is not None and not address.is_unspecified:
        names.add(f"[{address}]" if address.version == 6 else str(address))
    return frozenset(names)


def host_name(value: str) -> str | None:
    """`Host` without its port, lower-case ("[::1]:8998" -> "[::1]"); None when it is not host[:port]."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, port = value.partition("]")
        name += "]"
        port = port[1:] if port.startswith(":") else port
    else:
        name, _, port = value.partition(":")
    if not name or (port and not port.isdigit()):
        return None
    return name


class AccessGuard:
    """ASGI middleware: refuses a request with a foreign Host (421) or without the API key (401)."""

    def __init__(self, app, hosts: frozenset[str] | None, api_key: str | None):
        self.app, self.hosts = app, hosts
        self.api_key = api_key.encode("utf-8") if api_key else None

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and (refusal := self.refusal(scope)) is not None:
            await refusal.response()(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def refusal(self, scope) -> APIError | None:
        headers = scope["headers"]
        if self.hosts is not None:
            hosts = [value.decode("latin-1") for name, value in headers if name == b"host"]
            name = host_name(hosts[0]) if len(hosts) == 1 else None
            if name not in self.hosts:
                shown = hosts[0][:100] if len(hosts) == 1 else f"{len(hosts)} Host headers"
                return APIError(421, f"Host {shown!r} is not served here; this server answers "
                                     f"{', '.join(sorted(self.hosts))} (start it with --allow-host NAME to add a "
                                     "name)", code="host_not_allowed")
        if self.api_key is not None and scope["path"] not in OPEN_PATHS:
            return self._key_refusal(headers)
        return None

    def _key_refusal(self, headers) -> APIError | None:
        auth = next((value for name, value in headers if name == b"authorization"), None)
        if auth is None:
            message = "this server needs an API key: send the header 'Authorization: Bearer <key>'"
        else:
            scheme, _, key = auth.strip().partition(b" ")
            if scheme.lower() == b"bearer" and hmac.compare_digest(key.strip(), self.api_key):
                return None
            message = "the API key is wrong (send the server's --api-key as 'Authorization: Bearer <key>')"
        return APIError(401, message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
