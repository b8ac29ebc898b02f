"""A small client of the broker's management HTTP API (queues, policies, users)."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote, unquote, urlparse


class Management:
    """A small client of the broker's management HTTP API."""

    def __init__(self, management_uri: str, amqp_uri: str):
        parsed = urlparse(management_uri)
        self.auth = (unquote(parsed.username or "guest"), unquote(parsed.password or "guest"))
        self.base = f"{parsed.scheme}://{parsed.hostname}:{parsed.port or 15672}"
        vhost = unquote(urlparse(amqp_uri).path[1:]) or "/"
        self.vhost = quote(vhost, safe="")

    def request(self, method: str, path: str, body: Any = None, timeout: float = 5,
                ok_missing: bool = False) -> Any:
        import requests

        response = requests.request(method, f"{self.base}/api/{path}", auth=self.auth,
                                    json=body, timeout=timeout)
        if ok_missing and response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json() if response.content else None

    def set_policies(self, bodies: dict[str, dict[str, Any]]) -> None:
        for name, body in bodies.items():
            self.request("PUT", f"policies/{self.vhost}/{quote(name, safe='')}", body)

    # what every reader of the queue list looks at (the on-call report's rows, /health, the
    # pruning of obsolete queues): a tenth of the whole objects, for the broker to make and
    # for the reader to parse, which counts while on-call reads it during a surge
    QUEUE_COLUMNS = ("name", "messages", "messages_ready", "messages_unacknowledged",
                     "consumers", "message_stats.publish_details.rate",
                     "message_stats.ack_details.rate")

    def queues_path(self) -> str:
        return f"queues/{self.vhost}?columns={','.join(self.QUEUE_COLUMNS)}"

    def queues(self) -> list[dict[str, Any]]:
        return self.request("GET", self.queues_path())

    def wait_ready(self, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                self.request("GET", "overview")
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
