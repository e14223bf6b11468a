//! Conversions between cty [`Value`]s and a resource's own serde types, so resource code works
//! with plain Rust structs (`Option` for null, nested structs for blocks).
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::diag::{Diagnostic, Diagnostics};
use crate::value::{Type, Value, json};

/// Decodes a wholly known value into `T`. Unknown values are an error: decode configuration in
/// validation only once the relevant parts are known.
pub fn decode<T: DeserializeOwned>(value: &Value, ty: &Type) -> Result<T, Diagnostics> {
    let json = json::to_json(value, ty)
        .map_err(|e| Diagnostic::internal(format!("cannot convert a value to JSON: {e}")))?;
    serde_json::from_value(json).map_err(|e| {
        Diagnostic::internal(format!("the value does not match the resource model: {e}")).into()
    })
}

/// Encodes a model as a value of type `ty`; every attribute of the type must be a field.
pub fn encode<T: Serialize>(model: &T, ty: &Type) -> Result<Value, Diagnostics> {
    let json = serde_json::to_value(model)
        .map_err(|e| Diagnostic::internal(format!("cannot serialise the resource model: {e}")))?;
    json::from_json(&json, ty).map_err(|e| {
        Diagnostic::internal(format!("the resource model does not match its schema: {e}")).into()
    })
}
