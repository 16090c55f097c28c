//! `include/elpips.h` is generated from `src/capi/mod.rs` by cbindgen and committed. This test
//! regenerates it into memory and fails when the committed copy has drifted (the failure of
//! resvg's header, whose error codes went off by one). `make header` (ELPIPS_WRITE_HEADER=1)
//! rewrites the committed file instead.

use std::path::Path;

fn generate() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml parses");
    let (major, minor, patch) =
        (env!("CARGO_PKG_VERSION_MAJOR"), env!("CARGO_PKG_VERSION_MINOR"), env!("CARGO_PKG_VERSION_PATCH"));
    // One source for the version: Cargo.toml. The soname (build.rs) and elpips_version() use it too.
    config.after_includes = Some(format!(
        "\n#define ELPIPS_VERSION_MAJOR {major}\n#define ELPIPS_VERSION_MINOR {minor}\n#define ELPIPS_VERSION_PATCH {patch}\n\
         #define ELPIPS_VERSION_STRING \"{}\"\n/* The ABI major: the soname is libelpips.so.<this>; see elpips_abi_version(). */\n\
         #define ELPIPS_ABI_VERSION {major}",
        env!("CARGO_PKG_VERSION")
    ));
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/capi/mod.rs"))
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut out);
    String::from_utf8(out).expect("the header is UTF-8")
}

