"""The Python bindings: numpy in, results out, the command line's figure for the same seed,
every pixel type, strided arrays, prepared references, errors with their statuses."""
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

import elpips

N = 64


def pattern(shift, n=N, m=N):
    """The synthetic pattern of examples/c/compare.c (red (7x)^shift, green 5y, blue 3(x+y))."""
    y, x = np.mgrid[0:m, 0:n].astype(np.int64)
    return np.stack([((x * 7) ^ shift) & 255, (y * 5) & 255, ((x + y) * 3) & 255], axis=-1).astype(np.uint8)


def write_png(path, rgb):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    h, w, _ = rgb.shape
    raw = b"".join(b"\0" + rgb[r].tobytes() for r in range(h))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def alex():
    with elpips.Context("lpips-alex", threads=1) as ctx:
        yield ctx


def test_version_and_library():
    from importlib.metadata import version
    assert elpips.version() == version("elpips")  # the package and the library it loads agree
    assert elpips.library_path().is_file()


def test_elpips_equals_the_command_line(tmp_path):
    a, b = pattern(0), pattern(0x55)
    with elpips.Context(seed=7, samples=4, threads=1) as ctx:
        r = ctx.compare(a, b)
    assert (r.samples, r.scale_levels, r.converged) == (4, 1, True)
    assert r.distance > 0 and r.ci95 == pytest.approx(1.959963984540054 * r.std_error)
    cli = os.environ.get("ELPIPS_CLI")
    if not cli:
        pytest.skip("ELPIPS_CLI (the elpips binary) not set")
    write_png(tmp_path / "a.png", a)
    write_png(tmp_path / "b.png", b)
    out = subprocess.run([cli, "compare", "--json", "--threads", "1", "--seed", "7", "--samples", "4",
                          str(tmp_path / "a.png"), str(tmp_path / "b.png")], check=True, capture_output=True, text=True)
    assert json.loads(out.stdout)["distance"] == r.distance  # the very same double


def test_pixel_types_agree(alex):
    a, b = pattern(0, 40, 36), pattern(0x55, 40, 36)
    base = alex.compare(a, b).distance
    assert base > 0
    assert alex.compare(a, b.astype(np.uint16) * 257).distance == pytest.approx(base, abs=1e-6)
    assert alex.compare(a, b.astype(np.float32) / 255).distance == base
    rgba = np.concatenate([b, np.full((36, 40, 1), 9, np.uint8)], axis=-1)
    assert alex.compare(a, rgba).distance == base  # alpha ignored

    def to_linear(img):  # sRGB decoding; linear=True encodes both images back
        v = img.astype(np.float32) / 255
        return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4).astype(np.float32)

    assert alex.compare(to_linear(a), to_linear(b), linear=True).distance == pytest.approx(base, abs=1e-4)


def test_strided_crops_are_read_in_place(alex):
    big = pattern(0x33, 50, 50)
    crop = big[5:45, 3:43]  # rows strided by the big image
    assert not crop.flags.c_contiguous
    other = pattern(0, 40, 40)
    assert alex.compare(other, crop).distance == alex.compare(other, np.ascontiguousarray(crop)).distance


def test_prepared_reference_equals_compare():
    a, b, c = pattern(0), pattern(0x55), pattern(0x0F)
    with elpips.Context(seed=3, samples=2, threads=1) as ctx:
        ref = ctx.prepare(a)
        for cand in (b, c):
            assert ctx.compare(ref, cand) == ctx.compare(a, cand)
        assert ctx.compare(ref, a).distance == 0.0
        ref.close()


def test_decide(alex, tmp_path):
    a, b = pattern(0), pattern(0x55)
    plain = alex.compare(a, b)
    d = alex.decide(a, b, plain.distance * 1.01)
    assert (d.verdict, d.passed, d.looks) == ("below", True, 1)
    assert d.result == plain and d.lower == d.upper == plain.distance
    write_png(tmp_path / "a.png", a)
    write_png(tmp_path / "b.png", b)
    assert alex.decide(tmp_path / "a.png", tmp_path / "b.png", plain.distance * 0.99).verdict == "above"
    with pytest.raises(TypeError, match="both as file paths or both as numpy arrays"):
        alex.decide(a, tmp_path / "b.png", 0.1)
    with pytest.raises(elpips.ElpipsError, match="error rate"):
        alex.decide(a, b, 0.1, error_rate=0.7)
    with elpips.Context(seed=1, threads=1) as ctx:
        d = ctx.decide(a, b, 0.9, min_samples=4, max_samples=8)
        assert d.verdict == "below" and d.result.samples == 4 and d.upper < 0.9


