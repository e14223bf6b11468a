//! The JSON encoding of cty values that Terraform uses for stored state (`RawState.json`), following go-cty's `cty/json`.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde_json::Value as Json;

use super::{MAX_DEPTH, Number, PathStep, Type, Value, ValueError, type_kind_name};

fn json_error(reason: impl Into<String>) -> ValueError {
    ValueError::Json {
        path: String::new(),
        reason: reason.into(),
    }
}

fn json_kind(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "bool",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

/// Encodes `value` as JSON for type `ty`.
///
/// Unknown values and infinities have no JSON form and are errors, as are values that do not
/// conform to the type. A value in a `dynamic` slot is written as `{"value": ..., "type": ...}`.
pub fn to_json(value: &Value, ty: &Type) -> Result<Json, ValueError> {
    to_json_at(value, ty, 0)
}

// The functions on the recursive paths keep their frames small (formatting and other bulky
// work lives in separate non-inlined functions) so that the full nesting depth fits in a
// 2 MiB thread stack even in unoptimised builds.

fn to_json_at(value: &Value, ty: &Type, depth: usize) -> Result<Json, ValueError> {
    if depth >= MAX_DEPTH {
        return Err(json_error("value is nested too deeply"));
    }
    let depth = depth + 1;
    match (ty, value) {
        (_, Value::Null) => Ok(Json::Null),
        (_, Value::Unknown(_)) => Err(json_error("unknown values cannot be represented in json")),
        (Type::Dynamic, Value::Dynamic(concrete, inner)) => dynamic_to_json(concrete, inner, depth),
        (Type::Dynamic, other) => Err(unwrapped_dynamic_error(other)),
        (Type::String, Value::String(s)) => Ok(Json::String(s.clone())),
        (Type::Number, Value::Number(n)) => number_to_json(n),
        (Type::Bool, Value::Bool(b)) => Ok(Json::Bool(*b)),
        (Type::List(et), Value::List(vs)) | (Type::Set(et), Value::Set(vs)) => {
            elements_to_json(vs, std::iter::repeat_n(et.as_ref(), vs.len()), depth)
        }
        (Type::Tuple(ets), Value::Tuple(vs)) => {
            if ets.len() != vs.len() {
                return Err(tuple_length_error(ets.len(), vs.len()));
            }
            elements_to_json(vs, ets.iter(), depth)
        }
        (Type::Map(et), Value::Map(entries)) => map_to_json(entries, et, depth),
        (Type::Object(attrs), Value::Object(entries)) => object_to_json(entries, attrs, depth),
        (_, other) => Err(value_mismatch_error(ty, other)),
    }
}

#[inline(never)]
fn dynamic_to_json(concrete: &Type, inner: &Value, depth: usize) -> Result<Json, ValueError> {
    let mut object = serde_json::Map::new();
    // go-cty writes "value" before "type"; keeping its order keeps state files stable.
    object.insert("value".to_owned(), to_json_at(inner, concrete, depth)?);
    object.insert("type".to_owned(), concrete.to_json());
    Ok(Json::Object(object))
}

#[inline(never)]
fn number_to_json(n: &Number) -> Result<Json, ValueError> {
    if !n.is_finite() {
        return Err(json_error("infinity cannot be represented in json"));
    }
    serde_json::Number::from_str(&n.to_string())
        .map(Json::Number)
        .map_err(|e| json_error(format!("number {n}: {e}")))
}

#[inline(never)]
fn elements_to_json<'t>(
    values: &[Value],
    types: impl Iterator<Item = &'t Type>,
    depth: usize,
) -> Result<Json, ValueError> {
    let mut out = Vec::with_capacity(values.len());
    for (i, (v, t)) in values.iter().zip(types).enumerate() {
        out.push(to_json_at(v, t, depth).map_err(|e| e.under(PathStep::Index(i)))?);
    }
    Ok(Json::Array(out))
}

#[inline(never)]
fn map_to_json(
    entries: &BTreeMap<String, Value>,
    elem_ty: &Type,
    depth: usize,
) -> Result<Json, ValueError> {
    let mut out = serde_json::Map::new();
    for (k, v) in entries {
        let json = to_json_at(v, elem_ty, depth).map_err(|e| e.under(PathStep::Key(k)))?;
        out.insert(k.clone(), json);
    }
    Ok(Json::Object(out))
}

#[inline(never)]
fn object_to_json(
    entries: &BTreeMap<String, Value>,
    attrs: &BTreeMap<String, Type>,
    depth: usize,
) -> Result<Json, ValueError> {
    if let Some(extra) = entries.keys().find(|k| !attrs.contains_key(*k)) {
        return Err(attribute_error("unsupported attribute", extra, ""));
    }
    let mut out = serde_json::Map::new();
    for (k, t) in attrs {
        let v = entries
            .get(k)
            .ok_or_else(|| attribute_error("attribute", k, " is required"))?;
        let json = to_json_at(v, t, depth).map_err(|e| e.under(PathStep::Attr(k)))?;
        out.insert(k.clone(), json);
    }
    Ok(Json::Object(out))
}

