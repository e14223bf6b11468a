//! `#[derive(Model)]`: the schema, validators, defaults and checks a model declares, and the
//! planner and validation that use them.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tfplug::plan::default_plan;
use tfplug::validate::validate;
use tfplug::{AttributePath, Diagnostic, Diagnostics, Model, Nesting, Schema, Type, Value};

/// A thing with every kind of declaration.
///
/// Second paragraph.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
#[tf(exactly_one_of(small, large), summary = "one size")]
#[tf(check(bounds, known(low, high)))]
struct Thing {
    /// The ID.
    #[tf(computed)]
    id: Option<String>,
    /// The name,
    /// on two lines.
    #[tf(required, replace, validate = check_name, summary = "invalid thing name")]
    name: Option<String>,
    #[tf(default = "normal", one_of("low", "normal", "high"))]
    priority: Option<String>,
    #[tf(default = 1, range(1, 10), replace)]
    count: Option<u32>,
    #[tf(optional, sensitive, write_only)]
    secret: Option<BTreeMap<String, String>>,
    #[tf(optional)]
    low: Option<i64>,
    #[tf(optional)]
    high: Option<i64>,
    /// A small size.
    #[tf(block)]
    small: Option<Size>,
    #[tf(block, replace)]
    large: Option<Size>,
    #[tf(block)]
    items: Vec<Item>,
    #[tf(flatten)]
    #[serde(flatten)]
    extra: Extra,
    #[tf(computed)]
    counts: Option<Counts>,
    /// What the platform says now.
    #[tf(computed, live)]
    state: Option<String>,
    #[tf(skip)]
    #[serde(skip)]
    scratch: Option<String>,
}

