//! The random transformations and dropout that make E-LPIPS an ensemble, exactly as the authors
//! define them (see REFERENCE.md): scale, offset, flip, transpose, channel permutation, colour
//! scaling, then per-element dropout before every conv. The same draw is applied to both images.
//!
//! Every sample has its own random stream (`seed`, sample index), so a sample's draw does not
//! depend on how samples are batched or which thread evaluates them.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use std::collections::BTreeMap;

mod adjoint;
pub mod tiles;

/// Input channels of the 13 VGG16 convs and the pooling block each runs in: the shape of the
/// dropout mask that E-LPIPS multiplies onto each conv's input.
pub(crate) const VGG_CONV_INPUTS: [(usize, u32); 13] = [
    (3, 0),
    (64, 0),
    (64, 1),
    (128, 1),
    (128, 2),
    (256, 2),
    (256, 2),
    (256, 3),
    (512, 3),
    (512, 3),
    (512, 4),
    (512, 4),
    (512, 4),
];

/// Reflect padding per axis used by the offset transform (the image grows by this much).
pub const OFFSET_PAD: usize = 7;
/// Dropout keep probability (E-LPIPS default).
pub const DROPOUT_KEEP: f64 = 0.99;

/// Which axes to mirror.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flip {
    /// No mirroring.
    None,
    /// Mirror left-right.
    X,
    /// Mirror top-bottom.
    Y,
    /// Both (a half turn).
    Both,
}

/// The four flip choices, drawn uniformly.
pub(crate) const FLIPS: [Flip; 4] = [Flip::X, Flip::Y, Flip::Both, Flip::None];
/// The six channel orders, drawn uniformly.
pub(crate) const PERMUTATIONS: [[usize; 3]; 6] = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];

/// One draw of the input transformation; applied identically to reference and candidate.
#[derive(Clone, Debug, PartialEq)]
pub struct Transform {
    /// Box-downscaling factor `s >= 1`.
    pub scale: usize,
    /// Top and left reflect padding before downscaling, each in `0..scale`.
    pub scale_offset: (usize, usize),
    /// Offset `o` per axis (y, x) in `0..=7`: reflect-pad `7 - o` before and `o` after.
    pub offset: (usize, usize),
    /// Mirroring, after the offset.
    pub flip: Flip,
    /// Swap x and y.
    pub transpose: bool,
    /// New channel `k` = old channel `permutation[k]`.
    pub permutation: [usize; 3],
    /// Per-channel multiplier (applied after the permutation), each in `[0.2, 1]`.
    pub color: [f32; 3],
}

/// A planar RGB image in flight through the transforms.
#[derive(Clone, Debug, PartialEq)]
pub struct Planar {
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

/// Number of scale levels by the authors' size rule: no level below about 64 pixels.
pub fn scale_levels_for(height: u32, width: u32) -> u32 {
    (height.min(width) / 64).max(1)
}

/// The scale-level law, its one home: level `s` is drawn with weight `1/s^2`.
pub(crate) fn level_weight(s: u32) -> f64 {
    1.0 / (s as f64 * s as f64)
}

/// The probabilities of levels `1..=levels` under [`level_weight`].
pub(crate) fn level_probabilities(levels: u32) -> Vec<f64> {
    let z: f64 = (1..=levels).map(level_weight).sum();
    (1..=levels).map(|s| level_weight(s) / z).collect()
}

/// Size of one axis after the scale step at level `s`.
pub fn scaled_len(n: usize, s: usize) -> usize {
    (n + 2 * (s - 1)) / s
}

/// Mirror index `i` (which may be up to `n - 1` outside `0..n`) back into range, without
/// repeating the edge sample (numpy/TensorFlow `reflect`).
#[inline]
fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    let r = if i < 0 {
        -i
    } else if i >= n {
        2 * n - 2 - i
    } else {
        i
    };
    debug_assert!((0..n).contains(&r), "reflect pad wider than the image");
    r as usize
}

impl Transform {
    /// The transform that changes nothing but the offset padding (o = 7: 7 reflected rows and
    /// columns after the image, none before), i.e. the image stays in the top-left corner.
    pub fn neutral() -> Self {
        Transform {
            scale: 1,
            scale_offset: (0, 0),
            offset: (OFFSET_PAD, OFFSET_PAD),
            flip: Flip::None,
            transpose: false,
            permutation: [0, 1, 2],
            color: [1.0; 3],
        }
    }

    /// Draws a transform with `levels` scale levels (level `s` with probability ~ `1/s^2`).
    pub fn sample<R: Rng + ?Sized>(rng: &mut R, levels: u32) -> Self {
        let total: f64 = (1..=levels).map(level_weight).sum();
        let mut u = rng.random::<f64>() * total;
        let mut scale = levels as usize;
        for s in 1..=levels {
            let p = level_weight(s);
            if u < p {
                scale = s as usize;
                break;
            }
            u -= p;
        }
        let scale_offset = (rng.random_range(0..scale), rng.random_range(0..scale));
        let offset = (rng.random_range(0..=OFFSET_PAD), rng.random_range(0..=OFFSET_PAD));
        let flip = FLIPS[rng.random_range(0..4)];
        let transpose = rng.random_bool(0.5);
        let permutation = PERMUTATIONS[rng.random_range(0..6)];
        let color = [(); 3].map(|_| 0.2 + 0.8 * rng.random::<f32>());
        Transform { scale, scale_offset, offset, flip, transpose, permutation, color }
    }

