//! The protobuf wire format, as far as ONNX files need it: reading a message
//! field by field (unknown fields are copied through byte for byte) and writing
//! the few ONNX messages `xfer export` creates; [`crate::models::onnx_data`] reads
//! external data references with it. No schema compiler: the field numbers are
//! those of `onnx/onnx.proto` (ONNX 1.17), named in [`field`].

/// A protobuf wire-format error: the file is not a valid ONNX protobuf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WireError(pub(crate) String);

pub(crate) type WireResult<T> = std::result::Result<T, WireError>;

/// One field's value, as read from the wire. The fixed-width values are read
/// whole (only the tests look at them: no field xfer reads is fixed-width).
#[derive(Debug, Clone, Copy)]
#[allow(dead_code)]
pub(crate) enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// One field: its number, its value and its raw bytes (key included), for
/// copying it unchanged.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field<'a> {
    pub(crate) number: u32,
    pub(crate) value: Value<'a>,
    pub(crate) raw: &'a [u8],
}

impl<'a> Field<'a> {
    pub(crate) fn bytes(&self) -> WireResult<&'a [u8]> {
        match self.value {
            Value::Bytes(b) => Ok(b),
            _ => Err(WireError(format!(
                "field {} is not length-delimited",
                self.number
            ))),
        }
    }

    pub(crate) fn string(&self) -> WireResult<&'a str> {
        std::str::from_utf8(self.bytes()?)
            .map_err(|_| WireError(format!("field {} is not UTF-8", self.number)))
    }

    pub(crate) fn varint(&self) -> WireResult<u64> {
        match self.value {
            Value::Varint(v) => Ok(v),
            _ => Err(WireError(format!("field {} is not a varint", self.number))),
        }
    }
}

fn read_varint(buf: &[u8], pos: &mut usize) -> WireResult<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf
            .get(*pos)
            .ok_or_else(|| WireError("truncated varint".into()))?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(WireError("varint longer than 10 bytes".into()))
}

/// The fields of one message, in order.
pub(crate) fn fields(buf: &[u8]) -> WireResult<Vec<Field<'_>>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let start = pos;
        let key = read_varint(buf, &mut pos)?;
        let number = u32::try_from(key >> 3).map_err(|_| WireError("field number".into()))?;
        let take = |pos: &mut usize, n: usize| -> WireResult<&[u8]> {
            let end = pos
                .checked_add(n)
                .filter(|&e| e <= buf.len())
                .ok_or_else(|| WireError(format!("field {number} runs past the end")))?;
            let s = &buf[*pos..end];
            *pos = end;
            Ok(s)
        };
        let value = match key & 7 {
            0 => Value::Varint(read_varint(buf, &mut pos)?),
            1 => Value::Fixed64(u64::from_le_bytes(take(&mut pos, 8)?.try_into().unwrap())),
            2 => {
                let n = read_varint(buf, &mut pos)?;
                let n = usize::try_from(n).map_err(|_| WireError("length".into()))?;
                Value::Bytes(take(&mut pos, n)?)
            }
            5 => Value::Fixed32(u32::from_le_bytes(take(&mut pos, 4)?.try_into().unwrap())),
            w => {
                return Err(WireError(format!(
                    "field {number} has wire type {w} (groups are not used by ONNX)"
                )))
            }
        };
        out.push(Field {
            number,
            value,
            raw: &buf[start..pos],
        });
    }
    Ok(out)
}

