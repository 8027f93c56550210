"""An HTTP forwarder on 127.0.0.1 in front of a server on another local port, for the tests of
remote tiers (tests/remote.rs): every request is passed on and its answer passed back, and one
line `METHOD PATH` per request is appended to LOG, so a test can count what a client asked the
server behind it. With CUT_AFTER, the body of a buffer (`GET /<checksum>`) is cut off after
that many bytes and the connection dropped: a remote that fails mid-transfer. Standard library
only.

Usage: forwarder.py PORT UPSTREAM_PORT LOG [CUT_AFTER]
"""

import http.client
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, UPSTREAM, LOG = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
CUT_AFTER = int(sys.argv[4]) if len(sys.argv) > 4 else None
BLOCK = 1 << 20
log_lock = threading.Lock()


class Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle's algorithm and the
        # peer's delayed ACK add 40 ms to every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args):
        pass

    def forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        with log_lock, open(LOG, "a") as log:
            log.write(f"{self.command} {self.path}\n")
        headers = {
            k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")
        }
        upstream = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=120)
        upstream.request(self.command, self.path, body=body, headers=headers)
        answer = upstream.getresponse()
        size = answer.getheader("Content-Length")
        whole = None if size is not None else answer.read()
        self.send_response(answer.status, answer.reason)
        for k, v in answer.getheaders():
            if k.lower() not in ("connection", "transfer-encoding", "content-length", "date", "server"):
                self.send_header(k, v)
        self.send_header("Content-Length", size if whole is None else str(len(whole)))
        self.end_headers()
        if whole is not None:
            self.wfile.write(whole)
        else:
            self.copy_body(answer)
        upstream.close()

    def copy_body(self, answer):
        is_buffer = len(self.path) == 65 and answer.status == 200
        left = CUT_AFTER if CUT_AFTER is not None and is_buffer else None
        while block := answer.read(BLOCK):
            if left is not None:
                block = block[:left]
                left -= len(block)
            self.wfile.write(block)
            if left == 0:
                self.close_connection = True
                return

    do_GET = do_PUT = forward


ThreadingHTTPServer(("127.0.0.1", PORT), Forward).serve_forever()
