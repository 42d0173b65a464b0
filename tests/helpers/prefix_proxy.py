"""Test helper: a reverse proxy that mounts a server at a sub-path (``/llama/<rest>`` → ``/<rest>``).

What a deployment behind nginx or Caddy looks like to the browser: the UI is
reached at ``http://<proxy>/llama/ui/``, and anything it asks outside
``/llama/`` is answered 404, as another site's path would be. The proxy
records every path it is asked (``paths``), streams each response body as
it arrives (so ``/api/events`` and ``/logs/stream`` stay live), counts the
responses still streaming (``streaming``) and can cut them (``cut``), the
way a proxy reload or a dropped network does, and keep refusing new ones
(``refused``: path prefixes answered 502, as while the server is away). A client that hangs up ends
its upstream request at once, as a real proxy does, so the count is of the
streams the browser really holds open.

With ``prefix=""`` and ``static={"/ui/": folder}`` it is the other common
deployment: a static web server that serves a built UI from a folder and
forwards everything else to the server (the way llama-swap's own UI is
tried against ours, ``tests/browser/test_go_ui.py``).
"""

from __future__ import annotations

import http.client
import mimetypes
import os
import select
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                        "trailer", "transfer-encoding", "upgrade", "host", "content-length"})


class PrefixProxy:
    def __init__(self, target_port: int, prefix: str = "/llama", static: dict[str, Path] | None = None):
        self.target_port = target_port
        self.prefix = prefix
        self.static = dict(static or {})  # path prefix (after the prefix) -> folder whose files answer it
        self.paths: list[str] = []  # every request's path (with its query), in order
        self.refused: set[str] = set()  # paths starting with one of these (after the prefix) get a 502
        self._lock = threading.Lock()
        self._streams: dict[int, tuple[str, socket.socket, http.client.HTTPConnection]] = {}
        self._clients: set[socket.socket] = set()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.proxy = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="prefix-proxy", daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> "PrefixProxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, hang up every connection and wait for each handler thread to end."""
        self._httpd.shutdown()
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            _hang_up(client)
        self.cut()
        self._httpd.server_close()  # joins the handler threads (block_on_close)
        self._thread.join()

    def outside_prefix(self) -> list[str]:
        with self._lock:
            return [path for path in self.paths if not path.startswith(self.prefix + "/")]

    def streaming(self, path_prefix: str) -> int:
        """How many responses to paths starting with ``path_prefix`` (after the prefix) are still being sent."""
        with self._lock:
            return sum(path.startswith(path_prefix) for path, _, _ in self._streams.values())

    def cut(self, path_prefix: str = "/") -> int:
        """Close every response still being sent (to paths starting with ``path_prefix``); how many."""
        with self._lock:
            cut = [(client, upstream) for path, client, upstream in self._streams.values()
                   if path.startswith(path_prefix)]
        for client, upstream in cut:
            _hang_up(client)
            if upstream.sock is not None:
                _hang_up(upstream.sock)
        return len(cut)

    # --- called by the handler threads

    def _record(self, path: str) -> None:
        with self._lock:
            self.paths.append(path)

    def _connected(self, client: socket.socket, connected: bool) -> None:
        with self._lock:
            (self._clients.add if connected else self._clients.discard)(client)

    def _streaming(self, key: int, entry: tuple | None) -> None:
        with self._lock:
            if entry is None:
                self._streams.pop(key, None)
            else:
                self._streams[key] = entry


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True
    proxy: PrefixProxy


def _hang_up(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass

    def setup(self):
        super().setup()
        self.server.proxy._connected(self.connection, True)

    def finish(self):
        self.server.proxy._connected(self.connection, False)
        super().finish()

    def do_GET(self):
        self._forward()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = do_GET

    def _forward(self) -> None:
        proxy = self.server.proxy
        proxy._record(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not self.path.startswith(proxy.prefix + "/"):
            self._answer(404, b"not under " + proxy.prefix.encode() + b"/\n")
            return
        path = self.path[len(proxy.prefix):]
        mount = next((mount for mount in proxy.static if path.split("?")[0].startswith(mount)), None)
        if mount is not None:
            self._serve_file(proxy.static[mount], path.split("?")[0][len(mount):])
            return
        if any(path.startswith(refused) for refused in set(proxy.refused)):
            self._answer(502, b"bad gateway: refused by the test\n")
            return
        headers = {name: value for name, value in self.headers.items() if name.lower() not in HOP_BY_HOP}
        headers["X-Forwarded-For"] = self.client_address[0]
        headers["X-Forwarded-Prefix"] = proxy.prefix
        upstream = http.client.HTTPConnection("127.0.0.1", proxy.target_port)
        try:
            try:
                upstream.request(self.command, path, body=body or None, headers=headers)
                response = upstream.getresponse()
            except OSError as error:
                self._answer(502, f"bad gateway: {error}\n".encode())
                return
            self._relay(response, upstream)
        finally:
            upstream.close()

    def _serve_file(self, folder: Path, name: str) -> None:
        """A file of ``folder`` (``index.html`` for the folder itself); 404 for anything else."""
        root = folder.resolve()
        file = (root / (name or "index.html")).resolve()
        if not file.is_relative_to(root) or not file.is_file():
            self._answer(404, b"no such file\n")
            return
        body = file.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", mimetypes.guess_type(file.name)[0] or "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _answer(self, status: int, text: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def _relay(self, response: http.client.HTTPResponse, upstream: http.client.HTTPConnection) -> None:
        proxy = self.server.proxy
        length = response.getheader("Content-Length")
        has_body = self.command != "HEAD" and response.status not in (204, 304)
        chunked = has_body and length is None
        self.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        if length is not None:
            self.send_header("Content-Length", length)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if not has_body:
            return
        key = id(self)
        proxy._streaming(key, (self.path[len(proxy.prefix):], self.connection, upstream))
        done_r, done_w = os.pipe()
        watcher = threading.Thread(target=self._watch_hangup, args=(upstream, done_r), daemon=True)
        watcher.start()
        try:
            while piece := response.read1(65536):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                self.wfile.flush()
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except (OSError, http.client.HTTPException):  # either side hung up, or cut()
            self.close_connection = True
        finally:
            proxy._streaming(key, None)
            os.write(done_w, b"x")
            watcher.join()
            os.close(done_r)
            os.close(done_w)
        if not response.isclosed() and response.length not in (None, 0):
            self.close_connection = True  # cut short: the browser must not wait for the rest

    def _watch_hangup(self, upstream: http.client.HTTPConnection, done: int) -> None:
        """Until the response is sent: when the browser hangs up, hang up on the server too."""
        readable, _, _ = select.select([self.connection, done], [], [])
        if done in readable:
            return
        try:
            hung_up = self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            hung_up = True
        if hung_up and upstream.sock is not None:
            _hang_up(upstream.sock)
