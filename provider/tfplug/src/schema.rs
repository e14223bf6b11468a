//! The schema model: blocks, attributes and nested attributes, their implied cty types, and the
//! validity rules Terraform enforces when it loads a provider.
use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value as Json, json};

use crate::validate::{BlockCheck, Validator};
use crate::value::{Type, Value};

/// A resource, data source or provider schema with its state version.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    /// The state schema version; stored state with a lower version goes through `upgrade`.
    pub version: i64,
    pub block: Block,
}

/// A configuration block: attributes plus nested blocks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Block {
    pub attributes: Vec<Attribute>,
    pub blocks: Vec<NestedBlock>,
    /// Markdown.
    pub description: String,
    pub deprecated: bool,
    /// Checks across the block's attributes and blocks ("exactly one of"), run by
    /// `ValidateResourceConfig`; not part of the served schema.
    pub checks: Vec<BlockCheck>,
}

/// How nested blocks repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nesting {
    Single,
    List,
    Set,
    Map,
    Group,
}

/// How nested attributes repeat (protocol 6 only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectNesting {
    Single,
    List,
    Set,
    Map,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NestedBlock {
    pub type_name: String,
    pub block: Block,
    pub nesting: Nesting,
    pub min_items: i64,
    pub max_items: i64,
    /// Any change inside the block forces replacement of the whole resource.
    pub force_new: bool,
}

/// An attribute's value shape: a plain type or nested attributes.
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeType {
    Type(Type),
    Nested {
        nesting: ObjectNesting,
        attributes: Vec<Attribute>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    pub name: String,
    pub ty: AttributeType,
    /// Markdown.
    pub description: String,
    pub required: bool,
    pub optional: bool,
    pub computed: bool,
    pub sensitive: bool,
    pub deprecated: bool,
    pub write_only: bool,
    /// A change of this attribute forces replacement; planning adds it to `requires_replace`.
    pub force_new: bool,
    /// What the planner plans when configuration leaves the attribute null (optional and
    /// computed attributes only); not part of the served schema, which has no defaults.
    pub default: Option<Value>,
    /// Checks of a known, non-null value, run by `ValidateResourceConfig`.
    pub validators: Vec<Validator>,
    /// The platform changes this computed value on its own (a job's state, a cluster's node
    /// count): an in-place update reads it again, so the planner leaves it unknown there.
    pub live: bool,
}

impl Attribute {
    fn new(name: &str, ty: Type) -> Self {
        Self {
            name: name.to_owned(),
            ty: AttributeType::Type(ty),
            description: String::new(),
            required: false,
            optional: false,
            computed: false,
            sensitive: false,
            deprecated: false,
            write_only: false,
            force_new: false,
            default: None,
            validators: Vec::new(),
            live: false,
        }
    }

    pub fn required(name: &str, ty: Type) -> Self {
        Self {
            required: true,
            ..Self::new(name, ty)
        }
    }

    pub fn optional(name: &str, ty: Type) -> Self {
        Self {
            optional: true,
            ..Self::new(name, ty)
        }
    }

    /// Optional in configuration; when omitted the provider chooses the value.
    pub fn optional_computed(name: &str, ty: Type) -> Self {
        Self {
            optional: true,
            computed: true,
            ..Self::new(name, ty)
        }
    }

    pub fn computed(name: &str, ty: Type) -> Self {
        Self {
            computed: true,
            ..Self::new(name, ty)
        }
    }

    /// Turns the attribute into nested attributes of the given nesting.
    #[must_use]
    pub fn nested(mut self, nesting: ObjectNesting, attributes: Vec<Attribute>) -> Self {
        self.ty = AttributeType::Nested {
            nesting,
            attributes,
        };
        self
    }

    #[must_use]
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = text.into();
        self
    }

    #[must_use]
    pub fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }

    #[must_use]
    pub fn write_only(mut self) -> Self {
        self.write_only = true;
        self
    }

    #[must_use]
    pub fn deprecated(mut self) -> Self {
        self.deprecated = true;
        self
    }

    #[must_use]
    pub fn force_new(mut self) -> Self {
        self.force_new = true;
        self
    }

    /// Plans `value` when configuration leaves the attribute null; makes it optional and
    /// computed, as Terraform needs for a value the provider fills in.
    #[must_use]
    pub fn default(mut self, value: Value) -> Self {
        self.default = Some(value);
        self.required = false;
        self.optional = true;
        self.computed = true;
        self
    }

    /// See [`Attribute::live`].
    #[must_use]
    pub fn live(mut self) -> Self {
        self.live = true;
        self
    }

    #[must_use]
    pub fn validator(mut self, validator: Validator) -> Self {
        self.validators.push(validator);
        self
    }

    /// The cty type of this attribute's value.
    pub fn implied_type(&self) -> Type {
        match &self.ty {
            AttributeType::Type(t) => t.clone(),
            AttributeType::Nested {
                nesting,
                attributes,
            } => {
                let object = Type::Object(
                    attributes
                        .iter()
                        .map(|a| (a.name.clone(), a.implied_type()))
                        .collect(),
                );
                match nesting {
                    ObjectNesting::Single => object,
                    ObjectNesting::List => Type::list(object),
                    ObjectNesting::Set => Type::set(object),
                    ObjectNesting::Map => Type::map(object),
                }
            }
        }
    }
}

