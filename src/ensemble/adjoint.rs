//! The adjoint (transpose) of [`Transform::apply_into`], one for both its users: the gradient
//! ([`Transform::apply_adjoint`], a gradient with respect to the network input back to one with
//! respect to the image; every step of the transform is linear in the pixels, so the chain rule
//! through it is exactly this adjoint) and the heatmap ([`Transform::pull_back`], one map on the
//! network input grid back to the image). Both run the geometry's adjoint of one plane,
//! `Transform::adjoint_plane`, accumulating in f64.

use super::{reflect, Geometry, Transform};

impl Transform {
    /// Given `grad_out`, a gradient with respect to this transform's output for an `h x w`
    /// image (`3 * out_h * out_w` values, planar), returns the gradient with respect to the
    /// image (`3 * h * w` values): `<apply(x), g> == <x, apply_adjoint(g)>` for all `x`, `g`.
    ///
    /// Per step, in reverse: colour scale -> the same scale; channel permutation -> scatter back
    /// to the source channel; the geometry -> `Transform::adjoint_plane`.
    pub fn apply_adjoint(&self, grad_out: &[f32], h: usize, w: usize) -> Vec<f32> {
        let g = self.geometry(h, w);
        let (out_h, out_w) = g.output_size();
        assert_eq!(grad_out.len(), 3 * out_h * out_w, "gradient does not match the transform's output size");
        let mut image = vec![0.0f32; 3 * h * w];
        for k in 0..3 {
            let back = self.adjoint_plane(&g, &grad_out[k * out_h * out_w..(k + 1) * out_h * out_w], self.color[k] as f64, h, w);
            let src = self.permutation[k];
            for (o, v) in image[src * h * w..(src + 1) * h * w].iter_mut().zip(back) {
                *o += v;
            }
        }
        image
    }

    /// The adjoint of the transform's geometry (scale, offset, flips, transpose; colour moves
    /// no pixel): carries a single-channel map on the network input grid back to the `h x w`
    /// image. Each input pixel's value goes to the image pixels it was made from, with the
    /// weights it was made with (`1/s^2` over its `s x s` block; reflected padding lands on the
    /// pixels it mirrors), so the sum is kept: `<apply(x), m> = <x, pull_back(m)>`.
    pub fn pull_back(&self, map: &[f32], h: usize, w: usize) -> Vec<f32> {
        let g = self.geometry(h, w);
        let (out_h, out_w) = g.output_size();
        assert_eq!(map.len(), out_h * out_w, "map on the transform's output grid");
        self.adjoint_plane(&g, map, 1.0, h, w)
    }

    /// The geometry's adjoint on one plane, times `gain`: transpose and flips read the same
    /// index map the other way, reflect padding accumulates every padded copy onto the pixel it
    /// copied, the box downscale spreads each value / s^2 over its block (again through the
    /// reflect padding). Sums run in f64: many output pixels can land on one pixel (edges,
    /// padding); the result is rounded to f32 once.
    fn adjoint_plane(&self, g: &Geometry, map: &[f32], gain: f64, h: usize, w: usize) -> Vec<f32> {
        let (out_h, out_w) = g.output_size();
        let mut scaled = vec![0.0f64; g.sh * g.sw];
        for y in 0..out_h {
            for x in 0..out_w {
                let (sy, sx) = g.source(y, x);
                scaled[sy * g.sw + sx] += gain * map[y * out_w + x] as f64;
            }
        }
        let s = self.scale;
        if s == 1 {
            return scaled.into_iter().map(|v| v as f32).collect();
        }
        let (top, left) = (self.scale_offset.0 as isize, self.scale_offset.1 as isize);
        let inv = 1.0 / (s * s) as f64;
        let mut image = vec![0.0f64; h * w];
        for sy in 0..g.sh {
            for sx in 0..g.sw {
                let v = scaled[sy * g.sw + sx] * inv;
                for dy in 0..s {
                    let iy = reflect((sy * s + dy) as isize - top, h);
                    for dx in 0..s {
                        image[iy * w + reflect((sx * s + dx) as isize - left, w)] += v;
                    }
                }
            }
        }
        image.into_iter().map(|v| v as f32).collect()
    }
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::super::sample_rng;
    use super::*;

    /// `<T x, g> = <x, T' g>` for random transforms (every scale, offset, flip, transpose,
    /// permutation), random images and random output gradients, in f64 to ~1e-6 relative.
    #[test]
    fn adjoint_satisfies_the_inner_product_identity() {
        let mut rng = sample_rng(11, 0);
        for trial in 0..200 {
            // The smallest sizes the metric accepts (7 levels + 2) and a little more.
            let levels = 1 + (trial % 3) as u32;
            let min = 7 * levels as usize + 2;
            let (h, w) = (rng.random_range(min..min + 15), rng.random_range(min..min + 15));
            let t = Transform::sample(&mut rng, levels);
            let x: Vec<f32> = (0..3 * h * w).map(|_| rng.random::<f32>() - 0.5).collect();
            let tx = t.apply(&x, h, w);
            let g: Vec<f32> = (0..tx.data.len()).map(|_| rng.random::<f32>() - 0.5).collect();
            let tg = t.apply_adjoint(&g, h, w);
            assert_eq!(tg.len(), x.len());
            let lhs: f64 = tx.data.iter().zip(&g).map(|(&a, &b)| a as f64 * b as f64).sum();
            let rhs: f64 = x.iter().zip(&tg).map(|(&a, &b)| a as f64 * b as f64).sum();
            assert!((lhs - rhs).abs() <= 1e-5 * (1.0 + lhs.abs()), "trial {trial} {t:?}: {lhs} vs {rhs}");
        }
    }

    #[test]
    fn neutral_adjoint_folds_the_padding_back() {
        // A 9x9 image, neutral transform: 7 rows/columns reflected after the image. A gradient
        // of ones on the output gives each pixel 1 + the number of padded copies of it.
        let (h, w) = (9, 9);
        let t = Transform::neutral();
        let g = vec![1.0f32; 3 * 16 * 16];
        let back = t.apply_adjoint(&g, h, w);
        // Row copies: rows 1..=7 are reflected once each (padded rows 9..15 copy rows 7..1).
        let copies = |i: usize| if (1..=7).contains(&i) { 2.0 } else { 1.0 };
        for y in 0..h {
            for x in 0..w {
                assert_eq!(back[y * w + x], copies(y) * copies(x), "({y},{x})");
            }
        }
    }
}
