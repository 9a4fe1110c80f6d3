-- 0002: the rule store and the stored alerts (ARCHITECTURE §6).
--
-- rules holds the current version of every rule; rule_versions keeps every version ever
-- written (create, update, enable/disable, rollback), so a rollback is a new version whose
-- definition is an old one. A deleted rule keeps its row (deleted_at set): the alerts it
-- produced still name their owner, and its history stays auditable.
-- rules.enabled always equals definition->'enabled' (absent = true): the repository writes
-- both together.

CREATE TABLE IF NOT EXISTS rules (
    id          text        NOT NULL,
    owner       text        NOT NULL,
    name        text        NOT NULL,
    definition  jsonb       NOT NULL,
    enabled     boolean     NOT NULL DEFAULT true,
    version     integer     NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    seq         bigint      GENERATED ALWAYS AS IDENTITY,  -- creation order (ties of now())
    CONSTRAINT rules_pkey PRIMARY KEY (id),
    CONSTRAINT rules_version_positive CHECK (version >= 1),
    CONSTRAINT rules_definition_object CHECK (jsonb_typeof(definition) = 'object')
);

-- "the rules of one user", in creation order (rules created in one transaction share
-- created_at, hence seq).
CREATE INDEX IF NOT EXISTS rules_owner_seq ON rules (owner, seq) WHERE deleted_at IS NULL;

CREATE TABLE IF NOT EXISTS rule_versions (
    rule_id     text        NOT NULL REFERENCES rules (id),
    version     integer     NOT NULL,
    definition  jsonb       NOT NULL,
    enabled     boolean     NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT rule_versions_pkey PRIMARY KEY (rule_id, version)
);

-- Alerts: one row per firing, keyed by its deterministic id (uuid5 of rule, version, token
-- and time: core/alerts.py), so a redelivered alert is an INSERT ... ON CONFLICT DO NOTHING.
-- Times are integer epoch ms like everywhere inside. rule_id has no foreign key: an alert is
-- a fact that outlives its rule. owner is copied from rules at insert time (null when the
-- rule is unknown to this database) so per-user queries need no join.
CREATE TABLE IF NOT EXISTS alerts (
    id             text        NOT NULL,
    rule_id        text        NOT NULL,
    rule_name      text        NOT NULL,
    rule_version   integer     NOT NULL,
    token          text        NOT NULL,
    triggered_ms   bigint      NOT NULL,
    "values"       jsonb       NOT NULL,
    window_bounds  jsonb       NOT NULL,
    lag_ms         bigint      NOT NULL,
    trace_id       text        NOT NULL,
    owner          text,
    stored_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT alerts_pkey PRIMARY KEY (id)
);

-- Newest first, paged by the keyset (triggered_ms, id): each filter has its index ending in
-- (triggered_ms, id), read backwards.
CREATE INDEX IF NOT EXISTS alerts_token_time ON alerts (token, triggered_ms, id);
CREATE INDEX IF NOT EXISTS alerts_rule_time ON alerts (rule_id, triggered_ms, id);
CREATE INDEX IF NOT EXISTS alerts_owner_time ON alerts (owner, triggered_ms, id);
CREATE INDEX IF NOT EXISTS alerts_time ON alerts (triggered_ms, id);