impl NestedBlock {
    pub fn new(type_name: &str, nesting: Nesting, block: Block) -> Self {
        Self {
            type_name: type_name.to_owned(),
            block,
            nesting,
            min_items: 0,
            max_items: 0,
            force_new: false,
        }
    }

    /// A block that must appear exactly once.
    pub fn required_single(type_name: &str, block: Block) -> Self {
        Self {
            min_items: 1,
            max_items: 1,
            ..Self::new(type_name, Nesting::Single, block)
        }
    }

    /// A block that may appear at most once.
    pub fn optional_single(type_name: &str, block: Block) -> Self {
        Self::new(type_name, Nesting::Single, block)
    }

    #[must_use]
    pub fn items(mut self, min: i64, max: i64) -> Self {
        self.min_items = min;
        self.max_items = max;
        self
    }

    #[must_use]
    pub fn force_new(mut self) -> Self {
        self.force_new = true;
        self
    }

    pub fn implied_type(&self) -> Type {
        let object = self.block.implied_type();
        match self.nesting {
            Nesting::Single | Nesting::Group => object,
            // Terraform sends a list of blocks with a dynamic attribute as a dynamic tuple.
            Nesting::List if object.has_dynamic() => Type::Dynamic,
            Nesting::List => Type::list(object),
            Nesting::Set => Type::set(object),
            Nesting::Map if object.has_dynamic() => Type::Dynamic,
            Nesting::Map => Type::map(object),
        }
    }
}

impl Block {
    pub fn new(attributes: Vec<Attribute>, blocks: Vec<NestedBlock>) -> Self {
        Self {
            attributes,
            blocks,
            description: String::new(),
            deprecated: false,
            checks: Vec::new(),
        }
    }

    #[must_use]
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = text.into();
        self
    }

    #[must_use]
    pub fn check(mut self, check: BlockCheck) -> Self {
        self.checks.push(check);
        self
    }

    pub fn implied_type(&self) -> Type {
        let mut attrs = BTreeMap::new();
        for a in &self.attributes {
            attrs.insert(a.name.clone(), a.implied_type());
        }
        for b in &self.blocks {
            attrs.insert(b.type_name.clone(), b.implied_type());
        }
        Type::Object(attrs)
    }

    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }

    pub fn block(&self, name: &str) -> Option<&NestedBlock> {
        self.blocks.iter().find(|b| b.type_name == name)
    }

    /// The block's schema as `terraform providers schema -json` prints it.
    pub fn to_terraform_json(&self) -> Json {
        let mut out = Map::new();
        if !self.attributes.is_empty() {
            let attrs: Map<String, Json> = self
                .attributes
                .iter()
                .map(|a| (a.name.clone(), attribute_json(a)))
                .collect();
            out.insert("attributes".into(), Json::Object(attrs));
        }
        if !self.blocks.is_empty() {
            let blocks: Map<String, Json> = self
                .blocks
                .iter()
                .map(|b| {
                    let mut m = Map::new();
                    m.insert("nesting_mode".into(), json!(nesting_name(b.nesting)));
                    m.insert("block".into(), b.block.to_terraform_json());
                    if b.min_items != 0 {
                        m.insert("min_items".into(), json!(b.min_items));
                    }
                    if b.max_items != 0 {
                        m.insert("max_items".into(), json!(b.max_items));
                    }
                    (b.type_name.clone(), Json::Object(m))
                })
                .collect();
            out.insert("block_types".into(), Json::Object(blocks));
        }
        if !self.description.is_empty() {
            out.insert("description".into(), json!(self.description));
        }
        out.insert("description_kind".into(), json!("markdown"));
        if self.deprecated {
            out.insert("deprecated".into(), json!(true));
        }
        Json::Object(out)
    }
}

fn nesting_name(n: Nesting) -> &'static str {
    match n {
        Nesting::Single => "single",
        Nesting::List => "list",
        Nesting::Set => "set",
        Nesting::Map => "map",
        Nesting::Group => "group",
    }
}