    /// Network input size `(height, width)` this transform produces from an `h x w` image.
    pub fn output_size(&self, h: usize, w: usize) -> (usize, usize) {
        let (h, w) = (scaled_len(h, self.scale) + OFFSET_PAD, scaled_len(w, self.scale) + OFFSET_PAD);
        if self.transpose {
            (w, h)
        } else {
            (h, w)
        }
    }

    /// Where pixels go: the sizes of each step and the flips, for an `h x w` image.
    pub(crate) fn geometry(&self, h: usize, w: usize) -> Geometry {
        let (sh, sw) = (scaled_len(h, self.scale), scaled_len(w, self.scale));
        let (ph, pw) = (sh + OFFSET_PAD, sw + OFFSET_PAD);
        let (flip_y, flip_x) = match self.flip {
            Flip::None => (false, false),
            Flip::X => (false, true),
            Flip::Y => (true, false),
            Flip::Both => (true, true),
        };
        Geometry {
            sh,
            sw,
            ph,
            pw,
            before_y: OFFSET_PAD - self.offset.0,
            before_x: OFFSET_PAD - self.offset.1,
            flip_y,
            flip_x,
            transpose: self.transpose,
        }
    }

    /// Applies the transform to a planar RGB image, writing `3 * out_h * out_w` values to `out`.
    pub fn apply_into(&self, image: &[f32], h: usize, w: usize, out: &mut [f32]) {
        let g = self.geometry(h, w);
        let (sh, sw) = (g.sh, g.sw);
        let scaled = downscale(image, h, w, self.scale, self.scale_offset);
        // Steps 2-6 map each output pixel back to one scaled pixel: offset padding, flips and
        // transpose are index permutations/reflections; permutation and colour act per channel.
        let (out_h, out_w) = g.output_size();
        debug_assert_eq!(out.len(), 3 * out_h * out_w);
        for k in 0..3 {
            let src = &scaled[self.permutation[k] * sh * sw..(self.permutation[k] + 1) * sh * sw];
            let dst = &mut out[k * out_h * out_w..(k + 1) * out_h * out_w];
            let gain = self.color[k];
            for y in 0..out_h {
                for x in 0..out_w {
                    let (sy, sx) = g.source(y, x);
                    dst[y * out_w + x] = src[sy * sw + sx] * gain;
                }
            }
        }
    }

    /// Applies the transform and returns the result as a new planar image.
    pub fn apply(&self, image: &[f32], h: usize, w: usize) -> Planar {
        let (oh, ow) = self.output_size(h, w);
        let mut data = vec![0.0; 3 * oh * ow];
        self.apply_into(image, h, w, &mut data);
        Planar { height: oh, width: ow, data }
    }

    /// Rows `y0..y1` and columns `x0..x1` of [`Transform::apply`]'s output, bit for bit (the
    /// same sums in the same order), computed without the rest: one tile's input. Each output
    /// pixel's downscaled value is summed from its `s x s` block where it is read.
    pub fn apply_region(&self, image: &[f32], h: usize, w: usize, (y0, y1): (usize, usize), (x0, x1): (usize, usize)) -> Vec<f32> {
        let g = self.geometry(h, w);
        let s = self.scale;
        let (top, left) = (self.scale_offset.0 as isize, self.scale_offset.1 as isize);
        let inv = 1.0 / (s * s) as f32;
        let mut out = Vec::with_capacity(3 * (y1 - y0) * (x1 - x0));
        for k in 0..3 {
            let src = &image[self.permutation[k] * h * w..(self.permutation[k] + 1) * h * w];
            let gain = self.color[k];
            for y in y0..y1 {
                for x in x0..x1 {
                    let (sy, sx) = g.source(y, x);
                    let scaled = if s == 1 {
                        src[sy * w + sx]
                    } else {
                        // `downscale`'s sum for scaled pixel (sy, sx), in its order.
                        let mut acc = 0.0;
                        for dy in 0..s {
                            let iy = reflect((sy * s + dy) as isize - top, h);
                            for dx in 0..s {
                                acc += src[iy * w + reflect((sx * s + dx) as isize - left, w)];
                            }
                        }
                        acc * inv
                    };
                    out.push(scaled * gain);
                }
            }
        }
        out
    }
}

/// `image` (`h x w`, planar) under each of `transforms`, stacked along N into `out`: one
/// network batch. Every transform must give the same output size, `plane` values each.
pub(crate) fn stack_transformed<'a>(image: &[f32], h: usize, w: usize, transforms: impl Iterator<Item = &'a Transform>, plane: usize, out: &mut [f32]) {
    for (t, dst) in transforms.zip(out.chunks_exact_mut(plane)) {
        t.apply_into(image, h, w, dst);
    }
}

/// The pixel geometry of a [`Transform`] on one image size. Coordinates: the image (`h x w`),
/// the scaled grid (`sh x sw`, after step 1), the padded grid (`ph x pw`, after the offset) and
/// the network input (the padded grid, flipped, then transposed).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry {
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
    /// Reflected rows/columns before the scaled image in the padded grid (`7 - offset`).
    pub before_y: usize,
    pub before_x: usize,
    pub flip_y: bool,
    pub flip_x: bool,
    pub transpose: bool,
}

