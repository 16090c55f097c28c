"""Build of the pip package: the Rust library and command, built by setuptools-rust from the
crate at the repository root, go inside the package, with what its set-up step needs.

    elpips/bin/elpips              the command (the crate's binary; `elpips` on PATH starts it)
    elpips/lib/libelpips.so.0      the C library the bindings load, from the same cargo build
    elpips/lib/onnxruntime.sha256  the pin of the onnxruntime wheel's runtime (weights/manifest.json)
    elpips/_weights/               weights/setup.py and what it reads: `python -m elpips setup`
                                   builds the models with it into the user's cache
    elpips/LICENSE

The library and the command find the runtime (the onnxruntime wheel beside this package) and
the models (the cache) from where they lie (src/network/install.rs). Nothing is written into
the source tree: everything goes to the build folder.
"""
import json
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools_rust import Binding, RustExtension, Strip
from setuptools_rust.build import build_rust

CHECKOUT = Path(__file__).resolve().parents[2]
WEIGHTS = ["setup.py", "convert.py", "manifest.json", "requirements.txt", "README.md"]


class BuildRust(build_rust):
    """The `cargo build --release` that makes the command makes libelpips.so too (one build of
    the crate); it is copied beside the command, stripped of its debug information as the
    command is."""

    def install_extension(self, ext, dylib_paths, build_artifact_dir):
        super().install_extension(ext, dylib_paths, build_artifact_dir)
        built = Path(dylib_paths[0].path).parent / "libelpips.so"
        dest = Path(self.get_finalized_command("build_ext").get_ext_fullpath("elpips.lib.x")).parent / "libelpips.so.0"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built, dest)
        dest.chmod(0o755)
        subprocess.run(["strip", "-S", str(dest)], check=False)


class BuildPy(build_py):
    def run(self):
        super().run()
        pkg = Path(self.build_lib, "elpips")
        (pkg / "_weights").mkdir(parents=True, exist_ok=True)
        for name in WEIGHTS:
            shutil.copyfile(CHECKOUT / "weights" / name, pkg / "_weights" / name)
        shutil.copyfile(CHECKOUT / "LICENSE", pkg / "LICENSE")
        files = json.loads((CHECKOUT / "weights" / "manifest.json").read_text())["onnxruntime_library"]["files"]
        runtime = next(name for name in files if name.startswith("libonnxruntime.so.1."))
        (pkg / "lib").mkdir(exist_ok=True)
        (pkg / "lib" / "onnxruntime.sha256").write_text(f"{files[runtime]['sha256']}  {runtime}\n")


setup(
    rust_extensions=[
        RustExtension({"elpips": "elpips.bin.elpips"}, path=str(CHECKOUT / "Cargo.toml"), binding=Binding.Exec, strip=Strip.Debug)
    ],
    cmdclass={"build_rust": BuildRust, "build_py": BuildPy},
    zip_safe=False,
)
