-- 0001: finalized 1-minute bars (ARCHITECTURE §6).
--
-- open_ms is the bar's UTC minute start as integer epoch milliseconds (bigint), the unit used
-- everywhere inside tradepulse: no time-zone conversion on the way in or out, and a candle
-- bucket is plain integer arithmetic (open_ms - open_ms % tf_ms).
-- revision grows by one each time a late trade corrects a finalized bar; an upsert only
-- replaces a stored row whose revision is lower or equal.

CREATE TABLE IF NOT EXISTS bars_1m (
    token            text             NOT NULL,
    open_ms          bigint           NOT NULL,
    open             double precision NOT NULL,
    high             double precision NOT NULL,
    low              double precision NOT NULL,
    close            double precision NOT NULL,
    volume           double precision NOT NULL,
    volume_usd       double precision NOT NULL,
    buy_volume_usd   double precision NOT NULL,
    sell_volume_usd  double precision NOT NULL,
    trades           integer          NOT NULL,
    vwap             double precision NOT NULL,
    revision         integer          NOT NULL DEFAULT 0,
    updated_at       timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT bars_1m_pkey PRIMARY KEY (token, open_ms),
    CONSTRAINT bars_1m_minute_aligned CHECK (open_ms >= 0 AND open_ms % 60000 = 0),
    CONSTRAINT bars_1m_revision_non_negative CHECK (revision >= 0),
    CONSTRAINT bars_1m_trades_non_negative CHECK (trades >= 0)
);

-- The primary key's btree (token, open_ms) serves "one token, a time range" (candles).
-- A BRIN index on open_ms serves "every token, a time range" (retention, exports) at almost
-- no write cost, since bars arrive in roughly ascending time.
CREATE INDEX IF NOT EXISTS bars_1m_open_ms_brin ON bars_1m USING brin (open_ms);

-- TimescaleDB, only when the extension is installed on the server: make bars_1m a hypertable
-- partitioned by open_ms in 1-day chunks. If the extension is present but cannot be created
-- (not in shared_preload_libraries, no privilege), the table stays a plain table.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        BEGIN
            CREATE EXTENSION IF NOT EXISTS timescaledb;
            PERFORM create_hypertable(
                'bars_1m', 'open_ms',
                chunk_time_interval => 86400000::bigint,
                create_default_indexes => false,
                if_not_exists => true
            );
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'timescaledb unusable, bars_1m stays a plain table: %', SQLERRM;
        END;
    END IF;
END
$$;
