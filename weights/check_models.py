#!/usr/bin/env python3
"""Sanity-check the generated ONNX models with the Python onnxruntime of the converter venv.

    .cache/venv/bin/python weights/check_models.py [--models-dir weights/models] [--quick]

1. The model contract: input/output names and shapes, lin_* defaults, metadata.
2. ONNX Runtime behaviour the Rust side relies on, under graph optimisation level ALL:
   overriding the lin_* initializer-inputs changes the result; [1,1,1,1] ones masks equal full
   ones masks; masks act on both branches at conv inputs (mask_0 = 0 zeroes taps 1..13 but not
   tap 0); batching N=2 equals two N=1 runs; optimisation ALL equals optimisation off.
   The cheap-stream model elpips-vgg.cheap.onnx: exactly the inputs/outputs of its contract, and
   its map_0/map_1 equal the fused model's for a random pair, a random mask_0 and fed lin_0/lin_1.
3. The reference figures of weights/reference_values.json (a verbatim copy of
   shared/reference/values.json): official LPIPS VGG/Alex, LPIPS-VGG with the authors'
   vgg_maxpool.npy linear weights (by overriding lin_* AND by a `convert.py custom` model), and
   the deterministic E-LPIPS-VGG network (identity and the fixed transform).

Prints a table; exits non-zero if anything fails. Relative tolerance 1e-5 (float32).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import convert  # noqa: E402  (reuse the linear-weight reader)

REL_TOL = 1e-5

ROWS: list[tuple] = []
FAILED: list[str] = []


def record(figure, case, expected, got, rel_tol=REL_TOL):
    """Compare one number, add a table row."""
    err = abs(got - expected) / max(abs(expected), 1e-30)
    ok = bool(np.isfinite(got)) and err <= rel_tol
    ROWS.append(("ok" if ok else "FAIL", figure, case,
                 f"expected {expected:.9g}  got {got:.9g}  rel err {err:.1e}"))
    if not ok:
        FAILED.append(f"{figure} {case}: expected {expected}, got {got} (rel err {err:.2e})")
    return err


def check(figure, case, ok, detail=""):
    """Record a structural (boolean) check."""
    ROWS.append(("ok" if ok else "FAIL", figure, case, detail))
    if not ok:
        FAILED.append(f"{figure} {case}: {detail}")


def load_image(path: str) -> np.ndarray:
    """PNG -> float32 [1,3,H,W] RGB in [0,1]; alpha dropped (not composited)."""
    im = Image.open(path)
    im.load()
    if im.mode not in ("RGB", "RGBA"):
        raise SystemExit(f"{path}: unexpected PNG mode {im.mode}")
    a = np.asarray(im, dtype=np.uint8)[:, :, :3].astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray(a.transpose(2, 0, 1)[None])


class Model:
    def __init__(self, path: str, opt=ort.GraphOptimizationLevel.ORT_ENABLE_ALL, data=None):
        so = ort.SessionOptions()
        so.graph_optimization_level = opt
        so.log_severity_level = 3
        self.sess = ort.InferenceSession(data if data is not None else path, so,
                                         providers=["CPUExecutionProvider"])
        self.inputs = {i.name: i for i in self.sess.get_inputs()}
        self.masks = sorted((n for n in self.inputs if n.startswith("mask_")),
                            key=lambda n: int(n[5:]))
        self.lins = sorted((n for n in self.inputs if n.startswith("lin_")),
                           key=lambda n: int(n[4:]))

    def run(self, a, b, lins=None, masks=None):
        feed = {"reference": a, "candidate": b}
        ones = np.ones((1, 1, 1, 1), np.float32)
        for i, m in enumerate(self.masks):
            feed[m] = ones if masks is None or masks[i] is None else masks[i]
        if lins is not None:
            for i, w in enumerate(lins):
                feed[f"lin_{i}"] = np.ascontiguousarray(w, np.float32)
        dist, per_tap = self.sess.run(["distance", "per_tap"], feed)
        return dist, per_tap


def fixed_transform(img: np.ndarray, spec: dict) -> np.ndarray:
    """The values.json 'fixed_transform' on one [1,3,H,W] image, in float32 numpy."""
    x = img[0]
    _, H, W = x.shape
    s = spec["s"]
    oy, ox = spec["scale_off_yx"]
    fh = (s - 1 + H + s - 1) // s * s
    fw = (s - 1 + W + s - 1) // s * s
    x = np.pad(x, ((0, 0), (oy, fh - H - oy), (ox, fw - W - ox)), mode="reflect")
    x = x.reshape(3, fh // s, s, fw // s, s).mean(axis=(2, 4), dtype=np.float32)
    oy, ox = spec["off_yx"]
    x = np.pad(x, ((0, 0), (7 - oy, oy), (7 - ox, ox)), mode="reflect")
    assert spec["flip"] == "both (x and y)" and spec["transpose"] is True
    x = x[:, ::-1, ::-1]
    x = x.transpose(0, 2, 1)
    # "new channel k = old channel perm[k], perm=[2,0,1]"
    perm = [int(v) for v in re.search(r"perm=\[([^\]]*)\]", spec["perm"]).group(1).split(",")]
    x = x[perm]
    x = x * np.asarray(spec["color"], np.float32)[:, None, None]
    return np.ascontiguousarray(x[None], dtype=np.float32)


def contract_checks(name: str, path: str, expect_taps: list[int], masks: int, default_lins):
    m = onnx.load(path, load_external_data=False)
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    ins = {i.name: i for i in g.input}
    outs = [o.name for o in g.output]
    want_outs = ["distance", "per_tap"] + [f"map_{t}" for t in range(len(expect_taps))]
    ok = (m.opset_import[0].version == convert.OPSET and outs == want_outs
          and "reference" in ins and "candidate" in ins)
    check(name, "opset 17, inputs/outputs named", ok, f"ir={m.ir_version} outputs={outs}")
    lin_ok = True
    for t, c in enumerate(expect_taps):
        n = f"lin_{t}"
        dims = [d.dim_value for d in ins[n].type.tensor_type.shape.dim] if n in ins else None
        if n not in ins or n not in inits or dims != [c]:
            lin_ok = False
            continue
        if not np.array_equal(onnx.numpy_helper.to_array(inits[n]), default_lins[t]):
            lin_ok = False
    check(name, f"lin_0..{len(expect_taps)-1} are initializer-inputs with the source weights",
          lin_ok and f"lin_{len(expect_taps)}" not in ins, f"channels {expect_taps}")
    mnames = [f"mask_{k}" for k in range(masks)]
    sym = all(n in ins and all(d.dim_param and not d.dim_value
                               for d in ins[n].type.tensor_type.shape.dim) and n not in inits
              for n in mnames)
    check(name, f"{masks} mask inputs, 4 symbolic dims, no default", sym and
          not any(n.startswith("mask_") and n not in mnames for n in ins), "")
    md = {p.key: p.value for p in m.metadata_props}
    check(name, "metadata", md.get("elpips.name") == name and
          md.get("elpips.tap_channels") == ",".join(map(str, expect_taps)),
          f"taps={md.get('elpips.taps')} pooling={md.get('elpips.pooling')}")


CHEAP_INPUTS = ["reference", "candidate", "mask_0", "lin_0", "lin_1"]  # weights/README.md
CHEAP_OUTPUTS = ["map_0", "map_1"]


def cheap_checks(path: str, fused_path: str, el: Model, default_lins):
    """elpips-vgg.cheap.onnx (the two-stream estimator's cheap stream): the fused model cut to
    taps 0 and 1, so its maps must be the fused model's, whatever the mask and linear weights."""
    name = "elpips-vgg.cheap"
    m = onnx.load(path, load_external_data=False)
    fused = onnx.load(fused_path, load_external_data=False)
    ins = [i.name for i in m.graph.input]
    outs = [o.name for o in m.graph.output]
    check(name, "inputs and outputs exactly the contract's",
          ins == CHEAP_INPUTS and outs == CHEAP_OUTPUTS, f"inputs {ins} outputs {outs}")
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in m.graph.initializer}
    check(name, "lin_0, lin_1 are initializer-inputs with the source weights",
          all(n in inits and np.array_equal(inits[n], default_lins[t])
              for t, n in enumerate(["lin_0", "lin_1"])) and "mask_0" not in inits, "")
    md = {p.key: p.value for p in m.metadata_props}
    fmd = {p.key: p.value for p in fused.metadata_props}
    check(name, "IR, opset and metadata of the fused model (+ elpips.cheap)",
          m.ir_version == fused.ir_version and list(m.opset_import) == list(fused.opset_import)
          and {k: v for k, v in md.items() if k != "elpips.cheap"} == fmd and "elpips.cheap" in md
          and "cheap stream" in m.doc_string,
          f"ir={m.ir_version} opset={m.opset_import[0].version}")
    cheap = Model(path)
    check(name, "ORT inputs reference, candidate, mask_0; lin_0, lin_1 overridable",
          list(cheap.inputs) == CHEAP_INPUTS[:3]
          and sorted(i.name for i in cheap.sess.get_overridable_initializers())
          == ["lin_0", "lin_1"], "")
    # A random pair, a random (dropout-like) mask_0, ones for the fused model's other masks;
    # once with the default linear weights and once with other ones fed to both.
    rng = np.random.default_rng(34)
    H, W = 37, 52
    a = rng.random((1, 3, H, W), dtype=np.float32)
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1).astype(np.float32)
    mask0 = ((rng.random((1, 3, H, W)) < 0.9) / np.float32(0.9)).astype(np.float32)
    ones = np.ones((1, 1, 1, 1), np.float32)
    other = [rng.random(w.shape, dtype=np.float32) for w in default_lins[:2]]
    for case, lins in (("default lin", None), ("fed lin_0, lin_1", other)):
        feed = {"reference": a, "candidate": b, "mask_0": mask0}
        if lins is not None:
            feed.update({f"lin_{t}": w for t, w in enumerate(lins)})
        got = cheap.sess.run(CHEAP_OUTPUTS, feed)
        feed.update({f"mask_{k}": ones for k in range(1, 13)})
        want = el.sess.run(CHEAP_OUTPUTS, feed)
        dev = max(float(np.abs(g - w).max() / np.abs(w).max()) for g, w in zip(got, want))
        check(name, f"map_0, map_1 == the fused model's ({case}, random mask_0)",
              all(g.shape == w.shape for g, w in zip(got, want)) and dev < 1e-6,
              f"max abs dev / max |map| {dev:.1e}")
    del cheap


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models-dir", default=os.path.join(HERE, "models"))
    ap.add_argument("--upstream", default=os.path.join(ROOT, ".cache", "upstream"))
    ap.add_argument("--downloads", default=os.path.join(ROOT, ".cache", "downloads"))
    ap.add_argument("--values", default=os.path.join(HERE, "reference_values.json"))
    ap.add_argument("--quick", action="store_true",
                    help="skip the `convert.py custom` round trip and the fixed-transform figures")
    args = ap.parse_args()
    t0 = time.time()
    with open(args.values, encoding="utf-8") as f:
        values = json.load(f)
    up = args.upstream

    def img(rel):  # values.json paths are relative to shared/: "upstream/..."
        assert rel.startswith("upstream/"), rel
        return load_image(os.path.join(up, rel[len("upstream/"):]))

    path = {n: os.path.join(args.models_dir, n + ".onnx") for n in convert.BASES}
    for n, p in path.items():
        if not os.path.isfile(p):
            raise SystemExit(f"check_models: {p} missing; run `python3 weights/setup.py` first")
    vgg = Model(path["lpips-vgg"])
    alex = Model(path["lpips-alex"])
    el = Model(path["elpips-vgg"])
    maxpool_lins = convert.read_lin_weights_file(os.path.join(up, "elpips/elpips/vgg_maxpool.npy"))
    full_avg_lins = convert.read_lin_weights_file(os.path.join(up, "elpips/elpips/vgg_full_avg.npy"))

    # ---- 1. contract ------------------------------------------------------------------------
    lp = convert.read_lpips_wheel_lins(os.path.join(
        args.downloads, convert.load_manifest()["downloads"]["files"]["lpips"]["filename"]))
    contract_checks("lpips-vgg", path["lpips-vgg"], [64, 128, 256, 512, 512], 0,
                    convert.lin_list_from_dict(lp["vgg"], "vgg.pth"))
    contract_checks("lpips-alex", path["lpips-alex"], [64, 192, 384, 256, 256], 0,
                    convert.lin_list_from_dict(lp["alex"], "alex.pth"))
    contract_checks("elpips-vgg", path["elpips-vgg"],
                    [3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512], 13,
                    full_avg_lins)

    # ---- 2. runtime behaviour on small images (cheap) ---------------------------------------
    a = load_image(os.path.join(up, "lpips/imgs/ex_ref.png"))
    b = load_image(os.path.join(up, "lpips/imgs/ex_p0.png"))
    d0, pt0 = el.run(a, b)
    check("ort", "distance == sum(per_tap), shapes [N],[N,T]",
          d0.shape == (1,) and pt0.shape == (1, 14) and np.allclose(d0, pt0.sum(1), rtol=1e-6),
          f"{d0.shape} {pt0.shape}")
    # per-tap maps: [N,1,H_t,W_t], and each tap's term is exactly its map's spatial mean
    feed = {"reference": a, "candidate": b}
    feed.update({f"mask_{k}": np.ones((1, 1, 1, 1), np.float32) for k in range(13)})
    maps = el.sess.run([f"map_{t}" for t in range(14)], feed)
    means = np.array([mp.mean(axis=(2, 3), dtype=np.float64)[0, 0] for mp in maps])
    check("ort", "per_tap[t] == mean(map_t), maps [N,1,H_t,W_t]",
          all(mp.ndim == 4 and mp.shape[:2] == (1, 1) for mp in maps)
          and maps[0].shape[2:] == a.shape[2:] and np.allclose(means, pt0[0], rtol=1e-5, atol=0),
          f"tap-0 map {maps[0].shape}, tap-13 map {maps[13].shape}, "
          f"max rel dev {np.abs(means / pt0[0] - 1).max():.1e}")
    # lin override: doubling lin_3 doubles per_tap[3] only
    lins = [w.copy() for w in full_avg_lins]
    lins[3] = lins[3] * 2
    _, pt1 = el.run(a, b, lins=lins)
    ratio = pt1[0] / pt0[0]
    check("ort", "overriding lin_3 (x2) under ORT_ENABLE_ALL",
          abs(ratio[3] - 2) < 1e-5 and np.allclose(np.delete(ratio, 3), 1, atol=1e-6),
          f"per_tap ratio {ratio[3]:.6f}, others max dev {np.abs(np.delete(ratio, 3) - 1).max():.1e}")
    # back to defaults after an override (no state kept by the session)
    _, pt2 = el.run(a, b)
    check("ort", "defaults restored on the next run", np.array_equal(pt2, pt0), "")
    # full ones masks == [1,1,1,1] masks; shapes from metadata
    md = {p.key: p.value for p in onnx.load(path["elpips-vgg"], load_external_data=False).metadata_props}
    chans = [int(c) for c in md["elpips.mask_channels"].split(",")]
    pools = [int(c) for c in md["elpips.mask_pools_before"].split(",")]

    def mask_shape(k, n, h, w):
        for _ in range(pools[k]):
            h, w = h // 2, w // 2
        return (n, chans[k], h, w)

    H, W = a.shape[2:]
    full = [np.ones(mask_shape(k, 1, H, W), np.float32) for k in range(13)]
    _, pt3 = el.run(a, b, masks=full)
    check("ort", "full ones masks == [1,1,1,1] masks", np.allclose(pt3, pt0, rtol=1e-6, atol=0),
          f"max rel dev {np.abs(pt3 / pt0 - 1).max():.1e}")
    # mask_0 = 0 on both branches: every conv sees the same (zero) input, taps 1..13 vanish,
    # tap 0 (the normalised image, taken before mask_0) is untouched.
    zero0 = [None] * 13
    zero0[0] = np.zeros(mask_shape(0, 1, H, W), np.float32)
    _, pt4 = el.run(a, b, masks=zero0)
    check("ort", "mask_0 = 0: tap 0 unchanged, taps 1..13 = 0",
          np.allclose(pt4[0, 0], pt0[0, 0], rtol=1e-6) and np.all(pt4[0, 1:] == 0),
          f"tap0 {pt4[0, 0]:.6g} vs {pt0[0, 0]:.6g}, max other {np.abs(pt4[0, 1:]).max():.1e}")
    # a random dropout mask changes the result, and masks broadcast per-sample in a batch
    rng = np.random.default_rng(0)
    drop = [((rng.random(mask_shape(k, 2, H, W)) < 0.99) / np.float32(0.99)).astype(np.float32)
            for k in range(13)]
    ab = np.concatenate([a, a]), np.concatenate([b, load_image(os.path.join(up, "lpips/imgs/ex_p1.png"))])
    _, ptb = el.run(*ab, masks=drop)
    _, pts = el.run(a, b, masks=[m[:1] for m in drop])
    check("ort", "batch N=2 with per-sample masks == N=1 runs",
          np.allclose(ptb[:1], pts, rtol=2e-6, atol=1e-9) and not np.allclose(pts, pt0, rtol=1e-4),
          f"max rel dev {np.abs(ptb[:1] / pts - 1).max():.1e}; dropout moved d by "
          f"{abs(pts.sum() / pt0.sum() - 1):.1%}")
    cheap_path = os.path.join(args.models_dir, "elpips-vgg.cheap.onnx")
    if not os.path.isfile(cheap_path):
        raise SystemExit(f"check_models: {cheap_path} missing; run `python3 weights/setup.py` first")
    cheap_checks(cheap_path, path["elpips-vgg"], el, full_avg_lins)
    # optimisation level ALL vs none
    for name, mdl in (("elpips-vgg", el), ("lpips-vgg", vgg), ("lpips-alex", alex)):
        ref = Model(path[name], opt=ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        x0, y0 = ref.run(a, b)
        x1, y1 = mdl.run(a, b)
        check("ort", f"{name}: ORT_ENABLE_ALL == ORT_DISABLE_ALL",
              np.allclose(y0, y1, rtol=2e-6, atol=1e-9), f"max rel dev {np.abs(x1 / x0 - 1).max():.1e}")

    # smallest valid size (metadata) runs; below it the caller must refuse (ORT may crash)
    for name, mdl in (("elpips-vgg", el), ("lpips-vgg", vgg), ("lpips-alex", alex)):
        mdp = {p.key: p.value for p in onnx.load(path[name], load_external_data=False).metadata_props}
        n = int(mdp.get("elpips.min_input_size", "0"))
        d, _ = mdl.run(a[:, :, :n, :n].copy(), b[:, :, :n, :n].copy()) if n else (np.nan, None)
        check("ort", f"{name}: runs at elpips.min_input_size", bool(n) and np.isfinite(d).all(),
              f"min size {n}x{n}")

    # ---- 3. reference figures ---------------------------------------------------------------
    maxerr = {}

    def fig(key, case, expected, got):
        e = record(key, case, expected, float(got))
        maxerr[key] = max(maxerr.get(key, 0.0), e)

    cache = {}

    def pair(p):
        k = (p["a"], p["b"])
        if k not in cache:
            cache[k] = img(p["a"]), img(p["b"])
        return cache[k]

    short = lambda p: f"{os.path.basename(p['a'])}|{os.path.basename(p['b'])}"  # noqa: E731
    for p in values["lpips_official_v0.1"]["pairs"]:
        x, y = pair(p)
        if "lpips_vgg" in p:
            fig("lpips_official_v0.1/vgg", short(p), p["lpips_vgg"], vgg.run(x, y)[0][0])
        if "lpips_alex" in p:
            fig("lpips_official_v0.1/alex", short(p), p["lpips_alex"], alex.run(x, y)[0][0])

    custom = values["lpips_vgg_custom_linear_weights"]
    for p in custom["pairs"]:
        x, y = pair(p)
        fig("lpips_vgg_custom_linear_weights/override", short(p), p["distance"],
            vgg.run(x, y, lins=maxpool_lins)[0][0])
    if not args.quick:
        with tempfile.TemporaryDirectory() as td:
            out = os.path.join(td, "lpips-vgg-maxpool.onnx")
            r = subprocess.run([sys.executable, os.path.join(HERE, "convert.py"),
                                "--downloads", args.downloads, "--upstream", up, "custom",
                                "--base", "lpips-vgg", "--lin-weights",
                                os.path.join(up, "elpips/elpips/vgg_maxpool.npy"), "-o", out],
                               capture_output=True, text=True)
            check("convert.py custom", "builds lpips-vgg + vgg_maxpool.npy", r.returncode == 0,
                  (r.stderr or r.stdout).strip().splitlines()[-1][:60] if r.returncode else "")
            if r.returncode == 0:
                cm = Model(out)
                for p in custom["pairs"]:
                    x, y = pair(p)
                    fig("lpips_vgg_custom_linear_weights/custom-model", short(p), p["distance"],
                        cm.run(x, y)[0][0])
                del cm

    det = values["elpips_vgg_network_deterministic"]
    for p in det["pairs"]:
        x, y = pair(p)
        fig("elpips_vgg_network_deterministic/identity", short(p), p["identity"], el.run(x, y)[0][0])
        if not args.quick:
            tx, ty = fixed_transform(x, det["fixed_transform"]), fixed_transform(y, det["fixed_transform"])
            fig("elpips_vgg_network_deterministic/fixed_transform", short(p), p["fixed_transform"],
                el.run(tx, ty)[0][0])

    # ---- report -----------------------------------------------------------------------------
    hdr = ("", "figure / check", "case", "detail")
    w = [max(len(str(r[i])) for r in ROWS + [hdr]) for i in range(4)]
    line = lambda r: "  ".join(str(c).ljust(w[i]) for i, c in enumerate(r)).rstrip()  # noqa: E731
    print(line(hdr))
    print("  ".join("-" * x for x in w))
    for r in ROWS:
        print(line(r))
    print()
    for k, v in maxerr.items():
        print(f"max rel err {k}: {v:.2e}")
    print(f"onnxruntime {ort.__version__}, onnx {onnx.__version__}, numpy {np.__version__}; "
          f"{time.time() - t0:.1f} s")
    if FAILED:
        print(f"\n{len(FAILED)} check(s) FAILED:", file=sys.stderr)
        for f in FAILED:
            print("  " + f, file=sys.stderr)
        return 1
    print(f"all {len(ROWS)} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
