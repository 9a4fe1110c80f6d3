"""Commands packed by hiredis and sent in one write, against the real Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from redis.exceptions import ResponseError

from tradepulse.adapters.redis_packed import SEND_BYTES, as_dict, execute_packed


def test_execute_packed_replies_in_order_with_errors_as_values(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    key, text = f"{redis_prefix}hash", f"{redis_prefix}text"
    replies = execute_packed(redis_client, [
        ("HSET", key, "a", 1, "b", b"two"),
        ("SET", text, "x"),
        ("HINCRBY", text, "f", 1),  # wrong type: an error reply, the batch goes on
        ("HGETALL", key),
    ])  # fmt: skip
    assert replies[:2] == [2, b"OK"]  # raw replies: no redis-py response callbacks
    assert isinstance(replies[2], ResponseError) and "WRONGTYPE" in str(replies[2])
    assert as_dict(replies[3]) == {b"a": b"1", b"b": b"two"}


def test_execute_packed_after_an_error_reply_leaves_the_connection_in_step(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    key = f"{redis_prefix}n"
    first = execute_packed(redis_client, [("EVALSHA", "0" * 40, 0), ("SET", key, 5)])
    assert isinstance(first[0], ResponseError)
    assert execute_packed(redis_client, [("INCR", key)]) == [6]
    assert redis_client.get(key) == b"6"


def test_execute_packed_unreachable_redis_raises_connection_error() -> None:
    client = redis.Redis(port=1, socket_connect_timeout=1)  # nothing listens on port 1
    with pytest.raises(redis.ConnectionError):
        execute_packed(client, [("PING",)])


def test_execute_packed_of_a_generator_sends_the_first_commands_while_building_the_rest(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    """Redis has run the first commands before the generator yields its last: seen from
    another connection while the generator is still being read."""
    first, counter = f"{redis_prefix}first", f"{redis_prefix}counter"
    filler = b"x" * 1000
    seen_early: list[bytes | None] = []
    watcher = redis.Redis(connection_pool=redis.ConnectionPool(
        **redis_client.connection_pool.connection_kwargs))  # fmt: skip

    def commands() -> Iterator[tuple[object, ...]]:
        yield ("SET", first, "early")
        for i in range(2 * SEND_BYTES // len(filler) + 2):  # more than two sends' worth
            yield ("SET", f"{redis_prefix}fill{i}", filler)
        deadline = time.monotonic() + 5
        while (value := watcher.get(first)) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        seen_early.append(value)
        yield ("INCR", counter)

    sent: list[tuple[object, ...]] = []
    try:
        replies = execute_packed(redis_client, commands(), sent)
    finally:
        watcher.close()
        watcher.connection_pool.disconnect()  # a pool handed in is not closed by the client
    assert seen_early == [b"early"]
    assert len(sent) == len(replies) and sent[0] == ("SET", first, "early")
    assert replies[0] == b"OK" and replies[-1] == 1 and set(replies[1:-1]) == {b"OK"}
