-- The MLflow database is created by the image (POSTGRES_DB); Feast's SQL registry gets its own,
-- and so do the de-dup marks of ingestion and the features service (DRIFTLINE_STATE_URL).
CREATE DATABASE feast OWNER driftline;
CREATE DATABASE driftline_state OWNER driftline;
