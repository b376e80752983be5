#!/bin/sh
# As the official postgres image: on the first start, a cluster in $PGDATA whose superuser is
# POSTGRES_USER (postgres) with the password POSTGRES_PASSWORD (required, unless
# POSTGRES_HOST_AUTH_METHOD=trust), and the database POSTGRES_DB (default: the user's name).
# Every start runs postgres as the postgres user, listening on every address, with
# scram-sha-256 password logins over TCP and trusted local-socket logins.
set -eu
case "${1:-}" in
    -*) set -- postgres "$@" ;;
esac
if [ "${1:-}" != postgres ]; then
    exec "$@"
fi
: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /run/postgresql
    chown -R postgres:postgres "$PGDATA" /run/postgresql
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    user="${POSTGRES_USER:-postgres}"
    auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
    if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
        echo "error: the database is uninitialized and POSTGRES_PASSWORD is not set" \
            "(set it, or POSTGRES_HOST_AUTH_METHOD=trust to allow every connection)" >&2
        exit 1
    fi
    pwfile="$(mktemp)"
    printf '%s\n' "${POSTGRES_PASSWORD:-}" >"$pwfile"
    if [ -n "${POSTGRES_PASSWORD:-}" ]; then pwopt="--pwfile=$pwfile"; else pwopt=""; fi
    # shellcheck disable=SC2086  # pwopt is one word or none
    initdb --pgdata="$PGDATA" --username="$user" $pwopt --auth-local=trust \
        --auth-host="$auth" --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pwfile"
    printf "listen_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
    printf 'host all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"
    db="${POSTGRES_DB:-$user}"
    if [ "$db" != postgres ]; then
        pg_ctl --pgdata="$PGDATA" --wait --silent \
            --options="-c listen_addresses='' -c unix_socket_directories=/run/postgresql" start
        psql --quiet --set=ON_ERROR_STOP=1 --host=/run/postgresql --username="$user" \
            --dbname=postgres --command="CREATE DATABASE \"$db\""
        pg_ctl --pgdata="$PGDATA" --wait --silent --mode=fast stop
    fi
    echo "PostgreSQL: initialized $PGDATA (user $user, database $db)"
fi
exec "$@"
