//! Resource models: the typed Rust structs a schema is declared on (`#[derive(Model)]`), and
//! the conversions between them and cty [`Value`]s (`Option` for null, nested structs for
//! blocks).
use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value as Json;

use crate::diag::{AttributePath, Diagnostic, Diagnostics};
use crate::schema::Block;
use crate::value::{Number, Type, Value, json};

pub use tfplug_derive::Model;

/// A typed model of a block: the schema is derived from the struct (`#[derive(Model)]`), so
/// every attribute is declared once, next to the field it fills.
///
/// The derive reads `#[tf(...)]` on the struct and its fields:
/// - fields: `required`, `optional`, `computed` (with `optional`: the provider may choose),
///   `default = <literal>` (optional and computed; the planner plans it), `replace` (a change
///   forces replacement), `live` (computed, changed by the platform on its own: unknown in the
///   plan of an in-place update, which reads it again), `sensitive`, `write_only`, `deprecated`, `block` (a nested block:
///   `Option<T>` is a single block, `Vec<T>` a list; `required` makes a single block
///   required), `flatten` (the field's own model's attributes and blocks join this block),
///   `skip` (not in the schema), and validators: `range(min, max)`, `one_of("a", "b")`,
///   `one_of_ignoring_case(...)`, `validate = path` (`fn(&T) -> Result<(), E: Display>` on the
///   known value), with `summary = "..."` for the diagnostic's summary;
/// - the struct: `exactly_one_of(a, b)`, `check = path` (`fn(&Self) -> Diagnostics`, unknowns
///   as `None`) or `check(path, known(a, b))` (runs once `a` and `b` are known);
/// - doc comments become descriptions (Markdown), lines joined with spaces and blank lines
///   kept as paragraph breaks.
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize, tfplug::Model)]
/// #[tf(exactly_one_of(a, b))]
/// struct Choice {
///     /// Words.
///     #[tf(optional, one_of("x", "y"))]
///     a: Option<String>,
///     #[tf(default = 2, range(1, 9))]
///     b: Option<u32>,
/// }
/// ```
///
/// Mistakes are compile errors: a check naming a field the model does not have,
///
/// ```compile_fail
/// #[derive(serde::Serialize, serde::Deserialize, tfplug::Model)]
/// #[tf(exactly_one_of(a, typo))]
/// struct Choice {
///     #[tf(optional)]
///     a: Option<String>,
/// }
/// ```
///
/// a validator of another type than its field's,
///
/// ```compile_fail
/// #[derive(serde::Serialize, serde::Deserialize, tfplug::Model)]
/// struct Choice {
///     #[tf(optional, range(1, 9))]
///     a: Option<String>,
/// }
/// ```
///
/// a field that does not say how it is set,
///
/// ```compile_fail
/// #[derive(serde::Serialize, serde::Deserialize, tfplug::Model)]
/// struct Choice {
///     a: Option<String>,
/// }
/// ```
///
/// or a flag a block cannot have.
///
/// ```compile_fail
/// #[derive(serde::Serialize, serde::Deserialize, tfplug::Model)]
/// struct Inner {
///     #[tf(optional)]
///     a: Option<String>,
/// }
/// #[derive(serde::Serialize, serde::Deserialize, tfplug::Model)]
/// struct Outer {
///     #[tf(block, sensitive)]
///     inner: Option<Inner>,
/// }
/// ```
pub trait Model: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The block this model is: attributes, nested blocks, validators, defaults, checks.
    fn block() -> Block;
}

/// The cty type of a model field's Rust type.
pub trait AttributeType {
    fn attribute_type() -> Type;
}

macro_rules! attribute_types {
    ($($rust:ty => $cty:expr),* $(,)?) => {
        $(impl AttributeType for $rust {
            fn attribute_type() -> Type {
                $cty
            }
        })*
    };
}

attribute_types! {
    String => Type::String,
    bool => Type::Bool,
    u8 => Type::Number, u16 => Type::Number, u32 => Type::Number, u64 => Type::Number,
    i8 => Type::Number, i16 => Type::Number, i32 => Type::Number, i64 => Type::Number,
    f64 => Type::Number,
    Json => Type::Dynamic,
}

impl<T: AttributeType> AttributeType for Option<T> {
    fn attribute_type() -> Type {
        T::attribute_type()
    }
}

impl<T: AttributeType> AttributeType for Vec<T> {
    fn attribute_type() -> Type {
        Type::list(T::attribute_type())
    }
}

