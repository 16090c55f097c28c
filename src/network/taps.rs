//! Doing less work per comparison: the feature models (`<metric>.features.onnx`: one image in,
//! unit-normalised taps out), the distance head computed here from two sets of taps, reuse of a
//! reference's taps across candidates, and tiling of images too big to run whole.
//!
//! The head is the fused model's: `d = sum_t mean_hw sum_c lin_t[c] (u_t(ref) - u_t(cand))^2`,
//! where `u_t` is tap t divided by its per-pixel channel norm (+1e-10). Sums run in f64, so the
//! split path agrees with the fused model to float32 rounding (~1e-7 relative).
//!
//! Tiling: a tap value at a position depends only on the input pixels in its receptive field. A
//! tile whose origin lies on the pooling grid (a multiple of 16 for VGG's four 2x2 pools) and
//! which extends [`TILE_MARGIN`] pixels beyond its core on every side that is not an image edge
//! computes exactly the untiled taps over its core (the zero padding at the tile's own edges
//! never reaches them). Each tile's maps are summed over its core only, so the tiled distance
//! equals the untiled one up to float32 rounding, while memory is bounded by the tile size.

use std::path::Path;

use crate::ensemble::tiles::{Rect, Tile};
use crate::ensemble::{SampleDropout, VGG_CONV_INPUTS};
use crate::error::{Error, Result};
use crate::linear_weights::LinearWeights;
use crate::network::backend::{Arithmetic, Backend};
use crate::network::models::{contract, model_dir_in, MetricKind};
use crate::network::runtime::{release_free_heap, Buffers, Device, RuntimeOptions, Session};

/// Pixels a tile extends beyond its core. VGG16's relu5_3 sees 90 pixels before and 105 after
/// its own 16-pixel cell; 112 is the next multiple of 16, so tile origins stay on the pool grid.
pub const TILE_MARGIN: usize = 112;
/// Tile origins and cores are multiples of this (2^4: VGG16's four 2x2 pools).
pub const TILE_ALIGN: usize = 16;
/// LPIPS-VGG's default tile core side: a tile is then at most 736 x 736 pixels, which keeps a
/// 4K pair's peak (both images, one tile's activations, its reference taps) near the figures of
/// docs/performance.md.
pub const DEFAULT_TILE: u32 = 512;
/// LPIPS-VGG inputs above this many pixels are tiled by default (`tile_size: None`): 1080p and
/// above, where an untiled run's activations alone exceed a few GiB.
pub const AUTO_TILE_PIXELS: u64 = 1 << 20;
/// E-LPIPS: the most pixels one fused run holds (summed over its samples), and the size above
/// which a sample's network input is tiled by default. A fused run costs about 3 KiB per pixel
/// (activations and the 13 dense dropout masks), so this keeps it near 1.2 GiB; a 512 x 512
/// pair's full-size samples (519 x 519) still run whole.
pub const ELPIPS_FUSED_PIXELS: usize = 300_000;
/// E-LPIPS's default tiles hold at most this many pixels, margins included (the split path
/// costs about 3.6 KiB per tile pixel beside both transformed images); within that bound the
/// grid with the fewest tile pixels in all is chosen ([`TileGrid::within`]), since the time of
/// a tiled sample is close to proportional to them (docs/log.md, 2026-12-03, "Bounded runs").
pub const ELPIPS_TILE_PIXELS: usize = 1 << 18;
/// A tile-sampled E-LPIPS sample's tile holds at most this many pixels, margins included
/// ([`TileGrid::within`]): the size where variance times cost was lowest on the measured pairs
/// (docs/performance.md, "Tile-sampled draws").
pub const SAMPLE_TILE_PIXELS: usize = 1 << 17;

