//! `elpips check --update-references`: accepting new references, as `BLENDER_TEST_UPDATE=1`
//! does. Only the explicit flag does it, and only for pairs that failed (never a pass, never a
//! pair that could not be checked): the candidate's bytes replace the reference file
//! atomically (a temporary file renamed over it), and each file changed is printed. Refused,
//! before any image is read, when one reference file serves rows with different candidates
//! (which one would it become?) or when a candidate's format differs from its reference's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use elpips::Error;

use super::invalid;
use super::manifest::Case;
use super::summary::{Status, Summary};

/// Largest candidate copied (the image reader's own file limit is far below).
const MAX_IMAGE_BYTES: u64 = 4 << 30;

/// The file a path names, for comparing paths written differently (`a/../b.png`, links).
fn identity(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}

fn extension(path: &Path) -> String {
    path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase()
}

/// Refuses a run whose updates would be ambiguous or would change a reference's format.
pub fn check_shared_references(cases: &[Case]) -> Result<(), Error> {
    let mut by_reference: BTreeMap<PathBuf, &Case> = BTreeMap::new();
    for case in cases {
        let (reference, candidate) = (identity(&case.reference_path), identity(&case.candidate_path));
        if let Some(first) = by_reference.get(&reference) {
            if identity(&first.candidate_path) != candidate {
                return Err(invalid(format!(
                    "--update-references: reference {} is shared by rows {} ({}) and {} ({}) with different candidates; give each row its own reference file",
                    case.reference,
                    first.row + 1,
                    first.name,
                    case.row + 1,
                    case.name
                )));
            }
        } else {
            by_reference.insert(reference, case);
        }
        let (re, ce) = (extension(&case.reference_path), extension(&case.candidate_path));
        if re != ce {
            return Err(invalid(format!(
                "--update-references: row {} ({}): candidate {} is .{ce} but reference {} is .{re}; copying it would change the reference's format",
                case.row + 1,
                case.name,
                case.candidate,
                case.reference
            )));
        }
    }
    Ok(())
}

/// Replaces the reference of every failed pair of `summary` with its candidate; `to_stderr`
/// keeps stdout for the JSON output.
pub fn update_references(summary: &Summary, cases: &[Case], to_stderr: bool) -> Result<(), Error> {
    for r in summary.results.iter().filter(|r| r.status == Status::Fail) {
        let Some(case) = cases.iter().find(|c| c.row as u64 == r.row) else { continue };
        if identity(&case.reference_path) == identity(&case.candidate_path) {
            continue;
        }
        let bytes = elpips::integrity::read_regular_file(&case.candidate_path, MAX_IMAGE_BYTES)
            .map_err(|e| Error::Io { path: case.candidate_path.clone(), reason: e.to_string() })?;
        elpips::io::write_atomic(&case.reference_path, &bytes)?;
        let said = crate::escape::line(&format!("updated reference {} from candidate {}", case.reference_path.display(), case.candidate_path.display()));
        if to_stderr {
            eprintln!("elpips: {said}");
        } else {
            crate::output::out!("{said}")?;
        }
    }
    Ok(())
}
