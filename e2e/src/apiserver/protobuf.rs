//! Decoding of the Kubernetes protobuf encoding for the kinds that kubectl's generator commands
//! (`kubectl create namespace|configmap|secret|serviceaccount`) send only as protobuf.
//!
//! The envelope is `k8s\0` followed by a `runtime.Unknown` message whose `raw` field holds the
//! object. Field numbers come from Kubernetes' `generated.proto` files; only the fields those
//! commands fill in are decoded, and any other kind is refused with 415 so the gap is visible.

use serde_json::{json, Map, Value};

const MAGIC: &[u8] = b"k8s\0";

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    fn next(&mut self) -> Result<Option<(u64, Field<'a>)>, String> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let field = tag >> 3;
        match tag & 7 {
            0 => Ok(Some((field, Field::Varint(self.varint()?)))),
            2 => {
                let len = self.varint()? as usize;
                let end = self
                    .pos
                    .checked_add(len)
                    .filter(|e| *e <= self.buf.len())
                    .ok_or("truncated field")?;
                let bytes = &self.buf[self.pos..end];
                self.pos = end;
                Ok(Some((field, Field::Bytes(bytes))))
            }
            1 => {
                self.pos += 8;
                Ok(Some((field, Field::Varint(0))))
            }
            5 => {
                self.pos += 4;
                Ok(Some((field, Field::Varint(0))))
            }
            w => Err(format!("unsupported wire type {w}")),
        }
    }
}

fn string(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| "invalid UTF-8 in string field".to_string())
}

/// A `map<string, string>` or `map<string, bytes>` entry.
fn map_entry(b: &[u8], bytes_value: bool) -> Result<(String, Value), String> {
    let mut r = Reader::new(b);
    let (mut k, mut v) = (String::new(), Value::String(String::new()));
    while let Some((f, val)) = r.next()? {
        if let Field::Bytes(b) = val {
            match f {
                1 => k = string(b)?,
                2 if bytes_value => {
                    use base64::Engine;
                    v = Value::String(base64::engine::general_purpose::STANDARD.encode(b));
                }
                2 => v = Value::String(string(b)?),
                _ => {}
            }
        }
    }
    Ok((k, v))
}

fn object_meta(b: &[u8]) -> Result<Value, String> {
    let mut r = Reader::new(b);
    let mut m = Map::new();
    let mut labels = Map::new();
    let mut annotations = Map::new();
    let mut finalizers = Vec::new();
    while let Some((f, val)) = r.next()? {
        match (f, val) {
            (1, Field::Bytes(b)) => {
                m.insert("name".into(), json!(string(b)?));
            }
            (2, Field::Bytes(b)) => {
                m.insert("generateName".into(), json!(string(b)?));
            }
            (3, Field::Bytes(b)) => {
                m.insert("namespace".into(), json!(string(b)?));
            }
            (6, Field::Bytes(b)) => {
                m.insert("resourceVersion".into(), json!(string(b)?));
            }
            (11, Field::Bytes(b)) => {
                let (k, v) = map_entry(b, false)?;
                labels.insert(k, v);
            }
            (12, Field::Bytes(b)) => {
                let (k, v) = map_entry(b, false)?;
                annotations.insert(k, v);
            }
            (14, Field::Bytes(b)) => finalizers.push(json!(string(b)?)),
            _ => {}
        }
    }
    if !labels.is_empty() {
        m.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        m.insert("annotations".into(), Value::Object(annotations));
    }
    if !finalizers.is_empty() {
        m.insert("finalizers".into(), Value::Array(finalizers));
    }
    Ok(Value::Object(m))
}

