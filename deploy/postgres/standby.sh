#!/bin/sh
# docker-compose.ha.yml: the standby. At its first start it copies the primary
# (pg_basebackup) and names itself "standby" (what the primary's
# synchronous_standby_names waits for); afterwards it streams the primary's WAL.
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pg_basebackup -h postgres -U replicator -D "$PGDATA" -X stream --checkpoint=fast
  # Promoted by hand one day, it must not wait for a standby of its own: no sync names.
  cat >> "$PGDATA/postgresql.auto.conf" <<'CONF'
primary_conninfo = 'host=postgres user=replicator password=replicate application_name=standby'
synchronous_standby_names = ''
CONF
  touch "$PGDATA/standby.signal"
  chmod 0700 "$PGDATA"
fi
exec postgres -c wal_log_hints=on -c wal_keep_size=1GB
