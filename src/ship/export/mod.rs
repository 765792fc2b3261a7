//! `xfer export`: a bundle and its backbone(s) as one ONNX graph, for any ONNX
//! Runtime binding (Triton, onnxruntime-web, mobile, C#, Java):
//!
//! ```text
//! input [N, 3, S, S] ─► backbone 1 ─► pool ─┐
//!                   └─► backbone 2 ─► pool ─┴► concat = features [N, D] ─► standardise ─► Gemm (─► ReLU ─► Gemm)… ─► ÷ T ─► softmax = probabilities [N, C]
//! ```
//!
//! The backbones' graphs are copied node for node (their value, node and
//! initializer names prefixed with `<backbone>/`, the image input renamed
//! `input`); what xfer does outside ONNX Runtime — pooling the `features`
//! output (the manifest's `[output] pool`, `prefix_tokens`, `l2`), the
//! feature standardisation, the head's layers, the temperature and the
//! softmax — becomes ONNX nodes named `xfer/…`. Nodes a backbone computes
//! only for other outputs (the ImageNet logits) are left out. The input is
//! the image already preprocessed by the bundle's recipe, which is written
//! into the model's `metadata_props` (`xfer.preprocess`) with the class names
//! and the xfer version.
//!
//! The ONNX protobuf is read and written by [`proto`] (the wire format and
//! the few fields needed), so this needs no protobuf compiler. Several
//! backbones share the one input only when their preprocessing is the same;
//! otherwise export refuses and says why. Operators are not converted between
//! opsets: the backbones must share one, which the file keeps.

pub(crate) use crate::models::proto;

use std::collections::HashSet;
use std::path::Path;

use proto::{field, fields, Attr, Dim, Field, Writer};

use crate::error::{Error, Next, Result};
use crate::images::preprocess::{ChannelOrder, Recipe, ResizeMode};
use crate::models::zoo::{OutputSpec, Pool};
use crate::ship::bundle::Bundle;
use crate::ship::predict::ResolvedBackbone;

/// The exported graph's input.
pub const INPUT: &str = "input";
/// `[N, n_classes]`: the class probabilities `xfer predict` gives.
pub const PROBABILITIES: &str = "probabilities";
/// `[N, feature_dim]`: the pooled (and, with several backbones, concatenated)
/// features, before standardisation: what `xfer extract` stores.
pub const FEATURES: &str = "features";

/// The lowest ai.onnx opset the added nodes are written for (Slice with
/// inputs, Softmax on the last axis of a 2-D input).
pub(crate) const MIN_OPSET: i64 = 11;

#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// The ai.onnx opset the file must have (the backbones' opset: operators
    /// are not converted); `None` keeps the backbones' one.
    pub opset: Option<i64>,
}

/// One exported model.
#[derive(Debug, Clone)]
pub struct Exported {
    /// The serialised ModelProto.
    pub bytes: Vec<u8>,
    pub opset: i64,
    pub ir_version: u64,
    /// `[-1, 3, S, S]`, -1 the batch.
    pub input_shape: [i64; 4],
    /// The preprocessing that makes the input tensor from an image.
    pub recipe: Recipe,
    pub feature_dim: usize,
    pub n_classes: usize,
    /// Backbone nodes kept / left out (computing only other outputs).
    pub nodes_kept: usize,
    pub nodes_dropped: usize,
}

fn err(msg: impl Into<String>) -> Error {
    Error::Export {
        reason: msg.into(),
        next: None,
    }
}

/// How a model file's protobuf was found wrong.
fn bad_file(path: &Path, e: proto::WireError) -> Error {
    err(format!(
        "{} is not a readable ONNX model ({}); regenerate it with the tool its manifest names",
        path.display(),
        e.0
    ))
}

/// The preprocessing recipe in words: what an ONNX user must do to an image.
pub fn describe_input(recipe: &Recipe) -> String {
    let resize = match recipe.resize_mode {
        ResizeMode::ShorterSide => format!(
            "resize the shorter side to {} (aspect ratio kept)",
            recipe.resize
        ),
        ResizeMode::Square => format!("resize to {0}×{0}", recipe.resize),
    };
    let order = match recipe.channel_order {
        ChannelOrder::Rgb => "RGB",
        ChannelOrder::Bgr => "BGR",
    };
    format!(
        "float32 [N, 3, {c}, {c}] (NCHW, channels {order}): decode the image to 8-bit RGB (EXIF orientation applied, \
         transparency on white), {resize} with antialiased {interp} interpolation (as PIL), take the centred \
         {c}×{c} crop, then x = pixel × {scale} and (x − mean) / std per channel with mean {mean:?}, std {std:?}",
        c = recipe.crop,
        interp = format!("{:?}", recipe.interpolation).to_lowercase(),
        scale = recipe.pixel_scale,
        mean = recipe.mean,
        std = recipe.std,
    )
}

