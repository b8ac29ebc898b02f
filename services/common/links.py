"""Signed links: a volunteer answers an offer, or a recipient opens the full list behind a
digest, from a message without an account.

A signature binds one offer, one answer (accept or decline) and an expiry: an HMAC of the
three with the deployment's link secret, sent with the expiry in clear
(``<unix seconds>_<hmac>``). So a link works for that offer and that answer only, stops
working at its expiry, and cannot be forged or turned into the other answer.

A digest's link (to the full list behind a summarised message) carries a shorter signature
(80 bits) of its own purpose: it must fit in an SMS, opens a read-only page, and never
verifies as an offer's link."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from services.common import contract

ANSWERS = ("accept", "decline")


def _mac(offer_id: str, answer: str, expires: int, secret: str) -> str:
    message = f"offer:{offer_id}:{answer}:{expires}".encode("utf-8", "surrogateescape")
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:32]


def sign(offer_id: str, answer: str, valid_until: datetime, secret: str) -> str:
    """The signature of a link answering ``offer_id`` with ``answer`` until
    ``valid_until``."""
    if answer not in ANSWERS:
        raise ValueError(f"answer must be one of {ANSWERS}")
    expires = int(valid_until.timestamp())
    return f"{expires}_{_mac(offer_id, answer, expires, secret)}"


def verify(offer_id: str, answer: str, signature: str, secret: str,
           now: datetime | None = None) -> bool:
    """True when ``signature`` signs this offer and this answer and has not expired; any
    other string (not ours, not ASCII, too long) is simply not a valid signature."""
    if not secret or not signature or len(signature) > 64 or answer not in ANSWERS:
        return False
    stamp, _, mac = signature.partition("_")
    if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 12:
        return False
    expires = int(stamp)
    if expires <= (now or contract.now()).timestamp():
        return False
    given = mac.encode("utf-8", "surrogateescape")
    return hmac.compare_digest(_mac(offer_id, answer, expires, secret).encode(), given)


DIGEST = "digest"


def sign_digest(message_id: str, secret: str) -> str:
    """The signature of the link to the full list of the delivery ``message_id`` went in."""
    return hmac.new(secret.encode(), f"{DIGEST}:{message_id}".encode("utf-8", "surrogateescape"),
                    hashlib.sha256).hexdigest()[:20]


def verify_digest(message_id: str, signature: str, secret: str) -> bool:
    given = (signature or "").encode("utf-8", "surrogateescape")
    return bool(secret) and hmac.compare_digest(sign_digest(message_id, secret).encode(), given)
