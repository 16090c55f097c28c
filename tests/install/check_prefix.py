#!/usr/bin/env python3
"""An installed elpips works from its own prefix and nothing else: `make test-install` (a
`make install` moved to another folder) and `make test-dist` (the `make dist` tarball unpacked
elsewhere) run this under tests/install/hide_checkout.sh, with the source checkout's runtime,
models and build hidden and no ORT_DYLIB_PATH or ELPIPS_MODEL_DIR.

Checks: `--version` and `info --json` name the prefix's runtime, models and installation; the
command compares two images (its figure equals the one given with --expect); the C library
installed beside it loads from a program linked against it (--c-program); the man pages and the
bash, zsh and fish completions are there and load; the licences are there; and with a model
removed, the error names the installation and what to do, never `make setup`.
"""
import argparse, json, os, shutil, subprocess, sys, tempfile

ap = argparse.ArgumentParser()
ap.add_argument("--prefix", required=True)
ap.add_argument("--images", required=True, help="folder with ex_ref.png and ex_p0.png (outside the checkout)")
ap.add_argument("--expect", type=float, help="the lpips-alex distance of ex_ref/ex_p0 the checkout's build gives")
ap.add_argument("--c-example", help="examples/c/compare.c: built with the prefix's pkg-config file, it must run")
args = ap.parse_args()

prefix = os.path.realpath(args.prefix)
elpips = os.path.join(prefix, "bin", "elpips")
problems = []


def run(*argv, env=None):
    e = {k: v for k, v in os.environ.items() if k not in ("ORT_DYLIB_PATH", "ELPIPS_MODEL_DIR", "LD_LIBRARY_PATH")}
    e.update(env or {})
    return subprocess.run([elpips, *argv], capture_output=True, text=True, env=e)


def expect(ok, what):
    if not ok:
        problems.append(what)


r = run("--version")
expect(r.returncode == 0, f"--version exit {r.returncode}: {r.stderr}")
expect(f"ONNX Runtime 1.31.1 ({prefix}/lib/libonnxruntime.so.1, from the installation)" in r.stdout, f"--version does not name the prefix's runtime:\n{r.stdout}")
expect(f"installation: prefix {prefix}" in r.stdout, f"--version does not name the installation:\n{r.stdout}")

r = run("info", "--json", "--threads", "1")
expect(r.returncode == 0, f"info exit {r.returncode}: {r.stderr}")
try:
    info = json.loads(r.stdout)
    expect(info["models"] == f"{prefix}/share/elpips/models", f"info: models {info['models']}")
    expect(info["installation"] == {"kind": "prefix", "root": prefix}, f"info: installation {info['installation']}")
    expect(all(m["ok"] for m in info["metrics"]), f"info: metrics {info['metrics']}")
except (ValueError, KeyError) as e:
    problems.append(f"info --json: {e}: {r.stdout!r}")

ref, p0 = (os.path.join(args.images, f) for f in ("ex_ref.png", "ex_p0.png"))
r = run("compare", ref, p0, "--metric", "lpips-alex", "--threads", "1", "--json")
expect(r.returncode == 0, f"compare exit {r.returncode}: {r.stderr}")
if r.returncode == 0 and args.expect is not None:
    got = json.loads(r.stdout)["distance"]
    expect(got == args.expect, f"compare gives {got}, the checkout's build {args.expect}")

# A C program built against the prefix (its pkg-config file is relocatable: paths from its own
# folder, an rpath to the prefix's lib) runs, its libelpips finding the runtime and models.
if args.c_example:
    with tempfile.TemporaryDirectory() as t:
        env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(prefix, "lib/pkgconfig"))
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "elpips"], capture_output=True, text=True, env=env, check=True).stdout.split()
        exe = os.path.join(t, "compare")
        subprocess.run(["cc", "-std=c99", args.c_example, "-o", exe, *flags], check=True)
        r = subprocess.run([exe], capture_output=True, text=True, env={k: v for k, v in os.environ.items() if k not in ("ORT_DYLIB_PATH", "ELPIPS_MODEL_DIR", "LD_LIBRARY_PATH")})
        expect(r.returncode == 0 and '"distance"' in r.stdout, f"the C example built against {prefix}: exit {r.returncode}, {r.stdout} {r.stderr}")

# The completions and man pages `make install` generated from the command's own definition.
share = os.path.join(prefix, "share")
bash = os.path.join(share, "bash-completion/completions/elpips")
r = subprocess.run(["bash", "-c", f'source "{bash}" && complete -p elpips'], capture_output=True, text=True)
expect(r.returncode == 0 and "elpips" in r.stdout, f"bash completion does not load: {r.stderr}")
for f, marker in [("zsh/site-functions/_elpips", "#compdef elpips"), ("fish/vendor_completions.d/elpips.fish", "complete -c elpips"),
                  ("man/man1/elpips.1", ".TH elpips 1"), ("man/man1/elpips-check.1", ".TH elpips-check 1")]:
    path = os.path.join(share, f)
    expect(os.path.isfile(path) and marker in open(path).read(), f"{path} missing or without `{marker}`")
for f in ["LICENSE", "LICENSE-onnxruntime.txt", "ThirdPartyNotices-onnxruntime.txt", "LICENSE-elpips-weights.txt", "LICENSE-lpips-weights.txt"]:
    expect(os.path.isfile(os.path.join(share, "licenses/elpips", f)), f"share/licenses/elpips/{f} missing")

# A damaged installation says so, and what to do, in its own terms.
with tempfile.TemporaryDirectory() as t:
    moved = os.path.join(t, "lpips-alex.features.onnx")
    model = os.path.join(share, "elpips/models/lpips-alex.features.onnx")
    shutil.move(model, moved)
    try:
        r = run("compare", ref, p0, "--metric", "lpips-alex")
    finally:
        shutil.move(moved, model)
    expect(r.returncode == 2 and f"{model} not found; the installation at {prefix} is incomplete" in r.stderr
           and "make setup" not in r.stderr, f"a missing model: exit {r.returncode}, {r.stderr!r}")

if problems:
    sys.exit("check_prefix: " + "\n  ".join(["problems with " + prefix, *problems]))
print(f"check_prefix: {prefix} works alone (runtime, models, command, completions, man pages, licences)")
