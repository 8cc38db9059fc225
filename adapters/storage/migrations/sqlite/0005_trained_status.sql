-- kalshiflow-rl schema, version 5 (SQLite). Mirrors postgres/0005_trained_status.sql; read the
-- comments there.
--
-- SQLite cannot alter a CHECK constraint, and rebuilding rl_models inside the migration's
-- transaction (foreign keys on) would cascade-delete its trading records. The constraint only
-- widens -- every stored row still meets it -- so the table's definition is edited in place,
-- as https://sqlite.org/lang_altertable.html ("Making Other Kinds Of Table Schema Changes")
-- allows for such changes; RESET reloads this connection's schema, and the CREATE INDEX below
-- moves the schema cookie so other connections reload theirs.
PRAGMA writable_schema = ON;
UPDATE sqlite_master
    SET sql = replace(
        sql,
        'CHECK (status IN (''training'', ''active'', ''retired'', ''failed''))',
        'CHECK (status IN (''training'', ''trained'', ''active'', ''retired'', ''failed''))'
    )
    WHERE type = 'table' AND name = 'rl_models';
PRAGMA writable_schema = OFF;
PRAGMA writable_schema = RESET;
-- Fails the migration, naming the check, if the definition did not read as expected.
CREATE TEMP TABLE rl_models_status_edit (
    definition TEXT CONSTRAINT rl_models_status_allows_trained CHECK (definition LIKE '%''trained''%')
);
INSERT INTO rl_models_status_edit SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'rl_models';
DROP TABLE rl_models_status_edit;
CREATE INDEX rl_models_name_status ON rl_models (model_name, status, version);
UPDATE rl_models SET status = 'trained' WHERE status = 'training' AND json_type(metrics, '$.training') IS NOT NULL;
