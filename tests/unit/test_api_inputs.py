"""Pure pieces of the API: symbol ranking, strict body decoding and its error paths, and
the profile's bounds."""

from __future__ import annotations

import msgspec
import pytest

from tradepulse.api.bodies import decode_strict
from tradepulse.api.problems import ProblemError
from tradepulse.api.symbols_routes import rank
from tradepulse.core.profiles import AlertPreferences, Profile

ACTIVE = [("abcXYZ", 10), ("XYZ", 1), ("xyzabc", 5), ("XyZ2", 7), ("other", 99)]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("xyz", ["XYZ", "XyZ2", "xyzabc", "abcXYZ"]),  # exact; prefixes newest first; inside
        ("ABC", ["abcXYZ", "xyzabc"]),
        ("", ["other", "abcXYZ", "XyZ2", "xyzabc", "XYZ"]),  # all prefixes: newest first
        ("nope", []),
    ],
)
def test_rank_orders_exact_then_prefix_then_substring(q: str, expected: list[str]) -> None:
    assert [s.token for s in rank(ACTIVE, q)] == expected


def test_rank_ties_in_time_are_ordered_by_token() -> None:
    assert [s.token for s in rank([("sb", 5), ("sa", 5), ("s", 1)], "s")] == ["s", "sa", "sb"]


@pytest.mark.parametrize(
    ("raw", "status", "name"),
    [
        (b"{", 400, None),
        (b'{"watchlist": "TOK"}', 422, "$.watchlist"),
        (b'{"watchlist": ["A", "B", "A"]}', 422, "$.watchlist"),
        (b'{"alert_preferences": {"muted_rules": ["r", "r"]}}', 422,
         "$.alert_preferences.muted_rules"),
        (b'{"alert_preferences": {"min_interval_s": true}}', 422,
         "$.alert_preferences.min_interval_s"),
        (b'{"alert_preferences": {"min_interval_s": 1.5}}', 422,
         "$.alert_preferences.min_interval_s"),
    ],
)  # fmt: skip
def test_decode_strict_names_the_field_by_json_path(
    raw: bytes, status: int, name: str | None
) -> None:
    with pytest.raises(ProblemError) as info:
        decode_strict(raw, Profile)
    assert info.value.status == status
    names = [p["name"] for p in info.value.invalid or []]
    assert names == ([name] if name else [])


def test_profile_bounds_accept_the_limits() -> None:
    document = {"display_name": "x" * 100, "watchlist": [f"T{i}" for i in range(500)],
                "alert_preferences": {"muted_channels": ["websocket", "dashboard"],
                                      "min_interval_s": 86_400}}  # fmt: skip
    profile = decode_strict(msgspec.json.encode(document), Profile)
    assert len(profile.watchlist) == 500
    assert profile.alert_preferences == AlertPreferences(
        muted_channels=("websocket", "dashboard"), min_interval_s=86_400
    )
