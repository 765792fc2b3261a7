//! Weights outside an `.onnx` file (ONNX "external data"): which files a
//! model's tensors live in, the one sha256 that covers the graph and all of
//! them, and a copy of the model with them inlined.
//!
//! A tensor with `data_location = EXTERNAL` names its file in
//! `external_data` (`location`, relative to the model's folder, with an
//! optional `offset` and `length`). ONNX Runtime reads them from there when
//! it loads the model from its path. torch ≥ 2.9's exporter writes them by
//! default.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::models::proto::{field, fields, WireError, WireResult, Writer};

/// ONNX's `TensorProto.DataLocation.EXTERNAL`.
const EXTERNAL: u64 = 1;
/// protobuf's limit on one serialised message: a model with its weights
/// inlined must stay under it.
pub(crate) const PROTOBUF_LIMIT: u64 = (1 << 31) - 1;

/// Field numbers not in [`field`]: sparse tensors in attributes, functions'
/// nodes, external data entries.
mod more {
    pub(crate) const ATTR_SPARSE_TENSOR: u32 = 22;
    pub(crate) const ATTR_SPARSE_TENSORS: u32 = 23;
    pub(crate) const FUNCTION_NODE: u32 = 7;
    pub(crate) const ENTRY_KEY: u32 = 1;
    pub(crate) const ENTRY_VALUE: u32 = 2;
}

/// One tensor's external data: its file and byte range.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Location {
    file: String,
    offset: u64,
    length: Option<u64>,
}

fn bad(path: &Path, e: WireError) -> Error {
    Error::Manifest {
        path: path.to_owned(),
        reason: format!("not a valid ONNX model ({}); export it again", e.0),
    }
}

