"""The small HTTP endpoint both daemons expose: ``/metrics`` (Prometheus text format from a
registry) and ``/healthz`` ("ok" or 503). It runs in a daemon thread so a scrape never waits on
the asyncio loop, and it lives here because the agent may import only ``pymaster.api`` and
``pymaster.client``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

log = logging.getLogger(__name__)

_EOF = b"# EOF\n"


class MetricsServer:
    """Serves ``/metrics`` and ``/healthz`` on ``address`` ("HOST:PORT"; port 0 picks a free one).

    ``extra`` gives more families already in the text format (gauges only, which OpenMetrics
    writes the same way), served after the registry's: for many samples that prometheus_client
    would format slowly.
    """

    def __init__(self, address: str, registry: CollectorRegistry, healthz: Callable[[], bool] | None = None,
                 extra: Callable[[], str] | None = None):
        host, _, port = address.rpartition(":")
        handler = _make_handler(registry, healthz or (lambda: True), extra)
        self._httpd = ThreadingHTTPServer((host.strip("[]") or "127.0.0.1", int(port)), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="metrics-http", daemon=True)

    def start(self) -> MetricsServer:
        self._thread.start()
        log.info("metrics server listening port=%s", self.port)
        return self

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _make_handler(registry: CollectorRegistry, healthz: Callable[[], bool],
                  extra: Callable[[], str] | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                body = encoder(registry)
                if extra is not None:
                    more = extra().encode()
                    # OpenMetrics ends with "# EOF": the families go before it.
                    body = body[:-len(_EOF)] + more + _EOF if body.endswith(_EOF) else body + more
                self._reply(200, content_type, body)
            elif path in ("/healthz", "/livez", "/readyz"):
                ok = healthz()
                self._reply(200 if ok else 503, "text/plain; charset=utf-8", b"ok" if ok else b"unhealthy")
            else:
                self._reply(404, "text/plain; charset=utf-8", b"not found; try /metrics or /healthz")

        def _reply(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            log.debug("metrics http " + format, *args)

    return Handler