#[cold]
#[inline(never)]
fn unwrapped_dynamic_error(value: &Value) -> ValueError {
    json_error(format!(
        "a {} in a dynamic slot must be wrapped in Value::Dynamic to give its type",
        value.kind_name()
    ))
}

#[cold]
#[inline(never)]
fn tuple_length_error(want: usize, got: usize) -> ValueError {
    json_error(format!("tuple of {want} elements required, got {got}"))
}

#[cold]
#[inline(never)]
fn value_mismatch_error(ty: &Type, value: &Value) -> ValueError {
    json_error(format!(
        "{} required, got {}",
        type_kind_name(ty),
        value.kind_name()
    ))
}

#[cold]
#[inline(never)]
fn attribute_error(before: &str, name: &str, after: &str) -> ValueError {
    json_error(format!("{before} {name:?}{after}"))
}

/// Decodes a JSON value of type `ty`.
///
/// Like go-cty, primitives are read leniently (a string slot takes a JSON number or bool as its
/// text, a number slot takes a numeric string, a bool slot takes `"true"`/`"false"`), and an
/// object's missing attributes decode as null because state written by an older schema lacks
/// attributes added since. Attributes the type does not have are an error.
pub fn from_json(json: &Json, ty: &Type) -> Result<Value, ValueError> {
    from_json_at(json, ty, 0)
}

/// Parses JSON text and decodes it as a value of type `ty`.
pub fn from_json_bytes(bytes: &[u8], ty: &Type) -> Result<Value, ValueError> {
    let json: Json = serde_json::from_slice(bytes).map_err(|e| json_error(e.to_string()))?;
    from_json(&json, ty)
}

fn parse_number(text: &str) -> Result<Value, ValueError> {
    Number::parse(text)
        .map(Value::Number)
        .map_err(|e| json_error(e.to_string()))
}

fn from_json_at(json: &Json, ty: &Type, depth: usize) -> Result<Value, ValueError> {
    if depth >= MAX_DEPTH {
        return Err(json_error("value is nested too deeply"));
    }
    let depth = depth + 1;
    match (ty, json) {
        (_, Json::Null) => Ok(Value::Null),
        (Type::Dynamic, Json::Object(object)) => dynamic_from_json(object, depth),
        (Type::String | Type::Number | Type::Bool, _) => primitive_from_json(json, ty),
        (Type::List(et), Json::Array(items)) => {
            elements_from_json(items, std::iter::repeat_n(et.as_ref(), items.len()), depth)
                .map(Value::List)
        }
        (Type::Set(et), Json::Array(items)) => {
            elements_from_json(items, std::iter::repeat_n(et.as_ref(), items.len()), depth)
                .map(Value::Set)
        }
        (Type::Tuple(ets), Json::Array(items)) => {
            if ets.len() != items.len() {
                return Err(tuple_length_error(ets.len(), items.len()));
            }
            elements_from_json(items, ets.iter(), depth).map(Value::Tuple)
        }
        (Type::Map(et), Json::Object(object)) => map_from_json(object, et, depth),
        (Type::Object(attrs), Json::Object(object)) => object_from_json(object, attrs, depth),
        _ => Err(json_mismatch_error(ty, json)),
    }
}

#[cold]
#[inline(never)]
fn json_mismatch_error(ty: &Type, json: &Json) -> ValueError {
    json_error(format!(
        "{} required, got json {}",
        type_kind_name(ty),
        json_kind(json)
    ))
}

#[inline(never)]
fn primitive_from_json(json: &Json, ty: &Type) -> Result<Value, ValueError> {
    match (ty, json) {
        (Type::String, Json::String(s)) => Ok(Value::String(s.clone())),
        (Type::String, Json::Number(n)) => Ok(Value::String(n.to_string())),
        (Type::String, Json::Bool(b)) => Ok(Value::String(b.to_string())),
        // With arbitrary_precision the number's text is exactly what the document held.
        (Type::Number, Json::Number(n)) => parse_number(&n.to_string()),
        (Type::Number, Json::String(s)) => parse_number(s),
        (Type::Bool, Json::Bool(b)) => Ok(Value::Bool(*b)),
        (Type::Bool, Json::String(s)) => match s.as_str() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(json_error(format!("bool required, got string {s:?}"))),
        },
        _ => Err(json_mismatch_error(ty, json)),
    }
}

