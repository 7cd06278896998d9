"""Seeded generators: realistic rule sets, transaction streams with fraud, trusted files.

Used by the benchmarks, the differential tests and ``gateway demo``. Everything derives from
the seed, so a run replays exactly.
"""

from __future__ import annotations

import os
import random
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from gateway.wire import Channel, Transaction

U64: Final = (1 << 64) - 1
_GOLDEN: Final = 0x9E3779B97F4A7C15
COUNTRIES: Final = {
    "DE": ("Berlin", "Munich", "Hamburg"), "FR": ("Paris", "Lyon"), "GB": ("London", "Leeds"),
    "US": ("New York", "Chicago", "Austin"), "CN": ("Shanghai", "Beijing", "Shenzhen"),
    "SG": ("Singapore",), "BR": ("Sao Paulo", "Rio"), "NG": ("Lagos", "Abuja"),
    "RU": ("Moscow",), "AE": ("Dubai",), "IN": ("Mumbai", "Delhi"), "JP": ("Tokyo", "Osaka"),
}
HOME_COUNTRIES: Final = ("DE", "FR", "GB", "US", "CN", "SG", "JP", "IN")
RISKY_COUNTRIES: Final = ("NG", "RU", "AE", "BR")
CURRENCIES: Final = ("EUR", "USD", "GBP", "CNY", "SGD", "JPY")
COMMON_MCC: Final = (5411, 5812, 5541, 5311, 5999, 4111, 5912, 5814, 5691, 4121)
RISKY_MCC: Final = (7995, 6051, 4829, 6012, 5944, 5732, 7801, 6211, 5993, 4722)
TIERS: Final = (("standard", 1, 2_000_000, 50), ("gold", 2, 10_000_000, 200),
                ("platinum", 3, 50_000_000, 1000))
_FEATURE_TEMPLATES: Final = 14


def account_id(index: int) -> int:
    """The account number of account ``index`` (a bijection on u64, spread over the range)."""
    return (index * _GOLDEN + 0x5DEECE66D) & U64


def tier_level(index: int) -> int:
    return 1 + index % 3


def _toml_list(values: Sequence[object]) -> str:
    return "[" + ", ".join(f'"{v}"' if isinstance(v, str) else str(v) for v in values) + "]"


def _rule_body(rng: random.Random, template: int) -> tuple[str, list[str]]:
    """A description and the `when` lines of one generated rule."""
    amount = rng.choice((20_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 5_000_000))
    t = template % _FEATURE_TEMPLATES
    if t == 0:
        return "large amount", [f"amount.ge = {amount * 2}"]
    if t == 1:
        mccs = rng.sample(RISKY_MCC, rng.randint(1, 4))
        return "risky merchant category", [f"mcc.in = {_toml_list(mccs)}", f"amount.ge = {amount}"]
    if t == 2:
        cs = rng.sample(RISKY_COUNTRIES, rng.randint(1, 3))
        return "high-risk country", [f"country.in = {_toml_list(cs)}", f"amount.ge = {amount // 4}"]
    if t == 3:
        return "burst in one minute", [f"velocity_1m_count.ge = {rng.randint(3, 12)}"]
    if t == 4:
        return "hourly volume", [f"velocity_1h_sum.ge = {amount * 5}",
                                 f'channel = "{rng.choice(list(Channel)).value}"']
    if t == 5:
        return "new device, large amount", ["new_device = true", f"amount.ge = {amount}"]
    if t == 6:
        return "account takeover pattern", [
            "new_device = true", "country_changed = true",
            f"amount_to_baseline.ge = {rng.choice((2.0, 3.0, 5.0, 8.0))}"]
    if t == 7:
        lst = rng.choice(("counterparty", "device", "ip", "account"))
        return f"{lst} on block list", [f'{lst}.in_list = "blocklist"']
    if t == 8:
        hours = sorted(rng.sample(range(0, 6), rng.randint(2, 5)))
        return "night-time payment", [f"hour_of_day.in = {_toml_list(hours)}",
                                      f"amount.ge = {amount}"]
    if t == 9:
        return "mule: many payments a day", [f"velocity_24h_count.ge = {rng.randint(20, 80)}",
                                             f"amount.ge = {amount // 10}"]
    if t == 10:
        mcc = rng.choice(COMMON_MCC + RISKY_MCC)
        cur = rng.choice(CURRENCIES)
        return "merchant in foreign currency", [f"mcc = {mcc}", f'currency.ne = "{cur}"',
                                                f"amount.ge = {amount // 2}"]
    if t == 11:
        return "sudden spike against baseline", [
            f"amount_to_baseline.ge = {rng.choice((4.0, 6.0, 10.0, 20.0))}",
            f"baseline.ge = {rng.choice((1000, 5000, 10000))}"]
    if t == 12:
        return "city hop", ["city_changed = true", f"velocity_1h_count.ge = {rng.randint(2, 6)}"]
    return "moved country and paying fast", [
        "country_changed = true", f"velocity_1m_count.ge = {rng.randint(1, 4)}"]