/// Arithmetic precision of the networks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Precision {
    /// float32 everywhere (the reference numbers), on every backend.
    #[default]
    Fp32,
    /// int8 convolutions (ONNX Runtime QDQ, static per-tensor activation scales calibrated on
    /// the upstream images, per-channel weights): faster on CPUs without bf16; distance error
    /// measured in docs/performance.md. lpips-vgg and elpips-vgg (every E-LPIPS sample then runs
    /// on the int8 feature network: the expectation is int8's, not fp32's).
    #[cfg_attr(feature = "cli", value(help = "int8 convolutions on CPUs without bf16: about 2x faster per network pass, ~1.5x per E-LPIPS sample, with a small measured error (docs/performance.md); lpips-vgg and elpips-vgg"))]
    Int8,
    /// bf16 multiplications on the float32 models, by OpenVINO on CPUs with AVX512-BF16 or AMX
    /// (refused elsewhere: never emulated); error against fp32 measured in docs/performance.md.
    /// Like int8, every E-LPIPS sample then runs on the feature network.
    #[cfg_attr(feature = "cli", value(help = "bf16 on Intel CPUs with AVX512-BF16 or AMX, through OpenVINO (docs/performance.md); refused on other CPUs"))]
    Bf16,
}

impl Precision {
    /// The name used on the command line and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
            Precision::Bf16 => "bf16",
        }
    }

    /// Parses `fp32`, `int8` or `bf16`.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "fp32" => Ok(Precision::Fp32),
            "int8" => Ok(Precision::Int8),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(Error::invalid(format!("unknown precision `{name}`; choose fp32, int8 or bf16"))),
        }
    }

    /// Model file of `kind`'s feature network at this precision (bf16 runs the fp32 one).
    pub fn features_file(self, kind: MetricKind) -> String {
        match self {
            Precision::Fp32 | Precision::Bf16 => format!("{}.features.onnx", kind.name()),
            Precision::Int8 => format!("{}.features.int8.onnx", kind.name()),
        }
    }

    /// What the backend is asked for at this precision.
    pub fn arithmetic(self) -> Arithmetic {
        match self {
            Precision::Fp32 => Arithmetic::F32,
            Precision::Int8 => Arithmetic::Int8,
            Precision::Bf16 => Arithmetic::Bf16,
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Unit-normalised taps of `n` images: tap t holds `[n, C_t, H_t, W_t]` values.
#[derive(Clone, Debug)]
pub struct Taps {
    pub n: usize,
    pub shapes: Vec<[usize; 4]>,
    pub data: Vec<Vec<f32>>,
}

impl Taps {
    /// Image `i`'s values of tap `t` (`C_t * H_t * W_t`, channel-major).
    pub fn image(&self, t: usize, i: usize) -> &[f32] {
        let [_, c, h, w] = self.shapes[t];
        let len = c * h * w;
        &self.data[t][i * len..(i + 1) * len]
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.iter().map(|d| d.len() * 4).sum()
    }
}

/// A loaded feature network with the linear weights of its head.
pub struct FeatureNet {
    kind: MetricKind,
    session: Session,
    buffers: Buffers,
    lins: Vec<Vec<f32>>,
    outputs: Vec<String>,
    mask_names: Vec<String>,
}

impl FeatureNet {
    /// Opens `kind`'s feature model at `precision`, its session keeping `buffers`. The head's
    /// linear weights are `custom`, else the model's own (stored in its metadata as
    /// `elpips.lin_<t>`).
    pub fn open(
        kind: MetricKind,
        dir: Option<&Path>,
        runtime: &RuntimeOptions,
        precision: Precision,
        custom: Option<&LinearWeights>,
        buffers: Buffers,
    ) -> Result<Self> {
        if precision == Precision::Int8 && !matches!(kind, MetricKind::LpipsVgg | MetricKind::ElpipsVgg) {
            return Err(Error::invalid(format!("precision int8 is built for lpips-vgg and elpips-vgg, not {kind}; use fp32")));
        }
        let path = model_dir_in(dir, runtime.install_dir.as_deref()).join(precision.features_file(kind));
        let session = Session::open_in(&path, runtime, buffers, precision.arithmetic())?;
        let taps = kind.tap_channels();
        let lins = match custom {
            Some(lw) => lw.taps.clone(),
            None => {
                let mut lins = Vec::with_capacity(taps.len());
                for (t, &c) in taps.iter().enumerate() {
                    let hex = session.metadata(&contract::lin_metadata(t)).unwrap_or_default();
                    let lin = decode_f32_hex(&hex).filter(|l| l.len() == c).ok_or_else(|| {
                        Error::Model(format!("{} has no valid linear weights for tap {t}; rebuild the models with `make setup`", path.display()))
                    })?;
                    lins.push(lin);
                }
                lins
            }
        };
        let outputs = (0..taps.len()).map(contract::unit).collect();
        let mask_names = contract::masks_of(kind);
        Ok(FeatureNet { kind, session, buffers, lins, outputs, mask_names })
    }

    pub fn device(&self) -> Device {
        self.session.device()
    }

    /// The CPU kernels its session runs on.
    pub fn backend(&self) -> Backend {
        self.session.backend()
    }

    /// The 2x2 pools before each tap, or an error for a network that cannot be tiled (AlexNet).
    pub(crate) fn tap_pools(&self) -> Result<&'static [u32]> {
        self.kind.tap_pools().ok_or_else(|| Error::invalid(format!("tiling is supported for the VGG metrics, not {}", self.kind)))
    }

    /// How its session keeps buffers between runs.
    pub fn buffers(&self) -> Buffers {
        self.buffers
    }

    /// Taps of `n` stacked `h x w` planar images (E-LPIPS: with the given masks, one per sample).
    pub fn taps(&mut self, images: &[f32], n: usize, h: usize, w: usize, masks: Option<&[(Vec<usize>, &[f32])]>) -> Result<Taps> {
        let mut shapes = Vec::with_capacity(self.outputs.len());
        let mut data = Vec::with_capacity(self.outputs.len());
        self.run(images, n, h, w, masks, &mut |_, shape, values| {
            shapes.push(shape4(shape)?);
            data.push(values.to_vec());
            Ok(())
        })?;
        Ok(Taps { n, shapes, data })
    }

    /// Per-tap maps `sum_c lin[c] (ref - cand)^2` of candidate images against reference images
    /// (`pairs[j]` = (reference index in `reference`, candidate index in `candidates`)). The
    /// candidates' taps are used straight from the runtime's buffers and never stored.
    /// Returns, per pair, per tap, the map (`H_t * W_t` values).
    pub fn maps_against(
        &mut self,
        reference: &Taps,
        candidates: &[f32],
        n: usize,
        h: usize,
        w: usize,
        masks: Option<&[(Vec<usize>, &[f32])]>,
        pairs: &[(usize, usize)],
    ) -> Result<Vec<Vec<Vec<f32>>>> {
        let mut maps: Vec<Vec<Vec<f32>>> = vec![Vec::with_capacity(self.outputs.len()); pairs.len()];
        let lins = &self.lins;
        let mut shapes_ok = Ok(());
        let (outputs, session, mask_names) = (&self.outputs, &mut self.session, &self.mask_names);
        run_session(session, outputs, mask_names, self.kind, candidates, n, h, w, masks, &mut |t, shape, values| {
            let s = shape4(shape)?;
            if s[1..] != reference.shapes[t][1..] {
                shapes_ok = Err(Error::Model(format!("tap {t}: candidate taps {:?} differ from the reference's {:?}", s, reference.shapes[t])));
                return Ok(());
            }
            let len = s[1] * s[2] * s[3];
            for (j, &(ri, ci)) in pairs.iter().enumerate() {
                let mut map = vec![0.0f32; s[2] * s[3]];
                tap_map(&lins[t], reference.image(t, ri), &values[ci * len..(ci + 1) * len], s[1], &mut map);
                maps[j].push(map);
            }
            Ok(())
        })?;
        shapes_ok?;
        Ok(maps)
    }

    /// Distance between image `i` of `a` and image `j` of `b`.
    pub fn distance(&self, a: &Taps, i: usize, b: &Taps, j: usize) -> f64 {
        (0..a.shapes.len())
            .map(|t| {
                let [_, c, h, w] = a.shapes[t];
                let mut map = vec![0.0f32; h * w];
                tap_map(&self.lins[t], a.image(t, i), b.image(t, j), c, &mut map);
                mean(&map)
            })
            .sum()
    }

    fn run(
        &mut self,
        images: &[f32],
        n: usize,
        h: usize,
        w: usize,
        masks: Option<&[(Vec<usize>, &[f32])]>,
        each: &mut dyn FnMut(usize, &[usize], &[f32]) -> Result<()>,
    ) -> Result<()> {
        run_session(&mut self.session, &self.outputs, &self.mask_names, self.kind, images, n, h, w, masks, each)
    }
}

#[allow(clippy::too_many_arguments)]
fn run_session(
    session: &mut Session,
    outputs: &[String],
    mask_names: &[String],
    kind: MetricKind,
    images: &[f32],
    n: usize,
    h: usize,
    w: usize,
    masks: Option<&[(Vec<usize>, &[f32])]>,
    each: &mut dyn FnMut(usize, &[usize], &[f32]) -> Result<()>,
) -> Result<()> {
    let ones = [1.0f32];
    let mut inputs: Vec<(&str, Vec<usize>, &[f32])> = vec![(contract::IMAGE, vec![n, 3, h, w], images)];
    if kind.is_ensemble() {
        for (k, name) in mask_names.iter().enumerate() {
            match masks {
                Some(m) => inputs.push((name, m[k].0.clone(), m[k].1)),
                // A broadcast 1 keeps every activation: no dropout.
                None => inputs.push((name, vec![1, 1, 1, 1], &ones[..])),
            }
        }
    }
    let names: Vec<&str> = outputs.iter().map(String::as_str).collect();
    session.run_with(&inputs, &names, &mut |t, shape, values| {
        if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
            return Err(Error::Inference(format!("the network produced a non-finite feature ({bad})")));
        }
        each(t, shape, values)
    })
}

