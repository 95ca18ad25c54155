//! Properties every event pattern must have, checked on generated events.

use closedloop_eventpattern::EventPattern;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1.0e9..1.0e9f64).prop_map(Value::from),
        "[a-zA-Z0-9 ._/-]{0,12}".prop_map(Value::from),
    ]
}

fn field_name() -> impl Strategy<Value = String> {
    "[a-z][a-z-]{0,6}"
}

/// Events: objects whose fields are scalars, arrays of scalars or nested objects.
fn event() -> impl Strategy<Value = Map<String, Value>> {
    let leaf = prop_oneof![
        3 => scalar(),
        1 => prop::collection::vec(scalar(), 0..4).prop_map(Value::Array),
    ];
    let value = leaf.prop_recursive(3, 24, 4, |inner| {
        prop::collection::btree_map(field_name(), inner, 0..4)
            .prop_map(|fields| Value::Object(fields.into_iter().collect()))
    });
    prop::collection::btree_map(field_name(), value, 1..6)
        .prop_map(|fields| fields.into_iter().collect())
}

/// A pattern requiring every leaf value the event has, or `None` if the event has no leaves.
fn pattern_from_event(event: &Map<String, Value>) -> Option<Value> {
    let mut pattern = Map::new();
    for (name, value) in event {
        let required = match value {
            Value::Object(nested) => pattern_from_event(nested),
            Value::Array(items) if items.is_empty() => None,
            Value::Array(items) => Some(Value::Array(items.clone())),
            scalar => Some(json!([scalar])),
        };
        if let Some(required) = required {
            pattern.insert(name.clone(), required);
        }
    }
    (!pattern.is_empty()).then_some(Value::Object(pattern))
}

fn parse(pattern: Value) -> EventPattern {
    EventPattern::parse(&pattern).unwrap_or_else(|error| panic!("{pattern} is invalid: {error}"))
}

fn string_or_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i32>().prop_map(Value::from),
        (-1.0e6..1.0e6f64).prop_map(Value::from),
        "[a-z]{0,8}".prop_map(Value::from),
    ]
}

proptest! {
    #[test]
    fn a_pattern_built_from_an_events_own_values_matches_it(event in event()) {
        let Some(pattern) = pattern_from_event(&event) else {
            return Ok(());
        };
        prop_assert!(parse(pattern.clone()).matches(&Value::Object(event.clone())), "{pattern} vs {event:?}");
    }

    #[test]
    fn anything_but_a_value_never_matches_that_value(excluded in string_or_number(), other in string_or_number()) {
        let pattern = parse(json!({"field": [{"anything-but": excluded.clone()}]}));
        let excluded_event = json!({"field": excluded.clone()});
        prop_assert!(!pattern.matches(&excluded_event), "{excluded} matched");
        let same_number = matches!((&excluded, &other), (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64());
        if other != excluded && !same_number {
            let other_event = json!({"field": other.clone()});
            prop_assert!(pattern.matches(&other_event), "{other} did not match");
        }
    }

    #[test]
    fn anything_but_a_list_never_matches_its_members(excluded in prop::collection::vec("[a-z]{1,6}", 1..5), pick in any::<prop::sample::Index>()) {
        let pattern = parse(json!({"field": [{"anything-but": excluded}]}));
        let member = pick.get(&excluded);
        let member_event = json!({"field": member});
        prop_assert!(!pattern.matches(&member_event), "{member} matched");
    }

    #[test]
    fn exact_numbers_match_whatever_their_json_spelling(number in -1_000_000i64..1_000_000) {
        let pattern = parse(json!({"n": [number]}));
        // Integers below 2^53 are exact in f64, so this is the same number spelt `300.0`.
        let as_float = json!({"n": number as f64});
        prop_assert!(pattern.matches(&as_float), "{as_float} did not match");
        let spelt_with_exponent: Value = serde_json::from_str(&format!(r#"{{"n": {number}e0}}"#)).expect("valid json");
        prop_assert!(pattern.matches(&spelt_with_exponent), "{spelt_with_exponent} did not match");
    }

    #[test]
    fn exists_true_and_false_are_opposites(event in event(), name in field_name()) {
        let event = Value::Object(event);
        let present = parse(json!({(name.clone()): [{"exists": true}]})).matches(&event);
        let absent = parse(json!({(name): [{"exists": false}]})).matches(&event);
        prop_assert_ne!(present, absent);
    }

    #[test]
    fn prefixes_and_suffixes_of_a_string_match_it(text in "\\PC{0,12}", cut in any::<prop::sample::Index>()) {
        let boundaries: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
        let at = *cut.get(&boundaries);
        let (head, tail) = text.split_at(at);
        let event = json!({"s": text.clone()});
        let escaped_head = head.replace('\\', "\\\\").replace('*', "\\*");
        let patterns = [
            json!({"s": [{"prefix": head}]}),
            json!({"s": [{"suffix": tail}]}),
            json!({"s": [{"wildcard": format!("{escaped_head}*")}]}),
        ];
        for pattern in patterns {
            prop_assert!(parse(pattern.clone()).matches(&event), "{pattern} did not match {event}");
        }
        // Case folding is not always reversible (e.g. 'ß' upper-cases to "SS").
        if text.to_uppercase().to_lowercase() == text.to_lowercase() {
            let shouted = json!({"s": [{"equals-ignore-case": text.to_uppercase()}]});
            prop_assert!(parse(shouted.clone()).matches(&event), "{shouted} did not match {event}");
        }
    }

    #[test]
    fn numeric_ranges_hold_exactly_the_numbers_between_their_bounds(
        low in -1000.0..1000.0f64,
        width in 0.001..1000.0f64,
        value in -3000.0..3000.0f64,
    ) {
        let high = low + width;
        let closed = parse(json!({"n": [{"numeric": [">=", low, "<=", high]}]}));
        let open = parse(json!({"n": [{"numeric": [">", low, "<", high]}]}));
        let event = json!({"n": value});
        prop_assert_eq!(closed.matches(&event), low <= value && value <= high);
        prop_assert_eq!(open.matches(&event), low < value && value < high);
    }
}