def test_tone_mapping_and_alpha_options():
    """The ElpipsOptions fields past the first version reach the library."""
    lin = (pattern(0).astype(np.float32) / 255.0) ** 2.2 * 4.0  # linear light, up to 4
    rgba = np.dstack([pattern(0), np.full((N, N), 128, np.uint8)])
    with elpips.Context("lpips-alex", threads=1) as clamp, \
            elpips.Context("lpips-alex", threads=1, exposure=-2.0) as darker, \
            elpips.Context("lpips-alex", threads=1, tonemap="reinhard") as reinhard:
        ref = pattern(0x55).astype(np.float32) / 255.0
        figures = {c.compare(ref, lin, linear=True).distance for c in (clamp, darker, reinhard)}
        assert len(figures) == 3
    with elpips.Context("lpips-alex", threads=1) as ignore, \
            elpips.Context("lpips-alex", threads=1, alpha="over", background=(1, 1, 1)) as over:
        assert ignore.compare(pattern(0), rgba).distance == 0.0
        assert over.compare(pattern(0), rgba).distance > 0.0
    with pytest.raises(ValueError, match="unknown tonemap"):
        elpips.Context("lpips-alex", tonemap="filmic")


def test_errors_carry_status_and_message(alex):
    a = pattern(0, 40, 36)
    with pytest.raises(elpips.ElpipsError) as e:
        alex.compare(a, a[:-1])
    assert e.value.status == 4 and e.value.status_name == "SIZE_MISMATCH" and "sizes differ" in str(e.value)
    f = a.astype(np.float32) / 255
    f[2, 3, 1] = np.nan
    with pytest.raises(elpips.ElpipsError) as e:
        alex.compare(a, f)
    assert e.value.status_name == "NON_FINITE" and "pixel (x 3, y 2) channel 1" in str(e.value)
    with pytest.raises(elpips.ElpipsError) as e:
        alex.compare(a[:20, :20], a[:20, :20])
    assert e.value.status_name == "IMAGE_TOO_SMALL"
    with pytest.raises(TypeError):
        alex.compare(a, a.astype(np.int32))
    with pytest.raises(ValueError):
        alex.compare(a, a[..., 0])
    with pytest.raises(elpips.ElpipsError) as e:
        alex.compare_files("/nonexistent-a.png", "/nonexistent-b.png")
    assert e.value.status_name == "IO"


def test_bad_options():
    with pytest.raises(elpips.ElpipsError) as e:
        elpips.Context("lpips-alex", device="cuda")
    assert e.value.status_name == "UNSUPPORTED" and "CUDA" in str(e.value)
    with pytest.raises(elpips.ElpipsError) as e:
        elpips.Context("lpips-alex", model_dir="/nonexistent")
    assert e.value.status_name == "MODEL"
    with pytest.raises(elpips.ElpipsError) as e:
        elpips.Context(samples=0)
    assert e.value.status_name == "INVALID_ARGUMENT"
    with pytest.raises(ValueError):
        elpips.Context("vgg")
    with pytest.raises(ValueError):
        elpips.Context(sampler="sobol")


def test_backends_agree_and_say_which_ran():
    """auto runs MLAS or OpenVINO (what it chose is reported); an explicit openvino runs there or
    is refused with the reason (not installed, or a CPU the plugin does not serve); fp32 agrees
    to 1e-5 on both."""
    a, b = pattern(0), pattern(0x55)
    with elpips.Context("lpips-alex", backend="mlas", threads=1) as mlas:
        assert mlas.backend == "mlas"
        d = mlas.compare(a, b).distance
    with elpips.Context("lpips-alex", threads=1) as auto:
        assert auto.backend in ("mlas", "openvino")
        assert abs(auto.compare(a, b).distance - d) <= 1e-5 * d
    try:
        ov = elpips.Context("lpips-alex", backend="openvino", threads=1)
    except elpips.ElpipsError as e:
        assert e.status_name == "UNSUPPORTED" and "ELPIPS_BACKEND_OPENVINO" in str(e), str(e)
    else:
        with ov:
            assert ov.backend == "openvino"
            assert abs(ov.compare(a, b).distance - d) <= 1e-5 * d
    with pytest.raises(ValueError):
        elpips.Context(backend="onednn")


