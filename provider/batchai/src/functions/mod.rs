//! Provider-defined functions, `provider::batchai::<name>(...)` (Terraform 1.8+, OpenTofu 1.7+):
//! pure computations over this provider's IDs, VM sizes and job layout, callable before the
//! provider is configured.
mod job_output_path;
mod parse_id;
mod vm_size;

use std::collections::BTreeMap;

use tfplug::{Function, Value};

pub use self::job_output_path::JobOutputPath;
pub use self::parse_id::ParseId;
pub use self::vm_size::VmSize;

/// Every function the provider serves.
pub fn all() -> Vec<Box<dyn Function>> {
    vec![Box::new(JobOutputPath), Box::new(ParseId), Box::new(VmSize)]
}

/// An object value from its attributes.
fn object<const N: usize>(attrs: [(&str, Value); N]) -> Value {
    Value::Object(
        attrs
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect::<BTreeMap<_, _>>(),
    )
}

/// A string, or null for none.
fn string_or_null(text: Option<&str>) -> Value {
    text.map_or(Value::Null, Value::string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_every_function_documents_itself_with_an_example() {
        let mut names = std::collections::BTreeSet::new();
        for function in all() {
            let signature = function.signature();
            assert!(names.insert(function.name()), "{}", function.name());
            assert!(!signature.summary.is_empty(), "{}", function.name());
            assert!(!signature.description.is_empty(), "{}", function.name());
            let example = signature.example.unwrap_or_default();
            assert!(
                example.contains(&format!("provider::batchai::{}(", function.name())),
                "{}: {example}",
                function.name()
            );
            for p in &signature.parameters {
                assert!(!p.description.is_empty(), "{}.{}", function.name(), p.name);
            }
        }
        assert_eq!(names.len(), 3);
    }
}