/// The parts of a backbone's ModelProto that export uses.
struct Model<'a> {
    ir_version: u64,
    opsets: Vec<(String, i64)>,
    graph: &'a [u8],
    functions: Vec<&'a [u8]>,
}

fn read_model(buf: &[u8]) -> proto::WireResult<Model<'_>> {
    use field::model as m;
    let mut model = Model {
        ir_version: 0,
        opsets: Vec::new(),
        graph: &[],
        functions: Vec::new(),
    };
    for f in fields(buf)? {
        match f.number {
            m::IR_VERSION => model.ir_version = f.varint()?,
            m::GRAPH => model.graph = f.bytes()?,
            m::OPSET_IMPORT => {
                let mut domain = String::new();
                let mut version = 0i64;
                for g in fields(f.bytes()?)? {
                    match g.number {
                        field::opset::DOMAIN => domain = g.string()?.to_owned(),
                        field::opset::VERSION => version = g.varint()? as i64,
                        _ => {}
                    }
                }
                if domain == "ai.onnx" {
                    domain.clear();
                }
                model.opsets.push((domain, version));
            }
            m::FUNCTIONS => model.functions.push(f.bytes()?),
            _ => {}
        }
    }
    if model.graph.is_empty() {
        return Err(proto::WireError("the model has no graph".into()));
    }
    Ok(model)
}

/// Renames every value of one backbone's graph: its image input becomes
/// [`INPUT`], every other name gets the backbone's prefix.
struct Renamer<'a> {
    input: &'a str,
    prefix: String,
}

impl Renamer<'_> {
    fn value(&self, name: &str) -> String {
        if name.is_empty() {
            String::new() // an omitted optional input
        } else if name == self.input {
            INPUT.to_owned()
        } else {
            format!("{}{name}", self.prefix)
        }
    }
}

/// A rewritten node with the values it reads and writes.
struct Node {
    bytes: Vec<u8>,
    inputs: Vec<String>,
    outputs: Vec<String>,
    has_subgraph: bool,
}

/// A rewritten graph, field by field.
#[derive(Default)]
struct Graph {
    nodes: Vec<Node>,
    /// (name, bytes): initializer, sparse_initializer (flag), input, output, value_info.
    initializers: Vec<(String, Vec<u8>, bool)>,
    inputs: Vec<(String, Vec<u8>)>,
    outputs: Vec<(String, Vec<u8>)>,
    value_info: Vec<(String, Vec<u8>)>,
    /// Other fields (quantization annotations, unknown ones), rewritten where they name values.
    other: Vec<Vec<u8>>,
    /// The graph's name and doc string (kept in subgraphs only).
    header: Vec<Vec<u8>>,
}

impl Graph {
    /// Reassembles the whole graph (for subgraphs, which are kept entire).
    fn to_bytes(&self) -> Vec<u8> {
        use field::graph as g;
        let mut w = Writer::new();
        for o in self.header.iter().chain(&self.other) {
            w.raw(o);
        }
        for n in &self.nodes {
            w.bytes(g::NODE, &n.bytes);
        }
        write_initializers(&mut w, &self.initializers);
        for (_, v) in &self.inputs {
            w.bytes(g::INPUT, v);
        }
        for (_, v) in &self.outputs {
            w.bytes(g::OUTPUT, v);
        }
        for (_, v) in &self.value_info {
            w.bytes(g::VALUE_INFO, v);
        }
        w.buf
    }
}

type Rewrite<T> = std::result::Result<T, String>;

fn wire(e: proto::WireError) -> String {
    e.0
}

/// Rewrites the named field (a string) with `f`, copies the others; returns the
/// new message and the name.
fn rename_field(buf: &[u8], number: u32, f: impl Fn(&str) -> String) -> Rewrite<(Vec<u8>, String)> {
    let mut w = Writer::new();
    let mut name = String::new();
    for x in fields(buf).map_err(wire)? {
        if x.number == number {
            name = f(x.string().map_err(wire)?);
            w.string(number, &name);
        } else {
            w.raw(x.raw);
        }
    }
    Ok((w.buf, name))
}

