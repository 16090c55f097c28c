//! Heatmaps from the real networks: identical images give zero, a local distortion lights up
//! where it is, the map's mean is the distance, and the C ABI returns the same map.

mod common;

use common::*;
use elpips::capi::*;
use elpips::{Image, MetricKind, MetricOptions, SamplerKind, Sampling};

const N: u32 = 96;

/// A smooth colourful 96x96 test image.
fn base() -> Vec<f32> {
    let n = (N * N) as usize;
    let mut d = vec![0.0; 3 * n];
    for y in 0..N as usize {
        for x in 0..N as usize {
            let (fx, fy) = (x as f32 / N as f32, y as f32 / N as f32);
            d[y * N as usize + x] = 0.5 + 0.4 * (7.0 * fx + 3.0 * fy).sin();
            d[n + y * N as usize + x] = 0.5 + 0.4 * (5.0 * fy).cos() * fx;
            d[2 * n + y * N as usize + x] = 0.3 + 0.5 * fx * fy;
        }
    }
    d
}

/// `base` with strong seeded noise in the 24x24 top-left corner only.
fn corner_noise() -> Vec<f32> {
    let mut d = base();
    let n = (N * N) as usize;
    let mut s = 12345u32;
    for c in 0..3 {
        for y in 0..24 {
            for x in 0..24 {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let v = &mut d[c * n + y * N as usize + x];
                *v = (*v + ((s >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 0.8).clamp(0.0, 1.0);
            }
        }
    }
    d
}

fn img(d: Vec<f32>) -> Image {
    Image::from_planar(N, N, d).unwrap()
}

/// E-LPIPS with two scale levels, so that scale, offset, flips and transposes are all drawn.
fn elpips(samples: u32, sampler: SamplerKind) -> elpips::Metric {
    metric_with(MetricOptions { sampling: Sampling::Fixed(samples), seed: 3, scale_levels: Some(2), sampler, runtime: elpips::RuntimeOptions { threads: 2, ..Default::default() }, ..Default::default() })
}

#[test]
fn identical_images_give_a_zero_map() {
    let a = img(base());
    let (e, map) = elpips(4, SamplerKind::Iid).compare_with_heatmap(&a, &a, &mut |_| {}).unwrap();
    assert_eq!(e.distance, 0.0);
    assert_eq!((map.width(), map.height()), (N, N));
    assert!(map.data().iter().all(|&v| v == 0.0));
    let (_, map) = metric(MetricKind::LpipsAlex).compare_with_heatmap(&a, &a, &mut |_| {}).unwrap();
    assert!(map.data().iter().all(|&v| v == 0.0));
}

#[test]
fn a_corner_distortion_lights_up_its_corner_and_the_mean_is_the_distance() {
    let (a, b) = (img(base()), img(corner_noise()));
    for (name, mut m) in [("elpips iid", elpips(6, SamplerKind::Iid)), ("elpips stratified", elpips(6, SamplerKind::Stratified)), ("lpips-vgg", metric(MetricKind::LpipsVgg))] {
        let (e, map) = m.compare_with_heatmap(&a, &b, &mut |_| {}).unwrap();
        // The estimate is the one compare() gives, and the map's mean is that distance.
        let plain = m.compare(&a, &b).unwrap();
        assert!((e.distance - plain.distance).abs() <= 1e-6 * plain.distance, "{name}: {} vs {}", e.distance, plain.distance);
        assert!((map.mean() - e.distance).abs() <= 1e-4 * e.distance, "{name}: mean {} vs distance {}", map.mean(), e.distance);
        assert!(map.data().iter().all(|&v| v >= 0.0 && v.is_finite()));
        // The distorted corner is 1/16 of the image; it must hold most of the map's mass, and
        // the opposite corner almost none. Features see some context, hence the margin.
        let total = map.sum_in(0, 0, N, N);
        let near = map.sum_in(0, 0, 40, 40) / total;
        let far = map.sum_in(N - 40, N - 40, N, N) / total;
        assert!(near > 0.6, "{name}: top-left 40x40 holds {near:.2} of the mass");
        assert!(far < 0.05, "{name}: bottom-right 40x40 holds {far:.3} of the mass");
    }
}

#[test]
fn a_tiled_lpips_heatmap_is_the_untiled_map_with_compares_tiled_distance() {
    let (a, b) = (img(base()), img(corner_noise()));
    let lpips = |tile| metric_with(MetricOptions { metric: MetricKind::LpipsVgg, tile_size: Some(tile), ..Default::default() });
    // 32-pixel cores: 3 x 3 tiles, so every tap's map is assembled from several cores.
    let mut tiled = lpips(32);
    let (e, map) = tiled.compare_with_heatmap(&a, &b, &mut |_| {}).unwrap();
    assert_eq!(e.distance, tiled.compare(&a, &b).unwrap().distance, "the heatmap's distance is compare's, tiled alike");
    let (whole_e, whole) = lpips(0).compare_with_heatmap(&a, &b, &mut |_| {}).unwrap();
    assert!((e.distance - whole_e.distance).abs() <= 1e-6 * whole_e.distance, "tiled {} vs untiled {}", e.distance, whole_e.distance);
    let peak = whole.max();
    for (i, (t, u)) in map.data().iter().zip(whole.data()).enumerate() {
        assert!((t - u).abs() <= 1e-5 * peak, "pixel {i}: tiled {t} vs untiled {u}");
    }
}

#[test]
fn the_c_abi_returns_the_same_map() {
    let (a, b) = (base(), corner_noise());
    let interleave = |d: &[f32]| -> Vec<f32> { (0..(N * N) as usize).flat_map(|i| [d[i], d[(N * N) as usize + i], d[2 * (N * N) as usize + i]]).collect() };
    let (ia, ib) = (interleave(&a), interleave(&b));
    let desc = |p: &[f32]| ElpipsImage { data: p.as_ptr().cast(), width: N, height: N, stride_bytes: 0, format: ELPIPS_PIXEL_FORMAT_RGB_F32, transfer: ELPIPS_TRANSFER_SRGB };
    let mut o = std::mem::MaybeUninit::<ElpipsOptions>::zeroed();
    // SAFETY: a writable options struct; then initialised by the call.
    let mut o = unsafe {
        assert_eq!(elpips_options_default(o.as_mut_ptr(), std::mem::size_of::<ElpipsOptions>()), ELPIPS_OK);
        o.assume_init()
    };
    o.metric = ELPIPS_METRIC_LPIPS_ALEX;
    let mut ctx = std::ptr::null_mut();
    // SAFETY: valid pointers throughout; the context is freed at the end.
    unsafe {
        assert_eq!(elpips_context_new(&o, &mut ctx), ELPIPS_OK);
        let mut r = ElpipsResult::default();
        let mut heat = vec![-1.0f32; (N * N) as usize];
        assert_eq!(elpips_compare_heatmap(ctx, &desc(&ia), &desc(&ib), &mut r, heat.as_mut_ptr(), heat.len()), ELPIPS_OK);
        let (e, map) = metric(MetricKind::LpipsAlex).compare_with_heatmap(&img(a), &img(b), &mut |_| {}).unwrap();
        assert_eq!(r.distance, e.distance);
        assert_eq!(heat, map.data());
        assert_eq!(elpips_compare_heatmap(ctx, &desc(&ia), &desc(&ib), &mut r, heat.as_mut_ptr(), heat.len() - 1), ELPIPS_STATUS_INVALID_ARGUMENT);
        assert!(std::ffi::CStr::from_ptr(elpips_last_error(ctx)).to_string_lossy().contains("heatmap_len"));
        assert_eq!(elpips_compare_heatmap(ctx, &desc(&ia), &desc(&ib), &mut r, std::ptr::null_mut(), 0), ELPIPS_STATUS_NULL_POINTER);
        elpips_context_free(ctx);
    }
}

#[test]
fn c_abi_tone_maps_linear_buffers_and_composites_alpha() {
    // A linear RGBA float buffer at half coverage over white equals the composited sRGB8 image.
    let n = (N * N) as usize;
    let lin: Vec<f32> = (0..n).flat_map(|i| [0.1 * (i % 7) as f32 * 0.5, 0.25, 0.0, 0.5]).collect();
    let composite: Vec<f32> = lin.chunks(4).flat_map(|p| [p[0] + 0.5, p[1] + 0.5, p[2] + 0.5]).map(elpips::image::tonemap::srgb_encode).map(|v| v.min(1.0)).collect();
    let desc = |p: &[f32], format, transfer| ElpipsImage { data: p.as_ptr().cast(), width: N, height: N, stride_bytes: 0, format, transfer };
    let mut o = std::mem::MaybeUninit::<ElpipsOptions>::zeroed();
    // SAFETY: as above.
    let mut o = unsafe {
        assert_eq!(elpips_options_default(o.as_mut_ptr(), std::mem::size_of::<ElpipsOptions>()), ELPIPS_OK);
        o.assume_init()
    };
    assert_eq!((o.exposure, o.tonemap, o.alpha, o.background), (0.0, ELPIPS_TONEMAP_CLAMP, ELPIPS_ALPHA_IGNORE, [0.0; 3]));
    o.metric = ELPIPS_METRIC_LPIPS_ALEX;
    o.alpha = ELPIPS_ALPHA_OVER;
    o.background = [1.0; 3];
    let mut ctx = std::ptr::null_mut();
    // SAFETY: valid pointers; freed at the end.
    unsafe {
        assert_eq!(elpips_context_new(&o, &mut ctx), ELPIPS_OK);
        let mut r = ElpipsResult::default();
        let a = desc(&lin, ELPIPS_PIXEL_FORMAT_RGBA_F32, ELPIPS_TRANSFER_LINEAR);
        let b = desc(&composite, ELPIPS_PIXEL_FORMAT_RGB_F32, ELPIPS_TRANSFER_SRGB);
        assert_eq!(elpips_compare(ctx, &a, &b, &mut r), ELPIPS_OK);
        assert!(r.distance < 1e-6, "composited linear == display copy: {}", r.distance);
        elpips_context_free(ctx);
        let mut bad = o;
        bad.tonemap = 9;
        assert_eq!(elpips_context_new(&bad, &mut ctx), ELPIPS_STATUS_INVALID_ARGUMENT);
        let mut old = o;
        // A caller built against the first header (no tone/alpha fields) gets the defaults.
        old.struct_size = std::mem::offset_of!(ElpipsOptions, exposure);
        assert_eq!(elpips_context_new(&old, &mut ctx), ELPIPS_OK);
        elpips_context_free(ctx);
    }
}
