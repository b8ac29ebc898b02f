"""Typed domain errors: what a service refuses, and why, without saying it in HTTP.

Use cases and RPC methods raise these; the one HTTP entrypoint maps them to an answer
(:func:`services.common.web.response_from_exception`: not found 404, conflict 409, invalid
400 with the failing fields, no answer 504). No status code exists below the gateway.

They cross RPC as themselves. Nameko sends an exception raised in an RPC method to the
caller as its class path and ``args``, and re-raises a class registered with
``deserialize_to_instance`` as that class built from those ``args`` (anything else arrives
as a :class:`nameko.exceptions.RemoteError`). So every class here is registered, and keeps
all it carries (message and fields) in ``args``. Declare them as ``expected_exceptions`` on
the ``@rpc`` that raises them: they are answers, not failures, and are not logged as such.
"""

from __future__ import annotations

from collections.abc import Mapping

from nameko.exceptions import deserialize_to_instance


@deserialize_to_instance
class DomainError(Exception):
    """A refusal with a message a person can read and optionally the failing fields
    (``{"unit": "incompatible with the lot's unit"}``)."""

    def __init__(self, message: str, fields: Mapping[str, str] | None = None):
        fields = {str(k): str(v) for k, v in (fields or {}).items()}
        # both in args: they are what nameko carries to the caller
        super().__init__(message, fields)
        self.message = message
        self.fields = fields

    def __str__(self) -> str:
        return self.message


@deserialize_to_instance
class NotFound(DomainError):
    """What the request names does not exist (or has not arrived yet)."""


@deserialize_to_instance
class Conflict(DomainError):
    """The request contradicts the current state: already decided, taken, not enough left."""


@deserialize_to_instance
class Invalid(DomainError):
    """The request itself is wrong; ``fields`` names what is wrong with it."""


@deserialize_to_instance
class NoAnswer(DomainError):
    """A service this one relies on did not answer in time; the request may be retried."""
