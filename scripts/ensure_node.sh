#!/usr/bin/env bash
# The webcam pages' face mesh is an npm package (capture_site/web): `npm ci` needs Node.js and npm.
# Installs Debian's when missing and we are root; otherwise says so and fails (make serve/test need it).
set -u
if command -v npm >/dev/null && command -v node >/dev/null; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "installing Debian nodejs and npm for the webcam pages' face mesh ..."
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null && exit 0
fi
echo "error: Node.js and npm are needed (npm ci in capture_site/web installs the page's face mesh)" >&2
exit 1