#[inline(never)]
fn dynamic_from_json(
    object: &serde_json::Map<String, Json>,
    depth: usize,
) -> Result<Value, ValueError> {
    if let Some(key) = object.keys().find(|k| *k != "value" && *k != "type") {
        return Err(json_error(format!(
            "invalid key {key:?} in dynamically-typed value"
        )));
    }
    let type_json = object
        .get("type")
        .ok_or_else(|| json_error("missing type in dynamically-typed value"))?;
    let value_json = object
        .get("value")
        .ok_or_else(|| json_error("missing value in dynamically-typed value"))?;
    let concrete = Type::from_json(type_json).map_err(|e| json_error(e.to_string()))?;
    let inner = from_json_at(value_json, &concrete, depth)?;
    Ok(Value::Dynamic(concrete, Box::new(inner)))
}

#[inline(never)]
fn map_from_json(
    object: &serde_json::Map<String, Json>,
    elem_ty: &Type,
    depth: usize,
) -> Result<Value, ValueError> {
    let mut entries = BTreeMap::new();
    for (k, v) in object {
        let value = from_json_at(v, elem_ty, depth).map_err(|e| e.under(PathStep::Key(k)))?;
        entries.insert(k.clone(), value);
    }
    Ok(Value::Map(entries))
}

#[inline(never)]
fn object_from_json(
    object: &serde_json::Map<String, Json>,
    attrs: &BTreeMap<String, Type>,
    depth: usize,
) -> Result<Value, ValueError> {
    if let Some(extra) = object.keys().find(|k| !attrs.contains_key(*k)) {
        return Err(attribute_error("unsupported attribute", extra, ""));
    }
    let mut entries = BTreeMap::new();
    for (k, t) in attrs {
        let value = match object.get(k) {
            Some(v) => from_json_at(v, t, depth).map_err(|e| e.under(PathStep::Attr(k)))?,
            None => Value::Null,
        };
        entries.insert(k.clone(), value);
    }
    Ok(Value::Object(entries))
}