fn shape4(shape: &[usize]) -> Result<[usize; 4]> {
    <[usize; 4]>::try_from(shape).map_err(|_| Error::Model(format!("a feature output has shape {shape:?}, expected [N,C,H,W]")))
}

fn decode_f32_hex(hex: &str) -> Option<Vec<f32>> {
    if hex.len() % 8 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect();
    Some(bytes?.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

/// `out[p] = sum_c lin[c] (a[c,p] - b[c,p])^2` over `c` channels of `out.len()` positions.
pub(crate) fn tap_map(lin: &[f32], a: &[f32], b: &[f32], channels: usize, out: &mut [f32]) {
    let hw = out.len();
    out.fill(0.0);
    for c in 0..channels {
        let (ac, bc, l) = (&a[c * hw..(c + 1) * hw], &b[c * hw..(c + 1) * hw], lin[c]);
        for ((o, &x), &y) in out.iter_mut().zip(ac).zip(bc) {
            let d = x - y;
            *o += l * d * d;
        }
    }
}

fn mean(map: &[f32]) -> f64 {
    map.iter().map(|&v| v as f64).sum::<f64>() / map.len().max(1) as f64
}

/// One tile along an axis: the input span `[start, end)` and the core `[core_start, core_end)`
/// whose taps it contributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    pub core_start: usize,
    pub core_end: usize,
}

/// Splits `len` pixels into cores of at most `core` (rounded up to [`TILE_ALIGN`]), evenly, each
/// extended by [`TILE_MARGIN`] inside the image.
pub fn tile_spans(len: usize, core: usize) -> Vec<Span> {
    let core = core.max(TILE_ALIGN).div_ceil(TILE_ALIGN) * TILE_ALIGN;
    spans_in(len, len.div_ceil(core))
}

/// Splits `len` pixels into at most `count` even cores (aligned to [`TILE_ALIGN`], so rounding
/// may give fewer), each extended by [`TILE_MARGIN`] inside the image.
fn spans_in(len: usize, count: usize) -> Vec<Span> {
    let count = count.max(1);
    let step = len.div_ceil(count).div_ceil(TILE_ALIGN) * TILE_ALIGN;
    let mut spans = Vec::with_capacity(count);
    let mut s = 0;
    while s < len {
        let e = (s + step).min(len);
        spans.push(Span { start: s.saturating_sub(TILE_MARGIN), end: (e + TILE_MARGIN).min(len), core_start: s, core_end: e });
        s = e;
    }
    spans
}

/// How an `h x w` network input is cut into tiles: each tile is one row span by one column span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TileGrid {
    pub rows: Vec<Span>,
    pub cols: Vec<Span>,
}

