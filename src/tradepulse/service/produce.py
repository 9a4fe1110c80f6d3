"""Publish trades to the trade topic: a wire-format file as it is, or synthetic trades.

Messages are keyed by token, so each token's trades land in one partition, in order.
Lines are sent unchanged (invalid ones too: that is how the consumer's dead-letter path is
exercised); a line whose token cannot be read is sent without a key.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

import msgspec

from tradepulse.adapters.kafka import TradeProducer

ProgressHandler = Callable[[int], None]


class _TokenOnly(msgspec.Struct):
    token: str


_token_decoder = msgspec.json.Decoder(_TokenOnly)


def key_of_line(line: bytes) -> str | None:
    """The ``token`` of a wire line, or ``None`` when it cannot be read."""
    try:
        return _token_decoder.decode(line).token
    except msgspec.MsgspecError:
        return None


def keyed_lines(lines: Iterable[bytes]) -> Iterator[tuple[str | None, bytes]]:
    """``(token, line)`` for every non-blank line, the trailing newline removed."""
    for line in lines:
        body = line.rstrip(b"\r\n")
        if body.strip():
            yield key_of_line(body), body


def publish(
    producer: TradeProducer,
    messages: Iterable[tuple[str | None, bytes]],
    *,
    rate_per_s: float | None = None,
    on_progress: ProgressHandler | None = None,
) -> int:
    """Send every ``(key, value)``, at most ``rate_per_s`` per second when given (evenly
    paced). Returns the number sent; delivery is confirmed by ``producer.flush()``."""
    started = time.monotonic()
    sent = 0
    for key, value in messages:
        if rate_per_s is not None:
            due = started + sent / rate_per_s
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        producer.send(key, value)
        sent += 1
        if on_progress is not None and not sent % 4096:
            on_progress(sent)
    return sent
