"""Link liveness without an event loop: heartbeats, dead-link detection within 5 s,
refusal and restart of the peer."""

from __future__ import annotations

from gateway.fabric import LinkDown, LinkState, LinkUp, PeerLink, SendHello, SendPing


def run(link: PeerLink, start: float, end: float, step: float = 0.25) -> list[tuple[float, object]]:
    out = []
    t = start
    while t <= end + 1e-9:
        out += [(t, a) for a in link.tick(t)]
        t += step
    return out


def test_hello_until_welcome_then_pings() -> None:
    link = PeerLink("us", heartbeat_s=1.0, dead_after_s=3.0, now=0.0)
    events = run(link, 0.0, 2.0)
    assert [a for _, a in events] == [SendHello(), SendHello(), SendHello()]
    assert link.on_welcome(42, "us-1", 2.1) == [LinkUp(restarted=False)]
    assert link.up
    link.on_heard(2.5)
    pings = [t for t, a in run(link, 2.25, 5.0) if isinstance(a, SendPing)]
    assert pings == [3.25, 4.25]


def test_silent_peer_is_down_within_5_seconds() -> None:
    link = PeerLink("us", heartbeat_s=1.0, dead_after_s=3.0, now=0.0)
    link.on_welcome(1, "us-1", 0.0)
    last_heard = 10.0
    for t in (0.5, 1.5, 2.5, 5.0, 7.5, 10.0):
        link.tick(t)
        link.on_heard(t)
    assert link.up
    events = run(link, 10.0, 16.0)
    downs = [(t, a) for t, a in events if isinstance(a, LinkDown)]
    assert len(downs) == 1
    t, down = downs[0]
    assert down.reason == "silent" and 3.0 <= t - last_heard <= 5.0
    assert link.state is LinkState.DOWN
    hellos = [h for h, a in events if isinstance(a, SendHello)]
    assert hellos == [t, t + 1, t + 2, t + 3]  # then one per heartbeat while down


def test_refused_and_restarted_peer() -> None:
    link = PeerLink("us", heartbeat_s=1.0, dead_after_s=3.0, now=0.0)
    link.on_welcome(1, "us-1", 0.0)
    actions = link.on_refused(0.5)
    assert isinstance(actions[0], LinkDown) and actions[0].reason == "refused"
    assert actions[1] == SendHello()
    assert link.on_welcome(2, "us-1", 0.6) == [LinkUp(restarted=True)]
    assert link.on_welcome(2, "us-1", 0.7) == []  # a repeated welcome changes nothing
    assert link.on_welcome(3, "us-1", 0.8) == [LinkUp(restarted=True)]
    assert link.ups == 3 and link.downs == 1