fn rewrite_tensor(buf: &[u8], r: &Renamer) -> Rewrite<(Vec<u8>, String)> {
    use field::tensor as t;
    for x in fields(buf).map_err(wire)? {
        let external = match x.number {
            t::DATA_LOCATION => x.varint().map_err(wire)? == 1,
            t::EXTERNAL_DATA => true,
            _ => false,
        };
        if external {
            // Inlined by `onnx_data::inline` before the graph is read.
            return Err(
                "a tensor still names external data after inlining; please report it".into(),
            );
        }
    }
    rename_field(buf, t::NAME, |n| r.value(n))
}

fn rewrite_attribute(buf: &[u8], r: &Renamer) -> Rewrite<(Vec<u8>, bool)> {
    use field::attribute as a;
    let mut w = Writer::new();
    let mut sub = false;
    for x in fields(buf).map_err(wire)? {
        match x.number {
            a::G | a::GRAPHS => {
                sub = true;
                w.bytes(
                    x.number,
                    &rewrite_graph(x.bytes().map_err(wire)?, r)?.to_bytes(),
                );
            }
            a::T | a::TENSORS => {
                w.bytes(x.number, &rewrite_tensor(x.bytes().map_err(wire)?, r)?.0);
            }
            _ => {
                w.raw(x.raw);
            }
        }
    }
    Ok((w.buf, sub))
}

fn rewrite_node(buf: &[u8], r: &Renamer) -> Rewrite<Node> {
    use field::node as n;
    let mut w = Writer::new();
    let mut node = Node {
        bytes: Vec::new(),
        inputs: Vec::new(),
        outputs: Vec::new(),
        has_subgraph: false,
    };
    for x in fields(buf).map_err(wire)? {
        match x.number {
            n::INPUT | n::OUTPUT => {
                let v = r.value(x.string().map_err(wire)?);
                w.string(x.number, &v);
                if x.number == n::INPUT {
                    node.inputs.push(v);
                } else {
                    node.outputs.push(v);
                }
            }
            n::NAME => {
                w.string(
                    n::NAME,
                    &format!("{}{}", r.prefix, x.string().map_err(wire)?),
                );
            }
            n::ATTRIBUTE => {
                let (b, sub) = rewrite_attribute(x.bytes().map_err(wire)?, r)?;
                node.has_subgraph |= sub;
                w.bytes(n::ATTRIBUTE, &b);
            }
            _ => {
                w.raw(x.raw);
            }
        }
    }
    node.bytes = w.buf;
    Ok(node)
}

fn rewrite_graph(buf: &[u8], r: &Renamer) -> Rewrite<Graph> {
    use field::graph as g;
    let mut graph = Graph::default();
    let value_info = |x: &Field| {
        rename_field(x.bytes().map_err(wire)?, field::value_info::NAME, |n| {
            r.value(n)
        })
    };
    for x in fields(buf).map_err(wire)? {
        match x.number {
            g::NODE => graph.nodes.push(rewrite_node(x.bytes().map_err(wire)?, r)?),
            g::INITIALIZER => {
                let (b, name) = rewrite_tensor(x.bytes().map_err(wire)?, r)?;
                graph.initializers.push((name, b, false));
            }
            g::SPARSE_INITIALIZER => {
                let mut w = Writer::new();
                let mut name = String::new();
                for y in fields(x.bytes().map_err(wire)?).map_err(wire)? {
                    match y.number {
                        field::sparse_tensor::VALUES | field::sparse_tensor::INDICES => {
                            let (b, n) = rewrite_tensor(y.bytes().map_err(wire)?, r)?;
                            if y.number == field::sparse_tensor::VALUES {
                                name = n;
                            }
                            w.bytes(y.number, &b);
                        }
                        _ => {
                            w.raw(y.raw);
                        }
                    }
                }
                graph.initializers.push((name, w.buf, true));
            }
            g::INPUT => {
                let (b, name) = value_info(&x)?;
                graph.inputs.push((name, b));
            }
            g::OUTPUT => {
                let (b, name) = value_info(&x)?;
                graph.outputs.push((name, b));
            }
            g::VALUE_INFO => {
                let (b, name) = value_info(&x)?;
                graph.value_info.push((name, b));
            }
            g::QUANTIZATION_ANNOTATION => {
                let (b, _) = rename_field(
                    x.bytes().map_err(wire)?,
                    field::tensor_annotation::TENSOR_NAME,
                    |n| r.value(n),
                )?;
                let mut w = Writer::new();
                w.bytes(g::QUANTIZATION_ANNOTATION, &b);
                graph.other.push(w.buf);
            }
            g::NAME | g::DOC_STRING => graph.header.push(x.raw.to_vec()),
            _ => graph.other.push(x.raw.to_vec()),
        }
    }
    Ok(graph)
}

