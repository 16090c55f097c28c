//! Group-sequential boundaries: how much of a gate's error rate each of its looks may spend, so
//! that the chance that *any* look crosses on the wrong side is the stated rate, not less (as
//! with Bonferroni) and not more (as with a fixed-level test repeated at every look).
//!
//! Under the normal approximation a running sum of `n` centred samples is a Gaussian random
//! walk, so the standardised estimates at looks `n_1 < ... < n_K` are jointly normal with
//! `corr(Z_j, Z_k) = sqrt(n_j / n_k)`. The chance that the walk first crosses an upper boundary
//! `z_k` at look `k` follows by recursive numerical integration of the density of the walk
//! among the paths that have not yet crossed (Armitage, McPherson and Rowe 1969; the grid and
//! Simpson weights of Jennison and Turnbull 2000, ch. 19). [`nominal_levels`] then finds the
//! per-look one-sided levels `alpha_k = a w_k` whose first-crossing chances add up to the error
//! rate exactly. The shape `w_k` is constant (a Pocock boundary) from [`RAMP_SAMPLES`] samples
//! on; below it a look's level grows with its sample count (`w_k = n_k / RAMP_SAMPLES`), so
//! looks at a handful of samples, where a standard error and a skewness are least reliable,
//! spend little of the rate while still stopping cases far from the threshold.
//!
//! Knows nothing of samples or images; the gate ([`crate::estimate::decision`]) turns each
//! level into a Student-t quantile on its own standard error.

use std::collections::HashMap;
use std::sync::Mutex;

use statrs::distribution::{Continuous, ContinuousCDF, Normal};

/// Below this many samples a look's nominal level is scaled by `n / RAMP_SAMPLES`.
pub const RAMP_SAMPLES: f64 = 16.0;

/// Grid resolution of the integration (Jennison and Turnbull's `m`; their tables use 16-32).
const GRID_M: usize = 24;

fn normal() -> Normal {
    Normal::standard()
}

/// Jennison and Turnbull's grid for a standard normal on `(-inf, upper]`: dense near the centre,
/// logarithmically spaced into the tails, truncated at `upper` (which becomes the last point),
/// with Simpson midpoints added. Returns the points and their integration weights.
fn grid(upper: f64) -> (Vec<f64>, Vec<f64>) {
    let m = GRID_M as f64;
    let mut x: Vec<f64> = (1..6 * GRID_M)
        .map(|i| {
            let i = i as f64;
            if i < m {
                -3.0 - 4.0 * (m / i).ln()
            } else if i <= 5.0 * m {
                -3.0 + 3.0 * (i - m) / (2.0 * m)
            } else {
                3.0 + 4.0 * (m / (6.0 * m - i)).ln()
            }
        })
        .filter(|&v| v < upper)
        .collect();
    x.push(upper);
    if x.len() == 1 {
        // The boundary is below the whole grid: integrate from far below it.
        x.insert(0, upper - 8.0);
    }
    let mut points = Vec::with_capacity(2 * x.len() - 1);
    let mut weights = Vec::with_capacity(2 * x.len() - 1);
    for (i, w) in x.windows(2).enumerate() {
        let d = w[1] - w[0];
        if i == 0 {
            points.push(w[0]);
            weights.push(d / 6.0);
        } else {
            *weights.last_mut().expect("a point") += d / 6.0;
        }
        points.extend([(w[0] + w[1]) / 2.0, w[1]]);
        weights.extend([4.0 * d / 6.0, d / 6.0]);
    }
    (points, weights)
}

