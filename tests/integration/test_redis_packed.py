"""Commands packed by hiredis and sent in one write, against the real Redis."""

from __future__ import annotations

import pytest
import redis
from redis.exceptions import ResponseError

from tradepulse.adapters.redis_packed import as_dict, execute_packed


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
