//! The cty value model that Terraform exchanges with providers: types, values, refined unknowns and their wire encodings.

pub mod json;
pub mod msgpack;
mod number;

use std::collections::BTreeMap;
use std::fmt;

pub use number::Number;

/// Deepest nesting that decoders and encoders accept before giving up, so hostile input cannot
/// overflow the stack.
pub(crate) const MAX_DEPTH: usize = 256;

/// A cty type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Type {
    String,
    Number,
    Bool,
    /// cty's `DynamicPseudoType`: the concrete type travels with each value.
    Dynamic,
    List(Box<Type>),
    Set(Box<Type>),
    Map(Box<Type>),
    Object(BTreeMap<String, Type>),
    Tuple(Vec<Type>),
}

impl Type {
    /// `list(t)`.
    pub fn list(t: Type) -> Type {
        Type::List(Box::new(t))
    }

    /// `set(t)`.
    pub fn set(t: Type) -> Type {
        Type::Set(Box::new(t))
    }

    /// `map(t)`.
    pub fn map(t: Type) -> Type {
        Type::Map(Box::new(t))
    }

    /// `object({...})` from attribute name and type pairs.
    pub fn object<I, K>(attrs: I) -> Type
    where
        I: IntoIterator<Item = (K, Type)>,
        K: Into<String>,
    {
        Type::Object(attrs.into_iter().map(|(k, t)| (k.into(), t)).collect())
    }

    /// The type in cty's JSON type notation, e.g. `["list","string"]`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Type::String => J::from("string"),
            Type::Number => J::from("number"),
            Type::Bool => J::from("bool"),
            Type::Dynamic => J::from("dynamic"),
            Type::List(t) => J::Array(vec![J::from("list"), t.to_json()]),
            Type::Set(t) => J::Array(vec![J::from("set"), t.to_json()]),
            Type::Map(t) => J::Array(vec![J::from("map"), t.to_json()]),
            Type::Object(attrs) => J::Array(vec![
                J::from("object"),
                J::Object(
                    attrs
                        .iter()
                        .map(|(k, t)| (k.clone(), t.to_json()))
                        .collect(),
                ),
            ]),
            Type::Tuple(elems) => J::Array(vec![
                J::from("tuple"),
                J::Array(elems.iter().map(Type::to_json).collect()),
            ]),
        }
    }

    /// The compact JSON text of [`Type::to_json`].
    pub fn to_json_bytes(&self) -> Vec<u8> {
        self.to_json().to_string().into_bytes()
    }

    /// Parses cty's JSON type notation. The optional-attributes list that may follow an object's
    /// attributes is accepted and ignored, because optionality does not change the wire format.
    pub fn from_json(v: &serde_json::Value) -> Result<Type, ValueError> {
        Type::from_json_at(v, 0)
    }

    fn from_json_at(v: &serde_json::Value, depth: usize) -> Result<Type, ValueError> {
        use serde_json::Value as J;
        if depth > MAX_DEPTH {
            return Err(ValueError::Type("type is nested too deeply".to_owned()));
        }
        let bad = |why: String| Err(ValueError::Type(why));
        match v {
            J::String(s) => match s.as_str() {
                "string" => Ok(Type::String),
                "number" => Ok(Type::Number),
                "bool" => Ok(Type::Bool),
                "dynamic" => Ok(Type::Dynamic),
                other => bad(format!("unknown primitive type {other:?}")),
            },
            J::Array(parts) => {
                let Some(kind) = parts.first().and_then(J::as_str) else {
                    return bad("a complex type must start with its kind name".to_owned());
                };
                let arity_ok = match kind {
                    "object" => parts.len() == 2 || parts.len() == 3,
                    _ => parts.len() == 2,
                };
                let (true, Some(arg)) = (arity_ok, parts.get(1)) else {
                    return bad(format!("wrong number of elements for {kind} type"));
                };
                match kind {
                    "list" => Ok(Type::List(Box::new(Type::from_json_at(arg, depth + 1)?))),
                    "set" => Ok(Type::Set(Box::new(Type::from_json_at(arg, depth + 1)?))),
                    "map" => Ok(Type::Map(Box::new(Type::from_json_at(arg, depth + 1)?))),
                    "object" => match arg {
                        J::Object(attrs) => attrs
                            .iter()
                            .map(|(k, t)| Ok((k.clone(), Type::from_json_at(t, depth + 1)?)))
                            .collect::<Result<_, ValueError>>()
                            .map(Type::Object),
                        _ => bad("object type attributes must be a json object".to_owned()),
                    },
                    "tuple" => match arg {
                        J::Array(elems) => elems
                            .iter()
                            .map(|t| Type::from_json_at(t, depth + 1))
                            .collect::<Result<_, _>>()
                            .map(Type::Tuple),
                        _ => bad("tuple element types must be a json array".to_owned()),
                    },
                    other => bad(format!("unknown complex type kind {other:?}")),
                }
            }
            other => bad(format!("unexpected json {other} in type")),
        }
    }

    /// Parses cty's JSON type notation from bytes.
    pub fn from_json_bytes(b: &[u8]) -> Result<Type, ValueError> {
        let v: serde_json::Value = serde_json::from_slice(b)
            .map_err(|e| ValueError::Type(format!("type is not valid json: {e}")))?;
        Type::from_json(&v)
    }

    /// Whether `dynamic` appears anywhere in the type.
    pub fn has_dynamic(&self) -> bool {
        match self {
            Type::String | Type::Number | Type::Bool => false,
            Type::Dynamic => true,
            Type::List(t) | Type::Set(t) | Type::Map(t) => t.has_dynamic(),
            Type::Object(attrs) => attrs.values().any(Type::has_dynamic),
            Type::Tuple(elems) => elems.iter().any(Type::has_dynamic),
        }
    }

    /// Whether the type is a list, set or map, the types that length refinements apply to.
    pub fn is_collection(&self) -> bool {
        matches!(self, Type::List(_) | Type::Set(_) | Type::Map(_))
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::String => f.write_str("string"),
            Type::Number => f.write_str("number"),
            Type::Bool => f.write_str("bool"),
            Type::Dynamic => f.write_str("dynamic"),
            Type::List(t) => write!(f, "list({t})"),
            Type::Set(t) => write!(f, "set({t})"),
            Type::Map(t) => write!(f, "map({t})"),
            Type::Object(attrs) => {
                f.write_str("object({")?;
                for (i, (k, t)) in attrs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{k}={t}")?;
                }
                f.write_str("})")
            }
            Type::Tuple(elems) => {
                f.write_str("tuple([")?;
                for (i, t) in elems.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{t}")?;
                }
                f.write_str("])")
            }
        }
    }
}

