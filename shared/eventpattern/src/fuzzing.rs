//! The event-pattern fuzz harness (`fuzz/fuzz_targets/eventpattern.rs`), kept here so the
//! stable test below replays the committed corpus through it.
//!
//! Input: a pattern's JSON, a NUL byte, an event's JSON (no NUL: the same JSON is both).

use serde_json::{Map, Value};

use crate::EventPattern;

/// Parses the pattern and matches the event. Invalid JSON or patterns are refusals, never
/// panics; valid ones obey the properties below.
pub fn pattern(data: &[u8]) {
    let (pattern_bytes, event_bytes) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, data),
    };
    let Ok(pattern_json) = serde_json::from_slice::<Value>(pattern_bytes) else {
        return;
    };
    let event = serde_json::from_slice::<Value>(event_bytes).unwrap_or(Value::Null);
    let parsed = match EventPattern::parse(&pattern_json) {
        Ok(p) => p,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let matched = parsed.matches(&event);

    // An event field's value and the same value in a one-element array match alike ("if the
    // value in the event is an array, the pattern matches if any element matches").
    if let Value::Object(fields) = &event {
        let wrapped = Value::Object(fields.iter().map(|(k, v)| (k.clone(), wrap(v))).collect());
        assert_eq!(
            parsed.matches(&wrapped),
            matched,
            "wrapping values in arrays changed the match: {pattern_json} on {event}"
        );
    }

    // `$or` of the pattern and a pattern that never matches is the pattern.
    let never = serde_json::json!({"fuzz-field-never-present": [{"exists": true}]});
    let never_matched = EventPattern::parse(&never)
        .expect("a valid pattern")
        .matches(&event);
    let or = serde_json::json!({"$or": [pattern_json.clone(), never]});
    let or = EventPattern::parse(&or).expect("an $or of valid patterns is valid");
    assert_eq!(
        or.matches(&event),
        matched || never_matched,
        "$or changed the match"
    );

    // Patterns of plain values only: the matcher agrees with a direct reading of the rules.
    if let Some(expected) = reference_matches(&pattern_json, &event) {
        assert_eq!(matched, expected, "{pattern_json} on {event}");
    }

    // What a pattern serialises to parses back to a pattern that matches the same.
    let again: EventPattern =
        serde_json::from_str(&parsed.to_string()).expect("a pattern reads back");
    assert_eq!(again.matches(&event), matched);
}

/// Wraps every value below the top level in a one-element array (arrays stay as they are:
/// nesting them further changes nothing either, but flat is what events carry).
fn wrap(value: &Value) -> Value {
    match value {
        Value::Object(fields) => Value::Array(vec![Value::Object(
            fields.iter().map(|(k, v)| (k.clone(), wrap(v))).collect(),
        )]),
        Value::Array(items) => Value::Array(items.iter().map(wrap_in_array).collect()),
        leaf => Value::Array(vec![leaf.clone()]),
    }
}

fn wrap_in_array(value: &Value) -> Value {
    match value {
        Value::Object(fields) => {
            Value::Object(fields.iter().map(|(k, v)| (k.clone(), wrap(v))).collect())
        }
        other => other.clone(),
    }
}

/// EventBridge's rules for patterns without operators, read directly: every field of the
/// pattern must match; a list of values matches when one of the event's leaves (the value, or
/// any element of an array) equals one of them, numbers by value; a nested pattern matches an
/// object, or any object in an array. `None` when the pattern uses operators or `$or`.
fn reference_matches(pattern: &Value, event: &Value) -> Option<bool> {
    let empty = Map::new();
    let fields = match event {
        Value::Object(f) => f,
        _ => &empty,
    };
    reference_object(pattern.as_object()?, fields)
}

fn reference_object(pattern: &Map<String, Value>, event: &Map<String, Value>) -> Option<bool> {
    let mut all = true;
    for (name, expected) in pattern {
        if name == "$or" {
            return None;
        }
        let actual = event.get(name);
        let ok = match expected {
            Value::Array(values) => {
                if values.iter().any(|v| v.is_object() || v.is_array()) {
                    return None;
                }
                let leaves = leaves_of(actual);
                values
                    .iter()
                    .any(|v| leaves.iter().any(|leaf| same_scalar(v, leaf)))
            }
            Value::Object(nested) => {
                let objects = objects_of(actual);
                if objects.is_empty() {
                    reference_object(nested, &Map::new())?
                } else {
                    let mut any = false;
                    for object in objects {
                        any |= reference_object(nested, object)?;
                    }
                    any
                }
            }
            _ => return None,
        };
        all &= ok;
    }
    Some(all)
}

fn leaves_of(value: Option<&Value>) -> Vec<&Value> {
    match value {
        None | Some(Value::Object(_)) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .flat_map(|item| leaves_of(Some(item)))
            .collect(),
        Some(leaf) => vec![leaf],
    }
}

fn objects_of(value: Option<&Value>) -> Vec<&Map<String, Value>> {
    match value {
        Some(Value::Object(fields)) => vec![fields],
        Some(Value::Array(items)) => items
            .iter()
            .flat_map(|item| objects_of(Some(item)))
            .collect(),
        _ => Vec::new(),
    }
}

fn integer(n: &serde_json::Number) -> Option<i128> {
    n.as_i64().map(i128::from).or(n.as_u64().map(i128::from))
}

/// Equal JSON scalars, numbers by value: integers exactly, others as floating point.
fn same_scalar(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (integer(x), integer(y)) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    #[test]
    fn the_pattern_corpus_replays() {
        // The kept corpus and the inputs that once crashed (docs/fuzzing.md).
        let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
        let mut files: Vec<_> = [
            fuzz.join("corpus/eventpattern"),
            fuzz.join("regressions/eventpattern"),
        ]
        .iter()
        .filter(|dir| dir.is_dir())
        .flat_map(|dir| std::fs::read_dir(dir).expect("a readable corpus directory"))
        .map(|entry| entry.expect("a corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
        files.sort();
        assert!(files.len() > 1, "no corpus in {}", fuzz.display());
        for path in files {
            let bytes = std::fs::read(&path).expect("a readable corpus file");
            if std::panic::catch_unwind(|| super::pattern(&bytes)).is_err() {
                panic!("{} fails its harness", path.display());
            }
        }
    }
}
