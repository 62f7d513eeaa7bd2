//! Decoding of the Kubernetes protobuf encoding, which kubectl's generator commands (`kubectl
//! create deployment|service|job|role|...`) send their objects in.
//!
//! The envelope is `k8s\0` followed by a `runtime.Unknown` message whose `raw` field holds the
//! object. Decoding is generic over `schema.txt`, a table of every message's fields (number,
//! JSON name, label, type) taken from Kubernetes' `generated.proto` files by
//! `e2e/tools/proto_schema.py`; the types with a JSON form of their own (times, quantities,
//! int-or-string, raw JSON) are special-cased as Kubernetes' own JSON marshalling does.

use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::OnceLock;

const MAGIC: &[u8] = b"k8s\0";

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed64(u64),
    Fixed32(u32),
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

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or("truncated field")?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
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
                let b = self.take(8)?;
                Ok(Some((
                    field,
                    Field::Fixed64(u64::from_le_bytes(b.try_into().expect("8 bytes"))),
                )))
            }
            5 => {
                let b = self.take(4)?;
                Ok(Some((
                    field,
                    Field::Fixed32(u32::from_le_bytes(b.try_into().expect("4 bytes"))),
                )))
            }
            w => Err(format!("unsupported wire type {w}")),
        }
    }
}

fn string(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| "invalid UTF-8 in string field".to_string())
}

/// One field of a message, as `schema.txt` describes it.
struct FieldDef {
    name: &'static str,
    label: Label,
    type_: &'static str,
}

enum Label {
    /// `inline`: an embedded struct whose fields sit in the parent's JSON; `omit_zero`: a
    /// scalar JSON leaves out when zero (protobuf writes it anyway).
    Optional {
        inline: bool,
        omit_zero: bool,
    },
    Repeated,
    /// A map with this value type (keys are strings in every Kubernetes message).
    Map(&'static str),
}

type Schema = HashMap<&'static str, HashMap<u64, FieldDef>>;

fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let mut schema: Schema = HashMap::new();
        for line in include_str!("schema.txt").lines() {
            let mut parts = line.split(' ');
            let (Some(message), Some(number), Some(name), Some(label), Some(type_)) = (
                parts.next(),
                parts.next().and_then(|n| n.parse::<u64>().ok()),
                parts.next(),
                parts.next(),
                parts.next(),
            ) else {
                continue;
            };
            let label = match label {
                "rep" => Label::Repeated,
                "opt" | "opt+inline" | "opt+omitzero" => Label::Optional {
                    inline: label.ends_with("+inline"),
                    omit_zero: label.ends_with("+omitzero"),
                },
                map => match map.strip_prefix("map:").and_then(|m| m.split_once(':')) {
                    Some((_, value)) => Label::Map(value),
                    None => continue,
                },
            };
            schema
                .entry(message)
                .or_default()
                .insert(number, FieldDef { name, label, type_ });
        }
        schema
    })
}

/// Go's zero time, which gogo protobuf writes for unset non-pointer times.
const GO_ZERO_TIME: i64 = -62135596800;

