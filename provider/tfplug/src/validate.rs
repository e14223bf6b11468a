//! Declared validation: the checks a schema carries on its attributes and blocks, run by the
//! framework in `ValidateResourceConfig` so resources do not walk their configuration by hand.
//!
//! Values may be unknown at validation. An attribute's validators see only known, non-null
//! values (wholly known for collections); a block check says which of its fields must be known
//! before it can judge, and sees the others with unknowns as null.
use crate::diag::{AttributePath, Diagnostic, Diagnostics, PathStep};
use crate::schema::{Block, Nesting};
use crate::value::Value;

/// A check of one attribute's value, declared with the attribute.
#[derive(Debug, Clone)]
pub struct Validator {
    /// The summary of the diagnostic; `invalid <attribute>` when `None`.
    pub summary: Option<String>,
    pub rule: Rule,
}

/// What a [`Validator`] checks.
#[derive(Debug, Clone)]
pub enum Rule {
    /// A whole number from `min` to `max`, both included.
    Range { min: i64, max: i64 },
    /// One of the listed strings.
    OneOf {
        values: Vec<&'static str>,
        ignore_case: bool,
    },
    /// A function of the value; the error is the diagnostic's detail.
    Custom(fn(&Value) -> Result<(), String>),
}

impl Validator {
    pub fn range(min: i64, max: i64) -> Self {
        Self::from(Rule::Range { min, max })
    }

