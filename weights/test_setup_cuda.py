#!/usr/bin/env python3
"""The CUDA part of weights/setup.py without a GPU and without downloading (`make test-weights`).

Checked: the "cuda" pins are complete (tests/cuda_setup.rs checks them too, from Rust); an
existing CUDA installation named by --cuda-libs is refused with the missing libraries named, and
accepted (its folders recorded in cuda_libs.path, nothing downloaded) when complete; --cuda-libs
without --device cuda is refused.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import setup  # noqa: E402


class CudaLibs(unittest.TestCase):
    def setUp(self):
        self.m = setup.load_manifest()
        self.lib = self.m["cuda"]["library"]
        self.tmp = tempfile.mkdtemp()
        self.libdir = os.path.join(self.tmp, "lib")
        os.makedirs(self.libdir)
        self.s = setup.Setup(self.m, check_only=False, upstream_dir=None)

    def record(self, dirs):
        with contextlib.redirect_stdout(io.StringIO()):
            self.s.cuda_libs_file(self.lib, self.libdir, dirs)

    def test_every_required_library_is_unpacked_by_the_download(self):
        for so in setup.CUDA_SONAMES_REQUIRED:
            self.assertIn(so, self.lib["files"])
            self.assertNotEqual(self.lib["files"][so]["from"], self.lib["runtime_from"])

    def test_an_incomplete_installation_is_refused_naming_what_is_missing(self):
        cuda = os.path.join(self.tmp, "cuda")
        os.makedirs(cuda)
        open(os.path.join(cuda, "libcudart.so.13"), "w").close()
        with self.assertRaises(setup.SetupError) as e:
            self.record([cuda])
        msg = str(e.exception)
        self.assertIn("libcudnn.so.9", msg)
        self.assertNotIn("libcudart.so.13", msg.split(" has no ")[1])
        self.assertFalse(os.path.exists(os.path.join(self.libdir, self.lib["cuda_libs_file"])))
        with self.assertRaises(setup.SetupError) as e:
            self.record([os.path.join(self.tmp, "none")])
        self.assertIn("is not a folder", str(e.exception))

    def test_a_complete_installation_is_recorded_and_a_download_removes_the_record(self):
        a, b = os.path.join(self.tmp, "cu13"), os.path.join(self.tmp, "cudnn")
        for d in (a, b):
            os.makedirs(d)
        for so in setup.CUDA_SONAMES_REQUIRED:
            open(os.path.join(b if "cudnn" in so else a, so), "w").close()
        self.record([a, b])
        path = os.path.join(self.libdir, self.lib["cuda_libs_file"])
        with open(path, encoding="utf-8") as f:
            self.assertEqual(f.read().splitlines(), [a, b])
        self.record(None)
        self.assertFalse(os.path.exists(path))

    def test_cuda_libs_needs_device_cuda(self):
        with contextlib.redirect_stderr(io.StringIO()) as err, self.assertRaises(SystemExit) as e:
            setup.main(["--cuda-libs", self.tmp])
        self.assertEqual(e.exception.code, 2)
        self.assertIn("--cuda-libs needs --device cuda", err.getvalue())


if __name__ == "__main__":
    unittest.main(verbosity=2)
