"""A local SMTP sink (and webhook sink) for ``make run`` and the tests: it accepts every
message and keeps it as an ``.eml`` file in a folder, where people and tests read it.

    python -m deploy.mail_sink serve --port 1025 --dir .local/mail [--http-port 1080]
    python -m deploy.mail_sink list --dir .local/mail        # one line per message
    python -m deploy.mail_sink show --dir .local/mail [N]    # the Nth message (default: last)

The SMTP side is aiosmtpd (8BITMIME and SMTPUTF8, a size limit; no relaying, no
authentication, no TLS: loopback only). ``--tempfail N`` answers 451 to the first N messages,
to watch a sender retry. With ``--http-port`` it also accepts ``POST /<channel>`` (the SMS and
WeChat webhooks) and keeps each body as a ``.json`` file.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
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

from aiosmtpd.controller import Controller

MAX_SIZE = 10 * 1024 * 1024


def _save(folder: Path, suffix: str, data: bytes) -> Path:
    """Write atomically: a reader never sees half a message."""
    name = f"{time.time():.6f}-{uuid.uuid4().hex[:8]}{suffix}"
    tmp = folder / f".{name}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, folder / name)
    return folder / name


class Keeper:
    """The aiosmtpd handler: each message becomes a file, its envelope in ``X-Sink-*``
    headers, after refusing the first ``tempfail`` ones."""

    def __init__(self, folder: Path, tempfail: int = 0):
        self.folder = folder
        self.tempfail = tempfail  # only the event loop's thread touches it

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.tempfail > 0:
            self.tempfail -= 1
            return "451 try again later (sink told to refuse)"
        head = (f"X-Sink-Mail-From: <{envelope.mail_from}>\r\n"
                f"X-Sink-Rcpt-To: {', '.join(envelope.rcpt_tos)}\r\n").encode()
        path = _save(self.folder, ".eml", head + envelope.original_content)
        return f"250 OK queued as {path.name}"


class WebhookSink(BaseHTTPRequestHandler):
    """``POST /<channel>``: keeps the body and the signature headers as a ``.json`` file."""

    folder: Path
    # keep-alive, as a provider's gateway does: a connection per POST would cost the sender
    # a connect for every delivery
    protocol_version = "HTTP/1.1"

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
    folder.mkdir(parents=True, exist_ok=True)
    web = None
    if http_port:
        web = ThreadingHTTPServer((host, http_port),
                                  type("Sink", (WebhookSink,), {"folder": folder}))
    smtp = Controller(Keeper(folder, tempfail), hostname=host, port=port,
                      server_hostname=socket.gethostname(), ident="Relief Exchange mail sink",
                      data_size_limit=MAX_SIZE, enable_SMTPUTF8=True)
    smtp.start()  # its own thread, with its own asyncio loop
    if web:
        threading.Thread(target=web.serve_forever, daemon=True).start()
    print(f"mail sink: smtp://{host}:{port}"
          + (f", webhooks http://{host}:{http_port}/<channel>" if http_port else "")
          + f", messages in {folder}", flush=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # MailSink.stop() is a Ctrl-C
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        smtp.stop()
        if web:
            web.server_close()


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