impl Geometry {
    pub fn output_size(&self) -> (usize, usize) {
        if self.transpose {
            (self.pw, self.ph)
        } else {
            (self.ph, self.pw)
        }
    }

    /// The scaled-grid pixel that network input pixel `(y, x)` shows: undo the transpose, then
    /// the flip, then the padding (reflecting padded pixels into the image).
    #[inline]
    pub fn source(&self, y: usize, x: usize) -> (usize, usize) {
        let (py, px) = if self.transpose { (x, y) } else { (y, x) };
        let py = if self.flip_y { self.ph - 1 - py } else { py };
        let px = if self.flip_x { self.pw - 1 - px } else { px };
        (reflect(py as isize - self.before_y as isize, self.sh), reflect(px as isize - self.before_x as isize, self.sw))
    }

    #[cfg(test)]
    /// Where scaled-grid pixel `(sy, sx)` itself (not a reflection of it) lands in the network
    /// input: the inverse of [`Geometry::source`] on the unpadded part.
    pub fn destination(&self, sy: usize, sx: usize) -> (usize, usize) {
        let (py, px) = (sy + self.before_y, sx + self.before_x);
        let py = if self.flip_y { self.ph - 1 - py } else { py };
        let px = if self.flip_x { self.pw - 1 - px } else { px };
        if self.transpose {
            (px, py)
        } else {
            (py, px)
        }
    }
}

/// Step 1 of the transform: reflect-pad by `(top, left)` (and whatever completes a multiple of
/// `s` plus `s - 1` more), then average `s x s` blocks. Returns `3 * scaled_len(h) * scaled_len(w)`.
pub(crate) fn downscale(image: &[f32], h: usize, w: usize, s: usize, (top, left): (usize, usize)) -> Vec<f32> {
    if s == 1 {
        return image.to_vec();
    }
    let (sh, sw) = (scaled_len(h, s), scaled_len(w, s));
    let mut scaled = vec![0.0f32; 3 * sh * sw];
    let inv = 1.0 / (s * s) as f32;
    for c in 0..3 {
        let src = &image[c * h * w..(c + 1) * h * w];
        let dst = &mut scaled[c * sh * sw..(c + 1) * sh * sw];
        for y in 0..sh {
            for x in 0..sw {
                let mut acc = 0.0;
                for dy in 0..s {
                    let iy = reflect((y * s + dy) as isize - top as isize, h);
                    for dx in 0..s {
                        acc += src[iy * w + reflect((x * s + dx) as isize - left as isize, w)];
                    }
                }
                dst[y * sw + x] = acc * inv;
            }
        }
    }
    scaled
}

/// The random stream of sample `index` under `seed`.
pub fn sample_rng(seed: u64, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index);
    rng
}

/// Spatial size of each pooling block's feature map for a VGG input of `h x w` (floor pools).
pub(crate) fn vgg_block_sizes(h: usize, w: usize) -> [(usize, usize); 5] {
    let mut sizes = [(h, w); 5];
    for b in 1..5 {
        sizes[b] = (sizes[b - 1].0 / 2, sizes[b - 1].1 / 2);
    }
    sizes
}

/// Shapes `(channels, height, width)` of the 13 dropout masks for a VGG input of `h x w`.
pub fn dropout_mask_shapes(h: usize, w: usize) -> [(usize, usize, usize); 13] {
    let blocks = vgg_block_sizes(h, w);
    VGG_CONV_INPUTS.map(|(c, b)| (c, blocks[b as usize].0, blocks[b as usize].1))
}

/// Fills `mask` with iid dropout values: `1 / keep` with probability `keep`, else 0.
///
/// Draws the gaps between zeros from the geometric distribution instead of one uniform per
/// element: the same distribution, about 100x fewer random numbers at keep = 0.99.
pub fn fill_dropout<R: Rng + ?Sized>(rng: &mut R, keep: f64, mask: &mut [f32]) {
    mask.fill(dropout_scale(keep));
    for_each_dropout_zero(rng, keep, mask.len(), &mut |i| mask[i] = 0.0);
}

/// The value a kept element carries: `1 / keep` in float32.
fn dropout_scale(keep: f64) -> f32 {
    (1.0 / keep) as f32
}

/// The one dropout draw: calls `zero` with the position of each dropped element of a mask of
/// `len` elements, in increasing order, consuming the stream as [`fill_dropout`] does.
fn for_each_dropout_zero<R: Rng + ?Sized>(rng: &mut R, keep: f64, len: usize, zero: &mut dyn FnMut(usize)) {
    if keep >= 1.0 {
        return;
    }
    let log_keep = keep.ln();
    let mut i = 0usize;
    loop {
        // U in (0, 1] so the logarithm is finite.
        let u = 1.0 - rng.random::<f64>();
        let gap = (u.ln() / log_keep).floor();
        // `gap` is +inf when u underflows; both cases end the mask.
        if gap.is_nan() || gap >= (len - i) as f64 {
            break;
        }
        i += gap as usize;
        zero(i);
        i += 1;
        if i >= len {
            break;
        }
    }
}

/// One sample's 13 dropout masks for a whole network input, held compactly: the positions of
/// each mask's zeros (about 1% of its elements), drawn from the sample's stream exactly as
/// [`fill_dropout`] draws the dense masks. Tiles expand only the region they run on, so a
/// big input's masks cost about 15 bytes per pixel instead of 724.
#[derive(Clone, Debug)]
pub(crate) struct SampleDropout {
    shapes: [(usize, usize, usize); 13],
    /// Per mask, the flat `(channel, y, x)` indices of its zeros, increasing.
    zeros: Vec<Vec<u64>>,
}

