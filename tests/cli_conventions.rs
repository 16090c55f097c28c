//! The command line's conventions, shared by every subcommand: clap's mistakes become one line
//! that keeps clap's suggestion and possible values and points to the subcommand's own help; bare
//! `elpips` prints the help (stderr, exit 2); the global `-q/--quiet`; `--help` grouped by heading
//! with each default shown once; `tune` takes the common option groups; one output contract
//! (docs/renderer.md, "Exit status and JSON"): exit 0 on success, 1 when a gate failed or a goal
//! is not reachable, 2 on an error; under `--json` stdout carries exactly one JSON record in
//! every case, an error as `{"error": {"message", "exit_code"}}`, and every result names what
//! produced it with the same names (metric, sampler, precision, device, backend, seed; the image
//! judged is `candidate`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn elpips(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_elpips")).args(args).output().expect("runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts exit 2, nothing on stdout and one line on stderr containing every `needle`.
fn assert_error(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one-line error expected, got: {err}");
    assert!(err.starts_with("elpips: "), "{err}");
    for n in needles {
        assert!(err.contains(n), "`{n}` not in: {err}");
    }
    assert!(o.stdout.is_empty(), "nothing on stdout on error");
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn write_png(dir: &Path, name: &str, shift: u8) -> PathBuf {
    let img = image::RgbImage::from_fn(48, 40, |x, y| image::Rgb([(x * 7) as u8 ^ shift, (y * 5) as u8, ((x + y) * 3) as u8]));
    let p = dir.join(name);
    img.save(&p).unwrap();
    p
}

#[test]
fn a_misspelt_option_keeps_the_suggestion_and_points_to_the_subcommand_help() {
    assert_error(&elpips(&["compare", "a.png", "b.png", "--sample", "3"]), &["'--sample'", "a similar argument exists: '--samples'", "(see `elpips compare --help`)"]);
    assert_error(&elpips(&["rank", "a.png", "b.png", "--seeds", "3"]), &["similar argument exists: '--seed'", "(see `elpips rank --help`)"]);
    // The global -q before the subcommand does not hide which subcommand was typed.
    assert_error(&elpips(&["-q", "check", "a.png", "b.png", "--max-distanse", "1"]), &["'--max-distance'", "(see `elpips check --help`)"]);
    // A misspelt subcommand: clap's suggestion, and the top-level help.
    assert_error(&elpips(&["compar", "a.png", "b.png"]), &["unrecognized subcommand 'compar'", "similar subcommand exists: 'compare'", "(see `elpips --help`)"]);
    // A missing positional names it.
    assert_error(&elpips(&["compare", "a.png"]), &["required arguments were not provided: <CANDIDATE>", "(see `elpips compare --help`)"]);
}

#[test]
fn an_invalid_value_lists_the_possible_values() {
    let cases: [(&[&str], &str, &str); 9] = [
        (&["compare", "a", "b", "--metric", "ssim"], "[possible values: elpips-vgg, lpips-vgg, lpips-alex]", "compare"),
        (&["compare", "a", "b", "--sampler", "sobol"], "[possible values: iid, stratified, control]", "compare"),
        (&["rank", "a", "b", "--precision", "fp16"], "[possible values: fp32, int8, bf16]", "rank"),
        (&["info", "--device", "tpu"], "[possible values: cpu, auto, cuda]", "info"),
        (&["compare", "a", "b", "--tonemap", "filmic"], "[possible values: clamp, reinhard, none]", "compare"),
        (&["compare", "a", "b", "--encoding", "pq"], "[possible values: srgb, linear]", "compare"),
        (&["check", "a", "b", "--alpha", "under"], "[possible values: ignore, over]", "check"),
        (&["check", "a", "b", "--undecided", "maybe"], "[possible values: estimate, pass, fail]", "check"),
        (&["tune", "x.png", "-o", "y", "--max-distance", "1", "--codec", "jpeg", "--guide", "exact"], "[possible values: auto, lpips-vgg, none]", "tune"),
    ];
    for (args, values, sub) in cases {
        let o = elpips(args);
        assert_error(&o, &["invalid value", values, &format!("(see `elpips {sub} --help`)")]);
    }
    // A near miss also gets clap's tip.
    assert_error(&elpips(&["compare", "a", "b", "--metric", "lpips-vg"]), &["similar value exists: 'lpips-vgg'"]);
    assert_error(&elpips(&["tune", "x.png", "-o", "y", "--max-distance", "1", "--codec", "gif"]), &["[possible values: jpeg, webp, avif, jxl]"]);
    assert_error(&elpips(&["compare", "a", "b", "--precision", "fp16"]), &["[possible values: fp32, int8, bf16]"]);
    assert_error(&elpips(&["compare", "a", "b", "--backend", "onednn"]), &["[possible values: auto, mlas, openvino]"]);
}

#[test]
fn bare_elpips_prints_the_help_not_an_error() {
    let o = elpips(&[]);
    // Nothing was done: exit 2, as clap's arg_required_else_help; stdout stays for results.
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    let err = stderr(&o);
    assert!(!err.contains("error:") && !err.starts_with("elpips:"), "not framed as an error: {err}");
    for part in ["Usage: elpips [OPTIONS] <COMMAND>", "Commands:", "compare", "check", "tune", "rank", "info", "-q, --quiet"] {
        assert!(err.contains(part), "`{part}` not in: {err}");
    }
    // Asking for it is a success, on stdout.
    let o = elpips(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("Commands:"));
}

#[test]
fn help_is_grouped_by_heading_with_each_default_once() {
    let headings = ["Network:", "Sampling:", "Input:", "Output:", "Runtime:"];
    for (sub, present) in [
        ("compare", &headings[..]),
        ("rank", &headings[..]),
        ("check", &headings[..]),
        ("tune", &headings[..]),
        ("rd", &headings[..]),
        ("info", &headings[4..]),
    ] {
        for flag in ["-h", "--help"] {
            let o = elpips(&[sub, flag]);
            assert_eq!(o.status.code(), Some(0), "{sub} {flag}");
            let help = stdout(&o);
            let at: Vec<usize> = present.iter().map(|h| help.find(&format!("\n{h}\n")).unwrap_or_else(|| panic!("{sub} {flag}: no {h}\n{help}"))).collect();
            assert!(at.windows(2).all(|w| w[0] < w[1]), "{sub} {flag}: headings out of order\n{help}");
            // A default is clap's `[default: ...]` (or the same form in the text where clap has
            // none to show), never a second time in prose.
            assert!(!help.contains("(default"), "{sub} {flag}: a prose default\n{help}");
            for entry in help.split("\n\n").flat_map(|block| block.split("\n      --").skip(1)) {
                assert!(entry.matches("[default:").count() <= 1, "{sub} {flag}: two defaults in\n{entry}");
            }
        }
    }
    let long = stdout(&elpips(&["compare", "--help"]));
    // --help describes each value once, from the library's documentation of it.
    assert!(long.contains("- lpips-alex: "), "{long}");
    assert!(long.contains("[default: elpips-vgg]"), "{long}");
}

#[test]
fn tune_takes_the_common_option_groups() {
    let help = stdout(&elpips(&["tune", "--help"]));
    for option in ["--metric <METRIC>", "--seed <S>", "--scale-levels <S>", "--lin-weights <FILE>", "--precision <PRECISION>", "--sampler <SAMPLER>", "--tile <N>", "--device <DEVICE>"] {
        assert_eq!(help.matches(option).count(), 1, "`{option}` once in\n{help}");
    }
    // The probes are check's gate, which takes control variates as the library's decide does:
    // the sampler passes and the missing image is what is refused.
    let o = elpips(&["tune", "missing.png", "-o", "out.jpg", "--codec", "jpeg", "--max-distance", "0.1", "--sampler", "control"]);
    assert!(!stderr(&o).contains("sampler"), "{}", stderr(&o));
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn quiet_silences_the_informational_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (write_png(dir.path(), "a.png", 0), write_png(dir.path(), "b.png", 9));
    let heatmap = dir.path().join("h.png");
    let compare = |quiet: &[&str]| {
        let args = [quiet, &["compare", "--metric", "lpips-alex", "--heatmap", s(&heatmap), s(&a), s(&b)]].concat();
        let o = elpips(&args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        o
    };
    let loud = compare(&[]);
    assert!(stderr(&loud).starts_with("heatmap: "), "{}", stderr(&loud));
    for q in [&["-q"][..], &["--quiet"][..]] {
        let o = compare(q);
        assert_eq!(stderr(&o), "", "{q:?}");
        assert_eq!(o.stdout, loud.stdout, "{q:?}: the result is the same");
    }
    // After the subcommand too (the flag is global).
    let o = elpips(&["compare", "--metric", "lpips-alex", s(&a), s(&b), "--heatmap", s(&heatmap), "-q"]);
    assert_eq!((o.status.code(), stderr(&o)), (Some(0), String::new()));

    // check: a pass prints its line, -q prints only failures, errors and the count.
    let check = |extra: &[&str]| {
        let args = [extra, &["check", "--metric", "lpips-alex", s(&a), s(&b), "--max-distance", "10"]].concat();
        let o = elpips(&args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        stdout(&o)
    };
    assert!(check(&[]).starts_with("PASS "));
    assert_eq!(check(&["-q"]), "");
    let o = elpips(&["check", "-q", "--metric", "lpips-alex", s(&a), s(&b), "--max-distance", "0"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("FAIL "), "{}", stdout(&o));
    // check's heatmap legend goes like compare's: printed, unless -q (the map is written either way).
    let check_map = |extra: &[&str]| {
        std::fs::remove_file(&heatmap).ok();
        let args = [extra, &["check", "--metric", "lpips-alex", s(&a), s(&b), "--max-distance", "0", "--heatmap", s(&heatmap)]].concat();
        let o = elpips(&args);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(heatmap.is_file());
        stderr(&o)
    };
    assert!(check_map(&[]).starts_with("heatmap: "));
    assert_eq!(check_map(&["-q"]), "");
}

/// The library's messages reach C and Python callers, who have no flags: they name options as
/// those callers know them (`samples`, in backticks) and the command line turns those names
/// into its flags. Scans the library's sources (not the command line's) for a flag in a string.
#[test]
fn library_messages_name_options_not_flags() {
    // Commands quoted whole, not options of elpips.
    let allowed = ["cargo build --release --features cuda", "weights/setup.py --record-models", "weights/convert.py"];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path != root.join("bin") {
                    stack.push(path);
                }
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.trim_start();
                if code.starts_with("//") || (code.starts_with("#[") && !code.starts_with("#[error(")) || !code.contains('"') {
                    continue;
                }
                let mut rest = line;
                for a in allowed {
                    rest = if rest.contains(a) { "" } else { rest };
                }
                let flag = rest.match_indices("--").any(|(i, _)| rest[i + 2..].starts_with(|c: char| c.is_ascii_lowercase()) && rest[..i].matches('"').count() % 2 == 1);
                if flag {
                    found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(found.is_empty(), "library strings naming command-line flags (name the option in backticks, e.g. `max_pixels`; the CLI maps it):\n{}", found.join("\n"));
    // And the command line maps them back.
    let dir = tempfile::tempdir().unwrap();
    let png = write_png(dir.path(), "a.png", 0);
    let o = elpips(&["compare", s(&png), s(&png), "--max-pixels", "10"]);
    assert_error(&o, &["raise the limit (--max-pixels)"]);
    assert!(!stderr(&o).contains('`'), "{}", stderr(&o));
}

/// `--version` says what this elpips is made of: the runtime it finds (and its version), the
/// execution providers, the codecs compiled in, CUDA and the installation; `-V` stays one line.
#[test]
fn version_names_the_runtime_backends_codecs_and_cuda() {
    let o = elpips(&["--version"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    let keys: Vec<&str> = text.lines().map(|l| l.split(':').next().unwrap_or("")).collect();
    assert_eq!(keys, [&format!("elpips {}", env!("CARGO_PKG_VERSION")), "runtime", "backends", "codecs", "cuda", "installation"], "{text}");
    assert!(text.contains("runtime:      ONNX Runtime 1.3") && text.contains("/libonnxruntime.so"), "{text}");
    assert!(text.contains("backends:     onnxruntime (cpu"), "{text}");
    assert!(text.contains("installation: none: runs from a build of the source checkout"), "{text}");
    // The subcommands carry it too (propagated).
    assert_eq!(stdout(&elpips(&["compare", "--version"])), text);
    let short = elpips(&["-V"]);
    assert_eq!(stdout(&short), format!("elpips {}\n", env!("CARGO_PKG_VERSION")));
    // Without a runtime it says so instead of failing.
    let o = Command::new(env!("CARGO_BIN_EXE_elpips")).arg("--version").env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so").output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("runtime:      not found (ONNX Runtime: library not found at /nonexistent/libonnxruntime.so"), "{}", stdout(&o));
}

/// `info --json` is the record the text prints, field for field.
#[test]
fn info_json_is_the_record_the_text_prints() {
    let o = elpips(&["info", "--json", "--threads", "1"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["installation"], serde_json::Value::Null);
    assert_eq!(v["threads"], 1);
    let b = &v["backends"][0];
    assert_eq!((b["name"].as_str(), b["providers"][0].as_str()), (Some("onnxruntime"), Some("cpu")));
    assert!(b["version"].as_str().unwrap().starts_with("1.3"), "{b}");
    assert_eq!(v["codecs"].as_array().unwrap().len(), 4);
    let metrics: Vec<(&str, bool)> = v["metrics"].as_array().unwrap().iter().map(|m| (m["name"].as_str().unwrap(), m["ok"].as_bool().unwrap())).collect();
    assert_eq!(metrics, [("elpips-vgg", true), ("lpips-vgg", true), ("lpips-alex", true)]);
    let text = stdout(&elpips(&["info", "--threads", "1"]));
    for line in [
        format!("runtime: {} (from {})", b["library"].as_str().unwrap(), b["origin"].as_str().unwrap()),
        format!("runtime version: {}", b["version"].as_str().unwrap()),
        format!("models:  {}", v["models"].as_str().unwrap()),
        "threads: 1 ".to_owned(),
    ] {
        assert!(text.contains(&line), "`{line}` not in:\n{text}");
    }
}

/// Completions for each shell and the man pages come from the same definition as `--help`.
#[test]
fn completions_and_man_pages_come_from_the_command_line() {
    for (shell, marker) in [("bash", "complete -F _elpips"), ("zsh", "#compdef elpips"), ("fish", "complete -c elpips")] {
        let o = elpips(&["completions", shell]);
        assert_eq!(o.status.code(), Some(0), "{shell}: {}", stderr(&o));
        let script = stdout(&o);
        assert!(script.contains(marker) && script.contains("--max-distance") && script.contains("elpips-vgg"), "{shell}:\n{script}");
    }
    assert_error(&elpips(&["completions", "tcsh"]), &["tcsh", "[possible values: bash"]);
    let dir = tempfile::tempdir().unwrap();
    let o = elpips(&["man", "--out", s(dir.path())]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut pages: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    pages.sort();
    assert_eq!(pages, ["elpips-check.1", "elpips-compare.1", "elpips-completions.1", "elpips-info.1", "elpips-rank.1", "elpips-rd.1", "elpips-serve.1", "elpips-tune.1", "elpips.1"]);
    let check = std::fs::read_to_string(dir.path().join("elpips-check.1")).unwrap();
    assert!(check.starts_with(".ie \\n(.g .ds Aq") || check.contains(".TH elpips-check 1"), "{check}");
    assert!(check.contains("max\\-distance"), "{check}");
}

/// The one JSON record on stdout, and the exit status, which must be `code`.
fn record(args: &[&str], code: i32) -> serde_json::Value {
    let o = elpips(args);
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(code), "{args:?}\nstdout: {out}\nstderr: {err}");
    assert_eq!(out.trim_end().lines().count(), 1, "one record on stdout for {args:?}: {out}");
    serde_json::from_str(out.trim_end()).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

/// An error record: the message that stderr's one line also says, and the exit status.
fn assert_error_record(v: &serde_json::Value, code: i64, needle: &str) {
    let e = &v["error"];
    assert_eq!(e["exit_code"], code, "{v}");
    let m = e["message"].as_str().unwrap_or_else(|| panic!("no message in {v}"));
    assert!(m.contains(needle), "`{needle}` not in {m}");
}

/// The fields that say what produced a result, with their vocabulary's values.
fn assert_provenance(v: &serde_json::Value, fields: &[&str]) {
    for f in fields {
        let x = &v[f];
        match *f {
            "metric" => assert!(x.as_str().is_some_and(|m| m.starts_with("lpips-") || m.starts_with("elpips-")), "{f} in {v}"),
            "sampler" => assert!(matches!(x.as_str(), Some("iid" | "stratified" | "control")), "{f} in {v}"),
            "precision" => assert!(matches!(x.as_str(), Some("fp32" | "fp16" | "int8")), "{f} in {v}"),
            "device" => assert!(x.as_str().is_some_and(|d| d.starts_with("cpu") || d.starts_with("cuda")), "{f} in {v}"),
            "backend" => assert!(x.as_str().is_some_and(|b| !b.is_empty()), "{f} in {v}"),
            "seed" => assert!(x.as_u64().is_some(), "{f} in {v}"),
            _ => unreachable!(),
        }
    }
}

const ALL: [&str; 6] = ["metric", "sampler", "precision", "device", "backend", "seed"];

#[test]
fn every_subcommand_keeps_the_exit_codes_and_the_json_vocabulary() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (write_png(dir.path(), "a.png", 0), write_png(dir.path(), "b.png", 9), write_png(dir.path(), "c.png", 40));
    let missing = dir.path().join("missing.png");
    let e = ["--metric", "elpips-vgg", "--samples", "2", "--seed", "3"];

    // compare
    let v = record(&[&["compare", "--json", s(&a), s(&b)][..], &e].concat(), 0);
    assert_provenance(&v, &ALL);
    assert_eq!(v["candidate"], s(&b));
    assert_error_record(&record(&["compare", "--json", s(&a), s(&missing)], 2), 2, "missing.png");
    // An argument clap refuses gets its record too.
    assert_error_record(&record(&["compare", "--json", s(&a), s(&b), "--samples", "x"], 2), 2, "--samples");

    // check: pass (0), fail (1), error (2); the single pair's record names what produced it.
    let gate = ["--metric", "lpips-alex"];
    let v = record(&[&["check", "--json", s(&a), s(&b), "--max-distance", "1"][..], &gate].concat(), 0);
    assert_provenance(&v, &ALL);
    assert_eq!((v["candidate"].as_str(), v["status"].as_str()), (Some(s(&b)), Some("pass")), "{v}");
    let v = record(&[&["check", "--json", s(&a), s(&c), "--max-distance", "0.0001"][..], &gate].concat(), 1);
    assert_eq!(v["status"], "fail", "{v}");
    assert!(v.get("error").is_none(), "{v}");
    let v = record(&["check", "--json", s(&a), s(&missing), "--max-distance", "1"], 2);
    assert_eq!(v["status"], "error", "{v}");
    assert_error_record(&v, 2, "missing.png");
    assert_error_record(&record(&["check", "--json", "--manifest", s(&missing)], 2), 2, "missing.png");
    // The sampler story is one: check takes control variates as the library's decide does.
    let v = record(&[&["check", "--json", s(&a), s(&b), "--max-distance", "1", "--sampler", "control", "--max-samples", "32"][..], &e[..2]].concat(), 0);
    assert_eq!(v["sampler"], "control", "{v}");

    // rank
    let v = record(&[&["rank", "--json", s(&a), s(&b), s(&c)][..], &e].concat(), 0);
    assert_provenance(&v, &ALL);
    let names: Vec<&str> = v["candidates"].as_array().unwrap().iter().map(|c| c["candidate"].as_str().unwrap()).collect();
    assert_eq!(names, [s(&b), s(&c)]);
    assert_error_record(&record(&["rank", "--json", s(&a), s(&missing), s(&b)], 2), 2, "missing.png");

    // tune: a goal out of reach is exit 1 with its own record, not an invalid argument.
    let out = dir.path().join("t.jpg");
    let v = record(&["tune", "--json", "--codec", "jpeg", "--metric", "lpips-alex", "--max-distance", "0.5", s(&a), "-o", s(&out)], 0);
    assert_provenance(&v, &ALL);
    let v = record(&["tune", "--json", "--codec", "jpeg", "--metric", "lpips-alex", "--max-distance", "0.000001", s(&a), "-o", s(&out)], 1);
    assert_error_record(&v, 1, "goal not reachable");
    let o = elpips(&["tune", "--codec", "jpeg", "--metric", "lpips-alex", "--max-distance", "0.000001", s(&a), "-o", s(&out)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.starts_with("elpips: tune: goal not reachable") && err.trim_end().lines().count() == 1, "{err}");
    assert_error_record(&record(&["tune", "--json", "--codec", "jpeg", "--max-distance", "0.1", s(&missing), "-o", s(&out)], 2), 2, "missing.png");

    // rd: its rd.json keeps the settings record (metric, sampler, seed) and the run's device
    // and backend; an error is the shared record.
    let rd = dir.path().join("rd");
    let v = record(&["rd", "-q", "--json", "--codec", "jpeg", "--settings", "30,80", "--metric", "lpips-alex", "--bootstrap=0", "--out", s(&rd), s(&a)], 0);
    assert_provenance(&v["settings"], &["metric", "sampler", "seed"]);
    assert_provenance(&v, &["device", "backend"]);
    assert_error_record(&record(&["rd", "--json", "--codec", "jpeg", "--settings", "30,80", "--out", s(&rd), s(&missing)], 2), 2, "missing.png");

    // info
    let v = record(&["info", "--json"], 0);
    assert!(v.get("error").is_none(), "{v}");
    assert_error_record(&record(&["info", "--json", "--bogus"], 2), 2, "--bogus");
}