impl<T: AttributeType> AttributeType for BTreeSet<T> {
    fn attribute_type() -> Type {
        Type::set(T::attribute_type())
    }
}

impl<T: AttributeType> AttributeType for BTreeMap<String, T> {
    fn attribute_type() -> Type {
        Type::map(T::attribute_type())
    }
}

/// A literal written as a declared default (`default = 1`, `default = "normal"`).
pub trait Literal {
    fn into_value(self) -> Value;
}

impl Literal for &str {
    fn into_value(self) -> Value {
        Value::string(self)
    }
}

impl Literal for bool {
    fn into_value(self) -> Value {
        Value::Bool(self)
    }
}

impl Literal for i32 {
    fn into_value(self) -> Value {
        Value::Number(Number::from_i64(i64::from(self)))
    }
}

impl Literal for f64 {
    fn into_value(self) -> Value {
        Number::from_f64(self).map_or(Value::Null, Value::Number)
    }
}

/// A declared default as a value; null when the literal does not fit the field's Rust type
/// (`default = 1.5` on a `u32`), which `Schema::validate` reports as a schema error.
pub fn default_value<T: DeserializeOwned + AttributeType>(literal: impl Literal) -> Value {
    let value = literal.into_value();
    match decode_attribute::<T>(&value) {
        Ok(_) => value,
        Err(_) => Value::Null,
    }
}

