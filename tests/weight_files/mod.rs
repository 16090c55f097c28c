//! Linear-weights files built in the test (no binaries committed): safetensors files, and the
//! hostile pickle-based files of weights/test_convert.py, each of which would run `touch MARKER`
//! if something unpickled it. Shared by tests/hostile_weights.rs and tests/bad_inputs.rs.
#![allow(dead_code)]

use std::path::Path;

/// A safetensors file with the given tensors (name, dtype, shape, raw data), in order.
pub fn safetensors(tensors: &[(&str, &str, &[usize], Vec<u8>)]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, dtype, shape, bytes) in tensors {
        let start = data.len();
        data.extend_from_slice(bytes);
        header.insert(name.to_string(), serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [start, data.len()]}));
    }
    let mut h = serde_json::Value::Object(header).to_string().into_bytes();
    h.resize(h.len().div_ceil(8) * 8, b' ');
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(data);
    out
}

pub fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A protocol-2 pickle calling `module.name(*args)` (GLOBAL, a tuple of strings, REDUCE).
pub fn hostile_pickle(module: &str, name: &str, args: &[&str]) -> Vec<u8> {
    let mut p = b"\x80\x02c".to_vec();
    p.extend(format!("{module}\n{name}\n(").bytes());
    for a in args {
        p.push(b'X');
        p.extend((a.len() as u32).to_le_bytes());
        p.extend(a.bytes());
    }
    p.extend(b"tR.");
    p
}

/// A 0-d object-array `.npy` (what `np.save` writes for a dict) holding `payload`.
pub fn npy_with_payload(payload: &[u8]) -> Vec<u8> {
    let mut header = "{'descr': '|O', 'fortran_order': False, 'shape': (), }".to_string();
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.bytes());
    out.extend(payload);
    out
}

/// A zip archive of stored (uncompressed) members, as `torch.save` writes them.
pub fn zip_stored(members: &[(&str, &[u8])]) -> Vec<u8> {
    let (mut out, mut central) = (Vec::new(), Vec::new());
    for (name, data) in members {
        let offset = out.len() as u32;
        let crc = crate::common::crc32(data);
        let common = |v: &mut Vec<u8>| {
            v.extend([20, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // version, flags, stored, time, date
            v.extend(crc.to_le_bytes());
            v.extend((data.len() as u32).to_le_bytes());
            v.extend((data.len() as u32).to_le_bytes());
            v.extend((name.len() as u16).to_le_bytes());
            v.extend([0, 0]); // extra length
        };
        out.extend(b"PK\x03\x04");
        common(&mut out);
        out.extend(name.bytes());
        out.extend(*data);
        central.extend(b"PK\x01\x02\x14\x00");
        common(&mut central);
        central.extend([0; 8]); // comment length, disk, internal and external attributes
        central.extend([0; 2]);
        central.extend(offset.to_le_bytes());
        central.extend(name.bytes());
    }
    let start = out.len() as u32;
    out.extend(&central);
    out.extend(b"PK\x05\x06\x00\x00\x00\x00");
    out.extend((members.len() as u16).to_le_bytes());
    out.extend((members.len() as u16).to_le_bytes());
    out.extend((central.len() as u32).to_le_bytes());
    out.extend(start.to_le_bytes());
    out.extend([0, 0]);
    out
}


/// The hostile files (name, bytes, what the refusal calls it), each touching `marker` if run.
pub fn hostile_files(marker: &Path) -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let shell = format!("touch {}", marker.display());
    let system = hostile_pickle("posix", "system", &[&shell]);
    let exec = format!("import os; os.system({shell:?})");
    let runstring = hostile_pickle("numpy.testing._private.utils", "runstring", &[&exec]);
    vec![
        ("object.npy", npy_with_payload(&system), "a NumPy .npy file"),
        (
            "legacy.pth",
            system.clone(),
            "a pickle (legacy PyTorch .pth) file",
        ),
        (
            "zip.pth",
            zip_stored(&[("archive/data.pkl", &system), ("archive/version", b"3\n")]),
            "a zip (PyTorch .pth) file",
        ),
        (
            "numpy-runstring.npy",
            npy_with_payload(&runstring),
            "a NumPy .npy file",
        ),
        (
            "numpy-runstring.pkl",
            runstring.clone(),
            "a pickle (legacy PyTorch .pth) file",
        ),
    ]
}
