#!/bin/sh
# Runs a command with this source checkout's runtime, models and build hidden: an empty tmpfs is
# mounted over .cache, weights/models and target in a private mount namespace, so an installed
# elpips that still reached into the checkout it was built in would fail. Needs root, or
# unprivileged user namespaces (util-linux unshare).
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
userns=
[ "$(id -u)" -eq 0 ] || userns=--map-root-user
exec unshare --mount $userns sh -c '
  top=$1; shift
  for d in "$top/.cache" "$top/weights/models" "$top/target"; do
    if [ -d "$d" ]; then mount -t tmpfs hidden "$d"; fi
  done
  exec "$@"' sh "$top" "$@"
