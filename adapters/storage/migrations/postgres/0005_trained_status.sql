-- kalshiflow-rl schema, version 5 (PostgreSQL). sqlite/0005_trained_status.sql mirrors it.
--
-- A model version whose training run finished is 'trained' (it stayed 'training' before, so a
-- finished run looked like one in progress and retention never let it go). 'training' now
-- means the run has not finished: it is running, or its process died.
ALTER TABLE rl_models DROP CONSTRAINT rl_models_status_check;
ALTER TABLE rl_models ADD CONSTRAINT rl_models_status_check
    CHECK (status IN ('training', 'trained', 'active', 'retired', 'failed'));
-- Versions left 'training' by older code: those whose run stored its metrics had finished.
UPDATE rl_models SET status = 'trained' WHERE status = 'training' AND metrics -> 'training' IS NOT NULL;
-- Retention ranks each name's versions of the prunable statuses.
CREATE INDEX rl_models_name_status ON rl_models (model_name, status, version);
