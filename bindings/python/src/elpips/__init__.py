"""E-LPIPS / LPIPS perceptual image distances, over the libelpips C API (ctypes).

    import elpips
    with elpips.Context(seed=1, samples=50) as ctx:
        r = ctx.compare(reference, candidate)   # numpy H x W x 3|4, uint8 / uint16 / float32
        print(r.distance, r.ci95)

Every call maps to one C function; the C header (elpips.h) documents ownership, defaults and
thread-safety. A Context may be shared between threads (the library serialises calls on it and
ctypes releases the GIL while it runs); a Reference is immutable.
"""
from __future__ import annotations

import ctypes
import math
import numbers
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

__all__ = ["Context", "Reference", "Result", "Decision", "ElpipsError", "version", "library_path", "STATUS"]

# The C header's #defines (include/elpips.h); the values never change.
STATUS = {
    0: "OK", 1: "INVALID_ARGUMENT", 2: "IO", 3: "IMAGE_DECODE", 4: "SIZE_MISMATCH",
    5: "IMAGE_TOO_SMALL", 6: "IMAGE_TOO_LARGE", 7: "RUNTIME", 8: "MODEL", 9: "LINEAR_WEIGHTS",
    10: "INFERENCE", 11: "NULL_POINTER", 12: "INVALID_IMAGE", 13: "NON_FINITE", 14: "UNSUPPORTED",
    15: "INTERNAL_ERROR", 16: "CALLBACK",
}
_METRICS = {"elpips-vgg": 0, "lpips-vgg": 1, "lpips-alex": 2}
_DEVICES = {"cpu": 0, "auto": 1, "cuda": 2}
_BACKENDS = {"auto": 0, "mlas": 1, "openvino": 2}
_SAMPLERS = {"iid": 0, "stratified": 1, "control": 2}
_TONEMAPS = {"clamp": 0, "reinhard": 1, "none": 2}
_ALPHAS = {"ignore": 0, "over": 1}
_VERDICTS = {0: "below", 1: "above", 2: "undecided"}
_SAMPLING_ADAPTIVE, _SAMPLING_FIXED = 0, 1
_TRANSFER_SRGB, _TRANSFER_LINEAR = 0, 1
# (dtype, channels) -> ELPIPS_PIXEL_FORMAT_*
_FORMATS = {
    (np.dtype(np.uint8), 3): 0, (np.dtype(np.uint8), 4): 1,
    (np.dtype(np.uint16), 3): 2, (np.dtype(np.uint16), 4): 3,
    (np.dtype(np.float32), 3): 4, (np.dtype(np.float32), 4): 5,
}
_SONAME = "libelpips.so.0"
# ELPIPS_MAX_SAMPLES of the header: the most samples any option or gate may ask for.
_MAX_SAMPLES = 1_000_000
_U32, _U64 = (1 << 32) - 1, (1 << 64) - 1


# ctypes stores a Python int in a C field modulo its width (2**32 + 3 becomes 3, -1 becomes
# 4294967295) and a path at its first NUL byte: every value is checked here before it is stored,
# with a message that names the argument.
def _int(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, not {type(value).__name__}")
    v = int(value)
    if not lo <= v <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}, not {v}")
    return v


def _real(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    return float(value)


def _float32(name: str, value) -> float:
    v = _real(name, value)
    # A C float holds up to ~3.4e38; beyond it ctypes would store infinity.
    if math.isfinite(v) and abs(v) > 3.4028234663852886e38:
        raise ValueError(f"{name} {v} does not fit in a 32-bit float")
    return v


def _path(name: str, value) -> bytes:
    try:
        b = os.fsencode(value)
    except TypeError:
        raise TypeError(f"{name} must be a path (str, bytes or os.PathLike), not {type(value).__name__}") from None
    if b"\0" in b:
        raise ValueError(f"{name} {value!r} contains a NUL byte, which no file name can hold")
    return b


class _Options(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t), ("metric", ctypes.c_uint32), ("device", ctypes.c_uint32),
        ("seed", ctypes.c_uint64), ("sampler", ctypes.c_uint32), ("sampling", ctypes.c_uint32),
        ("samples", ctypes.c_uint32),
        ("abs_error", ctypes.c_double), ("rel_error", ctypes.c_double),
        ("max_samples", ctypes.c_uint32), ("min_samples", ctypes.c_uint32),
        ("threads", ctypes.c_uint32), ("scale_levels", ctypes.c_uint32), ("max_pixels", ctypes.c_uint64),
        ("runtime_library", ctypes.c_char_p), ("model_dir", ctypes.c_char_p), ("linear_weights", ctypes.c_char_p),
        ("exposure", ctypes.c_float), ("tonemap", ctypes.c_uint32), ("alpha", ctypes.c_uint32),
        ("background", ctypes.c_float * 3), ("backend", ctypes.c_uint32), ("tile_samples", ctypes.c_uint32),
        ("cheap_draws", ctypes.c_uint32),
    ]


