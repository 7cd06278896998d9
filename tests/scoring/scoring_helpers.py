"""Shared helpers of the scoring tests."""

from __future__ import annotations

from gateway.wire import Channel, Transaction

HEADER = """
[meta]
name = "test"
[thresholds]
step_up = 30
block = 60
block_and_freeze = 100
[[tiers]]
name = "gold"
level = 1
daily_amount = 100000
daily_count = 5
"""


def tx(n: int = 1, *, account: int = 7, counterparty: int = 9, amount: int = 1000,
       currency: str = "EUR", channel: Channel = Channel.CARD, mcc: int = 5411,
       device: str = "dev-a", ip: str = "10.0.0.1", country: str = "DE", city: str = "Berlin",
       ts_ms: int = 1_700_000_000_000) -> Transaction:
    return Transaction(f"tx-{n}", account, counterparty, amount, currency, channel, mcc,
                       device, ip, country, city, ts_ms)
