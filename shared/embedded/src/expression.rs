//! DynamoDB's condition and update semantics, evaluated in Rust on decoded items.
//!
//! The embedded store only holds and indexes items; what a condition means and what an update
//! does is decided here, inside the write transaction, so it matches DynamoDB exactly:
//! comparisons with a missing attribute are false, numbers compare as numbers ("9" < "10"),
//! strings by UTF-8 bytes, and an update on a missing item creates it.

use std::cmp::Ordering;

use closedloop_core::store::{Condition, Item, Key, StoreError, Update, Value};

/// Whether `condition` holds on `item` (`None`: the item does not exist).
pub(crate) fn condition_holds(condition: &Condition, item: Option<&Item>) -> bool {
    let attr = |name: &str| item.and_then(|i| i.get(name));
    let ordered = |name: &str, value: &Value, accept: fn(Ordering) -> bool| {
        attr(name)
            .and_then(|stored| compare(stored, value))
            .is_some_and(accept)
    };
    match condition {
        Condition::Exists(name) => attr(name).is_some(),
        Condition::NotExists(name) => attr(name).is_none(),
        Condition::Eq(name, value) => attr(name).is_some_and(|stored| values_equal(stored, value)),
        Condition::Lt(name, value) => ordered(name, value, Ordering::is_lt),
        Condition::Le(name, value) => ordered(name, value, Ordering::is_le),
        Condition::Gt(name, value) => ordered(name, value, Ordering::is_gt),
        Condition::Ge(name, value) => ordered(name, value, Ordering::is_ge),
        Condition::BeginsWith(name, prefix) => {
            matches!(attr(name), Some(Value::S(s)) if s.starts_with(prefix.as_str()))
        }
        Condition::And(all) => all.iter().all(|c| condition_holds(c, item)),
        Condition::Or(any) => any.iter().any(|c| condition_holds(c, item)),
        Condition::Not(inner) => !condition_holds(inner, item),
    }
}

/// The order of two values, where DynamoDB defines one: strings by bytes, numbers by value.
/// Other types (and mixed types) do not compare, so `<` on them is false.
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::S(a), Value::S(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
        (Value::N(a), Value::N(b)) => compare_numbers(a, b),
        _ => None,
    }
}

/// Equality as DynamoDB's `=`: numbers by value, lists and maps element by element.
fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::N(a), Value::N(b)) => compare_numbers(a, b) == Some(Ordering::Equal),
        (Value::L(a), Value::L(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| values_equal(x, y))
        }
        (Value::M(a), Value::M(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|((ka, va), (kb, vb))| ka == kb && values_equal(va, vb))
        }
        _ => a == b,
    }
}

/// The item after `update`, starting from `old` or, if absent, from the bare key.
pub(crate) fn apply_update(
    key: &Key,
    old: Option<&Item>,
    update: &Update,
) -> Result<Item, StoreError> {
    let mut item = old.cloned().unwrap_or_else(|| key.to_item());
    for (name, value) in &update.set {
        item.insert(name.clone(), value.clone());
    }
    for (name, value) in &update.set_if_not_exists {
        item.entry(name.clone()).or_insert_with(|| value.clone());
    }
    for (name, delta) in &update.add {
        let sum = match item.get(name) {
            None => delta.to_string(),
            Some(Value::N(current)) => add_to_number(current, *delta).ok_or_else(|| {
                StoreError::Invalid(format!("ADD {delta} to {name}={current} is out of range"))
            })?,
            Some(other) => {
                return Err(StoreError::Invalid(format!(
                    "ADD needs a number, but {name} holds {other:?}"
                )));
            }
        };
        item.insert(name.clone(), Value::N(sum));
    }
    for name in &update.remove {
        item.remove(name);
    }
    Ok(item)
}

/// A decimal number split into sign and digits, without leading zeros in the integer part
/// or trailing zeros in the fraction, so that comparing digit strings compares values.
struct Decimal<'a> {
    negative: bool,
    int: &'a str,
    frac: &'a str,
}