def generate_rules(n_rules: int = 1000, n_trusted: int = 30, seed: int = 0, *,
                   name: str = "generated") -> str:
    """A realistic rule file (TOML) of ``n_rules`` rules of which ``n_trusted`` are trusted."""
    rng = random.Random(seed)
    out = [f'[meta]\nname = "{name}"\nversion = "seed-{seed}"\n',
           "[thresholds]\nstep_up = 40\nblock = 80\nblock_and_freeze = 150\n"
           'step_up_method = "sms_down"\n']
    for tname, level, amount, count in TIERS:
        out.append(f'[[tiers]]\nname = "{tname}"\nlevel = {level}\n'
                   f"daily_amount = {amount}\ndaily_count = {count}\n")
    out.append('[[guards]]\nid = "G-baseline"\nkind = "amount_vs_baseline"\nfactor = 5.0\n')
    out.append('[[guards]]\nid = "G-new-device"\nkind = "new_device_amount"\n'
               "min_amount = 100000\n")
    out.append('[[guards]]\nid = "G-blocked-cp"\nkind = "blocklist"\nlist = "counterparty"\n')
    trusted = set(rng.sample(range(n_rules), min(n_trusted, n_rules)))
    actions = ("face", "sms_down", "sms_up", "old_device_confirm", "block")
    for i in range(n_rules):
        desc, when = _rule_body(rng, rng.randrange(_FEATURE_TEMPLATES))
        lines = [f'[[rules]]\nid = "R{i:04d}"\ndescription = "{desc}"\n'
                 f"score = {rng.choice((5, 10, 15, 20, 25, 30, 40, 60, -10))}"]
        if rng.random() < 0.15:
            lines.append(f'action = "{rng.choice(actions)}"')
        if i in trusted:
            lines.append("trusted = true")
        lines.append("[rules.when]")
        lines.extend(when)
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


@dataclass(frozen=True, slots=True)
class _Profile:
    country: str
    city: str
    currency: str
    devices: tuple[str, ...]
    typical: int
    channel: Channel


class TransactionGenerator:
    """A seeded stream of realistic payments with fraud patterns mixed in.

    Patterns: account takeover (new device, foreign country, large amount), mule accounts
    (bursts of many payments to many counterparties) and sudden large amounts.
    """

    def __init__(self, seed: int = 0, *, accounts: int = 100_000, trusted_fraction: float = 0.3,
                 fraud_rate: float = 0.02, start_ms: int = 1_767_261_600_000) -> None:
        self.rng = random.Random(seed)
        self.accounts = accounts
        self.n_trusted = int(accounts * trusted_fraction)
        self.fraud_rate = fraud_rate
        self.ts = start_ms
        self.count = 0
        self.blocked_counterparties = [account_id(accounts + i) for i in range(50)]
        self._pending: deque[Transaction] = deque()
        self._profiles: dict[int, _Profile] = {}

    def trusted_accounts(self) -> dict[int, int]:
        """account -> tier level of the generator's trusted accounts."""
        return {account_id(i): tier_level(i) for i in range(self.n_trusted)}

    def profile(self, index: int) -> _Profile:
        p = self._profiles.get(index)
        if p is None:
            r = random.Random(index * 7919 + 17)
            country = r.choice(HOME_COUNTRIES)
            p = _Profile(country, r.choice(COUNTRIES[country]), r.choice(CURRENCIES),
                         tuple(f"dev-{index}-{k}" for k in range(r.randint(1, 3))),
                         int(r.lognormvariate(8.5, 1.0)) + 100, r.choice(list(Channel)))
            if len(self._profiles) < 1_000_000:
                self._profiles[index] = p
        return p

    def _tx(self, index: int, amount: int, *, device: str | None = None,
            country: str | None = None, counterparty: int | None = None,
            mcc: int | None = None) -> Transaction:
        p = self.profile(index)
        rng = self.rng
        self.count += 1
        country = country or p.country
        city = p.city if country == p.country else rng.choice(COUNTRIES[country])
        cp = counterparty if counterparty is not None else account_id(rng.randrange(self.accounts))
        return Transaction(
            f"tx-{self.count}", account_id(index), cp, max(amount, 1), p.currency,
            p.channel if rng.random() < 0.8 else rng.choice(list(Channel)),
            mcc if mcc is not None else rng.choice(COMMON_MCC),
            device or rng.choice(p.devices), f"10.{index % 251}.{index % 241}.{index % 239}",
            country, city, self.ts)

    def next(self) -> Transaction:
        """The next transaction of the stream."""
        rng = self.rng
        self.ts += rng.randint(0, 3)
        if self._pending:
            return self._pending.popleft()
        index = rng.randrange(self.accounts)
        p = self.profile(index)
        if rng.random() >= self.fraud_rate:
            amount = int(p.typical * rng.lognormvariate(0.0, 0.5))
            return self._tx(index, amount, mcc=rng.choice(COMMON_MCC) if rng.random() < 0.9
                            else rng.choice(RISKY_MCC))
        kind = rng.randrange(4)
        if kind == 0:  # account takeover
            return self._tx(index, p.typical * rng.randint(5, 30),
                            device=f"evil-{rng.randrange(1 << 30)}",
                            country=rng.choice(RISKY_COUNTRIES), mcc=rng.choice(RISKY_MCC))
        if kind == 1:  # mule burst: many payments out in a short time
            for _ in range(rng.randint(5, 20)):
                self._pending.append(self._tx(index, p.typical * rng.randint(1, 3)))
            return self._pending.popleft()
        if kind == 2:  # sudden large amount on a known device
            return self._tx(index, p.typical * rng.randint(10, 60), mcc=rng.choice(RISKY_MCC))
        return self._tx(index, p.typical, counterparty=rng.choice(self.blocked_counterparties))

    def batch(self, n: int) -> list[Transaction]:
        return [self.next() for _ in range(n)]

    def __iter__(self) -> Iterator[Transaction]:
        while True:
            yield self.next()


def write_trusted_file(path: str | os.PathLike[str], accounts: int, *,
                       chunk: int = 200_000) -> int:
    """Write ``accounts`` trusted accounts (``account,level`` lines) for account indexes
    0..accounts-1 of the generator's numbering; returns the count."""
    with open(path, "w", encoding="ascii") as fh:
        fh.write("# account,tier_level\n")
        for start in range(0, accounts, chunk):
            fh.write("".join(f"{account_id(i)},{tier_level(i)}\n"
                             for i in range(start, min(start + chunk, accounts))))
    return accounts
