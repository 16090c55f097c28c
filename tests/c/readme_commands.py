#!/usr/bin/env python3
"""The README's C install commands work as written: runs the shell block that follows the
README's `tests/c/readme_commands.py` marker in the checkout, with its prefix (/opt/elpips) moved
to a temporary folder and no loader environment (LD_LIBRARY_PATH, ORT_DYLIB_PATH,
ELPIPS_MODEL_DIR unset), and checks that the program printed a distance. A prefix outside the
loader's path used to build a program that could not start (libelpips.so.0 not found).

Usage: readme_commands.py README.md (run from the checkout's root; standard library only)."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PREFIX = "/opt/elpips"


def block(readme):
    text = Path(readme).read_text()
    m = re.search(r"<!-- tests/c/readme_commands\.py[^>]*-->\s*```sh\n(.*?)```", text, re.S)
    if not m:
        sys.exit("readme_commands: no ```sh block after the tests/c/readme_commands.py marker in " + readme)
    return m.group(1)


def main():
    script = block(sys.argv[1])
    if PREFIX not in script:
        sys.exit(f"readme_commands: the block no longer installs into {PREFIX}; update this test")
    tmp = Path(tempfile.mkdtemp(prefix="elpips-readme-"))
    try:
        script = script.replace(PREFIX, str(tmp / "opt" / "elpips"))
        env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "ORT_DYLIB_PATH", "ELPIPS_MODEL_DIR", "PKG_CONFIG_PATH")}
        # make's own variables would leak the outer make's settings into the README's `make`.
        for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):
            env.pop(k, None)
        out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env, capture_output=True, text=True)
        Path("compare").unlink(missing_ok=True)
        if out.returncode != 0:
            sys.exit(f"readme_commands: the README's C commands failed (exit {out.returncode}):\n{out.stderr[-2000:]}")
        last = out.stdout.strip().splitlines()[-1]
        distance = json.loads(last)["distance"]
        if not distance > 0:
            sys.exit(f"readme_commands: unexpected output {last!r}")
        print(f"README C commands: built and ran against a prefix outside the loader's path; distance {distance}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
