//! Property tests for the cty value codecs: round trips of generated (type, value) pairs and robustness against arbitrary input.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use tfplug::value::{Number, Refinements, Type, Value, json, msgpack};

fn arb_finite_number() -> BoxedStrategy<Number> {
    prop_oneof![
        any::<i64>().prop_map(Number::from),
        any::<u64>().prop_map(Number::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| Number::from_f64(f).unwrap()),
        "-?[0-9]{1,30}(\\.[0-9]{1,25})?".prop_map(|s| Number::parse(&s).unwrap()),
        "-?[0-9]{1,3}(\\.[0-9]{1,3})?e-?[0-9]{1,2}".prop_map(|s| Number::parse(&s).unwrap()),
    ]
    .boxed()
}

fn arb_number() -> BoxedStrategy<Number> {
    prop_oneof![
        20 => arb_finite_number(),
        1 => Just(Number::from_f64(f64::INFINITY).unwrap()),
        1 => Just(Number::from_f64(f64::NEG_INFINITY).unwrap()),
    ]
    .boxed()
}

fn arb_name() -> impl Strategy<Value = String> {
    "[a-z_]{1,6}"
}

fn arb_type() -> BoxedStrategy<Type> {
    let leaf = prop_oneof![
        Just(Type::String),
        Just(Type::Number),
        Just(Type::Bool),
        Just(Type::Dynamic),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(Type::list),
            inner.clone().prop_map(Type::set),
            inner.clone().prop_map(Type::map),
            btree_map(arb_name(), inner.clone(), 0..4).prop_map(Type::Object),
            vec(inner, 0..4).prop_map(Type::Tuple),
        ]
    })
    .boxed()
}

/// Refinements that survive a round trip: only those meaningful for `ty`.
fn arb_refinements(ty: &Type) -> BoxedStrategy<Refinements> {
    let not_null = any::<bool>();
    match ty {
        Type::Dynamic => Just(Refinements::default()).boxed(),
        Type::String => (not_null, proptest::option::of("[a-zé]{1,10}"))
            .prop_map(|(not_null, string_prefix)| Refinements {
                not_null,
                string_prefix,
                ..Refinements::default()
            })
            .boxed(),
        Type::Number => {
            let bound = || proptest::option::of((arb_finite_number(), any::<bool>()));
            (not_null, bound(), bound())
                .prop_map(|(not_null, number_lower, number_upper)| Refinements {
                    not_null,
                    number_lower,
                    number_upper,
                    ..Refinements::default()
                })
                .boxed()
        }
        Type::List(_) | Type::Set(_) | Type::Map(_) => (
            not_null,
            proptest::option::of(1..u64::MAX),
            proptest::option::of(any::<u64>()),
        )
            .prop_map(|(not_null, length_lower, length_upper)| Refinements {
                not_null,
                length_lower,
                length_upper,
                ..Refinements::default()
            })
            .boxed(),
        _ => not_null
            .prop_map(|not_null| Refinements {
                not_null,
                ..Refinements::default()
            })
            .boxed(),
    }
}

/// Values of type `ty`: nulls, refined unknowns and known values. `dynamic_depth` limits how
/// many dynamic wrappers may nest, since each picks a fresh type.
fn arb_value(ty: &Type, dynamic_depth: u32) -> BoxedStrategy<Value> {
    let known = arb_known(ty, dynamic_depth);
    prop_oneof![
        1 => Just(Value::Null),
        1 => arb_refinements(ty).prop_map(Value::Unknown),
        6 => known,
    ]
    .boxed()
}

fn arb_known(ty: &Type, dynamic_depth: u32) -> BoxedStrategy<Value> {
    match ty {
        Type::String => any::<String>().prop_map(Value::String).boxed(),
        Type::Number => arb_number().prop_map(Value::Number).boxed(),
        Type::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        Type::List(et) => vec(arb_value(et, dynamic_depth), 0..4)
            .prop_map(Value::List)
            .boxed(),
        Type::Set(et) => vec(arb_value(et, dynamic_depth), 0..4)
            .prop_map(Value::Set)
            .boxed(),
        Type::Map(et) => btree_map("[a-z]{0,4}", arb_value(et, dynamic_depth), 0..4)
            .prop_map(Value::Map)
            .boxed(),
        Type::Object(attrs) => attrs
            .iter()
            .map(|(k, t)| {
                let k = k.clone();
                arb_value(t, dynamic_depth)
                    .prop_map(move |v| (k.clone(), v))
                    .boxed()
            })
            .collect::<Vec<_>>()
            .prop_map(|entries| Value::Object(entries.into_iter().collect::<BTreeMap<_, _>>()))
            .boxed(),
        Type::Tuple(ets) => ets
            .iter()
            .map(|t| arb_value(t, dynamic_depth))
            .collect::<Vec<_>>()
            .prop_map(Value::Tuple)
            .boxed(),
        Type::Dynamic if dynamic_depth == 0 => Just(Value::Null).boxed(),
        Type::Dynamic => arb_type()
            .prop_flat_map(move |concrete| {
                arb_value(&concrete, dynamic_depth - 1)
                    .prop_map(move |v| Value::Dynamic(concrete.clone(), Box::new(v)))
            })
            .boxed(),
    }
}

