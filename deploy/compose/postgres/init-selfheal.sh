#!/bin/sh
# First start of the PostgreSQL volume only: the `selfheal` role and database (the incident store).
set -eu
psql -v ON_ERROR_STOP=1 -v pw="$SELFHEAL_DB_PASSWORD" --username "$POSTGRES_USER" --dbname postgres <<'SQL'
CREATE ROLE selfheal LOGIN PASSWORD :'pw';
CREATE DATABASE selfheal OWNER selfheal;
SQL