/// A size.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
struct Size {
    #[tf(default = true)]
    fast: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
struct Item {
    #[tf(required)]
    path: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
struct Extra {
    #[tf(optional)]
    note: Option<String>,
    #[tf(optional)]
    weight: Option<u32>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
struct Counts {
    #[tf(computed)]
    idle: u32,
}

fn check_name(name: &str) -> Result<(), String> {
    if name.contains(' ') {
        return Err(format!("{name:?} has a space"));
    }
    Ok(())
}

fn bounds(thing: &Thing) -> Diagnostics {
    match (thing.low, thing.high) {
        (Some(l), Some(h)) if l > h => Diagnostic::error("invalid bounds", "low is above high")
            .at(AttributePath::attrs(["low"]))
            .into(),
        _ => Diagnostics::new(),
    }
}

#[test]
fn the_schema_is_the_model() {
    let block = Thing::block();
    Schema::new(0, block.clone())
        .validate()
        .expect("valid schema");
    assert_eq!(
        block.description,
        "A thing with every kind of declaration.\n\nSecond paragraph."
    );
    let names: Vec<&str> = block.attributes.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "id", "name", "priority", "count", "secret", "low", "high", "note", "weight", "counts",
            "state"
        ]
    );
    let attr = |n: &str| block.attribute(n).expect(n);
    assert!(attr("id").computed && !attr("id").optional);
    let name = attr("name");
    assert!(name.required && name.force_new);
    assert_eq!(name.description, "The name, on two lines.");
    let priority = attr("priority");
    assert!(priority.optional && priority.computed);
    assert_eq!(priority.default, Some(Value::string("normal")));
    assert_eq!(attr("count").default, Some(Value::number(1)));
    assert!(attr("secret").write_only && attr("secret").sensitive);
    assert_eq!(attr("secret").implied_type(), Type::map(Type::String));
    assert_eq!(
        attr("counts").implied_type(),
        Type::object([("idle", Type::Number)])
    );
    let small = block.block("small").expect("small");
    assert_eq!(small.nesting, Nesting::Single);
    assert_eq!(small.block.description, "A small size.");
    assert!(block.block("large").expect("large").force_new);
    assert_eq!(
        block.block("large").expect("large").block.description,
        "A size."
    );
    assert_eq!(block.block("items").expect("items").nesting, Nesting::List);
    assert_eq!(block.checks.len(), 2);
}

/// A name, a configuration, and the (summary, path) of each diagnostic it must get.
type Case = (&'static str, Value, Vec<(&'static str, &'static str)>);

fn obj(pairs: Vec<(&str, Value)>) -> Value {
    let ty = Thing::block().implied_type();
    let Type::Object(fields) = ty else {
        unreachable!()
    };
    let mut map: BTreeMap<String, Value> =
        fields.keys().map(|k| (k.clone(), Value::Null)).collect();
    map.insert("items".into(), Value::List(Vec::new()));
    for (k, v) in pairs {
        map.insert(k.to_owned(), v);
    }
    Value::Object(map)
}

fn size() -> Value {
    Value::Object([("fast".to_owned(), Value::Null)].into_iter().collect())
}

#[test]
fn declared_validators_and_checks_run_with_their_summaries() {
    let cases: Vec<Case> = vec![
        (
            "valid",
            obj(vec![("name", Value::string("a")), ("small", size())]),
            vec![],
        ),
        (
            "all wrong",
            obj(vec![
                ("name", Value::string("a b")),
                ("priority", Value::string("urgent")),
                ("count", Value::number(11)),
                ("low", Value::number(5)),
                ("high", Value::number(1)),
            ]),
            vec![
                ("invalid thing name", "name"),
                ("invalid priority", "priority"),
                ("invalid count", "count"),
                ("one size", "(root)"),
                ("invalid bounds", "low"),
            ],
        ),
        (
            "an unknown value in a map hides no other check",
            obj(vec![
                ("name", Value::string("a")),
                ("small", size()),
                (
                    "secret",
                    Value::Map([("k".to_owned(), Value::unknown())].into_iter().collect()),
                ),
                ("low", Value::number(5)),
                ("high", Value::number(1)),
            ]),
            vec![("invalid bounds", "low")],
        ),
        (
            "a bound not known yet is not judged",
            obj(vec![
                ("name", Value::unknown()),
                ("low", Value::number(5)),
                ("high", Value::unknown()),
                ("large", size()),
            ]),
            vec![],
        ),
    ];
    for (name, config, want) in cases {
        let got: Vec<(String, String)> = validate(&Thing::block(), &config)
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
fn checks_read_a_value_as_far_as_the_model_declares_it() {
    // A resource's configuration holds the framework's `timeouts` block besides the model's
    // attributes, and a hand-written value may leave attributes out.
    let mut config = obj(vec![
        ("name", Value::string("a")),
        ("low", Value::number(5)),
        ("high", Value::number(1)),
        ("small", size()),
    ]);
    if let Value::Object(m) = &mut config {
        m.remove("note");
        m.insert("timeouts".into(), Value::Null);
    }
    let summaries: Vec<String> = validate(&Thing::block(), &config)
        .into_iter()
        .map(|d| d.summary)
        .collect();
    assert_eq!(summaries, ["invalid bounds"]);
}

#[test]
fn the_planner_plans_declared_defaults_in_configured_blocks() {
    let schema = Schema::new(0, Thing::block());
    let config = obj(vec![("name", Value::string("a")), ("small", size())]);
    let (planned, replace) = default_plan(&schema, &Value::Null, &config, &config);
    assert!(replace.is_empty());
    assert_eq!(planned.get_attr("priority"), Some(&Value::string("normal")));
    assert_eq!(planned.get_attr("count"), Some(&Value::number(1)));
    assert!(planned.get_attr("id").is_some_and(Value::is_unknown));
    assert_eq!(
        planned.get_attr("small").and_then(|s| s.get_attr("fast")),
        Some(&Value::Bool(true))
    );
    // An unset block gets no defaults.
    assert_eq!(planned.get_attr("large"), Some(&Value::Null));
    // A configured value wins over the default, and the plan of an unchanged object stands.
    let config = obj(vec![
        ("name", Value::string("a")),
        ("count", Value::number(3)),
        ("small", size()),
    ]);
    let (first, _) = default_plan(&schema, &Value::Null, &config, &config);
    assert_eq!(first.get_attr("count"), Some(&Value::number(3)));
    let mut prior = first.unknown_as_null();
    if let Value::Object(m) = &mut prior {
        m.insert("id".into(), Value::string("x"));
    }
    let (second, replace) = default_plan(&schema, &prior, &prior, &config);
    assert!(replace.is_empty(), "{replace:?}");
    assert_eq!(second, prior);
}

#[test]
fn flattened_models_round_trip_through_values() {
    let ty = Thing::block().implied_type();
    let value = obj(vec![
        ("name", Value::string("a")),
        ("weight", Value::number(7)),
        ("note", Value::string("n")),
        ("count", Value::number(2)),
    ]);
    let thing: Thing = tfplug::model::decode(&value, &ty).expect("decodes");
    assert_eq!(thing.extra.weight, Some(7));
    assert_eq!(thing.count, Some(2));
    assert_eq!(
        thing.scratch, None,
        "a skipped field is not read from values"
    );
    let back = tfplug::model::encode(&thing, &ty).expect("encodes");
    assert_eq!(back.get_attr("weight"), Some(&Value::number(7)));
}

#[test]
fn state_from_before_a_default_existed_is_neither_changed_nor_replaced() {
    let schema = Schema::new(0, Thing::block());
    let config = obj(vec![("name", Value::string("a")), ("small", size())]);
    // State an older provider wrote: `count` (which forces replacement) and `priority` had no
    // defaults then, and the block's `fast` neither.
    let old = obj(vec![
        ("id", Value::string("x")),
        ("name", Value::string("a")),
        (
            "small",
            Value::Object([("fast".to_owned(), Value::Null)].into_iter().collect()),
        ),
    ]);
    let (planned, replace) = default_plan(&schema, &old, &old, &config);
    assert!(replace.is_empty(), "{replace:?}");
    assert_eq!(planned, old);
    // A replacement for another reason creates a new object, with every default.
    let renamed = obj(vec![("name", Value::string("b")), ("small", size())]);
    let mut proposed = renamed.clone();
    if let Value::Object(m) = &mut proposed {
        m.insert("id".into(), Value::string("x"));
    }
    let (planned, replace) = default_plan(&schema, &old, &proposed, &renamed);
    assert_eq!(replace.len(), 1, "{replace:?}");
    assert_eq!(planned.get_attr("count"), Some(&Value::number(1)));
    assert_eq!(planned.get_attr("priority"), Some(&Value::string("normal")));
    assert!(planned.get_attr("id").is_some_and(Value::is_unknown));
}

/// A default that does not fit its field: `1.5` for a whole number.
#[derive(Debug, Serialize, Deserialize, Model)]
struct BadDefault {
    #[tf(default = 1.5)]
    n: Option<u32>,
}

#[test]
fn a_default_that_does_not_fit_its_field_is_a_schema_error() {
    let errors = Schema::new(0, BadDefault::block())
        .validate()
        .err()
        .unwrap_or_default();
    assert!(
        errors.iter().any(|e| e.contains("n: a default must be")),
        "{errors:?}"
    );
}

#[test]
fn live_attributes_are_unknown_in_in_place_updates_only() {
    let schema = Schema::new(0, Thing::block());
    assert!(Thing::block().attribute("state").is_some_and(|a| a.live));
    let config = obj(vec![("name", Value::string("a")), ("small", size())]);
    let (created, _) = default_plan(&schema, &Value::Null, &config, &config);
    let mut prior = created.unknown_as_null();
    if let Value::Object(m) = &mut prior {
        m.insert("id".into(), Value::string("x"));
        m.insert("state".into(), Value::string("running"));
    }
    // Nothing changes: the plan is the prior state, live values included.
    let (same, _) = default_plan(&schema, &prior, &prior, &config);
    assert_eq!(same, prior);
    // An in-place change (`low` neither forces replacement nor is live): `state` is read again.
    let changed_config = obj(vec![
        ("name", Value::string("a")),
        ("small", size()),
        ("low", Value::number(1)),
    ]);
    let mut proposed = prior.clone();
    if let Value::Object(m) = &mut proposed {
        m.insert("low".into(), Value::number(1));
    }
    let (updated, replace) = default_plan(&schema, &prior, &proposed, &changed_config);
    assert!(replace.is_empty(), "{replace:?}");
    assert!(updated.get_attr("state").is_some_and(Value::is_unknown));
    assert_eq!(updated.get_attr("id"), Some(&Value::string("x")));
}
