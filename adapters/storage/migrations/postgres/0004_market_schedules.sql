-- kalshiflow-rl schema, version 4 (PostgreSQL). sqlite/0004_market_schedules.sql mirrors it.
--
-- What the exchange announced in advance about each recorded market (Kalshi: close_time and
-- expiration_time of GET /markets/{ticker}), written by the recording when it starts recording
-- the market, before the market's book events. Replay counts the time-left features down to
-- close_ms -- a time known before the market ran -- never to the end of the recording.
-- Ordinals continue the session's one sequence across every event table.
CREATE TABLE rl_market_schedules (
    session_id      BIGINT NOT NULL REFERENCES rl_sessions (id) ON DELETE CASCADE,
    ordinal         BIGINT NOT NULL,
    market_ticker   TEXT NOT NULL,
    timestamp_ms    BIGINT NOT NULL,  -- when the recorder learned it
    close_ms        BIGINT NOT NULL,  -- when trading closes
    expiration_ms   BIGINT,           -- when the market expires, if the exchange said
    PRIMARY KEY (session_id, ordinal)
);
CREATE INDEX rl_market_schedules_market ON rl_market_schedules (market_ticker, timestamp_ms);
