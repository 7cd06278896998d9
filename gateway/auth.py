"""Officer identity: CURVE key pairs, the node's key registry and the key files.

An officer client proves who it is with its CURVE key; the node's ZAP handler looks the
public key up here and hands libzmq the key itself as User-Id, which the node maps to the
officer on every message (so a revoked key stops at once). Nothing in a payload names the
sender. Registrations and revocations are journal events (see ``gateway.alerting``).

Key files are small TOML documents::

    # risk-gateway officer key for "alice": keep it secret (mode 0600)
    officer = "alice"
    public = "<z85, 40 characters>"
    secret = "<z85, 40 characters>"
    server = "<the node's public key, z85>"
    endpoint = "tcp://127.0.0.1:7711"
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import zmq

from gateway.errors import ConfigError, GatewayError

_Z85 = re.compile(r"^[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$")
_OFFICER = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


def valid_z85_key(text: str) -> bool:
    return bool(_Z85.match(text))


def valid_officer_id(text: str) -> bool:
    return bool(_OFFICER.match(text))


def new_keypair() -> tuple[str, str]:
    """A fresh CURVE key pair ``(public, secret)``, both Z85 text."""
    public, secret = zmq.curve_keypair()
    return public.decode(), secret.decode()


@dataclass(frozen=True, slots=True)
class ServerKeys:
    public: str
    secret: str


def load_or_create_server_keys(data_dir: Path) -> ServerKeys:
    """The node's CURVE key pair, made on first start and kept in ``data_dir/curve``."""
    d = data_dir / "curve"
    pub_path, sec_path = d / "server.public", d / "server.secret"
    if pub_path.exists() and sec_path.exists():
        public = pub_path.read_text(encoding="ascii").strip()
        secret = sec_path.read_text(encoding="ascii").strip()
        if not (valid_z85_key(public) and valid_z85_key(secret)):
            raise GatewayError(f"{d}: server key files are not Z85 CURVE keys")
        if zmq.curve_public(secret.encode()).decode() != public:
            raise GatewayError(f"{d}: server.public does not belong to server.secret")
        return ServerKeys(public, secret)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    public, secret = new_keypair()
    tmp = sec_path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(secret + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, sec_path)
    pub_path.write_text(public + "\n", encoding="ascii")
    return ServerKeys(public, secret)


@dataclass(frozen=True, slots=True)
class OfficerKey:
    """What an officer client needs to connect: its key pair and the node's public key."""

    officer: str
    public: str
    secret: str
    server: str
    endpoint: str = "tcp://127.0.0.1:7711"

    def curve_keys(self) -> tuple[bytes, bytes, bytes]:
        return self.public.encode(), self.secret.encode(), self.server.encode()

    def dump(self) -> str:
        return (f'# risk-gateway officer key for "{self.officer}": keep it secret (mode 0600)\n'
                f'officer = "{self.officer}"\npublic = "{self.public}"\n'
                f'secret = "{self.secret}"\nserver = "{self.server}"\n'
                f'endpoint = "{self.endpoint}"\n')

    def save(self, path: str | Path) -> None:
        """Write the key file with mode 0600 (replaced atomically)."""
        p = Path(path)
        tmp = p.with_name(p.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(self.dump())
        os.replace(tmp, p)


def load_key(path: str | Path) -> OfficerKey:
    """Read an officer key file; a bad file is a :class:`ConfigError` naming the key."""
    from gateway.config import read_toml

    p = Path(path)
    data = read_toml(p)
    for name in ("officer", "public", "secret", "server"):
        value = data.get(name)
        if not isinstance(value, str):
            raise ConfigError(str(p), name, "missing or not a string")
        if name != "officer" and not valid_z85_key(value):
            raise ConfigError(str(p), name, "not a Z85 CURVE key (40 characters)")
    if not valid_officer_id(data["officer"]):
        raise ConfigError(str(p), "officer", "not a valid officer id")
    if zmq.curve_public(data["secret"].encode()).decode() != data["public"]:
        raise ConfigError(str(p), "public", "does not belong to the secret key")
    endpoint = data.get("endpoint", "tcp://127.0.0.1:7711")
    if not isinstance(endpoint, str):
        raise ConfigError(str(p), "endpoint", "not a string")
    return OfficerKey(data["officer"], data["public"], data["secret"], data["server"],
                      endpoint)


@dataclass(slots=True)
class KeyRecord:
    officer: str
    public_key: str
    label: str
    registered_ms: int
    revoked_ms: int = 0


class KeyRegistry:
    """Public key -> officer, in memory; the alert desk keeps it and the database in step."""

    def __init__(self) -> None:
        self._keys: dict[str, KeyRecord] = {}

    def add(self, rec: KeyRecord) -> None:
        self._keys[rec.public_key] = rec

    def get(self, public_key: str) -> KeyRecord | None:
        return self._keys.get(public_key)

    def officer_of(self, public_key: str) -> str | None:
        """The officer of an active key, else None."""
        rec = self._keys.get(public_key)
        if rec is None or rec.revoked_ms:
            return None
        return rec.officer

    def active_officers(self) -> list[str]:
        return sorted({r.officer for r in self._keys.values() if not r.revoked_ms})

    def records(self) -> list[KeyRecord]:
        return sorted(self._keys.values(), key=lambda r: (r.officer, r.registered_ms))


__all__ = [
    "KeyRecord",
    "KeyRegistry",
    "OfficerKey",
    "ServerKeys",
    "load_key",
    "load_or_create_server_keys",
    "new_keypair",
    "valid_officer_id",
    "valid_z85_key",
]
