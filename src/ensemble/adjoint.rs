//! The adjoint (transpose) of [`Transform::apply_into`]: maps a gradient with respect to the
//! network input back to a gradient with respect to the image. Every step of the transform is
//! linear in the pixels, so the chain rule through it is exactly this adjoint.

use super::{reflect, scaled_len, Flip, Transform, OFFSET_PAD};

impl Transform {
    /// Given `grad_out`, a gradient with respect to this transform's output for an `h x w`
    /// image (`3 * out_h * out_w` values, planar), returns the gradient with respect to the
    /// image (`3 * h * w` values): `<apply(x), g> == <x, apply_adjoint(g)>` for all `x`, `g`.
    ///
    /// Per step, in reverse: colour scale -> the same scale; channel permutation -> scatter back
    /// to the source channel; transpose and flips -> the same index map read the other way;
    /// reflect padding -> accumulate every padded copy onto the pixel it copied; box
    /// downscale -> spread each value / s^2 over its block (again through the reflect padding).
    pub fn apply_adjoint(&self, grad_out: &[f32], h: usize, w: usize) -> Vec<f32> {
        let s = self.scale;
        let (sh, sw) = (scaled_len(h, s), scaled_len(w, s));
        let (ph, pw) = (sh + OFFSET_PAD, sw + OFFSET_PAD);
        let (out_h, out_w) = if self.transpose { (pw, ph) } else { (ph, pw) };
        assert_eq!(grad_out.len(), 3 * out_h * out_w, "gradient does not match the transform's output size");
        let (before_y, before_x) = ((OFFSET_PAD - self.offset.0) as isize, (OFFSET_PAD - self.offset.1) as isize);
        let (flip_y, flip_x) = match self.flip {
            Flip::None => (false, false),
            Flip::X => (false, true),
            Flip::Y => (true, false),
            Flip::Both => (true, true),
        };
        // Accumulate in f64: many output pixels can land on one scaled pixel (edges, padding).
        let mut scaled = vec![0.0f64; 3 * sh * sw];
        for k in 0..3 {
            let src = self.permutation[k];
            let gain = self.color[k] as f64;
            let g = &grad_out[k * out_h * out_w..(k + 1) * out_h * out_w];
            let dst = &mut scaled[src * sh * sw..(src + 1) * sh * sw];
            for y in 0..out_h {
                for x in 0..out_w {
                    let (py, px) = if self.transpose { (x, y) } else { (y, x) };
                    let py = if flip_y { ph - 1 - py } else { py };
                    let px = if flip_x { pw - 1 - px } else { px };
                    let sy = reflect(py as isize - before_y, sh);
                    let sx = reflect(px as isize - before_x, sw);
                    dst[sy * sw + sx] += gain * g[y * out_w + x] as f64;
                }
            }
        }
        if s == 1 {
            return scaled.into_iter().map(|v| v as f32).collect();
        }
        let (top, left) = (self.scale_offset.0 as isize, self.scale_offset.1 as isize);
        let inv = 1.0 / (s * s) as f64;
        let mut image = vec![0.0f64; 3 * h * w];
        for c in 0..3 {
            let src = &scaled[c * sh * sw..(c + 1) * sh * sw];
            let dst = &mut image[c * h * w..(c + 1) * h * w];
            for y in 0..sh {
                for x in 0..sw {
                    let v = src[y * sw + x] * inv;
                    for dy in 0..s {
                        let iy = reflect((y * s + dy) as isize - top, h);
                        for dx in 0..s {
                            dst[iy * w + reflect((x * s + dx) as isize - left, w)] += v;
                        }
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