class _Image(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p), ("width", ctypes.c_uint32), ("height", ctypes.c_uint32),
        ("stride_bytes", ctypes.c_size_t), ("format", ctypes.c_uint32), ("transfer", ctypes.c_uint32),
    ]


class _Result(ctypes.Structure):
    _fields_ = [
        ("distance", ctypes.c_double), ("std_error", ctypes.c_double), ("ci95", ctypes.c_double),
        ("samples", ctypes.c_uint64), ("scale_levels", ctypes.c_uint32), ("converged", ctypes.c_bool),
    ]


class _Gate(ctypes.Structure):
    _fields_ = [("threshold", ctypes.c_double), ("error_rate", ctypes.c_double),
                ("max_samples", ctypes.c_uint32), ("min_samples", ctypes.c_uint32)]


class _Decision(ctypes.Structure):
    _fields_ = [("verdict", ctypes.c_uint32), ("estimate_below", ctypes.c_bool), ("estimate", _Result),
                ("lower", ctypes.c_double), ("upper", ctypes.c_double),
                ("looks", ctypes.c_uint32), ("looks_planned", ctypes.c_uint32)]


@dataclass(frozen=True)
class Result:
    """A distance with its uncertainty (E-LPIPS is a Monte-Carlo estimate; LPIPS is exact)."""

    distance: float
    std_error: float
    ci95: float  # 95% confidence half-width
    samples: int
    scale_levels: int  # E-LPIPS scale levels used; 0 for LPIPS
    converged: bool  # False when adaptive sampling stopped at max_samples


def _result(r) -> "Result":
    return Result(r.distance, r.std_error, r.ci95, int(r.samples), int(r.scale_levels), bool(r.converged))


@dataclass(frozen=True)
class Decision:
    """The verdict of a sequential gate (`Context.decide`): is the distance at most `threshold`?"""

    verdict: str  # "below", "above" or "undecided" (not shown either way within max_samples)
    estimate_below: bool  # which side the point estimate lies on (the fallback when undecided)
    result: Result  # the estimate from the samples the verdict used
    lower: float  # confidence bounds at the gate's error rate
    upper: float
    looks: int
    looks_planned: int

    @property
    def passed(self) -> bool:
        """Below, or undecided with the estimate below (how `elpips check` settles by default)."""
        return self.verdict == "below" or (self.verdict == "undecided" and self.estimate_below)


