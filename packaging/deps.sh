#!/usr/bin/env bash
# `make deps`: the system packages `make test` needs beyond the Rust toolchain and Python 3.
# Checks each one; when some are missing it installs them with apt-get if it runs as root on a
# Debian-like system, and otherwise stops at once with the exact list (exit 1), before anything
# is built. `ELPIPS_DEPS=check` only checks (never installs).
#
# The list, one line each: what is checked, and the Debian package that provides it.
set -euo pipefail

missing=()
need() { missing+=("$1"); }

command -v cargo >/dev/null || { echo "make deps: cargo not found: install the Rust toolchain (https://rustup.rs); apt cannot" >&2; exit 1; }
command -v python3 >/dev/null || need python3
# The set-up's venvs (converter, Python binding, end-to-end renderer) need venv and ensurepip.
if command -v python3 >/dev/null && ! python3 -c 'import venv, ensurepip' 2>/dev/null; then need python3-venv; fi

# The C tests, examples and plugins: compilers, valgrind, pkg-config, CMake, GoogleTest.
for tool in cc:gcc c++:g++ make:make valgrind:valgrind pkg-config:pkg-config cmake:cmake; do
  command -v "${tool%%:*}" >/dev/null || need "${tool##*:}"
done
[ -f /usr/include/gtest/gtest.h ] || need libgtest-dev

# The encoders `elpips tune` drives (plugins/codec/). The tune tests need every one of them.
for lib in libturbojpeg:libturbojpeg0-dev libwebp:libwebp-dev libavif:libavif-dev libjxl:libjxl-dev; do
  if ! command -v pkg-config >/dev/null || ! pkg-config --exists "${lib%%:*}" 2>/dev/null; then need "${lib##*:}"; fi
done

# The report's browser test (make test-report): headless Chromium.
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || need chromium

if [ ${#missing[@]} -eq 0 ]; then
  echo "make deps: every system package make test needs is installed"
  exit 0
fi

if [ "${ELPIPS_DEPS:-}" != check ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "make deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Check again, without installing: a package that installed but did not provide what was
  # checked is an error, not a loop.
  ELPIPS_DEPS=check exec "$0"
fi

echo "make deps: missing system packages: ${missing[*]}" >&2
echo "make deps: install them, then run make again:  sudo apt-get install ${missing[*]}" >&2
exit 1
