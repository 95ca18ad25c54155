//! EventBridge event patterns: parsing and matching.
//!
//! Semantics follow AWS's EventBridge user guide ("Event pattern syntax", "Content filtering in
//! Amazon EventBridge event patterns", "Arrays in Amazon EventBridge event patterns") and the
//! behaviour of `aws/event-ruler`, the matcher EventBridge uses:
//!
//! * A pattern is a JSON object. Every field it names must match (AND); a field's value is either
//!   a nested object or an array of match values, any of which may match (OR).
//! * If the event's value is an array, the field matches when any element matches. Arrays of
//!   objects in the event are searched element by element, so one element must satisfy a whole
//!   nested sub-pattern (no mixing fields from different elements).
//! * Only leaves (strings, numbers, booleans, null) are matched; an object where the pattern
//!   expects a leaf does not match, and counts as "absent" for `{"exists": false}`.
//! * Numbers compare numerically, so `300` matches `300.0` and `3.0e2`.
//! * `$or` may appear in any object: `"$or": [{...}, {...}]` holds when any alternative does.

use serde_json::{Map, Number, Value};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use thiserror::Error;

/// Why a JSON value is not a valid event pattern. `path` is the dotted field path (e.g.
/// `detail.state`), empty for the top level.
#[derive(Debug, Error)]
pub enum PatternError {
    #[error("event pattern is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{} must be a JSON object of fields to match, found {found}", describe_path(.path))]
    NotAnObject { path: String, found: &'static str },
    #[error("{} is an empty object; give at least one field to match on", describe_path(.path))]
    Empty { path: String },
    #[error(
        "field `{path}` must be an array of match values such as [\"value\"], or a nested object; found {found}"
    )]
    NotAnArray { path: String, found: &'static str },
    #[error(
        "field `{path}` has an empty array of match values, which can never match; list at least one value"
    )]
    EmptyArray { path: String },
    #[error(
        "field `{path}`: match values must be strings, numbers, booleans, null or {{\"operator\": ...}} objects; found {found}"
    )]
    InvalidMatchValue { path: String, found: &'static str },
    #[error(
        "field `{path}` uses unknown operator `{operator}`; supported operators are prefix, suffix, \
         equals-ignore-case, wildcard, anything-but, numeric, exists and cidr"
    )]
    UnknownOperator { path: String, operator: String },
    #[error("field `{path}`: `{operator}` {reason}")]
    InvalidOperand {
        path: String,
        operator: &'static str,
        reason: String,
    },
    #[error("{}: `$or` {reason}", describe_path(.path))]
    InvalidOr { path: String, reason: &'static str },
}

fn describe_path(path: &str) -> String {
    if path.is_empty() {
        "the event pattern".to_owned()
    } else {
        format!("field `{path}`")
    }
}

/// A parsed EventBridge event pattern.
#[derive(Clone)]
pub struct EventPattern {
    root: ObjectPattern,
    /// The pattern as written, kept for display and serialisation.
    source: Value,
}

impl EventPattern {
    /// Parses and validates a pattern given as JSON.
    pub fn parse(pattern: &Value) -> Result<Self, PatternError> {
        Ok(Self {
            root: ObjectPattern::parse(pattern, "")?,
            source: pattern.clone(),
        })
    }

    /// Whether `event` matches this pattern.
    pub fn matches(&self, event: &Value) -> bool {
        match event {
            Value::Object(fields) => self.root.matches(fields),
            _ => self.root.matches(&Map::new()),
        }
    }

    /// The pattern as it was written.
    pub fn as_json(&self) -> &Value {
        &self.source
    }
}

impl FromStr for EventPattern {
    type Err = PatternError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(&serde_json::from_str(text)?)
    }
}

impl fmt::Display for EventPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.source)
    }
}

impl fmt::Debug for EventPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventPattern({})", self.source)
    }
}

/// Two patterns are equal when they were written the same way.
impl PartialEq for EventPattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl serde::Serialize for EventPattern {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.source.serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for EventPattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let json = Value::deserialize(deserializer)?;
        Self::parse(&json).map_err(serde::de::Error::custom)
    }
}