impl SampleDropout {
    /// Draws the masks of a `th x tw` network input from `rng`, in conv order.
    pub(crate) fn draw<R: Rng + ?Sized>(rng: &mut R, th: usize, tw: usize) -> Self {
        let shapes = dropout_mask_shapes(th, tw);
        let zeros = shapes
            .iter()
            .map(|&(c, mh, mw)| {
                let mut z = Vec::new();
                for_each_dropout_zero(rng, DROPOUT_KEEP, c * mh * mw, &mut |i| z.push(i as u64));
                z
            })
            .collect();
        SampleDropout { shapes, zeros }
    }

    /// The masks of a `th x tw` network input drawn from `rng` exactly as [`SampleDropout::draw`]
    /// draws them (the stream is consumed alike), keeping only the window of input rows
    /// `y0..y0 + rows` and columns `x0..x0 + cols` (origins multiples of 16, so that each
    /// mask's window starts on a whole cell of its pooled grid, as a tile's does): mask `k` of
    /// the result is the whole draw's over rows `y0 >> pool .. + (rows >> pool)` of its grid
    /// (and likewise columns), with shape `(channels, rows >> pool, cols >> pool)`. What one
    /// tile of a draw needs, without holding the zeros of the rest.
    pub(crate) fn draw_window<R: Rng + ?Sized>(rng: &mut R, th: usize, tw: usize, (y0, rows): (usize, usize), (x0, cols): (usize, usize)) -> Self {
        let shapes = dropout_mask_shapes(th, tw);
        let mut window = shapes;
        let zeros = shapes
            .iter()
            .zip(VGG_CONV_INPUTS)
            .zip(window.iter_mut())
            .map(|((&(c, mh, mw), (_, pool)), win)| {
                let (wy, wx, wh, ww) = (y0 >> pool, x0 >> pool, rows >> pool, cols >> pool);
                debug_assert!(wy + wh <= mh && wx + ww <= mw);
                *win = (c, wh, ww);
                let mut z = Vec::new();
                for_each_dropout_zero(rng, DROPOUT_KEEP, c * mh * mw, &mut |i| {
                    let (ch, y, x) = (i / (mh * mw), i / mw % mh, i % mw);
                    if (wy..wy + wh).contains(&y) && (wx..wx + ww).contains(&x) {
                        z.push(((ch * wh + y - wy) * ww + x - wx) as u64);
                    }
                });
                z
            })
            .collect();
        SampleDropout { shapes: window, zeros }
    }

    /// `(channels, height, width)` of mask `k` over the whole input.
    pub(crate) fn shape(&self, k: usize) -> (usize, usize, usize) {
        self.shapes[k]
    }

    /// Writes mask `k`'s values over rows `y0..y0 + rows` and columns `x0..x0 + cols` of its own
    /// grid (every channel, channel-major) to `out` (`channels * rows * cols` values): the
    /// dense mask's values there, bit for bit.
    pub(crate) fn expand_into(&self, k: usize, (y0, rows): (usize, usize), (x0, cols): (usize, usize), out: &mut [f32]) {
        let (c, mh, mw) = self.shapes[k];
        debug_assert!(y0 + rows <= mh && x0 + cols <= mw && out.len() == c * rows * cols);
        out.fill(dropout_scale(DROPOUT_KEEP));
        let zeros = &self.zeros[k];
        if rows == mh && cols == mw {
            zeros.iter().for_each(|&i| out[i as usize] = 0.0);
            return;
        }
        // Zeros are sorted by flat index, so each row of the region is one binary search.
        for ch in 0..c {
            for y in 0..rows {
                let base = ((ch * mh + y0 + y) * mw + x0) as u64;
                let first = zeros.partition_point(|&i| i < base);
                let row = &mut out[(ch * rows + y) * cols..(ch * rows + y + 1) * cols];
                for &i in zeros[first..].iter().take_while(|&&i| i < base + cols as u64) {
                    row[(i - base) as usize] = 0.0;
                }
            }
        }
    }
}

/// `draws` grouped by the size of their transformed image (one network batch per size, smallest
/// first), each with its slot in `draws` so results can be put back in order.
pub(crate) fn group_by_size(draws: &mut [Draw], h: usize, w: usize) -> BTreeMap<(usize, usize), Vec<(usize, &mut Draw)>> {
    let mut groups: BTreeMap<(usize, usize), Vec<(usize, &mut Draw)>> = BTreeMap::new();
    for (slot, d) in draws.iter_mut().enumerate() {
        groups.entry(d.transform.output_size(h, w)).or_default().push((slot, d));
    }
    groups
}

/// One sample to evaluate: its transform and the random stream its dropout masks continue.
#[derive(Clone, Debug)]
pub struct Draw {
    /// The stratum (scale level - 1) for the stratified sampler; 0 for iid.
    pub stratum: usize,
    pub transform: Transform,
    pub rng: ChaCha8Rng,
}

impl Draw {
    /// The `index`-th independent draw under `seed` (stream `(seed, index)`).
    pub fn iid(seed: u64, index: u64, levels: u32) -> Self {
        let mut rng = sample_rng(seed, index);
        let transform = Transform::sample(&mut rng, levels);
        Draw { stratum: 0, transform, rng }
    }
}