/// The external data of one TensorProto, if it has any.
fn tensor_location(buf: &[u8]) -> WireResult<Option<Location>> {
    use field::tensor as t;
    let (mut external, mut loc) = (
        false,
        Location {
            file: String::new(),
            offset: 0,
            length: None,
        },
    );
    for x in fields(buf)? {
        match x.number {
            t::DATA_LOCATION => external = x.varint()? == EXTERNAL,
            t::EXTERNAL_DATA => {
                let (mut key, mut value) = ("", "");
                for e in fields(x.bytes()?)? {
                    match e.number {
                        more::ENTRY_KEY => key = e.string()?,
                        more::ENTRY_VALUE => value = e.string()?,
                        _ => {}
                    }
                }
                let num = || {
                    value.parse::<u64>().map_err(|_| {
                        WireError(format!("external data {key} `{value}` is not a number"))
                    })
                };
                match key {
                    "location" => loc.file = value.to_owned(),
                    "offset" => loc.offset = num()?,
                    "length" => loc.length = Some(num()?),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    if !external {
        return Ok(None);
    }
    if loc.file.is_empty() {
        return Err(WireError(
            "a tensor's external data names no location".into(),
        ));
    }
    Ok(Some(loc))
}

/// A tensor visitor: its new bytes, or `None` to keep it.
type OnTensor<'a> = dyn FnMut(&[u8]) -> Result<Option<Vec<u8>>> + 'a;

/// Calls `on_tensor` on every TensorProto of the model that can hold weights
/// (initializers, sparse initializers, node attributes, subgraphs, local
/// functions), with a rewriter: `on_tensor` returns the tensor's new bytes,
/// or `None` to keep it. Returns the rewritten model.
fn walk_model(buf: &[u8], on_tensor: &mut OnTensor<'_>) -> Result<Vec<u8>> {
    fn rewrite(
        buf: &[u8],
        children: &dyn Fn(u32) -> Option<Kind>,
        on_tensor: &mut OnTensor<'_>,
    ) -> Result<Option<Vec<u8>>> {
        let mut out = Writer::new();
        let mut changed = false;
        for x in fields(buf).map_err(wire_err)? {
            let new = match children(x.number) {
                Some(kind) => kind.rewrite(x.bytes().map_err(wire_err)?, on_tensor)?,
                None => None,
            };
            match new {
                Some(bytes) => {
                    changed = true;
                    out.bytes(x.number, &bytes);
                }
                None => {
                    out.raw(x.raw);
                }
            }
        }
        Ok(changed.then_some(out.buf))
    }
    #[derive(Clone, Copy)]
    enum Kind {
        Graph,
        Node,
        Attribute,
        Tensor,
        Sparse,
        Function,
    }
    impl Kind {
        fn rewrite(self, buf: &[u8], on_tensor: &mut OnTensor<'_>) -> Result<Option<Vec<u8>>> {
            use field::{attribute as a, graph as g, node as n, sparse_tensor as s};
            match self {
                Kind::Tensor => on_tensor(buf),
                Kind::Graph => rewrite(
                    buf,
                    &|f| match f {
                        g::NODE => Some(Kind::Node),
                        g::INITIALIZER => Some(Kind::Tensor),
                        g::SPARSE_INITIALIZER => Some(Kind::Sparse),
                        _ => None,
                    },
                    on_tensor,
                ),
                Kind::Node => rewrite(
                    buf,
                    &|f| (f == n::ATTRIBUTE).then_some(Kind::Attribute),
                    on_tensor,
                ),
                Kind::Function => rewrite(
                    buf,
                    &|f| (f == more::FUNCTION_NODE).then_some(Kind::Node),
                    on_tensor,
                ),
                Kind::Attribute => rewrite(
                    buf,
                    &|f| match f {
                        a::T | a::TENSORS => Some(Kind::Tensor),
                        a::G | a::GRAPHS => Some(Kind::Graph),
                        more::ATTR_SPARSE_TENSOR | more::ATTR_SPARSE_TENSORS => Some(Kind::Sparse),
                        _ => None,
                    },
                    on_tensor,
                ),
                Kind::Sparse => rewrite(
                    buf,
                    &|f| (f == s::VALUES || f == s::INDICES).then_some(Kind::Tensor),
                    on_tensor,
                ),
            }
        }
    }
    use field::model as m;
    let model = rewrite(
        buf,
        &|f| match f {
            m::GRAPH => Some(Kind::Graph),
            m::FUNCTIONS => Some(Kind::Function),
            _ => None,
        },
        on_tensor,
    )?;
    Ok(model.unwrap_or_else(|| buf.to_vec()))
}

/// A wire error inside the walk; the caller names the file.
fn wire_err(e: WireError) -> Error {
    Error::Wire(e.0)
}

/// Every tensor's external data in `model` (the bytes of an `.onnx` file).
fn locations(model: &[u8]) -> Result<Vec<Location>> {
    let mut found = Vec::new();
    walk_model(model, &mut |t| {
        if let Some(loc) = tensor_location(t).map_err(wire_err)? {
            found.push(loc);
        }
        Ok(None)
    })?;
    Ok(found)
}

/// Refuses a location that is not a plain relative path inside the model's
/// folder (absolute, `..`), as ONNX's checker does.
fn check_location(model_path: &Path, file: &str) -> Result<()> {
    let p = Path::new(file);
    if p.is_absolute()
        || p.components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(Error::Manifest {
            path: model_path.to_owned(),
            reason: format!(
                "its weights name the external data file `{file}`, which is not a path inside the model's folder; \
                 save the model again with its weights inside (onnx.save_model(model, path, save_as_external_data=False))"
            ),
        });
    }
    Ok(())
}

fn with_path(path: &Path) -> impl Fn(Error) -> Error + '_ {
    move |e| match e {
        Error::Wire(reason) => bad(path, WireError(reason)),
        other => other,
    }
}

/// The external data files `model` (read from `model_path`) references,
/// relative to its folder, sorted, each once.
pub fn external_files(model_path: &Path, model: &[u8]) -> Result<Vec<String>> {
    let files: BTreeSet<String> = locations(model)
        .map_err(with_path(model_path))?
        .into_iter()
        .map(|l| l.file)
        .collect();
    for f in &files {
        check_location(model_path, f)?;
    }
    Ok(files.into_iter().collect())
}

/// The sha256 of a model: of the `.onnx` file alone when it holds all its
/// weights (as before external data was supported, so existing manifests
/// stay valid); otherwise of the file followed, for each external data file
/// in sorted order, by its name, a NUL, its length as 8 little-endian bytes
/// and its bytes. A changed weight in any file changes it.
pub fn model_sha256(path: &Path) -> Result<String> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    hasher.update(&bytes);
    let dir = path.parent().unwrap_or(Path::new("."));
    for file in external_files(path, &bytes)? {
        let data_path = dir.join(&file);
        let f = fs::File::open(&data_path).map_err(|e| missing_data(path, &data_path, e))?;
        let len = f.metadata().map_err(|e| Error::io(&data_path, e))?.len();
        hasher.update(file.as_bytes());
        hasher.update([0]);
        hasher.update(len.to_le_bytes());
        crate::util::digest::update_from(&mut hasher, f).map_err(|e| Error::io(&data_path, e))?;
    }
    Ok(format!("{:x}", hasher.finalize()))
}

fn missing_data(model: &Path, data: &Path, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::Manifest {
            path: model.to_owned(),
            reason: format!(
                "its weights are in {}, which is missing; put that file next to the model (it was written with it)",
                data.display()
            ),
        }
    } else {
        Error::io(data, e)
    }
}