/// A known attribute value that does not fit its field's Rust type.
#[derive(Debug, thiserror::Error)]
pub enum AttributeError {
    #[error("the value does not match the attribute's type: {0}")]
    Value(#[from] crate::value::ValueError),
    #[error("the value does not fit the field: {0}")]
    Field(#[from] serde_json::Error),
}

/// Decodes one known attribute value for a declared validator.
pub fn decode_attribute<T: DeserializeOwned + AttributeType>(
    value: &Value,
) -> Result<T, AttributeError> {
    let json = json::to_json(value, &T::attribute_type())?;
    Ok(serde_json::from_value(json)?)
}

/// Decodes a block value for a declared block check: unknowns arrive as null, collections
/// that are null as empty. `None` when the value does not fit the model (the number checks
/// report that).
///
/// The value is read as far as the model declares it: attributes the model does not have (the
/// framework's `timeouts` block around a resource's own model) are left out, and missing ones
/// read as null.
pub fn decode_partial<T: Model>(value: &Value) -> Option<T> {
    let block = T::block();
    let ty = block.implied_type();
    let known = attributes_known_or_null(&block, value);
    let mut json = json::to_json(&conform(&known.unknown_as_null(), &ty), &ty).ok()?;
    empty_collections_for_nulls(&mut json, &ty);
    serde_json::from_value(json).ok()
}

/// `value` with every attribute that is not wholly known as null: a map with one unknown value
/// is not a map with a null value, which the model's `BTreeMap<String, String>` could not hold
/// (and no check could judge anyway).
fn attributes_known_or_null(block: &Block, value: &Value) -> Value {
    let Value::Object(attrs) = value else {
        return value.clone();
    };
    let mut out = attrs.clone();
    for a in &block.attributes {
        if let Some(v) = out.get_mut(&a.name)
            && !v.is_wholly_known()
        {
            *v = Value::Null;
        }
    }
    for b in &block.blocks {
        let Some(v) = out.get_mut(&b.type_name) else {
            continue;
        };
        let filled = match &*v {
            Value::List(items) => Value::List(
                items
                    .iter()
                    .map(|i| attributes_known_or_null(&b.block, i))
                    .collect(),
            ),
            Value::Set(items) => Value::Set(
                items
                    .iter()
                    .map(|i| attributes_known_or_null(&b.block, i))
                    .collect(),
            ),
            Value::Map(items) => Value::Map(
                items
                    .iter()
                    .map(|(k, i)| (k.clone(), attributes_known_or_null(&b.block, i)))
                    .collect(),
            ),
            other => attributes_known_or_null(&b.block, other),
        };
        *v = filled;
    }
    Value::Object(out)
}

/// `value` with exactly the attributes of the object types in `ty`: others dropped, missing
/// ones null.
fn conform(value: &Value, ty: &Type) -> Value {
    match (value, ty) {
        (Value::Object(attrs), Type::Object(fields)) => Value::Object(
            fields
                .iter()
                .map(|(name, field)| {
                    let v = attrs.get(name).map_or(Value::Null, |v| conform(v, field));
                    (name.clone(), v)
                })
                .collect(),
        ),
        (Value::List(items), Type::List(element)) => {
            Value::List(items.iter().map(|v| conform(v, element)).collect())
        }
        (Value::Set(items), Type::Set(element)) => {
            Value::Set(items.iter().map(|v| conform(v, element)).collect())
        }
        (Value::Map(items), Type::Map(element)) => Value::Map(
            items
                .iter()
                .map(|(k, v)| (k.clone(), conform(v, element)))
                .collect(),
        ),
        _ => value.clone(),
    }
}

/// Decodes a wholly known value into `T`. Unknown values are an error: decode configuration in
/// validation only once the relevant parts are known.
///
/// cty has one number type, so a model's integer fields are where `1.5`, `-1` or `1e12` meet
/// their real range. Such a number is the user's mistake, not the provider's: it becomes an error
/// at the attribute's path, found generically for every integer field of every model.
pub fn decode<T: DeserializeOwned>(value: &Value, ty: &Type) -> Result<T, Diagnostics> {
    let json = json::to_json(value, ty)
        .map_err(|e| Diagnostic::internal(format!("cannot convert a value to JSON: {e}")))?;
    serde_json::from_value(json.clone()).map_err(|e| {
        numbers_out_of_range::<T>(&json, ty).unwrap_or_else(|| {
            Diagnostic::internal(format!("the value does not match the resource model: {e}")).into()
        })
    })
}

/// The same number checks as [`decode`], for validation, where parts of the configuration may
/// still be unknown (they are skipped, as null: configurable fields are `Option`s). `1.5` for an
/// integer field is then reported at plan time, at its attribute path, instead of failing the
/// apply. Call it from `Resource::validate` with the resource's model.
pub fn check_numbers<T: DeserializeOwned>(config: &Value, ty: &Type) -> Diagnostics {
    let Ok(mut json) = json::to_json(&config.unknown_as_null(), ty) else {
        return Diagnostics::new();
    };
    // An unknown collection (a `dynamic` block over an unknown list) decodes as empty: models
    // may hold collections as plain `Vec`s.
    empty_collections_for_nulls(&mut json, ty);
    if serde_json::from_value::<T>(json.clone()).is_ok() {
        return Diagnostics::new();
    }
    numbers_out_of_range::<T>(&json, ty).unwrap_or_default()
}

fn empty_collections_for_nulls(json: &mut Json, ty: &Type) {
    match (json, ty) {
        (json @ Json::Null, Type::List(_) | Type::Set(_)) => *json = Json::Array(Vec::new()),
        (json @ Json::Null, Type::Map(_)) => *json = Json::Object(serde_json::Map::new()),
        (Json::Object(map), Type::Object(fields)) => {
            for (key, value) in map.iter_mut() {
                if let Some(field) = fields.get(key) {
                    empty_collections_for_nulls(value, field);
                }
            }
        }
        (Json::Object(map), Type::Map(element)) => {
            for value in map.values_mut() {
                empty_collections_for_nulls(value, element);
            }
        }
        (Json::Array(items), Type::List(element) | Type::Set(element)) => {
            for value in items {
                empty_collections_for_nulls(value, element);
            }
        }
        (Json::Array(items), Type::Tuple(elements)) => {
            for (value, element) in items.iter_mut().zip(elements) {
                empty_collections_for_nulls(value, element);
            }
        }
        _ => {}
    }
}

/// Encodes a model as a value of type `ty`; every attribute of the type must be a field.
pub fn encode<T: Serialize>(model: &T, ty: &Type) -> Result<Value, Diagnostics> {
    let json = serde_json::to_value(model)
        .map_err(|e| Diagnostic::internal(format!("cannot serialise the resource model: {e}")))?;
    json::from_json(&json, ty).map_err(|e| {
        Diagnostic::internal(format!("the resource model does not match its schema: {e}")).into()
    })
}

/// Errors for numbers that do not fit their integer fields, at the fields' paths; `None` when
/// the failure is not about numbers.
///
/// serde (with arbitrary-precision numbers) says only "invalid number", so the fields are found
/// by probing: with every number set to 0, which any numeric field accepts, the value must
/// decode; then each number that fails alone is one of the user's mistakes, and the values its
/// field accepts tell its range.
fn numbers_out_of_range<T: DeserializeOwned>(json: &Json, ty: &Type) -> Option<Diagnostics> {
    let mut leaves = Vec::new();
    number_leaves(
        json,
        ty,
        &AttributePath::root(),
        &mut Vec::new(),
        &mut leaves,
    );
    let mut zeroed = json.clone();
    for leaf in &leaves {
        if let Some(slot) = pointer_mut(&mut zeroed, &leaf.pointer) {
            *slot = Json::from(0);
        }
    }
    if serde_json::from_value::<T>(zeroed.clone()).is_err() {
        return None;
    }
    let fits = |leaf: &Leaf, number: Json| {
        let mut probe = zeroed.clone();
        if let Some(slot) = pointer_mut(&mut probe, &leaf.pointer) {
            *slot = number;
        }
        serde_json::from_value::<T>(probe).is_ok()
    };
    let mut diags = Diagnostics::new();
    for leaf in &leaves {
        if fits(leaf, Json::Number(leaf.number.clone())) {
            continue;
        }
        let number = leaf.number.to_string();
        let name = if leaf.path.is_root() {
            "the value".to_owned()
        } else {
            leaf.path.to_string()
        };
        let detail = if number.parse::<i128>().is_ok() {
            let max = INTEGER_MAXIMA
                .iter()
                .copied()
                .filter(|max| fits(leaf, Json::from(*max)))
                .max();
            let min = if fits(leaf, Json::from(-1)) {
                max.map_or(i128::from(i64::MIN), |m| -i128::from(m) - 1)
            } else {
                0
            };
            match max {
                Some(max) => {
                    format!("{name} must be a whole number from {min} to {max}, got {number}")
                }
                None => format!("{name} is out of range, got {number}"),
            }
        } else {
            format!("{name} must be a whole number, got {number}")
        };
        let diagnostic = Diagnostic::error("invalid number", detail);
        diags.push(if leaf.path.is_root() {
            diagnostic
        } else {
            diagnostic.at(leaf.path.clone())
        });
    }
    (!diags.is_empty()).then_some(diags)
}

/// The largest value of each integer type, for telling a field's range.
const INTEGER_MAXIMA: [u64; 8] = [
    i8::MAX as u64,
    u8::MAX as u64,
    i16::MAX as u64,
    u16::MAX as u64,
    i32::MAX as u64,
    u32::MAX as u64,
    i64::MAX as u64,
    u64::MAX,
];

struct Leaf {
    number: serde_json::Number,
    path: AttributePath,
    /// Steps into the JSON document, object keys and array indices.
    pointer: Vec<Step>,
}

#[derive(Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// Every number in `json`, with its Terraform path (set elements have none of their own, so
/// their path ends at the set) and its place in the document.
fn number_leaves(
    json: &Json,
    ty: &Type,
    path: &AttributePath,
    pointer: &mut Vec<Step>,
    out: &mut Vec<Leaf>,
) {
    match (json, ty) {
        (Json::Number(n), _) => out.push(Leaf {
            number: n.clone(),
            path: path.clone(),
            pointer: pointer.clone(),
        }),
        (Json::Object(map), Type::Object(fields)) => {
            for (key, value) in map {
                let Some(field) = fields.get(key) else {
                    continue;
                };
                pointer.push(Step::Key(key.clone()));
                number_leaves(value, field, &path.clone().attr(key), pointer, out);
                pointer.pop();
            }
        }
        (Json::Object(map), Type::Map(element)) => {
            for (key, value) in map {
                pointer.push(Step::Key(key.clone()));
                number_leaves(value, element, &path.clone().key(key), pointer, out);
                pointer.pop();
            }
        }
        (Json::Array(items), Type::List(element) | Type::Set(element)) => {
            let set = matches!(ty, Type::Set(_));
            for (i, value) in items.iter().enumerate() {
                pointer.push(Step::Index(i));
                let at = if set {
                    path.clone()
                } else {
                    path.clone().index(i64::try_from(i).unwrap_or(i64::MAX))
                };
                number_leaves(value, element, &at, pointer, out);
                pointer.pop();
            }
        }
        (Json::Array(items), Type::Tuple(elements)) => {
            for (i, (value, element)) in items.iter().zip(elements).enumerate() {
                pointer.push(Step::Index(i));
                let at = path.clone().index(i64::try_from(i).unwrap_or(i64::MAX));
                number_leaves(value, element, &at, pointer, out);
                pointer.pop();
            }
        }
        _ => {}
    }
}

fn pointer_mut<'a>(json: &'a mut Json, pointer: &[Step]) -> Option<&'a mut Json> {
    pointer.iter().try_fold(json, |node, step| match step {
        Step::Key(k) => node.get_mut(k.as_str()),
        Step::Index(i) => node.get_mut(*i),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde::Deserialize;

    use super::*;
    use crate::diag::Severity;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Model {
        name: Option<String>,
        ratio: Option<f64>,
        node_count: Option<u32>,
        offset: Option<i8>,
        scale: Option<Scale>,
        disks: Option<Vec<Disk>>,
        #[serde(default)]
        tags: Vec<String>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Scale {
        target_node_count: u32,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Disk {
        size_gb: u64,
    }

    fn ty() -> Type {
        Type::object([
            ("name", Type::String),
            ("ratio", Type::Number),
            ("node_count", Type::Number),
            ("offset", Type::Number),
            ("scale", Type::object([("target_node_count", Type::Number)])),
            (
                "disks",
                Type::list(Type::object([("size_gb", Type::Number)])),
            ),
            ("tags", Type::list(Type::String)),
        ])
    }

    fn value(json: serde_json::Value) -> Value {
        json::from_json(&json, &ty()).unwrap()
    }

    #[test]
    fn numbers_that_do_not_fit_an_integer_field_are_errors_at_their_path() {
        let base = serde_json::json!({
            "name": "a", "ratio": null, "node_count": 2, "offset": null, "scale": null, "disks": null,
            "tags": []
        });
        let with = |key: &str, v: serde_json::Value| {
            let mut j = base.clone();
            j[key] = v;
            j
        };
        let cases = [
            (
                with("node_count", serde_json::json!(1.5)),
                "node_count",
                "node_count must be a whole number, got 1.5",
            ),
            (
                with("node_count", serde_json::json!(-1)),
                "node_count",
                "node_count must be a whole number from 0 to 4294967295, got -1",
            ),
            (
                with("offset", serde_json::json!(300)),
                "offset",
                "offset must be a whole number from -128 to 127, got 300",
            ),
            (
                with("scale", serde_json::json!({"target_node_count": 2.5})),
                "scale.target_node_count",
                "scale.target_node_count must be a whole number, got 2.5",
            ),
            (
                with(
                    "disks",
                    serde_json::json!([{"size_gb": 10}, {"size_gb": 0.5}]),
                ),
                "disks[1].size_gb",
                "disks[1].size_gb must be a whole number, got 0.5",
            ),
            // The same number in a float field first: only the integer field is blamed.
            (
                {
                    let mut j = with("ratio", serde_json::json!(1.5));
                    j["node_count"] = serde_json::json!(1.5);
                    j
                },
                "node_count",
                "node_count must be a whole number, got 1.5",
            ),
        ];
        for (json, path, detail) in cases {
            let err = decode::<Model>(&value(json.clone()), &ty()).unwrap_err();
            let d = err.iter().next().unwrap();
            assert_eq!(d.severity, Severity::Error, "{json}");
            assert!(!d.summary.contains("internal-error"), "{json}: {d}");
            assert_eq!(d.detail, detail, "{json}");
            assert_eq!(
                d.path.as_ref().map(ToString::to_string).as_deref(),
                Some(path)
            );
        }
    }

    #[test]
    fn validation_reports_the_same_numbers_and_skips_unknowns() {
        let config = Value::Object(
            [
                ("name".to_owned(), Value::unknown()),
                ("ratio".to_owned(), Value::Null),
                (
                    "node_count".to_owned(),
                    Value::Number(Number::parse("1.5").unwrap()),
                ),
                ("offset".to_owned(), Value::unknown()),
                ("scale".to_owned(), Value::unknown()),
                ("disks".to_owned(), Value::Null),
                ("tags".to_owned(), Value::unknown()),
            ]
            .into(),
        );
        let diags = check_numbers::<Model>(&config, &ty());
        assert_eq!(diags.0.len(), 1, "{diags}");
        assert_eq!(
            diags.0[0].detail,
            "node_count must be a whole number, got 1.5"
        );
        let fine = value(serde_json::json!({
            "name": "a", "ratio": 0.5, "node_count": 3, "offset": -3, "scale": null, "disks": null,
            "tags": ["x"]
        }));
        assert!(check_numbers::<Model>(&fine, &ty()).is_empty());
    }

    #[test]
    fn other_mismatches_stay_internal_errors() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Strict {
            name: u32,
        }
        let ty = Type::object([("name", Type::String)]);
        let v = json::from_json(&serde_json::json!({"name": "x"}), &ty).unwrap();
        let err = decode::<Strict>(&v, &ty).unwrap_err();
        assert!(err.to_string().contains("internal-error"), "{err}");
    }
}
