"""A batch applied column-wise by the pipeline (against the real Redis) ends in the state
that applying its messages one at a time gives: each message decoded alone, each bad one
dead-lettered with its own reason, each good trade observed by the clock and added to the
windows at the clock's time right after it, and each applied trade added to its token's
bars. The one-at-a-time reference is written out here with the core's per-trade calls."""

from __future__ import annotations

import random
from collections import Counter

import msgspec
import redis

from tests.unit.test_wire import BAD
from tradepulse.adapters.kafka import ConsumedMessage, MessageBatch
from tradepulse.adapters.redis_store import RedisStore
from tradepulse.adapters.wire import decode_trade
from tradepulse.core.bars import BarBuilder
from tradepulse.core.clock import EventClock
from tradepulse.core.errors import InvalidTradeError
from tradepulse.core.market import Market
from tradepulse.core.windows import DEFAULT_WINDOWS, AddResult, parse_windows
from tradepulse.service.pipeline import Pipeline

MIN = 60_000
T0 = 1_760_000_000_000 - 1_760_000_000_000 % MIN
NOW = T0 + 30 * MIN  # wall clock: every trade below is in its past
SPECS = parse_windows(DEFAULT_WINDOWS)


class RecordedDeadLetters:
    def __init__(self) -> None:
        self.sent: list[tuple[int, int, bytes | None, bytes, str, str]] = []

    def send(self, msg: ConsumedMessage, reason: str, detail: str, at_ms: int) -> None:
        self.sent.append((msg.partition, msg.offset, msg.key, msg.value, reason, detail))

    def flush(self, timeout_s: float = 0.0) -> int:
        return 0


def messages(seed: int) -> list[ConsumedMessage]:
    """Trades of 6 tokens on 3 partitions (each 10 minutes behind the one before) over 8
    minutes, some out of order, resent or late (over an hour old), with every kind of bad
    message mixed in."""
    rnd = random.Random(seed)
    out: list[ConsumedMessage] = []
    offsets = [0, 0, 0]
    bad = [raw for raw, _ in BAD]
    clock = T0
    for i in range(1_500):
        token = f"TOK{rnd.randrange(6)}"
        partition = int(token[-1]) % 3
        clock += rnd.choice([0, 5, 200, 900])
        if rnd.random() < 0.03:
            value = rnd.choice(bad)
        else:
            ts = clock - partition * 600_000 - rnd.choice([0] * 8 + [3_000, 70_000, 4_000_000])
            tx = f"tx{rnd.randrange(i - 20, i + 1) if rnd.random() < 0.1 else i}"  # resends
            value = msgspec.json.encode({
                "token": token, "wallet": f"w{rnd.randrange(40)}",
                "sell_buy": rnd.choice(["buy", "sell", "SELL"]),
                "native_amount": rnd.choice([0, 0.25, 3.5]),
                "token_amount": rnd.choice([1e-3, 2.0, 7.5e6]),
                "price_usd": rnd.uniform(1e-7, 2e-6), "trans_time": ts, "tx_hash": tx,
            })  # fmt: skip
        out.append(ConsumedMessage(partition, offsets[partition], token.encode(), value))
        offsets[partition] += 1
    return out


def test_mixed_batch_equals_one_message_at_a_time(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    batch = messages(seed=5)
    dead = RecordedDeadLetters()
    pipeline = Pipeline(Market(SPECS), EventClock(), RedisStore(redis_client, prefix=redis_prefix),
                        dead, wall_ms=lambda: NOW)  # fmt: skip
    pipeline.assign([0, 1, 2])
    applied = pipeline.apply(MessageBatch.of(batch))

    # The reference: one message at a time.
    clock, market = EventClock((0, 1, 2)), Market(SPECS)
    bars: dict[str, BarBuilder] = {}
    rejected: list[tuple[int, int, bytes | None, bytes, str, str]] = []
    next_offsets: dict[int, int] = {}
    tokens = set()
    for msg in batch:
        next_offsets[msg.partition] = msg.offset + 1
        try:
            trade = decode_trade(msg.value, NOW)
        except InvalidTradeError as exc:
            rejected.append((msg.partition, msg.offset, msg.key, msg.value, exc.reason,
                             exc.detail))  # fmt: skip
            continue
        tokens.add(trade.token)
        clock.observe(msg.partition, trade.ts_ms)
        if market.add(trade, clock.now_ms()) is AddResult.APPLIED:
            builder = bars.setdefault(trade.token, BarBuilder(trade.token, horizon_ms=60 * MIN))
            builder.add(trade)

    assert len(rejected) > 20 and market.duplicates > 10 and market.late > 10
    assert dead.sent == rejected
    assert pipeline.rejected == Counter(reason for *_, reason, _ in rejected)
    assert (applied.next_offsets, applied.tokens) == (next_offsets, tokens)
    assert list(applied.next_offsets) == list(next_offsets)
    assert (pipeline.market.applied, pipeline.market.duplicates, pipeline.market.late) == (
        market.applied, market.duplicates, market.late
    )  # fmt: skip
    assert (pipeline.clock.now_ms(), pipeline.clock.partitions) == (clock.now_ms(),
                                                                    clock.partitions)  # fmt: skip
    assert sorted(pipeline.market.tokens) == sorted(market.tokens)
    at = clock.now_ms()
    for token, windows in market.tokens.items():
        mine = pipeline.market.tokens[token]
        assert mine.stats(at) == windows.stats(at)
        assert mine.retained_trades() == windows.retained_trades()
    assert sorted(pipeline.bars) == sorted(bars)
    for token, builder in bars.items():
        assert pipeline.bars[token].builder.bars() == builder.bars()
        assert pipeline.bars[token].builder.snapshot() == builder.snapshot()

    # A retry of the batch changes nothing and dead-letters nothing twice.
    again = pipeline.apply(MessageBatch.of(batch))
    assert dead.sent == rejected and again.next_offsets == next_offsets
    assert pipeline.market.applied == market.applied

    # Mirrored in Redis: every token's list holds its retained trades.
    pipeline.write(applied)
    store = RedisStore(redis_client, prefix=redis_prefix)
    for token, windows in market.tokens.items():
        assert store.read_trades(token)[1] == windows.retained_trades()
    assert store.partition_tokens([0, 1, 2]) == {t: int(t[-1]) % 3 for t in market.tokens}
