//! The Bjøntegaard delta rate at equal distance: monotone piecewise-cubic (Fritsch–Carlson PCHIP)
//! interpolation of log-rate against distance, integrated over the distance range two curves
//! share, and its uncertainty (a bootstrap over images that also redraws every distance from its
//! confidence interval). Pure arithmetic on points: no images, no files, no metric.
//!
//! Rate-distortion curves are usually written rate against quality (PSNR, VMAF); here quality is
//! a distance (lower is better), which changes nothing in the method: both curves are
//! interpolated as `ln(rate) = f(distance)` and `BD-rate = exp(mean(f_test - f_anchor)) - 1`
//! over `[max(min d), min(max d)]`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One point of a rate-distortion curve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RdPoint {
    /// Bits per pixel (> 0).
    pub rate: f64,
    /// The distance estimate.
    pub distance: f64,
    /// Its standard error (0 for an exact metric).
    pub std_error: f64,
}

/// A monotone piecewise-cubic Hermite interpolant (Fritsch & Carlson 1980; the slopes of SciPy's
/// `PchipInterpolator`): between nodes it never overshoots the data, so a curve that is monotone
/// in its points stays monotone, unlike the cubic polynomial of the original BD-rate.
pub struct Pchip {
    x: Vec<f64>,
    y: Vec<f64>,
    slope: Vec<f64>,
}

impl Pchip {
    /// Through `(x, y)` with strictly increasing `x` (at least 2 nodes).
    pub fn new(x: Vec<f64>, y: Vec<f64>) -> Option<Self> {
        let n = x.len();
        if n < 2 || y.len() != n || x.windows(2).any(|w| !(w[1] > w[0])) || x.iter().chain(&y).any(|v| !v.is_finite()) {
            return None;
        }
        let h: Vec<f64> = x.windows(2).map(|w| w[1] - w[0]).collect();
        let delta: Vec<f64> = (0..n - 1).map(|k| (y[k + 1] - y[k]) / h[k]).collect();
        let mut slope = vec![0.0; n];
        if n == 2 {
            slope = vec![delta[0]; 2];
        } else {
            for k in 1..n - 1 {
                // A local extremum (or flat side) of the data gets a flat tangent: no overshoot.
                if delta[k - 1] * delta[k] > 0.0 {
                    let (w1, w2) = (2.0 * h[k] + h[k - 1], h[k] + 2.0 * h[k - 1]);
                    slope[k] = (w1 + w2) / (w1 / delta[k - 1] + w2 / delta[k]);
                }
            }
            slope[0] = end_slope(h[0], h[1], delta[0], delta[1]);
            slope[n - 1] = end_slope(h[n - 2], h[n - 3], delta[n - 2], delta[n - 3]);
        }
        Some(Pchip { x, y, slope })
    }

    /// The interpolant at `t` (clamped to the nodes' range).
    #[cfg(test)]
    pub fn eval(&self, t: f64) -> f64 {
        let t = t.clamp(self.x[0], self.x[self.x.len() - 1]);
        let k = self.x.partition_point(|&v| v <= t).clamp(1, self.x.len() - 1) - 1;
        self.hermite(k, t)
    }

    fn hermite(&self, k: usize, t: f64) -> f64 {
        let h = self.x[k + 1] - self.x[k];
        let s = (t - self.x[k]) / h;
        let (s2, s3) = (s * s, s * s * s);
        (2.0 * s3 - 3.0 * s2 + 1.0) * self.y[k]
            + (s3 - 2.0 * s2 + s) * h * self.slope[k]
            + (-2.0 * s3 + 3.0 * s2) * self.y[k + 1]
            + (s3 - s2) * h * self.slope[k + 1]
    }

    /// The integral over `[a, b]` (inside the nodes' range), exact: each cubic piece by
    /// two-point Gauss–Legendre, which integrates cubics exactly.
    pub fn integral(&self, a: f64, b: f64) -> f64 {
        let g = 0.5 / 3f64.sqrt();
        let mut sum = 0.0;
        for k in 0..self.x.len() - 1 {
            let (lo, hi) = (a.max(self.x[k]), b.min(self.x[k + 1]));
            if hi > lo {
                let (mid, half) = ((lo + hi) / 2.0, hi - lo);
                sum += half / 2.0 * (self.hermite(k, mid - g * half) + self.hermite(k, mid + g * half));
            }
        }
        sum
    }

