"""The ctypes mirrors of the C structs have the C header's layout, and the binding's constant
tables hold every value the header defines.

A tiny C program, compiled against the installed header (beside the library that
$ELPIPS_LIBRARY names: <prefix>/lib/libelpips.so.0 -> <prefix>/include/elpips.h), prints
sizeof and the offsetof of every field of each struct; ctypes' sizes and offsets must equal them.
A field added to the header but not to the binding (or the reverse) fails here, before it can
shift the fields after it."""
import ctypes
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import elpips
from elpips import _Decision, _Gate, _Image, _Options, _Result

STRUCTS = {"ElpipsOptions": _Options, "ElpipsImage": _Image, "ElpipsResult": _Result,
           "ElpipsGate": _Gate, "ElpipsDecision": _Decision}


def header() -> Path:
    lib = os.environ.get("ELPIPS_LIBRARY")
    assert lib, "set ELPIPS_LIBRARY to an installed libelpips (make test-python does)"
    h = Path(lib).resolve().parent.parent / "include" / "elpips.h"
    assert h.is_file(), f"{h} not found: the layout test needs the installed header"
    return h


def c_fields(h: Path, struct: str) -> list:
    """The field names of `typedef struct NAME { ... } NAME;` in the header, in order."""
    text = re.sub(r"/\*.*?\*/", "", h.read_text(), flags=re.S)
    m = re.search(r"typedef struct %s \{(.*?)\} %s;" % (struct, struct), text, re.S)
    assert m, f"struct {struct} not in {h}"
    names = []
    for decl in m.group(1).split(";"):
        decl = decl.strip()
        if decl:
            names.append(re.match(r".*?(\w+)\s*(\[\d+\])?$", decl, re.S).group(1))
    return names


@pytest.fixture(scope="module")
def c_layout(tmp_path_factory):
    h = header()
    cc = shutil.which(os.environ.get("CC", "cc"))
    assert cc, "a C compiler is needed (make deps installs gcc)"
    lines = ["#include <stddef.h>", "#include <stdio.h>", f'#include "{h}"', "int main(void) {"]
    for struct in STRUCTS:
        lines.append(f'  printf("{struct} sizeof %zu\\n", sizeof({struct}));')
        for f in c_fields(h, struct):
            lines.append(f'  printf("{struct} {f} %zu\\n", offsetof({struct}, {f}));')
    lines += ["  return 0;", "}"]
    d = tmp_path_factory.mktemp("layout")
    (d / "layout.c").write_text("\n".join(lines) + "\n")
    subprocess.run([cc, "-std=c99", "-Wall", "-Werror", str(d / "layout.c"), "-o", str(d / "layout")], check=True)
    out = subprocess.run([str(d / "layout")], check=True, capture_output=True, text=True).stdout
    layout = {}
    for line in out.splitlines():
        struct, field, value = line.split()
        layout.setdefault(struct, {})[field] = int(value)
    return layout


@pytest.mark.parametrize("struct", sorted(STRUCTS))
def test_struct_layout_matches_the_header(struct, c_layout):
    cls = STRUCTS[struct]
    c = c_layout[struct]
    fields = [name for name, _ in cls._fields_]
    assert fields == [k for k in c if k != "sizeof"], f"{struct}: ctypes fields differ from the header's"
    for name in fields:
        assert getattr(cls, name).offset == c[name], f"{struct}.{name}: ctypes offset {getattr(cls, name).offset}, C {c[name]}"
    assert ctypes.sizeof(cls) == c["sizeof"], f"{struct}: ctypes size {ctypes.sizeof(cls)}, C {c['sizeof']}"


def defines(prefix: str) -> dict:
    text = header().read_text()
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^#define (%s\w*) (\d+)$" % prefix, text, re.M)}


def test_status_table_covers_every_status():
    want = {v: k[len("ELPIPS_STATUS_"):] for k, v in defines("ELPIPS_STATUS_").items()}
    want[defines("ELPIPS_OK")["ELPIPS_OK"]] = "OK"
    assert elpips.STATUS == want


@pytest.mark.parametrize("table,prefix", [
    ("_METRICS", "ELPIPS_METRIC_"), ("_DEVICES", "ELPIPS_DEVICE_"), ("_BACKENDS", "ELPIPS_BACKEND_"), ("_SAMPLERS", "ELPIPS_SAMPLER_"),
    ("_TONEMAPS", "ELPIPS_TONEMAP_"), ("_ALPHAS", "ELPIPS_ALPHA_"),
])
def test_name_tables_match_the_header(table, prefix):
    """Each name the binding accepts maps to the header's value of the same name."""
    c = defines(prefix)
    for name, value in getattr(elpips, table).items():
        key = prefix + name.upper().replace("-", "_")
        assert c.get(key) == value, f"{table}[{name!r}] = {value}, header {key} = {c.get(key)}"
    assert len(getattr(elpips, table)) == len(c), f"{table} lacks some of {sorted(c)}"


def test_verdicts_and_pixel_formats_match_the_header():
    sides = defines("ELPIPS_SIDE_")
    assert {v: k[len("ELPIPS_SIDE_"):].lower() for k, v in sides.items()} == elpips._VERDICTS
    formats = defines("ELPIPS_PIXEL_FORMAT_")
    names = {(1, 3): "RGB8", (1, 4): "RGBA8", (2, 3): "RGB16", (2, 4): "RGBA16", (4, 3): "RGB_F32", (4, 4): "RGBA_F32"}
    got = {"ELPIPS_PIXEL_FORMAT_" + names[(dtype.itemsize, ch)]: v for (dtype, ch), v in elpips._FORMATS.items()}
    assert got == formats
    assert (elpips._SAMPLING_ADAPTIVE, elpips._SAMPLING_FIXED) == (defines("ELPIPS_SAMPLING_")["ELPIPS_SAMPLING_ADAPTIVE"], defines("ELPIPS_SAMPLING_")["ELPIPS_SAMPLING_FIXED"])
    assert (elpips._TRANSFER_SRGB, elpips._TRANSFER_LINEAR) == (defines("ELPIPS_TRANSFER_")["ELPIPS_TRANSFER_SRGB"], defines("ELPIPS_TRANSFER_")["ELPIPS_TRANSFER_LINEAR"])


def test_sample_limit_matches_the_header():
    assert elpips._MAX_SAMPLES == defines("ELPIPS_MAX_SAMPLES")["ELPIPS_MAX_SAMPLES"]