/// Refinements of an unknown value (cty's refined unknowns, msgpack ext 12).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Refinements {
    /// The value will definitely not be null (wire key 1 set to `false`).
    pub not_null: bool,
    /// A known prefix of a string value (wire key 2).
    pub string_prefix: Option<String>,
    /// Lower bound of a number and whether it is inclusive (wire key 3).
    pub number_lower: Option<(Number, bool)>,
    /// Upper bound of a number and whether it is inclusive (wire key 4).
    pub number_upper: Option<(Number, bool)>,
    /// Minimum length of a list, set or map (wire key 5).
    pub length_lower: Option<u64>,
    /// Maximum length of a list, set or map (wire key 6).
    pub length_upper: Option<u64>,
}

impl Refinements {
    /// Whether nothing at all is known about the value.
    pub fn is_empty(&self) -> bool {
        *self == Refinements::default()
    }

    /// The refinements that mean something for a value of type `ty`.
    ///
    /// Mirrors what cty keeps on the wire: refinements for another kind of type are dropped,
    /// and so are ones that say nothing (an empty prefix, an infinite bound on the open side,
    /// a minimum length of zero). An unknown of `dynamic` type cannot be refined at all.
    pub fn applicable_to(&self, ty: &Type) -> Refinements {
        if *ty == Type::Dynamic {
            return Refinements::default();
        }
        let mut out = Refinements {
            not_null: self.not_null,
            ..Refinements::default()
        };
        match ty {
            Type::String => {
                out.string_prefix = self.string_prefix.clone().filter(|p| !p.is_empty());
            }
            Type::Number => {
                out.number_lower = self
                    .number_lower
                    .clone()
                    .filter(|(n, _)| !n.is_neg_infinity());
                out.number_upper = self
                    .number_upper
                    .clone()
                    .filter(|(n, _)| !n.is_pos_infinity());
            }
            t if t.is_collection() => {
                out.length_lower = self.length_lower.filter(|&n| n > 0);
                out.length_upper = self.length_upper;
            }
            _ => {}
        }
        out
    }
}