/// Keeps only the nodes (and initializers, value infos, extra inputs) that
/// `wanted` depends on. Graphs are topologically sorted (ONNX requires it),
/// so one backward pass finds them; a graph with subgraphs (If, Loop, Scan),
/// whose nodes may read outer values implicitly, is kept entire.
fn prune(graph: &mut Graph, wanted: &str) -> usize {
    if graph.nodes.iter().any(|n| n.has_subgraph) {
        return 0;
    }
    let mut needed: HashSet<String> = HashSet::from([wanted.to_owned()]);
    let mut keep = vec![false; graph.nodes.len()];
    for (i, n) in graph.nodes.iter().enumerate().rev() {
        if n.outputs.iter().any(|o| needed.contains(o)) {
            keep[i] = true;
            needed.extend(n.inputs.iter().filter(|v| !v.is_empty()).cloned());
            needed.extend(n.outputs.iter().cloned());
        }
    }
    let before = graph.nodes.len();
    let mut k = keep.into_iter();
    graph.nodes.retain(|_| k.next().unwrap());
    graph.initializers.retain(|(n, _, _)| needed.contains(n));
    graph.value_info.retain(|(n, _)| needed.contains(n));
    graph.inputs.retain(|(n, _)| needed.contains(n));
    before - graph.nodes.len()
}

/// The nodes xfer adds, with their initializers.
struct Added {
    opset: i64,
    nodes: Vec<Vec<u8>>,
    initializers: Vec<Vec<u8>>,
}

impl Added {
    fn node(&mut self, op: &str, inputs: &[&str], output: &str, attrs: &[(&str, Attr)]) {
        self.nodes
            .push(proto::node(op, output, inputs, &[output], attrs));
    }

    fn init_i64(&mut self, name: &str, dims: &[usize], data: &[i64]) {
        self.initializers.push(proto::tensor_i64(name, dims, data));
    }

    fn init_f32(&mut self, name: &str, dims: &[usize], data: &[f32]) {
        self.initializers.push(proto::tensor_f32(name, dims, data));
    }

    /// ReduceMean / ReduceMax / ReduceL2 over `axes`: an attribute before
    /// opset 18, an input from 18 on.
    fn reduce(&mut self, op: &str, x: &str, axes: &[i64], keepdims: bool, out: &str) {
        let keep = ("keepdims", Attr::Int(keepdims as i64));
        if self.opset >= 18 {
            let axes_name = format!("{out}/axes");
            self.init_i64(&axes_name, &[axes.len()], axes);
            self.node(op, &[x, &axes_name], out, &[keep]);
        } else {
            self.node(op, &[x], out, &[("axes", Attr::Ints(axes.to_vec())), keep]);
        }
    }

    /// The pooling of a backbone's `features` output `x` into `[N, D]`, named
    /// `out`, exactly as xfer pools it:
    /// - `none`: the output as `[N, D]` (an `[N, D, 1, 1]` output flattened);
    /// - `avg` / `max`: `[N, C, H, W]` → the mean / maximum over H × W;
    /// - `cls`: `[N, T, D]` → token 0;
    /// - `mean`: `[N, T, D]` → the mean of tokens `prefix_tokens..T`;
    /// - `cls+mean`: `[cls, mean]` concatenated (2·D);
    /// - then with `l2`, each row divided by its L2 norm.
    fn pool(&mut self, spec: &OutputSpec, x: &str, out: &str) {
        let pooled = if spec.l2 {
            format!("{out}/unnormalised")
        } else {
            out.to_owned()
        };
        let p = pooled.as_str();
        match spec.pool {
            Pool::None => self.node("Flatten", &[x], p, &[("axis", Attr::Int(1))]),
            Pool::Avg => self.reduce("ReduceMean", x, &[2, 3], false, p),
            Pool::Max => self.reduce("ReduceMax", x, &[2, 3], false, p),
            Pool::Cls => self.cls(x, p),
            Pool::Mean => self.patch_mean(x, spec.prefix_tokens, p),
            Pool::ClsMean => {
                let (c, m) = (format!("{p}/cls"), format!("{p}/mean"));
                self.cls(x, &c);
                self.patch_mean(x, spec.prefix_tokens, &m);
                self.node("Concat", &[&c, &m], p, &[("axis", Attr::Int(1))]);
            }
        }
        if spec.l2 {
            // x / max(‖x‖₂, 1e-12), as `pool::pool` (and F.normalize) do.
            let (norm, eps, clamped) = (
                format!("{out}/norm"),
                format!("{out}/eps"),
                format!("{out}/norm_clamped"),
            );
            self.reduce("ReduceL2", p, &[1], true, &norm);
            self.init_f32(&eps, &[], &[1e-12]);
            self.node("Max", &[&norm, &eps], &clamped, &[]);
            self.node("Div", &[p, &clamped], out, &[]);
        }
    }

