"""The pytest plugin (pytest_elpips), run on inner test files through pytester: its assertion
passes and fails where it should, says why, reports to JUnit, and refuses bad options."""
import struct
import zlib

import numpy as np
import pytest

pytest_plugins = ["pytester"]


def pattern(shift, n=64):
    y, x = np.mgrid[0:n, 0:n].astype(np.int64)
    return np.stack([((x * 7) ^ shift) & 255, (y * 5) & 255, ((x + y) * 3) & 255], axis=-1).astype(np.uint8)


def write_png(path, rgb):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    h, w, _ = rgb.shape
    raw = b"".join(b"\0" + rgb[r].tobytes() for r in range(h))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


@pytest.fixture
def images(tmp_path):
    return write_png(tmp_path / "ref.png", pattern(0)), write_png(tmp_path / "cand.png", pattern(40))


INNER = '''
import numpy as np
from test_plugin_helpers import REF, CAND, pattern

def test_same_file(assert_elpips_below):
    assert assert_elpips_below(REF, REF, 0.001).distance == 0

def test_different_file(assert_elpips_below):
    assert_elpips_below(REF, CAND, 0.001)

def test_generous_threshold(assert_elpips_below):
    r = assert_elpips_below(REF, CAND, 0.99)
    assert 0.001 < r.distance <= 0.99

def test_arrays(assert_elpips_below):
    assert_elpips_below(pattern(0), pattern(0), 0.001)

def test_mixed_kinds_are_refused(assert_elpips_below):
    assert_elpips_below(REF, pattern(0), 0.1)
'''


def inner(pytester, images):
    ref, cand = images
    pytester.makepyfile(test_plugin_helpers=f"import numpy as np\nREF = {str(ref)!r}\nCAND = {str(cand)!r}\n"
                        f"def pattern(shift, n=64):\n"
                        f"    y, x = np.mgrid[0:n, 0:n].astype(np.int64)\n"
                        f"    return np.stack([((x * 7) ^ shift) & 255, (y * 5) & 255, ((x + y) * 3) & 255], axis=-1).astype(np.uint8)\n")
    pytester.makepyfile(test_inner=INNER)


def test_assertions_pass_and_fail_with_the_figures(pytester, images):
    inner(pytester, images)
    junit = pytester.path / "report.xml"
    result = pytester.runpytest("--elpips-metric", "lpips-alex", f"--junitxml={junit}")
    result.assert_outcomes(passed=3, failed=2)
    result.stdout.fnmatch_lines([
        '*lpips-alex distance of "*cand.png" from "*ref.png" is 0.* ± 0.0000 (95%, 1 samples), above the allowed 0.001*',
        "*TypeError: give reference and candidate both as file paths or both as numpy arrays*",
    ])
    xml = junit.read_text()
    assert '<property name="elpips_distance"' in xml and '<property name="elpips_max_distance" value="0.99"' in xml


def test_elpips_with_fixed_samples_from_the_ini_file(pytester, images):
    inner(pytester, images)
    pytester.makeini("[pytest]\nelpips_samples = 4\nelpips_seed = 3\n")
    result = pytester.runpytest("-k", "different_file")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*elpips-vgg distance of * is 0.* ± 0.* (95%, 4 samples), above the allowed 0.001*"])


def test_bad_options_are_reported(pytester, images):
    inner(pytester, images)
    result = pytester.runpytest("--elpips-metric", "nope", "-k", "same_file")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*pytest-elpips cannot make its context: unknown metric 'nope'*"])
    result = pytester.runpytest("--elpips-seed", "x", "-k", "same_file")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*--elpips-seed takes an integer, not 'x'*"])


def test_the_gate_stops_at_the_first_clear_look(pytester, images):
    inner(pytester, images)
    pytester.makepyfile(test_gate="from test_plugin_helpers import REF, CAND\n"
                        "def test_gate(assert_elpips_below):\n"
                        "    assert assert_elpips_below(REF, CAND, 0.99).samples == 8\n")
    result = pytester.runpytest("-k", "test_gate")
    result.assert_outcomes(passed=1)