impl TileGrid {
    /// Square cores of at most `core` pixels a side (`--tile N`, and LPIPS-VGG by default).
    pub fn square(h: usize, w: usize, core: usize) -> Self {
        TileGrid { rows: tile_spans(h, core), cols: tile_spans(w, core) }
    }

    /// Of the grids whose largest tile holds at most `budget` pixels (margins included), the one
    /// with the fewest tile pixels in all, i.e. the least margin overlap; ties go to fewer tiles.
    /// Where no grid fits (a budget below a 16-pixel core with its margins), 16-pixel cores: the
    /// smallest tiles there are.
    pub fn within(h: usize, w: usize, budget: usize) -> Self {
        // Every distinct span list along each axis, fewest spans first (counts that round to the
        // same step repeat), with its largest and total extent.
        let axis = |len: usize| {
            let mut all: Vec<Vec<Span>> = (1..=len.div_ceil(TILE_ALIGN)).map(|n| spans_in(len, n)).collect();
            all.dedup();
            all.into_iter().map(|s| (extents(&s), s)).collect::<Vec<_>>()
        };
        let (rows, cols) = (axis(h), axis(w));
        let mut best: Option<((usize, usize), &Vec<Span>, &Vec<Span>)> = None;
        for ((rmax, rsum), r) in &rows {
            // More columns only add overlap, so the first that fits is this row count's best.
            if let Some((_, c)) = cols.iter().find(|((cmax, _), _)| rmax * cmax <= budget) {
                let key = (rsum * extents(c).1, r.len() * c.len());
                if best.is_none_or(|(k, _, _)| key < k) {
                    best = Some((key, r, c));
                }
            }
        }
        match best {
            Some((_, r, c)) => TileGrid { rows: r.clone(), cols: c.clone() },
            None => TileGrid::square(h, w, TILE_ALIGN),
        }
    }

