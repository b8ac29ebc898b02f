"""Who may do what, and where: roles, actions and areas. Pure (no I/O): the routes ask
:func:`authorise` with the principal the credential names and what the request touches.

A coordinator acts within their area and below it (district -> streets -> communities, from
the reference data); an organisation acts on its own records; on-call staff read status and
handle dead messages (sending them again only with the ``replay`` permission); partner
systems and scripts act with an API key whose scopes are actions (or the event types they
publish) and whose areas bound where. The operator token (``RELIEF_ADMIN_TOKEN``) and admin
accounts may do everything.

Every refusal is a :class:`Forbidden` that says what was refused and what the principal may
do instead, so that a 403 is something a person can act on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

ROLES = ("admin", "district_coordinator", "street_coordinator", "community_coordinator",
         "organisation", "on_call")
# the tier of the one area each coordinator role is bound to
ROLE_TIER = {"district_coordinator": "district", "street_coordinator": "street",
             "community_coordinator": "community"}
# granted on top of a role (on_call): send dead messages and dead letters again; purge
# dead letters
PERMISSIONS = ("replay", "purge")

# action -> what it means, for the answers that name what a role may do
ACTIONS: dict[str, str] = {
    "reference.read": "read areas and categories",
    "needs.post": "post needs",
    "needs.read": "read needs",
    "donations.post": "record donations",
    "stock.read": "read the stock in reach",
    "hours.post": "log volunteers' hours",
    "hours.read": "read volunteers' hours",
    "hours.decide": "approve or reject volunteers' hours",
    "lots.write": "write off and transfer stock",
    "pledges.write": "record pledges and their parts",
    "pledges.read": "read pledges",
    "receipts.read": "read donor receipts",
    "organisations.write": "register organisations",
    "organisations.read": "read organisations and their reporting",
    "status_reports.write": "send status reports",
    "status_reports.read": "read status reports",
    "training.write": "record training, programmes and the services they deliver",
    "imports.write": "import spreadsheets of needs, donations, volunteers and hours",
    "ledger.read": "read ledger reports, exports and the reconciliation",
    "bulletin.read": "read the bulletin",
    "status.read": "read the queue status and the dashboard",
    "notifications.read": "read notifications (what never arrived)",
    "notifications.retry": "send a dead notification again",
    "deadletters.replay": "replay dead letters to the queue they failed in",
    "deadletters.purge": "purge dead letters",
    "recipients.write": "register and remove recipients",
    "recipients.read": "read recipients",
    "offers.answer": "answer offers for volunteers",
    "accounts.manage": "manage accounts and API keys",
    "audit.read": "read the audit log",
    "session.read": "read their own account",
}

# where an action is bounded by area for coordinators (and area-scoped keys): the routes
# pass the area the request touches
AREA_ACTIONS = frozenset({"needs.post", "needs.read", "donations.post", "stock.read",
                          "hours.post", "hours.read", "hours.decide", "receipts.read"})
# actions an organisation does on its own records only (the routes pass whose they are)
OWN_ACTIONS = frozenset({"donations.post", "hours.post", "hours.read", "pledges.write",
                         "receipts.read", "status_reports.write", "status_reports.read"})

_COORDINATOR = {"reference.read", "session.read", "needs.post", "needs.read",
                "donations.post", "receipts.read", "stock.read", "hours.post", "hours.read",
                "hours.decide",
                "organisations.read", "status_reports.read", "training.write",
                "bulletin.read"}
ROLE_ACTIONS: dict[str, frozenset[str]] = {
    "admin": frozenset(ACTIONS),
    "district_coordinator": frozenset(_COORDINATOR | {
        "lots.write", "pledges.write", "pledges.read", "receipts.read", "organisations.write",
        "imports.write",
        "status_reports.write", "ledger.read", "status.read", "notifications.read",
        "recipients.write", "recipients.read", "offers.answer"}),
    "street_coordinator": frozenset(_COORDINATOR),
    "community_coordinator": frozenset(_COORDINATOR),
    "organisation": frozenset({
        "reference.read", "session.read", "donations.post", "stock.read", "hours.post",
        "hours.read", "pledges.write", "receipts.read", "organisations.read",
        "status_reports.write", "status_reports.read", "training.write", "bulletin.read"}),
    "on_call": frozenset({"reference.read", "session.read", "status.read",
                          "notifications.read", "recipients.read"}),
}
# what a permission adds to a role
PERMISSION_ACTIONS = {"replay": frozenset({"notifications.retry", "deadletters.replay"}),
                      "purge": frozenset({"deadletters.purge"})}
# an API key may hold any action but these (keys cannot make keys or accounts)
KEY_FORBIDDEN = frozenset({"accounts.manage", "audit.read"})
# the event types a partner publishes through the API, as scope names of their actions
EVENT_SCOPES = {"need_posted": "needs.post", "donation_received": "donations.post",
                "hours_logged": "hours.post"}
SCOPES = tuple(sorted(set(ACTIONS) - KEY_FORBIDDEN)) + tuple(sorted(EVENT_SCOPES))


class Areas(Protocol):
    """What the policy needs of the reference tree (``services.common.reference.AreaTree``)."""

    def __contains__(self, area_id: str) -> bool: ...

    def chain(self, area_id: str) -> list[str]: ...


class Forbidden(Exception):
    """A refusal: ``message`` says what was refused, ``allowed`` what the principal may do."""

    def __init__(self, message: str, allowed: list[str]):
        super().__init__(message)
        self.message = message
        self.allowed = allowed


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: the operator token, an account (by its session) or an API key.

    ``areas``: the areas it acts within (None: everywhere); ``credential``: which key or
    session it came with (for the audit log, never the secret)."""

    kind: str  # "operator", "account" or "key"
    id: str
    role: str
    areas: tuple[str, ...] | None = None
    organisation_id: str | None = None
    actions: frozenset[str] = field(default_factory=frozenset)
    credential: str = ""

    @property
    def label(self) -> str:
        return {"operator": "the operator token", "key": f"API key {self.id}"}.get(
            self.kind, f"{self.role} {self.id}")

    def may(self, action: str) -> bool:
        return action in self.actions

    def can_do(self) -> list[str]:
        """What it may do, in words, with where: for the answer to a refusal."""
        where = ""
        if self.areas is not None:
            where = f" in {', '.join(self.areas)} and below"
        own = f" of organisation {self.organisation_id}" if self.organisation_id else ""
        out = []
        for action in ACTIONS:
            if action in self.actions:
                suffix = where if action in AREA_ACTIONS else ""
                if self.organisation_id and action in OWN_ACTIONS:
                    suffix += own
                out.append(ACTIONS[action] + suffix)
        return out


