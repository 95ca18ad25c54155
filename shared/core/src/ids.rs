//! Identifiers that validate on construction.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {reason}")]
pub struct InvalidId {
    pub kind: &'static str,
    pub reason: String,
}

/// A tenant: 3 to 40 characters of lowercase letters, digits and '-', starting with a letter.
/// It begins every key of the table, so it must never contain the key separator.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        Self::check(s)?;
        Ok(TenantId(s.to_string()))
    }
    fn check(s: &str) -> Result<(), InvalidId> {
        let bad = |reason: &str| InvalidId {
            kind: "tenant id",
            reason: reason.to_string(),
        };
        if !(3..=40).contains(&s.len()) {
            return Err(bad("must be 3 to 40 characters long"));
        }
        if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(bad("must start with a lowercase letter"));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(bad("may hold only lowercase letters, digits and '-'"));
        }
        Ok(())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An identifier that comes from a helpdesk (ticket, agent, contact, account): 1 to 128
/// printable characters, never `#` (the key separator).
macro_rules! external_id {
    ($name:ident, $kind:literal) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                Self::check(s)?;
                Ok($name(s.to_string()))
            }
            fn check(s: &str) -> Result<(), InvalidId> {
                let bad = |reason: &str| InvalidId {
                    kind: $kind,
                    reason: reason.to_string(),
                };
                if s.is_empty() || s.len() > 128 {
                    return Err(bad("must be 1 to 128 characters long"));
                }
                if s.contains('#') || s.chars().any(|c| c.is_control()) {
                    return Err(bad("may not contain '#' or control characters"));
                }
                Ok(())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

external_id!(TicketId, "ticket id");
external_id!(AgentId, "agent id");
external_id!(ContactId, "contact id");
external_id!(AccountId, "account id");

/// Identifiers minted by closedloop: ULIDs, so they sort by creation time.
macro_rules! ulid_id {
    ($name:ident, $kind:literal) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(ulid::Ulid);

        /// The 26-character text, written from a buffer and read from the borrowed input
        /// (no `String` either way).
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.0.array_to_str(&mut [0; ulid::ULID_LEN]))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Text;
                impl serde::de::Visitor<'_> for Text {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("a string")
                    }
                    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<$name, E> {
                        $name::parse(s).map_err(E::custom)
                    }
                }
                deserializer.deserialize_str(Text)
            }
        }

        impl $name {
            pub fn new() -> Self {
                $name(ulid::Ulid::new())
            }
            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                ulid::Ulid::from_string(s)
                    .map($name)
                    .map_err(|_| InvalidId {
                        kind: $kind,
                        reason: "must be a ULID".into(),
                    })
            }
            pub fn ulid(&self) -> ulid::Ulid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, InvalidId> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0.to_string()
            }
        }
    };
}

ulid_id!(SurveyRequestId, "survey request id");
ulid_id!(RuleId, "rule id");
ulid_id!(CaseId, "case id");

macro_rules! string_conversions {
    ($($name:ident),*) => {$(
        impl TryFrom<String> for $name {
            type Error = InvalidId;
            /// Keeps the string it checked (deserialising reads one already).
            fn try_from(s: String) -> Result<Self, InvalidId> {
                Self::check(&s)?;
                Ok($name(s))
            }
        }
        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}

string_conversions!(TenantId, TicketId, AgentId, ContactId, AccountId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_refuse_key_separators_and_odd_shapes() {
        assert!(TenantId::parse("acme-msp").is_ok());
        for bad in ["ab", "Acme", "acme#x", "1acme", "acme msp", ""] {
            assert!(TenantId::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn external_ids_refuse_the_key_separator() {
        assert!(TicketId::parse("12345").is_ok());
        assert!(TicketId::parse("a#b").is_err());
        assert!(TicketId::parse("").is_err());
        assert!(TicketId::parse(&"x".repeat(129)).is_err());
    }

    #[test]
    fn ids_round_trip_through_json_and_refuse_bad_input() {
        let t: TenantId = serde_json::from_str("\"acme\"").unwrap();
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"acme\"");
        assert!(serde_json::from_str::<TenantId>("\"A#\"").is_err());
        let r = RuleId::new();
        let back: RuleId = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(r, back);
        assert!(serde_json::from_str::<RuleId>("\"nope\"").is_err());
    }

    /// ULID ids read from text as they always did: from JSON, from a `Value`, escaped, and
    /// with the same errors.
    #[test]
    fn ulid_ids_read_every_kind_of_json_string() {
        let id = SurveyRequestId::new();
        let text = id.ulid().to_string();
        let escaped = format!("\"\\u00{:x}{}\"", text.as_bytes()[0], &text[1..]);
        assert_eq!(
            serde_json::from_str::<SurveyRequestId>(&escaped).unwrap(),
            id
        );
        assert_eq!(
            serde_json::from_value::<SurveyRequestId>(serde_json::Value::String(text.clone()))
                .unwrap(),
            id
        );
        assert_eq!(serde_json::to_value(id).unwrap(), serde_json::json!(text));
        let wrong = serde_json::from_str::<SurveyRequestId>("\"nope\"").unwrap_err();
        assert!(
            wrong
                .to_string()
                .contains("survey request id must be a ULID"),
            "{wrong}"
        );
        let not_text = serde_json::from_str::<CaseId>("7").unwrap_err();
        assert!(
            not_text.to_string().contains("expected a string"),
            "{not_text}"
        );
    }
}
