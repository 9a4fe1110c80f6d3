"""JSON log lines, and the merged metrics exposition of ``worker --processes N``."""

from __future__ import annotations

import json
import logging

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tradepulse.logs import JsonFormatter, TextFormatter
from tradepulse.supervisor import merge_expositions


def record(level: int, msg: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("tradepulse.x", level, __file__, 1, msg, args, None)
    rec.__dict__.update(extra)
    return rec


def test_json_line_has_level_names_of_the_contract_and_extra_fields() -> None:
    line = JsonFormatter().format(record(logging.WARNING, "lag %s", 5, total_trades=10))
    data = json.loads(line)
    assert (data["level"], data["message"], data["total_trades"]) == ("WARN", "lag 5", 10)
    assert data["time"].endswith("Z") and data["logger"] == "tradepulse.x"
    assert json.loads(JsonFormatter().format(record(logging.CRITICAL, "x")))["level"] == "FATAL"


def test_json_line_encodes_unknown_extra_values_as_text() -> None:
    data = json.loads(JsonFormatter().format(record(logging.INFO, "m", where=object)))
    assert data["where"] == str(object)


def test_text_line_appends_extra_fields_as_key_value() -> None:
    text = TextFormatter().format(record(logging.WARNING, "m", partition=3))
    assert " WARN tradepulse.x m partition=3" in text


def _exposition(consumed: float, seconds: list[float]) -> str:
    registry = CollectorRegistry()
    Counter("t_consumed_total", "c", registry=registry).inc(consumed)
    hist = Histogram("t_batch_seconds", "h", buckets=(0.1, 1.0), registry=registry)
    for s in seconds:
        hist.observe(s)
    return generate_latest(registry).decode()


def test_merged_exposition_labels_every_series_with_its_process() -> None:
    families = merge_expositions({0: _exposition(5, [0.05]), 1: _exposition(7, [0.5, 2.0])})
    registry = CollectorRegistry()

    class Fixed:
        def collect(self):  # type: ignore[no-untyped-def]
            return families

    registry.register(Fixed())  # type: ignore[arg-type]
    parsed = {
        (s.name, s.labels.get("process"), s.labels.get("le")): s.value
        for f in text_string_to_metric_families(generate_latest(registry).decode())
        for s in f.samples
    }
    assert parsed[("t_consumed_total", "0", None)] == 5
    assert parsed[("t_consumed_total", "1", None)] == 7
    assert parsed[("t_batch_seconds_bucket", "1", "1.0")] == 1
    assert parsed[("t_batch_seconds_count", "1", None)] == 2
    assert parsed[("t_batch_seconds_count", "0", None)] == 1
