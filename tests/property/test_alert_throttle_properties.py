"""``AlertThrottle`` (``min_interval_s`` of the alert preferences) against an oracle written
from its definition: alerts asked in order, an alert is delivered when no delivered alert
of the same (rule, token) was triggered less than the interval before it. The oracle keeps
every delivered alert; the throttle keeps one time per pair and forgets old pairs, which
must not change an answer (streams use up to 3,000 pairs so that forgetting happens)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tradepulse.core.profiles import AlertThrottle

T0 = 1_750_000_000_000


def oracle(alerts: list[tuple[str, str, int]], interval_ms: int) -> list[bool]:
    delivered: dict[tuple[str, str], list[int]] = {}
    out = []
    for rule, token, t in alerts:
        sent = delivered.setdefault((rule, token), [])
        ok = interval_ms <= 0 or all(t - s >= interval_ms for s in sent)
        if ok:
            sent.append(t)
        out.append(ok)
    return out


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[tuple[str, str, int]], int]:
    """Alerts in trigger-time order (the order one worker emits a pair's alerts)."""
    interval_ms = draw(st.sampled_from([0, 1, 1_000, 60_000, 86_400_000]))
    pairs = draw(st.integers(1, 3_000))
    steps = draw(st.lists(st.tuples(st.integers(0, pairs - 1), st.integers(0, 90_000)),
                          min_size=1, max_size=400))  # fmt: skip
    t, alerts = T0, []
    for pair, gap in steps:
        t += gap
        alerts.append((f"rule{pair % 7}", f"TOK{pair}", t))
    return alerts, interval_ms


@settings(max_examples=300, deadline=None)
@given(streams())
def test_throttle_delivers_what_the_definition_does(
    stream: tuple[list[tuple[str, str, int]], int],
) -> None:
    alerts, interval_ms = stream
    throttle = AlertThrottle()
    got = [throttle.admit(rule, token, t, interval_ms) for rule, token, t in alerts]
    assert got == oracle(alerts, interval_ms)


def test_throttle_forgets_pairs_an_interval_old_but_keeps_its_answers() -> None:
    throttle = AlertThrottle()
    minute = 60_000
    for i in range(5_000):  # one new pair per second: 60 pairs within any interval
        assert throttle.admit("r", f"TOK{i}", T0 + i * 1_000, minute)
    assert len(throttle) <= 1_024
    assert not throttle.admit("r", "TOK4999", T0 + 4_999_000 + minute - 1, minute)
    assert throttle.admit("r", "TOK4999", T0 + 4_999_000 + minute, minute)


def test_an_older_alert_inside_the_interval_of_a_delivered_one_is_refused() -> None:
    throttle = AlertThrottle()
    assert throttle.admit("r", "A", T0 + 50_000, 60_000)
    assert not throttle.admit("r", "A", T0 + 10_000, 60_000)  # arrived late, 40 s before
    assert throttle.admit("r", "A", T0 - 20_000, 60_000)  # 70 s before: its own interval
    assert not throttle.admit("r", "A", T0 + 100_000, 60_000)  # 50 s after the newest