    /// Number of tiles.
    pub fn tiles(&self) -> usize {
        self.rows.len() * self.cols.len()
    }

    /// Pixels of all tiles together (each image pixel counted once per tile holding it).
    pub fn tile_pixels(&self) -> usize {
        extents(&self.rows).1 * extents(&self.cols).1
    }

    /// Pixels of the largest tile, margins included.
    pub fn largest_tile(&self) -> usize {
        extents(&self.rows).0 * extents(&self.cols).0
    }

    /// Tile `k` (row-major: `k / cols` is its row span, `k % cols` its column span).
    pub fn tile(&self, k: usize) -> (&Span, &Span) {
        (&self.rows[k / self.cols.len()], &self.cols[k % self.cols.len()])
    }

    /// Every tile's span and core as rectangles of the input, in [`TileGrid::tile`] order.
    pub fn rects(&self) -> Vec<Tile> {
        let rect = |r: &Span, c: &Span, core: bool| {
            if core {
                Rect { y0: r.core_start, y1: r.core_end, x0: c.core_start, x1: c.core_end }
            } else {
                Rect { y0: r.start, y1: r.end, x0: c.start, x1: c.end }
            }
        };
        (0..self.tiles()).map(|k| self.tile(k)).map(|(r, c)| Tile { span: rect(r, c, false), core: rect(r, c, true) }).collect()
    }
}

