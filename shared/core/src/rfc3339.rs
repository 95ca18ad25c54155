//! RFC 3339 timestamps, the same text chrono writes, without going through `fmt`: a rating
//! click writes about a dozen, and chrono's `Display` path costs about a microsecond each.

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};

/// `t` as `t.to_rfc3339_opts(format, true)` writes it.
pub fn format(t: &DateTime<Utc>, format: SecondsFormat) -> String {
    let mut buf = [0u8; 30];
    match write(t, format, &mut buf) {
        Some(text) => text.to_string(),
        None => t.to_rfc3339_opts(format, true),
    }
}

/// For `#[serde(serialize_with = "crate::rfc3339::serialize")]`: the text chrono's own
/// `Serialize` writes (`AutoSi` digits, `Z`). Reading it back is chrono's as before.
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

/// Years 0-9999 without a leap second (every time the clock gives); `None` leaves the rest to
/// chrono.
fn write<'b>(t: &DateTime<Utc>, format: SecondsFormat, buf: &'b mut [u8; 30]) -> Option<&'b str> {
    let (year, nano) = (t.year(), t.nanosecond());
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
    digits(&mut buf[5..7], t.month());
    buf[7] = b'-';
    digits(&mut buf[8..10], t.day());
    buf[10] = b'T';
    digits(&mut buf[11..13], t.hour());
    buf[13] = b':';
    digits(&mut buf[14..16], t.minute());
    buf[16] = b':';
    digits(&mut buf[17..19], t.second());
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
