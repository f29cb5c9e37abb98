"""An HTTP proxy between apt and its mirror that makes the network slow or bad, for real.

apt is pointed at it through ``APT_CONFIG`` (a config file naming the proxy:
the harness runs ``apt-get download`` with the environment it was given).
Package downloads (``*.deb``) go through ``mode``:

- ``throttle``: at ``rate`` bytes a second (a download long enough to be
  killed in);
- ``corrupt``: every byte of the body's middle 4 KiB flipped (same size);
- ``truncate``: the body cut in half, announced as such (Content-Length of
  the half): the file apt stores is short.

Anything else passes unchanged.  ``debs`` counts the bytes of .deb bodies
sent so far (how far a download got).
"""

from __future__ import annotations

import http.client
import socketserver
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

HOP_HEADERS = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
               "proxy-authorization", "proxy-authenticate"}


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        while True:
            line = self.rfile.readline(65536).decode("latin-1").strip()
            if not line:
                return
            method, url, _ = line.split(" ", 2)
            headers = {}
            while (h := self.rfile.readline(65536).decode("latin-1").strip()):
                k, _, v = h.partition(":")
                headers[k.strip()] = v.strip()
            self._forward(method, url, headers)

    def _forward(self, method: str, url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(url)
        upstream = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=60)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        upstream.request(method, path, headers={k: v for k, v in headers.items() if k.lower() not in HOP_HEADERS})
        resp = upstream.getresponse()
        body = resp.read() if method != "HEAD" else b""
        upstream.close()
        deb = parts.path.endswith(".deb") and resp.status == 200
        mode = self.server.mode if deb else "pass"
        if mode == "corrupt" and len(body) > 8192:
            mid = len(body) // 2
            body = body[:mid] + bytes(b ^ 0xFF for b in body[mid:mid + 4096]) + body[mid + 4096:]
        elif mode == "truncate":
            body = body[: len(body) // 2]
        out = [f"HTTP/1.1 {resp.status} {resp.reason}"]
        out += [f"{k}: {v}" for k, v in resp.getheaders() if k.lower() not in HOP_HEADERS | {"content-length"}]
        out += [f"Content-Length: {len(body)}", "Connection: keep-alive", "", ""]
        self.wfile.write("\r\n".join(out).encode("latin-1"))
        self._send(body, deb and mode == "throttle")

    def _send(self, body: bytes, throttle: bool) -> None:
        step = 64 << 10
        for i in range(0, len(body), step):
            chunk = body[i:i + step]
            self.wfile.write(chunk)
            if throttle:
                self.server.debs += len(chunk)
                time.sleep(len(chunk) / self.server.rate)
        self.wfile.flush()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    mode = "pass"
    rate = 4 << 20
    debs = 0

    def handle_error(self, request, client_address) -> None:
        """apt hanging up mid-body (it refused the file, or was killed) is what the faults are about."""


class AptProxy:
    """``with AptProxy(folder) as proxy:`` then ``env=proxy.env`` for the harness; ``proxy.mode = ...``."""

    def __init__(self, folder: Path, mode: str = "pass", rate: int = 2 << 20):
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.mode, self.server.rate = mode, rate
        self.config = folder / "apt-chaos.conf"
        self.config.write_text(f'Acquire::http::Proxy "http://127.0.0.1:{self.server.server_address[1]}/";\n'
                               'Acquire::Retries "0";\n')
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def env(self) -> dict[str, str]:
        return {"APT_CONFIG": str(self.config)}

    @property
    def mode(self) -> str:
        return self.server.mode

    @mode.setter
    def mode(self, value: str) -> None:
        self.server.mode = value

    @property
    def sent(self) -> int:
        return self.server.debs

    def __enter__(self) -> AptProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
