"""Channel connectors: one protocol — send a batch, hear back delivery receipts — for SMS, app push,
WeChat template messages, enterprise-WeChat 1-to-1 tasks, the in-app display slot (展位) and the
outbound-call list.

- :class:`HttpConnector` posts each batch as JSON to the channel's endpoint with an HMAC-SHA256
  signature of the body (``X-Signature``), the batch's idempotency key, a timeout and retries with
  backoff on timeouts and 5xx; the provider answers with one reference per message and later posts
  receipts to ``/connectors/v1/receipts``, signed the same way.
- :class:`OutboundCallFile` writes the call list as a CSV file a call centre picks up.
- :class:`SimulatedConnector` accepts everything and produces receipts at configured delivery and
  open rates, deterministically per message: the demo's channel.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal, Protocol

import httpx

from bankgrowth.errors import Invalid


@dataclass(frozen=True)
class Outgoing:
    key: str  # the message's idempotency key; providers dedupe on it
    customer_id: str
    channel: str
    lang: str
    text: str


@dataclass(frozen=True)
class Sent:
    key: str
    ok: bool
    provider_ref: str | None = None
    error: str | None = None
    retry: bool = False  # a transient failure: try again later


@dataclass(frozen=True)
class Receipt:
    provider_ref: str
    status: Literal["delivered", "failed", "opened"]
    at: datetime


class Connector(Protocol):
    channel: str

    def send(self, messages: Sequence[Outgoing], *, now: datetime) -> list[Sent]: ...

    def receipts(self) -> list[Receipt]:
        """Receipts the connector holds (a simulated or a polled channel); pushed receipts arrive
        through the API instead, so most real connectors return none."""
        ...


def sign(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, body), signature)


class HttpConnector:
    """POST ``{"messages": [...]}`` to ``url``; expects ``{"results": [{"key", "ok", "ref", "error"}]}``."""

    def __init__(
        self,
        channel: str,
        url: str,
        secret: bytes,
        *,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.5,
        client: httpx.Client | None = None,
    ) -> None:
        self.channel = channel
        self.url = url
        self.secret = secret
        self.retries = retries
        self.backoff = backoff
        self.client = client or httpx.Client(timeout=timeout)

    def send(self, messages: Sequence[Outgoing], *, now: datetime) -> list[Sent]:
        if not messages:
            return []
        body = json.dumps(
            {"channel": self.channel, "messages": [m.__dict__ for m in messages]}, ensure_ascii=False
        ).encode()
        batch_key = hashlib.sha256("|".join(m.key for m in messages).encode()).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "X-Signature": sign(self.secret, body),
            "Idempotency-Key": batch_key,
        }
        error = ""
        for attempt in range(self.retries + 1):
            try:
                response = self.client.post(self.url, content=body, headers=headers)
            except httpx.TransportError as exc:  # timeouts, refused connections
                error = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 500:
                    return self._results(messages, response)
                error = f"HTTP {response.status_code}"
            if attempt < self.retries:
                time.sleep(self.backoff * 2**attempt)
        return [Sent(m.key, False, error=error, retry=True) for m in messages]

    @staticmethod
    def _results(messages: Sequence[Outgoing], response: httpx.Response) -> list[Sent]:
        if response.status_code >= 400:  # the provider refused the batch: not worth retrying as is
            return [Sent(m.key, False, error=f"HTTP {response.status_code}: {response.text[:200]}") for m in messages]
        try:
            answers = {r["key"]: r for r in response.json()["results"]}
        except (ValueError, KeyError, TypeError):
            return [Sent(m.key, False, error="unreadable provider answer", retry=True) for m in messages]
        out = []
        for m in messages:
            a = answers.get(m.key)
            if a is None:
                out.append(Sent(m.key, False, error="no answer for this message", retry=True))
            else:
                out.append(Sent(m.key, bool(a.get("ok")), a.get("ref"), a.get("error")))
        return out

    def receipts(self) -> list[Receipt]:
        return []


class OutboundCallFile:
    """Appends each batch to ``<directory>/outbound_calls_<day>.csv`` for the call centre."""

    channel = "outbound_call"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(self, messages: Sequence[Outgoing], *, now: datetime) -> list[Sent]:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"outbound_calls_{now.date().isoformat()}.csv"
        new = not path.exists()
        with path.open("a", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["key", "customer_id", "script"])
            for m in messages:
                w.writerow([m.key, m.customer_id, m.text])
        return [Sent(m.key, True, f"{path.name}:{m.key}") for m in messages]

    def receipts(self) -> list[Receipt]:
        return []


def _unit(text: str) -> float:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


@dataclass
class SimulatedConnector:
    """Accepts every message; ``delivery_rate`` of them are delivered a minute later and
    ``open_rate`` of the delivered opened an hour later. Deterministic per message key."""

    channel: str
    delivery_rate: float = 0.97
    open_rate: float = 0.2
    sent: list[Outgoing] = field(default_factory=list)
    _pending: list[Receipt] = field(default_factory=list)

    def send(self, messages: Sequence[Outgoing], *, now: datetime) -> list[Sent]:
        out = []
        for m in messages:
            ref = f"sim-{self.channel}-{hashlib.sha256(m.key.encode()).hexdigest()[:16]}"
            self.sent.append(m)
            if _unit(m.key + ":delivery") < self.delivery_rate:
                self._pending.append(Receipt(ref, "delivered", now + timedelta(minutes=1)))
                if _unit(m.key + ":open") < self.open_rate:
                    self._pending.append(Receipt(ref, "opened", now + timedelta(hours=1)))
            else:
                self._pending.append(Receipt(ref, "failed", now + timedelta(minutes=1)))
            out.append(Sent(m.key, True, ref))
        return out

    def receipts(self) -> list[Receipt]:
        out, self._pending = self._pending, []
        return out


SIMULATED_OPEN_RATES = {
    "sms": 0.06,
    "app_push": 0.12,
    "wechat_template": 0.18,
    "enterprise_wechat": 0.25,
    "display_slot": 0.08,
    "outbound_call": 0.35,
}


def simulated_connectors() -> dict[str, Connector]:
    return {c: SimulatedConnector(c, open_rate=r) for c, r in SIMULATED_OPEN_RATES.items()}


def configured(
    targets: Mapping[str, str], *, secret: bytes, data_dir: Path, allow_simulated: bool = True
) -> dict[str, Connector]:
    """One connector per channel from the ``channels`` setting: an ``http(s)://`` endpoint, ``file:DIR``
    (the outbound-call list) or ``simulated``; a channel left out is simulated — in development.
    ``allow_simulated=False`` (production) refuses every simulated channel, so a missing endpoint
    is a clear error at the start of a dispatch, not messages that seem sent."""
    out: dict[str, Connector] = {}
    unknown = sorted(set(targets) - set(SIMULATED_OPEN_RATES))
    if unknown:
        raise Invalid(
            f"channels: unknown channel(s) {unknown}; expected some of {sorted(SIMULATED_OPEN_RATES)}",
            f"渠道配置中有未知渠道 {unknown}",
            code="unknown_channel",
        )
    simulated = []
    for channel, rate in SIMULATED_OPEN_RATES.items():
        target = targets.get(channel, "simulated").strip()
        if target.startswith(("http://", "https://")):
            out[channel] = HttpConnector(channel, target, secret)
        elif target.startswith("file:"):
            if channel != "outbound_call":
                raise Invalid(
                    f"channels.{channel}: file: is for the outbound-call list only; found {target!r}",
                    f"渠道 {channel} 不能配置为文件，只有外呼名单可以",
                    code="bad_channel_target",
                )
            folder = Path(target.removeprefix("file:"))
            out[channel] = OutboundCallFile(folder if folder.is_absolute() else data_dir / folder)
        elif target == "simulated":
            out[channel] = SimulatedConnector(channel, open_rate=rate)
            simulated.append(channel)
        else:
            raise Invalid(
                f"channels.{channel}: expected an http(s):// URL, file:DIR or simulated; found {target!r}",
                f"渠道 {channel} 的配置应为 http(s):// 地址、file:目录 或 simulated，实际为 {target!r}",
                code="bad_channel_target",
            )
    if simulated and not allow_simulated:
        raise Invalid(
            f"channels {simulated} have no endpoint: set BANKGROWTH_CHANNELS, e.g. "
            '{"sms": "https://sms.example.bank/send"}; production never simulates a channel',
            f"渠道 {simulated} 未配置发送地址（BANKGROWTH_CHANNELS）；生产环境不使用模拟渠道",
            code="channel_not_configured",
        )
    return out