    fn cls(&mut self, x: &str, out: &str) {
        let index = format!("{out}/index");
        self.init_i64(&index, &[], &[0]); // a scalar: Gather drops the axis
        self.node("Gather", &[x, &index], out, &[("axis", Attr::Int(1))]);
    }

    fn patch_mean(&mut self, x: &str, prefix_tokens: usize, out: &str) {
        let (starts, ends, axes, patches) = (
            format!("{out}/starts"),
            format!("{out}/ends"),
            format!("{out}/axes1"),
            format!("{out}/patches"),
        );
        self.init_i64(&starts, &[1], &[prefix_tokens as i64]);
        self.init_i64(&ends, &[1], &[i64::MAX]);
        self.init_i64(&axes, &[1], &[1]);
        self.node("Slice", &[x, &starts, &ends, &axes], &patches, &[]);
        self.reduce("ReduceMean", &patches, &[1], false, out);
    }

    /// Standardisation, the head's layers (ReLU between them; dropout is the
    /// identity at inference), ÷ temperature, softmax: as
    /// [`Bundle::predict_proba`].
    fn head(&mut self, bundle: &Bundle, features: &str) {
        let mut x = features.to_owned();
        if let Some(s) = &bundle.standardize {
            let d = s.mean.len();
            self.init_f32(
                "xfer/standardize/mean",
                &[d],
                s.mean.as_slice().expect("contiguous"),
            );
            self.init_f32(
                "xfer/standardize/scale",
                &[d],
                s.scale.as_slice().expect("contiguous"),
            );
            self.node(
                "Sub",
                &[&x, "xfer/standardize/mean"],
                "xfer/standardize/centred",
                &[],
            );
            self.node(
                "Div",
                &["xfer/standardize/centred", "xfer/standardize/scale"],
                "xfer/standardize/out",
                &[],
            );
            x = "xfer/standardize/out".into();
        }
        let n_layers = bundle.mlp.layers.len();
        for (l, layer) in bundle.mlp.layers.iter().enumerate() {
            let (w, b) = (
                format!("xfer/layers.{l}.weight"),
                format!("xfer/layers.{l}.bias"),
            );
            let (o, i) = layer.weight.dim();
            let weight = layer.weight.as_standard_layout();
            self.init_f32(&w, &[o, i], weight.as_slice().expect("standard layout"));
            self.init_f32(&b, &[o], &layer.bias.to_vec());
            let y = format!("xfer/layers.{l}");
            self.node("Gemm", &[&x, &w, &b], &y, &[("transB", Attr::Int(1))]);
            x = y;
            if l + 1 < n_layers {
                let r = format!("xfer/layers.{l}.relu");
                self.node("Relu", &[&x], &r, &[]);
                x = r;
            }
        }
        self.init_f32("xfer/temperature", &[], &[bundle.meta.temperature]);
        self.node("Div", &[&x, "xfer/temperature"], "xfer/scaled_logits", &[]);
        self.node(
            "Softmax",
            &["xfer/scaled_logits"],
            PROBABILITIES,
            &[("axis", Attr::Int(1))],
        );
    }
}

fn recipe_json(r: &Recipe) -> String {
    serde_json::to_string(r).expect("a recipe serialises")
}

/// The ai.onnx opset of `model` and its other domains' versions.
fn default_opset(opsets: &[(String, i64)]) -> Option<i64> {
    opsets.iter().find(|(d, _)| d.is_empty()).map(|(_, v)| *v)
}

