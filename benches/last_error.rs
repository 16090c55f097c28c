//! Memory of a shared C context's last-error messages under many short-lived threads: each
//! thread makes one failing call on the context (a NULL image) and ends. Prints the process's
//! resident memory before and after N such threads (default 100,000; `ELPIPS_BENCH_THREADS=N`)
//! after a warm-up of 1,000, so a per-thread leak shows as growth proportional to N (it was ~90
//! bytes per thread before the messages of ended threads were dropped).

use std::ffi::CStr;

use elpips::capi::*;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches(" kB").parse().ok()).unwrap_or(0)
}

fn main() {
    let n: usize = std::env::var("ELPIPS_BENCH_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let mut o = std::mem::MaybeUninit::<ElpipsOptions>::zeroed();
    let mut ctx = std::ptr::null_mut();
    // SAFETY: a writable options struct, then valid options and out-pointer.
    unsafe {
        assert_eq!(elpips_options_default(o.as_mut_ptr(), std::mem::size_of::<ElpipsOptions>()), ELPIPS_OK);
        let mut o = o.assume_init();
        o.metric = ELPIPS_METRIC_LPIPS_ALEX;
        o.threads = 1;
        assert_eq!(elpips_context_new(&o, &mut ctx), ELPIPS_OK, "run `make setup` first");
    }
    let shared = ctx as usize;
    let fail_once = move || {
        let ctx = shared as *mut ElpipsContext;
        let mut r = ElpipsResult::default();
        // SAFETY: a live context; NULL images are the failure wanted.
        unsafe {
            assert_eq!(elpips_compare(ctx, std::ptr::null(), std::ptr::null(), &mut r), ELPIPS_STATUS_NULL_POINTER);
            assert!(!CStr::from_ptr(elpips_last_error(ctx)).to_bytes().is_empty());
        }
    };
    for _ in 0..1000 {
        std::thread::spawn(fail_once).join().unwrap();
    }
    let before = rss_kib();
    let started = std::time::Instant::now();
    for _ in 0..n {
        std::thread::spawn(fail_once).join().unwrap();
    }
    let after = rss_kib();
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())).unwrap_or_default();
    println!("{cpu}: {n} threads, one failed call each on a shared context: RSS {before} -> {after} KiB ({:+} KiB, {:.1} bytes per thread), {:.1} s", after as i64 - before as i64, (after as f64 - before as f64) * 1024.0 / n as f64, started.elapsed().as_secs_f64());
    // SAFETY: ours, freed once.
    unsafe { elpips_context_free(ctx) };
}
