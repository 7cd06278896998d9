"""The ``gateway`` command line: run a node, the demo, operator commands and benchmarks."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from gateway import __version__, cli_delivery, cli_incident, wire
from gateway.codec import ReplyCodec
from gateway.config import CONFIG_REFERENCE, Config, check_config, load_config
from gateway.errors import ConfigError, GatewayError, RemoteError
from gateway.runtime import LOOPS

DEFAULT_SERVICES = "tcp://127.0.0.1:7712"

EPILOG = """\
Exit status: 0 success, 1 the command failed (message on stderr), 2 bad usage or config.
Run `gateway COMMAND --help` for the options of each command."""


def _loop_arg(p: argparse.ArgumentParser, default: str | None) -> None:
    p.add_argument("--loop", choices=LOOPS, default=default,
                   help="event loop to run on (default: uvloop, or the config's node.loop)")


def _services_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--services", metavar="URL", default=DEFAULT_SERVICES,
                   help=f"the node's services endpoint (default: {DEFAULT_SERVICES})")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="how long to wait for the node's answer (default: 10)")


def _bench(bsub: Any, name: str, *, help: str, description: str) -> None:
    """One ``gateway bench`` subcommand; each takes --json and --quick."""
    p = bsub.add_parser(name, help=help, description=description)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quick", action="store_true",
                   help="small sizes, for a smoke run (figures not comparable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway",
        description="risk-gateway: score payments, alert officers, keep the record.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"risk-gateway {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    node = sub.add_parser(
        "node", help="run a regional node until SIGINT or SIGTERM",
        description="Run a regional node on embedded defaults, a TOML config, or both (command"
        " line options override the file). Endpoints bind on loopback unless configured; a"
        " port of * picks a free one. Prints the endpoints once ready.",
        epilog="Config file keys and their defaults:\n\n" + CONFIG_REFERENCE,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    node.add_argument("--config", metavar="FILE", help="TOML config file (see below)")
    node.add_argument("--name", help="node name (config node.name)")
    node.add_argument("--region", help="region this node serves (config node.region)")
    node.add_argument("--data-dir", metavar="DIR",
                      help="database and state directory (config node.data_dir, "
                      "default ./gateway-data)")
    node.add_argument("--rules", metavar="FILE", help="rule file to load at start (node.rules)")
    node.add_argument("--trusted", metavar="FILE",
                      help="trusted-accounts file to load at start (node.trusted)")
    node.add_argument("--ingest", metavar="URL", help="ingest endpoint (endpoints.ingest)")
    node.add_argument("--ingest-mode", choices=("native", "python"),
                      help="who serves the ingest endpoint: the native C thread or the Python"
                      " loop (ingest.mode, default native)")
    node.add_argument("--clients", metavar="URL", help="officer endpoint (endpoints.clients)")
    node.add_argument("--services", metavar="URL",
                      help="services endpoint (endpoints.services)")
    node.add_argument("--metrics-port", type=int, metavar="PORT",
                      help="serve Prometheus metrics on this port (metrics.port; 0 = off)")
    node.add_argument("--metrics-host", metavar="ADDR", help="metrics address (metrics.host)")
    node.add_argument("--fabric", metavar="URL",
                      help="this node's fabric endpoint for the nodes of other regions "
                      "(fabric.bind)")
    node.add_argument("--peer", metavar="REGION=ENDPOINT", action="append", default=[],
                      help="the fabric endpoint of another region's node; repeat for each "
                      "region (added to fabric.peers)")
    _loop_arg(node, None)

    demo = sub.add_parser(
        "demo", help="run a self-contained node with simulated payments and officers",
        description="Start a node in this process on free loopback ports and a temporary data"
        " directory, stream a realistic payment mix (trusted and untrusted accounts, account"
        " takeover, mule accounts, sudden large amounts) through the ingest endpoint, connect"
        " simulated officers that receive the alerts, show a live status and print a summary.")
    demo.add_argument("--seconds", type=float, default=10.0,
                      help="how long to stream payments (default: 10)")
    demo.add_argument("--rate", type=int, default=None, metavar="TX_PER_S",
                      help="target payments per second (default: 20000; 5000 over all nodes"
                      " with --regions)")
    demo.add_argument("--officers", type=int, default=3, help="simulated officer clients (3)")
    demo.add_argument("--seed", type=int, default=7, help="random seed of the payment mix (7)")
    demo.add_argument("--no-live", action="store_true",
                      help="print plain progress lines instead of the live table")
    demo.add_argument("--regions", type=int, default=1, metavar="N",
                      help="regional nodes (1..3); with more than one, payments of accounts "
                      "homed elsewhere are forwarded over the fabric (default: 1)")
    _loop_arg(demo, "uvloop")

    status = sub.add_parser("status", help="show a running node's identity and counters",
                            description="Ask a running node for its status and counters.")
    _services_arg(status)
    status.add_argument("--json", action="store_true", help="print one JSON object")

    rules = sub.add_parser("rules", help="check, load, roll back and compare rule sets",
                           description="Manage the rule set of a running node.")
    rsub = rules.add_subparsers(dest="rules_command", metavar="ACTION", required=True)
    rcheck = rsub.add_parser("check", help="validate a rule file offline (no node needed)",
                             description="Validate and compile a rule file; prints the error "
                             "with file, rule id, line and reason, or a summary.")
    rcheck.add_argument("file", metavar="FILE", help="the rule file (TOML) to check")
    rload = rsub.add_parser("load", help="validate, compile and atomically install a rule file",
                            description="Send a rule file to the node. It is validated and"
                            " compiled there and swapped in atomically; a file with an error is"
                            " refused and the running set stays.")
    rload.add_argument("file", metavar="FILE", help="the rule file (TOML) to install")
    rload.add_argument("--shadow", action="store_true",
                       help="install as the shadow (challenger) set: recorded, not enforced")
    _services_arg(rload)
    rback = rsub.add_parser("rollback", help="reinstate the previous rule set",
                            description="Reinstate the rule set that was live before this one.")
    _services_arg(rback)
    rshadow = rsub.add_parser("shadow-report", help="compare shadow decisions with live ones",
                              description="Print how the shadow set's decisions differ from"
                              " the live set's on the same transactions.")
    _services_arg(rshadow)

    trusted = sub.add_parser("trusted", help="load trusted accounts into a running node",
                             description="Trusted-account data of a running node.")
    tsub = trusted.add_subparsers(dest="trusted_command", metavar="ACTION", required=True)
    tload = tsub.add_parser("load", help="load a trusted-accounts file on the node's host",
                            description="Load trusted accounts with tiers from FILE, a path"
                            " the node can read (see docs/rules.md for the format).")
    tload.add_argument("file", metavar="FILE",
                       help="trusted-accounts file, readable by the node")
    _services_arg(tload)
    tupd = tsub.add_parser("update", help="set or remove trusted accounts (any node)",
                           description="Set tier levels (1..255) or remove accounts (level 0)."
                           " The node applies the accounts homed there and stores the others"
                           " durably for their home regions' nodes.")
    tupd.add_argument("entries", metavar="ACCOUNT=LEVEL", nargs="+",
                      help="an account and its tier level, 0 to remove")
    _services_arg(tupd)
    tget = tsub.add_parser("get", help="tier levels of accounts homed at the node",
                           description="Print the tier level of each account: 0 not trusted,"
                           " -1 homed in another region (not kept at this node).")
    tget.add_argument("accounts", metavar="ACCOUNT", nargs="+", type=int,
                      help="account number")
    _services_arg(tget)

    bench = sub.add_parser("bench", help="measure the node's hot paths",
                           description="Benchmarks; results as a table or one JSON object.")
    bsub = bench.add_subparsers(dest="bench_command", metavar="WHAT", required=True)
    _bench(bsub, "scoring", help="native rule scoring (1,000 rules, 10 M accounts)",
           description="Measure the native scoring engine on a generated"
           " rule set of 1,000 rules with a 30-rule trusted subset and 10"
           " million trusted accounts.")
    _bench(
        bsub, "ingest", help="ingest over ZeroMQ: native thread vs the Python path",
        description="Start a node's ingest endpoint in a subprocess (native, then the Python"
        " path) and drive it from this process with the native load generator: pipelined"
        " single-transaction requests, batches of 64, a paced run for latency.")
    _bench(
        bsub, "fabric", help="forwarded transactions' added latency; cross-region alert latency",
        description="Start two regional nodes in subprocesses and drive one of them with the"
        " native load generator, paced: transactions of its own accounts (direct), then of"
        " accounts homed at the other node (forwarded). forward_added_p99_ms is the"
        " forwarded round trip's p99 minus the direct one's, measured in the same run. Then"
        " two fresh nodes, eu relaying its alerts to us: 2,000 alert_submit at 200/s to eu"
        " (100 with --quick), bounded to 30 s; cross_region_alert_p50/p99_ms is the time"
        " from sending each to an officer device at us taking it, local_alert_p99_ms the"
        " same to an officer device at eu.")
    _bench(
        bsub, "delivery", help="alert delivery: fan-out latency, priority, journal, recovery",
        description="Start a node in a subprocess and measure alert delivery to 1,000"
        " connected officer clients (2,000 alerts/s, 3 recipients each), a critical alert"
        " behind 100,000 queued bulk alerts, fsynced journal events per second and restart"
        " time with 1 million journal events.")

    cli_delivery.add_parsers(sub, _services_arg)
    cli_incident.add_parsers(sub)

    config = sub.add_parser("config", help="print the configuration reference",
                            description="Print every config key with its default.")
    config.add_argument("--check", metavar="FILE", help="validate FILE instead")
    return parser


def _node_config(args: argparse.Namespace) -> Config:
    cfg = load_config(args.config)
    overrides: dict[str, dict[str, Any]] = {
        "node": {"name": args.name, "region": args.region, "data_dir": args.data_dir,
                 "rules": args.rules, "trusted": args.trusted, "loop": args.loop},
        "endpoints": {"ingest": args.ingest, "clients": args.clients,
                      "services": args.services},
        "metrics": {"port": args.metrics_port, "host": args.metrics_host},
        "ingest": {"mode": args.ingest_mode},
        "fabric": {"bind": args.fabric},
    }
    data = msgspec.to_builtins(cfg)
    for section, values in overrides.items():
        for key, value in values.items():
            if value is not None:
                data[section][key] = value
    for peer in args.peer:  # --peer REGION=ENDPOINT
        region, sep, url = peer.partition("=")
        if not sep or not region or not url:
            raise ConfigError("<command line>", "--peer", f"{peer!r} is not REGION=ENDPOINT")
        data["fabric"]["peers"][region] = url
    try:
        cfg = msgspec.convert(data, Config)
    except msgspec.ValidationError as exc:
        raise ConfigError("<command line>", "option", str(exc)) from None
    check_config(cfg, args.config or "<command line>")
    return cfg


def _request(args: argparse.Namespace, msg: msgspec.Struct) -> Any:
    from gateway.transport import request_blocking

    codec = ReplyCodec()
    reply = codec.decode(request_blocking(args.services, codec.encode(msg),
                                          timeout=args.timeout))
    if isinstance(reply, wire.Error):
        raise RemoteError(reply.code, reply.name, reply.message)
    return reply


def _cmd_node(args: argparse.Namespace) -> int:
    cfg = _node_config(args)
    from gateway.node import Node
    from gateway.runtime import run

    logging.getLogger().setLevel(cfg.node.log_level.upper())
    node = Node(cfg)
    run(node.run, loop=cfg.node.loop)
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    reply = _request(args, wire.StatusRequest(wire.PROTOCOL_VERSION, 1))
    if args.json:
        print(json.dumps({"info": reply.info, "counters": reply.counters}, sort_keys=True))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"node {reply.info.get('node', '?')}", show_header=False)
    for key, value in reply.info.items():
        table.add_row(key, value)
    counters = Table(title="counters")
    counters.add_column("counter")
    counters.add_column("value", justify="right")
    for key in sorted(reply.counters):
        counters.add_row(key, f"{reply.counters[key]:,}")
    console = Console()
    console.print(table)
    console.print(counters)
    return 0


def _cmd_rules(args: argparse.Namespace) -> int:
    v = wire.PROTOCOL_VERSION
    if args.rules_command == "check":
        from gateway.scoring import ScoringEngine

        engine = ScoringEngine.from_file(args.file)
        info = engine.info
        print(f"{args.file}: ok, {info.rules} rules, {info.trusted_rules} on the trusted path")
        return 0
    if args.rules_command == "load":
        path = Path(args.file)
        try:
            source = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise GatewayError(f"{path}: {exc.strerror}") from None
        reply = _request(args, wire.RulesLoad(v, 1, source, str(path), args.shadow))
        what = "shadow rule set" if reply.shadow else "rule set"
        print(f"{what} v{reply.version} live: {reply.rules} rules, {reply.trusted_rules} on "
              "the trusted path")
        return 0
    if args.rules_command == "rollback":
        reply = _request(args, wire.RulesRollback(v, 1))
        print(f"rolled back: rule set v{reply.version} live ({reply.rules} rules)")
        return 0
    reply = _request(args, wire.ShadowReportRequest(v, 1))
    print(json.dumps(reply.report, indent=2, sort_keys=True))
    return 0


def _cmd_trusted(args: argparse.Namespace) -> int:
    v = wire.PROTOCOL_VERSION
    if args.trusted_command == "update":
        entries = []
        for item in args.entries:
            account, sep, level = item.partition("=")
            if not sep or not account.isdigit() or not level.isdigit():
                raise GatewayError(f"{item!r} is not ACCOUNT=LEVEL")
            entries.append(wire.TrustedEntry(int(account), int(level)))
        reply = _request(args, wire.TrustedUpdate(v, 1, entries))
        print(f"{reply.local} applied here, {reply.placed} stored for their home regions")
        return 0
    if args.trusted_command == "get":
        reply = _request(args, wire.TrustedGet(v, 1, args.accounts))
        for account, level in zip(args.accounts, reply.levels, strict=True):
            print(f"{account} {level if level >= 0 else 'homed elsewhere'}")
        return 0
    reply = _request(args, wire.TrustedLoad(v, 1, str(Path(args.file).resolve())))
    if isinstance(reply, wire.TrustedUpdated):  # a node with a fabric places each line
        print(f"{reply.local:,} applied here, {reply.placed:,} stored for their home regions")
    else:
        print(f"{reply.accounts:,} trusted accounts loaded")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from gateway.bench_scoring import run_scoring_bench

    def progress(msg: str) -> None:
        print(f"bench: {msg}", file=sys.stderr, flush=True)

    result: dict[str, Any]
    if args.bench_command == "fabric":
        from gateway.bench_fabric import run_fabric_bench

        result = run_fabric_bench(quick=args.quick, progress=progress)
    elif args.bench_command == "delivery":
        from gateway.bench_delivery import run_delivery_bench

        result = run_delivery_bench(quick=args.quick, progress=progress)
    elif args.bench_command == "ingest":
        from gateway.bench_ingest import run_ingest_bench

        if args.quick:
            result = run_ingest_bench(single_requests=20_000, batched_requests=1_000,
                                      paced_seconds=0.5, python_requests=5_000)
        else:
            result = run_ingest_bench()
    else:
        result = run_scoring_bench(quick=args.quick, progress=progress)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        for key, value in result.items():
            print(f"{key:<24} {value:,.3f}" if isinstance(value, int | float) else
                  f"{key:<24} {value}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo

    if args.regions != 1:
        from gateway.demo_fabric import run_fabric_demo

        return run_fabric_demo(regions=args.regions, seconds=args.seconds,
                               rate=args.rate or 5_000, seed=args.seed, loop=args.loop)
    return run_demo(seconds=args.seconds, rate=args.rate or 20_000, officers=args.officers,
                    seed=args.seed, live=not args.no_live, loop=args.loop)


def _cmd_config(args: argparse.Namespace) -> int:
    if args.check:
        load_config(args.check)
        print(f"{args.check}: ok")
    else:
        print(CONFIG_REFERENCE, end="")
    return 0


COMMANDS = {"node": _cmd_node, "status": _cmd_status, "rules": _cmd_rules,
            "trusted": _cmd_trusted, "bench": _cmd_bench, "demo": _cmd_demo,
            "config": _cmd_config,
            "keys": lambda a: cli_delivery.cmd_keys(a, _request),
            "journal": cli_delivery.cmd_journal,
            "alert": lambda a: cli_delivery.cmd_alert(a, _request),
            "console": cli_delivery.cmd_console,
            "soak": cli_delivery.cmd_soak,
            "incident": cli_incident.cmd_incident,
            "cases": cli_incident.cmd_cases}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"gateway: config error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except GatewayError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    except BaseExceptionGroup as group:  # a task of the node failed, e.g. the journal
        first = _first_gateway_error(group)
        if first is None:
            raise
        print(f"gateway: {first}; stopped", file=sys.stderr)
        return 1


def _first_gateway_error(group: BaseExceptionGroup[Any]) -> GatewayError | None:
    for exc in group.exceptions:
        if isinstance(exc, GatewayError):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = _first_gateway_error(exc)
            if found is not None:
                return found
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
