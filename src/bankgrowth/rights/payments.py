"""The payment-provider interface of the savings card, and the simulated provider used by default.

A provider takes a payment request for an order (card or digital-RMB wallet) and later calls back
with a signed JSON body: ``{"event_id", "order_no", "kind": "paid"|"failed"|"refunded",
"amount_fen", "at"}``. The signature is ``hex(HMAC-SHA256(secret, body))``; a body whose signature
does not verify is refused before anything is read from it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from bankgrowth.errors import Invalid, Unauthenticated

Method = Literal["card", "ecny"]  # a bound bank card, or the digital-RMB (数字人民币) wallet
CallbackKind = Literal["paid", "failed", "refunded"]


class PaymentProvider(Protocol):
    name: str

    def create_payment(self, *, order_no: str, amount_fen: int, method: Method) -> str:
        """Ask for a payment; returns the provider's reference for it."""
        ...

    def verify(self, body: bytes, signature: str) -> dict[str, Any]:
        """The callback's payload if its signature is right; ``Unauthenticated`` if not."""
        ...


@dataclass
class SimulatedProvider:
    """Accepts every payment request and signs the callbacks a test or the demo asks it to send."""

    secret: bytes
    name: str = "simulated"

    def create_payment(self, *, order_no: str, amount_fen: int, method: Method) -> str:
        return f"sim-{method}-{secrets.token_hex(8)}"

    def sign(self, body: bytes) -> str:
        return hmac.new(self.secret, body, hashlib.sha256).hexdigest()

    def verify(self, body: bytes, signature: str) -> dict[str, Any]:
        if not hmac.compare_digest(self.sign(body), signature or ""):
            raise Unauthenticated(
                "payment callback signature does not match", "支付回调签名不正确", code="bad_signature"
            )
        try:
            payload = json.loads(body)
        except ValueError as e:
            raise Invalid(f"payment callback is not JSON: {e}", "支付回调不是合法 JSON", code="bad_callback") from e
        missing = [k for k in ("event_id", "order_no", "kind", "amount_fen") if k not in payload]
        if missing or payload.get("kind") not in ("paid", "failed", "refunded"):
            raise Invalid(
                f"payment callback lacks {missing} or has an unknown kind {payload.get('kind')!r}",
                "支付回调缺少字段或类型未知",
                code="bad_callback",
            )
        return dict(payload)

    def callback(
        self, *, order_no: str, kind: CallbackKind, amount_fen: int, at: datetime, event_id: str | None = None
    ) -> tuple[bytes, str]:
        """A signed callback body, as the provider would post it."""
        body = json.dumps(
            {
                "event_id": event_id or secrets.token_hex(12),
                "order_no": order_no,
                "kind": kind,
                "amount_fen": amount_fen,
                "at": at.isoformat(),
            },
            sort_keys=True,
        ).encode()
        return body, self.sign(body)


def simulated(secret_key: str) -> SimulatedProvider:
    """The simulated provider of an installation: its callback key is derived from the secret key,
    so the master secret itself never signs a request."""
    derived = hmac.new(secret_key.encode(), b"bankgrowth/payments/simulated", hashlib.sha256).digest()
    return SimulatedProvider(secret=derived)