    /// The nodes' range.
    pub fn range(&self) -> (f64, f64) {
        (self.x[0], self.x[self.x.len() - 1])
    }
}

/// The one-sided three-point end slope, kept from overshooting (SciPy's `_edge_case`).
fn end_slope(h0: f64, h1: f64, d0: f64, d1: f64) -> f64 {
    let d = ((2.0 * h0 + h1) * d0 - h0 * d1) / (h0 + h1);
    if d.signum() != d0.signum() || d0 == 0.0 {
        0.0
    } else if d0.signum() != d1.signum() && d.abs() > 3.0 * d0.abs() {
        3.0 * d0
    } else {
        d
    }
}

/// `ln(rate)` as a function of distance through a curve's points: sorted by distance, points of
/// equal distance (byte-identical encodes, or an exact metric's ties) merged into one at their
/// mean log-rate. `None` with fewer than two distinct distances.
pub fn log_rate_curve(points: &[(f64, f64)]) -> Option<Pchip> {
    let mut p: Vec<(f64, f64)> = points.iter().map(|&(d, r)| (d, r.ln())).collect();
    p.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut x, mut y, mut count): (Vec<f64>, Vec<f64>, Vec<f64>) = (vec![], vec![], vec![]);
    for (d, lr) in p {
        if x.last() == Some(&d) {
            let k = y.len() - 1;
            y[k] = (y[k] * count[k] + lr) / (count[k] + 1.0);
            count[k] += 1.0;
        } else {
            x.push(d);
            y.push(lr);
            count.push(1.0);
        }
    }
    Pchip::new(x, y)
}

/// BD-rate of `test` against `anchor` in percent (negative: `test` needs fewer bits at equal
/// distance), or why there is none. Each slice is one curve's `(distance, rate)` points.
pub fn bd_rate(anchor: &[(f64, f64)], test: &[(f64, f64)]) -> Result<f64, &'static str> {
    let a = log_rate_curve(anchor).ok_or("the anchor curve has fewer than two distinct distances")?;
    let t = log_rate_curve(test).ok_or("the curve has fewer than two distinct distances")?;
    let ((a0, a1), (t0, t1)) = (a.range(), t.range());
    let (lo, hi) = (a0.max(t0), a1.min(t1));
    if !(hi > lo) {
        return Err("its distances do not overlap the anchor's");
    }
    let mean_log_ratio = (t.integral(lo, hi) - a.integral(lo, hi)) / (hi - lo);
    Ok((mean_log_ratio.exp() - 1.0) * 100.0)
}

/// One image's curves: `curves[c]` holds codec `c`'s points.
pub type ImageCurves = Vec<Vec<RdPoint>>;

/// A corpus BD-rate with its uncertainty.
#[derive(Clone, Debug, PartialEq)]
pub struct BdEstimate {
    /// The mean over images of each image's BD-rate (percent), as common test conditions
    /// report a corpus; `None` when no image has one.
    pub percent: Option<f64>,
    /// Half-width of the 95% bootstrap interval (percentile: `(q97.5 - q2.5) / 2`).
    pub ci95: Option<f64>,
    /// The interval's ends.
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    /// Images with a BD-rate (the curves overlap), out of those given.
    pub images: usize,
    /// Bootstrap replicates that gave a value, out of those drawn.
    pub replicates: usize,
    /// Why some image had none (the first reason met).
    pub note: Option<&'static str>,
}

fn pairs(points: &[RdPoint], noise: Option<&mut ChaCha8Rng>) -> Vec<(f64, f64)> {
    match noise {
        None => points.iter().map(|p| (p.distance, p.rate)).collect(),
        Some(rng) => points.iter().map(|p| (p.distance + p.std_error * normal(rng), p.rate)).collect(),
    }
}

/// A standard normal draw (Box–Muller; `rand_distr` is not a dependency for one formula).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u: f64 = 1.0 - rng.random::<f64>();
    let v: f64 = rng.random::<f64>();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// The BD-rate of codec `test` against codec `anchor` over `images`, with a bootstrap of
