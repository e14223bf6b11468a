//! Provider-defined functions (Terraform 1.8+, OpenTofu 1.7+): a typed signature and a pure
//! `call` on decoded values, served by `GetFunctions` and `CallFunction`.
//!
//! Functions must be pure: Terraform may call them before `ConfigureProvider` (in `validate`,
//! in `terraform console`) and expects the same result for the same arguments, so they get no
//! client, no configuration and no context for I/O.
use crate::value::{Type, Value};

/// One positional parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameter {
    /// Shown in Terraform's errors and in the documentation.
    pub name: String,
    /// The type constraint; [`Type::Dynamic`] accepts any value, with its type.
    pub ty: Type,
    /// Markdown.
    pub description: String,
    /// Without it Terraform refuses a null argument itself and the function never sees one.
    pub allow_null: bool,
    /// Without it Terraform does not call the function while the argument is not wholly known,
    /// and takes the result as unknown.
    pub allow_unknown: bool,
}

impl Parameter {
    pub fn new(name: &str, ty: Type, description: &str) -> Self {
        Self {
            name: name.to_owned(),
            ty,
            description: description.to_owned(),
            allow_null: false,
            allow_unknown: false,
        }
    }

    #[must_use]
    pub fn allow_null(mut self) -> Self {
        self.allow_null = true;
        self
    }

    #[must_use]
    pub fn allow_unknown(mut self) -> Self {
        self.allow_unknown = true;
        self
    }
}

/// What a function takes and returns, and its documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub parameters: Vec<Parameter>,
    /// A last parameter that takes any number of arguments.
    pub variadic: Option<Parameter>,
    pub returns: Type,
    /// One line, shown by editors and on the documentation page's front matter.
    pub summary: String,
    /// Markdown.
    pub description: String,
    /// Set when the function is deprecated: what to use instead.
    pub deprecation_message: Option<String>,
    /// Terraform configuration for the documentation's "Example Usage".
    pub example: Option<String>,
}

impl Signature {
    pub fn new(summary: &str, parameters: Vec<Parameter>, returns: Type) -> Self {
        Self {
            parameters,
            variadic: None,
            returns,
            summary: summary.to_owned(),
            description: String::new(),
            deprecation_message: None,
            example: None,
        }
    }

    #[must_use]
    pub fn description(mut self, description: &str) -> Self {
        self.description = description.to_owned();
        self
    }

    #[must_use]
    pub fn example(mut self, example: &str) -> Self {
        self.example = Some(example.to_owned());
        self
    }

    /// The parameter argument `index` is checked against (the variadic one past the end).
    pub fn parameter(&self, index: usize) -> Option<&Parameter> {
        self.parameters.get(index).or(self.variadic.as_ref())
    }
}

/// A failed call: the text Terraform shows, and the zero-based index of the argument at fault
/// when one is (Terraform then points at that argument in the configuration).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text}")]
pub struct FunctionError {
    pub text: String,
    pub argument: Option<usize>,
}

impl FunctionError {
    /// The argument at `index` is wrong.
    pub fn argument(index: usize, text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            argument: Some(index),
        }
    }

    /// A failure that is no single argument's.
    pub fn general(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            argument: None,
        }
    }
}

/// A provider-defined function, called in configuration as `provider::<provider>::<name>(...)`.
pub trait Function: Send + Sync + 'static {
    /// The name after `provider::<provider>::`: lowercase letters, digits and `_`.
    fn name(&self) -> &'static str;

    fn signature(&self) -> Signature;

    /// Computes the result from arguments decoded with their parameters' types (a value of a
    /// `dynamic` parameter arrives unwrapped, as its concrete value). The framework checks the
    /// argument count, turns a panic into an error, and checks the result against
    /// [`Signature::returns`]. Must be pure.
    fn call(&self, arguments: &[Value]) -> Result<Value, FunctionError>;
}

impl Signature {
    /// The signature as `terraform providers schema -json` prints it (its `functions` map).
    pub fn to_terraform_json(&self) -> serde_json::Value {
        let parameter = |p: &Parameter| {
            let mut m = serde_json::Map::new();
            m.insert("name".into(), p.name.clone().into());
            if !p.description.is_empty() {
                m.insert("description".into(), p.description.clone().into());
            }
            if p.allow_null {
                m.insert("is_nullable".into(), true.into());
            }
            m.insert("type".into(), p.ty.to_json());
            serde_json::Value::Object(m)
        };
        let mut out = serde_json::Map::new();
        if !self.description.is_empty() {
            out.insert("description".into(), self.description.clone().into());
        }
        if !self.summary.is_empty() {
            out.insert("summary".into(), self.summary.clone().into());
        }
        if let Some(message) = &self.deprecation_message {
            out.insert("deprecation_message".into(), message.clone().into());
        }
        out.insert("return_type".into(), self.returns.to_json());
        if !self.parameters.is_empty() {
            out.insert(
                "parameters".into(),
                self.parameters.iter().map(parameter).collect(),
            );
        }
        if let Some(variadic) = &self.variadic {
            out.insert("variadic_parameter".into(), parameter(variadic));
        }
        serde_json::Value::Object(out)
    }
}
