#!/bin/sh
# docker-compose.ha.yml, on the primary's first start: the role the standby streams as,
# and commits that wait for the standby. ALTER SYSTEM takes effect at the real start, after
# this init phase (whose own commits must not wait for a standby that is not there yet).
set -eu
psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" <<'SQL'
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD 'replicate';
ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 (standby)';
ALTER SYSTEM SET synchronous_commit = 'on';
SQL
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
