#!/usr/bin/env python3
"""The pip package works from its venv alone: `make test-pip` installs `./bindings/python` into
a fresh venv and runs this with that venv's Python, under tests/install/hide_checkout.sh (the
checkout's runtime, models and build hidden), with ELPIPS_CACHE_DIR naming a model cache the job
filled beforehand, as a CI job restores one.

Checks: `python -m elpips setup` finds the cache complete (checks it, builds nothing); the
`elpips` command and the Python library load the onnxruntime wheel's runtime and the cache's
models, and give the checkout's figure (--expect); `info --json` names the folder the Python side
builds into (one rule in two languages); with an empty cache both say to run
`python -m elpips setup`.
"""
import argparse, json, os, subprocess, sys, sysconfig, tempfile
from pathlib import Path

import elpips
from elpips.__main__ import models_dir

ap = argparse.ArgumentParser()
ap.add_argument("--images", required=True, help="folder with ex_ref.png and ex_p0.png (outside the checkout)")
ap.add_argument("--expect", type=float, required=True, help="the lpips-alex distance of ex_ref/ex_p0 the checkout's build gives")
args = ap.parse_args()

bindir = Path(sys.executable).parent
site = Path(sysconfig.get_paths()["purelib"]).resolve()
ref, p0 = (os.path.join(args.images, f) for f in ("ex_ref.png", "ex_p0.png"))
problems = []
clean = {k: v for k, v in os.environ.items() if k not in ("ORT_DYLIB_PATH", "ELPIPS_MODEL_DIR", "ELPIPS_LIBRARY", "LD_LIBRARY_PATH")}


def run(*argv, env=None):
    return subprocess.run([str(bindir / "elpips"), *argv], capture_output=True, text=True, env={**clean, **(env or {})})


def expect(ok, what):
    if not ok:
        problems.append(what)


r = subprocess.run([sys.executable, "-m", "elpips", "setup"], capture_output=True, text=True, env=clean)
expect(r.returncode == 0 and "every model matches its pin" in r.stdout, f"setup on a filled cache: {r.returncode} {r.stdout} {r.stderr}")

r = run("--version")
runtime = site / "onnxruntime/capi/libonnxruntime.so.1.31.1"
expect(f"ONNX Runtime 1.31.1 ({runtime}, from the installation)" in r.stdout, f"--version:\n{r.stdout}{r.stderr}")
expect(f"installation: python-package {site / 'elpips'}" in r.stdout, f"--version:\n{r.stdout}")

r = run("info", "--json", "--threads", "1")
try:
    info = json.loads(r.stdout)
    expect(Path(info["models"]) == models_dir(), f"info's models {info['models']}, python -m elpips setup's {models_dir()}")
    expect(all(m["ok"] for m in info["metrics"]), f"info: {info['metrics']}")
except ValueError:
    problems.append(f"info --json: {r.stdout!r} {r.stderr!r}")

r = run("compare", ref, p0, "--metric", "lpips-alex", "--threads", "1", "--json")
expect(r.returncode == 0 and json.loads(r.stdout or "{}").get("distance") == args.expect, f"compare: {r.stdout} {r.stderr} (want {args.expect})")

expect(elpips.library_path() == site / "elpips/lib/libelpips.so.0", f"the library loaded: {elpips.library_path()}")
with elpips.Context("lpips-alex", threads=1) as ctx:
    got = ctx.compare_files(ref, p0).distance
expect(got == args.expect, f"Context.compare_files: {got}, want {args.expect}")

# An empty cache: both the command and the library say what to run.
with tempfile.TemporaryDirectory() as empty:
    r = run("compare", ref, p0, "--metric", "lpips-alex", env={"ELPIPS_CACHE_DIR": empty})
    expect(r.returncode == 2 and "python -m elpips setup" in r.stderr, f"empty cache: {r.returncode} {r.stderr}")
    code = ("import elpips\ntry:\n    elpips.Context('lpips-alex')\nexcept elpips.ElpipsError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**clean, "ELPIPS_CACHE_DIR": empty})
    expect("python -m elpips setup" in r.stdout, f"empty cache, Python: {r.stdout} {r.stderr}")

if problems:
    sys.exit("check_pip: " + "\n  ".join(["problems with the pip package in " + str(site), *problems]))
print(f"check_pip: the pip package in {site} works alone (command, library, onnxruntime wheel's runtime, cached models)")
