//! RFC 3339 timestamps, the same text chrono writes and the same times chrono reads, without
//! chrono's general formatter and parser: a rating click writes about a dozen and reads about
//! five, and each costs chrono a few hundred nanoseconds to a microsecond.
//!
//! Use `#[serde(with = "crate::rfc3339")]` on a `DateTime<Utc>` field.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, SecondsFormat, Timelike, Utc};

/// `t` as `t.to_rfc3339_opts(format, true)` writes it.
pub fn format(t: &DateTime<Utc>, format: SecondsFormat) -> String {
    let mut buf = [0u8; 30];
    match write(t, format, &mut buf) {
        Some(text) => text.to_string(),
        None => t.to_rfc3339_opts(format, true),
    }
}

/// The text chrono's own `Serialize` writes (`AutoSi` digits, `Z`).
pub fn serialize<S: serde::Serializer>(
    t: &DateTime<Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; 30];
    match write(t, SecondsFormat::AutoSi, &mut buf) {
        Some(text) => serializer.serialize_str(text),
        None => serde::Serialize::serialize(t, serializer),
    }
}

/// What chrono's own `Deserialize` reads. The form this module writes (`2026-01-02T03:04:05.678Z`) is read
/// here; anything else (offsets, lower case, leap seconds, ...) by chrono, as before.
pub fn deserialize<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<DateTime<Utc>, D::Error> {
    struct Text;
    impl serde::de::Visitor<'_> for Text {
        type Value = DateTime<Utc>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an RFC 3339 formatted date and time string")
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<DateTime<Utc>, E> {
            match read(s) {
                Some(t) => Ok(t),
                None => s
                    .parse::<DateTime<FixedOffset>>()
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(E::custom),
            }
        }
    }
    deserializer.deserialize_str(Text)
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z` naming a valid time; `None` for anything else.
fn read(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        b.get(range)?.iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(at(4, b'-') && at(7, b'-') && at(10, b'T') && at(13, b':') && at(16, b':')) {
        return None;
    }
    let nanos = match (b.get(19), b.len()) {
        (Some(b'Z'), 20) => 0,
        (Some(b'.'), 22..=30) if at(b.len() - 1, b'Z') => {
            let digits = b.len() - 21;
            number(20..20 + digits)? * 10u32.pow(9 - digits as u32)
        }
        _ => return None,
    };
    NaiveDate::from_ymd_opt(number(0..4)? as i32, number(5..7)?, number(8..10)?)?
        .and_hms_nano_opt(number(11..13)?, number(14..16)?, number(17..19)?, nanos)
        .map(|t| t.and_utc())
}

/// Years 0-9999 without a leap second (every time the clock gives); `None` leaves the rest to
/// chrono.
fn write<'b>(t: &DateTime<Utc>, format: SecondsFormat, buf: &'b mut [u8; 30]) -> Option<&'b str> {
    // Each accessor of a `DateTime` converts it again: take the date and time once.
    let (date, time) = (t.date_naive(), t.time());
    let (year, nano) = (date.year(), time.nanosecond());
    if !(0..=9999).contains(&year) || nano >= 1_000_000_000 {
        return None;
    }
    fn digits(out: &mut [u8], mut n: u32) {
        for digit in out.iter_mut().rev() {
            *digit = b'0' + (n % 10) as u8;
            n /= 10;
        }
    }
    digits(&mut buf[0..4], year as u32);
    buf[4] = b'-';
    digits(&mut buf[5..7], date.month());
    buf[7] = b'-';
    digits(&mut buf[8..10], date.day());
    buf[10] = b'T';
    digits(&mut buf[11..13], time.hour());
    buf[13] = b':';
    digits(&mut buf[14..16], time.minute());
    buf[16] = b':';
    digits(&mut buf[17..19], time.second());
    let fraction = match format {
        SecondsFormat::Secs => None,
        SecondsFormat::Millis => Some((nano / 1_000_000, 3)),
        SecondsFormat::Micros => Some((nano / 1_000, 6)),
        SecondsFormat::Nanos => Some((nano, 9)),
        SecondsFormat::AutoSi => match nano {
            0 => None,
            n if n % 1_000_000 == 0 => Some((n / 1_000_000, 3)),
            n if n % 1_000 == 0 => Some((n / 1_000, 6)),
            n => Some((n, 9)),
        },
        _ => return None,
    };
    let mut end = 19;
    if let Some((value, width)) = fraction {
        buf[19] = b'.';
        digits(&mut buf[20..20 + width], value);
        end = 20 + width;
    }
    buf[end] = b'Z';
    Some(std::str::from_utf8(&buf[..=end]).expect("ASCII digits"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const FORMATS: [SecondsFormat; 5] = [
        SecondsFormat::Secs,
        SecondsFormat::Millis,
        SecondsFormat::Micros,
        SecondsFormat::Nanos,
        SecondsFormat::AutoSi,
    ];

    #[test]
    fn the_text_is_chronos() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        // Year 0 to 9999, and every kind of fraction AutoSi tells apart.
        let (first, last) = (-62_167_219_200i64, 253_402_300_799i64);
        for i in 0..20_000 {
            let secs = first + (next() % (last - first) as u64) as i64;
            let nanos = match i % 4 {
                0 => 0,
                1 => (next() % 1000) as u32 * 1_000_000,
                2 => (next() % 1_000_000) as u32 * 1_000,
                _ => (next() % 1_000_000_000) as u32,
            };
            let t = Utc.timestamp_opt(secs, nanos).unwrap();
            for format in FORMATS {
                assert_eq!(super::format(&t, format), t.to_rfc3339_opts(format, true));
            }
            assert_eq!(
                serialize(&t, serde_json::value::Serializer).unwrap(),
                serde_json::to_value(t).unwrap()
            );
        }
    }

    fn chrono_reads(s: &str) -> Option<DateTime<Utc>> {
        serde_json::from_value::<DateTime<Utc>>(serde_json::json!(s)).ok()
    }

    fn reads(s: &str) -> Option<DateTime<Utc>> {
        deserialize(serde_json::json!(s)).ok()
    }

    #[test]
    fn the_times_read_are_chronos() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (first, last) = (-62_167_219_200i64, 253_402_300_799i64);
        for _ in 0..20_000 {
            let secs = first + (next() % (last - first) as u64) as i64;
            let t = Utc
                .timestamp_opt(secs, (next() % 1_000_000_000) as u32)
                .unwrap();
            let nanos = t.to_rfc3339_opts(SecondsFormat::Nanos, true);
            // Every fraction length from none to nine digits, as other writers may cut it.
            for digits in 0..=9 {
                let text = if digits == 0 {
                    format!("{}Z", &nanos[..19])
                } else {
                    format!("{}Z", &nanos[..20 + digits])
                };
                assert_eq!(read(&text), chrono_reads(&text), "{text}");
                assert!(read(&text).is_some(), "{text} is read here");
            }
        }
        for text in [
            "2026-02-30T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T23:60:00Z",
            "2016-12-31T23:59:60Z",
            "2016-12-31T23:59:60.5Z",
            "2026-01-01T00:00:00.1234567891Z",
            "2026-01-01T00:00:00.Z",
            "2026-01-01t00:00:00z",
            "2026-01-01 00:00:00Z",
            "2026-01-01T00:00:00+02:00",
            "2026-01-01T00:00:00-00:30",
            "2026-01-01T00:00:00",
            "+2026-01-01T00:00:00Z",
            "2026-1-01T00:00:00Z",
            "2026-01-01T0a:00:00Z",
            "",
            "garbage",
        ] {
            assert_eq!(reads(text), chrono_reads(text), "{text}");
        }
        let error = deserialize(serde_json::json!("nope"))
            .unwrap_err()
            .to_string();
        let chrono_error = serde_json::from_value::<DateTime<Utc>>(serde_json::json!("nope"))
            .unwrap_err()
            .to_string();
        assert_eq!(error, chrono_error);
    }

    #[test]
    fn leap_seconds_and_far_years_are_left_to_chrono() {
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .unwrap()
            .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
            .unwrap()
            .and_utc();
        let far = Utc.with_ymd_and_hms(12_345, 1, 2, 3, 4, 5).unwrap();
        let before = Utc.with_ymd_and_hms(-1, 1, 2, 3, 4, 5).unwrap();
        for t in [leap, far, before] {
            for format in FORMATS {
                assert_eq!(super::format(&t, format), t.to_rfc3339_opts(format, true));
            }
            assert_eq!(
                serialize(&t, serde_json::value::Serializer).unwrap(),
                serde_json::to_value(t).unwrap()
            );
        }
    }
}
