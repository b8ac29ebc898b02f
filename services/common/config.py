"""Settings read from the nameko YAML config (``deploy/config.yaml``, ``${ENV:default}``).

Every host, port, timeout and limit comes from there; this module only gives them names,
types and the defaults used when a key is absent.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

DEFAULTS: dict[str, Any] = {
    "queue_type": "classic",  # "quorum" for a clustered broker; fixed at first declaration
    "delivery_limit": 20,  # quorum queues: redeliveries before the broker dead-letters
    "retry_attempts": 4,  # transient failures retried in-process before dead-lettering
    "retry_backoff_seconds": 0.5,  # first back-off; doubles each attempt
    "outbox_sweep_seconds": 2.0,  # how often the relay looks for unpublished events
    "outbox_grace_seconds": 3.0,  # an event younger than this is left to its writer
    "reference_dir": "deploy/reference",
    "admin_token": "",
    "link_secret": "",  # signs volunteers' accept/decline links (the admin token if empty)
    "management_uri": "http://guest:guest@127.0.0.1:15672",
    "db_prefix": "relief_",
    # matching: a need still open this long (by urgency) escalates one tier
    "escalate_critical_seconds": 15 * 60.0,
    "escalate_high_seconds": 3600.0,
    "escalate_normal_seconds": 6 * 3600.0,
    "escalate_low_seconds": 24 * 3600.0,
    "timer_seconds": 5.0,  # how often matching looks for needs to escalate or expire
    "offer_lease_seconds": 2 * 3600.0,  # an unanswered offer to a volunteer lapses
    "health_check_valid_hours": 24.0,
}


@dataclass(frozen=True)
class Settings:
    queue_type: str = DEFAULTS["queue_type"]
    delivery_limit: int = DEFAULTS["delivery_limit"]
    retry_attempts: int = DEFAULTS["retry_attempts"]
    retry_backoff_seconds: float = DEFAULTS["retry_backoff_seconds"]
    outbox_sweep_seconds: float = DEFAULTS["outbox_sweep_seconds"]
    outbox_grace_seconds: float = DEFAULTS["outbox_grace_seconds"]
    reference_dir: str = DEFAULTS["reference_dir"]
    admin_token: str = DEFAULTS["admin_token"]
    link_secret: str = DEFAULTS["link_secret"]
    management_uri: str = DEFAULTS["management_uri"]
    db_prefix: str = DEFAULTS["db_prefix"]
    escalate_critical_seconds: float = DEFAULTS["escalate_critical_seconds"]
    escalate_high_seconds: float = DEFAULTS["escalate_high_seconds"]
    escalate_normal_seconds: float = DEFAULTS["escalate_normal_seconds"]
    escalate_low_seconds: float = DEFAULTS["escalate_low_seconds"]
    timer_seconds: float = DEFAULTS["timer_seconds"]
    offer_lease_seconds: float = DEFAULTS["offer_lease_seconds"]
    health_check_valid_hours: float = DEFAULTS["health_check_valid_hours"]
    extra: dict[str, Any] = field(default_factory=dict)


    @property
    def links_secret(self) -> str:
        return self.link_secret or self.admin_token

    def escalation_timeout(self, urgency: str) -> float:
        return float(getattr(self, f"escalate_{urgency}_seconds"))


def settings(config: dict[str, Any]) -> Settings:
    """The ``RELIEF`` section of a nameko config, typed, with defaults filled in."""
    section = dict(config.get("RELIEF") or {})
    known = [f.name for f in fields(Settings) if f.name != "extra"]
    values: dict[str, Any] = {}
    for name in known:
        if name in section and section[name] not in (None, ""):
            raw = section.pop(name)
            kind = type(DEFAULTS[name])
            values[name] = kind(raw) if kind is not str else str(raw)
        else:
            section.pop(name, None)
    return Settings(**values, extra=section)


def load_config(path: str) -> dict[str, Any]:
    """Load a nameko YAML config with ``${ENV:default}`` substitution, as ``nameko run`` does."""
    import yaml
    from nameko.cli.main import setup_yaml_parser

    setup_yaml_parser()
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)
