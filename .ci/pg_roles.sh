#!/usr/bin/env bash
# Create Baton's two PostgreSQL roles (idempotent), as the postgres superuser:
#   baton_owner  LOGIN CREATEDB  owns the schema, runs migrations, creates test databases
#   baton_app    LOGIN           the application: neither owner nor superuser, so the
#                                audit trigger binds it (see docs/audit.md)
# and the `baton` database owned by baton_owner. Grants come from
# `DATABASE_URL=$DATABASE_OWNER_URL python manage.py db_grant_app_role baton_app`.
set -euo pipefail
PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}"
OWNER="${BATON_DB_OWNER:-baton_owner}" APP="${BATON_DB_APP:-baton_app}" DB="${BATON_DB_NAME:-baton}"
psql() { command psql -h "$PGHOST" -p "$PGPORT" -U "${PGSUPERUSER:-postgres}" -d postgres -v ON_ERROR_STOP=1 -qAt "$@"; }

psql -v owner="$OWNER" -v app="$APP" -v db="$DB" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN CREATEDB', :'owner')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'owner') \gexec
SELECT format('CREATE ROLE %I LOGIN', :'app')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'owner')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL
echo "roles $OWNER (owner) and $APP (application) ready on $PGHOST:$PGPORT"
