-- kalshiflow-rl schema, version 4 (SQLite). Mirrors postgres/0004_market_schedules.sql; read the
-- comments there.
CREATE TABLE rl_market_schedules (
    session_id      INTEGER NOT NULL REFERENCES rl_sessions (id) ON DELETE CASCADE,
    ordinal         INTEGER NOT NULL,
    market_ticker   TEXT NOT NULL,
    timestamp_ms    INTEGER NOT NULL,
    close_ms        INTEGER NOT NULL,
    expiration_ms   INTEGER,
    PRIMARY KEY (session_id, ordinal)
) STRICT, WITHOUT ROWID;
CREATE INDEX rl_market_schedules_market ON rl_market_schedules (market_ticker, timestamp_ms);