/// Field numbers of the ONNX messages xfer reads or writes (onnx.proto).
pub(crate) mod field {
    pub(crate) mod model {
        pub(crate) const IR_VERSION: u32 = 1;
        pub(crate) const PRODUCER_NAME: u32 = 2;
        pub(crate) const PRODUCER_VERSION: u32 = 3;
        pub(crate) const DOC_STRING: u32 = 6;
        pub(crate) const GRAPH: u32 = 7;
        pub(crate) const OPSET_IMPORT: u32 = 8;
        pub(crate) const METADATA_PROPS: u32 = 14;
        pub(crate) const FUNCTIONS: u32 = 25;
    }
    pub(crate) mod opset {
        pub(crate) const DOMAIN: u32 = 1;
        pub(crate) const VERSION: u32 = 2;
    }
    pub(crate) mod graph {
        pub(crate) const NODE: u32 = 1;
        pub(crate) const NAME: u32 = 2;
        pub(crate) const INITIALIZER: u32 = 5;
        pub(crate) const DOC_STRING: u32 = 10;
        pub(crate) const INPUT: u32 = 11;
        pub(crate) const OUTPUT: u32 = 12;
        pub(crate) const VALUE_INFO: u32 = 13;
        pub(crate) const QUANTIZATION_ANNOTATION: u32 = 14;
        pub(crate) const SPARSE_INITIALIZER: u32 = 15;
    }
    pub(crate) mod node {
        pub(crate) const INPUT: u32 = 1;
        pub(crate) const OUTPUT: u32 = 2;
        pub(crate) const NAME: u32 = 3;
        pub(crate) const OP_TYPE: u32 = 4;
        pub(crate) const ATTRIBUTE: u32 = 5;
    }
    pub(crate) mod attribute {
        pub(crate) const NAME: u32 = 1;
        pub(crate) const I: u32 = 3;
        pub(crate) const T: u32 = 5;
        pub(crate) const G: u32 = 6;
        pub(crate) const INTS: u32 = 8;
        pub(crate) const TENSORS: u32 = 10;
        pub(crate) const GRAPHS: u32 = 11;
        pub(crate) const TYPE: u32 = 20;
    }
    pub(crate) mod tensor {
        pub(crate) const DIMS: u32 = 1;
        pub(crate) const DATA_TYPE: u32 = 2;
        pub(crate) const NAME: u32 = 8;
        pub(crate) const RAW_DATA: u32 = 9;
        pub(crate) const EXTERNAL_DATA: u32 = 13;
        pub(crate) const DATA_LOCATION: u32 = 14;
    }
    pub(crate) mod sparse_tensor {
        pub(crate) const VALUES: u32 = 1;
        pub(crate) const INDICES: u32 = 2;
    }
    pub(crate) mod value_info {
        pub(crate) const NAME: u32 = 1;
        pub(crate) const TYPE: u32 = 2;
    }
    pub(crate) mod tensor_annotation {
        pub(crate) const TENSOR_NAME: u32 = 1;
    }
}

/// ONNX TensorProto data types.
pub(crate) const FLOAT: i32 = 1;
pub(crate) const INT64: i32 = 7;

/// AttributeProto types.
const ATTR_INT: u64 = 2;
const ATTR_INTS: u64 = 7;

/// A message being written.
#[derive(Debug, Default, Clone)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

impl Writer {
    pub(crate) fn new() -> Writer {
        Writer::default()
    }

    pub(crate) fn varint(&mut self, number: u32, v: u64) -> &mut Self {
        put_varint(&mut self.buf, u64::from(number) << 3);
        put_varint(&mut self.buf, v);
        self
    }

    /// An int64 field (negative values as ten-byte varints, as protobuf does).
    pub(crate) fn int64(&mut self, number: u32, v: i64) -> &mut Self {
        self.varint(number, v as u64)
    }

