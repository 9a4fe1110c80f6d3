"""REST ``/api/v1/user/profile``: the caller's profile (``ctx.profiles``).

``GET`` answers the stored profile, or the default one (``updated_ms`` null) for a user who
never saved one; ``PUT`` replaces the whole profile (fields left out take their defaults).
Every field is bounded (``core/profiles.py``); a body that breaks a bound is 422 naming the
field by its JSON path. The alert preferences apply to ``/ws`` at once on this api process,
within ``TRADEPULSE_WS_PREFS_TTL`` on the others (``preferences.py``).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import anyio.to_thread
from litestar import Request, get, put
from litestar.params import JSONBody

from tradepulse.api.access import BEARER, Me
from tradepulse.api.bodies import strict_body
from tradepulse.api.context import Ctx
from tradepulse.api.problems import problem_docs
from tradepulse.core.profiles import Profile, StoredProfile


@get("/user/profile", opt={"query": ()}, security=BEARER, responses=problem_docs(401, 503))
async def get_profile(ctx: Ctx, me: Me) -> StoredProfile:
    """The caller's profile (the default one when never saved)."""
    stored = await anyio.to_thread.run_sync(partial(ctx.profiles.get, me.user))
    return stored if stored is not None else StoredProfile(me.user, Profile())


@put("/user/profile", opt={"query": ()}, security=BEARER,
     responses=problem_docs(400, 401, 413, 422, 503))  # fmt: skip
async def put_profile(
    ctx: Ctx, me: Me, request: Request[Any, Any, Any], data: JSONBody[Profile]
) -> StoredProfile:
    """Replace the caller's profile."""
    profile = await strict_body(request, Profile)
    stored = await anyio.to_thread.run_sync(partial(ctx.profiles.put, me.user, profile))
    ctx.preferences.put(me.user, stored.profile.alert_preferences)  # this process's /ws
    return stored


USER_HANDLERS = [get_profile, put_profile]
