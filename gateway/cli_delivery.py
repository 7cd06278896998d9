"""``gateway keys``, ``journal``, ``alert``, ``console`` and ``soak``: the delivery side of
the command line (parsers and commands; ``gateway.cli`` registers them)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway import wire
from gateway.errors import ConfigError, GatewayError

Request = Callable[[argparse.Namespace, Any], Any]


def add_parsers(sub: Any, services_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    keys = sub.add_parser(
        "keys", help="make, register, revoke and list officer keys",
        description="Officer clients authenticate with CURVE keys. A key is registered with"
        " the node (journaled) and mapped to an officer id; revoking it refuses its"
        " handshakes and ends its live sessions at once.")
    ksub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    knew = ksub.add_parser("new", help="make a key pair, register it and write the key file",
                           description="Make a CURVE key pair for OFFICER, register its"
                           " public key with the running node and write a key file (mode"
                           " 0600) that `gateway console --key` and the SDK's load_key read.")
    knew.add_argument("officer", help="officer id ([A-Za-z0-9_.@-], up to 64)")
    knew.add_argument("--out", metavar="FILE", help="key file to write (default OFFICER.key)")
    knew.add_argument("--label", default="", help="free text, e.g. the device (max 64)")
    knew.add_argument("--force", action="store_true", help="overwrite an existing key file")
    services_arg(knew)
    kreg = ksub.add_parser("register", help="register a public key made elsewhere",
                           description="Map an existing CURVE public key (Z85) to OFFICER.")
    kreg.add_argument("officer", help="officer id ([A-Za-z0-9_.@-], up to 64)")
    kreg.add_argument("public_key", metavar="PUBLIC_KEY", help="Z85, 40 characters")
    kreg.add_argument("--label", default="", help="free text, e.g. the device (max 64)")
    services_arg(kreg)
    krev = ksub.add_parser("revoke", help="revoke a key (by public key or key file)",
                           description="Revoke a key: new handshakes are refused and its live"
                           " sessions end now.")
    krev.add_argument("key", metavar="PUBLIC_KEY_OR_FILE",
                      help="the public key (Z85), or a key file holding it")
    services_arg(krev)
    kserver = ksub.add_parser(
        "server", help="print this node's public key (for the peers' fabric.peer_keys)",
        description="Print the node's CURVE public key (Z85, 40 characters), read from its"
        " data directory (DATA_DIR/curve). It is the server key of the node's clients and"
        " fabric endpoints and the key its fabric DEALERs present to peers: put it in every"
        " peer node's config as `[fabric] peer_keys = { REGION = \"KEY\" }`. The key pair is"
        " made here if the node has none yet (the node then uses it from its first start)."
        " Reads no running node.")
    where = kserver.add_mutually_exclusive_group()
    where.add_argument("--config", metavar="FILE",
                       help="the node's TOML config (its node.data_dir and node.region)")
    where.add_argument("--data-dir", metavar="DIR",
                       help="the node's data directory (default ./gateway-data)")
    kserver.add_argument("--toml", action="store_true",
                         help='print a peer_keys entry, REGION = "KEY", instead of the bare key')
    klist = ksub.add_parser("list", help="list registered keys",
                            description="List every key the node knows: officer, public key,"
                            " label, active or revoked.")
    klist.add_argument("--json", action="store_true", help="print one JSON object")
    services_arg(klist)

    journal = sub.add_parser("journal", help="verify the tamper-evident journal",
                             description="Work on a node's journal (the data directory's"
                             " node.db). Runs offline or next to a running node (read-only).")
    jsub = journal.add_subparsers(dest="journal_command", metavar="ACTION", required=True)
    jver = jsub.add_parser("verify", help="check every event's hash chain",
                           description="Recompute the hash chain of every event from the"
                           " first; exit 0 if intact, 1 naming the first event that is"
                           " missing or does not match.")
    jver.add_argument("--data-dir", metavar="DIR", default="./gateway-data",
                      help="the node's data directory (default ./gateway-data)")
    jver.add_argument("--json", action="store_true", help="print one JSON object")

    alert = sub.add_parser("alert", help="raise an alert (as a business system would)",
                           description="Submit an alert to the running node. The key makes"
                           " it idempotent: the same key always names the same alert.")
    asub = alert.add_subparsers(dest="alert_command", metavar="ACTION", required=True)
    asubmit = asub.add_parser("submit", help="submit one alert",
                              description="Submit one alert; printed: its alert id, and"
                              " whether the key had raised it already.")
    asubmit.add_argument("--key", required=True, help="idempotency key (1..128 chars)")
    asubmit.add_argument("--severity", required=True,
                         choices=[s.value for s in wire.Severity],
                         help="critical and high reach officers first (priority lanes)")
    asubmit.add_argument("--account", type=int, required=True,
                         help="the account the alert is about")
    asubmit.add_argument("--title", required=True, help="one line for the officer (max 256)")
    asubmit.add_argument("--detail", action="append", default=[], metavar="NAME=VALUE",
                         help="a detail line (repeatable)")
    asubmit.add_argument("--to", action="append", default=[], metavar="OFFICER",
                         help="recipient officer (repeatable; default: routing decides)")
    services_arg(asubmit)

    console = sub.add_parser("console", help="the officer's terminal console",
                             description="Live alerts ordered by severity; `a` acknowledges"
                             " the selected alert, Enter shows its detail, q quits.")
    console.add_argument("--key", required=True, metavar="FILE",
                         help="officer key file (from `gateway keys new`)")
    console.add_argument("--device", default="console", help="device name (default console)")
    console.add_argument("--url", metavar="URL",
                         help="clients endpoint (default: the key file's endpoint)")

    soak = sub.add_parser("soak", help="long-running robustness checks",
                          description="Soak tests that are too long for the test suite.")
    ssub = soak.add_subparsers(dest="soak_command", metavar="WHAT", required=True)
    sdel = ssub.add_parser("delivery", help="SIGKILL a node under load, check every stream",
                           description="Start a node process, officer clients and a"
                           " submitter; SIGKILL the node at random points CYCLES times and"
                           " restart it; then check that every officer device received every"
                           " accepted alert once, in order, and that the journal verifies.")
    sdel.add_argument("--cycles", type=int, default=200, help="kill/restart cycles (200)")
    sdel.add_argument("--officers", type=int, default=5, help="officers (5)")
    sdel.add_argument("--devices", type=int, default=2, help="devices per officer (2)")
    sdel.add_argument("--rate", type=float, default=500.0, help="alerts submitted per second")
    sdel.add_argument("--seed", type=int, default=1,
                      help="seed of the kill times and alert mix (1)")
    sdel.add_argument("--dir", metavar="DIR", help="work directory (default: a temporary one)")
    sdel.add_argument("--json", action="store_true", help="print the report as JSON")


def cmd_keys(args: argparse.Namespace, request: Request) -> int:
    from gateway.auth import OfficerKey, load_key, new_keypair, valid_z85_key

    v = wire.PROTOCOL_VERSION
    if args.keys_command == "server":
        return _server_key(args)
    if args.keys_command == "list":
        reply = request(args, wire.KeyList(v, 1))
        if args.json:
            print(json.dumps([{"officer": k.officer, "public_key": k.public_key,
                               "label": k.label, "registered_ms": k.registered_ms,
                               "revoked_ms": k.revoked_ms} for k in reply.keys]))
            return 0
        from rich.console import Console
        from rich.table import Table

        table = Table(title="officer keys")
        for col in ("officer", "public key", "label", "state"):
            table.add_column(col)
        for k in reply.keys:
            table.add_row(k.officer, k.public_key, k.label,
                          "revoked" if k.revoked_ms else "active")
        Console().print(table)
        return 0
    if args.keys_command == "revoke":
        key = args.key
        if not valid_z85_key(key):
            key = load_key(key).public
        reply = request(args, wire.KeyRevoke(v, 1, key))
        for k in reply.keys:
            print(f"revoked the key of {k.officer}: {k.public_key}")
        return 0
    if args.keys_command == "register":
        reply = request(args, wire.KeyRegister(v, 1, args.officer, args.public_key, args.label))
        print(f"registered {args.public_key} for {args.officer}")
        return 0
    out = Path(args.out or f"{args.officer}.key")
    if out.exists() and not args.force:
        raise GatewayError(f"{out} exists; use --force to replace it")
    status = request(args, wire.StatusRequest(v, 1))
    public, secret = new_keypair()
    request(args, wire.KeyRegister(v, 2, args.officer, public, args.label))
    key_obj = OfficerKey(args.officer, public, secret, status.info["clients_server_key"],
                         status.info.get("endpoint.clients", "tcp://127.0.0.1:7711"))
    key_obj.save(out)
    print(f"registered a new key for {args.officer}; key file {out} (keep it secret)")
    return 0


def _server_key(args: argparse.Namespace) -> int:
    """``gateway keys server``: the node's public key, made if missing."""
    from gateway.auth import load_or_create_server_keys
    from gateway.config import load_config

    cfg = load_config(args.config)
    data_dir = Path(args.data_dir or cfg.node.data_dir)
    keys = load_or_create_server_keys(data_dir)
    print(f'{cfg.node.region} = "{keys.public}"' if args.toml else keys.public)
    return 0