/// A scalar or message value of `type_`, or `None` for a value JSON would leave out.
fn value(type_: &str, field: Field<'_>, depth: usize) -> Result<Option<Value>, String> {
    Ok(Some(match (type_, field) {
        ("string", Field::Bytes(b)) => {
            let s = string(b)?;
            if s.is_empty() {
                return Ok(None);
            }
            Value::String(s)
        }
        ("bytes", Field::Bytes(b)) => {
            use base64::Engine;
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        ("bool", Field::Varint(v)) => Value::Bool(v != 0),
        ("int32" | "sint32", Field::Varint(v)) => json!(v as i64 as i32),
        ("int64" | "sint64", Field::Varint(v)) => json!(v as i64),
        ("uint32" | "uint64", Field::Varint(v)) => json!(v),
        ("double" | "fixed64", Field::Fixed64(v)) => json!(f64::from_bits(v)),
        ("float" | "fixed32", Field::Fixed32(v)) => json!(f32::from_bits(v) as f64),
        (message, Field::Bytes(b)) => return message_value(message, b, depth),
        (t, _) => return Err(format!("a value of type {t} has the wrong wire type")),
    }))
}

fn message_value(message: &str, b: &[u8], depth: usize) -> Result<Option<Value>, String> {
    let fields = decode_message(message, b, depth + 1)?;
    let get = |k: &str| fields.get(k);
    Ok(Some(
        match message.strip_prefix("k8s.io.apimachinery.pkg.") {
            Some("apis.meta.v1.Time" | "apis.meta.v1.MicroTime") => {
                let seconds = get("seconds").and_then(Value::as_i64).unwrap_or(0);
                if seconds == GO_ZERO_TIME || seconds == 0 && get("seconds").is_none() {
                    return Ok(None);
                }
                let nanos = get("nanos").and_then(Value::as_i64).unwrap_or(0) as u32;
                let Some(t) = chrono::DateTime::from_timestamp(seconds, nanos) else {
                    return Err(format!("time {seconds}s out of range"));
                };
                let format = if message.ends_with("MicroTime") {
                    chrono::SecondsFormat::Micros
                } else {
                    chrono::SecondsFormat::Secs
                };
                Value::String(t.to_rfc3339_opts(format, true))
            }
            Some("api.resource.Quantity") => get("string").cloned().unwrap_or(json!("0")),
            Some("util.intstr.IntOrString") => match get("type").and_then(Value::as_i64) {
                Some(1) => get("strVal").cloned().unwrap_or(json!("")),
                _ => get("intVal").cloned().unwrap_or(json!(0)),
            },
            Some("apis.meta.v1.Duration") => {
                json!(go_duration(
                    get("duration").and_then(Value::as_i64).unwrap_or(0)
                ))
            }
            Some("runtime.RawExtension" | "apis.meta.v1.FieldsV1") => {
                raw_json(get("raw").or(get("Raw")))?
            }
            _ if message.ends_with("apiextensions.v1.JSON") => raw_json(get("raw"))?,
            _ => Value::Object(fields),
        },
    ))
}

/// Raw bytes (carried base64 in `fields`) that hold JSON.
fn raw_json(raw: Option<&Value>) -> Result<Value, String> {
    use base64::Engine;
    let Some(encoded) = raw.and_then(Value::as_str) else {
        return Ok(Value::Null);
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| format!("raw JSON field: {e}"))
}

/// Nanoseconds as Go prints a `time.Duration` (`1h0m0s`, `1.5s`, `300ms`).
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    if n < 1_000_000_000 {
        let (unit, div) = if n < 1_000 {
            ("ns", 1)
        } else if n < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{sign}{}{unit}", trim_fraction(n, div));
    }
    let (h, rest) = (n / 3_600_000_000_000, n % 3_600_000_000_000);
    let (m, rest) = (rest / 60_000_000_000, rest % 60_000_000_000);
    let seconds = trim_fraction(rest, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{sign}{seconds}s"),
        (0, m) => format!("{sign}{m}m{seconds}s"),
        (h, m) => format!("{sign}{h}h{m}m{seconds}s"),
    }
}

fn trim_fraction(n: u64, div: u64) -> String {
    let (whole, frac) = (n / div, n % div);
    if frac == 0 {
        return whole.to_string();
    }
    let digits = div.to_string().len() - 1;
    let f = format!("{frac:0digits$}");
    format!("{whole}.{}", f.trim_end_matches('0'))
}

/// A message's fields as a JSON object.
/// Kubernetes objects nest a few dozen messages deep at most; a body nested deeper is refused
/// rather than followed down the stack.
const MAX_DEPTH: usize = 64;

fn decode_message(message: &str, b: &[u8], depth: usize) -> Result<Map<String, Value>, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "{message}: messages nested deeper than {MAX_DEPTH}"
        ));
    }
    let defs = schema()
        .get(message)
        .ok_or_else(|| format!("no protobuf schema for {message}"))?;
    let mut out = Map::new();
    let mut r = Reader::new(b);
    while let Some((number, field)) = r.next()? {
        // Fields this table does not know (newer than it) are skipped, as protobuf does.
        let Some(def) = defs.get(&number) else {
            continue;
        };
        match def.label {
            Label::Optional { inline, omit_zero } => match value(def.type_, field, depth)? {
                Some(Value::Object(fields)) if inline => out.extend(fields),
                Some(v) if omit_zero && (v == json!(0) || v == json!(false)) => {}
                Some(v) => {
                    out.insert(def.name.to_string(), v);
                }
                None => {}
            },
            Label::Repeated => {
                // Packed repeated scalars are one bytes field of varints.
                let items = match (def.type_, field) {
                    ("int32" | "int64" | "bool", Field::Bytes(packed)) => {
                        let mut pr = Reader::new(packed);
                        let mut items = Vec::new();
                        while pr.pos < packed.len() {
                            items.extend(value(def.type_, Field::Varint(pr.varint()?), depth)?);
                        }
                        items
                    }
                    // Every element counts, empty strings included.
                    ("string", Field::Bytes(b)) => vec![Value::String(string(b)?)],
                    (t, f) => value(t, f, depth)?.into_iter().collect(),
                };
                if let Value::Array(list) = out
                    .entry(def.name.to_string())
                    .or_insert_with(|| Value::Array(Vec::new()))
                {
                    list.extend(items);
                }
            }
            Label::Map(value_type) => {
                let Field::Bytes(entry) = field else {
                    return Err(format!("{}: a map entry must be a message", def.name));
                };
                let mut er = Reader::new(entry);
                let (mut key, mut val) = (String::new(), None);
                while let Some((n, f)) = er.next()? {
                    match (n, f) {
                        (1, Field::Bytes(k)) => key = string(k)?,
                        (2, f) => val = value(value_type, f, depth)?,
                        _ => {}
                    }
                }
                // An entry's value is kept even when empty: `a: ""` is data.
                let val = val.unwrap_or_else(|| match value_type {
                    "string" | "bytes" => json!(""),
                    _ => Value::Null,
                });
                if let Value::Object(m) = out
                    .entry(def.name.to_string())
                    .or_insert_with(|| Value::Object(Map::new()))
                {
                    m.insert(key, val);
                }
            }
        }
    }
    Ok(out)
}