/// Composes the bundle's backbones (resolved against the zoo, their files
/// checked against their sha256) and head into one ONNX model.
pub fn export(
    bundle: &Bundle,
    backbones: &[ResolvedBackbone],
    opts: &ExportOptions,
) -> Result<Exported> {
    let first = backbones.first().ok_or_else(|| {
        err("the bundle names no backbone; train the head on features from `xfer extract`")
    })?;
    check_one_input(first, backbones)?;
    let files: Vec<Vec<u8>> = backbones.iter().map(read_backbone).collect::<Result<_>>()?;
    let models: Vec<Model> = files
        .iter()
        .zip(backbones)
        .map(|(f, b)| read_model(f).map_err(|e| bad_file(&b.manifest.onnx_path(), e)))
        .collect::<Result<_>>()?;
    let opsets = common_opsets(&models, backbones)?;
    let opset = check_opset(&opsets, first, backbones, opts)?;
    if models.iter().filter(|m| !m.functions.is_empty()).count() > 1 {
        return Err(err(
            "more than one backbone defines model-local ONNX functions, whose names could clash; inline them (onnx.inliner.inline_local_functions) and update the manifests",
        ));
    }
    let composed = compose(&models, backbones, bundle, opset)?;

    let recipe = first.recipe.clone();
    let about = About {
        bundle,
        backbones,
        recipe: &recipe,
        feature_dim: bundle.mlp.n_features(),
        n_classes: bundle.mlp.n_classes(),
    };
    let graph = write_graph(&about, &composed);
    let ir_version = models.iter().map(|m| m.ir_version).max().unwrap_or(0);
    let bytes = write_model(&about, &models, &opsets, ir_version, &graph)?;
    let crop = i64::from(recipe.crop);
    Ok(Exported {
        bytes,
        opset,
        ir_version,
        input_shape: [-1, 3, crop, crop],
        feature_dim: about.feature_dim,
        n_classes: about.n_classes,
        recipe,
        nodes_kept: composed.kept,
        nodes_dropped: composed.dropped,
    })
}

/// Refuses backbones that preprocess images differently: one input must feed them all.
fn check_one_input(first: &ResolvedBackbone, backbones: &[ResolvedBackbone]) -> Result<()> {
    for b in &backbones[1..] {
        if b.recipe != first.recipe
            || b.manifest.input.shape[1..] != first.manifest.input.shape[1..]
        {
            return Err(err(format!(
                "backbones {} and {} preprocess images differently ({} vs {}), so one ONNX input cannot feed both; \
                 export needs backbones with the same recipe (extract their features with the same --preset and \
                 train again), or deploy this bundle with `xfer package`, which preprocesses each backbone's way",
                first.manifest.name,
                b.manifest.name,
                recipe_json(&first.recipe),
                recipe_json(&b.recipe)
            )));
        }
    }
    Ok(())
}

/// A backbone's model file, checked against its sha256, with any external data inlined.
fn read_backbone(b: &ResolvedBackbone) -> Result<Vec<u8>> {
    b.manifest.verify_file()?;
    let path = b.manifest.onnx_path();
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    // Weights in external data files are moved into the one file.
    crate::models::onnx_data::inline(&path, &bytes)
}

/// The backbones' opsets, one version a domain (operators are not converted).
fn common_opsets(models: &[Model], backbones: &[ResolvedBackbone]) -> Result<Vec<(String, i64)>> {
    let mut opsets: Vec<(String, i64)> = Vec::new();
    for (m, b) in models.iter().zip(backbones) {
        for (domain, v) in &m.opsets {
            match opsets.iter().find(|(d, _)| d == domain) {
                Some((_, w)) if w != v => {
                    return Err(err(format!(
                        "the backbones use different versions of opset {:?} ({w} and {v} in {}); ONNX operators are not converted between opsets: export the backbones at one opset (their generators' --opset), then train again",
                        if domain.is_empty() { "ai.onnx" } else { domain },
                        b.manifest.name
                    )))
                }
                Some(_) => {}
                None => opsets.push((domain.clone(), *v)),
            }
        }
    }
    Ok(opsets)
}

/// The ai.onnx opset of the file: at least [`MIN_OPSET`], and the one `--opset` asks if it does.
fn check_opset(
    opsets: &[(String, i64)],
    first: &ResolvedBackbone,
    backbones: &[ResolvedBackbone],
    opts: &ExportOptions,
) -> Result<i64> {
    let opset = default_opset(opsets).unwrap_or(0);
    if opset < MIN_OPSET {
        return Err(err(format!(
            "{} is ai.onnx opset {opset}; export writes nodes for opset {MIN_OPSET} or newer: export the backbone at opset ≥ {MIN_OPSET}",
            first.manifest.name
        )));
    }
    if let Some(want) = opts.opset {
        if want != opset {
            return Err(Error::Export {
                reason: format!(
                    "opset {want} was asked, but the backbone graph{} opset {opset}, and xfer does not convert operators between opsets",
                    if backbones.len() > 1 { "s are" } else { " is" }
                ),
                next: Some(Next::KeepOpset {
                    have: opset,
                    want,
                }),
            });
        }
    }
    Ok(opset)
}

/// The backbone graphs and the nodes xfer adds after them, with the count of
/// backbone nodes kept and left out.
struct Composed {
    graphs: Vec<Graph>,
    added: Added,
    kept: usize,
    dropped: usize,
}