def cmd_journal(args: argparse.Namespace) -> int:
    from gateway.journal import connect, verify

    path = Path(args.data_dir) / "node.db"
    if not path.exists():
        raise ConfigError(str(path), "<file>", "no node database here")
    db = connect(path, readonly=True)
    try:
        total = db.execute("SELECT count(*) FROM journal").fetchone()[0]

        def progress(n: int) -> None:
            print(f"verified {n:,} of {total:,} events", file=sys.stderr, flush=True)

        report = verify(db, progress=progress)
    finally:
        db.close()
    if args.json:
        print(json.dumps({"ok": report.ok, "events": report.events, "first": report.first,
                          "last": report.last, "problem": report.problem,
                          "bad_seq": report.bad_seq}))
    elif report.ok:
        print(f"{path}: journal intact, {report.events:,} events "
              f"({report.first}..{report.last})")
    else:
        print(f"{path}: journal BROKEN at event {report.bad_seq}: {report.problem}",
              file=sys.stderr)
    return 0 if report.ok else 1


def cmd_alert(args: argparse.Namespace, request: Request) -> int:
    details = {}
    for item in args.detail:
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigError("<command line>", "--detail", f"{item!r} is not NAME=VALUE")
        details[name] = value
    reply = request(args, wire.AlertSubmit(wire.PROTOCOL_VERSION, 1, args.key,
                                           wire.Severity(args.severity), args.account,
                                           args.title, details, list(args.to)))
    print(f"alert {reply.alert_id} {'already raised' if reply.duplicate else 'raised'}")
    return 0


def cmd_console(args: argparse.Namespace) -> int:
    from gateway.console import run_console

    return run_console(args.key, device=args.device, url=args.url)


def cmd_soak(args: argparse.Namespace) -> int:
    import tempfile

    import anyio

    from gateway.soak import run_crash_soak

    def say(msg: str) -> None:
        print(f"soak: {msg}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="gateway-soak-") as tmp:
        work = Path(args.dir) if args.dir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        report = anyio.run(lambda: run_crash_soak(
            work, cycles=args.cycles, officers=args.officers, devices=args.devices,
            rate=args.rate, seed=args.seed, progress=say))
    if args.json:
        print(json.dumps(report.as_dict(), sort_keys=True))
    else:
        for key, value in report.as_dict().items():
            print(f"{key:<22} {value}")
    return 0 if report.ok else 1


__all__ = ["add_parsers", "cmd_alert", "cmd_console", "cmd_journal", "cmd_keys", "cmd_soak"]