    #[cfg(test)]
    pub(crate) fn fixed32(&mut self, number: u32, v: u32) -> &mut Self {
        put_varint(&mut self.buf, (u64::from(number) << 3) | 5);
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub(crate) fn bytes(&mut self, number: u32, b: &[u8]) -> &mut Self {
        put_varint(&mut self.buf, (u64::from(number) << 3) | 2);
        put_varint(&mut self.buf, b.len() as u64);
        self.buf.extend_from_slice(b);
        self
    }

    pub(crate) fn string(&mut self, number: u32, s: &str) -> &mut Self {
        self.bytes(number, s.as_bytes())
    }

    /// Raw bytes of fields read elsewhere, copied unchanged.
    pub(crate) fn raw(&mut self, raw: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(raw);
        self
    }
}

/// A TensorProto with raw little-endian data.
pub(crate) fn tensor_f32(name: &str, dims: &[usize], data: &[f32]) -> Vec<u8> {
    let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    tensor_raw(name, dims, FLOAT, &raw)
}

pub(crate) fn tensor_i64(name: &str, dims: &[usize], data: &[i64]) -> Vec<u8> {
    let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    tensor_raw(name, dims, INT64, &raw)
}

fn tensor_raw(name: &str, dims: &[usize], data_type: i32, raw: &[u8]) -> Vec<u8> {
    use field::tensor as t;
    let mut w = Writer::new();
    for &d in dims {
        w.varint(t::DIMS, d as u64);
    }
    w.varint(t::DATA_TYPE, data_type as u64)
        .string(t::NAME, name)
        .bytes(t::RAW_DATA, raw);
    w.buf
}

/// A node attribute.
#[derive(Debug, Clone)]
pub(crate) enum Attr {
    Int(i64),
    Ints(Vec<i64>),
}

/// A NodeProto.
pub(crate) fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    outputs: &[&str],
    attrs: &[(&str, Attr)],
) -> Vec<u8> {
    use field::attribute as a;
    use field::node as n;
    let mut w = Writer::new();
    for i in inputs {
        w.string(n::INPUT, i);
    }
    for o in outputs {
        w.string(n::OUTPUT, o);
    }
    w.string(n::NAME, name).string(n::OP_TYPE, op);
    for (key, value) in attrs {
        let mut aw = Writer::new();
        aw.string(a::NAME, key);
        match value {
            Attr::Int(i) => {
                aw.int64(a::I, *i).varint(a::TYPE, ATTR_INT);
            }
            Attr::Ints(v) => {
                for i in v {
                    aw.int64(a::INTS, *i);
                }
                aw.varint(a::TYPE, ATTR_INTS);
            }
        }
        w.bytes(n::ATTRIBUTE, &aw.buf);
    }
    w.buf
}

/// A tensor dimension: fixed, or named (symbolic).
#[derive(Debug, Clone)]
pub(crate) enum Dim {
    Value(i64),
    Param(String),
}

/// A ValueInfoProto for a float tensor.
pub(crate) fn value_info_f32(name: &str, dims: &[Dim]) -> Vec<u8> {
    let mut shape = Writer::new();
    for d in dims {
        let mut dw = Writer::new();
        match d {
            Dim::Value(v) => dw.int64(1, *v),
            Dim::Param(p) => dw.string(2, p),
        };
        shape.bytes(1, &dw.buf);
    }
    let mut tensor = Writer::new();
    tensor.varint(1, FLOAT as u64).bytes(2, &shape.buf);
    let mut ty = Writer::new();
    ty.bytes(1, &tensor.buf);
    let mut w = Writer::new();
    w.string(field::value_info::NAME, name)
        .bytes(field::value_info::TYPE, &ty.buf);
    w.buf
}

/// A StringStringEntryProto (metadata_props).
pub(crate) fn entry(key: &str, value: &str) -> Vec<u8> {
    let mut w = Writer::new();
    w.string(1, key).string(2, value);
    w.buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_fields_round_trip() {
        let mut w = Writer::new();
        w.varint(1, 300)
            .int64(2, -1)
            .string(3, "héllo")
            .fixed32(4, 1.5f32.to_bits());
        let f = fields(&w.buf).unwrap();
        assert_eq!(f.len(), 4);
        assert_eq!(f[0].varint().unwrap(), 300);
        assert_eq!(f[1].varint().unwrap() as i64, -1);
        assert_eq!(f[2].string().unwrap(), "héllo");
        assert!(matches!(f[3].value, Value::Fixed32(b) if f32::from_bits(b) == 1.5));
        let raw: Vec<u8> = f.iter().flat_map(|x| x.raw.to_vec()).collect();
        assert_eq!(raw, w.buf);
        // Protobuf's own encoding of 300 in field 1: 08 ac 02.
        assert_eq!(&w.buf[..3], &[0x08, 0xac, 0x02]);
    }

    #[test]
    fn truncated_input_is_an_error() {
        let mut w = Writer::new();
        w.string(1, "abcdef");
        assert!(fields(&w.buf[..4]).is_err());
        assert!(fields(&[0x80]).is_err());
    }
}