    pub fn one_of(values: &[&'static str]) -> Self {
        Self::from(Rule::OneOf {
            values: values.to_vec(),
            ignore_case: false,
        })
    }

    /// Like [`Validator::one_of`], comparing without regard to ASCII case.
    pub fn one_of_ignoring_case(values: &[&'static str]) -> Self {
        Self::from(Rule::OneOf {
            values: values.to_vec(),
            ignore_case: true,
        })
    }

    pub fn custom(check: fn(&Value) -> Result<(), String>) -> Self {
        Self::from(Rule::Custom(check))
    }

    #[must_use]
    pub fn summary(mut self, summary: impl Into<String>) -> Self {
        self.summary = Some(summary.into());
        self
    }

    /// What the rule accepts, in words, for documentation; `None` for custom rules, whose
    /// attribute description says it.
    pub fn describe(&self) -> Option<String> {
        match &self.rule {
            Rule::Range { min, max } => Some(format!("from {min} to {max}")),
            Rule::OneOf { values, .. } => Some(format!("one of {}", quoted_list(values, "or"))),
            Rule::Custom(_) => None,
        }
    }

    /// The detail of the error for `value` at attribute `name`, or `None` when it passes.
    fn check(&self, name: &str, value: &Value) -> Option<String> {
        match &self.rule {
            Rule::Range { min, max } => {
                let number = value.as_number()?;
                let whole = number.as_i64().filter(|_| number.is_integer());
                // Fractions are reported by the model's number checks, which know the field.
                let n = whole?;
                (!(*min..=*max).contains(&n))
                    .then(|| format!("{name} is {n}; it must be from {min} to {max}"))
            }
            Rule::OneOf {
                values,
                ignore_case,
            } => {
                let got = value.as_str()?;
                let found = values.iter().any(|v| {
                    if *ignore_case {
                        v.eq_ignore_ascii_case(got)
                    } else {
                        *v == got
                    }
                });
                (!found).then(|| {
                    format!(
                        "{got:?} is not a valid {name}; use {}",
                        quoted_list(values, "or")
                    )
                })
            }
            Rule::Custom(check) => check(value).err(),
        }
    }
}

impl From<Rule> for Validator {
    fn from(rule: Rule) -> Self {
        Self {
            summary: None,
            rule,
        }
    }
}

// Function pointers have no meaningful equality; two validators are the same declaration when
// they say the same thing.
impl PartialEq for Validator {
    fn eq(&self, other: &Self) -> bool {
        self.summary == other.summary
            && match (&self.rule, &other.rule) {
                (Rule::Custom(_), Rule::Custom(_)) => true,
                (a, b) => {
                    let describe = |rule: &Rule| Validator::from(rule.clone()).describe();
                    describe(a) == describe(b)
                }
            }
    }
}

/// A check across a block's attributes and nested blocks.
#[derive(Debug, Clone)]
pub struct BlockCheck {
    pub summary: Option<String>,
    pub rule: BlockRule,
}

/// What a [`BlockCheck`] checks.
#[derive(Debug, Clone)]
pub enum BlockRule {
    /// Exactly one of the named attributes or blocks is set; an unknown one counts as set.
    ExactlyOneOf(Vec<&'static str>),
    /// A function of the block's value, which may hold unknowns (the derive decodes it with
    /// `model::decode_partial`, reading them as null). It runs only once the fields named in
    /// `known` are known, so it can tell a missing value from one not known yet. Its
    /// diagnostics' paths are relative to the block.
    Custom {
        known: Vec<&'static str>,
        check: fn(&Value) -> Diagnostics,
    },
}

impl BlockCheck {
    pub fn exactly_one_of(names: &[&'static str]) -> Self {
        Self {
            summary: None,
            rule: BlockRule::ExactlyOneOf(names.to_vec()),
        }
    }

    pub fn custom(known: &[&'static str], check: fn(&Value) -> Diagnostics) -> Self {
        Self {
            summary: None,
            rule: BlockRule::Custom {
                known: known.to_vec(),
                check,
            },
        }
    }

    #[must_use]
    pub fn summary(mut self, summary: impl Into<String>) -> Self {
        self.summary = Some(summary.into());
        self
    }

    fn run(&self, value: &Value, path: &AttributePath, diags: &mut Diagnostics) {
        match &self.rule {
            BlockRule::ExactlyOneOf(names) => {
                let set: Vec<&str> = names
                    .iter()
                    .copied()
                    .filter(|n| value.get_attr(n).is_some_and(|v| !v.is_null()))
                    .collect();
                if set.len() == 1 {
                    return;
                }
                let summary = self
                    .summary
                    .clone()
                    .unwrap_or_else(|| format!("exactly one of {}", names.join(", ")));
                let (detail, at) = if set.is_empty() {
                    (
                        format!("set exactly one of {}", quoted_list(names, "or")),
                        path.clone(),
                    )
                } else {
                    (
                        format!(
                            "only one of {} may be set, but {} are; keep one",
                            quoted_list(names, "or"),
                            quoted_list(&set, "and")
                        ),
                        child(path, set[1]),
                    )
                };
                diags.push(Diagnostic::error(summary, detail).at(at));
            }
            BlockRule::Custom { known, check } => {
                if known
                    .iter()
                    .any(|n| value.get_attr(n).is_some_and(|v| !v.is_wholly_known()))
                {
                    return;
                }
                for mut d in check(value) {
                    let mut full = path.clone();
                    full.0.extend(d.path.take().unwrap_or_default().0);
                    if let Some(summary) = &self.summary {
                        d.summary.clone_from(summary);
                    }
                    diags.push(d.at(full));
                }
            }
        }
    }
}

impl PartialEq for BlockCheck {
    fn eq(&self, other: &Self) -> bool {
        self.summary == other.summary
            && match (&self.rule, &other.rule) {
                (BlockRule::ExactlyOneOf(a), BlockRule::ExactlyOneOf(b)) => a == b,
                (BlockRule::Custom { known: a, .. }, BlockRule::Custom { known: b, .. }) => a == b,
                _ => false,
            }
    }
}

/// Runs every declared check of `block` (and its nested blocks) on a configuration value.
pub fn validate(block: &Block, value: &Value) -> Diagnostics {
    let mut diags = Diagnostics::new();
    validate_at(block, value, &AttributePath::root(), &mut diags);
    diags
}

fn validate_at(block: &Block, value: &Value, path: &AttributePath, diags: &mut Diagnostics) {
    if value.is_null() || value.is_unknown() {
        return;
    }
    for a in &block.attributes {
        let Some(v) = value.get_attr(&a.name) else {
            continue;
        };
        if v.is_null() || !v.is_wholly_known() {
            continue;
        }
        for validator in &a.validators {
            if let Some(detail) = validator.check(&a.name, v) {
                let summary = validator
                    .summary
                    .clone()
                    .unwrap_or_else(|| format!("invalid {}", a.name));
                diags.push(Diagnostic::error(summary, detail).at(child(path, &a.name)));
            }
        }
    }
    for b in &block.blocks {
        let Some(v) = value.get_attr(&b.type_name) else {
            continue;
        };
        let at = child(path, &b.type_name);
        match (b.nesting, v) {
            (Nesting::Single | Nesting::Group, v) => validate_at(&b.block, v, &at, diags),
            (Nesting::List | Nesting::Set, Value::List(items) | Value::Set(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let at = AttributePath(
                        at.0.iter()
                            .cloned()
                            .chain([PathStep::Index(i64::try_from(i).unwrap_or(i64::MAX))])
                            .collect(),
                    );
                    validate_at(&b.block, item, &at, diags);
                }
            }
            (Nesting::Map, Value::Map(items)) => {
                for (key, item) in items {
                    validate_at(&b.block, item, &at.clone().key(key.clone()), diags);
                }
            }
            _ => {}
        }
    }
    for check in &block.checks {
        check.run(value, path, diags);
    }
}

fn child(path: &AttributePath, name: &str) -> AttributePath {
    path.clone().attr(name)
}

/// `"a", "b" or "c"`.
fn quoted_list(values: &[&str], conjunction: &str) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} {conjunction} {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Attribute, NestedBlock};
    use crate::value::Type;

    fn schema() -> Block {
        let inner = Block::new(
            vec![
                Attribute::optional("count", Type::Number).validator(Validator::range(1, 10)),
                Attribute::optional("low", Type::Number),
                Attribute::optional("high", Type::Number),
            ],
            vec![],
        )
        .check(BlockCheck::custom(&["low", "high"], |v| {
            let n = |name| {
                v.get_attr(name)
                    .and_then(Value::as_number)
                    .and_then(|n| n.as_i64())
            };
            match (n("low"), n("high")) {
                (Some(l), Some(h)) if l > h => {
                    Diagnostic::error("invalid bounds", format!("low ({l}) is above high ({h})"))
                        .at(AttributePath::attrs(["low"]))
                        .into()
                }
                _ => Diagnostics::new(),
            }
        }));
        Block::new(
            vec![
                Attribute::optional("mode", Type::String)
                    .validator(Validator::one_of(&["fast", "slow"]).summary("invalid speed")),
                Attribute::optional("a", Type::String),
                Attribute::optional("b", Type::String),
            ],
            vec![NestedBlock::new("item", Nesting::List, inner)],
        )
        .check(BlockCheck::exactly_one_of(&["a", "b"]))
    }

    /// A name, a configuration, and the (summary, path) of each diagnostic it must get.
    type Case = (&'static str, Value, Vec<(&'static str, &'static str)>);

    fn obj(pairs: Vec<(&str, Value)>) -> Value {
        Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    fn item(count: Value, low: Value, high: Value) -> Value {
        obj(vec![("count", count), ("low", low), ("high", high)])
    }

    #[test]
    fn declared_checks_point_at_the_attribute() {
        let n = |i: i64| Value::number(i);
        let cases: Vec<Case> = vec![
            (
                "valid",
                obj(vec![
                    ("mode", Value::string("fast")),
                    ("a", Value::string("x")),
                    ("b", Value::Null),
                    ("item", Value::List(vec![item(n(3), n(1), n(2))])),
                ]),
                vec![],
            ),
            (
                "every rule broken",
                obj(vec![
                    ("mode", Value::string("warp")),
                    ("a", Value::string("x")),
                    ("b", Value::string("y")),
                    (
                        "item",
                        Value::List(vec![item(n(3), n(1), n(2)), item(n(11), n(5), n(2))]),
                    ),
                ]),
                vec![
                    ("invalid speed", "mode"),
                    ("invalid count", "item[1].count"),
                    ("invalid bounds", "item[1].low"),
                    ("exactly one of a, b", "b"),
                ],
            ),
            (
                "unknowns are not judged",
                obj(vec![
                    ("mode", Value::unknown()),
                    ("a", Value::unknown()),
                    ("b", Value::Null),
                    (
                        "item",
                        Value::List(vec![item(Value::unknown(), n(5), Value::unknown())]),
                    ),
                ]),
                vec![],
            ),
            (
                "none of a choice",
                obj(vec![
                    ("mode", Value::Null),
                    ("a", Value::Null),
                    ("b", Value::Null),
                    ("item", Value::Null),
                ]),
                vec![("exactly one of a, b", "(root)")],
            ),
        ];
        for (name, value, want) in cases {
            let got: Vec<(String, String)> = validate(&schema(), &value)
                .into_iter()
                .map(|d| (d.summary, d.path.unwrap_or_default().to_string()))
                .collect();
            let want: Vec<(String, String)> = want
                .into_iter()
                .map(|(s, p)| (s.to_owned(), p.to_owned()))
                .collect();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn rules_describe_what_they_accept() {
        assert_eq!(
            Validator::one_of(&["a", "b", "c"]).describe().as_deref(),
            Some("one of \"a\", \"b\" or \"c\"")
        );
        assert_eq!(
            Validator::range(0, 5).describe().as_deref(),
            Some("from 0 to 5")
        );
    }
}
