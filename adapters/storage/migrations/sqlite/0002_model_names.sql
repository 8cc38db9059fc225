-- One row per model name: the last version number handed out (never reused, even after its row
-- is pruned) and how many times the name's active version has changed (it only grows: the actor
-- polls it to know when to reload). Both move in the transaction that registers or promotes.
CREATE TABLE rl_model_names (
    model_name         TEXT PRIMARY KEY,
    last_version       INTEGER NOT NULL CHECK (last_version >= 1),
    active_generation  INTEGER NOT NULL DEFAULT 0 CHECK (active_generation >= 0)
) STRICT;
INSERT INTO rl_model_names (model_name, last_version, active_generation)
    SELECT model_name, MAX(version), MAX(status = 'active') FROM rl_models GROUP BY model_name;
