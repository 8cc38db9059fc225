-- Trading records for every mode: evaluation and the paper-trading actor record here too.
-- sqlite/0003_trading_records.sql mirrors it. Columns are appended, so both backends keep the
-- same column order.

-- Which kind of run an episode belongs to. Existing rows came from training.
ALTER TABLE rl_trading_episodes
    ADD COLUMN mode TEXT NOT NULL DEFAULT 'training' CHECK (mode IN ('training', 'evaluation', 'paper'));
CREATE INDEX rl_trading_episodes_model_mode ON rl_trading_episodes (model_id, mode, episode_number);

-- What a live decision needs to be traced: the policy's raw action index, the order's side on
-- the YES ladder, the venue's order id and our client order id, and a digest of the observation
-- the policy saw (to compare a live decision with its replay).
ALTER TABLE rl_trading_actions ADD COLUMN action_index INTEGER CHECK (action_index >= 0);
ALTER TABLE rl_trading_actions ADD COLUMN order_side TEXT CHECK (order_side IN ('bid', 'ask'));
ALTER TABLE rl_trading_actions ADD COLUMN order_id TEXT;
ALTER TABLE rl_trading_actions ADD COLUMN client_order_id TEXT;
ALTER TABLE rl_trading_actions ADD COLUMN observation_digest TEXT;
CREATE INDEX rl_trading_actions_client_order ON rl_trading_actions (client_order_id)
    WHERE client_order_id IS NOT NULL;