/// `model` (read from `model_path`) with every external tensor's bytes moved
/// into its `raw_data`: one self-contained model. Refused, saying what to do,
/// when the result would pass protobuf's 2 GB limit.
pub(crate) fn inline(model_path: &Path, model: &[u8]) -> Result<Vec<u8>> {
    let dir = model_path.parent().unwrap_or(Path::new("."));
    let files = external_files(model_path, model)?;
    if files.is_empty() {
        return Ok(model.to_vec());
    }
    let mut total = model.len() as u64;
    for f in &files {
        let p = dir.join(f);
        total += fs::metadata(&p)
            .map_err(|e| missing_data(model_path, &p, e))?
            .len();
    }
    if total > PROTOBUF_LIMIT {
        return Err(Error::Manifest {
            path: model_path.to_owned(),
            reason: format!(
                "its weights are in external data files ({}) and with them inlined it would be {:.2} GB, over \
                 protobuf's 2 GB limit on one ONNX file; export a smaller backbone, or deploy with `xfer package`, \
                 which carries the data files",
                files.join(", "),
                total as f64 / 1e9
            ),
        });
    }
    let out = walk_model(model, &mut |t| {
        let Some(loc) = tensor_location(t).map_err(wire_err)? else {
            return Ok(None);
        };
        let p = dir.join(&loc.file);
        let mut f = fs::File::open(&p).map_err(|e| missing_data(model_path, &p, e))?;
        let size = f.metadata().map_err(|e| Error::io(&p, e))?.len();
        let length = loc.length.unwrap_or(size.saturating_sub(loc.offset));
        if loc.offset.checked_add(length).is_none_or(|end| end > size) {
            return Err(Error::Manifest {
                path: model_path.to_owned(),
                reason: format!(
                    "a tensor's external data ({} bytes at {} of {}) lies past that file's end ({size} bytes); export the model again",
                    length, loc.offset, loc.file
                ),
            });
        }
        let mut data = vec![0u8; length as usize];
        f.seek(SeekFrom::Start(loc.offset)).map_err(|e| Error::io(&p, e))?;
        f.read_exact(&mut data).map_err(|e| Error::io(&p, e))?;
        let mut w = Writer::new();
        for x in fields(t).map_err(wire_err)? {
            use field::tensor as tf;
            if x.number != tf::EXTERNAL_DATA && x.number != tf::DATA_LOCATION && x.number != tf::RAW_DATA {
                w.raw(x.raw);
            }
        }
        w.bytes(field::tensor::RAW_DATA, &data);
        Ok(Some(w.buf))
    })
    .map_err(with_path(model_path))?;
    Ok(out)
}