/// Renames the backbone graphs, prunes them to what their features need, and
/// adds the pooling, the concatenation and the head.
fn compose(
    models: &[Model],
    backbones: &[ResolvedBackbone],
    bundle: &Bundle,
    opset: i64,
) -> Result<Composed> {
    let mut names: HashSet<&str> = HashSet::new();
    let mut c = Composed {
        graphs: Vec::new(),
        added: Added {
            opset,
            nodes: Vec::new(),
            initializers: Vec::new(),
        },
        kept: 0,
        dropped: 0,
    };
    let mut pooled = Vec::new();
    for (i, (m, b)) in models.iter().zip(backbones).enumerate() {
        let name = b.manifest.name.as_str();
        let prefix = if names.insert(name) {
            format!("{name}/")
        } else {
            format!("{name}.{i}/")
        };
        let r = Renamer {
            input: &b.manifest.input.name,
            prefix,
        };
        let (mut graph, features) = backbone_graph(m, b, &r)?;
        c.dropped += prune(&mut graph, &features);
        c.kept += graph.nodes.len();
        let out = if backbones.len() == 1 {
            FEATURES.to_owned()
        } else {
            format!("xfer/{}pooled", r.prefix)
        };
        c.added.pool(&b.manifest.output, &features, &out);
        pooled.push(out);
        c.graphs.push(graph);
    }
    if pooled.len() > 1 {
        let refs: Vec<&str> = pooled.iter().map(String::as_str).collect();
        c.added
            .node("Concat", &refs, FEATURES, &[("axis", Attr::Int(1))]);
    }
    c.added.head(bundle, FEATURES);
    Ok(c)
}

/// One backbone's graph renamed by `r`, checked for the manifest's input and
/// features output, less its input and outputs; with the features' new name.
fn backbone_graph(m: &Model, b: &ResolvedBackbone, r: &Renamer) -> Result<(Graph, String)> {
    let mut graph = rewrite_graph(m.graph, r).map_err(|reason| {
        err(format!(
            "cannot use {} ({reason}); regenerate it with {}",
            b.manifest.onnx_path().display(),
            b.manifest.generator_hint()
        ))
    })?;
    if !graph.inputs.iter().any(|(n, _)| n == INPUT) {
        return Err(err(format!(
            "{} has no input `{}`, which its manifest names; fix the manifest's [input] name",
            b.manifest.onnx_path().display(),
            b.manifest.input.name
        )));
    }
    graph.inputs.retain(|(n, _)| n != INPUT);
    let features = r.value(&b.manifest.output.features);
    if !graph.nodes.iter().any(|n| n.outputs.contains(&features)) {
        return Err(err(format!(
            "{} computes no value `{}`, the features output its manifest names; fix the manifest's [output] features",
            b.manifest.onnx_path().display(),
            b.manifest.output.features
        )));
    }
    graph.outputs.clear();
    Ok((graph, features))
}

/// What the exported model's doc strings and metadata describe.
struct About<'a> {
    bundle: &'a Bundle,
    backbones: &'a [ResolvedBackbone],
    recipe: &'a Recipe,
    feature_dim: usize,
    n_classes: usize,
}

/// Writes initializers, each as a dense or a sparse one.
fn write_initializers(w: &mut Writer, initializers: &[(String, Vec<u8>, bool)]) {
    use field::graph as g;
    for (_, t, sparse) in initializers {
        w.bytes(
            if *sparse {
                g::SPARSE_INITIALIZER
            } else {
                g::INITIALIZER
            },
            t,
        );
    }
}

