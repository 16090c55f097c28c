//! The JUnit XML report of `elpips check --junit` (the schema Jenkins, GitLab and GitHub
//! reporters read), made from a [`Summary`]: one testsuite, one testcase per pair; a fail is a
//! `<failure>`, an error an `<error>`.

use std::fmt::Write as _;

use super::summary::{SideName, Status, Summary};
use crate::escape::markup as xml;

pub fn junit(summary: &Summary) -> String {
    let results = &summary.results;
    let c = &summary.counts;
    let seconds = num(Some(summary.seconds));
    let suite = summary.manifest.as_ref().map_or("elpips check".to_string(), |m| format!("elpips check {m}"));
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(x, "<testsuites tests=\"{}\" failures=\"{}\" errors=\"{}\" time=\"{seconds}\">", results.len(), c.fail, c.error);
    let _ = writeln!(
        x,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"0\" time=\"{seconds}\">",
        xml(&suite),
        results.len(),
        c.fail,
        c.error,
    );
    x.push_str("    <properties>\n");
    // The settings as their JSON object: the same names and values as the summary's.
    if let Ok(serde_json::Value::Object(settings)) = serde_json::to_value(&summary.settings) {
        for (k, v) in settings {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            let _ = writeln!(x, "      <property name=\"{}\" value=\"{}\"/>", xml(&k), xml(&v));
        }
    }
    x.push_str("    </properties>\n");
    for r in results {
        let _ = write!(x, "    <testcase classname=\"elpips.check\" name=\"{}\" time=\"{}\"", xml(&r.name), num(Some(r.seconds)));
        let verdict = r.verdict.and_then(|v| serde_json::to_value(v).ok()).and_then(|v| v.as_str().map(str::to_owned));
        let detail = format!(
            "reference {}\ncandidate {}\ndistance {} ± {} (95%), {} samples, verdict {}, max_distance {}",
            r.reference,
            r.candidate,
            num(r.distance),
            num(r.ci95),
            r.samples.map_or("null".to_string(), |n| n.to_string()),
            verdict.as_deref().unwrap_or("none"),
            num(r.max_distance)
        );
        match r.status {
            Status::Pass => {
                let _ = writeln!(x, ">\n      <system-out>{}</system-out>\n    </testcase>", xml(&detail));
            }
            Status::Fail => {
                // The distance rule when it failed, else the map rule (CI's one-line account).
                let distance_failed = r.verdict == Some(SideName::Above) || matches!((r.distance, r.max_distance), (Some(d), Some(t)) if d > t);
                let (msg, kind) = match r.max_distance {
                    Some(t) if distance_failed => (format!("E-LPIPS distance {} > max_distance {}", num(r.distance), num(Some(t))), "elpips.distance"),
                    _ => (format!("map rule failed: {}", super::ci::what(r)), "elpips.map"),
                };
                let _ = writeln!(
                    x,
                    ">\n      <failure message=\"{}\" type=\"{kind}\">{}</failure>\n    </testcase>",
                    xml(&msg),
                    xml(&detail)
                );
            }
            Status::Error => {
                let msg = r.message.as_deref().unwrap_or("error");
                let _ = writeln!(x, ">\n      <error message=\"{}\" type=\"elpips.error\">{}</error>\n    </testcase>", xml(msg), xml(msg));
            }
        }
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

/// A number as the summary writes it (`0.0`, not `0`; `null` when absent or not finite).
fn num(x: Option<f64>) -> String {
    x.map_or("null".to_string(), |x| serde_json::Value::from(x).to_string())
}
