#!/usr/bin/env python3
"""Compose the README's figure (docs/img/cornell-gate.png) from the end-to-end frames.

    .cache/e2e-venv/bin/python examples/render/figure.py --frames .cache/e2e --out docs/img/cornell-gate.png

Top row: reference, noisy, denoised, blurred (the 16-bit sRGB PNGs, shown as 8-bit). Bottom row,
when the frames folder holds them (written by `elpips check --heatmap`): the E-LPIPS heatmap of
each candidate against the reference, under the frame it belongs to.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", default=".cache/e2e")
    ap.add_argument("--out", default="docs/img/cornell-gate.png")
    a = ap.parse_args()
    import mitsuba as mi
    mi.set_variant("scalar_rgb")

    def load(name):
        bmp = mi.Bitmap(os.path.join(a.frames, name)).convert(mi.Bitmap.PixelFormat.RGB, mi.Struct.Type.Float32, srgb_gamma=True)
        return np.array(bmp, dtype=np.float32)

    names = ("reference", "noisy", "denoised", "blurred")
    top = np.concatenate([load(n + ".png") for n in names], axis=1)
    rows = [top]
    heat = [os.path.join(a.frames, f"heatmap-{n}.png") for n in names[1:]]
    if all(os.path.isfile(h) for h in heat):
        blank = np.ones_like(load("reference.png"))
        rows.append(np.concatenate([blank] + [load(os.path.basename(h)) for h in heat], axis=1))
    img = np.concatenate(rows, axis=0)
    # The pixels are sRGB-encoded already: quantise them as they are.
    out = mi.Bitmap(np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8), mi.Bitmap.PixelFormat.RGB)
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    tmp = a.out + ".part.png"
    out.write(tmp)
    os.replace(tmp, a.out)
    print(f"wrote {a.out} ({img.shape[1]}x{img.shape[0]}, {'with' if len(rows) > 1 else 'without'} heatmaps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
