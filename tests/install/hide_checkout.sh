#!/bin/sh
# Runs a command with this source checkout's runtime, models and build hidden (.cache,
# weights/models and target), so that an installed elpips that still reached into the checkout
# it was built in would fail. Normally an empty tmpfs is mounted over each in a private mount
# namespace (root, or unprivileged user namespaces; util-linux unshare): nothing changes for
# other processes. Where no private namespace can be made (in a chroot, whose root is no mount
# point), the folders are renamed for the command's duration and renamed back on exit.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
userns=
[ "$(id -u)" -eq 0 ] || userns=--map-root-user
if unshare --mount $userns true 2>/dev/null; then
  exec unshare --mount $userns sh -c '
    top=$1; shift
    for d in "$top/.cache" "$top/weights/models" "$top/target"; do
      if [ -d "$d" ]; then mount -t tmpfs hidden "$d"; fi
    done
    exec "$@"' sh "$top" "$@"
fi
echo "hide_checkout: no private mount namespace here; renaming the folders while the command runs" >&2
hidden=
restore() {
  for d in $hidden; do mv "$d.hidden-by-test" "$d"; done
  hidden=
}
trap restore EXIT
trap 'exit 130' INT TERM
for d in "$top/.cache" "$top/weights/models" "$top/target"; do
  if [ -d "$d" ]; then mv "$d" "$d.hidden-by-test"; hidden="$hidden $d"; fi
done
"$@"