fn attribute_json(a: &Attribute) -> Json {
    let mut m = Map::new();
    match &a.ty {
        AttributeType::Type(t) => {
            m.insert("type".into(), t.to_json());
        }
        AttributeType::Nested {
            nesting,
            attributes,
        } => {
            let attrs: Map<String, Json> = attributes
                .iter()
                .map(|n| (n.name.clone(), attribute_json(n)))
                .collect();
            let nesting = match nesting {
                ObjectNesting::Single => "single",
                ObjectNesting::List => "list",
                ObjectNesting::Set => "set",
                ObjectNesting::Map => "map",
            };
            m.insert(
                "nested_type".into(),
                json!({"attributes": attrs, "nesting_mode": nesting}),
            );
        }
    }
    if !a.description.is_empty() {
        m.insert("description".into(), json!(a.description));
    }
    m.insert("description_kind".into(), json!("markdown"));
    for (flag, key) in [
        (a.required, "required"),
        (a.optional, "optional"),
        (a.computed, "computed"),
        (a.sensitive, "sensitive"),
        (a.deprecated, "deprecated"),
        (a.write_only, "write_only"),
    ] {
        if flag {
            m.insert(key.into(), json!(true));
        }
    }
    Json::Object(m)
}

impl Schema {
    pub fn new(version: i64, block: Block) -> Self {
        Self { version, block }
    }

    pub fn implied_type(&self) -> Type {
        self.block.implied_type()
    }

    pub fn to_terraform_json(&self) -> Json {
        json!({"version": self.version, "block": self.block.to_terraform_json()})
    }