def operator() -> Principal:
    return Principal("operator", "operator", "admin", actions=ROLE_ACTIONS["admin"],
                     credential="operator-token")


def for_account(account: dict[str, Any], credential: str) -> Principal:
    """The principal of an account document (role, area, organisation, permissions)."""
    role = account["role"]
    actions = set(ROLE_ACTIONS[role])
    for permission in account.get("permissions") or ():
        actions |= PERMISSION_ACTIONS.get(permission, frozenset())
    area = account.get("area_id")
    return Principal("account", account["_id"], role,
                     areas=(area,) if role in ROLE_TIER else None,
                     organisation_id=account.get("organisation_id"),
                     actions=frozenset(actions), credential=credential)


def for_key(key: dict[str, Any]) -> Principal:
    """The principal of an API key document: its scopes are its actions."""
    actions = frozenset(EVENT_SCOPES.get(s, s) for s in key.get("scopes") or ()) - KEY_FORBIDDEN
    areas = key.get("areas")
    return Principal("key", key["_id"], "api_key",
                     areas=tuple(areas) if areas else None,
                     organisation_id=key.get("organisation_id"), actions=actions,
                     credential=f"key:{key['_id']}")


def within(areas: Iterable[str] | None, area_id: str, tree: Areas) -> bool:
    """Whether ``area_id`` is one of ``areas`` or below one (None: everywhere)."""
    if areas is None:
        return True
    if area_id not in tree:
        return False
    chain = set(tree.chain(area_id))
    return any(a in chain for a in areas)


def reaches(areas: Iterable[str] | None, location_id: str, tree: Areas) -> bool:
    """Whether stock at ``location_id`` serves these areas: in them or below, or at a tier
    above them (a street warehouse serves its communities)."""
    if areas is None:
        return True
    if location_id not in tree:
        return False
    return within(areas, location_id, tree) or any(
        a in tree and location_id in tree.chain(a) for a in areas)


def authorise(principal: Principal, action: str, tree: Areas | None = None, *,
              area: str | None = None, organisation: str | None = None,
              what: str | None = None) -> None:
    """Raise :class:`Forbidden` unless ``principal`` may do ``action`` on something in
    ``area`` (a community, street or district id) belonging to ``organisation``."""
    words = what or ACTIONS.get(action, action)
    if not principal.may(action):
        raise Forbidden(f"{principal.label} may not {words}", principal.can_do())
    if area is not None and action in AREA_ACTIONS and principal.areas is not None:
        if tree is None or not within(principal.areas, area, tree):
            raise Forbidden(f"{principal.label} acts within {', '.join(principal.areas)} "
                            f"and may not {words} for {area}", principal.can_do())
    if (principal.organisation_id and action in OWN_ACTIONS
            and organisation != principal.organisation_id):
        whose = f"of {organisation}" if organisation else "not marked as its own"
        raise Forbidden(f"{principal.label} acts for organisation "
                        f"{principal.organisation_id} and may not {words} {whose}",
                        principal.can_do())


def check_account(role: str, area_id: str | None, organisation_id: str | None,
                  tree: Areas, area_tier: Any) -> dict[str, str]:
    """What is wrong with an account's role, area and organisation (field -> reason)."""
    problems: dict[str, str] = {}
    tier = ROLE_TIER.get(role)
    if tier:
        if not area_id:
            problems["area_id"] = f"a {role} needs the {tier} they coordinate"
        elif area_id not in tree or area_tier(area_id) != tier:
            problems["area_id"] = f"not a known {tier} id"
    elif area_id:
        problems["area_id"] = f"a {role} has no area"
    if role == "organisation" and not organisation_id:
        problems["organisation_id"] = "an organisation account needs its organisation_id"
    elif role != "organisation" and organisation_id:
        problems["organisation_id"] = f"a {role} acts for no organisation"
    return problems


def invitation_refusal(invitation: dict[str, Any] | None, account: dict[str, Any] | None,
                       now: Any) -> tuple[int, str] | None:
    """Why an invitation's token cannot be accepted now, as ``(status, message)``: 404 for a
    token that names no invitation, 410 for one that did but is over (used, replaced by a
    newer one, expired, or its account disabled); None when it may be accepted."""
    if invitation is None:
        return 404, ("no such invitation: check the link, or ask an admin to invite you "
                     "again")
    if invitation.get("used_at"):
        return 410, "this invitation was used already: sign in with the password chosen then"
    if invitation.get("voided_at"):
        return 410, ("this invitation was replaced by a newer one: use the link in the "
                     "latest message")
    if invitation["expires_at"] <= now:
        return 410, "this invitation has expired: ask an admin to invite you again"
    if account is None or account.get("disabled"):
        return 410, "the account of this invitation is disabled"
    return None