/// A cty value. Values carry no type of their own; every operation takes the type they are
/// expected to have, as Terraform's wire formats do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Unknown(Refinements),
    String(String),
    Number(Number),
    Bool(bool),
    List(Vec<Value>),
    Set(Vec<Value>),
    Map(BTreeMap<String, Value>),
    Object(BTreeMap<String, Value>),
    Tuple(Vec<Value>),
    /// A known or null value held in a `dynamic`-typed slot, with the concrete type it was sent with,
    /// so it can be written back as `[type JSON, value]`.
    ///
    /// The inner value may also be unknown: cty sends an unknown of a known type in a dynamic
    /// slot with its type, while an unknown of unknown type is a plain [`Value::Unknown`].
    Dynamic(Type, Box<Value>),
}

impl Value {
    /// An unknown value with no refinements.
    pub fn unknown() -> Value {
        Value::Unknown(Refinements::default())
    }

    /// A string value.
    pub fn string(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }

    /// A number value.
    pub fn number(n: impl Into<Number>) -> Value {
        Value::Number(n.into())
    }

    /// A bool value.
    pub fn bool(b: bool) -> Value {
        Value::Bool(b)
    }

    /// Whether the value is null, looking through a dynamic wrapper.
    pub fn is_null(&self) -> bool {
        match self {
            Value::Null => true,
            Value::Dynamic(_, v) => v.is_null(),
            _ => false,
        }
    }

    /// Whether the value itself is unknown, looking through a dynamic wrapper.
    pub fn is_unknown(&self) -> bool {
        match self {
            Value::Unknown(_) => true,
            Value::Dynamic(_, v) => v.is_unknown(),
            _ => false,
        }
    }

    /// Whether no unknown appears anywhere inside the value.
    pub fn is_wholly_known(&self) -> bool {
        match self {
            Value::Unknown(_) => false,
            Value::Null | Value::String(_) | Value::Number(_) | Value::Bool(_) => true,
            Value::List(vs) | Value::Set(vs) | Value::Tuple(vs) => {
                vs.iter().all(Value::is_wholly_known)
            }
            Value::Map(m) | Value::Object(m) => m.values().all(Value::is_wholly_known),
            Value::Dynamic(_, v) => v.is_wholly_known(),
        }
    }

    /// An object's attribute, looking through a dynamic wrapper.
    pub fn get_attr(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Object(attrs) => attrs.get(name),
            Value::Dynamic(_, v) => v.get_attr(name),
            _ => None,
        }
    }

    /// The string, looking through a dynamic wrapper.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            Value::Dynamic(_, v) => v.as_str(),
            _ => None,
        }
    }

    /// The bool, looking through a dynamic wrapper.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            Value::Dynamic(_, v) => v.as_bool(),
            _ => None,
        }
    }

    /// The number, looking through a dynamic wrapper.
    pub fn as_number(&self) -> Option<&Number> {
        match self {
            Value::Number(n) => Some(n),
            Value::Dynamic(_, v) => v.as_number(),
            _ => None,
        }
    }

    /// A copy with every unknown replaced by null, like cty's `UnknownAsNull`.
    pub fn unknown_as_null(&self) -> Value {
        match self {
            Value::Unknown(_) => Value::Null,
            Value::Null | Value::String(_) | Value::Number(_) | Value::Bool(_) => self.clone(),
            Value::List(vs) => Value::List(vs.iter().map(Value::unknown_as_null).collect()),
            Value::Set(vs) => Value::Set(vs.iter().map(Value::unknown_as_null).collect()),
            Value::Tuple(vs) => Value::Tuple(vs.iter().map(Value::unknown_as_null).collect()),
            Value::Map(m) => Value::Map(unknown_as_null_map(m)),
            Value::Object(m) => Value::Object(unknown_as_null_map(m)),
            Value::Dynamic(t, v) => Value::Dynamic(t.clone(), Box::new(v.unknown_as_null())),
        }
    }

    /// A short name for the kind of value, for error messages.
    pub(crate) fn kind_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Unknown(_) => "unknown",
            Value::String(_) => "string",
            Value::Number(_) => "number",
            Value::Bool(_) => "bool",
            Value::List(_) => "list",
            Value::Set(_) => "set",
            Value::Map(_) => "map",
            Value::Object(_) => "object",
            Value::Tuple(_) => "tuple",
            Value::Dynamic(..) => "dynamically-typed value",
        }
    }

    /// Checks that the value has the shape of `ty`.
    ///
    /// Null and unknown conform to every type; objects need exactly the type's attributes;
    /// `dynamic` accepts any value, and [`Value::Dynamic`] is only accepted where the type is
    /// `dynamic`. The error names the path to the first mismatch.
    pub fn conforms_to(&self, ty: &Type) -> Result<(), ValueError> {
        self.conforms_at(ty, 0)
    }

    // The recursive path keeps its frames small (messages are built in separate non-inlined
    // functions) so the full nesting depth fits in a 2 MiB stack even in unoptimised builds.
    fn conforms_at(&self, ty: &Type, depth: usize) -> Result<(), ValueError> {
        if depth > MAX_DEPTH {
            return Err(ValueError::conformance("value is nested too deeply"));
        }
        let depth = depth + 1;
        match (ty, self) {
            (_, Value::Null | Value::Unknown(_)) => Ok(()),
            (Type::Dynamic, Value::Dynamic(t, v)) => v.conforms_at(t, depth),
            (Type::Dynamic, _) => Ok(()),
            (Type::String, Value::String(_))
            | (Type::Number, Value::Number(_))
            | (Type::Bool, Value::Bool(_)) => Ok(()),
            (Type::List(et), Value::List(vs)) | (Type::Set(et), Value::Set(vs)) => {
                elements_conform(vs, std::iter::repeat_n(et.as_ref(), vs.len()), depth)
            }
            (Type::Map(et), Value::Map(m)) => map_conforms(m, et, depth),
            (Type::Object(attrs), Value::Object(m)) => object_conforms(m, attrs, depth),
            (Type::Tuple(ets), Value::Tuple(vs)) => {
                if ets.len() != vs.len() {
                    return Err(conformance_error(format_args!(
                        "tuple of {} elements required, got {}",
                        ets.len(),
                        vs.len()
                    )));
                }
                elements_conform(vs, ets.iter(), depth)
            }
            _ => Err(conformance_error(format_args!(
                "{} required, got {}",
                type_kind_name(ty),
                self.kind_name()
            ))),
        }
    }
}

