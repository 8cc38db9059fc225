-- kalshiflow-rl schema, version 1 (SQLite). Mirrors postgres/0001_initial.sql; read the comments
-- there. STRICT tables refuse a float or text where an integer belongs, as PostgreSQL does.
--
-- Units, as in domain/values.py; never floats in prices, counts or money:
--   price  ten-thousandths of a dollar: $0.4500 = 4500, $1 = 10000
--   count  hundredths of a contract:   120.00 contracts = 12000
--   money  micro-dollars (price x count lands here exactly)
--   *_ms   Unix epoch milliseconds
-- Sides are 'yes' / 'no'. JSON columns hold JSON text.

CREATE TABLE rl_sessions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tickers         TEXT NOT NULL,  -- JSON array of market tickers
    source          TEXT NOT NULL,
    started_ms      INTEGER NOT NULL,
    ended_ms        INTEGER,
    next_ordinal    INTEGER NOT NULL DEFAULT 0,
    snapshot_count  INTEGER NOT NULL DEFAULT 0,
    delta_count     INTEGER NOT NULL DEFAULT 0,
    trade_count     INTEGER NOT NULL DEFAULT 0,
    CHECK (json_array_length(tickers) > 0),
    CHECK (ended_ms IS NULL OR ended_ms >= started_ms)
) STRICT;

CREATE TABLE rl_orderbook_snapshots (
    session_id      INTEGER NOT NULL REFERENCES rl_sessions (id) ON DELETE CASCADE,
    ordinal         INTEGER NOT NULL,
    market_ticker   TEXT NOT NULL,
    timestamp_ms    INTEGER NOT NULL,
    sequence_number INTEGER,
    sid             INTEGER,
    yes_bids        TEXT NOT NULL,  -- JSON [[price, count], ...] ascending, best bid last
    no_bids         TEXT NOT NULL,
    best_yes_bid    INTEGER CHECK (best_yes_bid BETWEEN 0 AND 10000),
    best_yes_ask    INTEGER CHECK (best_yes_ask BETWEEN 0 AND 10000),  -- 10000 - best NO bid
    yes_spread      INTEGER,                                           -- best_yes_ask - best_yes_bid
    PRIMARY KEY (session_id, ordinal)
) STRICT, WITHOUT ROWID;
CREATE INDEX rl_orderbook_snapshots_market_time ON rl_orderbook_snapshots (market_ticker, timestamp_ms);

CREATE TABLE rl_orderbook_deltas (
    session_id      INTEGER NOT NULL REFERENCES rl_sessions (id) ON DELETE CASCADE,
    ordinal         INTEGER NOT NULL,
    market_ticker   TEXT NOT NULL,
    timestamp_ms    INTEGER NOT NULL,
    sequence_number INTEGER,
    sid             INTEGER,
    side            TEXT NOT NULL CHECK (side IN ('yes', 'no')),
    price           INTEGER NOT NULL CHECK (price BETWEEN 0 AND 10000),
    delta           INTEGER NOT NULL,  -- signed count
    client_order_id TEXT,
    PRIMARY KEY (session_id, ordinal)
) STRICT, WITHOUT ROWID;
CREATE INDEX rl_orderbook_deltas_market_time ON rl_orderbook_deltas (market_ticker, timestamp_ms);

CREATE TABLE rl_public_trades (
    session_id      INTEGER NOT NULL REFERENCES rl_sessions (id) ON DELETE CASCADE,
    ordinal         INTEGER NOT NULL,
    market_ticker   TEXT NOT NULL,
    timestamp_ms    INTEGER NOT NULL,
    sequence_number INTEGER,
    sid             INTEGER,
    trade_id        TEXT NOT NULL,
    yes_price       INTEGER NOT NULL CHECK (yes_price BETWEEN 0 AND 10000),
    count           INTEGER NOT NULL CHECK (count > 0),
    taker_side      TEXT NOT NULL CHECK (taker_side IN ('yes', 'no')),
    PRIMARY KEY (session_id, ordinal)
) STRICT, WITHOUT ROWID;
CREATE INDEX rl_public_trades_market_time ON rl_public_trades (market_ticker, timestamp_ms);

CREATE TABLE rl_market_resolutions (
    session_id      INTEGER NOT NULL REFERENCES rl_sessions (id) ON DELETE CASCADE,
    ordinal         INTEGER NOT NULL,
    market_ticker   TEXT NOT NULL,
    timestamp_ms    INTEGER NOT NULL,
    result          TEXT NOT NULL CHECK (result IN ('yes', 'no')),
    PRIMARY KEY (session_id, ordinal)
) STRICT, WITHOUT ROWID;
CREATE INDEX rl_market_resolutions_market_time ON rl_market_resolutions (market_ticker, timestamp_ms);

CREATE TABLE rl_models (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    model_name      TEXT NOT NULL,
    version         INTEGER NOT NULL CHECK (version >= 1),
    algorithm       TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('training', 'active', 'retired', 'failed')),
    path            TEXT NOT NULL,
    created_ms      INTEGER NOT NULL,
    hyperparameters TEXT NOT NULL DEFAULT '{}',  -- JSON object
    metrics         TEXT NOT NULL DEFAULT '{}',  -- JSON object
    UNIQUE (model_name, version)
) STRICT;
CREATE UNIQUE INDEX rl_models_one_active ON rl_models (model_name) WHERE status = 'active';

CREATE TABLE rl_trading_episodes (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    model_id        INTEGER NOT NULL REFERENCES rl_models (id) ON DELETE CASCADE,
    episode_number  INTEGER NOT NULL,
    market_ticker   TEXT NOT NULL,
    session_id      INTEGER REFERENCES rl_sessions (id) ON DELETE SET NULL,
    started_ms      INTEGER NOT NULL,
    ended_ms        INTEGER,
    step_count      INTEGER NOT NULL DEFAULT 0,
    trade_count     INTEGER NOT NULL DEFAULT 0,
    total_pnl       INTEGER NOT NULL DEFAULT 0,  -- money
    fees_paid       INTEGER NOT NULL DEFAULT 0,  -- money
    total_return    REAL,                        -- fraction of starting cash
    sharpe_ratio    REAL,
    max_drawdown    REAL,                        -- fraction of peak equity
    UNIQUE (model_id, episode_number)
) STRICT;
CREATE INDEX rl_trading_episodes_market ON rl_trading_episodes (market_ticker, started_ms);

CREATE TABLE rl_trading_actions (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    episode_id          INTEGER NOT NULL REFERENCES rl_trading_episodes (id) ON DELETE CASCADE,
    step_number         INTEGER NOT NULL,
    action_timestamp_ms INTEGER NOT NULL,
    action_type         TEXT NOT NULL,
    price               INTEGER CHECK (price BETWEEN 0 AND 10000),  -- NULL when no order was placed
    quantity            INTEGER NOT NULL DEFAULT 0,                -- count
    position_before     INTEGER NOT NULL,                          -- count, +YES / -NO
    position_after      INTEGER NOT NULL,                          -- count
    UNIQUE (episode_id, step_number)
) STRICT;
