"""The names of the broker topology: exchanges, queues, dead-letter queues, and each
service's module. A leaf: it imports nothing of the project, so any module may use it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

INTAKE_EXCHANGE = "relief.intake"
INTAKE_QUEUE = "relief.intake.events"
INTAKE_DLQ = "relief.intake.dlq"
DLX = "relief.dlx"
UNROUTABLE_EXCHANGE = "relief.unroutable"
UNROUTABLE_QUEUE = "relief.unroutable"

# service name -> "module:Class"; the order is the start order of the local runner.
SERVICES: dict[str, str] = {
    "intake": "services.intake.service:IntakeService",
    "donations": "services.donations.service:DonationsService",
    "volunteers": "services.volunteers.service:VolunteersService",
    "matching": "services.matching.service:MatchingService",
    "notifications": "services.notifications.service:NotificationsService",
    "accounting": "services.accounting.service:AccountingService",
    "gateway": "services.gateway.service:GatewayService",
}


@dataclass(frozen=True)
class QueueSpec:
    name: str
    exchange: str
    routing_keys: tuple[str, ...]
    dlq: str


def event_exchange(source: str) -> str:
    return f"{source}.events"


def dlq_name(queue: str) -> str:
    return f"dlq.{queue}"


def queue_arguments(cfg: Any) -> dict[str, Any]:
    return {"x-queue-type": cfg.queue_type}


RPC_EXCHANGE = "nameko-rpc"


MONITOR_USER = "relief-monitor"  # the read-only broker user of status pages


def user_name(service: str) -> str:
    """A service's own broker user."""
    return f"relief-{service}"