#[cold]
#[inline(never)]
fn conformance_error(reason: fmt::Arguments<'_>) -> ValueError {
    ValueError::conformance(reason.to_string())
}

#[inline(never)]
fn elements_conform<'t>(
    values: &[Value],
    types: impl Iterator<Item = &'t Type>,
    depth: usize,
) -> Result<(), ValueError> {
    for (i, (v, t)) in values.iter().zip(types).enumerate() {
        v.conforms_at(t, depth)
            .map_err(|e| e.under(PathStep::Index(i)))?;
    }
    Ok(())
}

#[inline(never)]
fn map_conforms(
    entries: &BTreeMap<String, Value>,
    elem_ty: &Type,
    depth: usize,
) -> Result<(), ValueError> {
    for (k, v) in entries {
        v.conforms_at(elem_ty, depth)
            .map_err(|e| e.under(PathStep::Key(k)))?;
    }
    Ok(())
}

#[inline(never)]
fn object_conforms(
    entries: &BTreeMap<String, Value>,
    attrs: &BTreeMap<String, Type>,
    depth: usize,
) -> Result<(), ValueError> {
    if let Some(extra) = entries.keys().find(|k| !attrs.contains_key(*k)) {
        return Err(conformance_error(format_args!(
            "unsupported attribute {extra:?}"
        )));
    }
    for (k, t) in attrs {
        let v = entries
            .get(k)
            .ok_or_else(|| conformance_error(format_args!("attribute {k:?} is required")))?;
        v.conforms_at(t, depth)
            .map_err(|e| e.under(PathStep::Attr(k)))?;
    }
    Ok(())
}

fn unknown_as_null_map(m: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    m.iter()
        .map(|(k, v)| (k.clone(), v.unknown_as_null()))
        .collect()
}

/// A short name for the kind of type, for error messages.
pub(crate) fn type_kind_name(ty: &Type) -> &'static str {
    match ty {
        Type::String => "string",
        Type::Number => "number",
        Type::Bool => "bool",
        Type::Dynamic => "dynamic",
        Type::List(_) => "list",
        Type::Set(_) => "set",
        Type::Map(_) => "map",
        Type::Object(_) => "object",
        Type::Tuple(_) => "tuple",
    }
}