/// `replicates` draws: each draws the images with replacement and every distance from a normal
/// around its estimate with its standard error (independently: common random numbers make the
/// errors of one image's points move together, so this overstates the spread, never hides it).
pub fn corpus_bd_rate(images: &[ImageCurves], anchor: usize, test: usize, replicates: usize, seed: u64) -> BdEstimate {
    let mut note = None;
    let per_image: Vec<Option<f64>> = images
        .iter()
        .map(|c| bd_rate(&pairs(&c[anchor], None), &pairs(&c[test], None)).map_err(|e| note.get_or_insert(e)).ok())
        .collect();
    let valid: Vec<f64> = per_image.iter().flatten().copied().collect();
    let percent = (!valid.is_empty()).then(|| valid.iter().sum::<f64>() / valid.len() as f64);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ ((anchor as u64) << 32 | test as u64));
    let mut values = Vec::with_capacity(replicates);
    if percent.is_some() {
        for _ in 0..replicates {
            let mut sum = 0.0;
            let mut n = 0;
            for _ in 0..images.len() {
                let c = &images[rng.random_range(0..images.len())];
                let (a, t) = (pairs(&c[anchor], Some(&mut rng)), pairs(&c[test], Some(&mut rng)));
                if let Ok(v) = bd_rate(&a, &t) {
                    sum += v;
                    n += 1;
                }
            }
            if n > 0 {
                values.push(sum / n as f64);
            }
        }
    }
    values.sort_by(f64::total_cmp);
    let (lower, upper) = match values.len() {
        0 => (None, None),
        n => (Some(quantile(&values, 0.025, n)), Some(quantile(&values, 0.975, n))),
    };
    BdEstimate {
        percent,
        ci95: lower.zip(upper).map(|(l, u)| (u - l) / 2.0),
        lower,
        upper,
        images: valid.len(),
        replicates: values.len(),
        note,
    }
}

