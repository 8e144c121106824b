"""Notices: one delivery per contact of a ``PasswordChanged``, with its own stable id."""

from __future__ import annotations

import uuid

_NAMESPACE = uuid.UUID("2d0f7a4e-4c1b-4f7e-9a35-6b2e8c1d5f90")


def notice_aad(event_id: str, channel: str) -> str:
    """Associated data of a notice contact's sealed destination (recovery seals, we open)."""
    return f"notice:{event_id}:{channel}"


def notice_delivery_id(code_id: str, channel: str) -> str:
    """The delivery id (and SMS ``client_ref``) of a code's notice to one channel: the same for
    every re-published ``PasswordChanged`` of that code, so the notice goes out once."""
    return str(uuid.uuid5(_NAMESPACE, f"notice:{code_id}:{channel}"))