/// Errors from building, checking, encoding or decoding values and types.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ValueError {
    /// Malformed or mistyped msgpack input.
    #[error("invalid msgpack at byte {offset}{}: {reason}", at_path(.path))]
    Msgpack {
        offset: usize,
        path: String,
        reason: String,
    },
    /// Malformed or mistyped JSON input, or a value that has no JSON form.
    #[error("invalid json value{}: {reason}", at_path(.path))]
    Json { path: String, reason: String },
    /// A malformed type description.
    #[error("invalid type: {0}")]
    Type(String),
    /// Text that is not a decimal number.
    #[error("invalid number {0}")]
    Number(String),
    /// A value that does not have the shape of the type it is used with.
    #[error("{}{reason}", path_prefix(.path))]
    Conformance { path: String, reason: String },
}

fn at_path(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" at {path}")
    }
}

fn path_prefix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("at {path}: ")
    }
}

impl ValueError {
    pub(crate) fn conformance(reason: impl Into<String>) -> ValueError {
        ValueError::Conformance {
            path: String::new(),
            reason: reason.into(),
        }
    }

    /// The path of the value that failed, such as `.disks[0].size`, or empty for the root.
    pub fn path(&self) -> &str {
        match self {
            ValueError::Msgpack { path, .. }
            | ValueError::Json { path, .. }
            | ValueError::Conformance { path, .. } => path,
            ValueError::Type(_) | ValueError::Number(_) => "",
        }
    }

    /// Prefixes the error's path with one step. Errors build their paths while unwinding, so
    /// the happy path pays nothing for tracking where it is.
    pub(crate) fn under(self, step: PathStep<'_>) -> ValueError {
        match self {
            ValueError::Msgpack {
                offset,
                path,
                reason,
            } => ValueError::Msgpack {
                offset,
                path: format!("{step}{path}"),
                reason,
            },
            ValueError::Json { path, reason } => ValueError::Json {
                path: format!("{step}{path}"),
                reason,
            },
            ValueError::Conformance { path, reason } => ValueError::Conformance {
                path: format!("{step}{path}"),
                reason,
            },
            // Decoders turn these into their own variants where they occur, with a position.
            ValueError::Type(_) | ValueError::Number(_) => self,
        }
    }
}

