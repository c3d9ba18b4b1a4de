"""The HTTP scaffolding mlci's test doubles share: a threaded server on its own thread, the
request a double sees, the reply it gives, and small parsing helpers.

Kept hand-written on the standard library's ``http.server``: each double has to answer exactly
like the product it stands in for (status line, header order, ``Server`` header, missing
``Content-Length`` on a 204), which a web framework would decide for us.
"""

from __future__ import annotations

import base64
import binascii
import json
import socket
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self, TypeVar
from urllib.parse import parse_qsl, urlsplit

FORM_TYPE = "application/x-www-form-urlencoded"

_T = TypeVar("_T")


@dataclass(frozen=True)
class Wire:
    """How one product behaves on the wire, below its own request handling."""

    server_header: str
    methods: frozenset[str] = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
    #: Read ``Transfer-Encoding: chunked`` request bodies (otherwise only ``Content-Length``).
    chunked_requests: bool = False
    #: Send headers and body without Nagle's delay (kept-alive clients wait ~40 ms otherwise).
    no_delay: bool = False
    #: Send ``Content-Length`` on a 204 as well.
    length_on_no_content: bool = True
    #: Rewrites each header value before it is sent (e.g. the way Jetty replaces characters).
    header_value: Callable[[str], str] | None = None
    #: Keep the traceback of an exception in the handler itself (not a client going away).
    record_handler_errors: bool = True


@dataclass
class Incoming:
    """A request as read off the socket, before the double interprets it."""

    method: str
    target: str
    headers: Message
    body: bytes
    client: str
    server_address: tuple[str, int]

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> str:
        return urlsplit(self.target).query

    @property
    def host(self) -> str:
        """The ``Host`` header, or the address the server listens on."""
        return self.headers.get("Host") or "{}:{}".format(*self.server_address)


@dataclass
class Reply:
    """What a double answers; ``headers`` go out first, then Content-Type and Content-Length."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)


# -- parsing and encoding helpers ---------------------------------------------------------------


def media_type(content_type: str | None) -> str:
    """``Content-Type`` without its parameters, lower case (``""`` when absent)."""
    return (content_type or "").split(";")[0].strip().lower()


def form_pairs(content_type: str | None, body: bytes) -> list[tuple[str, str]]:
    """The fields of a URL-encoded form body, in order; none for any other content type."""
    if not body or media_type(content_type) != FORM_TYPE:
        return []
    return parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)


def servlet_pairs(query: str, content_type: str | None, body: bytes) -> list[tuple[str, str]]:
    """A servlet's parameters, in order: the query string first, then a form body."""
    return parse_qsl(query, keep_blank_values=True) + form_pairs(content_type, body)


def cookie(header: str | None, name: str) -> str | None:
    """The value of cookie ``name`` in a ``Cookie`` header."""
    for part in (header or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def basic_credentials(encoded: str, *, validate: bool = False) -> tuple[str, str] | None:
    """``(user, password)`` of a Basic credential, or None when it is not base64 of UTF-8 text
    with a colon. Non-ASCII text raises ValueError, as ``base64.b64decode`` does."""
    try:
        decoded = base64.b64decode(encoded, validate=validate).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else None


def json_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON, the way the products' serialisers write it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# -- the server -----------------------------------------------------------------------------------


class FaultScript:
    """Scripted failures and hangs by path (``"*"``: any path), each used once, in order."""

    def __init__(self) -> None:
        self.failures: dict[str, list[int]] = {}
        self.hangs: dict[str, list[float]] = {}

    def fail(self, key: str, status: int, count: int) -> None:
        self.failures.setdefault(key, []).extend([status] * count)

    def hang(self, key: str, seconds: float, count: int) -> None:
        self.hangs.setdefault(key, []).extend([seconds] * count)

    def take_failure(self, path: str) -> int | None:
        return self._take(self.failures, path)

    def take_hang(self, path: str) -> float | None:
        return self._take(self.hangs, path)

    @staticmethod
    def _take(table: dict[str, list[_T]], path: str) -> _T | None:
        for key in (path, "*"):
            queue = table.get(key)
            if queue:
                return queue.pop(0)
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HttpServer

    def setup(self) -> None:
        super().setup()
        if self.server.double.wire.no_delay:
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def version_string(self) -> str:
        return self.server.double.wire.server_header

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        chunked = (self.headers.get("Transfer-Encoding") or "").lower() == "chunked"
        if chunked and self.server.double.wire.chunked_requests:
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self) -> None:
        wire = self.server.double.wire
        if self.command not in wire.methods:
            # what BaseHTTPRequestHandler answers for a method without a do_ handler
            self.send_error(HTTPStatus.NOT_IMPLEMENTED, f"Unsupported method ({self.command!r})")
            return
        host, port = self.server.server_address[:2]
        incoming = Incoming(
            method=self.command,
            target=self.path,
            headers=self.headers,
            body=self._read_body(),
            client=str(self.client_address[0]),
            server_address=(str(host), int(port)),
        )
        reply = self.server.double._handle(incoming)
        try:
            self.send_response(reply.status)
            for name, value in reply.headers:
                self.send_header(name, wire.header_value(value) if wire.header_value else value)
            if reply.content_type:
                self.send_header("Content-Type", reply.content_type)
            if reply.status != 204 or wire.length_on_no_content:
                self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if reply.body and self.command != "HEAD":
                self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], double: HttpDouble) -> None:
        self.double = double
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if not self.double.wire.record_handler_errors or isinstance(
            error, ConnectionError | TimeoutError
        ):
            return  # the client went away (for example after its own timeout)
        self.double._record_internal_error(traceback.format_exc())


class HttpDouble:
    """A product double served over HTTP on its own thread; a context manager.

    Subclasses set :attr:`wire` and :attr:`product` and answer :meth:`_handle`.
    """

    wire: ClassVar[Wire]
    product: ClassVar[str]  # "Jenkins": names the thread and the lifecycle errors

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._port = port
        self._lock = threading.RLock()
        #: Set while stopping: a scripted hang waits on it, so it ends with the server.
        self._stopping = threading.Event()
        self._server: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None
        self._internal_errors: list[str] = []

    def _handle(self, incoming: Incoming) -> Reply:
        raise NotImplementedError

    def _record_internal_error(self, text: str) -> None:
        with self._lock:
            self._internal_errors.append(text)

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> str:
        """Start serving on ``host``:``port`` (0 picks a free port); return the base URL."""
        with self._lock:
            if self._server is not None:
                raise RuntimeError(f"the {self.product} double is already running")
            self._stopping.clear()
            server = _HttpServer((self._host, self._port), self)
            host, port = server.server_address[:2]
            self._server = server
            self._url = f"http://{host!s}:{port}"
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"{self.product.lower()}-double:{port}",
                daemon=True,
            )
            self._thread.start()
            return self._url

    def stop(self) -> None:
        """Stop serving; requests held by a scripted hang are released at once."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        self._stopping.set()
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:43210`` (known once :meth:`start` ran)."""
        if self._url is None:
            raise RuntimeError(f"the {self.product} double is not running; call start() first")
        return self._url