@pytest.mark.parametrize("kwargs,error,needle", [
    # ctypes would store these modulo 2**32 / 2**64: 2**32 + 3 samples as 3, -1 as 4294967295.
    ({"samples": 2**32 + 3}, ValueError, "samples must be between 0 and 1000000, not 4294967299"),
    ({"samples": -1}, ValueError, "samples must be between 0 and 1000000, not -1"),
    ({"samples": 1_000_001}, ValueError, "samples must be between 0 and 1000000"),
    ({"samples": 2.5}, TypeError, "samples must be an integer, not float"),
    ({"samples": True}, TypeError, "samples must be an integer, not bool"),
    ({"max_samples": 2**32}, ValueError, "max_samples must be between 0 and 1000000"),
    ({"min_samples": -2}, ValueError, "min_samples must be between 0 and 1000000"),
    ({"max_pixels": -1}, ValueError, "max_pixels must be between 1 and 18446744073709551615, not -1"),
    ({"max_pixels": 0}, ValueError, "max_pixels must be between 1"),
    ({"max_pixels": 2**64}, ValueError, "max_pixels must be between 1"),
    ({"scale_levels": -3}, ValueError, "scale_levels must be between 0 and 4294967295"),
    ({"seed": -1}, ValueError, "seed must be between 0 and 18446744073709551615"),
    ({"seed": 2**64}, ValueError, "seed must be between 0"),
    ({"threads": -2}, ValueError, "threads must be between 0 and 4294967295"),
    ({"abs_error": "0.1"}, TypeError, "abs_error must be a number, not str"),
    ({"exposure": 1e39}, ValueError, "exposure 1e+39 does not fit in a 32-bit float"),
    ({"model_dir": "/tmp/models\0/x"}, ValueError, "model_dir '/tmp/models\\x00/x' contains a NUL byte"),
    ({"linear_weights": 7}, TypeError, "linear_weights must be a path"),
])
def test_out_of_range_arguments_are_refused_not_wrapped(kwargs, error, needle):
    with pytest.raises(error) as e:
        elpips.Context("elpips-vgg", threads=1, **kwargs) if "threads" not in kwargs else elpips.Context("elpips-vgg", **kwargs)
    assert needle in str(e.value)


def test_integers_are_stored_exactly_or_refused(monkeypatch):
    """A property test of every integer argument over its C field's edges and random values far
    beyond them: each either reaches the C struct exactly as given or is refused before the
    call; none is stored modulo 2**32 or 2**64."""
    import random
    seen = {}

    def capture(options, out, message, size):
        o = options._obj
        seen.update({name: getattr(o, name) for name, _ in elpips._Options._fields_})
        return 1  # refuse, so no context is made

    monkeypatch.setattr(elpips._library(), "elpips_context_new_with_error", capture)
    rng = random.Random(31)
    edges = [0, 1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**32 + 3, 2**63, 2**64 - 1, 2**64, 10**30]
    values = edges + [-e for e in edges if e] + [rng.randrange(-2**70, 2**70) for _ in range(200)]
    for name in ("seed", "threads", "samples", "max_samples", "min_samples", "scale_levels", "max_pixels"):
        stored = refused = 0
        for v in values:
            seen.clear()
            try:
                elpips.Context("lpips-alex", **{name: v})
            except (ValueError, TypeError):
                assert not seen, f"{name}={v}: refused after the struct was filled"
                refused += 1
                continue
            except elpips.ElpipsError:
                pass
            assert seen[name] == v, f"{name}={v} was stored as {seen[name]}"
            stored += 1
        assert stored and refused, (name, stored, refused)


def test_boundary_values_reach_the_library_unchanged():
    """The largest values that fit are passed as they are; the library then judges them."""
    with pytest.raises(elpips.ElpipsError) as e:
        elpips.Context("elpips-vgg", max_pixels=2**64 - 1, threads=2**32 - 1)
    assert e.value.status_name == "INVALID_ARGUMENT" and "4294967295 threads requested" in str(e.value)
    with elpips.Context("lpips-alex", seed=2**64 - 1, threads=1, max_pixels=2**64 - 1) as ctx:
        assert ctx.compare(pattern(0), pattern(0)).distance == 0.0


