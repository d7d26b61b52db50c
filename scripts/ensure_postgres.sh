#!/usr/bin/env bash
# The PostgreSQL tests (fixture `postgres_url` in tests/conftest.py) start a throwaway server from
# Debian's binaries (/usr/lib/postgresql/*/bin/initdb), run as the `postgres` user via runuser.
# Installs Debian's `postgresql` when they are missing and we are root; otherwise says so (those
# tests then skip outside CI).
set -u
if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && id postgres >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "installing Debian postgresql for the database tests ..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
    || echo "warning: could not install postgresql; PostgreSQL tests will skip (or fail under CI)"
else
  echo "note: PostgreSQL server binaries are missing and we are not root; PostgreSQL tests will skip outside CI"
fi
