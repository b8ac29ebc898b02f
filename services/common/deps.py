"""Small nameko dependencies shared by several services."""

from __future__ import annotations

import logging
from typing import Any

import eventlet
from nameko.extensions import DependencyProvider

from services.common import reference
from services.common.config import settings

log = logging.getLogger(__name__)


class ReferenceProvider(DependencyProvider):
    """The tier tree and category catalogue, read once at start from ``reference_dir``."""

    def setup(self) -> None:
        directory = settings(self.container.config).reference_dir
        self.reference = reference.load(directory)
        log.info("reference data loaded from %s (%d areas, %d categories, sha256 %s)",
                 directory, len(self.reference.areas.areas),
                 len(self.reference.catalogue.categories), self.reference.checksum[:12])

    def get_dependency(self, worker_ctx: Any) -> reference.Reference:
        return self.reference


class Config(DependencyProvider):
    """The service's nameko config, for entrypoints that need a setting."""

    def get_dependency(self, worker_ctx: Any) -> dict[str, Any]:
        return self.container.config


class RpcTimeout(Exception):
    pass


def call(proxy: Any, method: str, *args: Any, timeout: float = 10.0, **kwargs: Any) -> Any:
    """An RPC call that gives up after ``timeout`` seconds (nameko's proxy would wait forever
    for a service that is down)."""
    reply = getattr(proxy, method).call_async(*args, **kwargs)
    try:
        with eventlet.Timeout(timeout):
            return reply.result()
    except eventlet.Timeout:
        raise RpcTimeout(f"{method} did not answer within {timeout:g}s") from None
