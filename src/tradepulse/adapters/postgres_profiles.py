"""PostgreSQL profile store (table ``profiles`` of ``migrations/0003_profiles.sql``).

One row per user who saved a profile, the ``Profile`` as ``jsonb``; ``get`` of a user
without a row is None (the API answers the default profile). ``put`` replaces the whole
profile (an upsert) and returns it with the time it was stored. psycopg errors become
``HistoryUnavailableError`` (``postgres_base``). ``get_many`` reads the profiles of many
users in one statement (the WebSocket gateway's preferences).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from tradepulse.adapters.postgres_base import Repository
from tradepulse.core.profiles import Profile, StoredProfile

_decode = msgspec.json.Decoder(Profile).decode
_encode = msgspec.json.Encoder().encode

_MS = "floor(extract(epoch FROM updated_at) * 1000)::bigint"

_UPSERT = f"""
INSERT INTO profiles (user_id, profile) VALUES (%s, %s::jsonb)
ON CONFLICT (user_id) DO UPDATE SET profile = excluded.profile, updated_at = now()
RETURNING profile::text, {_MS}"""

_GET = f"SELECT profile::text, {_MS} FROM profiles WHERE user_id = %s"
_GET_MANY = f"SELECT user_id, profile::text, {_MS} FROM profiles WHERE user_id = ANY(%s)"


class ProfileRepository(Repository):
    """The ``profiles`` table (see the module docstring)."""

    TABLES = ("profiles",)

    def get(self, user: str) -> StoredProfile | None:
        """The stored profile of ``user``, or None when they never saved one."""
        with self._transaction("read profile") as conn:
            row = conn.execute(_GET, (user,)).fetchone()
        return None if row is None else StoredProfile(user, _decode(row[0]), row[1])

    def get_many(self, users: Sequence[str]) -> dict[str, StoredProfile]:
        """The stored profiles of ``users`` by user (those who never saved one are absent)."""
        if not users:
            return {}
        with self._transaction("read profiles") as conn:
            rows = conn.execute(_GET_MANY, (list(users),)).fetchall()
        return {str(u): StoredProfile(str(u), _decode(text), ms) for u, text, ms in rows}

    def put(self, user: str, profile: Profile) -> StoredProfile:
        """Store ``profile`` as the whole profile of ``user``."""
        with self._transaction("write profile") as conn:
            row = conn.execute(_UPSERT, (user, _encode(profile).decode())).fetchone()
        assert row is not None  # an upsert ... RETURNING of one row
        return StoredProfile(user, _decode(row[0]), row[1])