/// Linear-interpolated quantile of sorted values.
fn quantile(sorted: &[f64], q: f64, n: usize) -> f64 {
    let pos = q * (n - 1) as f64;
    let (i, f) = (pos.floor() as usize, pos.fract());
    if i + 1 < n {
        sorted[i] * (1.0 - f) + sorted[i + 1] * f
    } else {
        sorted[n - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    /// x = [0, 1, 2], y = [0, 1, 3] by hand: delta = [1, 2]; the interior slope is the weighted
    /// harmonic mean (w1 = w2 = 3): 6 / (3/1 + 3/2) = 4/3; the ends by the three-point formula:
    /// (3*1 - 2)/2 = 0.5 and (3*2 - 1)/2 = 2.5. At x = 0.5 the Hermite basis is (1/2, 1/8, 1/2,
    /// -1/8): 0.0625 + 0.5 - 1/6 = 0.3958333; over [0, 1] its integrals (1/2, 1/12, 1/2, -1/12)
    /// give 0.5 + 0.5/12 - (4/3)/12 = 0.4305556.
    #[test]
    fn pchip_matches_hand_computed_values() {
        let p = Pchip::new(vec![0.0, 1.0, 2.0], vec![0.0, 1.0, 3.0]).unwrap();
        assert_eq!(p.slope, vec![0.5, 4.0 / 3.0, 2.5]);
        assert!(close(p.eval(0.5), 0.0625 + 0.5 - 1.0 / 6.0, 1e-12));
        assert!(close(p.integral(0.0, 1.0), 0.5 + 0.5 / 12.0 - (4.0 / 3.0) / 12.0, 1e-12));
        assert!(close(p.eval(1.0), 1.0, 1e-15) && close(p.eval(2.0), 3.0, 1e-15));
    }

    #[test]
    fn pchip_reproduces_lines_and_stays_monotone() {
        let line = Pchip::new(vec![0.0, 0.3, 1.0, 2.5], vec![1.0, 1.6, 3.0, 6.0]).unwrap();
        for k in 0..=50 {
            let t = k as f64 * 0.05;
            assert!(close(line.eval(t), 1.0 + 2.0 * t, 1e-12), "{t}");
        }
        assert!(close(line.integral(0.5, 2.0), 2.0 + 4.0 - (0.5 + 0.25), 1e-12));
        // Steps: a plain cubic spline overshoots here; PCHIP stays within each interval's ends.
        let steps = Pchip::new(vec![0.0, 1.0, 2.0, 3.0, 4.0], vec![0.0, 0.0, 1.0, 1.0, 1.0]).unwrap();
        let mut last = f64::NEG_INFINITY;
        for k in 0..=400 {
            let v = steps.eval(k as f64 * 0.01);
            assert!(v >= last - 1e-15 && (-1e-15..=1.0 + 1e-15).contains(&v), "{k}: {v}");
            last = v;
        }
        assert!(Pchip::new(vec![0.0, 0.0], vec![1.0, 2.0]).is_none());
        assert!(Pchip::new(vec![0.0], vec![1.0]).is_none());
    }

    /// A codec that needs 0.8x the anchor's rate at every distance saves exactly 20%, whatever
    /// the interpolation; the shared range is what both curves cover.
    #[test]
    fn bd_rate_of_a_scaled_curve_is_exact() {
        let anchor: Vec<(f64, f64)> = [(0.30, 0.2), (0.20, 0.5), (0.12, 1.0), (0.05, 2.5)].to_vec();
        let test: Vec<(f64, f64)> = anchor.iter().map(|&(d, r)| (d, 0.8 * r)).collect();
        assert!(close(bd_rate(&anchor, &test).unwrap(), -20.0, 1e-9));
        assert!(close(bd_rate(&test, &anchor).unwrap(), 25.0, 1e-9));
        // Only part of the range shared: the log-rates differ by a constant there, so still -20%.
        let short: Vec<(f64, f64)> = vec![(0.25, 0.8 * 0.35), (0.20, 0.8 * 0.5), (0.12, 0.8 * 1.0)];
        let v = bd_rate(&anchor, &short).unwrap();
        assert!(v < -15.0 && v > -25.0, "{v}");
        assert_eq!(bd_rate(&anchor, &[(0.5, 1.0), (0.6, 0.5)]), Err("its distances do not overlap the anchor's"));
        assert!(bd_rate(&anchor, &[(0.2, 1.0), (0.2, 2.0)]).is_err());
    }

    /// Two linear log-rate curves by hand: anchor ln r = 1 - 10 d, test ln r = 0.5 - 10 d + 2 d
    /// over the shared [0.1, 0.3]: mean difference -0.5 + 2 * 0.2 = -0.1, BD-rate e^-0.1 - 1.
    #[test]
    fn bd_rate_of_lines_by_hand() {
        let curve = |a: f64, b: f64| -> Vec<(f64, f64)> { [0.1, 0.2, 0.3].iter().map(|&d| (d, (a + b * d).exp())).collect() };
        let v = bd_rate(&curve(1.0, -10.0), &curve(0.5, -8.0)).unwrap();
        assert!(close(v, ((-0.1f64).exp() - 1.0) * 100.0, 1e-9), "{v}");
    }

    #[test]
    fn the_bootstrap_interval_covers_and_shrinks_with_precision() {
        let image = |scale: f64, se: f64| -> ImageCurves {
            let a: Vec<RdPoint> = [(0.30, 0.2), (0.20, 0.5), (0.12, 1.0), (0.05, 2.5)].iter().map(|&(d, r)| RdPoint { rate: r, distance: d, std_error: se }).collect();
            let t = a.iter().map(|p| RdPoint { rate: p.rate * scale, ..*p }).collect();
            vec![a, t]
        };
        let exact = corpus_bd_rate(&[image(0.8, 0.0), image(0.7, 0.0)], 0, 1, 200, 1);
        assert!(close(exact.percent.unwrap(), -25.0, 1e-9));
        assert_eq!((exact.images, exact.replicates), (2, 200));
        // Image resampling alone: the interval spans the two images' values.
        assert!(exact.lower.unwrap() >= -30.0 - 1e-9 && exact.upper.unwrap() <= -20.0 + 1e-9);
        let noisy = corpus_bd_rate(&[image(0.8, 0.01), image(0.8, 0.01)], 0, 1, 400, 1);
        let quiet = corpus_bd_rate(&[image(0.8, 0.001), image(0.8, 0.001)], 0, 1, 400, 1);
        assert!(noisy.ci95.unwrap() > 2.0 * quiet.ci95.unwrap(), "{noisy:?} {quiet:?}");
        assert!(noisy.lower.unwrap() < -20.0 && noisy.upper.unwrap() > -20.0, "{noisy:?}");
        // Same inputs, same seed: the same interval (shard + merge reproduces a whole run).
        assert_eq!(noisy, corpus_bd_rate(&[image(0.8, 0.01), image(0.8, 0.01)], 0, 1, 400, 1));
        let none = corpus_bd_rate(&[vec![image(0.8, 0.0)[0].clone(), vec![RdPoint { rate: 1.0, distance: 0.9, std_error: 0.0 }; 2]]], 0, 1, 10, 1);
        assert_eq!((none.percent, none.images), (None, 0));
        assert!(none.note.is_some());
    }
}