/// The largest and the total extent of an axis's spans.
fn extents(spans: &[Span]) -> (usize, usize) {
    (spans.iter().map(Span::extent).max().unwrap_or(0), spans.iter().map(Span::extent).sum())
}

impl Span {
    /// The span's input length, margins included.
    pub fn extent(&self) -> usize {
        self.end - self.start
    }
}

/// Rows (or columns) of a tap with `pools` 2x2 pools before it that a span's core contributes,
/// in the tile's own tap coordinates, and the image's tap length.
fn tap_range(span: &Span, len: usize, pools: u32) -> (usize, usize) {
    let global_end = if span.core_end == len { len >> pools } else { span.core_end >> pools };
    ((span.core_start >> pools) - (span.start >> pools), global_end - (span.start >> pools))
}

/// One tap's map over a whole image: `(H_t, W_t, values)`, row-major.
pub type TapMap = (usize, usize, Vec<f32>);

/// The tiled distance of one pair: runs the feature model on each tile of reference and
/// candidate (planar `h x w` images) and sums each tap's map over the tile cores.
pub fn tiled_distance(net: &mut FeatureNet, reference: &[f32], candidate: &[f32], h: usize, w: usize, grid: &TileGrid) -> Result<f64> {
    Ok(tiled(net, reference, &[candidate], h, w, grid, None, false)?.swap_remove(0).0)
}

/// [`tiled_distance`] (the same figure, bit for bit) with each tap's whole-image map assembled
/// from the tile cores, one [`TapMap`] per tap, as the untiled run would give them (to
/// float32 rounding). Heatmaps of big images use it, so they are tiled like the distance.
pub fn tiled_maps(
    net: &mut FeatureNet,
    reference: &[f32],
    candidate: &[f32],
    h: usize,
    w: usize,
    grid: &TileGrid,
) -> Result<(f64, Vec<TapMap>)> {
    Ok(tiled(net, reference, &[candidate], h, w, grid, None, true)?.swap_remove(0))
}

/// The one tile walk: per tile, the reference's taps once and each candidate against them; per
/// candidate and tap, the core sums in tile order (the distance), and the core values copied
/// into whole-image maps when `keep_maps` is set. With `dropout` (E-LPIPS: one sample's masks
/// over the whole `h x w` input), each tile runs with its masks cut from that draw at the
/// tile's position on each mask's pooling grid (exact: tile origins are multiples of 16, so
/// every pooled grid's origin is a whole cell).
#[allow(clippy::too_many_arguments)]
pub(crate) fn tiled(
    net: &mut FeatureNet,
    reference: &[f32],
    candidates: &[&[f32]],
    h: usize,
    w: usize,
    grid: &TileGrid,
    dropout: Option<&SampleDropout>,
    keep_maps: bool,
) -> Result<Vec<(f64, Vec<TapMap>)>> {
    let pools = net.tap_pools()?;
    let mut sums = vec![vec![0.0f64; pools.len()]; candidates.len()];
    let whole_maps = || -> Vec<TapMap> { pools.iter().map(|&p| (h >> p, w >> p, vec![0.0f32; (h >> p) * (w >> p)])).collect() };
    let mut whole: Vec<Vec<TapMap>> = (0..candidates.len()).map(|_| if keep_maps { whole_maps() } else { vec![] }).collect();
    for r in &grid.rows {
        for c in &grid.cols {
            let crop = |img: &[f32]| {
                let mut out = Vec::with_capacity(3 * r.extent() * c.extent());
                for ch in 0..3 {
                    for y in r.start..r.end {
                        let row = &img[(ch * h + y) * w..(ch * h + y + 1) * w];
                        out.extend_from_slice(&row[c.start..c.end]);
                    }
                }
                out
            };
            let masks = dropout.map(|d| tile_masks(d, (r.start, r.extent()), (c.start, c.extent())));
            let mut keep = |k: usize, t: usize, gy: usize, gx: usize, core_row: &[f32]| {
                if let Some((_, ww, values)) = whole[k].get_mut(t) {
                    values[gy * *ww + gx..gy * *ww + gx + core_row.len()].copy_from_slice(core_row);
                }
            };
            let tile = run_tile(net, &crop(reference), candidates.len(), &|k| crop(candidates[k]), (r, c), (h, w), masks.as_deref(), &mut keep)?;
            for (k, per_tap) in tile.iter().enumerate() {
                for (t, s) in per_tap.iter().enumerate() {
                    sums[k][t] += s;
                }
            }
            release_free_heap();
        }
    }
    Ok(sums.into_iter().zip(whole).map(|(sums, maps)| (tile_sum_distance(pools, &sums, h, w), maps)).collect())
}

