//! The RD figures as SVG: bits per pixel against distance, one line per codec with its 95% band.
//! Hand-written (a few dozen elements): the `plotters` crate's text needs a font stack and
//! system libraries this tool does not otherwise use; SVG text is drawn by the viewer.

use std::fmt::Write;

use crate::escape::markup;

/// One codec's curve: `(bpp, distance, ci95)` per setting.
pub struct Curve {
    pub label: String,
    pub points: Vec<(f64, f64, f64)>,
}

const COLOURS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];
const W: f64 = 640.0;
const H: f64 = 420.0;
/// Margins around the plot area.
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

/// Up to ~6 round tick values covering `[lo, hi]`.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let raw = (hi - lo) / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 {
        out.push(t);
        t += step;
    }
    out
}

/// The figure, titled `title`, the distance axis named after `metric`.
pub fn svg(title: &str, metric: &str, curves: &[Curve]) -> String {
    let all = curves.iter().flat_map(|c| &c.points);
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y, ci) in all {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y - ci), y1.max(y + ci));
    }
    if !(x1 > x0) {
        (x0, x1) = (x0.min(0.0), x0.max(0.0) + 1.0);
    }
    if !(y1 > y0) {
        (y0, y1) = (y0.min(0.0), y0.max(0.0) + 1.0);
    }
    // Distances from 0, so the eye compares the codecs' distances, not their offsets.
    let y0 = y0.min(0.0);
    let (x0, x1) = (0f64.min(x0), x1 * 1.05);
    let y1 = y1 * 1.05;
    let px = |x: f64| LEFT + (x - x0) / (x1 - x0) * (W - LEFT - RIGHT);
    let py = |y: f64| H - BOTTOM - (y - y0) / (y1 - y0) * (H - TOP - BOTTOM);
    let mut s = String::new();
    let _ = writeln!(s, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#);
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"#, W / 2.0, markup(title));
    let (bx0, bx1, by0, by1) = (px(x0), px(x1), py(y0), py(y1));
    let _ = writeln!(s, r#"<rect x="{bx0:.1}" y="{by1:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="black"/>"#, bx1 - bx0, by0 - by1);
    for t in ticks(x0, x1) {
        let _ = writeln!(s, r##"<line x1="{0:.1}" y1="{by0:.1}" x2="{0:.1}" y2="{by1:.1}" stroke="#ddd"/><text x="{0:.1}" y="{1:.1}" text-anchor="middle">{t}</text>"##, px(t), by0 + 16.0);
    }
    for t in ticks(y0, y1) {
        let label = format!("{:.3}", t);
        let _ = writeln!(s, r##"<line x1="{bx0:.1}" y1="{0:.1}" x2="{bx1:.1}" y2="{0:.1}" stroke="#ddd"/><text x="{1:.1}" y="{2:.1}" text-anchor="end">{label}</text>"##, py(t), bx0 - 6.0, py(t) + 4.0);
    }
    let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="middle">bits per pixel</text>"#, (bx0 + bx1) / 2.0, H - 12.0);
    let _ = writeln!(s, r#"<text x="16" y="{0}" text-anchor="middle" transform="rotate(-90 16 {0})">{1} distance (95% band)</text>"#, (by0 + by1) / 2.0, markup(metric));
    for (k, c) in curves.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        let mut pts = c.points.clone();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let upper: Vec<String> = pts.iter().map(|p| format!("{:.1},{:.1}", px(p.0), py(p.1 + p.2))).collect();
        let lower: Vec<String> = pts.iter().rev().map(|p| format!("{:.1},{:.1}", px(p.0), py(p.1 - p.2))).collect();
        let _ = writeln!(s, r#"<polygon points="{} {}" fill="{colour}" fill-opacity="0.18" stroke="none"/>"#, upper.join(" "), lower.join(" "));
        let line: Vec<String> = pts.iter().map(|p| format!("{:.1},{:.1}", px(p.0), py(p.1))).collect();
        let _ = writeln!(s, r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#, line.join(" "));
        for p in &pts {
            let _ = writeln!(s, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"/>"#, px(p.0), py(p.1));
        }
        let ly = by1 + 18.0 + 18.0 * k as f64;
        let _ = writeln!(s, r#"<line x1="{0:.1}" y1="{ly:.1}" x2="{1:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="3"/><text x="{2:.1}" y="{3:.1}">{4}</text>"#, bx1 - 90.0, bx1 - 66.0, bx1 - 60.0, ly + 4.0, markup(&c.label));
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 1.0), vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]);
        let t = ticks(0.013, 0.087);
        assert!(t.len() >= 3 && t[0] >= 0.013 && *t.last().unwrap() <= 0.087, "{t:?}");
    }

    #[test]
    fn the_figure_has_a_line_and_band_per_curve_and_escapes_labels() {
        let c = |l: &str| Curve { label: l.into(), points: vec![(0.5, 0.1, 0.01), (1.0, 0.05, 0.01), (2.0, 0.02, 0.005)] };
        let s = svg("a<b", "elpips-vgg", &[c("jpeg"), c("webp&")]);
        assert_eq!(s.matches("<polyline").count(), 2);
        assert_eq!(s.matches("<polygon").count(), 2);
        assert!(s.contains("a&lt;b") && s.contains("webp&amp;") && s.ends_with("</svg>\n"));
    }
}