class ElpipsError(Exception):
    """A failed call: `status` is the ELPIPS_STATUS_* value, `status_name` its name."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.status_name = STATUS.get(status, "UNKNOWN")
        super().__init__(f"{message} [{self.status_name}]" if message else self.status_name)


def _candidates():
    env = os.environ.get("ELPIPS_LIBRARY")
    if env:
        yield Path(env)
        return
    # Built into this package by `pip install` (bindings/python/setup.py).
    yield Path(__file__).resolve().parent / "lib" / _SONAME
    for prefix in (sys.prefix, "/usr/local", "/usr"):
        yield Path(prefix, "lib", _SONAME)
    # Running from the source tree itself (bindings/python/src/elpips).
    yield Path(__file__).resolve().parents[4] / "target" / "release" / "libelpips.so"


def library_path() -> Path:
    """The libelpips this package loads: $ELPIPS_LIBRARY, the one built into it by pip, the
    installed prefix, or the checkout."""
    tried = []
    for path in _candidates():
        if path.is_file():
            return path
        tried.append(str(path))
    raise OSError("libelpips not found (tried " + ", ".join(tried) + "); set ELPIPS_LIBRARY, run "
                  "`make install PREFIX=...`, or build the checkout with `cargo build --release`")


_lib = None


def _library():
    global _lib
    if _lib is None:
        lib = ctypes.CDLL(str(library_path()))
        status, P = ctypes.c_int32, ctypes.POINTER
        lib.elpips_version.restype = ctypes.c_char_p
        lib.elpips_version.argtypes = []
        lib.elpips_abi_version.restype = ctypes.c_uint32
        lib.elpips_status_str.restype = ctypes.c_char_p
        lib.elpips_status_str.argtypes = [status]
        lib.elpips_options_default.restype = status
        lib.elpips_options_default.argtypes = [P(_Options), ctypes.c_size_t]
        lib.elpips_context_new_with_error.restype = status
        lib.elpips_context_new_with_error.argtypes = [P(_Options), P(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_size_t]
        lib.elpips_context_free.restype = None
        lib.elpips_context_free.argtypes = [ctypes.c_void_p]
        lib.elpips_last_error.restype = ctypes.c_char_p
        lib.elpips_last_error.argtypes = [ctypes.c_void_p]
        lib.elpips_context_backend.restype = status
        lib.elpips_context_backend.argtypes = [ctypes.c_void_p, P(ctypes.c_uint32)]
        lib.elpips_compare.restype = status
        lib.elpips_compare.argtypes = [ctypes.c_void_p, P(_Image), P(_Image), P(_Result)]
        lib.elpips_compare_files.restype = status
        lib.elpips_compare_files.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, P(_Result)]
        lib.elpips_reference_new.restype = status
        lib.elpips_reference_new.argtypes = [ctypes.c_void_p, P(_Image), P(ctypes.c_void_p)]
        lib.elpips_reference_free.restype = None
        lib.elpips_reference_free.argtypes = [ctypes.c_void_p]
        lib.elpips_compare_reference.restype = status
        lib.elpips_decide.restype = status
        lib.elpips_decide.argtypes = [ctypes.c_void_p, P(_Image), P(_Image), P(_Gate), P(_Decision)]
        lib.elpips_decide_files.restype = status
        lib.elpips_decide_files.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, P(_Gate), P(_Decision)]
        lib.elpips_compare_reference.argtypes = [ctypes.c_void_p, ctypes.c_void_p, P(_Image), P(_Result)]
        if lib.elpips_abi_version() != 0:
            raise OSError(f"{library_path()} has ABI {lib.elpips_abi_version()}, this package needs 0")
        _lib = lib
    return _lib


def version() -> str:
    """The loaded library's version, e.g. "0.1.0"."""
    return _library().elpips_version().decode()


