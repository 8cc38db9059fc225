-- kalshiflow-rl schema, version 1 (PostgreSQL). sqlite/0001_initial.sql mirrors it.
--
-- Units, as in domain/values.py; never floats in prices, counts or money:
--   price  INTEGER, ten-thousandths of a dollar: $0.4500 = 4500, $1 = 10000
--   count  BIGINT,  hundredths of a contract:   120.00 contracts = 12000
--   money  BIGINT,  micro-dollars (price x count lands here exactly)
--   *_ms   BIGINT,  Unix epoch milliseconds
-- Sides are 'yes' / 'no'.

-- One recording run. The store hands every event of a session an ordinal (0, 1, 2, ...) across
-- all four event tables; replay merges the tables by it. next_ordinal and the counters are
-- updated in the transaction that writes the events, which also locks this row.
CREATE TABLE rl_sessions (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tickers         TEXT[] NOT NULL,
    source          TEXT NOT NULL,
    started_ms      BIGINT NOT NULL,
    ended_ms        BIGINT,
    next_ordinal    BIGINT NOT NULL DEFAULT 0,
    snapshot_count  BIGINT NOT NULL DEFAULT 0,
    delta_count     BIGINT NOT NULL DEFAULT 0,
    trade_count     BIGINT NOT NULL DEFAULT 0,
    CHECK (cardinality(tickers) > 0),
    CHECK (ended_ms IS NULL OR ended_ms >= started_ms)
);

-- A whole book. Levels are bids only, as Kalshi sends them: [[price, count], ...] ascending by
-- price, the best bid last. The best_* and spread columns are derived at write time for SQL
-- analysis (NULL when a side is empty); replay reads the levels.
CREATE TABLE rl_orderbook_snapshots (
    session_id      BIGINT NOT NULL REFERENCES rl_sessions (id) ON DELETE CASCADE,
    ordinal         BIGINT NOT NULL,
    market_ticker   TEXT NOT NULL,
    timestamp_ms    BIGINT NOT NULL,
    sequence_number BIGINT,
    sid             BIGINT,
    yes_bids        JSONB NOT NULL,
    no_bids         JSONB NOT NULL,
    best_yes_bid    INTEGER CHECK (best_yes_bid BETWEEN 0 AND 10000),
    best_yes_ask    INTEGER CHECK (best_yes_ask BETWEEN 0 AND 10000),  -- 10000 - best NO bid
    yes_spread      INTEGER,                                           -- best_yes_ask - best_yes_bid
    PRIMARY KEY (session_id, ordinal)
);
CREATE INDEX rl_orderbook_snapshots_market_time ON rl_orderbook_snapshots (market_ticker, timestamp_ms);

-- A signed change in size (count units) at one price on one side; the level is gone at <= 0.
CREATE TABLE rl_orderbook_deltas (
    session_id      BIGINT NOT NULL REFERENCES rl_sessions (id) ON DELETE CASCADE,
    ordinal         BIGINT NOT NULL,
    market_ticker   TEXT NOT NULL,
    timestamp_ms    BIGINT NOT NULL,
    sequence_number BIGINT,
    sid             BIGINT,
    side            TEXT NOT NULL CHECK (side IN ('yes', 'no')),
    price           INTEGER NOT NULL CHECK (price BETWEEN 0 AND 10000),
    delta           BIGINT NOT NULL,
    client_order_id TEXT,
    PRIMARY KEY (session_id, ordinal)
);
CREATE INDEX rl_orderbook_deltas_market_time ON rl_orderbook_deltas (market_ticker, timestamp_ms);

