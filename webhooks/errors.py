"""Why a delivery was refused. Each carries the HTTP status and a one-line message that names what is
wrong; messages may quote a short field value from the body but never a secret or the body itself."""
from __future__ import annotations


class Rejected(Exception):
    status = 400

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class PayloadError(Rejected):
    """Unparseable, incomplete, or cannot be from the vendor: 400."""

    status = 400


class SignatureError(Rejected):
    """Missing or wrong signature / shared secret, or a timestamp outside the window: 401."""

    status = 401


def quote(value: object, limit: int = 64) -> str:
    """A body value safe to put in an error message: repr'd and cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
