//! Default planning and the plan/apply invariants Terraform enforces, checked in the framework so
//! a resource bug surfaces as a clear diagnostic instead of "Provider produced inconsistent result".
//!
//! Planning here is a pure function of schema, prior state, proposed state and configuration.
use std::collections::BTreeMap;

use crate::diag::{AttributePath, Diagnostic, Diagnostics};
use crate::schema::{Block, Nesting, Schema};
use crate::value::Value;

/// The framework's plan: the proposed state, with computed attributes the configuration leaves
/// null marked unknown when the object is new or replaced, and `requires_replace` for changed
/// `force_new` attributes and blocks.
pub fn default_plan(
    schema: &Schema,
    prior: &Value,
    proposed: &Value,
    config: &Value,
) -> (Value, Vec<AttributePath>) {
    let proposed = &null_write_only(&schema.block, proposed);
    let proposed = &single_blocks_follow_config(&schema.block, proposed, config);
    if prior.is_null() {
        let planned = with_defaults(&schema.block, proposed, config, &Value::Null);
        return (
            unknown_computed(&schema.block, &planned, config),
            Vec::new(),
        );
    }
    let kept = with_defaults(&schema.block, proposed, config, prior);
    let mut replace = Vec::new();
    collect_replacements(
        &schema.block,
        prior,
        &kept,
        &AttributePath::root(),
        &mut replace,
    );
    if replace.is_empty() {
        // An in-place update reads what the platform changes on its own again.
        let planned = if kept == *prior {
            kept
        } else {
            unknown_live(&schema.block, &kept)
        };
        (planned, replace)
    } else {
        // A replacement creates a new object: it gets every default, and everything it
        // computes will be new too.
        let fresh = with_defaults(&schema.block, proposed, config, &Value::Null);
        (unknown_computed(&schema.block, &fresh, config), replace)
    }
}

/// A single nested block is present in the plan exactly when it is in the configuration.
/// Terraform before 1.3 proposes the prior block when the configuration removes it, then
/// rejects that same proposal as a plan that disagrees with configuration.
fn single_blocks_follow_config(block: &Block, proposed: &Value, config: &Value) -> Value {
    let Some(attrs) = object(proposed) else {
        return proposed.clone();
    };
    let mut out = attrs.clone();
    for b in &block.blocks {
        if b.nesting != Nesting::Single {
            continue;
        }
        let c = config.get_attr(&b.type_name).unwrap_or(&Value::Null);
        let p = out.get(&b.type_name).cloned().unwrap_or(Value::Null);
        let fixed = if c.is_null() {
            Value::Null
        } else if p.is_null() {
            c.clone()
        } else {
            single_blocks_follow_config(&b.block, &p, c)
        };
        out.insert(b.type_name.clone(), fixed);
    }
    Value::Object(out)
}

/// Declared defaults fill the attributes configuration leaves null, in every configured block,
/// so the plan shows the values apply will use.
///
/// An object that exists keeps a null it already has: its state was written before the
/// attribute had a default (an older provider), and planning the default now would be a change
/// the user never made, a replacement for attributes that force one.
fn with_defaults(block: &Block, proposed: &Value, config: &Value, prior: &Value) -> Value {
    let Some(attrs) = object(proposed) else {
        return proposed.clone();
    };
    let existing = !prior.is_null();
    let mut out = attrs.clone();
    for a in &block.attributes {
        let Some(default) = &a.default else {
            continue;
        };
        let unset = config.get_attr(&a.name).is_none_or(Value::is_null);
        let kept_null = existing && prior.get_attr(&a.name).is_none_or(Value::is_null);
        if unset && !kept_null {
            out.insert(a.name.clone(), default.clone());
        }
    }
    for b in &block.blocks {
        let (Some(p), Some(c)) = (attrs.get(&b.type_name), config.get_attr(&b.type_name)) else {
            continue;
        };
        let before = prior.get_attr(&b.type_name).unwrap_or(&Value::Null);
        let filled = match (b.nesting, p, c) {
            (Nesting::Single | Nesting::Group, p, c) if !p.is_null() && !c.is_unknown() => {
                with_defaults(&b.block, p, c, before)
            }
            (Nesting::List, Value::List(ps), Value::List(cs)) if ps.len() == cs.len() => {
                let befores = match before {
                    Value::List(items) => items.as_slice(),
                    _ => &[],
                };
                Value::List(
                    ps.iter()
                        .zip(cs)
                        .enumerate()
                        .map(|(i, (p, c))| {
                            with_defaults(&b.block, p, c, befores.get(i).unwrap_or(&Value::Null))
                        })
                        .collect(),
                )
            }
            (Nesting::Map, Value::Map(ps), Value::Map(cs)) => Value::Map(
                ps.iter()
                    .map(|(k, p)| {
                        let prior_item = match before {
                            Value::Map(items) => items.get(k).unwrap_or(&Value::Null),
                            _ => &Value::Null,
                        };
                        let filled = match cs.get(k) {
                            Some(c) => with_defaults(&b.block, p, c, prior_item),
                            None => p.clone(),
                        };
                        (k.clone(), filled)
                    })
                    .collect(),
            ),
            // Set elements cannot be matched to their configuration; their defaults would
            // change the elements' identity anyway.
            _ => continue,
        };
        out.insert(b.type_name.clone(), filled);
    }
    Value::Object(out)
}