#[derive(Clone)]
struct ObjectPattern {
    fields: Vec<(String, FieldPattern)>,
    /// One entry per `$or` key met at this level; each needs one alternative to match.
    alternatives: Vec<Vec<ObjectPattern>>,
}

#[derive(Clone)]
enum FieldPattern {
    Values(Vec<Matcher>),
    Nested(ObjectPattern),
}

impl ObjectPattern {
    fn parse(pattern: &Value, path: &str) -> Result<Self, PatternError> {
        let Value::Object(entries) = pattern else {
            return Err(PatternError::NotAnObject {
                path: path.to_owned(),
                found: describe(pattern),
            });
        };
        if entries.is_empty() {
            return Err(PatternError::Empty {
                path: path.to_owned(),
            });
        }
        let mut parsed = Self {
            fields: Vec::new(),
            alternatives: Vec::new(),
        };
        for (name, value) in entries {
            if name == "$or" {
                parsed.alternatives.push(parse_or(value, path)?);
                continue;
            }
            let field_path = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            let field = match value {
                Value::Object(_) => FieldPattern::Nested(Self::parse(value, &field_path)?),
                Value::Array(values) => FieldPattern::Values(parse_values(values, &field_path)?),
                other => {
                    return Err(PatternError::NotAnArray {
                        path: field_path,
                        found: describe(other),
                    });
                }
            };
            parsed.fields.push((name.clone(), field));
        }
        Ok(parsed)
    }

    fn matches(&self, event: &Map<String, Value>) -> bool {
        self.fields
            .iter()
            .all(|(name, field)| field.matches(event.get(name)))
            && self
                .alternatives
                .iter()
                .all(|choices| choices.iter().any(|choice| choice.matches(event)))
    }
}

fn parse_or(value: &Value, path: &str) -> Result<Vec<ObjectPattern>, PatternError> {
    let invalid = |reason| PatternError::InvalidOr {
        path: path.to_owned(),
        reason,
    };
    let Value::Array(choices) = value else {
        return Err(invalid("must be an array of pattern objects"));
    };
    if choices.len() < 2 {
        return Err(invalid(
            "needs at least two pattern objects to choose between",
        ));
    }
    choices
        .iter()
        .map(|choice| match choice {
            Value::Object(_) => ObjectPattern::parse(choice, path),
            _ => Err(invalid("may only contain pattern objects")),
        })
        .collect()
}

impl FieldPattern {
    fn matches(&self, value: Option<&Value>) -> bool {
        match self {
            Self::Values(matchers) => {
                let any = |leaves: &[&Value]| matchers.iter().any(|m| m.matches(leaves));
                // Only arrays need collecting; a single leaf (the usual case) is matched as is.
                match value {
                    Some(array @ Value::Array(_)) => {
                        let mut leaves = Vec::new();
                        collect_leaves(array, &mut leaves);
                        any(&leaves)
                    }
                    None | Some(Value::Object(_)) => any(&[]),
                    Some(leaf) => any(&[leaf]),
                }
            }
            Self::Nested(pattern) => match value {
                Some(Value::Object(fields)) => pattern.matches(fields),
                Some(array @ Value::Array(_)) => {
                    let mut objects = Vec::new();
                    collect_objects(array, &mut objects);
                    if objects.is_empty() {
                        pattern.matches(&Map::new())
                    } else {
                        objects.iter().any(|object| pattern.matches(object))
                    }
                }
                // Nothing to descend into: only `exists: false` leaves can still match.
                _ => pattern.matches(&Map::new()),
            },
        }
    }
}

fn collect_leaves<'a>(value: &'a Value, leaves: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| collect_leaves(item, leaves)),
        Value::Object(_) => {}
        leaf => leaves.push(leaf),
    }
}

fn collect_objects<'a>(value: &'a Value, objects: &mut Vec<&'a Map<String, Value>>) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| collect_objects(item, objects)),
        Value::Object(fields) => objects.push(fields),
        _ => {}
    }
}