impl<'a> Decimal<'a> {
    fn parse(n: &'a str) -> Option<Self> {
        let (negative, digits) = match n.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, n),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() || !all_digits(int) || !all_digits(frac) {
            return None;
        }
        let int = int.trim_start_matches('0');
        let frac = frac.trim_end_matches('0');
        let is_zero = int.is_empty() && frac.is_empty();
        Some(Decimal {
            negative: negative && !is_zero,
            int,
            frac,
        })
    }

    fn cmp_magnitude(&self, other: &Self) -> Ordering {
        self.int
            .len()
            .cmp(&other.int.len())
            .then_with(|| self.int.cmp(other.int))
            .then_with(|| self.frac.cmp(other.frac))
    }
}

/// Compares two decimal strings by value, at any precision.
pub(crate) fn compare_numbers(a: &str, b: &str) -> Option<Ordering> {
    let (a, b) = (Decimal::parse(a)?, Decimal::parse(b)?);
    Some(match (a.negative, b.negative) {
        (false, true) => Ordering::Greater,
        (true, false) => Ordering::Less,
        (false, false) => a.cmp_magnitude(&b),
        (true, true) => a.cmp_magnitude(&b).reverse(),
    })
}

/// `current + delta` as a decimal string, exact (scaled 128-bit integers); `None` when out of
/// range or not a number.
pub(crate) fn add_to_number(current: &str, delta: i64) -> Option<String> {
    let d = Decimal::parse(current)?;
    let scale = u32::try_from(d.frac.len()).ok()?;
    let digits = format!("{}{}", d.int, d.frac);
    let magnitude: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    let mantissa = if d.negative { -magnitude } else { magnitude };
    let scaled_delta = i128::from(delta).checked_mul(10i128.checked_pow(scale)?)?;
    let sum = mantissa.checked_add(scaled_delta)?;
    Some(format_scaled(sum, scale as usize))
}

fn format_scaled(value: i128, scale: usize) -> String {
    let digits = value.unsigned_abs().to_string();
    let digits = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = digits.split_at(digits.len() - scale);
    let frac = frac.trim_end_matches('0');
    let sign = if value < 0 { "-" } else { "" };
    if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_by_value() {
        let cases = [
            ("9", "10", Ordering::Less),
            ("10", "9", Ordering::Greater),
            ("-1.5", "0.25", Ordering::Less),
            ("-2", "-1.5", Ordering::Less),
            ("1.50", "1.5", Ordering::Equal),
            ("007", "7", Ordering::Equal),
            ("0", "-0", Ordering::Equal),
            ("0.05", "0.5", Ordering::Less),
            ("0.5", "0.51", Ordering::Less),
            (
                "123456789012345678901234567890",
                "123456789012345678901234567891",
                Ordering::Less,
            ),
        ];
        for (a, b, expected) in cases {
            assert_eq!(compare_numbers(a, b), Some(expected), "{a} vs {b}");
        }
        assert_eq!(compare_numbers("x", "1"), None);
    }

    #[test]
    fn add_is_exact() {
        assert_eq!(add_to_number("1.5", 2).as_deref(), Some("3.5"));
        assert_eq!(add_to_number("-1.25", 1).as_deref(), Some("-0.25"));
        assert_eq!(add_to_number("0.5", -1).as_deref(), Some("-0.5"));
        assert_eq!(add_to_number("10", -10).as_deref(), Some("0"));
        assert_eq!(add_to_number("-0.5", 1).as_deref(), Some("0.5"));
        assert_eq!(
            add_to_number(&i64::MAX.to_string(), 1).as_deref(),
            Some("9223372036854775808")
        );
        assert_eq!(add_to_number("nope", 1), None);
    }

    #[test]
    fn missing_attributes_never_compare() {
        let item = Key::new("p", "s").to_item();
        assert!(!condition_holds(
            &Condition::Lt("x".into(), Value::n(1)),
            Some(&item)
        ));
        assert!(condition_holds(
            &Condition::Not(Box::new(Condition::Lt("x".into(), Value::n(1)))),
            Some(&item)
        ));
        assert!(!condition_holds(&Condition::eq("PK", Value::s("p")), None));
        assert!(
            condition_holds(&Condition::And(vec![]), None),
            "empty AND holds"
        );
        assert!(
            !condition_holds(&Condition::Or(vec![]), None),
            "empty OR fails"
        );
    }

    #[test]
    fn add_refuses_non_numbers() {
        let key = Key::new("p", "s");
        let mut item = key.to_item();
        item.insert("s".into(), Value::s("x"));
        let result = apply_update(&key, Some(&item), &Update::new().add("s", 1));
        assert!(matches!(result, Err(StoreError::Invalid(_))));
    }
}