/// The distance part of per-tap core sums of an `h x w` input: each tap's sum over its whole
/// map's size (`H_t x W_t`), summed over taps. For all tiles' sums together this is the distance.
pub(crate) fn tile_sum_distance(pools: &[u32], sums: &[f64], h: usize, w: usize) -> f64 {
    pools.iter().zip(sums).map(|(&p, &s)| s / ((h >> p) * (w >> p)) as f64).sum()
}

/// The 13 dropout masks of the tile at input rows `y0..y0 + rows`, columns `x0..x0 + cols` of
/// `dropout`'s grid, as the feature model's mask inputs: each cut at the tile's position on its
/// pooling grid (floor pools: the tile's grid at a block is `rows >> pool` cells from cell
/// `y0 >> pool` of the whole input's).
pub(crate) fn tile_masks(dropout: &SampleDropout, (y0, rows): (usize, usize), (x0, cols): (usize, usize)) -> Vec<(Vec<usize>, Vec<f32>)> {
    VGG_CONV_INPUTS
        .iter()
        .enumerate()
        .map(|(k, &(channels, pool))| {
            debug_assert_eq!(dropout.shape(k).0, channels);
            let (mh, mw) = (rows >> pool, cols >> pool);
            let mut m = vec![0.0f32; channels * mh * mw];
            dropout.expand_into(k, (y0 >> pool, mh), (x0 >> pool, mw), &mut m);
            (vec![1, channels, mh, mw], m)
        })
        .collect()
}