/// The one GraphProto: the backbones' nodes then xfer's, one input, the two outputs.
fn write_graph(about: &About, c: &Composed) -> Vec<u8> {
    use field::graph as g;
    let (feature_dim, n_classes) = (about.feature_dim, about.n_classes);
    let crop = i64::from(about.recipe.crop);
    let batch = || Dim::Param("N".into());
    let mut gw = Writer::new();
    gw.string(g::NAME, "xfer");
    gw.string(
        g::DOC_STRING,
        &format!(
            "xfer {} export of a {} head on {}. Input `{INPUT}`: {}. Outputs: `{PROBABILITIES}` [N, {n_classes}] (softmax over the classes of metadata xfer.class_names), `{FEATURES}` [N, {feature_dim}] (the pooled backbone features).",
            crate::VERSION,
            about.bundle.meta.kind,
            about.backbones.iter().map(|b| b.manifest.name.as_str()).collect::<Vec<_>>().join(" + "),
            describe_input(about.recipe)
        ),
    );
    for graph in &c.graphs {
        for n in &graph.nodes {
            gw.bytes(g::NODE, &n.bytes);
        }
    }
    for n in &c.added.nodes {
        gw.bytes(g::NODE, n);
    }
    for graph in &c.graphs {
        write_initializers(&mut gw, &graph.initializers);
    }
    for t in &c.added.initializers {
        gw.bytes(g::INITIALIZER, t);
    }
    gw.bytes(
        g::INPUT,
        &proto::value_info_f32(
            INPUT,
            &[batch(), Dim::Value(3), Dim::Value(crop), Dim::Value(crop)],
        ),
    );
    for graph in &c.graphs {
        for (_, v) in &graph.inputs {
            gw.bytes(g::INPUT, v);
        }
    }
    gw.bytes(
        g::OUTPUT,
        &proto::value_info_f32(PROBABILITIES, &[batch(), Dim::Value(n_classes as i64)]),
    );
    gw.bytes(
        g::OUTPUT,
        &proto::value_info_f32(FEATURES, &[batch(), Dim::Value(feature_dim as i64)]),
    );
    for graph in &c.graphs {
        for (_, v) in &graph.value_info {
            gw.bytes(g::VALUE_INFO, v);
        }
        for o in &graph.other {
            gw.raw(o);
        }
    }
    gw.buf
}

/// The ModelProto around `graph`: versions, opsets, metadata, the backbones'
/// functions; refused over protobuf's 2 GiB.
fn write_model(
    about: &About,
    models: &[Model],
    opsets: &[(String, i64)],
    ir_version: u64,
    graph: &[u8],
) -> Result<Vec<u8>> {
    use field::model as mf;
    let mut w = Writer::new();
    w.varint(mf::IR_VERSION, ir_version)
        .string(mf::PRODUCER_NAME, "xfer")
        .string(mf::PRODUCER_VERSION, crate::VERSION);
    for (domain, v) in opsets {
        let mut o = Writer::new();
        o.string(field::opset::DOMAIN, domain)
            .int64(field::opset::VERSION, *v);
        w.bytes(mf::OPSET_IMPORT, &o.buf);
    }
    w.string(
        mf::DOC_STRING,
        "Made by `xfer export`: backbone(s), pooling, feature standardisation, head, temperature and softmax in one graph. See metadata_props xfer.*.",
    );
    w.bytes(mf::GRAPH, graph);
    for (k, v) in metadata(about) {
        w.bytes(mf::METADATA_PROPS, &proto::entry(k, &v));
    }
    for m in models {
        for f in &m.functions {
            w.bytes(mf::FUNCTIONS, f);
        }
    }
    if w.buf.len() > i32::MAX as usize {
        return Err(err(format!(
            "the exported model would be {} bytes, over protobuf's 2 GiB limit for one file; export a smaller backbone",
            w.buf.len()
        )));
    }
    Ok(w.buf)
}

/// The `xfer.*` metadata_props: version, input, recipe, classes, head, backbones, outputs.
fn metadata(about: &About) -> [(&'static str, String); 9] {
    let (bundle, recipe) = (about.bundle, about.recipe);
    let (feature_dim, n_classes) = (about.feature_dim, about.n_classes);
    let meta_backbones: Vec<serde_json::Value> = about
        .backbones
        .iter()
        .map(|b| {
            serde_json::json!({
                "name": b.manifest.name,
                "model_sha256": b.manifest.sha256,
                "feature_dim": b.manifest.output.feature_dim,
                "pool": b.manifest.output.pool,
                "prefix_tokens": b.manifest.output.prefix_tokens,
                "l2": b.manifest.output.l2,
            })
        })
        .collect();
    let decode: Vec<&str> = bundle
        .meta
        .backbones
        .iter()
        .map(|b| b.decode.as_str())
        .filter(|d| !d.is_empty())
        .collect();
    [
        ("xfer.version", crate::VERSION.to_owned()),
        ("xfer.input", describe_input(recipe)),
        ("xfer.preprocess", recipe_json(recipe)),
        ("xfer.decode", decode.first().copied().unwrap_or("").to_owned()),
        (
            "xfer.class_names",
            serde_json::to_string(&bundle.meta.class_names).expect("strings serialise"),
        ),
        ("xfer.head", bundle.meta.kind.to_string()),
        ("xfer.temperature", bundle.meta.temperature.to_string()),
        (
            "xfer.backbones",
            serde_json::to_string(&meta_backbones).expect("json serialises"),
        ),
        (
            "xfer.outputs",
            format!("{PROBABILITIES}: [N, {n_classes}] class probabilities; {FEATURES}: [N, {feature_dim}] pooled features before standardisation"),
        ),
    ]
}
