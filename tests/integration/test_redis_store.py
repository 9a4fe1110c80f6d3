"""The Redis store against the real Redis: the mirror follows the engine exactly."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import msgspec
import redis

from tradepulse.adapters.redis_store import RedisStore, StoredTrade, TokenUpdate
from tradepulse.core.trade import Trade
from tradepulse.core.windows import TokenWindows, parse_windows

SPECS = parse_windows("1min,5min,1hour")
T0 = 1_750_000_000_000


def trades(n: int, seed: int = 1, token: str = "TOKEN") -> list[Trade]:
    """A stream over ~3 hours: mostly in order, some out of order (up to 10 min back)."""
    rnd = random.Random(seed)
    out, t = [], T0
    for i in range(n):
        t += rnd.choice([100, 2_000, 15_000])
        ts = t - (rnd.randrange(600_000) if rnd.random() < 0.05 else 0)
        amount = rnd.uniform(1, 1e4)
        price = rnd.uniform(1e-6, 1e-3)
        out.append(Trade(token, f"w{rnd.randrange(50)}", rnd.random() < 0.5, 0.1, amount,
                         price, amount * price, ts, f"tx{i}", 0))  # fmt: skip
    return out


def sync(store: RedisStore, tw: TokenWindows, t_ms: int, token: str = "TOKEN") -> None:
    stats = tw.stats(t_ms)
    update = TokenUpdate(token, tw.sync_view(), stats, tw.newest_ms, t_ms)
    if store.write([update]):
        full = TokenUpdate(token, tw.sync_view(full=True), stats, tw.newest_ms, t_ms)
        assert store.write([full]) == []
    tw.mark_synced()


def assert_mirrors(store: RedisStore, tw: TokenWindows, token: str = "TOKEN") -> None:
    base, stored = store.read_trades(token)
    assert stored == tw.retained_trades()
    view = tw.sync_view()
    assert base == view.head
    assert store.read_stats(token) == tw.stats(tw.t_ms)


def test_mirror_follows_appends_trims_and_out_of_order_rewrites(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    store = RedisStore(redis_client, prefix=redis_prefix)
    tw = TokenWindows(SPECS)
    for i, tr in enumerate(trades(1_500)):
        tw.add(tr, tr.ts_ms)
        if i % 37 == 0:
            sync(store, tw, tr.ts_ms)
            assert_mirrors(store, tw)
    indices = redis_client.hgetall(store.keys("TOKEN")[1])
    view = tw.sync_view()
    assert {k.decode(): int(v) for k, v in indices.items()} == {"base": view.head, **view.starts}


def test_lost_data_is_detected_and_resent_in_full(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    store = RedisStore(redis_client, prefix=redis_prefix)
    tw = TokenWindows(SPECS)
    stream = trades(300, seed=2)
    for tr in stream[:200]:
        tw.add(tr, tr.ts_ms)
    sync(store, tw, stream[199].ts_ms)
    redis_client.delete(*store.keys("TOKEN"))  # Redis lost the token
    for tr in stream[200:]:
        tw.add(tr, tr.ts_ms)
    stats = tw.stats(stream[-1].ts_ms)
    gap = store.write([TokenUpdate("TOKEN", tw.sync_view(), stats, tw.newest_ms, 0)])
    assert gap == ["TOKEN"]
    assert store.read_trades("TOKEN") == (0, [])  # nothing half-written
    assert (
        store.write([TokenUpdate("TOKEN", tw.sync_view(full=True), stats, tw.newest_ms, 0)]) == []
    )
    tw.mark_synced()
    assert_mirrors(store, tw)


def test_keys_have_the_ttl_and_the_active_index(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    store = RedisStore(redis_client, prefix=redis_prefix, ttl_s=3600)
    tws = {}
    for name in ("A", "B"):
        tws[name] = TokenWindows(SPECS)
        for tr in trades(50, seed=3, token=name):
            tws[name].add(tr, tr.ts_ms)
    stats = {n: tw.stats(tw.newest_ms) for n, tw in tws.items()}  # evaluate, then view
    updates = [TokenUpdate(n, tw.sync_view(), stats[n], tw.newest_ms, T0)
               for n, tw in tws.items()]  # fmt: skip
    assert store.write(updates) == []
    for name, tw in tws.items():
        keys = store.keys(name)
        assert all("{" + name + "}" in k for k in keys)  # one cluster slot per token
        assert [redis_client.type(k) for k in keys] == [b"list", b"hash", b"hash", b"string"]
        assert all(3590 <= redis_client.ttl(k) <= 3600 for k in keys)
        assert redis_client.zscore(store.active_key, name) == tw.newest_ms
    assert redis_client.get(store.keys("A")[3]) == b"2025-06-15T15:06:40.000+00:00"


def test_token_rebuilt_from_redis_has_the_same_statistics(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    store = RedisStore(redis_client, prefix=redis_prefix)
    tw = TokenWindows(SPECS)
    stream = trades(800, seed=4)
    for i, tr in enumerate(stream):
        tw.add(tr, tr.ts_ms)
        if i % 50 == 0:
            sync(store, tw, tr.ts_ms)
    sync(store, tw, stream[-1].ts_ms)
    rebuilt = store.load("TOKEN", SPECS)
    assert rebuilt is not None
    assert rebuilt.stats(tw.t_ms) == tw.stats(tw.t_ms)
    more = trades(900, seed=4)[800:]  # both continue identically
    for tr in more:
        tw.add(tr, tr.ts_ms)
        rebuilt.add(tr, tr.ts_ms)
    assert rebuilt.stats(more[-1].ts_ms) == tw.stats(more[-1].ts_ms)
    assert store.load("NOPE", SPECS) is None


def test_reader_never_sees_aggregates_and_last_update_of_different_writes(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    store = RedisStore(redis_client, prefix=redis_prefix)
    tw = TokenWindows(SPECS)
    stream = trades(400, seed=5)
    agg_key, last_key = store.keys("TOKEN")[2], store.keys("TOKEN")[3]
    mismatches: list[tuple[bytes, bytes]] = []
    done = threading.Event()

    def reader() -> None:
        reads = 0
        while not done.is_set() or reads < 50:
            pipe = redis_client.pipeline(transaction=True)
            pipe.hget(agg_key, "1min")
            pipe.get(last_key)
            agg, last = pipe.execute()
            reads += 1
            if agg is not None and last is not None:
                updated = int(agg.split(b'"updated_ms":')[1].split(b",")[0].rstrip(b"}"))
                if last != store_time(updated):
                    mismatches.append((agg[-40:], last))

    def store_time(ms: int) -> bytes:
        from tradepulse.adapters.redis_store import _rfc3339

        return _rfc3339(ms).encode()

    thread = threading.Thread(target=reader)
    thread.start()
    for tr in stream:
        tw.add(tr, tr.ts_ms)
        stats = tw.stats(tr.ts_ms)
        # last_update is written as the evaluation time, so each pair can be checked
        assert (
            store.write([TokenUpdate("TOKEN", tw.sync_view(), stats, tw.newest_ms, tw.t_ms)]) == []
        )
        tw.mark_synced()
    done.set()
    thread.join(timeout=30)
    assert mismatches == []


def test_watermarks_round_trip_with_a_batch(redis_client: redis.Redis, redis_prefix: str) -> None:
    store = RedisStore(redis_client, prefix=redis_prefix)
    tw = TokenWindows(SPECS)
    for tr in trades(20, seed=6):
        tw.add(tr, tr.ts_ms)
    stats = tw.stats(tw.newest_ms)
    assert store.read_watermarks() == {}
    store.write([TokenUpdate("TOKEN", tw.sync_view(), stats, tw.newest_ms, 0)], {0: 5, 3: 7})
    store.write([], {3: 9})
    assert store.read_watermarks() == {0: 5, 3: 9}


def test_write_publishes_the_batch_tokens_once_on_stats_updated(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    store = RedisStore(redis_client, prefix=redis_prefix)
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    pubsub.subscribe(f"{redis_prefix}stats.updated")
    pubsub.get_message(timeout=1)  # the subscription is active from here on
    updates = []
    for token in ("AAA", "BBB", "CCC"):
        tw = TokenWindows(SPECS)
        for trade in trades(5, token=token):
            tw.add(trade, trade.ts_ms)
        updates.append(TokenUpdate(token, tw.sync_view(), tw.stats(tw.t_ms), tw.newest_ms, tw.t_ms))
    assert store.write(updates) == []
    assert store.write([]) == []
    messages = []
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.05)
        if message is not None:
            messages.append(message["data"])
    pubsub.close()
    assert messages == [b"AAA\nBBB\nCCC"]


def test_a_connection_lost_while_the_batch_is_being_sent_sends_all_of_it_again(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    """The updates come from a generator and the first ones are already sent when the
    connection is killed: the store builds the rest, sends the whole batch on a new
    connection, and every token is mirrored exactly."""
    name = f"tp-test-{redis_prefix[-13:-1]}"
    kwargs = {**redis_client.connection_pool.connection_kwargs, "client_name": name}
    client = redis.Redis(connection_pool=redis.ConnectionPool(**kwargs))
    store = RedisStore(client, prefix=redis_prefix)
    tws = {}
    for i in range(60):
        tw = tws[f"T{i:02d}"] = TokenWindows(SPECS)
        for trade in trades(40, seed=i, token=f"T{i:02d}"):
            tw.add(trade, trade.ts_ms)
    stats = {n: tw.stats(tw.newest_ms) for n, tw in tws.items()}  # evaluate, then view
    updates = [TokenUpdate(n, tw.sync_view(), stats[n], tw.newest_ms, tw.t_ms)
               for n, tw in tws.items()]  # fmt: skip
    kills = []

    def built() -> Iterator[TokenUpdate]:
        for i, update in enumerate(updates):
            if i == 40 and not kills:  # well past the first send (SEND_BYTES)
                ids = [c["id"] for c in redis_client.client_list() if c.get("name") == name]
                kills.extend(redis_client.execute_command("CLIENT", "KILL", "ID", id_)
                             for id_ in ids)  # fmt: skip
            yield update

    try:
        assert store.write(built()) == []
        assert kills and all(kills)
        for token, tw in tws.items():
            tw.mark_synced()
            assert_mirrors(store, tw, token)  # reads through ``client``: closed after
            assert redis_client.zscore(store.active_key, token) == tw.newest_ms
    finally:
        client.close()
        client.connection_pool.disconnect()  # a pool handed in is not closed by the client


def test_each_list_item_is_the_stored_trade_array_of_its_trade(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    """§5: one JSON array ``[ts_ms, wallet, is_buy, native, token_amount, price, tx_hash,
    event_index]`` per trade, whatever the strings and magnitudes."""
    store = RedisStore(redis_client, prefix=redis_prefix)
    tw = TokenWindows(SPECS)
    odd = [("w\"q\\uote", 1e-300, 5e-324), ("wallet ünïcode ✓", 1e300, 1.0),
           ("w,[]\u2028", 0.1 + 0.2, 123456789.123456789)]  # fmt: skip
    sent = []
    for i, (wallet, amount, price) in enumerate(odd * 3):
        sent.append(Trade("TOKEN", wallet, i % 2 == 0, float(i) / 7, amount, price,
                          amount * price, T0 + i, f"tx-{i}\"", i))  # fmt: skip
        tw.add(sent[-1], sent[-1].ts_ms)
    sync(store, tw, T0 + 10)
    items = redis_client.lrange(store.keys("TOKEN")[0], 0, -1)
    assert items == [
        msgspec.json.encode(StoredTrade(t.ts_ms, t.wallet, t.is_buy, t.native_amount,
                                        t.token_amount, t.price_usd, t.tx_hash, t.event_index))
        for t in sent
    ]  # fmt: skip


def test_the_write_script_is_called_with_the_keys_the_store_reads(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    """The script's keys, in the order the script reads them, are the ones ``keys``,
    ``bar_keys``, ``scan_key`` and the streams' properties name (what the readers use)."""
    store = RedisStore(redis_client, prefix=redis_prefix)
    tw = TokenWindows(SPECS)
    for tr in trades(5, token="K{1}"):
        tw.add(tr, tr.ts_ms)
    update = TokenUpdate("K{1}", tw.sync_view(), tw.stats(tw.newest_ms), tw.newest_ms, T0)
    command = next(store._commands([update], None, []))
    assert command[:3] == ("EVALSHA", store._sha, 10)
    assert command[3:13] == (*store.keys("K{1}"), *store.bar_keys("K{1}"),
                             store.bars_stream_key, store.scan_key("K{1}"),
                             store.alerts_key)  # fmt: skip