    /// Checks the rules of Terraform's `configschema.InternalValidate`, so an invalid schema fails
    /// in the provider's own tests rather than as "provider has invalid schema" for a user.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        if self.version < 0 {
            errors.push("schema version must not be negative".to_owned());
        }
        validate_block(&self.block, "", &mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn validate_block(block: &Block, prefix: &str, errors: &mut Vec<String>) {
    let mut seen = BTreeSet::new();
    for a in &block.attributes {
        let path = format!("{prefix}{}", a.name);
        if !seen.insert(a.name.as_str()) {
            errors.push(format!("{path}: duplicate name"));
        }
        validate_attribute(a, &path, false, errors);
    }
    for b in &block.blocks {
        let path = format!("{prefix}{}", b.type_name);
        if !valid_name(&b.type_name) {
            errors.push(format!(
                "{path}: name may contain only lowercase letters, digits and underscores"
            ));
        }
        if !seen.insert(b.type_name.as_str()) {
            errors.push(format!(
                "{path}: name is used by both an attribute and a block"
            ));
        }
        if b.min_items < 0 || b.max_items < 0 {
            errors.push(format!(
                "{path}: min_items and max_items must not be negative"
            ));
        }
        match b.nesting {
            Nesting::Single => {
                if b.min_items > 1 || b.max_items > 1 || b.min_items != b.max_items {
                    errors.push(format!(
                        "{path}: single blocks must have min_items and max_items both 0 or both 1"
                    ));
                }
            }
            Nesting::Group => {
                if b.min_items != 0 || b.max_items != 0 {
                    errors.push(format!(
                        "{path}: group blocks cannot have min_items or max_items"
                    ));
                }
            }
            Nesting::List | Nesting::Set => {
                if b.max_items != 0 && b.min_items > b.max_items {
                    errors.push(format!("{path}: min_items is greater than max_items"));
                }
                if b.nesting == Nesting::Set && block_has_dynamic_or_write_only(&b.block) {
                    errors.push(format!(
                        "{path}: set blocks cannot contain dynamic or write-only attributes"
                    ));
                }
            }
            Nesting::Map => {
                if b.min_items != 0 || b.max_items != 0 {
                    errors.push(format!(
                        "{path}: map blocks cannot have min_items or max_items"
                    ));
                }
            }
        }
        validate_block(&b.block, &format!("{path}."), errors);
    }
}

fn block_has_dynamic_or_write_only(block: &Block) -> bool {
    block
        .attributes
        .iter()
        .any(|a| a.write_only || a.implied_type().has_dynamic())
        || block
            .blocks
            .iter()
            .any(|b| block_has_dynamic_or_write_only(&b.block))
}

fn validate_attribute(a: &Attribute, path: &str, in_set: bool, errors: &mut Vec<String>) {
    if !valid_name(&a.name) {
        errors.push(format!(
            "{path}: name may contain only lowercase letters, digits and underscores"
        ));
    }
    if !a.required && !a.optional && !a.computed {
        errors.push(format!("{path}: must set optional, required or computed"));
    }
    if a.required && a.optional {
        errors.push(format!("{path}: cannot set both optional and required"));
    }
    if a.required && a.computed {
        errors.push(format!("{path}: cannot set both computed and required"));
    }
    if a.write_only && a.computed {
        errors.push(format!("{path}: write-only attributes cannot be computed"));
    }
    if a.live && !a.computed {
        errors.push(format!("{path}: only computed attributes can be live"));
    }
    if let Some(default) = &a.default {
        if !(a.optional && a.computed) {
            errors.push(format!(
                "{path}: an attribute with a default must be optional and computed"
            ));
        }
        if default.is_null() || !default.is_wholly_known() {
            errors.push(format!(
                "{path}: a default must be a known, non-null value of the field's type"
            ));
        } else if let Err(e) = default.conforms_to(&a.implied_type()) {
            errors.push(format!("{path}: the default does not match the type: {e}"));
        }
    }
    if in_set && (a.write_only || a.implied_type().has_dynamic()) {
        errors.push(format!(
            "{path}: set nested attributes cannot contain dynamic or write-only attributes"
        ));
    }
    if let AttributeType::Nested {
        nesting,
        attributes,
    } = &a.ty
    {
        let mut seen = BTreeSet::new();
        for n in attributes {
            if !seen.insert(n.name.as_str()) {
                errors.push(format!("{path}.{}: duplicate name", n.name));
            }
            validate_attribute(
                n,
                &format!("{path}.{}", n.name),
                in_set || *nesting == ObjectNesting::Set,
                errors,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema_with(attributes: Vec<Attribute>, blocks: Vec<NestedBlock>) -> Schema {
        Schema::new(0, Block::new(attributes, blocks))
    }

    #[test]
    fn internal_validate_rules() {
        let ok = Attribute::required("name", Type::String);
        let cases: Vec<(&str, Schema, Option<&str>)> = vec![
            ("valid", schema_with(vec![ok.clone()], vec![]), None),
            (
                "no-flags",
                schema_with(
                    vec![Attribute {
                        required: false,
                        ..ok.clone()
                    }],
                    vec![],
                ),
                Some("must set optional, required or computed"),
            ),
            (
                "required-and-optional",
                schema_with(
                    vec![Attribute {
                        optional: true,
                        ..ok.clone()
                    }],
                    vec![],
                ),
                Some("cannot set both optional and required"),
            ),
            (
                "required-and-computed",
                schema_with(
                    vec![Attribute {
                        computed: true,
                        ..ok.clone()
                    }],
                    vec![],
                ),
                Some("cannot set both computed and required"),
            ),
            (
                "bad-name",
                schema_with(vec![Attribute::required("Name", Type::String)], vec![]),
                Some("lowercase"),
            ),
            (
                "attribute-and-block-share-name",
                schema_with(
                    vec![ok.clone()],
                    vec![NestedBlock::optional_single("name", Block::default())],
                ),
                Some("both an attribute and a block"),
            ),
            (
                "single-block-min-max-differ",
                schema_with(
                    vec![],
                    vec![NestedBlock::optional_single("b", Block::default()).items(1, 0)],
                ),
                Some("single blocks"),
            ),
            (
                "group-with-min",
                schema_with(
                    vec![],
                    vec![NestedBlock::new("g", Nesting::Group, Block::default()).items(1, 0)],
                ),
                Some("group blocks"),
            ),
            (
                "set-with-dynamic",
                schema_with(
                    vec![],
                    vec![NestedBlock::new(
                        "s",
                        Nesting::Set,
                        Block::new(vec![Attribute::optional("d", Type::Dynamic)], vec![]),
                    )],
                ),
                Some("set blocks"),
            ),
            (
                "negative-version",
                Schema::new(-1, Block::default()),
                Some("version"),
            ),
        ];
        for (name, schema, want) in cases {
            let got = schema.validate();
            match want {
                None => assert!(got.is_ok(), "{name}: {got:?}"),
                Some(fragment) => {
                    let errors = got.err().unwrap_or_default();
                    assert!(
                        errors.iter().any(|e| e.contains(fragment)),
                        "{name}: wanted {fragment:?} in {errors:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn implied_types_follow_nesting() {
        let inner = Block::new(vec![Attribute::optional("x", Type::Number)], vec![]);
        let block = Block::new(
            vec![Attribute::computed("m", Type::String).nested(
                ObjectNesting::List,
                vec![Attribute::computed("y", Type::Bool)],
            )],
            vec![
                NestedBlock::optional_single("s", inner.clone()),
                NestedBlock::new("l", Nesting::List, inner.clone()),
                NestedBlock::new("st", Nesting::Set, inner.clone()),
                NestedBlock::new("mp", Nesting::Map, inner.clone()),
            ],
        );
        let obj = Type::object([("x", Type::Number)]);
        let want = Type::object([
            ("m", Type::list(Type::object([("y", Type::Bool)]))),
            ("s", obj.clone()),
            ("l", Type::list(obj.clone())),
            ("st", Type::set(obj.clone())),
            ("mp", Type::map(obj)),
        ]);
        assert_eq!(block.implied_type(), want);
    }
}
