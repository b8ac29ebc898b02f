"""Signed links: a volunteer answers an offer from a message without an account.

The signature is an HMAC of the offer id with the deployment's link secret, so a link works
for that offer only and cannot be forged."""

from __future__ import annotations

import hashlib
import hmac


def sign(offer_id: str, secret: str) -> str:
    return hmac.new(secret.encode(), f"offer:{offer_id}".encode(), hashlib.sha256).hexdigest()[:32]


def verify(offer_id: str, signature: str, secret: str) -> bool:
    return bool(secret) and hmac.compare_digest(sign(offer_id, secret), signature or "")
