"""The HTTP endpoint: one thread of our own, started and joined by the plugin."""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from cmcsync_prometheus._settings import HTTP_THREAD

__all__ = ["MetricsServer"]

log = logging.getLogger("cmcsync_prometheus")

# How often the serving loop checks whether it must stop, in seconds.
_POLL = 0.1
# A scraper that stalls mid-request must not hold the one serving thread for long.
_REQUEST_TIMEOUT = 5.0


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: scrapes come every few seconds."""

    timeout = _REQUEST_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)


class _Server4(WSGIServer):
    address_family = socket.AF_INET


class _Server6(WSGIServer):
    address_family = socket.AF_INET6


class MetricsServer:
    """Serve a registry's metrics over HTTP (any path) on one thread.

    :param registry: the metrics to serve.
    :param addr: the address to listen on.
    :param port: the port; 0 picks a free one.
    """

    def __init__(self, registry: CollectorRegistry, addr: str, port: int) -> None:
        self.registry = registry
        self.addr = addr
        self.requested_port = port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def port(self) -> int | None:
        """The port listened on, once started."""
        server = self._server
        return None if server is None else int(server.server_port)

    def start(self) -> None:
        """Listen and start serving; does nothing if already serving.

        :raises OSError: when the address cannot be listened on (a port in use).
        """
        with self._lock:
            if self._server is not None:
                return
            server_class = _Server6 if ":" in self.addr else _Server4
            server = make_server(
                self.addr,
                self.requested_port,
                make_wsgi_app(self.registry),
                server_class=server_class,
                handler_class=_QuietHandler,
            )
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": _POLL},
                name=HTTP_THREAD,
                daemon=True,
            )
            self._server, self._thread = server, thread
            thread.start()
        log.info("serving cmcsync metrics on http://%s:%d/metrics", self.addr, self.port)

    def close(self) -> None:
        """Stop serving, close the socket and join the thread. Idempotent."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None or thread is None:
            return
        if thread is not threading.current_thread():
            server.shutdown()
            thread.join()
        server.server_close()