/// One tile of an `h x w` input (rows of span `r`, columns of span `c`): the reference tile's
/// taps once, then each of `candidates` tiles (`candidate(k)` makes the `k`-th) against them.
/// Returns per candidate the per-tap sums of its maps over the tile's core, and hands every
/// core row to `core_row(candidate, tap, tap row, tap column, values)` in whole-map
/// coordinates.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_tile(
    net: &mut FeatureNet,
    reference: &[f32],
    candidates: usize,
    candidate: &dyn Fn(usize) -> Vec<f32>,
    (r, c): (&Span, &Span),
    (h, w): (usize, usize),
    masks: Option<&[(Vec<usize>, Vec<f32>)]>,
    core_row: &mut dyn FnMut(usize, usize, usize, usize, &[f32]),
) -> Result<Vec<Vec<f64>>> {
    let pools = net.tap_pools()?;
    let (th, tw) = (r.extent(), c.extent());
    let mask_inputs: Option<Vec<(Vec<usize>, &[f32])>> = masks.map(|m| m.iter().map(|(shape, v)| (shape.clone(), v.as_slice())).collect());
    let masks = mask_inputs.as_deref();
    let ref_taps = net.taps(reference, 1, th, tw, masks)?;
    let mut out = Vec::with_capacity(candidates);
    for k in 0..candidates {
        let maps = net.maps_against(&ref_taps, &candidate(k), 1, th, tw, masks, &[(0, 0)])?;
        let mut sums = vec![0.0f64; pools.len()];
        for (t, map) in maps[0].iter().enumerate() {
            let [_, _, mh, mw] = ref_taps.shapes[t];
            let (y0, y1) = tap_range(r, h, pools[t]);
            let (x0, x1) = tap_range(c, w, pools[t]);
            debug_assert!(y1 <= mh && x1 <= mw);
            let (y1, x1) = (y1.min(mh), x1.min(mw));
            let mut s = 0.0f64;
            for y in y0..y1 {
                let row = &map[y * mw + x0..y * mw + x1];
                s += row.iter().map(|&v| v as f64).sum::<f64>();
                // Tile tap coordinates are offset by the tile origin's tap coordinates.
                core_row(k, t, y + (r.start >> pools[t]), x0 + (c.start >> pools[t]), row);
            }
            sums[t] = s;
        }
        out.push(sums);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_cover_the_axis_with_aligned_origins_and_full_margins() {
        for len in [16usize, 100, 767, 768, 769, 1000, 2160, 3840] {
            for core in [64usize, 100, 256, 768] {
                let spans = tile_spans(len, core);
                assert_eq!(spans[0].core_start, 0);
                assert_eq!(spans.last().unwrap().core_end, len);
                for w in spans.windows(2) {
                    assert_eq!(w[0].core_end, w[1].core_start);
                }
                for s in &spans {
                    assert_eq!(s.start % TILE_ALIGN, 0, "{len} {core} {s:?}");
                    assert_eq!(s.core_start % TILE_ALIGN, 0);
                    assert!(s.core_start - s.start == TILE_MARGIN || s.start == 0);
                    assert!(s.end - s.core_end == TILE_MARGIN || s.end == len);
                    assert!(s.core_end - s.core_start <= core.div_ceil(TILE_ALIGN) * TILE_ALIGN);
                }
            }
        }
    }

    #[test]
    fn hex_linear_weights_round_trip() {
        let v = [0.0f32, 1.5, -2.25e-7, f32::MAX];
        let hex: String = v.iter().flat_map(|x| x.to_le_bytes()).map(|b| format!("{b:02x}")).collect();
        assert_eq!(decode_f32_hex(&hex).unwrap(), v);
        assert!(decode_f32_hex("abc").is_none());
        assert!(decode_f32_hex("zzzzzzzz").is_none());
    }

    #[test]
    fn tap_map_weights_squared_differences_per_channel() {
        let (a, b) = ([1.0f32, 2.0, 3.0, 4.0], [0.0f32, 0.0, 1.0, 1.0]);
        let mut out = [0.0f32; 2];
        tap_map(&[2.0, 0.5], &a, &b, 2, &mut out);
        assert_eq!(out, [2.0 * 1.0 + 0.5 * 4.0, 2.0 * 4.0 + 0.5 * 9.0]);
    }

    #[test]
    fn the_budget_grid_fits_and_beats_square_cores() {
        // E-LPIPS network inputs of 1080p and 4K pairs at scale levels 1 and 2.
        for (h, w) in [(1087usize, 1927usize), (548, 968), (2167, 3847), (1088, 1928), (700, 400)] {
            let grid = TileGrid::within(h, w, ELPIPS_TILE_PIXELS);
            assert!(grid.largest_tile() <= ELPIPS_TILE_PIXELS, "{h}x{w}: {grid:?}");
            for (spans, len) in [(&grid.rows, h), (&grid.cols, w)] {
                assert_eq!(spans[0].core_start, 0);
                assert_eq!(spans.last().unwrap().core_end, len);
                assert!(spans.windows(2).all(|p| p[0].core_end == p[1].core_start));
            }
            // No square grid within the same budget has fewer tile pixels.
            for core in (16..=1024).step_by(16) {
                let square = TileGrid::square(h, w, core);
                if square.largest_tile() <= ELPIPS_TILE_PIXELS {
                    assert!(grid.tile_pixels() <= square.tile_pixels(), "{h}x{w}: core {core} {} < {}", square.tile_pixels(), grid.tile_pixels());
                }
            }
        }
        // Small inputs are one tile; a budget nothing meets gets the smallest tiles.
        assert_eq!(TileGrid::within(300, 200, ELPIPS_TILE_PIXELS).tiles(), 1);
        assert_eq!(TileGrid::within(1000, 1000, 1).largest_tile(), TileGrid::square(1000, 1000, 16).largest_tile());
    }
}