#[test]
fn committed_header_matches_the_code() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/elpips.h");
    let fresh = generate();
    if std::env::var_os("ELPIPS_WRITE_HEADER").is_some() {
        std::fs::write(&path, &fresh).expect("writes include/elpips.h");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != fresh {
        let tmp = std::env::temp_dir().join("elpips-fresh.h");
        std::fs::write(&tmp, &fresh).expect("writes the fresh header");
        let first = committed.lines().zip(fresh.lines()).position(|(a, b)| a != b);
        panic!(
            "include/elpips.h is out of date with src/capi/mod.rs (first difference at line {}); \
             see `diff -u include/elpips.h {}` and run `make header`",
            first.map_or_else(|| "end".to_string(), |i| (i + 1).to_string()),
            tmp.display()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The defaults the header documents are the library's: each struct field whose comment says
// "Default X" (or "`CONSTANT` (default)", or for a gate "0: the default X") must hold X after
// the library's own defaulting, and each constant documented as a default must be the value
// its struct field gets. Written after a header that named ELPIPS_SAMPLER_IID the default while
// the library used CONTROL.

use std::collections::BTreeMap;

use elpips::capi::*;

/// A documented item of the header: its doc comment and the declaration that follows.
struct Item {
    doc: String,
    decl: String,
    /// The struct it is a field of, if any.
    within: Option<String>,
}

fn header_items(text: &str) -> Vec<Item> {
    let mut items = Vec::new();
    let (mut doc, mut in_doc, mut within): (String, bool, Option<String>) = (String::new(), false, None);
    for line in text.lines().map(str::trim) {
        if line.starts_with("/**") {
            in_doc = true;
            doc.clear();
            continue;
        }
        if in_doc {
            if line.starts_with("*/") {
                in_doc = false;
            } else {
                doc.push(' ');
                doc.push_str(line.trim_start_matches('*').trim());
            }
            continue;
        }
        if let Some(name) = line.strip_prefix("typedef struct ").and_then(|l| l.strip_suffix(" {")) {
            within = Some(name.to_owned());
            doc.clear();
            continue;
        }
        if line.starts_with('}') {
            within = None;
        }
        if !line.is_empty() && !doc.is_empty() {
            items.push(Item { doc: std::mem::take(&mut doc), decl: line.to_owned(), within: within.clone() });
        }
    }
    items
}

/// `#define NAME VALUE` of the header, as numbers.
fn defines(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter_map(|l| l.strip_prefix("#define "))
        .filter_map(|l| {
            let (name, value) = l.split_once(' ')?;
            let v = match value.trim() {
                "INT32_MIN" => i32::MIN as f64,
                v => v.parse::<f64>().ok()?,
            };
            Some((name.to_owned(), v))
        })
        .collect()
}

/// The value a documented default names: numbers (`0.01`, `0, 0, 0`) or a `CONSTANT`.
fn documented_values(text: &str, defines: &BTreeMap<String, f64>) -> Vec<f64> {
    text.split(',')
        .map(|v| {
            let v = v.trim().trim_matches('`');
            let null = (v == "NULL").then_some(0.0);
            v.parse::<f64>().ok().or(null).or_else(|| defines.get(v).copied()).unwrap_or_else(|| panic!("documented default `{v}` is neither a number nor a #define"))
        })
        .collect()
}

/// What a field's comment documents as its default, if it does.
fn field_default(doc: &str) -> Option<String> {
    if let Some(at) = doc.find("Default ") {
        return Some(value_at(&doc[at + "Default ".len()..]));
    }
    if let Some(at) = doc.find(" (default)") {
        let before = &doc[..at];
        let start = before.rfind(' ').map_or(0, |i| i + 1);
        return Some(before[start..].to_owned());
    }
    // A gate's idiom: zero means the default.
    doc.find("0: the default ").map(|at| {
        value_at(&doc[at + "0: the default ".len()..])
    })
}

/// The value `text` starts with: a `CONSTANT`, or numbers (`0.01`, `0, 0, 0`) up to the
/// sentence's end.
fn value_at(text: &str) -> String {
    if let Some(rest) = text.strip_prefix('`') {
        return format!("`{}`", &rest[..rest.find('`').unwrap()]);
    }
    let end = text.find(|c: char| !(c.is_ascii_digit() || ".,- ".contains(c))).unwrap_or(text.len());
    text[..end].trim().trim_end_matches(['.', ',']).trim().to_owned()
}

/// The library's defaults, field by field, as numbers: `ElpipsOptions` and `ElpipsTuneOptions`
/// after their `*_default` functions, a gate's zero fields as `elpips_decide` resolves them.
fn library_defaults() -> BTreeMap<(String, String), Vec<f64>> {
    let mut o = std::mem::MaybeUninit::<ElpipsOptions>::zeroed();
    let mut t = std::mem::MaybeUninit::<ElpipsTuneOptions>::zeroed();
    // SAFETY: writable structs of the sizes passed.
    unsafe {
        assert_eq!(elpips_options_default(o.as_mut_ptr(), std::mem::size_of::<ElpipsOptions>()), ELPIPS_OK);
        assert_eq!(elpips_tune_options_default(t.as_mut_ptr()), ELPIPS_OK);
    }
    // SAFETY: initialised above.
    let (o, t) = unsafe { (o.assume_init(), t.assume_init()) };
    let g = elpips::Gate::new(0.0);
    let mut m = BTreeMap::new();
    let mut put = |s: &str, f: &str, v: Vec<f64>| m.insert((s.to_owned(), f.to_owned()), v);
    put("ElpipsOptions", "metric", vec![o.metric as f64]);
    put("ElpipsOptions", "device", vec![o.device as f64]);
    put("ElpipsOptions", "seed", vec![o.seed as f64]);
    put("ElpipsOptions", "sampler", vec![o.sampler as f64]);
    put("ElpipsOptions", "sampling", vec![o.sampling as f64]);
    put("ElpipsOptions", "samples", vec![o.samples as f64]);
    put("ElpipsOptions", "abs_error", vec![o.abs_error]);
    put("ElpipsOptions", "rel_error", vec![o.rel_error]);
    put("ElpipsOptions", "max_samples", vec![o.max_samples as f64]);
    put("ElpipsOptions", "min_samples", vec![o.min_samples as f64]);
    put("ElpipsOptions", "threads", vec![o.threads as f64]);
    put("ElpipsOptions", "scale_levels", vec![o.scale_levels as f64]);
    put("ElpipsOptions", "max_pixels", vec![o.max_pixels as f64]);
    put("ElpipsOptions", "linear_weights", vec![o.linear_weights as usize as f64]);
    put("ElpipsOptions", "exposure", vec![o.exposure as f64]);
    put("ElpipsOptions", "tonemap", vec![o.tonemap as f64]);
    put("ElpipsOptions", "alpha", vec![o.alpha as f64]);
    put("ElpipsOptions", "background", o.background.iter().map(|&c| c as f64).collect());
    put("ElpipsOptions", "backend", vec![o.backend as f64]);
    put("ElpipsOptions", "tile_samples", vec![o.tile_samples as f64]);
    put("ElpipsOptions", "cheap_draws", vec![o.cheap_draws as f64]);
    put("ElpipsTuneOptions", "goal", vec![t.goal as f64]);
    put("ElpipsTuneOptions", "threshold", vec![t.threshold]);
    put("ElpipsTuneOptions", "min_setting", vec![t.min_setting as f64]);
    put("ElpipsTuneOptions", "max_setting", vec![t.max_setting as f64]);
    put("ElpipsTuneOptions", "start_setting", vec![t.start_setting as f64]);
    put("ElpipsTuneOptions", "max_probes", vec![t.max_probes as f64]);
    put("ElpipsTuneOptions", "error_rate", vec![t.error_rate]);
    put("ElpipsTuneOptions", "min_samples", vec![t.min_samples as f64]);
    put("ElpipsTuneOptions", "max_samples", vec![t.max_samples as f64]);
    put("ElpipsTuneOptions", "tolerance", vec![t.tolerance]);
    put("ElpipsTuneOptions", "guide", vec![t.guide as f64]);
    put("ElpipsGate", "error_rate", vec![g.error_rate]);
    put("ElpipsGate", "max_samples", vec![g.max_samples as f64]);
    put("ElpipsGate", "min_samples", vec![g.min_samples as f64]);
    m
}

#[test]
fn documented_defaults_are_the_librarys() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("include/elpips.h")).unwrap();
    let defines = defines(&text);
    let library = library_defaults();
    let items = header_items(&text);
    let mut checked = 0;
    let mut failures = Vec::new();
    for item in items.iter().filter(|i| i.within.is_some()) {
        let strukt = item.within.clone().unwrap();
        let field = item.decl.trim_end_matches(';').rsplit(' ').next().unwrap().split('[').next().unwrap().trim_start_matches('*').to_owned();
        let Some(doc) = field_default(&item.doc) else { continue };
        let Some(actual) = library.get(&(strukt.clone(), field.clone())) else {
            failures.push(format!("{strukt}.{field} documents default `{doc}` but the test does not know the field"));
            continue;
        };
        let documented = documented_values(&doc, &defines);
        if &documented != actual {
            failures.push(format!("{strukt}.{field}: the header says default {doc} ({documented:?}), the library gives {actual:?}"));
        }
        checked += 1;
    }
    // Constants documented as a default: their struct field's default must be their value.
    let families: [(&str, Option<(&str, &str)>); 11] = [
        ("ELPIPS_METRIC_", Some(("ElpipsOptions", "metric"))),
        ("ELPIPS_SAMPLING_", Some(("ElpipsOptions", "sampling"))),
        ("ELPIPS_SAMPLER_", Some(("ElpipsOptions", "sampler"))),
        ("ELPIPS_DEVICE_", Some(("ElpipsOptions", "device"))),
        ("ELPIPS_TONEMAP_", Some(("ElpipsOptions", "tonemap"))),
        ("ELPIPS_ALPHA_", Some(("ElpipsOptions", "alpha"))),
        ("ELPIPS_BACKEND_", Some(("ElpipsOptions", "backend"))),
        ("ELPIPS_TUNE_GUIDE_", Some(("ElpipsTuneOptions", "guide"))),
        // No struct field: the library's own default, or the zero of a zeroed ElpipsImage.
        ("ELPIPS_PRECISION_", None),
        ("ELPIPS_PIXEL_FORMAT_", None),
        ("ELPIPS_TRANSFER_", None),
    ];
    let mut defaults_per_family: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for item in &items {
        let Some(name) = item.decl.strip_prefix("#define ").and_then(|d| d.split(' ').next()) else { continue };
        let says_default = item.doc.contains("Default") || item.doc.contains("(default)") || item.doc.contains("hence the default");
        let Some((prefix, field)) = families.iter().find(|(p, _)| name.starts_with(p)) else { continue };
        if !says_default {
            continue;
        }
        defaults_per_family.entry(prefix).or_default().push(name.to_owned());
        let value = defines[name];
        let expected = match (field, *prefix) {
            (Some(f), _) => library[&(f.0.to_owned(), f.1.to_owned())][0],
            (None, "ELPIPS_PRECISION_") => (elpips::Precision::default() != elpips::Precision::Fp32) as u8 as f64,
            (None, _) => 0.0,
        };
        if value != expected {
            failures.push(format!("{name} ({value}) is documented as the default, but the library's default is {expected}"));
        }
        checked += 1;
    }
    for (family, names) in &defaults_per_family {
        if names.len() != 1 {
            failures.push(format!("{family}*: {} constants are documented as the default: {names:?}", names.len()));
        }
    }
    assert!(checked >= 30, "only {checked} documented defaults found: is the parser still reading the header?");
    assert!(failures.is_empty(), "the header's defaults disagree with the library:\n{}", failures.join("\n"));
}