fn decode_kind(kind: &str, raw: &[u8]) -> Result<Value, String> {
    let mut r = Reader::new(raw);
    let mut obj = json!({"kind": kind, "apiVersion": "v1"});
    let mut maps: [Map<String, Value>; 3] = Default::default();
    while let Some((f, val)) = r.next()? {
        match (kind, f, val) {
            (_, 1, Field::Bytes(b)) => obj["metadata"] = object_meta(b)?,
            ("Namespace", 2, Field::Bytes(b)) => {
                let mut sr = Reader::new(b);
                let mut fins = Vec::new();
                while let Some((sf, sv)) = sr.next()? {
                    if let (1, Field::Bytes(s)) = (sf, sv) {
                        fins.push(json!(string(s)?));
                    }
                }
                obj["spec"] = json!({"finalizers": fins});
            }
            ("ConfigMap", 2, Field::Bytes(b)) => {
                let (k, v) = map_entry(b, false)?;
                maps[0].insert(k, v);
            }
            ("ConfigMap", 3, Field::Bytes(b)) => {
                let (k, v) = map_entry(b, true)?;
                maps[1].insert(k, v);
            }
            ("Secret", 2, Field::Bytes(b)) => {
                let (k, v) = map_entry(b, true)?;
                maps[0].insert(k, v);
            }
            ("Secret", 3, Field::Bytes(b)) => obj["type"] = json!(string(b)?),
            ("Secret", 4, Field::Bytes(b)) => {
                let (k, v) = map_entry(b, false)?;
                maps[2].insert(k, v);
            }
            ("ConfigMap", 4, Field::Varint(v)) | ("Secret", 5, Field::Varint(v)) => {
                obj["immutable"] = json!(v != 0)
            }
            ("ServiceAccount", 4, Field::Varint(v)) => {
                obj["automountServiceAccountToken"] = json!(v != 0)
            }
            _ => {}
        }
    }
    for (i, field) in ["data", "binaryData", "stringData"].iter().enumerate() {
        if !maps[i].is_empty() {
            obj[*field] = Value::Object(std::mem::take(&mut maps[i]));
        }
    }
    Ok(obj)
}

/// Decodes a protobuf request body into the JSON form of the object.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or("protobuf body does not start with the k8s\\0 envelope")?;
    let mut r = Reader::new(rest);
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    while let Some((f, val)) = r.next()? {
        match (f, val) {
            (1, Field::Bytes(b)) => {
                let mut tr = Reader::new(b);
                while let Some((tf, tv)) = tr.next()? {
                    match (tf, tv) {
                        (1, Field::Bytes(s)) => api_version = string(s)?,
                        (2, Field::Bytes(s)) => kind = string(s)?,
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(b)) => raw = b,
            _ => {}
        }
    }
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace" | "ConfigMap" | "Secret" | "ServiceAccount") => decode_kind(&kind, raw),
        _ => Err(format!(
            "the stand-in decodes protobuf only for v1 Namespace, ConfigMap, Secret and ServiceAccount, not {api_version} {kind}; send application/json"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u8, bytes: &[u8]) -> Vec<u8> {
        let mut v = vec![(n << 3) | 2, bytes.len() as u8];
        v.extend_from_slice(bytes);
        v
    }

    #[test]
    fn decodes_a_namespace_like_kubectl_sends_it() {
        let meta = [
            field(1, b"shop"),
            field(11, &[field(1, b"team"), field(2, b"a")].concat()),
        ]
        .concat();
        let ns = field(1, &meta);
        let type_meta = [field(1, b"v1"), field(2, b"Namespace")].concat();
        let unknown = [field(1, &type_meta), field(2, &ns)].concat();
        let body = [b"k8s\0".as_slice(), &unknown].concat();
        let obj = decode(&body).unwrap();
        assert_eq!(obj["kind"], "Namespace");
        assert_eq!(obj["metadata"]["name"], "shop");
        assert_eq!(obj["metadata"]["labels"]["team"], "a");
    }

    #[test]
    fn refuses_other_kinds_and_garbage() {
        let type_meta = [field(1, b"apps/v1"), field(2, b"Deployment")].concat();
        let body = [b"k8s\0".as_slice(), &field(1, &type_meta)].concat();
        assert!(decode(&body).unwrap_err().contains("apps/v1 Deployment"));
        assert!(decode(b"k8s\0\x0a\xff").is_err());
        assert!(decode(b"{}").is_err());
    }
}