/// `value` with every live attribute (see [`crate::schema::Attribute::live`]) unknown, in every
/// block that exists.
fn unknown_live(block: &Block, value: &Value) -> Value {
    let Some(attrs) = object(value) else {
        return value.clone();
    };
    let mut out = attrs.clone();
    for a in block.attributes.iter().filter(|a| a.live) {
        out.insert(a.name.clone(), Value::unknown());
    }
    for b in &block.blocks {
        let Some(v) = attrs.get(&b.type_name) else {
            continue;
        };
        let marked = match v {
            Value::List(items) => {
                Value::List(items.iter().map(|i| unknown_live(&b.block, i)).collect())
            }
            Value::Set(items) => {
                Value::Set(items.iter().map(|i| unknown_live(&b.block, i)).collect())
            }
            Value::Map(items) => Value::Map(
                items
                    .iter()
                    .map(|(k, i)| (k.clone(), unknown_live(&b.block, i)))
                    .collect(),
            ),
            v => unknown_live(&b.block, v),
        };
        out.insert(b.type_name.clone(), marked);
    }
    Value::Object(out)
}

/// Stored state as Terraform represents the current schema: a repeated nested block (list, set
/// or map) that the state does not mention is empty, never null, inside an object that exists.
/// State written before such a block type existed would otherwise decode as a null the
/// resource's model cannot hold, and differ from every proposal (an empty collection), which
/// for a block that forces replacement would replace the object.
pub fn with_absent_blocks_empty(block: &Block, value: &Value) -> Value {
    let Some(attrs) = object(value) else {
        return value.clone();
    };
    let mut out = attrs.clone();
    for b in &block.blocks {
        let v = attrs.get(&b.type_name).unwrap_or(&Value::Null);
        let filled = match (b.nesting, v) {
            (Nesting::List, Value::Null) => Value::List(Vec::new()),
            (Nesting::Set, Value::Null) => Value::Set(Vec::new()),
            (Nesting::Map, Value::Null) => Value::Map(BTreeMap::new()),
            (Nesting::Single | Nesting::Group, v) => with_absent_blocks_empty(&b.block, v),
            (Nesting::List, Value::List(items)) => Value::List(
                items
                    .iter()
                    .map(|i| with_absent_blocks_empty(&b.block, i))
                    .collect(),
            ),
            (Nesting::Set, Value::Set(items)) => Value::Set(
                items
                    .iter()
                    .map(|i| with_absent_blocks_empty(&b.block, i))
                    .collect(),
            ),
            (Nesting::Map, Value::Map(items)) => Value::Map(
                items
                    .iter()
                    .map(|(k, i)| (k.clone(), with_absent_blocks_empty(&b.block, i)))
                    .collect(),
            ),
            (_, v) => v.clone(),
        };
        out.insert(b.type_name.clone(), filled);
    }
    Value::Object(out)
}

/// Write-only values reach the provider in configuration only; plans and states hold null.
pub(crate) fn null_write_only(block: &Block, value: &Value) -> Value {
    let Some(attrs) = object(value) else {
        return value.clone();
    };
    let mut out = attrs.clone();
    for a in &block.attributes {
        if a.write_only {
            out.insert(a.name.clone(), Value::Null);
        }
    }
    for b in &block.blocks {
        if let Some(v) = out.get(&b.type_name) {
            let nulled = match (b.nesting, v) {
                (Nesting::Single | Nesting::Group, v) => null_write_only(&b.block, v),
                (Nesting::List, Value::List(items)) => {
                    Value::List(items.iter().map(|i| null_write_only(&b.block, i)).collect())
                }
                (Nesting::Map, Value::Map(items)) => Value::Map(
                    items
                        .iter()
                        .map(|(k, i)| (k.clone(), null_write_only(&b.block, i)))
                        .collect(),
                ),
                (_, v) => v.clone(),
            };
            out.insert(b.type_name.clone(), nulled);
        }
    }
    Value::Object(out)
}

