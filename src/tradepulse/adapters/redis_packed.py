"""A batch of Redis commands packed into one buffer and sent in one write.

The worker's per-batch write holds one script call of ~45 arguments per token; redis-py's
pipeline checks and converts every argument in Python before handing each command to hiredis
(~11 µs per command, against ~4 µs for ``hiredis.pack_command`` alone). The commands here are
plain tuples of ``str``, ``bytes`` and ``int``, so they are packed as they are: by the compiled
``_resp.pack_command`` (hiredis's bytes, without the ``sprintf`` hiredis spends on each
argument's length: ~30,000 instructions per script call down to a few thousand) or, where it
was not built, by hiredis. The replies are read on the same connection, every one of them,
so the connection never holds a reply of another batch.

The commands may come from an iterator that builds them (``execute_packed`` of a generator):
they are then sent as they come, about every ``SEND_BYTES`` of packed commands, so Redis runs
the first ones while the later ones are still being built, and only the last part of the
batch is waited for. Every command is read before any reply: a reply waits in Redis's output
buffer and the socket (a few bytes per script call) until the batch has been sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import hiredis
import redis
from redis.exceptions import ResponseError

#: Packed bytes gathered before each send while the commands are being built.
SEND_BYTES = 32 * 1024


def _packer() -> Callable[[tuple[Any, ...]], bytes]:
    """The compiled packer (``_resp.pack_command``: hiredis's bytes without its per-argument
    ``sprintf``) where it was built, else ``hiredis.pack_command``."""
    try:
        from tradepulse.adapters._resp import pack_command
    except ImportError:  # installed without a C compiler
        return hiredis.pack_command
    return pack_command


pack_command = _packer()
#: Which packer runs: "compiled" or "hiredis" (the worker's ``/performance``).
PACKER = "hiredis" if pack_command is hiredis.pack_command else "compiled"


def execute_packed(
    client: redis.Redis,
    commands: Iterable[tuple[Any, ...]],
    sent: list[tuple[Any, ...]] | None = None,
) -> list[Any]:
    """Send ``commands`` (in writes of about ``SEND_BYTES``, each as soon as it is packed)
    and read their replies in order. ``sent``, when given, receives every command taken from
    ``commands``, so that a caller handing a generator can send the same batch again. An
    error reply is returned as its ``ResponseError`` (as a pipeline that does not raise); a
    transport failure raises ``redis.ConnectionError`` or ``redis.TimeoutError`` (the
    connection is then dropped, the next call opens another)."""
    taken: list[tuple[Any, ...]] = [] if sent is None else sent
    pool = client.connection_pool
    connection = pool.get_connection()
    try:
        pack = pack_command
        parts: list[bytes] = []
        size = 0
        for command in commands:
            taken.append(command)
            packed = pack(command)
            parts.append(packed)
            size += len(packed)
            if size >= SEND_BYTES:
                connection.send_packed_command([b"".join(parts)])  # type: ignore[no-untyped-call]
                parts, size = [], 0
        if parts:
            connection.send_packed_command([b"".join(parts)])  # type: ignore[no-untyped-call]
        replies: list[Any] = []
        for _ in taken:
            try:
                replies.append(connection.read_response())
            except ResponseError as exc:  # the reply was read: the connection is in step
                replies.append(exc)
        return replies
    except BaseException:
        connection.disconnect()  # type: ignore[no-untyped-call]
        raise
    finally:
        pool.release(connection)


def as_dict(reply: Any) -> dict[Any, Any]:
    """A hash reply (``HGETALL``): a flat list of fields and values in RESP2, a map in RESP3."""
    if isinstance(reply, dict):
        return reply
    return dict(zip(reply[::2], reply[1::2], strict=True))
