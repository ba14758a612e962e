"""The caller's address on Azure Functions, where the ASGI scope carries none.

`azure.functions.AsgiMiddleware` builds every request's scope with `"client": None`: the worker is not told who
called. Every per-address limit (failed authentications, `opus.api.security`) would then count every caller as
one "unknown" address, and one guesser would lock every client out.

The platform's front end appends the address it accepted the connection from to `X-Forwarded-For`, as `ip:port`
(`[ipv6]:port`), after whatever the caller wrote into that header itself. So only the last entry is the platform's
word; the ones before it are the caller's to invent. `PlatformClientAddress` puts that last entry into
`scope["client"]`, and only where the scope has no client. It is installed in front of the Functions app alone
(`AzureRuntime.asgi_middleware`): under uvicorn the socket's peer is the truth and the header is never read.
"""

from __future__ import annotations

import ipaddress

from starlette.types import ASGIApp, Receive, Scope, Send

FORWARDED_FOR = b"x-forwarded-for"


def platform_client(headers: list[tuple[bytes, bytes]]) -> tuple[str, int] | None:
    """(address, port) from the last `X-Forwarded-For` entry, None when there is none or it is not an address."""
    values = [value.decode("latin-1") for name, value in headers if name.lower() == FORWARDED_FOR]
    entries = [e.strip() for e in ",".join(values).split(",") if e.strip()]
    if not entries:
        return None
    entry = entries[-1]
    if entry.startswith("["):  # [2001:db8::1]:443
        host, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif entry.count(":") == 1:  # 203.0.113.7:51234
        host, port = entry.split(":")
    else:  # a bare IPv4 or IPv6 address
        host, port = entry, ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return str(address), int(port) if port.isdigit() else 0


class PlatformClientAddress:
    """ASGI middleware: a scope without a client gets the one the platform's front end named."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("client") is None:
            client = platform_client(scope.get("headers", []))
            if client is not None:
                scope = {**scope, "client": client}
        await self.app(scope, receive, send)
