//! The gradient part of the C ABI (`src/capi/gradient.rs`) driven from Rust: it returns exactly
//! what the Rust API returns for the same pixels and draws, and bad arguments get statuses and
//! messages.


use std::ffi::CStr;
use std::ptr;

use elpips::capi::*;
use elpips::{Gradient, GradientOptions, Image, MetricKind};

const N: u32 = 24;

fn pattern(shift: u8) -> Vec<u8> {
    (0..N).flat_map(|y| (0..N).flat_map(move |x| [((x * 7) as u8) ^ shift, (y * 5) as u8, ((x + y) * 3) as u8])).collect()
}

fn image(rgb: &[u8]) -> ElpipsImage {
    ElpipsImage { data: rgb.as_ptr().cast(), width: N, height: N, stride_bytes: 0, format: ELPIPS_PIXEL_FORMAT_RGB8, transfer: ELPIPS_TRANSFER_SRGB }
}

fn options(metric: ElpipsMetric, seed: u64) -> ElpipsOptions {
    let mut o = std::mem::MaybeUninit::<ElpipsOptions>::zeroed();
    // SAFETY: a writable options struct.
    assert_eq!(unsafe { elpips_options_default(o.as_mut_ptr(), std::mem::size_of::<ElpipsOptions>()) }, ELPIPS_OK);
    // SAFETY: initialised by elpips_options_default.
    let mut o = unsafe { o.assume_init() };
    o.metric = metric;
    o.seed = seed;
    o.threads = 1;
    o
}

struct Handle(*mut ElpipsGradient);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: a handle from elpips_gradient_new (or NULL).
        unsafe { elpips_gradient_free(self.0) };
    }
}

impl Handle {
    fn new(o: &ElpipsOptions) -> Result<Handle, ElpipsStatus> {
        let mut h = ptr::null_mut();
        // SAFETY: valid options and out-pointer.
        match unsafe { elpips_gradient_new(o, &mut h) } {
            ELPIPS_OK => Ok(Handle(h)),
            s => {
                assert!(h.is_null());
                Err(s)
            }
        }
    }

    fn compute(&self, a: &[u8], b: &[u8], first: u64, samples: u32, len: usize) -> Result<(f64, Vec<f32>), (ElpipsStatus, String)> {
        let (ia, ib) = (image(a), image(b));
        let mut d = -1.0;
        let mut g = vec![0.0f32; len];
        // SAFETY: live handle, valid images, `len` writable floats.
        let s = unsafe { elpips_gradient_compute(self.0, &ia, &ib, first, samples, &mut d, g.as_mut_ptr(), len) };
        if s == ELPIPS_OK {
            Ok((d, g))
        } else {
            // SAFETY: live handle; the message is NUL-terminated.
            Err((s, unsafe { CStr::from_ptr(elpips_gradient_last_error(self.0)) }.to_string_lossy().into_owned()))
        }
    }
}

fn rust(kind: MetricKind, seed: u64) -> Gradient {
    Gradient::new(GradientOptions { metric: kind, seed, runtime: elpips::RuntimeOptions { threads: 1, ..Default::default() }, ..Default::default() })
        .unwrap_or_else(|e| panic!("cannot load the gradient model ({e}); run `make setup` first"))
}

#[test]
fn c_gradients_equal_the_rust_ones() {
    let (a, b) = (pattern(0), pattern(9));
    let (ia, ib) = (Image::from_rgb8(N, N, &a).unwrap(), Image::from_rgb8(N, N, &b).unwrap());
    let len = (3 * N * N) as usize;

    let lpips = Handle::new(&options(ELPIPS_METRIC_LPIPS_VGG, 0)).unwrap();
    let (d, g) = lpips.compute(&a, &b, 0, 0, len).unwrap();
    let want = rust(MetricKind::LpipsVgg, 0).network(&ia, &ib).unwrap();
    assert_eq!((d, &g), (want.distance, &want.gradient));
    assert!(d > 0.0 && g.iter().any(|&v| v != 0.0));

    let el = Handle::new(&options(ELPIPS_METRIC_ELPIPS_VGG, 7)).unwrap();
    let (d, g) = el.compute(&a, &b, 5, 3, len + 10).unwrap();
    let want = rust(MetricKind::ElpipsVgg, 7).samples(&ia, &ib, 5..8).unwrap();
    assert_eq!((d, &g[..len]), (want.distance, &want.gradient[..]));
    assert!(g[len..].iter().all(|&v| v == 0.0), "wrote past the gradient");
}

#[test]
fn c_gradient_errors() {
    let (a, b) = (pattern(0), pattern(9));
    let len = (3 * N * N) as usize;
    assert_eq!(Handle::new(&options(ELPIPS_METRIC_LPIPS_ALEX, 0)).err(), Some(ELPIPS_STATUS_INVALID_ARGUMENT));
    let lpips = Handle::new(&options(ELPIPS_METRIC_LPIPS_VGG, 0)).unwrap();
    let (s, msg) = lpips.compute(&a, &b, 0, 0, len - 1).unwrap_err();
    assert_eq!(s, ELPIPS_STATUS_INVALID_ARGUMENT);
    assert!(msg.contains("gradient_len"), "{msg}");
    let (s, msg) = lpips.compute(&a, &b, 0, 2, len).unwrap_err();
    assert_eq!(s, ELPIPS_STATUS_INVALID_ARGUMENT);
    assert!(msg.contains("samples = 0"), "{msg}");
    let el = Handle::new(&options(ELPIPS_METRIC_ELPIPS_VGG, 0)).unwrap();
    assert_eq!(el.compute(&a, &b, 0, 0, len).unwrap_err().0, ELPIPS_STATUS_INVALID_ARGUMENT);
    assert_eq!(el.compute(&a, &b, u64::MAX, 2, len).unwrap_err().0, ELPIPS_STATUS_INVALID_ARGUMENT);
    let ia = image(&a);
    let mut d = 0.0;
    let mut g = vec![0.0f32; len];
    // SAFETY: NULL handle / NULL outputs are what is tested; the rest is valid.
    unsafe {
        assert_eq!(elpips_gradient_compute(ptr::null_mut(), &ia, &ia, 0, 0, &mut d, g.as_mut_ptr(), len), ELPIPS_STATUS_NULL_POINTER);
        assert_eq!(elpips_gradient_compute(lpips.0, &ia, ptr::null(), 0, 0, &mut d, g.as_mut_ptr(), len), ELPIPS_STATUS_NULL_POINTER);
        assert_eq!(elpips_gradient_compute(lpips.0, &ia, &ia, 0, 0, ptr::null_mut(), g.as_mut_ptr(), len), ELPIPS_STATUS_NULL_POINTER);
        assert_eq!(elpips_gradient_compute(lpips.0, &ia, &ia, 0, 0, &mut d, ptr::null_mut(), len), ELPIPS_STATUS_NULL_POINTER);
        assert_eq!(CStr::from_ptr(elpips_gradient_last_error(ptr::null())).to_bytes(), b"");
        elpips_gradient_free(ptr::null_mut());
        let mut h = ptr::null_mut();
        assert_eq!(elpips_gradient_new(ptr::null(), ptr::null_mut()), ELPIPS_STATUS_NULL_POINTER);
        // NULL options: the defaults (E-LPIPS-VGG).
        assert_eq!(elpips_gradient_new(ptr::null(), &mut h), ELPIPS_OK);
        elpips_gradient_free(h);
    }
}
