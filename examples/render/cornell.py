#!/usr/bin/env python3
"""Render the frames for the end-to-end gate example: a Cornell box, five ways.

    .cache/e2e-venv/bin/python examples/render/cornell.py --out .cache/e2e

Writes, for each frame, a linear OpenEXR (`NAME.exr`, what a renderer hands over) and a 16-bit
sRGB-encoded PNG (`NAME.png`, exposure 1, clamped to [0,1]):

  reference  Mitsuba 3 path tracer at --ref-spp samples per pixel (the converged image)
  noisy      the same scene at --spp samples per pixel, another seed
  denoised   `noisy` through Open Image Denoise (RT filter, HDR, with albedo and normal AOVs)
  blurred    a broken "denoiser": `noisy` under a heavy Gaussian blur (sigma --blur-sigma pixels)
  splotched  `denoised` with one bright magenta 6x6 blotch: a local artefact that only a map rule catches

plus `manifest.csv`, the first three candidates against the reference for `elpips check --manifest`,
each with the example's threshold (--max-distance, default 0.015: the denoised frame sits well
below it, the noisy and the blurred ones well above).

Variant scalar_rgb and a box reconstruction filter, so each pixel holds only its own samples
(a wider filter would correlate neighbouring pixels' noise and blur the reference). Renders are
deterministic for a given seed, parameters and Mitsuba version; `stamp.json` records them and a
second run with the same ones does nothing, so CI renders once per fresh clone.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import sys
import tempfile
import time

import numpy as np


def render(mi, size: int, spp: int, seed: int, with_aovs: bool) -> dict[str, np.ndarray]:
    scene = mi.cornell_box()
    scene["sensor"]["film"].update(width=size, height=size, rfilter={"type": "box"})
    scene["sensor"]["sampler"]["sample_count"] = spp
    path = {"type": "path", "max_depth": 8}
    if with_aovs:
        # OIDN's auxiliary features; the film's channels are colour, then the AOVs in order.
        scene["integrator"] = {"type": "aov", "aovs": "albedo:albedo,normal:sh_normal", "image": path}
    else:
        scene["integrator"] = path
    out = np.array(mi.render(mi.load_dict(scene), seed=seed), dtype=np.float32)
    frames = {"color": out[..., 0:3]}
    if with_aovs:
        frames["albedo"] = out[..., 3:6]
        frames["normal"] = out[..., 6:9]
    return frames


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with edge clamping (what a broken denoiser might as well do)."""
    r = int(np.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    p = np.pad(img, ((r, r), (r, r), (0, 0)), mode="edge")
    h, w = img.shape[:2]
    rows = sum(k[i] * p[i:i + h, :, :] for i in range(2 * r + 1))
    return sum(k[i] * rows[:, i:i + w, :] for i in range(2 * r + 1)).astype(np.float32)


def splotch(img: np.ndarray) -> np.ndarray:
    """The denoised frame with one small local artefact: a bright magenta 6x6 blotch on the back wall
    (36 pixels, what a cluster of unresolved fireflies leaves). Its mean distance is as small as
    the denoiser's, so only a rule on the map catches it (tests/e2e/render_gate.py)."""
    out = img.copy()
    h, w = out.shape[:2]
    y, x = h * 2 // 5, w // 2
    out[y:y + 6, x:x + 6, :3] = (6.0, 0.0, 6.0)
    return out


def write_atomic(path: str, write) -> None:
    """Write through a temporary name in the same folder and rename, so no half-written file is
    ever seen under the final name."""
    d, base = os.path.split(path)
    fd, tmp = tempfile.mkstemp(prefix="." + base + ".", suffix=os.path.splitext(base)[1], dir=d)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save(mi, out: str, name: str, linear: np.ndarray) -> None:
    bmp = mi.Bitmap(np.ascontiguousarray(linear), mi.Bitmap.PixelFormat.RGB)
    write_atomic(os.path.join(out, name + ".exr"), lambda p: bmp.write(p))
    # Display-referred copy: exposure 1, clamp, sRGB transfer, 16 bits.
    png = bmp.convert(mi.Bitmap.PixelFormat.RGB, mi.Struct.Type.UInt16, srgb_gamma=True)
    write_atomic(os.path.join(out, name + ".png"), lambda p: png.write(p))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=".cache/e2e", help="output folder (git-ignored; default .cache/e2e)")
    ap.add_argument("--size", type=int, default=128, help="image width and height in pixels (default 128)")
    ap.add_argument("--spp", type=int, default=4, help="samples per pixel of the noisy frame (default 4)")
    ap.add_argument("--ref-spp", type=int, default=256, help="samples per pixel of the reference (default 256)")
    ap.add_argument("--blur-sigma", type=float, default=3.0, help="blur of the broken denoiser, pixels (default 3)")
    ap.add_argument("--max-distance", type=float, default=0.015, help="threshold written into manifest.csv (default 0.015)")
    ap.add_argument("--force", action="store_true", help="render even if stamp.json says the frames are current")
    a = ap.parse_args()
    for name in ("size", "spp", "ref_spp"):
        if getattr(a, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    if not a.blur_sigma > 0:
        ap.error("--blur-sigma must be positive")

    import mitsuba as mi
    import pyoidn

    mi.set_variant("scalar_rgb")
    with open(__file__, "rb") as f:
        script = hashlib.sha256(f.read()).hexdigest()
    stamp = {"size": a.size, "spp": a.spp, "ref_spp": a.ref_spp, "blur_sigma": a.blur_sigma,
             "mitsuba": mi.__version__, "pyoidn": importlib.metadata.version("pyoidn"),
             "script_sha256": script}
    os.makedirs(a.out, exist_ok=True)
    stamp_path = os.path.join(a.out, "stamp.json")
    names = ("reference", "noisy", "denoised", "blurred", "splotched")

    def write_manifest(p):
        with open(p, "w", encoding="utf-8") as f:
            f.write("name,reference,candidate,max_distance\n")
            for n in names[1:4]:
                f.write(f"{n},reference.png,{n}.png,{a.max_distance}\n")
    write_atomic(os.path.join(a.out, "manifest.csv"), write_manifest)
    if not a.force and os.path.isfile(stamp_path) and all(
            os.path.isfile(os.path.join(a.out, n + e)) for n in names for e in (".exr", ".png")):
        with open(stamp_path, encoding="utf-8") as f:
            if json.load(f).get("params") == stamp:
                print(f"frames in {a.out} are current (stamp.json; --force renders again); wrote manifest.csv")
                return 0

    timings = {}
    t = time.perf_counter()
    ref = render(mi, a.size, a.ref_spp, seed=1000, with_aovs=False)["color"]
    timings["reference_s"] = time.perf_counter() - t
    t = time.perf_counter()
    low = render(mi, a.size, a.spp, seed=1, with_aovs=True)
    timings["noisy_s"] = time.perf_counter() - t
    t = time.perf_counter()
    denoised = pyoidn.denoise(low["color"], low["albedo"], low["normal"], hdr=True)
    timings["denoise_s"] = time.perf_counter() - t
    blurred = gaussian_blur(low["color"], a.blur_sigma)
    splotched = splotch(denoised)

    for name, img in zip(names, (ref, low["color"], denoised, blurred, splotched)):
        if not np.isfinite(img).all():
            print(f"cornell.py: {name} has non-finite pixels; refusing to write it", file=sys.stderr)
            return 1
        save(mi, a.out, name, img)

    def write_stamp(p):
        with open(p, "w", encoding="utf-8") as f:
            json.dump({"params": stamp, "timings": {k: round(v, 2) for k, v in timings.items()}}, f, indent=1)
            f.write("\n")
    write_atomic(stamp_path, write_stamp)
    print(f"wrote {', '.join(names)} (.exr linear, .png sRGB 16-bit) to {a.out}; "
          + ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in timings.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
