#!/usr/bin/env python3
"""The examples' figure equals the command line's: writes the examples' synthetic 64x64 buffers
as PNG files, runs `elpips compare --json` on them with the same seed and sample count, runs each
example binary, and checks that every distance is the very same double.

Usage: example_matches_cli.py ELPIPS_CLI EXAMPLE... (standard library only)."""
import json
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

SEED, SAMPLES, N = 7, 4, 64


def pattern(shift):
    """The pattern of examples/c/compare.c: red (7x) ^ shift, green 5y, blue 3(x + y), mod 256."""
    rows = []
    for y in range(N):
        row = bytearray([0])  # PNG filter type: none
        for x in range(N):
            row += bytes([((x * 7) ^ shift) & 255, (y * 5) & 255, ((x + y) * 3) & 255])
        rows.append(bytes(row))
    return b"".join(rows)


def write_png(path, raw):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", N, N, 8, 2, 0, 0, 0)  # 8-bit RGB
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def main():
    cli, examples = sys.argv[1], sys.argv[2:]
    with tempfile.TemporaryDirectory() as tmp:
        ref, cand = Path(tmp, "reference.png"), Path(tmp, "candidate.png")
        write_png(ref, pattern(0))
        write_png(cand, pattern(0x55))
        out = subprocess.run([cli, "compare", "--json", "--threads", "1", "--seed", str(SEED), "--samples", str(SAMPLES), str(ref), str(cand)],
                             check=True, capture_output=True, text=True).stdout
        want = json.loads(out)["distance"]  # Python parses the shortest round-trip text exactly
    print(f"elpips compare --seed {SEED} --samples {SAMPLES}: {want!r}")
    failed = False
    for exe in examples:
        got = json.loads(subprocess.run([exe, str(SEED), str(SAMPLES)], check=True, capture_output=True, text=True).stdout)
        ok = got["distance"] == want and got.get("prepared_equal", True)
        failed |= not ok
        print(f"{'ok ' if ok else 'BAD'} {exe}: {got['distance']!r}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
