//! Control variates from the draw itself: functions of a sample's transform whose expectation
//! under the E-LPIPS distribution is known exactly, so that subtracting a multiple of them
//! leaves the expectation of the distance unchanged while removing the part of its variance
//! they explain. No network evaluation is needed to know their means.

use crate::ensemble::{Flip, Transform};

/// Variance of a colour gain drawn uniformly from [0.2, 1].
const GAIN_VARIANCE: f64 = 0.64 / 12.0;

/// Centred functions of the draw with exact mean 0: per source channel, the gain it received
/// and its square (the network sees each source channel scaled by one gain); the scale level;
/// transpose; flips; offsets.
pub fn draw_features(t: &Transform, levels: u32) -> Vec<f64> {
    let mut gain = [0.0; 3];
    for k in 0..3 {
        gain[t.permutation[k]] = t.color[k] as f64;
    }
    let mut f: Vec<f64> = gain.iter().map(|g| g - 0.6).collect();
    f.extend(gain.iter().map(|g| (g - 0.6).powi(2) - GAIN_VARIANCE));
    let z: f64 = (1..=levels).map(|s| 1.0 / (s * s) as f64).sum();
    for s in 1..levels as usize {
        f.push((t.scale == s) as u8 as f64 - 1.0 / (s * s) as f64 / z);
    }
    f.push(t.transpose as u8 as f64 - 0.5);
    for flip in [Flip::X, Flip::Y, Flip::Both] {
        f.push((t.flip == flip) as u8 as f64 - 0.25);
    }
    f.push(t.offset.0 as f64 - 3.5);
    f.push(t.offset.1 as f64 - 3.5);
    f
}

/// Least squares of `y` on `[1, x]`: returns `[intercept, coefficients...]`. A tiny ridge
/// keeps it defined when a feature never varies (e.g. a level not yet drawn).
pub fn least_squares(x: &[Vec<f64>], y: &[f64]) -> Vec<f64> {
    let p = x.first().map_or(0, Vec::len) + 1;
    let mut a = vec![vec![0.0; p + 1]; p];
    for (xi, &yi) in x.iter().zip(y) {
        let r: Vec<f64> = std::iter::once(1.0).chain(xi.iter().copied()).collect();
        for j in 0..p {
            for k in 0..p {
                a[j][k] += r[j] * r[k];
            }
            a[j][p] += r[j] * yi;
        }
    }
    for (j, aj) in a.iter_mut().enumerate() {
        aj[j] += 1e-9 * (1.0 + aj[j]);
    }
    // Gauss-Jordan with partial pivoting (p is small).
    for c in 0..p {
        let piv = (c..p).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs())).unwrap_or(c);
        a.swap(c, piv);
        for r in 0..p {
            if r != c && a[c][c] != 0.0 {
                let m = a[r][c] / a[c][c];
                for k in c..=p {
                    a[r][k] -= m * a[c][k];
                }
            }
        }
    }
    (0..p).map(|j| if a[j][j] != 0.0 { a[j][p] / a[j][j] } else { 0.0 }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ensemble::sample_rng;

    #[test]
    fn features_have_mean_zero() {
        let mut rng = sample_rng(4, 0);
        let n = 200_000;
        let mut sum = vec![0.0; draw_features(&Transform::neutral(), 3).len()];
        for _ in 0..n {
            let t = Transform::sample(&mut rng, 3);
            for (s, f) in sum.iter_mut().zip(draw_features(&t, 3)) {
                *s += f;
            }
        }
        for (j, s) in sum.iter().enumerate() {
            // Each feature's sd is at most 2.3 (offsets); 5 sd of the mean.
            assert!((s / n as f64).abs() < 5.0 * 2.3 / (n as f64).sqrt(), "feature {j}: mean {}", s / n as f64);
        }
    }

    #[test]
    fn least_squares_recovers_a_plane() {
        let x: Vec<Vec<f64>> = (0..20).map(|i| vec![i as f64, (i * i % 7) as f64]).collect();
        let y: Vec<f64> = x.iter().map(|r| 1.5 + 2.0 * r[0] - 0.5 * r[1]).collect();
        let b = least_squares(&x, &y);
        for (got, want) in b.iter().zip([1.5, 2.0, -0.5]) {
            assert!((got - want).abs() < 1e-6, "{b:?}");
        }
    }
}
