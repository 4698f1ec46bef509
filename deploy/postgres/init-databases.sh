#!/bin/sh
# Two databases, each with its own owner role: the accounts database (vingw_accounts) and the
# search-log database (vingw_searchlog). Neither role can connect to the other's database, so a
# leaked search-log credential reads no account data and the other way round.
#
# Run once by the postgres image on an empty data directory (/docker-entrypoint-initdb.d/);
# by hand: POSTGRES_USER=postgres VINGW_ACCOUNTS_DB_PASSWORD=... VINGW_SEARCHLOG_DB_PASSWORD=...
# sh deploy/postgres/init-databases.sh (tests/test_deploy.py runs it against a real server with
# its own names). The passwords come from the environment, never from this file.
set -eu

ACCOUNTS_DB=${VINGW_ACCOUNTS_DB:-vingw_accounts}
SEARCHLOG_DB=${VINGW_SEARCHLOG_DB:-vingw_searchlog}
: "${VINGW_ACCOUNTS_DB_PASSWORD:?set VINGW_ACCOUNTS_DB_PASSWORD}"
: "${VINGW_SEARCHLOG_DB_PASSWORD:?set VINGW_SEARCHLOG_DB_PASSWORD}"

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname postgres \
  ${PGHOST:+--host "$PGHOST"} ${PGPORT:+--port "$PGPORT"} \
  -v accounts_db="$ACCOUNTS_DB" -v searchlog_db="$SEARCHLOG_DB" \
  -v accounts_password="$VINGW_ACCOUNTS_DB_PASSWORD" \
  -v searchlog_password="$VINGW_SEARCHLOG_DB_PASSWORD" <<'SQL'
-- the role of each store owns its database (the migrations create its tables and partitions)
CREATE ROLE :"accounts_db" LOGIN PASSWORD :'accounts_password';
CREATE ROLE :"searchlog_db" LOGIN PASSWORD :'searchlog_password';
CREATE DATABASE :"accounts_db" OWNER :"accounts_db";
CREATE DATABASE :"searchlog_db" OWNER :"searchlog_db";
-- PUBLIC may CONNECT to a new database by default: only the owner may
REVOKE ALL ON DATABASE :"accounts_db" FROM PUBLIC;
REVOKE ALL ON DATABASE :"searchlog_db" FROM PUBLIC;
SQL
