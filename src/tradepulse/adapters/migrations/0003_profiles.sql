-- 0003: user profiles of the API (GET/PUT /api/v1/user/profile).
--
-- One row per user who saved a profile; a user without a row gets the default profile (the
-- API never writes one on read). The profile is one jsonb document validated by the API
-- (display name, watchlist, alert preferences), so adding a preference needs no migration.
-- user_id is the bearer token's "sub".

CREATE TABLE IF NOT EXISTS profiles (
    user_id     text        NOT NULL,
    profile     jsonb       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT profiles_pkey PRIMARY KEY (user_id),
    CONSTRAINT profiles_profile_object CHECK (jsonb_typeof(profile) = 'object')
);