/// One step of a path into a value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PathStep<'a> {
    Attr(&'a str),
    Index(usize),
    Key(&'a str),
}

impl fmt::Display for PathStep<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathStep::Attr(name) => write!(f, ".{name}"),
            PathStep::Index(i) => write!(f, "[{i}]"),
            PathStep::Key(k) => write!(f, "[{k:?}]"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn obj<const N: usize>(entries: [(&str, Value); N]) -> Value {
        Value::Object(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    }

    #[test]
    fn type_json_round_trips() {
        let cases = [
            (Type::String, r#""string""#),
            (Type::Number, r#""number""#),
            (Type::Bool, r#""bool""#),
            (Type::Dynamic, r#""dynamic""#),
            (Type::list(Type::String), r#"["list","string"]"#),
            (Type::set(Type::Number), r#"["set","number"]"#),
            (Type::map(Type::Bool), r#"["map","bool"]"#),
            (
                Type::object([("b", Type::list(Type::Dynamic)), ("a", Type::Number)]),
                r#"["object",{"a":"number","b":["list","dynamic"]}]"#,
            ),
            (
                Type::object(Vec::<(String, Type)>::new()),
                r#"["object",{}]"#,
            ),
            (
                Type::Tuple(vec![Type::String, Type::map(Type::Number)]),
                r#"["tuple",["string",["map","number"]]]"#,
            ),
            (Type::Tuple(vec![]), r#"["tuple",[]]"#),
        ];
        for (ty, text) in cases {
            assert_eq!(String::from_utf8(ty.to_json_bytes()).unwrap(), text);
            assert_eq!(
                Type::from_json_bytes(text.as_bytes()).unwrap(),
                ty,
                "{text}"
            );
            assert_eq!(Type::from_json(&ty.to_json()).unwrap(), ty);
        }
    }

    #[test]
    fn type_json_ignores_optional_attribute_lists() {
        let ty = Type::from_json_bytes(br#"["object",{"a":"string","b":"number"},["b"]]"#).unwrap();
        assert_eq!(ty, Type::object([("a", Type::String), ("b", Type::Number)]));
    }

    #[test]
    fn malformed_type_json_is_an_error() {
        for text in [
            r#""strin""#,
            r#"["list"]"#,
            r#"["list","string","x"]"#,
            r#"["object",[]]"#,
            r#"["object",{"a":"string"},["a"],1]"#,
            r#"["tuple",{}]"#,
            r#"["tuple","string","x"]"#,
            r#"["foo","string"]"#,
            r#"[]"#,
            r#"[1,"string"]"#,
            "5",
            "null",
            "{}",
            "not json",
        ] {
            let err = Type::from_json_bytes(text.as_bytes()).unwrap_err();
            assert!(matches!(err, ValueError::Type(_)), "{text}: {err:?}");
            assert!(err.to_string().starts_with("invalid type: "), "{err}");
        }
    }

    #[test]
    fn type_display_is_terraform_syntax() {
        let ty = Type::object([
            ("b", Type::list(Type::String)),
            ("a", Type::Number),
            ("c", Type::Tuple(vec![Type::String, Type::Bool])),
            ("d", Type::map(Type::set(Type::Dynamic))),
        ]);
        assert_eq!(
            ty.to_string(),
            "object({a=number,b=list(string),c=tuple([string,bool]),d=map(set(dynamic))})"
        );
        assert!(ty.has_dynamic());
        assert!(!Type::object([("a", Type::list(Type::String))]).has_dynamic());
        assert!(Type::Tuple(vec![Type::Bool, Type::Dynamic]).has_dynamic());
    }

    #[test]
    fn conformance_checks_shape_and_names_the_path() {
        let disks = Type::object([(
            "data_disks",
            Type::list(Type::object([("disk_count", Type::Number)])),
        )]);
        let ok = [
            (Value::Null, Type::String),
            (Value::unknown(), Type::object([("a", Type::String)])),
            (Value::string("x"), Type::Dynamic),
            (
                Value::Dynamic(
                    Type::list(Type::Bool),
                    Box::new(Value::List(vec![Value::bool(true)])),
                ),
                Type::Dynamic,
            ),
            (
                obj([(
                    "data_disks",
                    Value::List(vec![obj([("disk_count", Value::Null)])]),
                )]),
                disks.clone(),
            ),
            (
                Value::Tuple(vec![Value::Null, Value::unknown()]),
                Type::Tuple(vec![Type::Bool, Type::Number]),
            ),
        ];
        for (value, ty) in ok {
            value.conforms_to(&ty).unwrap();
        }
        let bad = [
            (
                obj([(
                    "data_disks",
                    Value::List(vec![obj([("disk_count", Value::string("2"))])]),
                )]),
                disks.clone(),
                "at .data_disks[0].disk_count: number required, got string",
            ),
            (
                obj([("data_disks", Value::List(vec![obj([])]))]),
                disks.clone(),
                "at .data_disks[0]: attribute \"disk_count\" is required",
            ),
            (
                obj([("data_disks", Value::Null), ("extra", Value::Null)]),
                disks,
                "unsupported attribute \"extra\"",
            ),
            (
                Value::Map([("k\"ey".to_owned(), Value::bool(true))].into()),
                Type::map(Type::String),
                "at [\"k\\\"ey\"]: string required, got bool",
            ),
            (
                Value::Tuple(vec![Value::Null]),
                Type::Tuple(vec![Type::Bool, Type::Number]),
                "tuple of 2 elements required, got 1",
            ),
            (
                Value::Dynamic(Type::String, Box::new(Value::string("x"))),
                Type::String,
                "string required, got dynamically-typed value",
            ),
            (
                Value::Dynamic(Type::String, Box::new(Value::bool(true))),
                Type::Dynamic,
                "string required, got bool",
            ),
            (
                Value::List(vec![]),
                Type::set(Type::String),
                "set required, got list",
            ),
        ];
        for (value, ty, want) in bad {
            let err = value.conforms_to(&ty).unwrap_err();
            assert_eq!(err.to_string(), want);
        }
    }

    #[test]
    fn accessors_look_through_dynamic_wrappers() {
        let inner = obj([
            ("name", Value::string("n")),
            ("size", Value::number(3)),
            ("on", Value::bool(true)),
        ]);
        let dynamic = Value::Dynamic(
            Type::object([
                ("name", Type::String),
                ("size", Type::Number),
                ("on", Type::Bool),
            ]),
            Box::new(inner.clone()),
        );
        for v in [&inner, &dynamic] {
            assert_eq!(v.get_attr("name").and_then(Value::as_str), Some("n"));
            assert_eq!(
                v.get_attr("size")
                    .and_then(Value::as_number)
                    .and_then(Number::as_i64),
                Some(3)
            );
            assert_eq!(v.get_attr("on").and_then(Value::as_bool), Some(true));
            assert_eq!(v.get_attr("missing"), None);
        }
        assert!(Value::Dynamic(Type::String, Box::new(Value::Null)).is_null());
        assert!(Value::Dynamic(Type::String, Box::new(Value::unknown())).is_unknown());
        assert!(!Value::Dynamic(Type::String, Box::new(Value::unknown())).is_wholly_known());
        let partly = Value::List(vec![
            Value::Null,
            Value::Map([("k".to_owned(), Value::unknown())].into()),
        ]);
        assert!(!partly.is_unknown());
        assert!(!partly.is_wholly_known());
        let nulled = partly.unknown_as_null();
        assert!(nulled.is_wholly_known());
        assert_eq!(
            nulled,
            Value::List(vec![
                Value::Null,
                Value::Map([("k".to_owned(), Value::Null)].into())
            ])
        );
        assert_eq!(Value::number(5u32), Value::Number(Number::from_u64(5)));
        assert_eq!(Value::string("a").as_bool(), None);
    }

    #[test]
    fn refinements_keep_only_what_applies() {
        assert!(Refinements::default().is_empty());
        let r = Refinements {
            not_null: true,
            string_prefix: Some("p".to_owned()),
            number_lower: Some((Number::parse("-inf").unwrap(), true)),
            number_upper: Some((Number::from(9), false)),
            length_lower: Some(0),
            length_upper: Some(5),
        };
        assert!(!r.is_empty());
        let only_not_null = Refinements {
            not_null: true,
            ..Refinements::default()
        };
        assert_eq!(r.applicable_to(&Type::Bool), only_not_null);
        assert_eq!(r.applicable_to(&Type::Dynamic), Refinements::default());
        assert_eq!(
            r.applicable_to(&Type::String),
            Refinements {
                string_prefix: Some("p".to_owned()),
                ..only_not_null.clone()
            }
        );
        assert_eq!(
            r.applicable_to(&Type::Number),
            Refinements {
                number_upper: Some((Number::from(9), false)),
                ..only_not_null.clone()
            }
        );
        assert_eq!(
            r.applicable_to(&Type::map(Type::Bool)),
            Refinements {
                length_upper: Some(5),
                ..only_not_null
            }
        );
    }

    /// Builds a value nested `depth` levels deep in the given kind of container.
    fn nested(depth: usize, kind: usize) -> (Type, Value) {
        let mut ty = Type::String;
        let mut value = Value::string("x");
        for _ in 0..depth {
            (ty, value) = match kind {
                0 => (Type::list(ty), Value::List(vec![value])),
                1 => (Type::map(ty), Value::Map([("k".to_owned(), value)].into())),
                2 => (Type::object([("k", ty)]), obj([("k", value)])),
                3 => (Type::Tuple(vec![ty]), Value::Tuple(vec![value])),
                _ => (Type::Dynamic, Value::Dynamic(ty, Box::new(value))),
            };
        }
        (ty, value)
    }

    #[test]
    fn maximum_nesting_fits_in_a_small_stack() {
        // Providers run on tokio worker threads with 2 MiB stacks; half of that must be enough
        // at the deepest nesting the codecs accept, even without optimisation.
        let worker = std::thread::Builder::new().stack_size(1 << 20).spawn(|| {
            for kind in 0..5 {
                // A dynamic type's JSON is nested too, and serde_json stops at 128 levels.
                let depth = if kind == 4 { 120 } else { MAX_DEPTH - 2 };
                let (ty, value) = nested(depth, kind);
                value.conforms_to(&ty).unwrap();
                let bytes = msgpack::encode(&value, &ty).unwrap();
                assert_eq!(msgpack::decode(&bytes, &ty).unwrap(), value);
                let json = json::to_json(&value, &ty).unwrap();
                assert_eq!(json::from_json(&json, &ty).unwrap(), value);

                let (ty, value) = nested(MAX_DEPTH + 10, kind);
                assert!(value.conforms_to(&ty).is_err());
                assert!(msgpack::encode(&value, &ty).is_err());
                assert!(json::to_json(&value, &ty).is_err());
            }
        });
        worker.unwrap().join().unwrap();
    }
}