fn arb_typed_value() -> impl Strategy<Value = (Type, Value)> {
    arb_type().prop_flat_map(|ty| {
        let values = arb_value(&ty, 2);
        (Just(ty), values)
    })
}

/// The closest value that has a JSON form: unknowns become null and infinities zero.
fn json_representable(v: &Value) -> Value {
    match v {
        Value::Unknown(_) => Value::Null,
        Value::Number(n) if !n.is_finite() => Value::number(0),
        Value::Null | Value::String(_) | Value::Number(_) | Value::Bool(_) => v.clone(),
        Value::List(vs) => Value::List(vs.iter().map(json_representable).collect()),
        Value::Set(vs) => Value::Set(vs.iter().map(json_representable).collect()),
        Value::Tuple(vs) => Value::Tuple(vs.iter().map(json_representable).collect()),
        Value::Map(m) => Value::Map(
            m.iter()
                .map(|(k, v)| (k.clone(), json_representable(v)))
                .collect(),
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), json_representable(v)))
                .collect(),
        ),
        Value::Dynamic(t, v) => Value::Dynamic(t.clone(), Box::new(json_representable(v))),
    }
}

proptest! {
    #[test]
    fn generated_values_conform((ty, value) in arb_typed_value()) {
        prop_assert!(value.conforms_to(&ty).is_ok(), "{:?}", value.conforms_to(&ty));
    }

    #[test]
    fn msgpack_round_trips((ty, value) in arb_typed_value()) {
        let bytes = msgpack::encode(&value, &ty).unwrap();
        let decoded = msgpack::decode(&bytes, &ty).unwrap();
        prop_assert_eq!(&decoded, &value);
        prop_assert_eq!(msgpack::encode(&decoded, &ty).unwrap(), bytes);
    }

    #[test]
    fn json_round_trips_known_values((ty, value) in arb_typed_value()) {
        let value = json_representable(&value);
        let json = json::to_json(&value, &ty).unwrap();
        prop_assert_eq!(&json::from_json(&json, &ty).unwrap(), &value);
        // The bytes Terraform stores are pretty-printed.
        let pretty = serde_json::to_vec_pretty(&json).unwrap();
        prop_assert_eq!(&json::from_json_bytes(&pretty, &ty).unwrap(), &value);
    }

    #[test]
    fn json_rejects_unknowns((ty, value) in arb_typed_value()) {
        let has_json_form = json_representable(&value) == value;
        prop_assert_eq!(json::to_json(&value, &ty).is_ok(), has_json_form);
    }

    #[test]
    fn truncated_msgpack_is_an_error((ty, value) in arb_typed_value(), cut in any::<prop::sample::Index>()) {
        let bytes = msgpack::encode(&value, &ty).unwrap();
        // msgpack items are self-delimiting, so no strict prefix is a whole value.
        let cut = cut.index(bytes.len());
        prop_assert!(msgpack::decode(&bytes[..cut], &ty).is_err());
        let mut extended = bytes.clone();
        extended.push(0xc0);
        prop_assert!(msgpack::decode(&extended, &ty).is_err());
    }

    #[test]
    fn corrupted_msgpack_never_panics(
        (ty, value) in arb_typed_value(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = msgpack::encode(&value, &ty).unwrap();
        for (at, byte) in flips {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        if let Ok(decoded) = msgpack::decode(&bytes, &ty) {
            prop_assert!(decoded.conforms_to(&ty).is_ok());
        }
    }

    #[test]
    fn random_bytes_never_panic(ty in arb_type(), bytes in vec(any::<u8>(), 0..64)) {
        if let Ok(decoded) = msgpack::decode(&bytes, &ty) {
            prop_assert!(decoded.conforms_to(&ty).is_ok());
        }
        let _ = json::from_json_bytes(&bytes, &ty);
    }

    #[test]
    fn random_json_text_never_panics(ty in arb_type(), text in "[\\[\\]{}\",:0-9a-z.eE+ -]{0,48}") {
        if let Ok(decoded) = json::from_json_bytes(text.as_bytes(), &ty) {
            prop_assert!(decoded.conforms_to(&ty).is_ok());
        }
    }

    #[test]
    fn type_json_round_trips(ty in arb_type()) {
        prop_assert_eq!(Type::from_json_bytes(&ty.to_json_bytes()).unwrap(), ty);
    }

    #[test]
    fn number_text_round_trips(n in arb_number()) {
        let text = n.to_string();
        prop_assert_eq!(Number::parse(&text).unwrap(), n.clone());
        prop_assert!(!text.contains(['e', 'E']));
        if let Some(i) = n.as_i64() {
            prop_assert_eq!(Number::from(i), n);
        }
    }

    #[test]
    fn number_order_matches_f64_where_exact(a in any::<i64>(), b in any::<i64>(), fa in any::<f64>(), fb in any::<f64>()) {
        prop_assert_eq!(Number::from(a).cmp(&Number::from(b)), a.cmp(&b));
        if let (Some(na), Some(nb)) = (Number::from_f64(fa), Number::from_f64(fb)) {
            // Distinct floats have distinct shortest texts, in the same order.
            prop_assert_eq!(Some(na.cmp(&nb)), fa.partial_cmp(&fb));
        }
    }
}
