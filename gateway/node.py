"""A regional node: binds the endpoints, scores payments, raises alerts, answers operators.

This is I/O shell: the decisions are made by the scoring engine, the wire rules by
``gateway.codec``; this module wires them to sockets, the database and the clock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import anyio
import zmq

from gateway import __version__, wire
from gateway._native import NativeTrusted, trusted_entries
from gateway.alert_content import decision_alert, tx_summary_from_transaction
from gateway.alerting import AlertDesk, DeliverySettings
from gateway.auth import load_or_create_server_keys
from gateway.codec import Endpoint, EndpointCodec
from gateway.config import Config
from gateway.counters import Counters, LatencyHistogram
from gateway.errors import ErrorCode, GatewayError, ProtocolError
from gateway.fabric import fabric_enabled
from gateway.fabric_node import ZAP_DOMAIN as FABRIC_ZAP_DOMAIN
from gateway.fabric_node import Fabric, Local
from gateway.incident._commands import load_policy
from gateway.incident._oncall import load_oncall
from gateway.incidents import IncidentDesk
from gateway.ingest import (
    AlertRecord,
    IngestSettings,
    NativeIngestEndpoint,
    tx_summary_from_record,
)
from gateway.journal import Journal
from gateway.scoring import (
    DEFAULT_RULES_PATH,
    RuleFileError,
    RuleSetVersionNotKeptError,
    ScoringEngine,
    parse_rules,
)
from gateway.store import Store, ruleset_change
from gateway.transport import RouterEndpoint, ZapAuthenticator

log = logging.getLogger(__name__)

KEEP_AT_START = 8  # kept rule sets reinstated at start, so rollback works after a restart



class Node:
    """One regional node. ``await node.run()`` serves until cancelled or signalled."""

    def __init__(self, config: Config, *, out: TextIO | None = None,
                 handle_signals: bool = True) -> None:
        self.config = config
        self.counters = Counters()
        self.latency = LatencyHistogram()
        self.started = time.time()
        self.out = out if out is not None else sys.stdout
        self.handle_signals = handle_signals
        self.store = Store(config.node.data_dir)
        self.journal = Journal(self.store.path)
        self.server_keys = load_or_create_server_keys(self.store.dir)
        d = config.delivery
        self.desk = AlertDesk(
            store=self.store, journal=self.journal, counters=self.counters,
            node_name=config.node.name, region=config.node.region,
            settings=DeliverySettings(window=d.window, critical_window=d.critical_window,
                                      rto_ms=d.rto_ms, max_rto_ms=d.max_rto_ms,
                                      offline_after_ms=d.offline_after_ms))
        self.engine = self._open_engine()
        self.incidents: IncidentDesk | None = None  # with [incident] oncall
        if config.incident.oncall:
            self.incidents = IncidentDesk(
                desk=self.desk, journal=self.journal, counters=self.counters,
                oncall=load_oncall(config.incident.oncall),
                policy=load_policy(config.incident.policy), node_name=config.node.name,
                region=config.node.region, freeze=self._freeze)
            for account in self.incidents.frozen_accounts():
                self.engine.freeze_account(account)
            self.desk.extra_client = self.incidents.on_client
        if config.node.trusted:
            n = self.engine.load_trusted(config.node.trusted)
            self.counters.inc("trusted_loaded", n)
        self._codecs = {ep: EndpointCodec(ep) for ep in Endpoint}
        self._encode = wire.encoder().encode
        self.endpoints: dict[Endpoint, RouterEndpoint] = {}  # the Python-served ones
        self.ingest: NativeIngestEndpoint | None = None  # native ingest (config ingest.mode)
        self.urls: dict[Endpoint, str] = {}  # every bound endpoint
        self._tg: anyio.abc.TaskGroup | None = None  # while running
        # regional fabric (gateway.fabric_node); None without a [fabric] section
        self.fabric = (Fabric(config, self.counters, self.engine, keys=self.server_keys)
                       if fabric_enabled(config) else None)

    # -- start-up -----------------------------------------------------------------------

    def _open_engine(self) -> ScoringEngine:
        """Reinstate the kept rule sets (for rollback), then the configured file if new."""
        kept = self.store.live_rulesets()[-KEEP_AT_START:]
        self._rules_version = self.store.next_ruleset_version() - 1  # the last one given
        engine: ScoringEngine | None = None
        for rs in kept:
            try:
                if engine is None:
                    engine = ScoringEngine(rs.source, rs.filename, version=rs.version)
                else:
                    engine.load_rules(rs.source, rs.filename, version=rs.version)
            except RuleFileError as exc:
                raise GatewayError(f"kept rule set v{rs.version} no longer compiles: {exc}"
                                   ) from None
        path = self.config.node.rules
        if path:
            try:
                source = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise GatewayError(f"rule file {path}: {exc.strerror}") from None
            filename = str(path)
        elif engine is None:
            source = Path(DEFAULT_RULES_PATH).read_text(encoding="utf-8")
            filename = "default_rules.toml"
        else:
            return engine
        if kept and kept[-1].source == source:
            assert engine is not None
            return engine
        version = self._rules_version = self._rules_version + 1
        if engine is None:
            engine = ScoringEngine(source, filename, version=version)
        else:
            engine.load_rules(source, filename, version=version)
        self._journal_rules("live", version, filename, source, engine.info.rules)
        return engine

    def _journal_rules(self, what: str, version: int, filename: str, source: str,
                       rules: int, answer: Callable[[], None] | None = None) -> None:
        """A rule set installed or rolled back: a ``rules`` journal event with the kept
        ``rulesets`` row, so rule changes are in the tamper-evident record and written by
        the journal's connection only; ``answer`` once that is durable."""
        body, writes = ruleset_change(what, version, filename, source, rules)
        self.journal.append("rules", body, writes, on_durable=answer)

    async def run(self, *, task_status: anyio.abc.TaskStatus[Node] = anyio.TASK_STATUS_IGNORED,
                  ) -> None:
        ctx: zmq.Context[Any] = zmq.Context()
        cfg = self.config
        # the journal's commit thread hands back the GIL after each fsync: a short switch
        # interval keeps that hand-off (and so every durable reply) from waiting 5 ms
        sys.setswitchinterval(0.0005)
        # the ZAP handler must be bound before the CURVE endpoints (clients, fabric)
        zap = ZapAuthenticator(ctx, self._authorize)
        try:
            urls = {Endpoint.INGEST: cfg.endpoints.ingest, Endpoint.CLIENTS: cfg.endpoints.clients,
                    Endpoint.SERVICES: cfg.endpoints.services}
            for ep, url in urls.items():
                try:
                    if ep is Endpoint.INGEST and cfg.ingest.mode == "native":
                        self.ingest = NativeIngestEndpoint(
                            ctx, url, self.engine, node_name=cfg.node.name,
                            region=cfg.node.region, settings=IngestSettings(
                                alert_min_score=cfg.alerts.min_score,
                                alert_queue=cfg.ingest.alert_queue,
                                busy_alerts_ms=cfg.ingest.busy_retry_ms,
                                max_backlog_ms=cfg.ingest.max_backlog_ms))
                        self.urls[ep] = self.ingest.url
                        continue
                    if ep is Endpoint.CLIENTS:
                        self.endpoints[ep] = RouterEndpoint(
                            ctx, ep.value, url, self.counters, lanes=wire.LANES,
                            curve_server_key=self.server_keys.secret.encode())
                    else:
                        self.endpoints[ep] = RouterEndpoint(ctx, ep.value, url, self.counters)
                    self.urls[ep] = self.endpoints[ep].url
                except zmq.ZMQError as exc:
                    raise GatewayError(
                        f"cannot bind the {ep.value} endpoint {url}: {exc}"
                    ) from None
            clients = self.endpoints[Endpoint.CLIENTS]
            services = self.endpoints[Endpoint.SERVICES]
            clients.on_unroutable = self.desk.peer_gone
            self.desk.bind(reply_client=lambda ident, body: clients.send_nowait(ident, body, 0),
                           reply_service=lambda ident, body: services.send_nowait(ident, body),
                           push=clients.send_nowait)
            if self.incidents is not None:
                self.incidents.bind(
                    reply_client=lambda ident, body: clients.send_nowait(ident, body, 0),
                    send_service=lambda ident, body: services.send_nowait(ident, body))
            if self.fabric is not None:
                self._open_fabric(ctx)
            metrics = None
            if cfg.metrics.port:
                from gateway.metrics import start_metrics_server

                metrics = start_metrics_server(self, cfg.metrics.host, cfg.metrics.port)
            self._announce(metrics)
            async with anyio.create_task_group() as tg:
                self._tg = tg  # short jobs started by requests (a trusted file's load)
                handlers = {Endpoint.INGEST: self._on_ingest, Endpoint.CLIENTS: self._on_client,
                            Endpoint.SERVICES: self._on_service}
                tg.start_soon(zap.run)
                tg.start_soon(self.journal.run)
                tg.start_soon(self.desk.run_ticks)
                if self.incidents is not None:
                    tg.start_soon(self.incidents.run)
                for ep, sock in self.endpoints.items():
                    tg.start_soon(sock.serve, handlers[ep])
                if self.ingest is not None:
                    tg.start_soon(self.ingest.serve, self.counters, self._on_native_alert)
                if self.fabric is not None:
                    tg.start_soon(self.fabric.serve)
                if self.handle_signals:
                    tg.start_soon(self._watch_signals, tg.cancel_scope)
                task_status.started(self)
        finally:
            self._tg = None
            if self.ingest is not None:
                self.ingest.close()  # joins the native thread before the context ends
            for sock in self.endpoints.values():
                sock.close()
            zap.close()
            if self.fabric is not None:
                self.fabric.close()
            if self.incidents is not None:
                self.incidents.close()
            ctx.term()
            self.journal.close()
            self.store.close()
            print(f"gateway node {cfg.node.name}: stopped", file=self.out, flush=True)

    def _authorize(self, domain: str, address: str, mechanism: str, creds: bytes,
                   ) -> tuple[str, str]:
        """The context's one ZAP handler, by domain: the fabric endpoint's peers (domain
        ``fabric``) or the officer clients (every other domain)."""
        if domain == FABRIC_ZAP_DOMAIN:
            if self.fabric is None or not self.fabric.curve:
                return "", "no CURVE fabric on this node"
            return self.fabric.authorize(address, mechanism, creds)
        return self.desk.authorize(domain, address, mechanism, creds)

    def _open_fabric(self, ctx: zmq.Context[Any]) -> None:
        """Regional fabric: the native thread or the Python path hands off foreign accounts."""
        assert self.fabric is not None
        self.fabric.attach_desk(self.desk)  # relayed alerts in, this node's alerts out
        if self.incidents is not None:  # commands to and from the accounts' home nodes
            self.fabric.attach_incidents(self.incidents)
        if self.ingest is not None:
            self.fabric.attach_native(ctx, self.ingest)
        else:
            self.fabric.attach_python(self.endpoints[Endpoint.INGEST].send_nowait, self._score)
        self.fabric.open(ctx)

    def _announce(self, metrics: Any) -> None:
        cfg = self.config
        info = self.engine.info
        lines = [
            f"gateway node {cfg.node.name} (region {cfg.node.region}) ready, pid {os.getpid()}",
            f"  data      {Path(cfg.node.data_dir).resolve()}",
            f"  rules     {info.filename} v{info.version}: {info.rules} rules, "
            f"{info.trusted_rules} on the trusted path",
        ]
        for ep, url in self.urls.items():
            lines.append(f"  {ep.value:<9} {url}")
        lines.append(f"  scoring   {'native ingest thread' if self.ingest else 'python ingest'}")
        if self.fabric is not None:
            peers = ", ".join(self.fabric.links) or "none"
            lines.append(f"  fabric    {self.fabric.url} (peers {peers})")
        lines.append(f"  journal   event {self.journal.durable_seq}, "
                     f"{len(self.desk.keys.active_officers())} officers with active keys")
        lines.append(f"  curve     {self.server_keys.public} (server key of the clients"
                     + (" and fabric endpoints)" if self.fabric is not None
                        and self.fabric.curve else " endpoint)"))
        if metrics is not None:
            lines.append(f"  metrics   http://{cfg.metrics.host}:{cfg.metrics.port}/metrics")
        print("\n".join(lines), file=self.out, flush=True)

    async def _watch_signals(self, scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                print(f"gateway node: {signal.Signals(signum).name}, stopping",
                      file=self.out, flush=True)
                scope.cancel()
                return

    # -- handlers (run inside each endpoint's owner task) -----------------------------------

    def _refuse(self, ep: Endpoint, err: ProtocolError) -> bytes:
        self.counters.inc(f"{ep.value}_errors.{err.code.name}")
        log.info("%s: refused: %s", ep.value, err)
        return self._codecs[ep].error_reply(err)

    def _decode(self, ep: Endpoint, frames: Sequence[bytes], dropped: int) -> Any:
        return self._codecs[ep].decode(frames, dropped)

    def _pong(self, rid: int) -> bytes:
        cfg = self.config.node
        return self._encode(wire.Pong(wire.PROTOCOL_VERSION, rid, cfg.name, cfg.region,
                                      int(time.time() * 1000)))

    def _on_ingest(self, ident: bytes, frames: Sequence[bytes], dropped: int) -> bytes | None:
        try:
            msg = self._decode(Endpoint.INGEST, frames, dropped)
        except ProtocolError as err:
            return self._refuse(Endpoint.INGEST, err)
        if isinstance(msg, wire.Ping):
            return self._pong(msg.rid)
        if self.fabric is not None:  # accounts homed elsewhere: forwarded, answered later
            routed = self.fabric.route_python(ident, msg)
            if not isinstance(routed, Local):
                return routed
        self.counters.inc("score_requests")
        decisions = self._score(msg.txs)
        return self._encode(wire.ScoreReply(wire.PROTOCOL_VERSION, msg.rid, decisions))

    def _score(self, txs: Sequence[wire.Transaction]) -> list[wire.Decision]:
        """Score on the engine (Python ingest path), count and raise alerts."""
        t0 = time.perf_counter_ns()
        decisions = self.engine.score_batch(txs)
        elapsed = time.perf_counter_ns() - t0
        self.latency.record_us(elapsed / 1000 / len(decisions))
        counters = self.counters
        counters.inc("decisions", len(decisions))
        min_score = self.config.alerts.min_score
        for tx, d in zip(txs, decisions, strict=True):
            counters.inc(f"decisions.{d.outcome.value}")
            if d.outcome is not wire.Outcome.ALLOW or (min_score and d.score >= min_score):
                self._raise_alert(tx_summary_from_transaction(tx), d, time.time_ns(),
                                  self.engine.profile(tx.account, tx.ts_ms))
        return decisions

    def _on_native_alert(self, rec: AlertRecord) -> None:
        """A risky decision reported by the native ingest thread (inproc alert record)."""
        self._raise_alert(tx_summary_from_record(rec), rec.decision, rec.decided_unix_ns,
                          rec.profile)

    def _raise_alert(self, tx: wire.TxSummary, d: wire.Decision, decided_unix_ns: int,
                     profile: wire.AccountProfile | None) -> None:
        try:
            descriptions = self.engine.rule_descriptions(d.ruleset_version)
        except RuleSetVersionNotKeptError:  # many reloads since: ids without descriptions
            descriptions = {}
        source = self.config.node.name

        def build(alert_id: int, raised_unix_ns: int) -> wire.Alert:
            return decision_alert(alert_id=alert_id, raised_unix_ns=raised_unix_ns,
                                  decided_unix_ns=decided_unix_ns, source=source, tx=tx,
                                  decision=d, profile=profile, descriptions=descriptions)

        self.desk.raise_alert(build)

    def _on_client(self, ident: bytes, frames: Sequence[bytes], dropped: int) -> bytes | None:
        try:
            msg = self._decode(Endpoint.CLIENTS, frames, dropped)
            if isinstance(msg, wire.Ping):
                return self._pong(msg.rid)
            return self.desk.on_client(ident, self.endpoints[Endpoint.CLIENTS].user_id, msg)
        except ProtocolError as err:
            return self._refuse(Endpoint.CLIENTS, err)

    def _on_service(self, ident: bytes, frames: Sequence[bytes], dropped: int) -> bytes | None:
        try:
            msg = self._decode(Endpoint.SERVICES, frames, dropped)
        except ProtocolError as err:
            return self._refuse(Endpoint.SERVICES, err)
        v = wire.PROTOCOL_VERSION
        try:
            if isinstance(msg, wire.Ping):
                return self._pong(msg.rid)
            if isinstance(msg, wire.StatusRequest):
                if self.ingest is not None:  # count every reply already sent
                    self.ingest.publish_counters(self.counters, fresh=True)
                return self._encode(wire.StatusReply(v, msg.rid, self.status_info(),
                                                     self.counters.snapshot()))
            if isinstance(msg, wire.RulesLoad):
                self._rules_load(ident, msg)
                return None
            if isinstance(msg, wire.RulesRollback):
                current = self.engine.info
                with self._engine_lent():
                    info = self.engine.rollback()
                self.counters.inc("rules_rollbacks")
                log.info("rules v%d rolled back; v%d live", current.version, info.version)
                reply = self._encode(wire.RulesLoaded(v, msg.rid, info.version, info.rules,
                                                      info.trusted_rules))
                self._journal_rules("rollback", current.version, current.filename, "",
                                    current.rules, self._service_answer(ident, reply))
                return None
            if isinstance(msg, wire.ShadowReportRequest):
                return self._encode(wire.ShadowReport(v, msg.rid, self.engine.shadow_report()))
            if isinstance(msg, wire.AlertSubmit):
                if msg.key.startswith("relay:"):  # the fabric's keys for relayed alerts
                    raise ProtocolError(ErrorCode.INVALID, "alert keys starting with "
                                        "'relay:' are reserved for relayed alerts", msg.rid)
                return self.desk.submit(ident, msg)
            if isinstance(msg, wire.KeyRegister | wire.KeyRevoke):
                self._key_change(ident, msg)
                return None
            if isinstance(msg, wire.KeyList):
                return self._encode(wire.Keys(v, msg.rid, self._key_entries()))
            if isinstance(msg, wire.WhoOnline):
                return self._encode(wire.Presence(v, msg.rid, self.desk.presence.entries()))
            if isinstance(msg, wire.TrustedUpdate | wire.TrustedGet):
                return self._trusted_fabric(ident, msg)
            if isinstance(msg, wire.TrustedLoad):
                if self._tg is None:
                    raise ProtocolError(ErrorCode.INTERNAL, "the node is stopping", msg.rid)
                self._tg.start_soon(self._trusted_load, ident, msg)
                return None
            if isinstance(msg, wire.ExecutorHello | wire.Executed | wire.IncidentsRequest
                          | wire.CasesSearch):
                if self.incidents is None:
                    raise ProtocolError(ErrorCode.INVALID, "incident response is off on this "
                                        "node (set [incident] oncall)", msg.rid)
                return self.incidents.on_service(ident, msg)
        except (RuleFileError, ProtocolError, GatewayError, OSError) as exc:
            return self._refuse_service(exc, msg.rid)
        raise AssertionError(f"unhandled service message {msg!r}")  # pragma: no cover

    def _refuse_service(self, exc: Exception, rid: int) -> bytes:
        """A services request that failed: its typed error reply (counted)."""
        if isinstance(exc, ProtocolError):
            if not exc.request_id:
                exc.request_id = rid
            return self._refuse(Endpoint.SERVICES, exc)
        if isinstance(exc, RuleFileError):
            return self._refuse(Endpoint.SERVICES,
                                ProtocolError(ErrorCode.RULES_INVALID, str(exc), rid))
        code = getattr(exc, "code", None)
        code = code if isinstance(code, ErrorCode) else ErrorCode.INVALID
        return self._refuse(Endpoint.SERVICES, ProtocolError(code, str(exc), rid))

    async def _trusted_load(self, ident: bytes, msg: wire.TrustedLoad) -> None:
        """Every line of a trusted-accounts file, read and checked in a worker thread (a
        million lines take about a second): with a fabric, placed at each account's home
        node as ``trusted_update`` does; without, this node's whole table."""
        services = self.endpoints[Endpoint.SERVICES]

        def answer(body: bytes) -> None:
            services.send_nowait(ident, body)

        try:
            table = await anyio.to_thread.run_sync(NativeTrusted.from_file, msg.path)
            if self.fabric is None:
                n = self.engine.install_trusted(table)
                self.counters.inc("trusted_loaded", n)
                answer(self._encode(wire.TrustedLoaded(wire.PROTOCOL_VERSION, msg.rid, n)))
                return
            entries = await anyio.to_thread.run_sync(trusted_entries, table)
            self.fabric.trusted_update(msg.rid, entries, answer)
        except (ProtocolError, GatewayError, OSError) as exc:
            answer(self._refuse_service(exc, msg.rid))

    def _key_entries(self, public_key: str | None = None) -> list[wire.KeyEntry]:
        return [wire.KeyEntry(r.officer, r.public_key, r.label, r.registered_ms, r.revoked_ms)
                for r in self.desk.keys.records()
                if public_key is None or r.public_key == public_key]

    def _key_change(self, ident: bytes, msg: wire.KeyRegister | wire.KeyRevoke) -> None:
        """Register or revoke a key; answered (with the key's entry) once journaled."""
        services = self.endpoints[Endpoint.SERVICES]
        key = msg.public_key

        def answer() -> None:
            services.send_nowait(ident, self._encode(
                wire.Keys(wire.PROTOCOL_VERSION, msg.rid, self._key_entries(key))))

        if isinstance(msg, wire.KeyRegister):
            self.desk.register_key(msg.officer, key, msg.label, on_durable=answer)
        else:
            self.desk.revoke_key(key, on_durable=answer)
    def _trusted_fabric(self, ident: bytes, msg: wire.TrustedUpdate | wire.TrustedGet,
                        ) -> bytes | None:
        """Trusted data placed at each account's home node (gateway.fabric_node); changes
        are answered once stored and in this node's scoring."""
        if self.fabric is None:
            raise ProtocolError(ErrorCode.INVALID, f"{type(msg).__name__}: this node has no "
                                "fabric (set fabric.bind, and fabric.peers for other regions)",
                                msg.rid)
        if isinstance(msg, wire.TrustedGet):
            return self.fabric.trusted_levels(msg.rid, msg.accounts)
        services = self.endpoints[Endpoint.SERVICES]

        def answer(body: bytes) -> None:
            services.send_nowait(ident, body)

        self.fabric.trusted_update(msg.rid, [(e.account, e.level) for e in msg.entries],
                                   answer)
        return None

    def _freeze(self, account: int, frozen: bool) -> None:
        """An approved freeze (or unfreeze) in this node's scoring: the account's next
        payment is decided frozen, on the native ingest thread too."""
        if frozen:
            self.engine.freeze_account(account)
        else:
            self.engine.unfreeze_account(account)

    @contextlib.contextmanager
    def _engine_lent(self) -> Iterator[ScoringEngine]:
        """The engine; while native ingest runs, its scoring is paused for the block
        (producers get `busy` meanwhile) and the live rule ids are registered on exit."""
        if self.ingest is not None and self.ingest.running:
            with self.ingest.handover() as engine:
                yield engine
        else:
            yield self.engine

    def _service_answer(self, ident: bytes, body: bytes) -> Callable[[], None]:
        services = self.endpoints[Endpoint.SERVICES]
        return lambda: services.send_nowait(ident, body)

    def _rules_load(self, ident: bytes, msg: wire.RulesLoad) -> None:
        """Compile and install (live or shadow) at once; answered once the set is kept."""
        version = self._rules_version + 1
        if msg.shadow:
            info = self.engine.load_shadow(msg.source, msg.filename, version=version)
            self.counters.inc("rules_shadow_loads")
        else:
            if self.ingest is not None:  # decisions of the new version name their rules
                self.ingest.register_rule_ids(version, parse_rules(msg.source, msg.filename).ids)
            info = self.engine.load_rules(msg.source, msg.filename, version=version)
            self.counters.inc("rules_loads")
        self._rules_version = version  # taken only by a set that compiled
        log.info("rules %s v%d loaded (%d rules)%s", msg.filename, info.version, info.rules,
                 " as shadow" if msg.shadow else "")
        reply = self._encode(wire.RulesLoaded(wire.PROTOCOL_VERSION, msg.rid, info.version,
                                              info.rules, info.trusted_rules, msg.shadow))
        self._journal_rules("shadow" if msg.shadow else "live", version, msg.filename,
                            msg.source, info.rules, self._service_answer(ident, reply))

    def status_info(self) -> dict[str, str]:
        cfg = self.config.node
        info = self.engine.info
        out = {
            "node": cfg.name,
            "region": cfg.region,
            "version": __version__,
            "pid": str(os.getpid()),
            "uptime_s": f"{time.time() - self.started:.1f}",
            "rules": f"{info.filename} v{info.version} ({info.rules} rules)",
            "score_p50_us": f"{self.latency.percentile_us(0.5):.2f}",
            "score_p99_us": f"{self.latency.percentile_us(0.99):.2f}",
            "ingest": "native" if self.ingest is not None else "python",
        }
        if self.ingest is not None:  # service time of one request in the native thread
            c = self.ingest.counters()
            out["score_p50_us"] = f"{c['ingest_service_p50_ns_now'] / 1000:.2f}"
            out["score_p99_us"] = f"{c['ingest_service_p99_ns_now'] / 1000:.2f}"
        for ep, url in self.urls.items():
            out[f"endpoint.{ep.value}"] = url
        out["clients_server_key"] = self.server_keys.public
        out.update(self.desk.status())
        if self.incidents is not None:
            out.update(self.incidents.status())
        if self.fabric is not None:
            out.update(self.fabric.status_info())
        return out


__all__ = ["Node"]
