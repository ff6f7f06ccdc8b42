"""Running the job service: checked settings, a socket of its own, uvicorn."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from types import FrameType

import uvicorn

from .._errors import InvalidArgumentError
from .._store import JobStore
from ._app import DEFAULT_MAX_BODY, create_app
from ._guard import LOOPBACK_NAMES


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (127.0.0.1, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Server(uvicorn.Server):
    """uvicorn's server, ending the event streams as soon as it is told to stop (they would hold its shutdown)."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._on_exit()
        super().handle_exit(sig, frame)


def serve(
    store: JobStore,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    public_read: bool = False,
    insecure: bool = False,
    max_body: int = DEFAULT_MAX_BODY,
    allow_hosts: Iterable[str] = (),
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the store over HTTP until interrupted.

    :param host: the address to listen on; any but a loopback one needs a token, or ``insecure``
    :param port: the port; 0 takes a free one (``ready`` is told which)
    :param token: the bearer token writes need (reads too, unless ``public_read``)
    :param insecure: listen beyond this machine without a token
    :param allow_hosts: more names the service answers to in the Host header (on a loopback
        address it answers to localhost, 127.0.0.1 and ::1 alone, so that no page of another site
        reaches it through a name of its own; elsewhere to any, unless names are given)
    :param ready: called with the service's URL once it listens
    :raises InvalidArgumentError: for a non-loopback host without a token or ``insecure``, or an empty token
    """
    if token is not None and not token.strip():
        raise InvalidArgumentError("token", token, "a non-empty token")
    if not is_loopback(host) and token is None and not insecure:
        raise InvalidArgumentError("host", host, "a loopback address unless a token is given (or --insecure)")
    named = frozenset(name.lower() for name in allow_hosts)
    hosts = (LOOPBACK_NAMES | named) if is_loopback(host) else (named or None)
    app = create_app(store, token=token, public_read=public_read, max_body=max_body, hosts=hosts)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # Named TCP, so that asyncio sets TCP_NODELAY on each connection: without it every request
    # after the first on a kept-alive connection waits out the client's delayed acknowledgement.
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(2048)
    bound = listener.getsockname()[1]
    server = _Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=5), app.service.changes.end_streams)
    if ready is not None:
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        ready(f"http://{shown}:{bound}")
    server.run(sockets=[listener])