def test_file_and_gate_arguments_are_checked(alex, tmp_path):
    a = pattern(0)
    write_png(tmp_path / "a.png", a)
    good = str(tmp_path / "a.png")
    with pytest.raises(ValueError, match="contains a NUL byte"):
        alex.compare_files(good + "\0.png", good)
    with pytest.raises(ValueError, match="contains a NUL byte"):
        alex.decide(good, good + "\0", 0.1)
    with pytest.raises(ValueError, match="max_samples must be between 0 and 1000000, not 4294967296"):
        alex.decide(a, a, 0.1, max_samples=2**32)
    with pytest.raises(ValueError, match="min_samples must be between 0 and 1000000, not -1"):
        alex.decide(a, a, 0.1, min_samples=-1)
    assert alex.decide(good, good, 0.1).verdict == "below"


def test_an_image_the_machine_cannot_hold_is_an_error_not_an_abort(tmp_path):
    """A 65-byte PNG declaring 100000 x 100000 with the pixel budget lifted: the decoder's
    30 GB buffer is allocated fallibly, so the call fails and the interpreter lives on."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    png = tmp_path / "huge.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0))
                    + chunk(b"IDAT", bytes([0x78, 0x9c, 3, 0, 0, 0, 0, 1])) + chunk(b"IEND", b""))
    # Probe in a child: where the machine has ~30 GB free, the allocation succeeds and the
    # decode then fails on the missing data instead; either way the process must not abort.
    code = ("import elpips, sys\n"
            "with elpips.Context('lpips-alex', threads=1, max_pixels=2**64 - 1) as ctx:\n"
            "    try:\n"
            f"        ctx.compare_files({str(png)!r}, {str(png)!r})\n"
            "    except elpips.ElpipsError as e:\n"
            "        print(e.status_name, e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(("IMAGE_TOO_LARGE", "IMAGE_DECODE")), out.stdout


def test_tile_samples_leave_a_small_pair_to_the_default_estimator():
    # A small pair never tile-samples its draws (only inputs above 0.3 Mpx do), so asking for
    # tile samples gives the same double; the option reaches the library (a bad value would
    # be refused by elpips_context_new).
    a, b = pattern(0), pattern(0x55)
    with elpips.Context(seed=3, samples=4, threads=1) as whole, \
            elpips.Context(seed=3, samples=4, threads=1, tile_samples=True) as tiles:
        assert whole.compare(a, b).distance == tiles.compare(a, b).distance


def test_cheap_draws_reach_the_library():
    # Two streams estimate the same expectation (within the combined error) with the cheap
    # stream's extra draws; options the estimate cannot take are refused by the library.
    a, b = pattern(0), pattern(0x55)
    with elpips.Context(seed=1, samples=6, sampler="iid", threads=1) as one, \
            elpips.Context(seed=2, samples=6, sampler="iid", threads=1, cheap_draws=3) as two:
        r1, r2 = one.compare(a, b), two.compare(a, b)
    assert r2.samples == 6
    assert abs(r1.distance - r2.distance) < 4 * (r1.std_error + r2.std_error)
    with pytest.raises(elpips.ElpipsError, match="not stratified"):
        elpips.Context(samples=6, sampler="stratified", cheap_draws=3)
    with pytest.raises(ValueError):
        elpips.Context(cheap_draws=-1)


def test_samplers_estimate_the_same_thing():
    a, b = pattern(0), pattern(0x55)
    with elpips.Context(seed=1, samples=6, threads=1) as iid, \
            elpips.Context(seed=1, samples=6, sampler="stratified", threads=1) as stratified:
        ri, rs = iid.compare(a, b), stratified.compare(a, b)
    assert ri.samples == rs.samples == 6
    assert abs(ri.distance - rs.distance) < 4 * (ri.std_error + rs.std_error)


def test_library_search_order(monkeypatch, tmp_path):
    monkeypatch.setenv("ELPIPS_LIBRARY", str(tmp_path / "missing.so"))
    with pytest.raises(OSError, match="missing.so"):
        elpips.library_path()
    monkeypatch.delenv("ELPIPS_LIBRARY")
    found = elpips.library_path()  # an installed prefix, or the checkout's target/release
    assert found.name.startswith("libelpips.so")
