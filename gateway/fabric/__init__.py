"""The regional fabric's protocol core: directory, link liveness, forwarding, placement.

This package does no I/O (it reads a directory ``table_file`` when told to) and never
waits: time is passed in, sockets and the database belong to the shell
(``gateway.fabric_node``, ``gateway.fabric_store``). Each part is a small state machine
tested without an event loop:

- :mod:`~gateway.fabric._directory`: which region is each account's home;
- :mod:`~gateway.fabric._link`: heartbeats and dead-link detection per peer;
- :mod:`~gateway.fabric._forward`: forwarded requests (origin) and their dedup (home);
- :mod:`~gateway.fabric._placement`: trusted-data placement, snapshot plus increments;
- :mod:`~gateway.fabric._relay`: alerts relayed to the officers of other regions;
- :mod:`~gateway.fabric._codec`: the fabric endpoint's strict codec.
"""

from __future__ import annotations

from gateway.fabric._codec import FABRIC_TAGS, FabricCodec, FabricReplyCodec
from gateway.fabric._directory import (
    Directory,
    build_directory,
    check_fabric_config,
    fabric_curve,
    fabric_enabled,
    jump_hash,
    mix64,
    relay_regions,
)
from gateway.fabric._forward import (
    CONTROL_RID_BASE,
    Complete,
    ForwardAction,
    ForwardDedup,
    ForwardSettings,
    ForwardTable,
    Policy,
    Refuse,
    Seen,
    SendForward,
)
from gateway.fabric._link import (
    LinkAction,
    LinkDown,
    LinkState,
    LinkUp,
    PeerLink,
    SendHello,
    SendPing,
)
from gateway.fabric._placement import (
    Outbox,
    PlacementAction,
    PlacementReceiver,
    PlacementSender,
    PutRejected,
    PutResult,
    SenderState,
    SendPut,
    SendSync,
    collapse,
)
from gateway.fabric._relay import (
    RelayItem,
    RelayOutbox,
    RelayReceiver,
    RelaySender,
    RelayStream,
    SendRelay,
    relay_key,
)

__all__ = [
    "CONTROL_RID_BASE",
    "FABRIC_TAGS",
    "Complete",
    "Directory",
    "FabricCodec",
    "FabricReplyCodec",
    "ForwardAction",
    "ForwardDedup",
    "ForwardSettings",
    "ForwardTable",
    "LinkAction",
    "LinkDown",
    "LinkState",
    "LinkUp",
    "Outbox",
    "PeerLink",
    "PlacementAction",
    "PlacementReceiver",
    "PlacementSender",
    "Policy",
    "PutRejected",
    "PutResult",
    "Refuse",
    "RelayItem",
    "RelayOutbox",
    "RelayReceiver",
    "RelaySender",
    "RelayStream",
    "Seen",
    "SendForward",
    "SendHello",
    "SendPing",
    "SendPut",
    "SendRelay",
    "SendSync",
    "SenderState",
    "build_directory",
    "check_fabric_config",
    "collapse",
    "fabric_curve",
    "fabric_enabled",
    "jump_hash",
    "mix64",
    "relay_key",
    "relay_regions",
]
