"""HTTP/1.1 exchanges with a wall-clock deadline, for the client and the carrier download.

Built on :mod:`http.client` rather than urllib's opener on purpose: nothing here reads
the environment's proxy variables, knows ``file:``, ``ftp:`` or ``data:`` URLs, or
follows a redirect on its own. Each exchange runs on a daemon thread while the caller
waits for it until the deadline; at the deadline the exchange's socket is shut down, so
a peer that drips its answer one byte at a time cannot hold the caller past it (a socket
timeout only bounds each read). :func:`run_all` runs several exchanges as one parallel
round under one deadline.

Errors become fixed texts (:func:`describe`): an exception's own text can quote a
header value (a bearer token) or a URL, so it is never passed on.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from typing import Any, Callable, NamedTuple
from urllib.parse import urlsplit

__all__ = ["Aborter", "Response", "TimedOut", "TooLarge", "run_all", "exchange", "describe"]


class TimedOut(Exception):
    """The exchange did not finish by its deadline."""


class TooLarge(Exception):
    """The answer's body is longer than the caller accepts."""


class Refused(Exception):
    """The caller's own rules refused the exchange (a URL, an address)."""


class Response(NamedTuple):
    status: int
    headers: http.client.HTTPMessage
    body: bytes


class Aborter:
    """The sockets of one job, shut down from the waiting thread at the deadline."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.aborted = False

    def register(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            aborted = self.aborted
        if aborted:
            _shutdown(sock)
            raise TimedOut()

    def abort(self) -> None:
        with self._lock:
            self.aborted = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    # socket.socket's own shutdown, also for an SSLSocket: the blocked reader on the
    # other thread sees its connection end, and no TLS state is touched from here.
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except (OSError, ValueError):
        pass


def run_all(jobs: list[Callable[[Aborter], Any]], deadline: float) -> list[Any]:
    """Run every job on its own thread, all at once, and return their results in order.

    ``deadline`` is a :func:`time.monotonic` instant. A job that raised gives its
    exception as its result; one still running at the deadline gives :class:`TimedOut`
    and has its sockets shut down (its thread then ends on its own, its result unused).
    """
    results: list[Any] = [None] * len(jobs)
    done = [threading.Event() for _ in jobs]
    aborters = [Aborter() for _ in jobs]

    def work(index: int) -> None:
        try:
            results[index] = jobs[index](aborters[index])
        except Exception as exc:  # handed to the caller as a value
            results[index] = exc
        finally:
            done[index].set()

    for index in range(len(jobs)):
        threading.Thread(target=work, args=(index,), daemon=True).start()
    outcome: list[Any] = []
    for index in range(len(jobs)):
        if done[index].wait(max(0.0, deadline - time.monotonic())):
            outcome.append(results[index])
        else:
            aborters[index].abort()
            outcome.append(TimedOut())
    return outcome


class _HTTPConnection(http.client.HTTPConnection):
    def __init__(self, host, port, *, timeout, aborter, address=None):
        super().__init__(host, port, timeout=timeout)
        self._aborter = aborter
        self._address = address

    def connect(self):
        self.sock = socket.create_connection((self._address or self.host, self.port), self.timeout)
        self._aborter.register(self.sock)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _HTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host, port, *, timeout, aborter, address=None):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._aborter = aborter
        self._address = address

    def connect(self):
        sock = socket.create_connection((self._address or self.host, self.port), self.timeout)
        self._aborter.register(sock)
        # Certificate and SNI for the URL's host name, whichever address was connected.
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)
        self._aborter.register(self.sock)


def exchange(
    aborter: Aborter,
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    body: bytes | None = None,
    deadline: float,
    max_body: Callable[[int], int],
    address: str | None = None,
) -> Response:
    """One request on a new connection; reads at most ``max_body(status)`` body bytes.

    ``address`` connects to that IP address instead of resolving the URL's host (the
    carrier download resolves and checks it first). Raises :class:`TooLarge` when the
    body is longer than allowed, and lets every other failure through for
    :func:`describe`.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise Refused()
    port = parts.port or (443 if scheme == "https" else 80)  # ValueError for a bad port
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimedOut()
    connection = _HTTPSConnection if scheme == "https" else _HTTPConnection
    conn = connection(parts.hostname, port, timeout=remaining, aborter=aborter, address=address)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request(method, target, body=body, headers=headers)
        response = conn.getresponse()
        limit = max_body(response.status)
        data = response.read(limit + 1) if limit > 0 else b""
        if len(data) > limit:
            raise TooLarge()
        return Response(response.status, response.headers, data)
    finally:
        conn.close()


def describe(exc: BaseException) -> str:
    """A fixed text for a failed exchange: never the exception's own words."""
    if isinstance(exc, (TimedOut, TimeoutError)):
        return "timed out"
    if isinstance(exc, TooLarge):
        return "answer too large"
    if isinstance(exc, Refused):
        return "URL refused"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionError):
        return "connection reset"
    if isinstance(exc, socket.gaierror):
        return "host name not resolved"
    if isinstance(exc, ssl.SSLError):
        return "TLS failed"
    if isinstance(exc, http.client.InvalidURL):
        return "request could not be built"
    if isinstance(exc, http.client.HTTPException):
        return "invalid HTTP answer"
    if isinstance(exc, OSError):
        return "connection failed"
    return "request could not be built"
