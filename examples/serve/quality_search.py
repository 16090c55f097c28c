#!/usr/bin/env python3
"""An external quality search over `elpips serve --stdio` (Python standard library only).

Finds the lowest JPEG quality whose output is shown to be within --max-distance of the original
by E-LPIPS: bisection over 1..100, one `encode` and one `decide` request per probe, the models
loaded once by the server for the whole search. A real tuner would encode with its own encoder
(ffmpeg, cjpeg, an AV1 encoder...) and send only `decide` or `compare_reference`; the server's
`encode` op (elpips's built-in codec shims) keeps this example free of other tools.

    python3 examples/serve/quality_search.py --max-distance 0.01 photo.png

Prints one line per probe on stderr and, last on stdout, one JSON object:
{"quality", "bytes", "distance", "ci95", "upper", "probes"}. Exit 1 when even quality 100 is not
shown within the goal, 2 on an error.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile


class Server:
    """One `elpips serve --stdio` process; `request` sends a line and reads its answer."""

    def __init__(self, elpips, extra=()):
        self.proc = subprocess.Popen([elpips, "serve", "--stdio", *extra], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.next_id = 0

    def request(self, op, **fields):
        self.next_id += 1
        self.proc.stdin.write(json.dumps({"id": self.next_id, "op": op, **fields}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("elpips serve exited (see its message above)")
        answer = json.loads(line)
        if answer.get("id") != self.next_id:
            raise RuntimeError(f"answer to request {answer.get('id')}, expected {self.next_id}")
        if "error" in answer:
            raise RuntimeError(f"{op}: {answer['error']}")
        return answer

    def close(self):
        self.proc.stdin.close()  # EOF: the server exits 0
        return self.proc.wait()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("image")
    p.add_argument("--max-distance", type=float, required=True)
    p.add_argument("--codec", default="jpeg")
    p.add_argument("--samples", type=int, default=16, help="E-LPIPS samples at a probe's first look")
    p.add_argument("--max-samples", type=int, default=200, help="E-LPIPS samples per probe at most")
    p.add_argument("--elpips", default="elpips", help="the elpips executable")
    p.add_argument("--workdir", default=None, help="where the decoded probes go [default: a temporary folder]")
    a = p.parse_args()
    workdir = a.workdir or tempfile.mkdtemp(prefix="elpips-search-")
    server = Server(a.elpips)
    probes = {}

    def probe(q):
        decoded = os.path.join(workdir, f"q{q}.png")
        enc = server.request("encode", image=a.image, codec=a.codec, quality=q, decoded=decoded)
        d = server.request("decide", reference=a.image, candidate=decoded, max_distance=a.max_distance, min_samples=a.samples, max_samples=a.max_samples)
        probes[q] = {"quality": q, "bytes": enc["bytes"], "distance": d["distance"], "ci95": d["ci95"], "upper": d["upper"]}
        print(f"quality {q:3}: {enc['bytes']:7} bytes, distance {d['distance']:.4f} ± {d['ci95']:.4f} ({d['verdict']})", file=sys.stderr)
        return d["verdict"] == "below"

    try:
        lo, hi = 1, 100
        if not probe(hi):
            print(f"even quality {hi} is not shown within {a.max_distance}", file=sys.stderr)
            server.close()
            return 1
        # Invariant: hi meets the goal; every quality below lo that was probed does not.
        while lo < hi:
            mid = (lo + hi) // 2
            if probe(mid):
                hi = mid
            else:
                lo = mid + 1
    except (RuntimeError, OSError, ValueError) as e:
        print(f"quality_search: {e}", file=sys.stderr)
        server.close()
        return 2
    status = server.close()
    print(json.dumps({**probes[hi], "probes": len(probes)}))
    return 0 if status == 0 else 2


if __name__ == "__main__":
    sys.exit(main())
