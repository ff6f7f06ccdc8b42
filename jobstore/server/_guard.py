"""Who may ask what: the bearer token, and no write from another site (ASGI middleware)."""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

#: The names a service listening on a loopback address answers to (any port).
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


#: Methods that change nothing; every other one is a write.
READS = frozenset({"GET", "HEAD", "OPTIONS"})


class Guard:
    """Refuses, before the request reaches the service, what the service's settings do not allow.

    A write from a page of another site is refused by its ``Origin`` (or ``Sec-Fetch-Site``), which
    browsers always send with one: so no other site can write, with or without a token. Scripts
    (curl, the client) send neither.

    :param app: the service
    :param token: the bearer token writes need (reads too, unless ``public_read``); None: none is asked
    :param public_read: reads need no token
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        public_read: bool,
        hosts: frozenset[str] | None = LOOPBACK_NAMES,
        max_body: int | None = None,
    ) -> None:
        self.app = app
        self._token = None if token is None else token.encode("utf-8")
        self.public_read = public_read
        self.hosts = hosts
        self.max_body = max_body
        #: the service behind, for whoever runs it (its streams are ended as the server stops)
        self.service: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self._refusal(scope["method"], headers)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, detail = refusal
        kind = "BodyTooLarge" if status == 413 else "NotAuthorizedError"
        body = {"error": kind, "detail": detail, "url": scope.get("path", ""), "status": status}
        extra = {"WWW-Authenticate": 'Bearer realm="jobstore"'} if status == 401 else {}
        if status == 413:
            extra["Connection"] = "close"  # or the server would read the rest of the body, to keep the connection
        await JSONResponse(body, status_code=status, headers=extra)(scope, receive, send)

    def _refusal(self, method: str, headers: Headers) -> tuple[int, str] | None:
        if self.hosts is not None and _host_name(headers.get("host", "")) not in self.hosts:
            # A page of another site reaching this one through a name it controls (DNS
            # rebinding) sends that name: this service answers only to its own.
            return 403, f"the host {headers.get('host', '')!r} is not one this service answers to"
        declared = headers.get("content-length", "")
        if self.max_body is not None and declared.isascii() and declared.isdigit() and int(declared) > self.max_body:
            return 413, f"the request body is over the limit of {self.max_body} bytes"
        write = method not in READS
        if write and _cross_site(headers):
            return 403, "a write from a page of another site"
        if self._token is None or (not write and self.public_read):
            return None
        given = headers.get("authorization", "")
        scheme, _, credential = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(credential.strip().encode(), self._token):
            return 401, "a bearer token is needed (Authorization: Bearer <token>)" if not given else "the token is not the service's"
        return None


def _host_name(host: str) -> str:
    """The name in a Host header, without its port or brackets, in lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _cross_site(headers: Headers) -> bool:
    """Whether a browser says the request comes from a page of another origin than the service's."""
    if headers.get("sec-fetch-site") in ("cross-site", "same-site"):
        return True
    origin = headers.get("origin")
    if origin is None:
        return False
    parts = urlsplit(origin)
    return origin == "null" or parts.netloc != headers.get("host", "")