/// One network batch: draws whose transformed images share a size, with both images
/// transformed and stacked along N and the draws' dropout masks.
pub(crate) struct Batch {
    pub height: usize,
    pub width: usize,
    pub references: Vec<f32>,
    pub candidates: Vec<f32>,
    pub masks: DropoutBatch,
}

/// Builds the network batches of `draws` for the `h x w` pair, smallest input first and at most
/// `max_pixels` network pixels each (at least one draw), and hands each to `each` with its
/// members (slot in `draws`, draw). Each draw's dropout masks continue its stream.
pub(crate) fn for_each_batch(
    reference: &[f32],
    candidate: &[f32],
    (h, w): (usize, usize),
    draws: &mut [Draw],
    max_pixels: usize,
    each: &mut dyn FnMut(&Batch, &[(usize, &mut Draw)]) -> crate::error::Result<()>,
) -> crate::error::Result<()> {
    for ((th, tw), mut members) in group_by_size(draws, h, w) {
        let plane = 3 * th * tw;
        for chunk in members.chunks_mut((max_pixels / (th * tw)).max(1)) {
            let n = chunk.len();
            let mut references = vec![0.0f32; n * plane];
            let mut candidates = vec![0.0f32; n * plane];
            stack_transformed(reference, h, w, chunk.iter().map(|(_, d)| &d.transform), plane, &mut references);
            stack_transformed(candidate, h, w, chunk.iter().map(|(_, d)| &d.transform), plane, &mut candidates);
            let masks = DropoutBatch::draw(th, tw, chunk.iter_mut().map(|(_, d)| &mut d.rng));
            each(&Batch { height: th, width: tw, references, candidates, masks }, chunk)?;
        }
    }
    Ok(())
}

/// The 13 dropout masks of a batch, stacked along N: sample `j`'s masks come from the `j`-th
/// random stream, in conv order.
pub(crate) struct DropoutBatch {
    shapes: [(usize, usize, usize); 13],
    n: usize,
    data: Vec<Vec<f32>>,
}

