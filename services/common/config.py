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
    # what a message or request body may be (services.common.wire)
    "max_message_bytes": 256 * 1024,
    "max_body_bytes": 1024 * 1024,
    "max_json_depth": 32,
    # a message redelivered more often than this within an hour is dead-lettered (poison)
    "poison_redeliveries": 5,
    # a request's database work gives up after this (below the gateway's 10 s RPC timeout)
    "request_db_seconds": 6.0,
    # workers each service keeps free of events for RPC calls (reads, status) in a backlog
    "reserved_workers": 2,
    # a batch consumer's events handled in one transaction at most (see handler.Batcher)
    "batch_max_events": 100,
    # the gateway samples the dashboard's key figures this often into its own database
    "history_sample_seconds": 60.0,
    # the gateway's people: sessions expire; failed sign-ins are limited per account and per
    # address within a window
    "session_seconds": 8 * 3600.0,
    "signin_window_seconds": 15 * 60.0,
    "signin_max_failures_account": 5,
    "signin_max_failures_address": 20,
    # an invitation to a new account (by e-mail or SMS) may be accepted this long
    "invitation_seconds": 72 * 3600.0,
    # how long the outbox relay waits for the broker to confirm a window of events
    "publish_confirm_seconds": 10.0,
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
    max_message_bytes: int = DEFAULTS["max_message_bytes"]
    max_body_bytes: int = DEFAULTS["max_body_bytes"]
    max_json_depth: int = DEFAULTS["max_json_depth"]
    poison_redeliveries: int = DEFAULTS["poison_redeliveries"]
    request_db_seconds: float = DEFAULTS["request_db_seconds"]
    reserved_workers: int = DEFAULTS["reserved_workers"]
    batch_max_events: int = DEFAULTS["batch_max_events"]
    history_sample_seconds: float = DEFAULTS["history_sample_seconds"]
    session_seconds: float = DEFAULTS["session_seconds"]
    signin_window_seconds: float = DEFAULTS["signin_window_seconds"]
    signin_max_failures_account: int = DEFAULTS["signin_max_failures_account"]
    signin_max_failures_address: int = DEFAULTS["signin_max_failures_address"]
    invitation_seconds: float = DEFAULTS["invitation_seconds"]
    publish_confirm_seconds: float = DEFAULTS["publish_confirm_seconds"]
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
    """Load a nameko YAML config with ``${ENV:default}`` substitution, as ``nameko run`` does,
    with a loader of its own: nameko's ``setup_yaml_parser`` would teach every
    ``yaml.safe_load`` of the process to substitute the environment."""
    from functools import partial

    import yaml
    from nameko.cli.main import IMPLICIT_ENV_VAR_MATCHER, env_var_constructor

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!env_var", env_var_constructor)
    Loader.add_constructor("!raw_env_var", partial(env_var_constructor, raw=True))
    Loader.add_implicit_resolver("!env_var", IMPLICIT_ENV_VAR_MATCHER, None)
    with open(path, encoding="utf-8") as fh:
        return yaml.load(fh, Loader=Loader)  # noqa: S506 - a SafeLoader with two constructors