def _image(array: np.ndarray, linear: bool):
    """Describes `array` (H x W x 3|4) for the C API; returns the struct and the array it reads."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"expected a numpy array, got {type(array).__name__}")
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"expected an H x W x 3 or H x W x 4 array, got shape {array.shape}")
    fmt = _FORMATS.get((array.dtype, array.shape[2])) if array.dtype.isnative else None
    if fmt is None:
        raise TypeError(f"pixel type {array.dtype} is not supported; use uint8, uint16 or float32 (native byte order)")
    # Rows may be strided (a crop of a bigger image); pixels and channels must be packed.
    item = array.dtype.itemsize
    if array.strides[2] != item or array.strides[1] != item * array.shape[2] or array.strides[0] <= 0:
        array = np.ascontiguousarray(array)
    img = _Image(array.ctypes.data, array.shape[1], array.shape[0], array.strides[0], fmt,
                 _TRANSFER_LINEAR if linear else _TRANSFER_SRGB)
    return img, array


class Reference:
    """A reference prepared once for many candidates (common random numbers); see Context.prepare."""

    def __init__(self, handle: int, shape):
        self._handle = ctypes.c_void_p(handle)
        self.shape = shape

    def close(self):
        if self._handle:
            _library().elpips_reference_free(self._handle)
            self._handle = ctypes.c_void_p()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may already be gone
            pass


class Context:
    """A loaded metric. `samples=N` draws exactly N E-LPIPS samples (with the `sampler`,
    "control" (the default), "iid" or "stratified"); leaving it None samples
    adaptively (until the 95% half-width is below `abs_error` and `rel_error` x distance, at most
    `max_samples`). Linear float images (`linear=True`) are tone mapped: `exposure` stops, then
    `tonemap` ("clamp", "reinhard" or "none"), then sRGB encoding; RGBA images are read with
    `alpha` "ignore" or "over" a `background` (R, G, B). `backend` picks the CPU kernels:
    "auto" (OpenVINO where it measured faster, else MLAS), "mlas" or "openvino"; the `backend`
    attribute says which one ran. `tile_samples=True` makes E-LPIPS draws above 0.3 Mpx evaluate
    one tile each, weighted so that the expectation is the same, instead of their whole pair (the
    authors' estimator). `cheap_draws=K` gives each E-LPIPS sample K draws through a cheap
    stream (the network's first taps) as a control variate: the same expectation with less
    variance per unit of work, on pairs up to ~540 x 540 (iid or control samplers). Other arguments default to the C library's defaults
    (elpips_options_default)."""

    def __init__(self, metric: str = "elpips-vgg", *, seed: int = 0, samples: Optional[int] = None,
                 abs_error: Optional[float] = None, rel_error: Optional[float] = None,
                 max_samples: Optional[int] = None, min_samples: Optional[int] = None, sampler: str = "control",
                 threads: int = 0,
                 scale_levels: Optional[int] = None, max_pixels: Optional[int] = None, device: str = "cpu",
                 runtime_library: Optional[str] = None, model_dir: Optional[str] = None,
                 linear_weights: Optional[str] = None, exposure: float = 0.0, tonemap: str = "clamp",
                 alpha: str = "ignore", background=(0.0, 0.0, 0.0), backend: str = "auto", tile_samples: bool = False,
                 cheap_draws: int = 0):
        self._handle = ctypes.c_void_p()
        lib = _library()
        if metric not in _METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(_METRICS)}")
        if sampler not in _SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(_SAMPLERS)}")
        if device not in _DEVICES:
            raise ValueError(f"unknown device {device!r}; choose one of {', '.join(_DEVICES)}")
        if backend not in _BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(_BACKENDS)}")
        if tonemap not in _TONEMAPS:
            raise ValueError(f"unknown tonemap {tonemap!r}; choose one of {', '.join(_TONEMAPS)}")
        if alpha not in _ALPHAS:
            raise ValueError(f"unknown alpha policy {alpha!r}; choose one of {', '.join(_ALPHAS)}")
        if len(background) != 3:
            raise ValueError(f"background must be three numbers (R, G, B), not {background!r}")
        o = _Options()
        self._check(lib.elpips_options_default(ctypes.byref(o), ctypes.sizeof(o)))
        o.metric, o.device = _METRICS[metric], _DEVICES[device]
        o.seed, o.threads = _int("seed", seed, 0, _U64), _int("threads", threads, 0, _U32)
        o.sampler, o.backend = _SAMPLERS[sampler], _BACKENDS[backend]
        o.exposure, o.tonemap, o.alpha = _float32("exposure", exposure), _TONEMAPS[tonemap], _ALPHAS[alpha]
        o.background[:] = [_float32("background", c) for c in background]
        o.tile_samples = 1 if tile_samples else 0
        o.cheap_draws = _int("cheap_draws", cheap_draws, 0, _U32)
        if samples is not None:
            o.sampling, o.samples = _SAMPLING_FIXED, _int("samples", samples, 0, _MAX_SAMPLES)
        for name, value in (("abs_error", abs_error), ("rel_error", rel_error)):
            if value is not None:
                setattr(o, name, _real(name, value))
        # Counts the library judges itself (0 samples is its error to report) get the C field's
        # range, capped at the sample limit. max_pixels=0 would silently mean the 16 Mpx default
        # in C: None says that here, and 0 is refused.
        for name, value, lo, hi in (("max_samples", max_samples, 0, _MAX_SAMPLES), ("min_samples", min_samples, 0, _MAX_SAMPLES),
                                    ("scale_levels", scale_levels, 0, _U32), ("max_pixels", max_pixels, 1, _U64)):
            if value is not None:
                setattr(o, name, _int(name, value, lo, hi))
        # Keep the encoded strings alive until the call has copied them.
        paths = [_path(name, p) if p is not None else None
                 for name, p in (("runtime_library", runtime_library), ("model_dir", model_dir), ("linear_weights", linear_weights))]
        o.runtime_library, o.model_dir, o.linear_weights = paths
        message = ctypes.create_string_buffer(1024)
        status = lib.elpips_context_new_with_error(ctypes.byref(o), ctypes.byref(self._handle), message, len(message))
        if status != 0:
            raise ElpipsError(status, message.value.decode(errors="replace"))
        self.metric = metric

    @property
    def backend(self) -> str:
        """The CPU kernels this context runs on: "mlas" or "openvino" (what "auto" chose)."""
        out = ctypes.c_uint32()
        self._check(_library().elpips_context_backend(self._handle, ctypes.byref(out)))
        return {v: k for k, v in _BACKENDS.items()}[out.value]

    def _check(self, status: int):
        if status != 0:
            message = _library().elpips_last_error(self._handle) if self._handle else b""
            raise ElpipsError(status, (message or b"").decode(errors="replace"))

    def compare(self, reference: Union[np.ndarray, Reference], candidate: np.ndarray, *, linear: bool = False) -> Result:
        """Distance of `candidate` to `reference` (an array, or a Reference from `prepare`).
        `linear=True`: float pixels are linear light (encoded to sRGB first)."""
        lib, r = _library(), _Result()
        cand, keep_cand = _image(candidate, linear)
        if isinstance(reference, Reference):
            if not reference._handle:
                raise ValueError("the reference was closed")
            self._check(lib.elpips_compare_reference(self._handle, reference._handle, ctypes.byref(cand), ctypes.byref(r)))
        else:
            ref, keep_ref = _image(reference, linear)
            self._check(lib.elpips_compare(self._handle, ctypes.byref(ref), ctypes.byref(cand), ctypes.byref(r)))
            del keep_ref
        del keep_cand
        return _result(r)

    def compare_files(self, reference: Union[str, os.PathLike], candidate: Union[str, os.PathLike]) -> Result:
        """Distance between two PNG or JPEG files, as `elpips compare` computes it."""
        r = _Result()
        self._check(_library().elpips_compare_files(self._handle, _path("reference", reference), _path("candidate", candidate),
                                                    ctypes.byref(r)))
        return _result(r)

    def decide(self, reference, candidate, max_distance: float, *, error_rate: float = 0.05,
               max_samples: int = 200, min_samples: int = 8, linear: bool = False) -> Decision:
        """Is the distance of `candidate` from `reference` at most `max_distance`? Samples look by
        look and stops once the verdict is certain at `error_rate` (deterministic LPIPS decides at
        once); the context's metric, seed, sampler and input options apply. `reference` and
        `candidate`: both numpy arrays or both file paths."""
        gate = _Gate(_real("max_distance", max_distance), _real("error_rate", error_rate),
                     _int("max_samples", max_samples, 0, _MAX_SAMPLES), _int("min_samples", min_samples, 0, _MAX_SAMPLES))
        d, lib = _Decision(), _library()
        arrays = [isinstance(x, np.ndarray) for x in (reference, candidate)]
        if all(arrays):
            (ref, keep_ref), (cand, keep_cand) = _image(reference, linear), _image(candidate, linear)
            self._check(lib.elpips_decide(self._handle, ctypes.byref(ref), ctypes.byref(cand), ctypes.byref(gate), ctypes.byref(d)))
            del keep_ref, keep_cand
        elif any(arrays):
            raise TypeError("give reference and candidate both as file paths or both as numpy arrays")
        else:
            self._check(lib.elpips_decide_files(self._handle, _path("reference", reference), _path("candidate", candidate),
                                                ctypes.byref(gate), ctypes.byref(d)))
        return Decision(_VERDICTS.get(d.verdict, "undecided"), bool(d.estimate_below), _result(d.estimate),
                        d.lower, d.upper, int(d.looks), int(d.looks_planned))

    def prepare(self, reference: np.ndarray, *, linear: bool = False) -> Reference:
        """Prepares `reference` for many candidates: each sees the same draws per sample index."""
        img, keep = _image(reference, linear)
        handle = ctypes.c_void_p()
        self._check(_library().elpips_reference_new(self._handle, ctypes.byref(img), ctypes.byref(handle)))
        del keep
        return Reference(handle.value, reference.shape[:2])

    def close(self):
        if getattr(self, "_handle", None):
            _library().elpips_context_free(self._handle)
            self._handle = ctypes.c_void_p()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may already be gone
            pass