fn object(value: &Value) -> Option<&BTreeMap<String, Value>> {
    match value {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

fn unknown_computed(block: &Block, proposed: &Value, config: &Value) -> Value {
    let Some(proposed_attrs) = object(proposed) else {
        return proposed.clone();
    };
    let mut out = proposed_attrs.clone();
    for a in &block.attributes {
        let in_config = config.get_attr(&a.name).unwrap_or(&Value::Null);
        if a.computed && a.default.is_none() && in_config.is_null() {
            out.insert(a.name.clone(), Value::unknown());
        }
    }
    for b in &block.blocks {
        let (Some(p), Some(c)) = (
            proposed_attrs.get(&b.type_name),
            config.get_attr(&b.type_name),
        ) else {
            continue;
        };
        let planned = match (b.nesting, p, c) {
            (Nesting::Single | Nesting::Group, p, c) if !p.is_null() => {
                unknown_computed(&b.block, p, c)
            }
            (Nesting::List, Value::List(ps), Value::List(cs)) => Value::List(
                ps.iter()
                    .zip(cs.iter())
                    .map(|(p, c)| unknown_computed(&b.block, p, c))
                    .collect(),
            ),
            (Nesting::Map, Value::Map(ps), Value::Map(cs)) => Value::Map(
                ps.iter()
                    .map(|(k, p)| {
                        let c = cs.get(k).unwrap_or(&Value::Null);
                        (k.clone(), unknown_computed(&b.block, p, c))
                    })
                    .collect(),
            ),
            _ => p.clone(),
        };
        out.insert(b.type_name.clone(), planned);
    }
    Value::Object(out)
}

fn collect_replacements(
    block: &Block,
    prior: &Value,
    proposed: &Value,
    path: &AttributePath,
    out: &mut Vec<AttributePath>,
) {
    for a in &block.attributes {
        let before = prior.get_attr(&a.name).unwrap_or(&Value::Null);
        let after = proposed.get_attr(&a.name).unwrap_or(&Value::Null);
        if a.force_new && (before != after || after.is_unknown()) {
            out.push(path.clone().attr(&a.name));
        }
    }
    for b in &block.blocks {
        let before = prior.get_attr(&b.type_name).unwrap_or(&Value::Null);
        let after = proposed.get_attr(&b.type_name).unwrap_or(&Value::Null);
        if b.force_new && before != after {
            out.push(path.clone().attr(&b.type_name));
        } else if !b.force_new
            && matches!(b.nesting, Nesting::Single | Nesting::Group)
            && !before.is_null()
            && !after.is_null()
        {
            collect_replacements(
                &b.block,
                before,
                after,
                &path.clone().attr(&b.type_name),
                out,
            );
        }
    }
}

/// Checks a planned state against the rules of Terraform's `AssertPlanValid`: non-computed
/// attributes equal the configuration (or the prior state), write-only attributes are null.
pub fn check_plan(schema: &Schema, prior: &Value, config: &Value, planned: &Value) -> Diagnostics {
    let mut diags = Diagnostics::new();
    check_plan_block(
        &schema.block,
        prior,
        config,
        planned,
        &AttributePath::root(),
        &mut diags,
    );
    diags
}

fn check_plan_block(
    block: &Block,
    prior: &Value,
    config: &Value,
    planned: &Value,
    path: &AttributePath,
    diags: &mut Diagnostics,
) {
    if planned.is_null() || planned.is_unknown() {
        return;
    }
    for a in &block.attributes {
        let p = planned.get_attr(&a.name).unwrap_or(&Value::Null);
        let c = config.get_attr(&a.name).unwrap_or(&Value::Null);
        let before = prior.get_attr(&a.name).unwrap_or(&Value::Null);
        let at = path.clone().attr(&a.name);
        if a.write_only {
            if !p.is_null() {
                diags.push(
                    Diagnostic::internal(format!("planned a value for write-only attribute {at}"))
                        .at(at),
                );
            }
            continue;
        }
        let config_must_match = !a.computed || !c.is_null();
        if config_must_match && p != c && p != before {
            diags.push(
                Diagnostic::internal(format!(
                    "the planned value of {at} differs from its configuration"
                ))
                .at(at),
            );
        }
    }
    for b in &block.blocks {
        let p = planned.get_attr(&b.type_name).unwrap_or(&Value::Null);
        let c = config.get_attr(&b.type_name).unwrap_or(&Value::Null);
        let before = prior.get_attr(&b.type_name).unwrap_or(&Value::Null);
        let at = path.clone().attr(&b.type_name);
        match (b.nesting, p, c) {
            (Nesting::Single | Nesting::Group, p, c) => {
                if p.is_null() != c.is_null() {
                    diags.push(
                        Diagnostic::internal(format!(
                            "the planned block {at} differs from configuration"
                        ))
                        .at(at),
                    );
                } else {
                    check_plan_block(&b.block, before, c, p, &at, diags);
                }
            }
            (Nesting::List, Value::List(ps), Value::List(cs)) => {
                if ps.len() != cs.len() {
                    diags.push(
                        Diagnostic::internal(format!(
                            "planned {} {at} blocks, configuration has {}",
                            ps.len(),
                            cs.len()
                        ))
                        .at(at),
                    );
                    continue;
                }
                for (i, (p, c)) in ps.iter().zip(cs).enumerate() {
                    let before = match before {
                        Value::List(bs) => bs.get(i).unwrap_or(&Value::Null),
                        _ => &Value::Null,
                    };
                    let index = i64::try_from(i).unwrap_or(i64::MAX);
                    check_plan_block(&b.block, before, c, p, &at.clone().index(index), diags);
                }
            }
            (Nesting::List | Nesting::Set | Nesting::Map, p, _) if p.is_null() => {
                diags.push(
                    Diagnostic::internal(format!("planned a null value for block {at}")).at(at),
                );
            }
            _ => {}
        }
    }
}

/// Checks an applied state against its plan, as Terraform's `AssertObjectCompatible` does:
/// wholly known, and equal to every value the plan already knew.
pub fn check_apply(planned: &Value, new: &Value) -> Diagnostics {
    let mut diags = Diagnostics::new();
    if !new.is_wholly_known() {
        diags.push(Diagnostic::internal(
            "the applied state still contains unknown values",
        ));
    }
    compatible(planned, new, &AttributePath::root(), &mut diags);
    diags
}

fn compatible(planned: &Value, new: &Value, path: &AttributePath, diags: &mut Diagnostics) {
    match (planned, new) {
        (Value::Unknown(_), _) => {}
        (Value::Object(p), Value::Object(n)) => {
            for (k, pv) in p {
                let nv = n.get(k).unwrap_or(&Value::Null);
                compatible(pv, nv, &path.clone().attr(k), diags);
            }
        }
        (Value::List(p), Value::List(n)) | (Value::Tuple(p), Value::Tuple(n))
            if p.len() == n.len() =>
        {
            for (i, (pv, nv)) in p.iter().zip(n).enumerate() {
                let index = i64::try_from(i).unwrap_or(i64::MAX);
                compatible(pv, nv, &path.clone().index(index), diags);
            }
        }
        (Value::Map(p), Value::Map(n)) if p.len() == n.len() => {
            for (k, pv) in p {
                let nv = n.get(k).unwrap_or(&Value::Null);
                compatible(pv, nv, &path.clone().key(k), diags);
            }
        }
        (p, n) if p.is_wholly_known() && p != n => {
            diags.push(
                Diagnostic::internal(format!(
                    "the applied value of {path} differs from the planned value"
                ))
                .at(path.clone()),
            );
        }
        // Partially known sets and dynamics cannot be correlated element by element here.
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Attribute, NestedBlock};
    use crate::value::Type;

    fn schema() -> Schema {
        Schema::new(
            0,
            Block::new(
                vec![
                    Attribute::computed("id", Type::String),
                    Attribute::required("name", Type::String).force_new(),
                    Attribute::optional("note", Type::String),
                ],
                vec![
                    NestedBlock::optional_single(
                        "disk",
                        Block::new(vec![Attribute::required("size", Type::Number)], vec![]),
                    )
                    .force_new(),
                ],
            ),
        )
    }

    fn obj(pairs: &[(&str, Value)]) -> Value {
        Value::Object(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn default_plan_cases() {
        let disk = |n: i64| obj(&[("size", Value::number(n))]);
        let config = |name: &str, note: Value, size: i64| {
            obj(&[
                ("id", Value::Null),
                ("name", Value::string(name)),
                ("note", note),
                ("disk", disk(size)),
            ])
        };
        let state = |name: &str, note: Value, size: i64| {
            obj(&[
                ("id", Value::string("x")),
                ("name", Value::string(name)),
                ("note", note),
                ("disk", disk(size)),
            ])
        };
        struct Case {
            name: &'static str,
            prior: Value,
            config: Value,
            want_id_unknown: bool,
            want_replace: Vec<AttributePath>,
        }
        let cases = [
            Case {
                name: "create",
                prior: Value::Null,
                config: config("a", Value::Null, 1),
                want_id_unknown: true,
                want_replace: vec![],
            },
            Case {
                name: "no-change",
                prior: state("a", Value::Null, 1),
                config: config("a", Value::Null, 1),
                want_id_unknown: false,
                want_replace: vec![],
            },
            Case {
                name: "in-place",
                prior: state("a", Value::Null, 1),
                config: config("a", Value::string("n"), 1),
                want_id_unknown: false,
                want_replace: vec![],
            },
            Case {
                name: "replace-attribute",
                prior: state("a", Value::Null, 1),
                config: config("b", Value::Null, 1),
                want_id_unknown: true,
                want_replace: vec![AttributePath::attrs(["name"])],
            },
            Case {
                name: "replace-block",
                prior: state("a", Value::Null, 1),
                config: config("a", Value::Null, 2),
                want_id_unknown: true,
                want_replace: vec![AttributePath::attrs(["disk"])],
            },
        ];
        let s = schema();
        for case in cases {
            // Terraform's proposed state: config, with computed nulls taken from prior.
            let mut proposed = case.config.clone();
            if let (Value::Object(p), Some(id)) = (&mut proposed, case.prior.get_attr("id")) {
                p.insert("id".into(), id.clone());
            }
            let (planned, replace) = default_plan(&s, &case.prior, &proposed, &case.config);
            assert_eq!(
                planned.get_attr("id").is_some_and(Value::is_unknown),
                case.want_id_unknown,
                "{}",
                case.name
            );
            assert_eq!(replace, case.want_replace, "{}", case.name);
            assert!(
                check_plan(&s, &case.prior, &case.config, &planned).is_empty(),
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn a_removed_single_block_is_planned_null() {
        let s = schema();
        let disk = obj(&[("size", Value::number(1))]);
        let prior = obj(&[
            ("id", Value::string("x")),
            ("name", Value::string("a")),
            ("note", Value::Null),
            ("disk", disk.clone()),
        ]);
        let config = obj(&[
            ("id", Value::Null),
            ("name", Value::string("a")),
            ("note", Value::Null),
            ("disk", Value::Null),
        ]);
        // Terraform 1.0 proposes the prior block although the configuration removed it.
        let mut proposed = prior.clone();
        if let Value::Object(m) = &mut proposed {
            m.insert("note".into(), Value::Null);
        }
        let (planned, _) = default_plan(&s, &prior, &proposed, &config);
        assert_eq!(planned.get_attr("disk"), Some(&Value::Null));
        assert!(check_plan(&s, &prior, &config, &planned).is_empty());
    }

    #[test]
    fn check_plan_catches_a_changed_config_value() {
        let s = schema();
        let config = obj(&[
            ("id", Value::Null),
            ("name", Value::string("a")),
            ("note", Value::Null),
            ("disk", Value::Null),
        ]);
        let planned = obj(&[
            ("id", Value::unknown()),
            ("name", Value::string("A")),
            ("note", Value::Null),
            ("disk", Value::Null),
        ]);
        let diags = check_plan(&s, &Value::Null, &config, &planned);
        assert!(diags.has_errors());
        assert_eq!(diags.0[0].path, Some(AttributePath::attrs(["name"])));
    }

    #[test]
    fn check_apply_cases() {
        let planned = obj(&[("id", Value::unknown()), ("name", Value::string("a"))]);
        let good = obj(&[("id", Value::string("1")), ("name", Value::string("a"))]);
        let changed = obj(&[("id", Value::string("1")), ("name", Value::string("b"))]);
        let unknown = obj(&[("id", Value::unknown()), ("name", Value::string("a"))]);
        assert!(check_apply(&planned, &good).is_empty());
        assert!(check_apply(&planned, &changed).has_errors());
        assert!(check_apply(&planned, &unknown).has_errors());
    }
}
