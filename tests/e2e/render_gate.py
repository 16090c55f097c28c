#!/usr/bin/env python3
"""End-to-end: the gate on real renders (`make test-e2e`; frames from examples/render/cornell.py).

    python3 tests/e2e/render_gate.py --elpips target/release/elpips --frames .cache/e2e

Checks, with `elpips check` on the Cornell box frames:
  * the OIDN-denoised frame passes at the manifest's threshold, stopping before the sample cap;
  * the manifest run, in two shards merged afterwards, passes `denoised` and fails `noisy` and
    `blurred` (exit 1), and its JUnit report says so;
  * with --heatmap, the blurred frame's heatmap is written (PNG, inferno colour map);
  * a small local artefact (the splotched frame) passes --max-distance but fails the map rules,
    which the denoised frame passes.
Standard library only; prints one line per check and exits non-zero on the first wrong outcome.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET


def run(cmd: list[str], expect: int) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != expect:
        sys.exit(f"render_gate: `{' '.join(cmd)}` exited {r.returncode}, expected {expect}\n"
                 f"stdout: {r.stdout}\nstderr: {r.stderr}")
    return r


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--elpips", required=True)
    ap.add_argument("--frames", required=True)
    ap.add_argument("--threads", default="0")
    a = ap.parse_args()
    frames = a.frames
    manifest = os.path.join(frames, "manifest.csv")
    with open(manifest, newline="", encoding="utf-8") as f:
        rows = {r["name"]: r for r in csv.DictReader(f)}
    threshold = rows["denoised"]["max_distance"]
    base = [a.elpips, "check", "--threads", a.threads]

    # One pair, the renderer's linear EXRs (tone-mapped by elpips), JSON out: the denoised frame
    # passes, decided early.
    r = run(base + [os.path.join(frames, "reference.exr"), os.path.join(frames, "denoised.exr"),
                    "--max-distance", threshold, "--json"], expect=0)
    v = json.loads(r.stdout)
    assert v["verdict"] == "below" and v["samples"] < v["settings"]["max_samples"], v
    print(f"ok   denoised passes: {v['distance']:.4f} ± {v['ci95']:.4f} <= {threshold} after {v['samples']} samples")

    with tempfile.TemporaryDirectory(dir=frames) as tmp:
        # The manifest in two shards (as two CI jobs would run it), then merged.
        parts = []
        for i in range(2):
            p = os.path.join(tmp, f"shard{i}.json")
            rr = subprocess.run(base + ["--manifest", manifest, "--shard", f"{i}/2", "--summary", p],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if rr.returncode not in (0, 1):
                sys.exit(f"render_gate: shard {i}/2 failed with exit {rr.returncode}: {rr.stderr}")
            parts.append(p)
        junit = os.path.join(tmp, "junit.xml")
        r = run(base + ["--merge", *parts, "--junit", junit, "--json"], expect=1)
        summary = json.loads(r.stdout)
        got = {x["name"]: x["status"] for x in summary["results"]}
        want = {"noisy": "fail", "denoised": "pass", "blurred": "fail"}
        assert got == want, got
        for x in summary["results"]:
            print(f"ok   {x['name']:<9} {x['status']}: {x['distance']:.4f} ± {x['ci95']:.4f} "
                  f"vs {x['max_distance']} ({x['verdict']} after {x['samples']} samples)")
        suite = ET.parse(junit).getroot()
        assert suite.get("tests") == "3" and suite.get("failures") == "2" and suite.get("errors") == "0", suite.attrib
        failed = sorted(c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None)
        assert failed == ["blurred", "noisy"], failed
        print("ok   shards 0/2 and 1/2 merged; JUnit report: 3 tests, 2 failures (blurred, noisy)")

    # The heatmap of the broken denoiser: where it differs from the reference.
    heatmap = os.path.join(frames, "heatmap-blurred.png")
    r = run(base + [os.path.join(frames, "reference.exr"), os.path.join(frames, "blurred.exr"),
                    "--max-distance", threshold, "--heatmap", heatmap, "--json"], expect=1)
    v = json.loads(r.stdout)
    with open(heatmap, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n", "the heatmap is a PNG"
    assert v["heatmap"]["max"] > v["distance"], v["heatmap"]
    print(f"ok   heatmap of the blurred frame: {heatmap} (max {v['heatmap']['max']:.4f})")
    # A local artefact (a bright magenta 6x6 blotch on the denoised frame): its mean distance
    # passes the threshold, so only the rules on the map catch it; the denoised frame passes them.
    rules = ["--pixel-threshold", "0.03", "--max-fail-percent", "0.005", "--hard-fail", "0.04",
             "--map-samples", "64"]
    splotched = os.path.join(frames, "splotched.exr")
    r = run(base + [os.path.join(frames, "reference.exr"), splotched, "--max-distance", threshold, "--json"], expect=0)
    v = json.loads(r.stdout)
    print(f"ok   splotched passes the distance alone: {v['distance']:.4f} <= {threshold}")
    r = run(base + [os.path.join(frames, "reference.exr"), splotched, "--max-distance", threshold, *rules,
                    "--json"], expect=1)
    v = json.loads(r.stdout)
    assert v["map"]["verdict"] == "above" and v["distance"] <= float(threshold), v
    print(f"ok   splotched fails the map rules: {v['map']['fail_percent_lower']:.3f}% of pixels surely above 0.03, "
          f"max >= {v['map']['max_lower']:.3f}")
    r = run(base + [os.path.join(frames, "reference.exr"), os.path.join(frames, "denoised.exr"),
                    "--max-distance", threshold, *rules, "--json"], expect=0)
    v = json.loads(r.stdout)
    assert v["map"]["verdict"] == "below", v
    print(f"ok   denoised passes the same map rules (max <= {v['map']['max_upper']:.3f})")
    print("render_gate: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
