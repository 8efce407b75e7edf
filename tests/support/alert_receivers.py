"""Local receivers for alert tests: an HTTP server thread on 127.0.0.1 (Slack / Teams / signed webhook
endpoints) and a real SMTP server (aiosmtpd) with LOGIN/PLAIN authentication."""
from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

HANG = "hang"  # a scripted answer: hold the request without answering until the test releases it


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int | str  # what the receiver answered

    def json(self) -> Any:
        return json.loads(self.body)


class HttpReceiver:
    """Answers POSTs from `script` (status codes, or HANG), then 200. Every request is recorded."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.script: list[int | str] = []
        self.error_body = b""
        self.arrived = threading.Event()  # set when a request arrives
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = receiver.script.pop(0) if receiver.script else 200
                receiver.requests.append(Received(self.path, dict(self.headers), body, status))
                receiver.arrived.set()
                if status == HANG:
                    receiver.release.wait(60)
                    return
                self.send_response(int(status))
                if int(status) == 429:
                    self.send_header("Retry-After", "1")
                payload = b"ok" if int(status) < 300 else receiver.error_body or b"error"
                # Some webhook hosts echo the request path in errors; the service must not pass that on.
                payload = payload.replace(b"{path}", self.path.encode())
                payload = payload.replace(b"{quoted_path}", quote(self.path, safe="").encode())
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def accepted(self) -> list[Received]:
        return [r for r in self.requests if r.status == 200]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@dataclass
class SmtpReceiver:
    """A real SMTP server on 127.0.0.1 accepting `username` / `password` (AUTH without TLS: local only)."""

    username: str
    password: str
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    port: int = 0
    data_replies: list[str] = field(default_factory=list)  # scripted answers to DATA, then "250 OK"

    def start(self) -> "SmtpReceiver":
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        receiver = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
                if receiver.data_replies:
                    return receiver.data_replies.pop(0)
                receiver.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
                receiver.messages.append(message_from_bytes(envelope.original_content, policy=policy.default))
                return "250 OK"

        def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
            ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == self.username
                  and auth_data.password.decode() == self.password)
            if ok:
                receiver.logins.append(auth_data.login.decode())
            return AuthResult(success=ok, handled=False)

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, authenticator=authenticate,
                                     auth_require_tls=False)
        self.controller.start()
        return self

    def close(self) -> None:
        self.controller.stop()
