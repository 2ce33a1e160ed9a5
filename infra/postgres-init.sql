-- The MLflow database is created by the image (POSTGRES_DB); Feast's SQL registry gets its own.
CREATE DATABASE feast OWNER driftline;
