"""A local SMTP sink (and webhook sink) for ``make run`` and the tests: it accepts every
message and keeps it as an ``.eml`` file in a folder, where people and tests read it.

    python -m deploy.mail_sink serve --port 1025 --dir .local/mail [--http-port 1080]
    python -m deploy.mail_sink list --dir .local/mail        # one line per message
    python -m deploy.mail_sink show --dir .local/mail [N]    # the Nth message (default: last)

SMTP (RFC 5321) as much as ``smtplib`` and ordinary clients need: EHLO/HELO, MAIL, RCPT,
DATA (dot-unstuffing, a size limit), RSET, NOOP, VRFY, QUIT; 8BITMIME and SMTPUTF8 are
announced; no relaying, no authentication, no TLS (loopback only). ``--tempfail N`` answers
451 to the first N messages, to watch a sender retry. With ``--http-port`` it also accepts
``POST /<channel>`` (the SMS and WeChat webhooks) and keeps each body as a ``.json`` file.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
import uuid
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MAX_LINE = 4096
MAX_SIZE = 10 * 1024 * 1024


def _save(folder: Path, suffix: str, data: bytes) -> Path:
    """Write atomically: a reader never sees half a message."""
    name = f"{time.time():.6f}-{uuid.uuid4().hex[:8]}{suffix}"
    tmp = folder / f".{name}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, folder / name)
    return folder / name


def _address(arg: str, keyword: str) -> str | None:
    """``FROM:<a@b> SIZE=12`` -> ``a@b`` (``<>`` is the null sender, kept as "")."""
    if not arg.upper().startswith(keyword + ":"):
        return None
    rest = arg[len(keyword) + 1:].strip()
    if rest.startswith("<"):
        end = rest.find(">")
        return rest[1:end] if end > 0 else None
    return rest.split(" ", 1)[0] or None


class SmtpSession(socketserver.StreamRequestHandler):
    server: SmtpServer
    timeout = 60

    def reply(self, code: int, *lines: str) -> None:
        lines = lines or ("OK",)
        out = [f"{code}-{text}" for text in lines[:-1]] + [f"{code} {lines[-1]}"]
        self.wfile.write(("\r\n".join(out) + "\r\n").encode("utf-8"))
        self.wfile.flush()

    def handle(self) -> None:
        host = socket.gethostname()
        self.reply(220, f"{host} Relief Exchange mail sink ESMTP")
        sender: str | None = None
        recipients: list[str] = []
        while True:
            raw = self.rfile.readline(MAX_LINE + 2)
            if not raw:
                return
            if not raw.endswith(b"\n"):
                self.reply(500, "line too long")
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                sender, recipients = None, []
                self.reply(250, host, "8BITMIME", "SMTPUTF8", f"SIZE {MAX_SIZE}", "HELP")
            elif verb == "HELO":
                sender, recipients = None, []
                self.reply(250, host)
            elif verb == "MAIL":
                address = _address(arg, "FROM")
                if address is None:
                    self.reply(501, "syntax: MAIL FROM:<address>")
                else:
                    sender, recipients = address, []
                    self.reply(250)
            elif verb == "RCPT":
                address = _address(arg, "TO")
                if sender is None:
                    self.reply(503, "need MAIL first")
                elif not address:
                    self.reply(501, "syntax: RCPT TO:<address>")
                else:
                    recipients.append(address)
                    self.reply(250)
            elif verb == "DATA":
                if not recipients:
                    self.reply(503, "need RCPT first")
                    continue
                self.reply(354, "end data with <CR><LF>.<CR><LF>")
                data = self.read_data()
                if data is None:
                    self.reply(552, "message too large")
                elif self.server.take_tempfail():
                    self.reply(451, "try again later (sink told to refuse)")
                else:
                    envelope = (f"X-Sink-Mail-From: <{sender}>\r\n"
                                f"X-Sink-Rcpt-To: {', '.join(recipients)}\r\n").encode()
                    path = _save(self.server.folder, ".eml", envelope + data)
                    self.reply(250, f"OK queued as {path.name}")
                sender, recipients = None, []
            elif verb == "RSET":
                sender, recipients = None, []
                self.reply(250)
            elif verb == "NOOP":
                self.reply(250)
            elif verb == "VRFY":
                self.reply(252, "cannot verify, will accept")
            elif verb == "HELP":
                self.reply(214, "EHLO HELO MAIL RCPT DATA RSET NOOP VRFY QUIT")
            elif verb == "QUIT":
                self.reply(221, "bye")
                return
            else:
                self.reply(502, "command not implemented")

    def read_data(self) -> bytes | None:
        lines: list[bytes] = []
        size = 0
        too_big = False
        while True:
            raw = self.rfile.readline(MAX_SIZE)
            if not raw:
                raise ConnectionError("client went away in DATA")
            if raw in (b".\r\n", b".\n"):
                break
            if raw.startswith(b"."):
                raw = raw[1:]  # RFC 5321 4.5.2: a leading dot was doubled by the client
            size += len(raw)
            if size > MAX_SIZE:
                too_big = True
                continue
            lines.append(raw)
        return None if too_big else b"".join(lines)


class SmtpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], folder: Path, tempfail: int = 0):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._tempfail = tempfail
        self._lock = threading.Lock()
        super().__init__(address, SmtpSession)

    def take_tempfail(self) -> bool:
        with self._lock:
            if self._tempfail > 0:
                self._tempfail -= 1
                return True
            return False


class WebhookSink(BaseHTTPRequestHandler):
    """``POST /<channel>``: keeps the body and the signature headers as a ``.json`` file."""

    folder: Path

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, MAX_SIZE))
        try:
            payload: Any = json.loads(body)
        except ValueError:
            payload = body.decode("utf-8", "replace")
        record = {"path": self.path, "headers": {k: v for k, v in self.headers.items()
                                                 if k.lower().startswith("x-relief")},
                  "body": payload}
        _save(self.folder, ".json", json.dumps(record, ensure_ascii=False, indent=1).encode())
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def serve(host: str, port: int, folder: Path, http_port: int | None = None,
          tempfail: int = 0) -> None:
    smtp = SmtpServer((host, port), folder, tempfail)
    servers: list[Any] = [smtp]
    if http_port:
        handler = type("Sink", (WebhookSink,), {"folder": Path(folder)})
        servers.append(ThreadingHTTPServer((host, http_port), handler))
    for extra in servers[1:]:
        threading.Thread(target=extra.serve_forever, daemon=True).start()
    print(f"mail sink: smtp://{host}:{port}"
          + (f", webhooks http://{host}:{http_port}/<channel>" if http_port else "")
          + f", messages in {folder}", flush=True)
    try:
        smtp.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        for server in servers:
            server.server_close()


# -- reading --------------------------------------------------------------------------------
def read_mail(folder: str | Path) -> list[dict[str, Any]]:
    """Every message in the folder, oldest first: envelope, headers and the text body."""
    out = []
    for path in sorted(Path(folder).glob("*.eml")):
        msg = BytesParser(policy=policy.default).parse(path.open("rb"))
        part = msg.get_body(preferencelist=("plain", "html"))
        out.append({
            "file": str(path),
            "mail_from": str(msg.get("X-Sink-Mail-From", "")).strip("<>"),
            "rcpt_to": [a.strip() for a in str(msg.get("X-Sink-Rcpt-To", "")).split(",") if a],
            "from": str(msg.get("From", "")),
            "to": str(msg.get("To", "")),
            "subject": str(msg.get("Subject", "")),
            "date": str(msg.get("Date", "")),
            "message_id": str(msg.get("Message-ID", "")),
            "headers": {k: str(v) for k, v in msg.items()},
            "body": part.get_content() if part is not None else "",
        })
    return out


def read_webhooks(folder: str | Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8"))
            for p in sorted(Path(folder).glob("*.json"))]


class MailSink:
    """The sink as a child process, as the local runner and the tests start it.

    ``env()`` gives the variables that point the notifications service at it."""

    def __init__(self, folder: str | Path, port: int, http_port: int | None = None,
                 host: str = "127.0.0.1", tempfail: int = 0):
        self.folder = Path(folder)
        self.host = host
        self.port = port
        self.http_port = http_port
        self.tempfail = tempfail
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 15) -> MailSink:
        self.folder.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "deploy.mail_sink", "serve", "--host", self.host,
                "--port", str(self.port), "--dir", str(self.folder),
                "--tempfail", str(self.tempfail)]
        if self.http_port:
            args += ["--http-port", str(self.http_port)]
        log = open(self.folder.parent / f"{self.folder.name}.out", "ab")
        self.process = subprocess.Popen(args, cwd=Path(__file__).resolve().parent.parent,
                                        stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        ports = [self.port] + ([self.http_port] if self.http_port else [])
        while not all(_listening(self.host, p) for p in ports):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the mail sink did not start; see {log.name}")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.process = None

    def env(self) -> dict[str, str]:
        out = {"SMTP_HOST": self.host, "SMTP_PORT": str(self.port)}
        if self.http_port:
            base = f"http://{self.host}:{self.http_port}"
            out.update({"SMS_WEBHOOK_URL": f"{base}/sms", "WECHAT_WEBHOOK_URL": f"{base}/wechat"})
        return out

    def mail(self) -> list[dict[str, Any]]:
        return read_mail(self.folder)

    def webhooks(self) -> list[dict[str, Any]]:
        return read_webhooks(self.folder)


def _listening(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mail_sink", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="accept mail and keep it as files")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=int(os.environ.get("SMTP_PORT", 1025)))
    s.add_argument("--http-port", type=int, default=None)
    s.add_argument("--dir", default=".local/mail")
    s.add_argument("--tempfail", type=int, default=0, help="answer 451 to the first N")
    for name in ("list", "show"):
        p = sub.add_parser(name, help=f"{name} the messages kept")
        p.add_argument("--dir", default=".local/mail")
        if name == "show":
            p.add_argument("index", nargs="?", type=int, default=-1)
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.host, args.port, Path(args.dir), args.http_port, args.tempfail)
        return 0
    mails = read_mail(args.dir)
    if args.command == "list":
        for i, m in enumerate(mails):
            print(f"{i:4d}  {m['date'][:25]:25}  {m['to'][:32]:32}  {m['subject']}")
        for hook in read_webhooks(args.dir):
            body = hook["body"] if isinstance(hook["body"], dict) else {}
            print(f"   -  webhook {hook['path']:10}  {str(body.get('to', ''))[:20]:20}  "
                  f"{str(body.get('text', ''))[:60]}")
        return 0
    if not mails:
        print("no messages", file=sys.stderr)
        return 1
    m = mails[args.index]
    print(f"From: {m['from']}\nTo: {m['to']}\nSubject: {m['subject']}\nDate: {m['date']}\n")
    print(m["body"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
