"""Settings: defaults, environment over .env, and errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradepulse.config import load_settings
from tradepulse.core.errors import ConfigError


def test_defaults_without_environment(tmp_path: Path) -> None:
    s = load_settings({}, dotenv=tmp_path / "missing.env")
    assert [w.name for w in s.windows] == ["1min", "5min", "15min", "30min", "1hour"]
    assert (s.max_future_skew_ms, s.log_level) == (5_000, "INFO")


def test_environment_overrides_dotenv(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text('# comment\nTRADEPULSE_WINDOWS="1min,6hour"\nLOG_LEVEL=debug\n')
    s = load_settings({"LOG_LEVEL": "warning"}, dotenv=env_file)
    assert [w.duration_ms for w in s.windows] == [60_000, 21_600_000]
    assert s.log_level == "WARN"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TRADEPULSE_WINDOWS", "1min,banana"),
        ("TRADEPULSE_WINDOWS", ""),
        ("TRADEPULSE_WINDOWS", "60s,1min"),
        ("TRADEPULSE_MAX_FUTURE_SKEW", "soon"),
        ("LOG_LEVEL", "LOUD"),
        ("TRADEPULSE_KAFKA_BOOTSTRAP", "localhost"),
        ("TRADEPULSE_KAFKA_BOOTSTRAP", ""),
        ("TRADEPULSE_KAFKA_TOPIC", "bad topic!"),
        ("TRADEPULSE_KAFKA_GROUP", ""),
        ("TRADEPULSE_REDIS_URL", "http://localhost"),
        ("TRADEPULSE_CLOCK", "lunar"),
        ("TRADEPULSE_BATCH_SIZE", "0"),
        ("TRADEPULSE_BATCH_WAIT_MS", "soon"),
    ],
)
def test_bad_value_names_the_variable(name: str, value: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({name: value}, dotenv=tmp_path / "none")
    assert name in str(info.value)


def test_kafka_settings_read_and_normalized(tmp_path: Path) -> None:
    env = {
        "TRADEPULSE_KAFKA_BOOTSTRAP": " 127.0.0.1:9092 , [::1]:9093",
        "TRADEPULSE_KAFKA_TOPIC": "t.x",
    }
    s = load_settings(env, dotenv=tmp_path / "none")
    assert (s.kafka_bootstrap, s.kafka_topic) == ("127.0.0.1:9092,[::1]:9093", "t.x")


def test_worker_settings_defaults_and_overrides(tmp_path: Path) -> None:
    s = load_settings({"TRADEPULSE_KAFKA_TOPIC": "trades"}, dotenv=tmp_path / "none")
    assert (s.dlq_topic, s.kafka_group, s.clock, s.batch_size) == (
        "trades.dlq",
        "tradepulse",
        "wall",
        10_000,
    )
    env = {
        "TRADEPULSE_KAFKA_DLQ_TOPIC": "dead",
        "TRADEPULSE_CLOCK": "EVENT",
        "TRADEPULSE_BATCH_WAIT_MS": "0",
        "TRADEPULSE_REDIS_URL": "redis://127.0.0.1:6379/3",
        "TRADEPULSE_REDIS_PREFIX": "t:",
    }
    s = load_settings(env, dotenv=tmp_path / "none")
    assert (s.dlq_topic, s.clock, s.batch_wait_ms, s.redis_url, s.redis_prefix) == (
        "dead", "event", 0, "redis://127.0.0.1:6379/3", "t:",
    )  # fmt: skip
