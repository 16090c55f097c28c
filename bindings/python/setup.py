"""Build hook: records where this source checkout builds libelpips (target/release), so an
installed package can still find a library that was built but never `make install`ed. The
note is written into the build directory, never into the source tree."""
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPy(build_py):
    def run(self):
        super().run()
        checkout = Path(__file__).resolve().parents[2]
        note = Path(self.build_lib, "elpips", "_checkout.py")
        note.write_text(f"# Generated at build time.\nCHECKOUT_LIBRARY_DIR = {str(checkout / 'target' / 'release')!r}\n")


setup(cmdclass={"build_py": BuildPy})