#[inline(never)]
fn elements_from_json<'t>(
    items: &[Json],
    types: impl Iterator<Item = &'t Type>,
    depth: usize,
) -> Result<Vec<Value>, ValueError> {
    let mut out = Vec::with_capacity(items.len());
    for (i, (item, t)) in items.iter().zip(types).enumerate() {
        out.push(from_json_at(item, t, depth).map_err(|e| e.under(PathStep::Index(i)))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn num(s: &str) -> Value {
        Value::Number(Number::parse(s).unwrap())
    }

    fn obj<const N: usize>(entries: [(&str, Value); N]) -> Value {
        Value::Object(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    }

    #[test]
    fn values_round_trip_through_exact_json_text() {
        let cases = [
            (Value::Null, Type::String, "null"),
            (Value::Null, Type::Dynamic, "null"),
            (Value::string("a\"b"), Type::String, r#""a\"b""#),
            (Value::number(-7), Type::Number, "-7"),
            (num("0.1"), Type::Number, "0.1"),
            (
                num("1180591620717411303424"),
                Type::Number,
                "1180591620717411303424",
            ),
            (
                num("-0.000000000000000000012345"),
                Type::Number,
                "-0.000000000000000000012345",
            ),
            (Value::bool(false), Type::Bool, "false"),
            (
                Value::List(vec![Value::string("a"), Value::Null]),
                Type::list(Type::String),
                r#"["a",null]"#,
            ),
            (
                Value::Set(vec![Value::number(1)]),
                Type::set(Type::Number),
                "[1]",
            ),
            (
                Value::Map(
                    [
                        ("z".to_owned(), Value::bool(true)),
                        ("a".to_owned(), Value::Null),
                    ]
                    .into(),
                ),
                Type::map(Type::Bool),
                r#"{"a":null,"z":true}"#,
            ),
            (
                obj([("name", Value::string("n")), ("size", Value::Null)]),
                Type::object([("size", Type::Number), ("name", Type::String)]),
                r#"{"name":"n","size":null}"#,
            ),
            (
                Value::Tuple(vec![Value::string("x"), Value::number(2)]),
                Type::Tuple(vec![Type::String, Type::Number]),
                r#"["x",2]"#,
            ),
            (
                Value::Dynamic(Type::String, Box::new(Value::string("x"))),
                Type::Dynamic,
                r#"{"value":"x","type":"string"}"#,
            ),
            (
                Value::Dynamic(Type::list(Type::Number), Box::new(Value::Null)),
                Type::Dynamic,
                r#"{"value":null,"type":["list","number"]}"#,
            ),
            (
                obj([(
                    "d",
                    Value::Dynamic(
                        Type::object([("a", Type::Dynamic)]),
                        Box::new(obj([(
                            "a",
                            Value::Dynamic(Type::Bool, Box::new(Value::bool(true))),
                        )])),
                    ),
                )]),
                Type::object([("d", Type::Dynamic)]),
                r#"{"d":{"value":{"a":{"value":true,"type":"bool"}},"type":["object",{"a":"dynamic"}]}}"#,
            ),
        ];
        for (value, ty, text) in cases {
            let json = to_json(&value, &ty).unwrap();
            assert_eq!(json.to_string(), text, "{value:?}");
            assert_eq!(
                from_json_bytes(text.as_bytes(), &ty).unwrap(),
                value,
                "{text}"
            );
        }
    }

    #[test]
    fn reading_is_lenient_like_go_cty() {
        let ty = Type::object([
            ("name", Type::String),
            ("count", Type::Number),
            ("enabled", Type::Bool),
            ("added_later", Type::list(Type::String)),
            ("blob", Type::Dynamic),
        ]);
        // Terraform stores state pretty-printed, and attributes added to the schema since the
        // state was written are absent.
        let state = br#"{
  "name": 42,
  "count": "1.50e1",
  "enabled": "true",
  "blob": {
    "type": ["map", "number"],
    "value": {"x": 1.0}
  }
}"#;
        let value = from_json_bytes(state, &ty).unwrap();
        assert_eq!(
            value,
            obj([
                ("name", Value::string("42")),
                ("count", Value::number(15)),
                ("enabled", Value::bool(true)),
                ("added_later", Value::Null),
                (
                    "blob",
                    Value::Dynamic(
                        Type::map(Type::Number),
                        Box::new(Value::Map([("x".to_owned(), Value::number(1))].into())),
                    )
                ),
            ])
        );
        assert_eq!(
            from_json_bytes(b"true", &Type::String).unwrap(),
            Value::string("true")
        );
        assert_eq!(
            from_json_bytes(b"1e400", &Type::Number)
                .unwrap()
                .as_number()
                .unwrap()
                .to_string()
                .len(),
            401
        );
    }

    #[test]
    fn malformed_json_is_an_error() {
        let obj_ty = Type::object([("a", Type::list(Type::Number))]);
        let cases: Vec<(&str, Type, &str)> = vec![
            (
                r#"{"a":[1],"zzz":2}"#,
                obj_ty.clone(),
                "unsupported attribute \"zzz\"",
            ),
            (
                r#"{"a":[1,"x"]}"#,
                obj_ty.clone(),
                "invalid json value at .a[1]: invalid number",
            ),
            (
                r#"{"a":{}}"#,
                obj_ty,
                "at .a: list required, got json object",
            ),
            ("[1]", Type::Number, "number required, got json array"),
            (r#""yes""#, Type::Bool, "bool required, got string \"yes\""),
            (
                "[1,2]",
                Type::Tuple(vec![Type::Number]),
                "tuple of 1 elements required, got 2",
            ),
            (r#"{"value":1}"#, Type::Dynamic, "missing type"),
            (r#"{"type":"number"}"#, Type::Dynamic, "missing value"),
            (
                r#"{"type":"number","value":1,"x":1}"#,
                Type::Dynamic,
                "invalid key \"x\"",
            ),
            (
                r#"{"type":"numbr","value":1}"#,
                Type::Dynamic,
                "invalid type",
            ),
            ("5", Type::Dynamic, "dynamic required, got json number"),
            (
                r#"{"k":[]}"#,
                Type::map(Type::String),
                "at [\"k\"]: string required",
            ),
            ("[1", Type::list(Type::Number), "EOF"),
            ("1 2", Type::Number, "trailing"),
        ];
        for (text, ty, want) in cases {
            let err = from_json_bytes(text.as_bytes(), &ty).unwrap_err();
            assert!(
                err.to_string().contains(want),
                "{text}: {err} does not mention {want:?}"
            );
        }
    }

    #[test]
    fn values_without_a_json_form_are_errors() {
        let cases = [
            (
                Value::unknown(),
                Type::String,
                "unknown values cannot be represented",
            ),
            (
                Value::List(vec![Value::unknown()]),
                Type::list(Type::String),
                "at [0]: unknown",
            ),
            (num("inf"), Type::Number, "infinity"),
            (
                Value::string("x"),
                Type::Dynamic,
                "must be wrapped in Value::Dynamic",
            ),
            (
                obj([]),
                Type::object([("a", Type::Bool)]),
                "attribute \"a\" is required",
            ),
            (
                obj([("b", Value::Null)]),
                Type::object([("a", Type::Bool)]),
                "unsupported attribute \"b\"",
            ),
            (Value::bool(true), Type::String, "string required, got bool"),
        ];
        for (value, ty, want) in cases {
            let err = to_json(&value, &ty).unwrap_err();
            assert!(
                err.to_string().contains(want),
                "{err} does not mention {want:?}"
            );
        }
    }
}