impl DropoutBatch {
    pub(crate) fn draw<'a>(th: usize, tw: usize, rngs: impl ExactSizeIterator<Item = &'a mut ChaCha8Rng>) -> Self {
        let shapes = dropout_mask_shapes(th, tw);
        let n = rngs.len();
        let mut data: Vec<Vec<f32>> = shapes.iter().map(|&(c, mh, mw)| vec![0.0; n * c * mh * mw]).collect();
        for (j, rng) in rngs.enumerate() {
            let sample = SampleDropout::draw(rng, th, tw);
            for (k, &(c, mh, mw)) in shapes.iter().enumerate() {
                let len = c * mh * mw;
                sample.expand_into(k, (0, mh), (0, mw), &mut data[k][j * len..(j + 1) * len]);
            }
        }
        DropoutBatch { shapes, n, data }
    }

    /// Mask 0 alone (the image's, before conv1_1) of a batch, `[n, 3, th, tw]` stacked along N:
    /// the values [`DropoutBatch::draw`] gives it from the same streams, each stream consumed
    /// only as far as that mask. What a network that stops after conv1_1 takes (the cheap
    /// stream of a two-stream estimate).
    pub(crate) fn draw_first<'a>(th: usize, tw: usize, rngs: impl ExactSizeIterator<Item = &'a mut ChaCha8Rng>) -> (Vec<usize>, Vec<f32>) {
        let (c, mh, mw) = dropout_mask_shapes(th, tw)[0];
        let (n, len) = (rngs.len(), c * mh * mw);
        let mut data = vec![dropout_scale(DROPOUT_KEEP); n * len];
        for (j, rng) in rngs.enumerate() {
            let mask = &mut data[j * len..(j + 1) * len];
            for_each_dropout_zero(rng, DROPOUT_KEEP, len, &mut |i| mask[i] = 0.0);
        }
        (vec![n, c, mh, mw], data)
    }

    /// `(shape, values)` per mask, as the model's `mask_k` inputs.
    pub(crate) fn inputs(&self) -> Vec<(Vec<usize>, &[f32])> {
        self.shapes.iter().zip(&self.data).map(|(&(c, mh, mw), m)| (vec![self.n, c, mh, mw], m.as_slice())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_mask_alone_equals_the_batchs_first_mask() {
        let (th, tw) = (37, 53);
        let mut a: Vec<ChaCha8Rng> = (0..3).map(|i| sample_rng(7, i)).collect();
        let mut b = a.clone();
        let full = DropoutBatch::draw(th, tw, a.iter_mut());
        let (shape, first) = DropoutBatch::draw_first(th, tw, b.iter_mut());
        let (want_shape, want) = &full.inputs()[0];
        assert_eq!((&shape, first.as_slice()), (want_shape, *want));
        assert!(first.contains(&0.0), "some element dropped");
    }

    /// A 3-channel image whose value encodes (channel, y, x).
    fn ramp(h: usize, w: usize) -> Vec<f32> {
        (0..3 * h * w).map(|i| i as f32).collect()
    }

    fn at(p: &Planar, c: usize, y: usize, x: usize) -> f32 {
        p.data[c * p.height * p.width + y * p.width + x]
    }

    fn with(f: impl FnOnce(&mut Transform)) -> Transform {
        let mut t = Transform::neutral();
        f(&mut t);
        t
    }

    #[test]
    fn neutral_keeps_the_image_top_left() {
        let img = ramp(8, 9);
        let out = Transform::neutral().apply(&img, 8, 9);
        assert_eq!((out.height, out.width), (15, 16));
        for c in 0..3 {
            for y in 0..8 {
                for x in 0..9 {
                    assert_eq!(at(&out, c, y, x), img[c * 72 + y * 9 + x]);
                }
            }
        }
    }

    #[test]
    fn offset_reflects_without_repeating_the_edge() {
        // Rows [0 1 2 ... 8] (w = 9), x offset o = 5: pad 2 before, 5 after.
        let img: Vec<f32> = (0..3 * 9).flat_map(|_| (0..9).map(|v| v as f32)).collect();
        let t = with(|t| t.offset = (7, 5));
        let p = t.apply(&img, 9, 9);
        assert_eq!((p.height, p.width), (16, 16));
        let row: Vec<f32> = (0..16).map(|x| at(&p, 0, 0, x)).collect();
        assert_eq!(row, vec![2., 1., 0., 1., 2., 3., 4., 5., 6., 7., 8., 7., 6., 5., 4., 3.]);
        // Columns [0 1 ... 8] down y, y offset o = 2: pad 5 before, 2 after.
        let t = with(|t| t.offset = (2, 7));
        let img_t: Vec<f32> = (0..3).flat_map(|_| (0..9).flat_map(|y| (0..9).map(move |_| y as f32))).collect();
        let p = t.apply(&img_t, 9, 9);
        let col: Vec<f32> = (0..16).map(|y| at(&p, 0, y, 0)).collect();
        assert_eq!(col, vec![5., 4., 3., 2., 1., 0., 1., 2., 3., 4., 5., 6., 7., 8., 7., 6.]);
    }

    #[test]
    fn scale_pads_by_reflection_then_box_averages() {
        // Row [0 1 2 3 4] at s = 2 with left pad 1: full = (5 + 2) // 2 * 2 = 6, so the padded
        // row is [1 | 0 1 2 3 4] -> block means [0.5 1.5 3.5]. Rows: h = 3, top pad 0 -> full 4,
        // padded rows [r0 r1 r2 | r1] -> 2 output rows.
        let (h, w) = (3, 5);
        let img: Vec<f32> = (0..3 * h).flat_map(|r| (0..w).map(move |v| (v + 10 * (r % h)) as f32)).collect();
        let out = downscale(&img, h, w, 2, (0, 1));
        assert_eq!((scaled_len(h, 2), scaled_len(w, 2)), (2, 3));
        assert_eq!(&out[..6], &[5.5, 6.5, 8.5, 15.5, 16.5, 18.5]);
        // Top pad 1, left 0: rows [r1 | r0 r1 r2] -> (r1, r0), (r1, r2); columns [0 1 2 3 4 | 3].
        let out = downscale(&img, h, w, 2, (1, 0));
        assert_eq!(&out[..6], &[5.5, 7.5, 8.5, 15.5, 17.5, 18.5]);
    }

    #[test]
    fn flips_transpose_permutation_and_colour() {
        let (h, w) = (9, 10);
        let img = ramp(h, w);
        let base = Transform::neutral().apply(&img, h, w);
        let fx = with(|t| t.flip = Flip::X).apply(&img, h, w);
        let fy = with(|t| t.flip = Flip::Y).apply(&img, h, w);
        let fb = with(|t| t.flip = Flip::Both).apply(&img, h, w);
        let (ph, pw) = (base.height, base.width);
        for c in 0..3 {
            for y in 0..ph {
                for x in 0..pw {
                    assert_eq!(at(&fx, c, y, x), at(&base, c, y, pw - 1 - x));
                    assert_eq!(at(&fy, c, y, x), at(&base, c, ph - 1 - y, x));
                    assert_eq!(at(&fb, c, y, x), at(&base, c, ph - 1 - y, pw - 1 - x));
                }
            }
        }
        let tr = with(|t| t.transpose = true).apply(&img, h, w);
        assert_eq!((tr.height, tr.width), (pw, ph));
        for y in 0..ph {
            for x in 0..pw {
                assert_eq!(at(&tr, 1, x, y), at(&base, 1, y, x));
            }
        }
        let pc = with(|t| {
            t.permutation = [2, 0, 1];
            t.color = [0.5, 0.25, 1.0];
        })
        .apply(&img, h, w);
        assert_eq!(at(&pc, 0, 1, 2), 0.5 * at(&base, 2, 1, 2));
        assert_eq!(at(&pc, 1, 1, 2), 0.25 * at(&base, 0, 1, 2));
        assert_eq!(at(&pc, 2, 1, 2), at(&base, 1, 1, 2));
    }

    #[test]
    fn sampled_transforms_follow_the_distribution() {
        let mut rng = sample_rng(1, 0);
        let n = 40_000;
        let mut level = [0usize; 4];
        let mut transposed = 0;
        for _ in 0..n {
            let t = Transform::sample(&mut rng, 3);
            level[t.scale] += 1;
            transposed += t.transpose as usize;
            assert!(t.scale_offset.0 < t.scale && t.offset.0 <= 7 && t.offset.1 <= 7);
            assert!(t.color.iter().all(|&c| (0.2..=1.0).contains(&c)));
        }
        // p(s) = (1/s^2) / (1 + 1/4 + 1/9)
        let z = 1.0 + 0.25 + 1.0 / 9.0;
        for (s, &count) in level.iter().enumerate().skip(1) {
            let p = 1.0 / (s * s) as f64 / z;
            let f = count as f64 / n as f64;
            assert!((f - p).abs() < 4.0 * (p * (1.0 - p) / n as f64).sqrt(), "level {s}: {f} vs {p}");
        }
        assert!((transposed as f64 / n as f64 - 0.5).abs() < 0.01);
    }

    #[test]
    fn dropout_rate_and_values() {
        let mut rng = sample_rng(7, 3);
        let mut mask = vec![0.0f32; 1_000_000];
        fill_dropout(&mut rng, DROPOUT_KEEP, &mut mask);
        let zeros = mask.iter().filter(|&&v| v == 0.0).count();
        assert!(mask.iter().all(|&v| v == 0.0 || v == (1.0 / DROPOUT_KEEP) as f32));
        // Binomial(1e6, 0.01): sd ~ 99.5.
        assert!((zeros as f64 - 10_000.0).abs() < 500.0, "{zeros} zeros");
        // Gaps must not cluster: count zeros in each 1/10th.
        for chunk in mask.chunks(100_000) {
            let z = chunk.iter().filter(|&&v| v == 0.0).count();
            assert!((z as f64 - 1000.0).abs() < 160.0, "{z}");
        }
    }

    #[test]
    fn compact_masks_expand_to_the_dense_draw_bit_for_bit() {
        // The whole of each mask, and regions on its grid, equal fill_dropout's masks drawn
        // from the same stream in the same order; the stream ends in the same state.
        let (th, tw) = (45, 38);
        let mut dense_rng = sample_rng(3, 11);
        let mut compact_rng = dense_rng.clone();
        let compact = SampleDropout::draw(&mut compact_rng, th, tw);
        for (k, &(c, mh, mw)) in dropout_mask_shapes(th, tw).iter().enumerate() {
            let mut dense = vec![0.0f32; c * mh * mw];
            fill_dropout(&mut dense_rng, DROPOUT_KEEP, &mut dense);
            let mut whole = vec![1.0f32; dense.len()];
            compact.expand_into(k, (0, mh), (0, mw), &mut whole);
            assert_eq!(whole.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), dense.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "mask {k}");
            for (y0, rows, x0, cols) in [(0, mh, 0, mw), (mh / 3, mh - mh / 3, mw / 4, mw / 2), (mh - 1, 1, 0, 1)] {
                if rows == 0 || cols == 0 {
                    continue;
                }
                let mut region = vec![0.5f32; c * rows * cols];
                compact.expand_into(k, (y0, rows), (x0, cols), &mut region);
                for ch in 0..c {
                    for y in 0..rows {
                        for x in 0..cols {
                            let want = dense[(ch * mh + y0 + y) * mw + x0 + x];
                            assert_eq!(region[(ch * rows + y) * cols + x].to_bits(), want.to_bits(), "mask {k} at {ch},{y},{x}");
                        }
                    }
                }
            }
        }
        assert!(compact.zeros.iter().map(Vec::len).sum::<usize>() > 0, "some zeros were drawn");
        assert_eq!(dense_rng.random::<u64>(), compact_rng.random::<u64>(), "the stream is consumed alike");
    }

    #[test]
    fn a_region_of_the_transform_is_that_crop_of_the_whole_bit_for_bit() {
        let (h, w) = (29, 26);
        let img: Vec<f32> = (0..3 * h * w).map(|i| ((i * 7919) % 1000) as f32 / 997.0).collect();
        let mut rng = sample_rng(8, 1);
        for _ in 0..40 {
            let t = Transform::sample(&mut rng, 3);
            let whole = t.apply(&img, h, w);
            let (oh, ow) = (whole.height, whole.width);
            let (y0, x0) = (rng.random_range(0..oh), rng.random_range(0..ow));
            let (y1, x1) = (rng.random_range(y0 + 1..=oh), rng.random_range(x0 + 1..=ow));
            let region = t.apply_region(&img, h, w, (y0, y1), (x0, x1));
            let crop: Vec<u32> = (0..3).flat_map(|c| (y0..y1).flat_map(move |y| (x0..x1).map(move |x| (c, y, x)))).map(|(c, y, x)| whole.data[(c * oh + y) * ow + x].to_bits()).collect();
            assert_eq!(region.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), crop, "{t:?}");
        }
    }

    #[test]
    fn a_window_of_the_masks_is_that_window_of_the_whole_draw() {
        let (th, tw) = (80, 96);
        let (y0, rows, x0, cols) = (32, 48, 16, 64);
        let mut whole_rng = sample_rng(6, 2);
        let mut window_rng = whole_rng.clone();
        let whole = SampleDropout::draw(&mut whole_rng, th, tw);
        let window = SampleDropout::draw_window(&mut window_rng, th, tw, (y0, rows), (x0, cols));
        for (k, &(c, pool)) in VGG_CONV_INPUTS.iter().enumerate() {
            let (mh, mw) = (rows >> pool, cols >> pool);
            assert_eq!(window.shape(k), (c, mh, mw));
            let mut want = vec![0.5f32; c * mh * mw];
            whole.expand_into(k, (y0 >> pool, mh), (x0 >> pool, mw), &mut want);
            let mut got = vec![0.5f32; c * mh * mw];
            window.expand_into(k, (0, mh), (0, mw), &mut got);
            assert_eq!(got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "mask {k}");
        }
        assert_eq!(whole_rng.random::<u64>(), window_rng.random::<u64>(), "the stream is consumed alike");
    }

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a = Transform::sample(&mut sample_rng(5, 9), 4);
        let b = Transform::sample(&mut sample_rng(5, 9), 4);
        assert_eq!(a, b);
        let differ = (0..20).any(|i| Transform::sample(&mut sample_rng(5, i), 4) != a);
        assert!(differ);
    }

    #[test]
    fn mask_shapes_follow_the_pools() {
        let shapes = dropout_mask_shapes(37, 20);
        assert_eq!(shapes[0], (3, 37, 20));
        assert_eq!(shapes[2], (64, 18, 10));
        assert_eq!(shapes[12], (512, 2, 1));
    }

    /// Every geometric variant: all flips, both transposes, scales 1..3 with every phase, a
    /// few offsets (including 0 and 7).
    fn every_geometry() -> Vec<Transform> {
        let mut out = Vec::new();
        for &flip in &FLIPS {
            for transpose in [false, true] {
                for scale in 1..=3usize {
                    for phase in 0..scale * scale {
                        for offset in [(0, 7), (7, 0), (3, 5)] {
                            out.push(Transform {
                                scale,
                                scale_offset: (phase / scale, phase % scale),
                                offset,
                                flip,
                                transpose,
                                ..Transform::neutral()
                            });
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn pixel_coordinates_round_trip_through_every_geometry() {
        // Sizes keep >= 8 scaled pixels per axis at scale 3, as the metric's size rule does.
        let (h, w) = (25, 22);
        for t in every_geometry() {
            let g = t.geometry(h, w);
            assert_eq!(g.output_size(), t.output_size(h, w));
            let (oh, ow) = g.output_size();
            // Scaled grid -> network input -> scaled grid is the identity ...
            let mut hit = vec![false; oh * ow];
            for sy in 0..g.sh {
                for sx in 0..g.sw {
                    let (y, x) = g.destination(sy, sx);
                    assert!(y < oh && x < ow, "{t:?}");
                    assert_eq!(g.source(y, x), (sy, sx), "{t:?}");
                    hit[y * ow + x] = true;
                }
            }
            // ... and every other input pixel is padding, a reflection of an image pixel.
            assert_eq!(hit.iter().filter(|&&b| b).count(), g.sh * g.sw);
            // apply_into agrees: with s = 1 the input shows the image pixel at its destination.
            if t.scale == 1 {
                let img = ramp(h, w);
                let out = t.apply(&img, h, w);
                for y in 0..h {
                    for x in 0..w {
                        let (oy, ox) = g.destination(y, x);
                        assert_eq!(at(&out, 1, oy, ox), img[h * w + y * w + x], "{t:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn pull_back_is_the_adjoint_of_apply() {
        // <A x, m> == <x, A^T m> for random x and m, for every geometry: the heatmap's
        // inverse mapping moves each value exactly where the forward transform took it from.
        let (h, w) = (26, 29);
        let mut rng = sample_rng(9, 9);
        for t in every_geometry() {
            let (oh, ow) = t.output_size(h, w);
            let x: Vec<f32> = (0..3 * h * w).map(|_| rng.random::<f32>()).collect();
            let m: Vec<f32> = (0..oh * ow).map(|_| rng.random::<f32>()).collect();
            let ax = t.apply(&x, h, w);
            let back = t.pull_back(&m, h, w);
            for c in 0..3 {
                let lhs: f64 = (0..oh * ow).map(|i| ax.data[c * oh * ow + i] as f64 * m[i] as f64).sum();
                let rhs: f64 = (0..h * w).map(|i| x[c * h * w + i] as f64 * back[i] as f64).sum();
                assert!((lhs - rhs).abs() < 1e-4 * lhs.abs(), "{t:?}: {lhs} vs {rhs}");
            }
            let (sm, sb) = (m.iter().map(|&v| v as f64).sum::<f64>(), back.iter().map(|&v| v as f64).sum::<f64>());
            assert!((sm - sb).abs() < 1e-4 * sm, "the sum is kept");
        }
    }

    #[test]
    fn pull_back_moves_a_point_to_the_block_it_came_from() {
        // A single hot input pixel lands on the image pixels it was averaged from: its s x s
        // block, 1/s^2 each (an interior block here, so no reflection is involved).
        let (h, w) = (27, 24);
        for t in every_geometry() {
            let g = t.geometry(h, w);
            let (oh, ow) = g.output_size();
            let (sy, sx) = (2, 2);
            let (oy, ox) = g.destination(sy, sx);
            let mut m = vec![0.0; oh * ow];
            m[oy * ow + ox] = 1.0;
            let back = t.pull_back(&m, h, w);
            let s = t.scale;
            let (top, left) = t.scale_offset;
            for dy in 0..s {
                for dx in 0..s {
                    let (y, x) = (sy * s + dy - top, sx * s + dx - left);
                    assert_eq!(back[y * w + x], 1.0 / (s * s) as f32, "{t:?}");
                }
            }
            assert!((back.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
    }
}