#[derive(Clone)]
enum Matcher {
    /// `{"exists": bool}` looks at whether the field has any leaf value at all.
    Exists(bool),
    /// Every other match value tests the field's leaf values one at a time.
    Leaf(LeafTest),
}

#[derive(Clone)]
enum LeafTest {
    Equals(Value),
    Text(TextTest),
    AnythingBut(Exclusion),
    Numeric(NumericRange),
    Cidr(Cidr),
}

/// Tests that only apply to string values. Ignore-case variants hold lower-cased text.
#[derive(Clone)]
enum TextTest {
    Prefix(String),
    PrefixIgnoreCase(String),
    Suffix(String),
    SuffixIgnoreCase(String),
    EqualsIgnoreCase(String),
    Wildcard(Wildcard),
}

#[derive(Clone)]
enum Exclusion {
    /// Strings or numbers (never mixed, as AWS requires).
    Values(Vec<Value>),
    Text(Vec<TextTest>),
}

impl Matcher {
    fn matches(&self, leaves: &[&Value]) -> bool {
        match self {
            Self::Exists(expected) => leaves.is_empty() != *expected,
            Self::Leaf(test) => leaves.iter().any(|leaf| test.matches(leaf)),
        }
    }
}

impl LeafTest {
    fn matches(&self, leaf: &Value) -> bool {
        match self {
            Self::Equals(expected) => scalars_equal(expected, leaf),
            Self::Text(test) => leaf.as_str().is_some_and(|text| test.matches(text)),
            Self::AnythingBut(Exclusion::Values(excluded)) => {
                !excluded.iter().any(|value| scalars_equal(value, leaf))
            }
            // Only strings can have the excluded shape, so any other leaf passes.
            Self::AnythingBut(Exclusion::Text(tests)) => !leaf
                .as_str()
                .is_some_and(|text| tests.iter().any(|test| test.matches(text))),
            Self::Numeric(range) => leaf.as_f64().is_some_and(|number| range.contains(number)),
            Self::Cidr(block) => leaf
                .as_str()
                .and_then(|text| text.parse::<IpAddr>().ok())
                .is_some_and(|address| block.contains(address)),
        }
    }
}

impl TextTest {
    fn matches(&self, text: &str) -> bool {
        match self {
            Self::Prefix(prefix) => text.starts_with(prefix.as_str()),
            Self::PrefixIgnoreCase(prefix) => text.to_lowercase().starts_with(prefix.as_str()),
            Self::Suffix(suffix) => text.ends_with(suffix.as_str()),
            Self::SuffixIgnoreCase(suffix) => text.to_lowercase().ends_with(suffix.as_str()),
            Self::EqualsIgnoreCase(expected) => text.to_lowercase() == *expected,
            Self::Wildcard(wildcard) => wildcard.matches(text),
        }
    }
}

fn scalars_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => numbers_equal(x, y),
        _ => a == b,
    }
}