-- The public tape. yes_price is the YES side's price; the NO price is 10000 - yes_price.
CREATE TABLE rl_public_trades (
    session_id      BIGINT NOT NULL REFERENCES rl_sessions (id) ON DELETE CASCADE,
    ordinal         BIGINT NOT NULL,
    market_ticker   TEXT NOT NULL,
    timestamp_ms    BIGINT NOT NULL,
    sequence_number BIGINT,
    sid             BIGINT,
    trade_id        TEXT NOT NULL,
    yes_price       INTEGER NOT NULL CHECK (yes_price BETWEEN 0 AND 10000),
    count           BIGINT NOT NULL CHECK (count > 0),
    taker_side      TEXT NOT NULL CHECK (taker_side IN ('yes', 'no')),
    PRIMARY KEY (session_id, ordinal)
);
CREATE INDEX rl_public_trades_market_time ON rl_public_trades (market_ticker, timestamp_ms);

-- Settlements seen during a session: a YES contract pays $1 when result is 'yes'.
CREATE TABLE rl_market_resolutions (
    session_id      BIGINT NOT NULL REFERENCES rl_sessions (id) ON DELETE CASCADE,
    ordinal         BIGINT NOT NULL,
    market_ticker   TEXT NOT NULL,
    timestamp_ms    BIGINT NOT NULL,
    result          TEXT NOT NULL CHECK (result IN ('yes', 'no')),
    PRIMARY KEY (session_id, ordinal)
);
CREATE INDEX rl_market_resolutions_market_time ON rl_market_resolutions (market_ticker, timestamp_ms);

-- Versions of trained models; the weights are files at path. At most one active version per name.
CREATE TABLE rl_models (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model_name      TEXT NOT NULL,
    version         INTEGER NOT NULL CHECK (version >= 1),
    algorithm       TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('training', 'active', 'retired', 'failed')),
    path            TEXT NOT NULL,
    created_ms      BIGINT NOT NULL,
    hyperparameters JSONB NOT NULL DEFAULT '{}',
    metrics         JSONB NOT NULL DEFAULT '{}',
    UNIQUE (model_name, version)
);
CREATE UNIQUE INDEX rl_models_one_active ON rl_models (model_name) WHERE status = 'active';

-- One episode of a model on one market (training, evaluation or paper trading). Returns,
-- Sharpe ratio and drawdown are statistics (fractions), hence floats; P&L and fees are money.
CREATE TABLE rl_trading_episodes (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model_id        BIGINT NOT NULL REFERENCES rl_models (id) ON DELETE CASCADE,
    episode_number  INTEGER NOT NULL,
    market_ticker   TEXT NOT NULL,
    session_id      BIGINT REFERENCES rl_sessions (id) ON DELETE SET NULL,  -- the recording replayed
    started_ms      BIGINT NOT NULL,
    ended_ms        BIGINT,
    step_count      INTEGER NOT NULL DEFAULT 0,
    trade_count     INTEGER NOT NULL DEFAULT 0,
    total_pnl       BIGINT NOT NULL DEFAULT 0,  -- money
    fees_paid       BIGINT NOT NULL DEFAULT 0,  -- money
    total_return    DOUBLE PRECISION,           -- fraction of starting cash
    sharpe_ratio    DOUBLE PRECISION,
    max_drawdown    DOUBLE PRECISION,           -- fraction of peak equity
    UNIQUE (model_id, episode_number)
);
CREATE INDEX rl_trading_episodes_market ON rl_trading_episodes (market_ticker, started_ms);

-- Every action an agent took in an episode. Positions are signed counts: +N YES, -N NO.
CREATE TABLE rl_trading_actions (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    episode_id          BIGINT NOT NULL REFERENCES rl_trading_episodes (id) ON DELETE CASCADE,
    step_number         INTEGER NOT NULL,
    action_timestamp_ms BIGINT NOT NULL,
    action_type         TEXT NOT NULL,
    price               INTEGER CHECK (price BETWEEN 0 AND 10000),  -- NULL when no order was placed
    quantity            BIGINT NOT NULL DEFAULT 0,                 -- count
    position_before     BIGINT NOT NULL,                           -- count
    position_after      BIGINT NOT NULL,                           -- count
    UNIQUE (episode_id, step_number)
);