/// For a Gaussian random walk observed after `looks[k]` steps, the chance that its standardised
/// value first reaches `z[k]` or more at look `k` (upper boundaries only; nothing stops below).
pub fn first_crossing(looks: &[u64], z: &[f64]) -> Vec<f64> {
    let n = normal();
    let mut out = Vec::with_capacity(looks.len());
    // The density (in standardised units) of the walk at the previous look, on paths that have
    // not crossed yet, with its grid and weights.
    let mut state: Option<(Vec<f64>, Vec<f64>, Vec<f64>)> = None;
    for (k, (&look, &zk)) in looks.iter().zip(z).enumerate() {
        let info = look as f64;
        let (points, weights) = grid(zk);
        match state.take() {
            None => {
                out.push(n.sf(zk));
                let density = points.iter().map(|&x| n.pdf(x)).collect();
                state = Some((points, weights, density));
            }
            Some((prev, prev_w, prev_density)) => {
                let prev_info = looks[k - 1] as f64;
                let step = (info - prev_info).max(f64::MIN_POSITIVE).sqrt();
                let (root, prev_root) = (info.sqrt(), prev_info.sqrt());
                let mass: Vec<f64> = prev_w.iter().zip(&prev_density).map(|(w, d)| w * d).collect();
                out.push(prev.iter().zip(&mass).map(|(&y, &m)| m * n.sf((zk * root - y * prev_root) / step)).sum());
                let density = points
                    .iter()
                    .map(|&x| {
                        let s = x * root;
                        prev.iter().zip(&mass).map(|(&y, &m)| m * n.pdf((s - y * prev_root) / step)).sum::<f64>() * root / step
                    })
                    .collect();
                state = Some((points, weights, density));
            }
        }
    }
    out
}

/// The shape of the boundary: each look's share of the level before scaling.
fn weight(look: u64) -> f64 {
    (look as f64 / RAMP_SAMPLES).min(1.0)
}

/// Chance that some look crosses when look `k` is tested at one-sided level `scale * weight`.
fn total_crossing(looks: &[u64], scale: f64) -> f64 {
    let n = normal();
    let z: Vec<f64> = looks.iter().map(|&l| n.inverse_cdf(1.0 - (scale * weight(l)).min(0.5))).collect();
    first_crossing(looks, &z).iter().sum()
}

static CACHE: Mutex<Option<HashMap<(Vec<u64>, u64), Vec<f64>>>> = Mutex::new(None);