/// The protobuf package of an API group and version (`apps/v1` → `k8s.io.api.apps.v1`).
fn package(api_version: &str) -> String {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    match group {
        "" => format!("k8s.io.api.core.{version}"),
        "apiextensions.k8s.io" => {
            format!("k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.{version}")
        }
        "apiregistration.k8s.io" => {
            format!("k8s.io.kube_aggregator.pkg.apis.apiregistration.{version}")
        }
        g => format!("k8s.io.api.{}.{version}", g.split('.').next().unwrap_or(g)),
    }
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
    let message = format!("{}.{kind}", package(&api_version));
    if !schema().contains_key(message.as_str()) {
        return Err(format!(
            "no protobuf schema for {api_version} {kind}; send application/json"
        ));
    }
    let mut obj = decode_message(&message, raw, 0)?;
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(kind));
    Ok(Value::Object(obj))
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

    fn varint(n: u8, v: u8) -> Vec<u8> {
        vec![n << 3, v]
    }

    #[test]
    fn decodes_any_kind_from_the_schema() {
        // A Deployment as `kubectl create deployment web --image=nginx --replicas=2` sends it.
        let container = [field(1, b"nginx"), field(2, b"nginx"), field(8, &[])].concat();
        let pod_spec = field(2, &container);
        let template = [
            field(
                1,
                &field(11, &[field(1, b"app"), field(2, b"web")].concat()),
            ),
            field(2, &pod_spec),
        ]
        .concat();
        let selector = field(1, &[field(1, b"app"), field(2, b"web")].concat());
        let spec = [varint(1, 2), field(2, &selector), field(3, &template)].concat();
        let meta = [field(1, b"web"), field(8, &[])].concat();
        let deployment = [field(1, &meta), field(2, &spec)].concat();
        let type_meta = [field(1, b"apps/v1"), field(2, b"Deployment")].concat();
        let body = [
            b"k8s\0".as_slice(),
            &field(1, &type_meta),
            &field(2, &deployment),
        ]
        .concat();
        let obj = decode(&body).unwrap();
        assert_eq!(
            obj,
            json!({"metadata": {"name": "web"},
                   "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                            "template": {"metadata": {"labels": {"app": "web"}},
                                         "spec": {"containers": [{"name": "nginx", "image": "nginx", "resources": {}}]}}},
                   "apiVersion": "apps/v1", "kind": "Deployment"})
        );
    }

    #[test]
    fn special_types_read_as_their_json() {
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(300_000_000), "300ms");
        // A Service port's targetPort as a number and as a name.
        let port = |target: Vec<u8>| {
            let p = [field(1, b"http"), varint(3, 80), field(4, &target)].concat();
            decode_message("k8s.io.api.core.v1.ServicePort", &p, 0).unwrap()
        };
        assert_eq!(port(varint(2, 81))["targetPort"], json!(81));
        assert_eq!(
            port([varint(1, 1), field(3, b"web")].concat())["targetPort"],
            json!("web")
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        // JSONSchemaProps nests itself (`not`, field 28: tag 226, varint E2 01); 10,000 levels.
        let mut props: Vec<u8> = Vec::new();
        for _ in 0..10_000 {
            let mut outer = vec![0xE2, 0x01];
            let mut len = props.len();
            let mut varint = Vec::new();
            loop {
                let b = (len & 0x7f) as u8;
                len >>= 7;
                if len == 0 {
                    varint.push(b);
                    break;
                }
                varint.push(b | 0x80);
            }
            outer.extend(varint);
            outer.extend(&props);
            props = outer;
        }
        let e = decode_message(
            "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps",
            &props,
            0,
        )
        .unwrap_err();
        assert!(e.contains("nested deeper"), "{e}");
    }

    #[test]
    fn refuses_unknown_kinds_and_garbage() {
        let type_meta = [field(1, b"example.com/v1"), field(2, b"Cache")].concat();
        let body = [b"k8s\0".as_slice(), &field(1, &type_meta)].concat();
        assert!(decode(&body).unwrap_err().contains("example.com/v1 Cache"));
        assert!(decode(b"k8s\0\x0a\xff").is_err());
        assert!(decode(b"{}").is_err());
    }
}
