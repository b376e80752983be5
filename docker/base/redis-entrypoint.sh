#!/bin/sh
# `redis-server [options]` as in the official image: options alone mean redis-server's, and
# protected mode is off unless the command line sets it (other containers must reach it).
set -eu
case "${1:-}" in
    -*) set -- redis-server "$@" ;;
esac
if [ "${1:-}" = redis-server ]; then
    case " $* " in
        *" --protected-mode "*) ;;
        *) set -- "$@" --protected-mode no ;;
    esac
fi
exec "$@"
