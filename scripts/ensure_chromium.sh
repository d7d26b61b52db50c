#!/usr/bin/env bash
# Browser tests drive Debian's Chromium through Playwright (no browser download).
# Installs it when missing and we are root; otherwise says so (browser tests then skip outside CI).
set -u
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "installing Debian chromium for the browser tests ..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; browser tests will skip (or fail under CI)"
else
  echo "note: /usr/bin/chromium is missing and we are not root; browser tests will skip outside CI"
fi