fn numbers_equal(a: &Number, b: &Number) -> bool {
    // Integers compare exactly so large IDs are not merged by f64 rounding.
    let integer = |n: &Number| n.as_i64().map(i128::from).or(n.as_u64().map(i128::from));
    match (integer(a), integer(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a.as_f64() == b.as_f64(),
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn parse_values(values: &[Value], path: &str) -> Result<Vec<Matcher>, PatternError> {
    if values.is_empty() {
        return Err(PatternError::EmptyArray {
            path: path.to_owned(),
        });
    }
    values
        .iter()
        .map(|value| match value {
            Value::Object(operator) => parse_operator(operator, path),
            Value::Array(_) => Err(PatternError::InvalidMatchValue {
                path: path.to_owned(),
                found: describe(value),
            }),
            scalar => Ok(Matcher::Leaf(LeafTest::Equals(scalar.clone()))),
        })
        .collect()
}

/// Reads a `{"operator": operand}` match value.
fn parse_operator(object: &Map<String, Value>, path: &str) -> Result<Matcher, PatternError> {
    let mut entries = object.iter();
    let (Some((name, operand)), None) = (entries.next(), entries.next()) else {
        return Err(PatternError::InvalidMatchValue {
            path: path.to_owned(),
            found: if object.is_empty() {
                "an empty object"
            } else {
                "an object with more than one operator"
            },
        });
    };
    let invalid = |operator: &'static str, reason: String| PatternError::InvalidOperand {
        path: path.to_owned(),
        operator,
        reason,
    };
    let leaf = |test| Ok(Matcher::Leaf(test));
    match name.as_str() {
        "prefix" => {
            let (text, ignore_case) = text_or_ignore_case(operand, "prefix", path)?;
            leaf(LeafTest::Text(if ignore_case {
                TextTest::PrefixIgnoreCase(text)
            } else {
                TextTest::Prefix(text)
            }))
        }
        "suffix" => {
            let (text, ignore_case) = text_or_ignore_case(operand, "suffix", path)?;
            leaf(LeafTest::Text(if ignore_case {
                TextTest::SuffixIgnoreCase(text)
            } else {
                TextTest::Suffix(text)
            }))
        }
        "equals-ignore-case" => match operand {
            Value::String(text) => leaf(LeafTest::Text(TextTest::EqualsIgnoreCase(
                text.to_lowercase(),
            ))),
            other => Err(invalid(
                "equals-ignore-case",
                format!("expects a string, found {}", describe(other)),
            )),
        },
        "wildcard" => match operand {
            Value::String(text) => match Wildcard::parse(text) {
                Ok(wildcard) => leaf(LeafTest::Text(TextTest::Wildcard(wildcard))),
                Err(reason) => Err(invalid("wildcard", reason)),
            },
            other => Err(invalid(
                "wildcard",
                format!("expects a string, found {}", describe(other)),
            )),
        },
        "anything-but" => leaf(LeafTest::AnythingBut(parse_anything_but(operand, path)?)),
        "numeric" => match NumericRange::parse(operand) {
            Ok(range) => leaf(LeafTest::Numeric(range)),
            Err(reason) => Err(invalid("numeric", reason)),
        },
        "exists" => match operand {
            Value::Bool(expected) => Ok(Matcher::Exists(*expected)),
            other => Err(invalid(
                "exists",
                format!("expects true or false, found {}", describe(other)),
            )),
        },
        "cidr" => match operand {
            Value::String(text) => match Cidr::parse(text) {
                Ok(block) => leaf(LeafTest::Cidr(block)),
                Err(reason) => Err(invalid("cidr", reason)),
            },
            other => Err(invalid(
                "cidr",
                format!(
                    "expects a string such as \"10.0.0.0/24\", found {}",
                    describe(other)
                ),
            )),
        },
        unknown => Err(PatternError::UnknownOperator {
            path: path.to_owned(),
            operator: unknown.to_owned(),
        }),
    }
}

/// Reads the operand of `prefix`/`suffix`: a string, or `{"equals-ignore-case": string}`.
/// Returns the text (lower-cased when ignoring case) and whether case is ignored.
fn text_or_ignore_case(
    operand: &Value,
    operator: &'static str,
    path: &str,
) -> Result<(String, bool), PatternError> {
    match operand {
        Value::String(text) => Ok((text.clone(), false)),
        Value::Object(inner) if inner.len() == 1 => match inner.get("equals-ignore-case") {
            Some(Value::String(text)) => Ok((text.to_lowercase(), true)),
            _ => Err(PatternError::InvalidOperand {
                path: path.to_owned(),
                operator,
                reason: "expects a string or {\"equals-ignore-case\": \"text\"}".to_owned(),
            }),
        },
        other => Err(PatternError::InvalidOperand {
            path: path.to_owned(),
            operator,
            reason: format!(
                "expects a string or {{\"equals-ignore-case\": \"text\"}}, found {}",
                describe(other)
            ),
        }),
    }
}

fn parse_anything_but(operand: &Value, path: &str) -> Result<Exclusion, PatternError> {
    let invalid = |reason: String| PatternError::InvalidOperand {
        path: path.to_owned(),
        operator: "anything-but",
        reason,
    };
    match operand {
        Value::String(_) | Value::Number(_) => Ok(Exclusion::Values(vec![operand.clone()])),
        Value::Array(values) => {
            let all_strings = values.iter().all(Value::is_string);
            let all_numbers = values.iter().all(Value::is_number);
            if values.is_empty() || !(all_strings || all_numbers) {
                return Err(invalid(
                    "expects a non-empty list of only strings or only numbers".to_owned(),
                ));
            }
            Ok(Exclusion::Values(values.clone()))
        }
        Value::Object(inner) => {
            let mut entries = inner.iter();
            let (Some((name, value)), None) = (entries.next(), entries.next()) else {
                return Err(invalid(
                    "expects exactly one of prefix, suffix, equals-ignore-case or wildcard inside"
                        .to_owned(),
                ));
            };
            let single = || {
                value.as_str().map(str::to_owned).ok_or_else(|| {
                    // AWS allows one prefix or suffix here, not a list.
                    invalid(format!(
                        "`{name}` inside anything-but expects a single string"
                    ))
                })
            };
            let one_or_many = || {
                one_or_many_strings(value).ok_or_else(|| {
                    invalid(format!(
                        "`{name}` inside anything-but expects a string or a list of strings"
                    ))
                })
            };
            let tests = match name.as_str() {
                "prefix" => vec![TextTest::Prefix(single()?)],
                "suffix" => vec![TextTest::Suffix(single()?)],
                "equals-ignore-case" => one_or_many()?
                    .into_iter()
                    .map(|text| TextTest::EqualsIgnoreCase(text.to_lowercase()))
                    .collect(),
                "wildcard" => one_or_many()?
                    .iter()
                    .map(|text| Wildcard::parse(text).map(TextTest::Wildcard))
                    .collect::<Result<_, _>>()
                    .map_err(invalid)?,
                other => {
                    return Err(invalid(format!(
                        "does not support `{other}` inside; use prefix, suffix, equals-ignore-case or wildcard"
                    )));
                }
            };
            Ok(Exclusion::Text(tests))
        }
        other => Err(invalid(format!(
            "expects a string, a number, a list of them, or an operator object; found {}",
            describe(other)
        ))),
    }
}

fn one_or_many_strings(value: &Value) -> Option<Vec<String>> {
    match value {
        Value::String(text) => Some(vec![text.clone()]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect(),
        _ => None,
    }
}

#[derive(Clone, Copy)]
struct Bound {
    value: f64,
    inclusive: bool,
}

#[derive(Clone)]
struct NumericRange {
    lower: Option<Bound>,
    upper: Option<Bound>,
}

impl NumericRange {
    /// Parses `["=", n]`, `[">", n]`, `["<=", n]`, ... or a lower bound followed by an upper
    /// bound such as `[">", 0, "<=", 5]` (the order event-ruler accepts).
    fn parse(operand: &Value) -> Result<Self, String> {
        const USAGE: &str = "expects an operator and a number, or a lower and an upper bound, \
                             e.g. [\"=\", 3], [\">=\", 0] or [\">\", 0, \"<=\", 5]";
        let Value::Array(terms) = operand else {
            return Err(USAGE.to_owned());
        };
        let mut pairs = Vec::new();
        for pair in terms.chunks(2) {
            let [Value::String(operator), Value::Number(number)] = pair else {
                return Err(USAGE.to_owned());
            };
            let value = number
                .as_f64()
                .filter(|value| value.is_finite())
                .ok_or_else(|| format!("cannot use {number} as a number"))?;
            pairs.push((operator.as_str(), value));
        }
        let lower = |operator: &str, value| match operator {
            ">" => Some(Bound {
                value,
                inclusive: false,
            }),
            ">=" => Some(Bound {
                value,
                inclusive: true,
            }),
            _ => None,
        };
        let upper = |operator: &str, value| match operator {
            "<" => Some(Bound {
                value,
                inclusive: false,
            }),
            "<=" => Some(Bound {
                value,
                inclusive: true,
            }),
            _ => None,
        };
        let range = match pairs.as_slice() {
            [("=", value)] => {
                let exact = Bound {
                    value: *value,
                    inclusive: true,
                };
                Self {
                    lower: Some(exact),
                    upper: Some(exact),
                }
            }
            [(operator, value)] => match (lower(operator, *value), upper(operator, *value)) {
                (None, None) => {
                    return Err(format!(
                        "has unknown operator `{operator}`; use =, <, <=, > or >="
                    ));
                }
                (lower, upper) => Self { lower, upper },
            },
            [(low_op, low), (high_op, high)] => {
                let (Some(lower), Some(upper)) = (lower(low_op, *low), upper(high_op, *high))
                else {
                    return Err(format!(
                        "range must be a lower bound (> or >=) followed by an upper bound (< or <=), found `{low_op}` then `{high_op}`"
                    ));
                };
                if lower.value >= upper.value {
                    return Err(format!(
                        "range is empty: lower bound {low} must be less than upper bound {high}"
                    ));
                }
                Self {
                    lower: Some(lower),
                    upper: Some(upper),
                }
            }
            _ => return Err(USAGE.to_owned()),
        };
        Ok(range)
    }

    fn contains(&self, number: f64) -> bool {
        let above = self
            .lower
            .is_none_or(|bound| number > bound.value || (bound.inclusive && number == bound.value));
        let below = self
            .upper
            .is_none_or(|bound| number < bound.value || (bound.inclusive && number == bound.value));
        above && below
    }
}

/// A `wildcard` operand: `*` matches any run of characters, `\*` a literal star and `\\` a
/// literal backslash (event-ruler's rules, which also forbid `**`).
#[derive(Clone)]
struct Wildcard {
    tokens: Vec<WildcardToken>,
}

#[derive(Clone, Copy, PartialEq)]
enum WildcardToken {
    Char(char),
    Star,
}

impl Wildcard {
    fn parse(text: &str) -> Result<Self, String> {
        let mut tokens = Vec::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            let token = match c {
                '*' if tokens.last() == Some(&WildcardToken::Star) => {
                    return Err(format!(
                        "`{text}` has consecutive `*` characters, which AWS does not allow"
                    ));
                }
                '*' => WildcardToken::Star,
                '\\' => match chars.next() {
                    Some(escaped @ ('*' | '\\')) => WildcardToken::Char(escaped),
                    _ => {
                        return Err(format!(
                            "`{text}` has a backslash that escapes neither `*` nor `\\`"
                        ));
                    }
                },
                other => WildcardToken::Char(other),
            };
            tokens.push(token);
        }
        Ok(Self { tokens })
    }

    /// Glob matching with backtracking to the most recent star.
    fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let (mut t, mut p) = (0, 0);
        let mut resume: Option<(usize, usize)> = None;
        while t < text.len() {
            match self.tokens.get(p) {
                Some(WildcardToken::Char(c)) if *c == text[t] => {
                    t += 1;
                    p += 1;
                }
                Some(WildcardToken::Star) => {
                    resume = Some((p, t));
                    p += 1;
                }
                _ => match resume {
                    Some((star, matched_from)) => {
                        p = star + 1;
                        t = matched_from + 1;
                        resume = Some((star, t));
                    }
                    None => return false,
                },
            }
        }
        self.tokens[p..]
            .iter()
            .all(|token| *token == WildcardToken::Star)
    }
}

/// An IPv4 or IPv6 address block such as `10.0.0.0/24`.
#[derive(Clone)]
struct Cidr {
    network: IpAddr,
    prefix_len: u32,
}

impl Cidr {
    fn parse(text: &str) -> Result<Self, String> {
        let invalid =
            || format!("expects an address block such as \"10.0.0.0/24\", found \"{text}\"");
        let (address, prefix_len) = text.split_once('/').ok_or_else(invalid)?;
        let network: IpAddr = address.parse().map_err(|_| invalid())?;
        let prefix_len: u32 = prefix_len.parse().map_err(|_| invalid())?;
        let max_len = if network.is_ipv4() { 32 } else { 128 };
        if prefix_len > max_len {
            return Err(format!(
                "prefix length /{prefix_len} is longer than the {max_len} bits of the address"
            ));
        }
        Ok(Self {
            network,
            prefix_len,
        })
    }

    fn contains(&self, address: IpAddr) -> bool {
        let (network, address, width) = match (self.network, address) {
            (IpAddr::V4(net), IpAddr::V4(addr)) => {
                (u128::from(u32::from(net)), u128::from(u32::from(addr)), 32)
            }
            (IpAddr::V6(net), IpAddr::V6(addr)) => (u128::from(net), u128::from(addr), 128),
            _ => return false,
        };
        let ignored_bits = width - self.prefix_len;
        // checked_shr: a /0 block ignores all 128 bits, which a plain shift cannot express.
        network.checked_shr(ignored_bits).unwrap_or(0)
            == address.checked_shr(ignored_bits).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wildcard(pattern: &str) -> Wildcard {
        Wildcard::parse(pattern).expect("valid wildcard")
    }

    #[test]
    fn wildcard_stars_match_any_run_of_characters() {
        assert!(wildcard("Simple*Service").matches("SimpleQueueService"));
        assert!(wildcard("Simple*Service").matches("SimpleService"));
        assert!(!wildcard("Simple*Service").matches("SimpleServices"));
        assert!(wildcard("*/lib/*").matches("/usr/lib/x.so"));
        assert!(wildcard("a*b*c").matches("aXbYbZc"));
        assert!(!wildcard("a*b*c").matches("aXbYbZ"));
        assert!(wildcard("*").matches(""));
        assert!(wildcard("").matches(""));
        assert!(!wildcard("").matches("x"));
    }

    #[test]
    fn wildcard_escapes_match_literal_characters() {
        assert!(wildcard(r"a\*b").matches("a*b"));
        assert!(!wildcard(r"a\*b").matches("aXb"));
        assert!(wildcard(r"a\\b").matches(r"a\b"));
        assert!(Wildcard::parse("a**b").is_err());
        assert!(Wildcard::parse(r"a\b").is_err());
    }

    #[test]
    fn cidr_blocks_contain_their_addresses() {
        let block = Cidr::parse("10.0.0.0/24").expect("valid block");
        assert!(block.contains("10.0.0.255".parse().expect("ip")));
        assert!(!block.contains("10.0.1.0".parse().expect("ip")));
        assert!(!block.contains("::1".parse().expect("ip")));
        let everything = Cidr::parse("0.0.0.0/0").expect("valid block");
        assert!(everything.contains("192.168.1.1".parse().expect("ip")));
        let v6 = Cidr::parse("2001:db8::/32").expect("valid block");
        assert!(v6.contains("2001:db8:1::5".parse().expect("ip")));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("10.0.0.0").is_err());
    }

    #[test]
    fn a_pattern_read_back_from_its_text_matches_the_same_numbers() {
        // Found by fuzzing: a decimal integer past u64 is a float, and unless JSON parsing
        // rounds correctly, writing the pattern out and reading it back moved it by one ulp.
        let text = r#"{"n": [1122222222222222222222222222222220]}"#;
        let event: Value =
            serde_json::from_str(r#"{"n": 1122222222222222222222222222222220}"#).expect("json");
        let pattern: EventPattern = text.parse().expect("valid pattern");
        assert!(pattern.matches(&event));
        let again: EventPattern = pattern.to_string().parse().expect("reads back");
        assert!(again.matches(&event), "{again} does not match {event}");
    }

    #[test]
    fn numeric_ranges_respect_inclusive_and_exclusive_bounds() {
        let range = NumericRange::parse(&json!([">", 0, "<=", 5])).expect("valid range");
        assert!(!range.contains(0.0));
        assert!(range.contains(0.5));
        assert!(range.contains(5.0));
        assert!(!range.contains(5.1));
        let exact = NumericRange::parse(&json!(["=", 3.018e2])).expect("valid range");
        assert!(exact.contains(301.8));
        assert!(NumericRange::parse(&json!(["<=", 5, ">", 0])).is_err());
        assert!(NumericRange::parse(&json!([">", 5, "<", 5])).is_err());
        assert!(NumericRange::parse(&json!(["!=", 5])).is_err());
        assert!(NumericRange::parse(&json!([">", "5"])).is_err());
        assert!(NumericRange::parse(&json!([">", 1, "<"])).is_err());
    }
}