/// One-sided nominal levels for the looks at `looks` samples (increasing), such that under the
/// normal approximation the chance that any look's one-sided test rejects, when the null is
/// true, is exactly `error_rate`. Each level is at least `error_rate / K` (Bonferroni's) at the
/// looks of [`RAMP_SAMPLES`] or more samples. Cached per schedule.
pub fn nominal_levels(looks: &[u64], error_rate: f64) -> Vec<f64> {
    if looks.len() <= 1 {
        return vec![error_rate; looks.len()];
    }
    let key = (looks.to_vec(), error_rate.to_bits());
    if let Some(levels) = CACHE.lock().ok().and_then(|c| c.as_ref().and_then(|m| m.get(&key).cloned())) {
        return levels;
    }
    // Bracket: at `error_rate / sum(w)` the union bound already keeps the total below the
    // rate; at `error_rate` the last look alone reaches it. Bisection on log(scale).
    let total_weight: f64 = looks.iter().map(|&l| weight(l)).sum();
    let (mut lo, mut hi) = ((error_rate / total_weight).ln(), error_rate.ln());
    for _ in 0..40 {
        let mid = 0.5 * (lo + hi);
        if total_crossing(looks, mid.exp()) > error_rate {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    // The lower end: its total is at most the rate.
    let scale = lo.exp();
    let levels: Vec<f64> = looks.iter().map(|&l| scale * weight(l)).collect();
    if let Ok(mut c) = CACHE.lock() {
        c.get_or_insert_with(HashMap::new).insert(key, levels.clone());
    }
    levels
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    use crate::ensemble::sample_rng;

    #[test]
    fn one_look_is_a_plain_normal_tail() {
        let p = first_crossing(&[10], &[1.959_963_984_540_054]);
        // statrs's normal tail is accurate to ~1e-12.
        assert!((p[0] - 0.025).abs() < 1e-10, "{}", p[0]);
    }

    #[test]
    fn the_grid_integrates_the_normal() {
        for upper in [-1.0, 0.0, 2.0, 8.0] {
            let (x, w) = grid(upper);
            let total: f64 = x.iter().zip(&w).map(|(x, w)| w * normal().pdf(*x)).sum();
            assert!((total - normal().cdf(upper)).abs() < 1e-6, "upper {upper}: {total}");
        }
    }

    #[test]
    fn pocock_boundary_of_the_old_schedule() {
        // The schedule of the gate before issue 34 (first look 16, x1.5 to 200): the exact
        // constant boundary at 5% one-sided is z = 2.27, against Bonferroni's 2.498.
        let looks = [16, 24, 36, 54, 81, 122, 183, 200];
        let z = 2.2725;
        let total: f64 = first_crossing(&looks, &[z; 8]).iter().sum();
        assert!((total - 0.05).abs() < 2e-4, "{total}");
    }

    #[test]
    fn levels_spend_the_rate_exactly_as_a_random_walk_shows() {
        // Monte Carlo of the Gaussian walk at the default schedule: the chance that some look
        // crosses its boundary is the rate (40 000 walks: +-0.0022 at 2 sd).
        let looks = [4, 6, 9, 14, 21, 32, 48, 72, 108, 162, 200];
        let levels = nominal_levels(&looks, 0.05);
        let z: Vec<f64> = levels.iter().map(|&a| normal().inverse_cdf(1.0 - a)).collect();
        let exact: f64 = first_crossing(&looks, &z).iter().sum();
        assert!((exact - 0.05).abs() < 1e-6, "{exact}");
        // Constant from 16 samples on, smaller before, and above Bonferroni's where constant.
        assert!(levels[4..].windows(2).all(|w| (w[0] - w[1]).abs() < 1e-15));
        assert!(levels[0] < levels[1] && levels[3] < levels[4]);
        assert!(levels[4] > 0.05 / looks.len() as f64);
        let mut rng = sample_rng(34, 0);
        let walks = 40_000;
        let mut crossed = 0;
        for _ in 0..walks {
            let (mut sum, mut prev) = (0.0f64, 0u64);
            for (&n, &zk) in looks.iter().zip(&z) {
                for _ in prev..n {
                    // Box-Muller.
                    let (u, v): (f64, f64) = (1.0 - rng.random::<f64>(), rng.random());
                    sum += (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
                }
                prev = n;
                if sum / (n as f64).sqrt() >= zk {
                    crossed += 1;
                    break;
                }
            }
        }
        let rate = crossed as f64 / walks as f64;
        assert!((rate - 0.05).abs() < 0.0033, "simulated {rate}");
    }

    #[test]
    fn the_default_schedule_ramps_then_stays_flat() {
        // The default gate's looks (first at 8): the looks at 8 and 12 samples test at half and
        // three quarters of the flat level; the flat level is above Bonferroni's 0.05 / 9.
        let looks = [8, 12, 18, 27, 41, 62, 93, 140, 200];
        let l = nominal_levels(&looks, 0.05);
        eprintln!("levels of the default schedule: {l:?}");
        assert!((l[0] / l[2] - 0.5).abs() < 1e-12 && (l[1] / l[2] - 0.75).abs() < 1e-12);
        assert!(l[2..].windows(2).all(|w| w[0] == w[1]) && l[2] > 0.05 / 9.0);
    }

    #[test]
    fn one_look_spends_everything() {
        assert_eq!(nominal_levels(&[16], 0.05), vec![0.05]);
        // Two looks: each level is between Bonferroni's and the whole rate.
        let l = nominal_levels(&[16, 32], 0.05);
        assert!(l[0] > 0.025 && l[0] < 0.05 && l[0] == l[1], "{l:?}");
    }
}
