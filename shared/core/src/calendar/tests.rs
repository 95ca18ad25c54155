use super::*;
use chrono::{Timelike, Weekday};
use proptest::prelude::*;
use serde_json::json;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn hours(h: i64) -> Duration {
    Duration::hours(h)
}

fn minutes(m: i64) -> Duration {
    Duration::minutes(m)
}

fn calendar(value: serde_json::Value) -> BusinessCalendar {
    serde_json::from_value(value).unwrap()
}

fn refused(value: serde_json::Value) -> String {
    serde_json::from_value::<BusinessCalendar>(value)
        .unwrap_err()
        .to_string()
}

/// Monday to Friday, 09:00–17:00.
fn office(zone: &str, holidays: &[&str]) -> BusinessCalendar {
    let day = json!(["09:00-17:00"]);
    calendar(json!({
        "time_zone": zone,
        "hours": {"monday": day, "tuesday": day, "wednesday": day, "thursday": day, "friday": day},
        "holidays": holidays,
    }))
}

fn sundays(zone: &str, windows: &[&str]) -> BusinessCalendar {
    calendar(json!({"time_zone": zone, "hours": {"sunday": windows}}))
}

// --- daylight saving time ---------------------------------------------------------------------

#[test]
fn warsaw_spring_forward_shortens_a_window_over_the_skipped_hour() {
    // 2026-03-29: at 01:00Z the clock jumps from 02:00 CET to 03:00 CEST.
    // 01:00 CET = 00:00Z, 04:00 CEST = 02:00Z: two real hours, not three.
    let cal = sundays("Europe/Warsaw", &["01:00-04:00"]);
    assert_eq!(
        cal.business_duration(at("2026-03-28T00:00:00Z"), at("2026-03-30T00:00:00Z")),
        hours(2)
    );
    // Two hours that Sunday, the third from 01:00 CEST on 2026-04-05 (= 04-04 23:00Z).
    assert_eq!(
        cal.deadline(at("2026-03-28T12:00:00Z"), hours(3)),
        at("2026-04-05T00:00:00Z")
    );
    assert!(!cal.is_business_time(at("2026-03-28T23:59:00Z"))); // 00:59 CET
    assert!(cal.is_business_time(at("2026-03-29T00:59:00Z"))); // 01:59 CET
    assert!(cal.is_business_time(at("2026-03-29T01:00:00Z"))); // 03:00 CEST
    assert!(!cal.is_business_time(at("2026-03-29T02:00:00Z"))); // 04:00 CEST
}

#[test]
fn warsaw_spring_forward_window_inside_the_skipped_hour_is_empty() {
    let cal = sundays("Europe/Warsaw", &["02:00-02:30"]);
    assert_eq!(
        cal.business_duration(at("2026-03-28T00:00:00Z"), at("2026-03-30T00:00:00Z")),
        Duration::zero()
    );
    // Nothing on 03-29; on 04-05 02:00 CEST = 00:00Z.
    assert_eq!(
        cal.deadline(at("2026-03-28T12:00:00Z"), minutes(10)),
        at("2026-04-05T00:10:00Z")
    );
}

#[test]
fn warsaw_fall_back_counts_the_repeated_hour_twice() {
    // 2026-10-25: at 01:00Z the clock goes back from 03:00 CEST to 02:00 CET.
    // 01:00 CEST = 10-24 23:00Z, 03:00 CET = 02:00Z: three real hours.
    let cal = sundays("Europe/Warsaw", &["01:00-03:00"]);
    assert_eq!(
        cal.business_duration(at("2026-10-24T00:00:00Z"), at("2026-10-26T00:00:00Z")),
        hours(3)
    );
    assert_eq!(
        cal.deadline(at("2026-10-24T12:00:00Z"), hours(3)),
        at("2026-10-25T02:00:00Z")
    );
    // 2h30 in: 01:30Z, when the clock shows 02:30 for the second time.
    assert_eq!(
        cal.deadline(at("2026-10-24T12:00:00Z"), minutes(150)),
        at("2026-10-25T01:30:00Z")
    );
    assert!(cal.is_business_time(at("2026-10-25T01:30:00Z")));
    assert!(!cal.is_business_time(at("2026-10-25T02:00:00Z"))); // 03:00 CET
}

#[test]
fn warsaw_fall_back_window_ending_inside_the_repeated_hour_is_two_pieces() {
    // 01:00–02:30 is shown from 23:00Z to 00:30Z (summer time) and again from 01:00Z to 01:30Z
    // (winter time): two hours in all.
    let cal = sundays("Europe/Warsaw", &["01:00-02:30"]);
    assert_eq!(
        cal.business_duration(at("2026-10-24T00:00:00Z"), at("2026-10-26T00:00:00Z")),
        hours(2)
    );
    assert!(!cal.is_business_time(at("2026-10-25T00:45:00Z"))); // 02:45 CEST
    assert!(cal.is_business_time(at("2026-10-25T01:15:00Z"))); // 02:15 CET
    // 1h30 in the first piece, 15 minutes of the second.
    assert_eq!(
        cal.deadline(at("2026-10-24T12:00:00Z"), minutes(105)),
        at("2026-10-25T01:15:00Z")
    );
}

#[test]
fn warsaw_office_across_the_dst_weekends() {
    let cal = office("Europe/Warsaw", &[]);
    // Friday 16:00 CET = 15:00Z: one hour to 17:00 CET; Monday 09:00 CEST = 07:00Z, one more.
    assert_eq!(
        cal.deadline(at("2026-03-27T15:00:00Z"), hours(2)),
        at("2026-03-30T08:00:00Z")
    );
    // Friday 16:00 CEST = 14:00Z: one hour; Monday 09:00 CET = 08:00Z, one more.
    assert_eq!(
        cal.deadline(at("2026-10-23T14:00:00Z"), hours(2)),
        at("2026-10-26T09:00:00Z")
    );
}

#[test]
fn new_york_spring_forward_day_has_23_hours() {
    // 2026-03-08: 00:00 EST = 05:00Z; the next midnight is 00:00 EDT = 03-09 04:00Z.
    let cal = sundays("America/New_York", &["00:00-24:00"]);
    assert_eq!(
        cal.business_duration(at("2026-03-07T00:00:00Z"), at("2026-03-10T00:00:00Z")),
        hours(23)
    );
    // 23 hours that Sunday, the 24th from 00:00 EDT on 03-15 (= 04:00Z).
    assert_eq!(
        cal.deadline(at("2026-03-07T12:00:00Z"), hours(24)),
        at("2026-03-15T05:00:00Z")
    );
    // 01:30 EST = 06:30Z until the jump at 07:00Z; 02:00–02:30 never happens.
    let cal = sundays("America/New_York", &["01:30-02:30"]);
    assert_eq!(
        cal.business_duration(at("2026-03-08T00:00:00Z"), at("2026-03-09T00:00:00Z")),
        minutes(30)
    );
}

#[test]
fn new_york_office_across_spring_forward() {
    // Friday 16:00 EST = 21:00Z: one hour; Monday 09:00 EDT = 13:00Z, three more.
    let cal = office("America/New_York", &[]);
    assert_eq!(
        cal.deadline(at("2026-03-06T21:00:00Z"), hours(4)),
        at("2026-03-09T16:00:00Z")
    );
}

#[test]
fn new_york_fall_back_day_has_25_hours() {
    // 2026-11-01: 00:00 EDT = 04:00Z; at 06:00Z 02:00 EDT becomes 01:00 EST; the next midnight is
    // 00:00 EST = 11-02 05:00Z.
    let cal = sundays("America/New_York", &["00:00-24:00"]);
    assert_eq!(
        cal.business_duration(at("2026-10-31T00:00:00Z"), at("2026-11-03T00:00:00Z")),
        hours(25)
    );
    assert_eq!(
        cal.deadline(at("2026-10-31T12:00:00Z"), hours(25)),
        at("2026-11-02T05:00:00Z")
    );
    // 01:00–02:00 is shown from 05:00Z (EDT) and again until 02:00 EST = 07:00Z.
    let cal = sundays("America/New_York", &["01:00-02:00"]);
    assert_eq!(
        cal.deadline(at("2026-10-31T12:00:00Z"), hours(2)),
        at("2026-11-01T07:00:00Z")
    );
    assert_eq!(
        cal.deadline(at("2026-10-31T12:00:00Z"), minutes(90)),
        at("2026-11-01T06:30:00Z")
    );
    assert!(cal.is_business_time(at("2026-11-01T06:30:00Z"))); // 01:30 EST
    assert!(!cal.is_business_time(at("2026-11-01T07:00:00Z"))); // 02:00 EST
}

// --- holidays, evenings, midnight -------------------------------------------------------------

#[test]
fn a_holiday_on_a_working_day_moves_the_deadline_a_day() {
    // Tuesday 2026-11-10 15:00 CET = 14:00Z: two hours that day, two on the next working day.
    let start = at("2026-11-10T14:00:00Z");
    let plain = office("Europe/Warsaw", &[]);
    assert_eq!(plain.deadline(start, hours(4)), at("2026-11-11T10:00:00Z"));
    // Wednesday 11-11 is a holiday: Thursday 09:00 CET = 08:00Z, plus two hours.
    let cal = office("Europe/Warsaw", &["2026-11-11"]);
    assert_eq!(cal.deadline(start, hours(4)), at("2026-11-12T10:00:00Z"));
    assert!(!cal.is_business_time(at("2026-11-11T10:00:00Z")));
    assert_eq!(
        cal.business_duration(at("2026-11-09T00:00:00Z"), at("2026-11-16T00:00:00Z")),
        hours(32)
    );
}

#[test]
fn a_friday_evening_ticket_is_due_on_monday_or_tuesday() {
    // Friday 2026-06-12 18:30 CEST = 16:30Z, after hours.
    let cal = office("Europe/Warsaw", &[]);
    let start = at("2026-06-12T16:30:00Z");
    assert!(!cal.is_business_time(start));
    // Eight hours: all of Monday, ending 17:00 CEST = 15:00Z (not Tuesday 09:00).
    assert_eq!(cal.deadline(start, hours(8)), at("2026-06-15T15:00:00Z"));
    // Ten hours: Monday plus two, Tuesday 11:00 CEST = 09:00Z.
    assert_eq!(cal.deadline(start, hours(10)), at("2026-06-16T09:00:00Z"));
    assert_eq!(
        cal.business_duration(start, at("2026-06-15T15:00:00Z")),
        hours(8)
    );
}

#[test]
fn a_window_ending_at_midnight() {
    let evening = json!(["16:00-24:00"]);
    let cal = calendar(json!({"time_zone": "Europe/Warsaw", "hours": {
        "monday": evening, "tuesday": evening, "wednesday": evening, "thursday": evening, "friday": evening,
    }}));
    // Monday 2026-06-15 23:00 CEST = 21:00Z; midnight CEST is 22:00Z.
    let start = at("2026-06-15T21:00:00Z");
    assert_eq!(cal.deadline(start, hours(1)), at("2026-06-15T22:00:00Z"));
    // The second hour starts Tuesday 16:00 CEST = 14:00Z.
    assert_eq!(cal.deadline(start, hours(2)), at("2026-06-16T15:00:00Z"));
    assert!(cal.is_business_time(at("2026-06-15T21:59:59Z")));
    assert!(!cal.is_business_time(at("2026-06-15T22:00:00Z")));
}

#[test]
fn a_night_shift_split_at_midnight_is_one_stretch() {
    let cal = calendar(json!({"time_zone": "Europe/Warsaw", "hours": {
        "monday": ["20:00-24:00"], "tuesday": ["00:00-04:00"],
    }}));
    // Monday 23:00 CEST = 21:00Z, two hours on: Tuesday 01:00 CEST = Monday 23:00Z.
    assert_eq!(
        cal.deadline(at("2026-06-15T21:00:00Z"), hours(2)),
        at("2026-06-15T23:00:00Z")
    );
    // 20:00 CEST Monday to 04:00 CEST Tuesday.
    assert_eq!(
        cal.business_duration(at("2026-06-15T18:00:00Z"), at("2026-06-16T02:00:00Z")),
        hours(8)
    );
}

#[test]
fn yearly_holidays_recur_across_years() {
    let cal = office("Europe/Warsaw", &["12-25", "01-01"]);
    // Thursday 2026-12-24 16:00 CET = 15:00Z: one hour; Friday 12-25 closed; Monday 12-28 eight
    // hours, 08:00Z to 16:00Z.
    assert_eq!(
        cal.deadline(at("2026-12-24T15:00:00Z"), hours(9)),
        at("2026-12-28T16:00:00Z")
    );
    // Thursday 2026-12-31 09:00 CET: eight hours; Friday 2027-01-01 closed; Monday 01-04 eight.
    assert_eq!(
        cal.deadline(at("2026-12-31T08:00:00Z"), hours(16)),
        at("2027-01-04T16:00:00Z")
    );
    // 2028-12-25 is a Monday. Friday 12-22 16:30 CET = 15:30Z: half an hour, then Tuesday 12-26
    // 09:00 CET = 08:00Z plus half an hour.
    assert_eq!(
        cal.deadline(at("2028-12-22T15:30:00Z"), hours(1)),
        at("2028-12-26T08:30:00Z")
    );
    assert!(!cal.is_business_time(at("2028-12-25T10:00:00Z")));
    assert!(cal.is_business_time(at("2028-12-26T10:00:00Z")));
}

#[test]
fn february_29_closes_only_in_leap_years() {
    let cal = office("UTC", &["02-29"]);
    // 2028-02-29 is a Tuesday, 2027-03-01 a Monday (no 02-29 in 2027).
    assert!(!cal.is_business_time(at("2028-02-29T10:00:00Z")));
    assert!(cal.is_business_time(at("2027-03-01T10:00:00Z")));
}

#[test]
fn always_open_counts_real_time_whatever_the_clock_does() {
    let cal = calendar(json!({"always_open": true, "time_zone": "America/New_York"}));
    // Across New York's spring-forward: one real hour is one business hour.
    let start = at("2026-03-08T06:30:00Z");
    assert_eq!(cal.deadline(start, hours(1)), at("2026-03-08T07:30:00Z"));
    assert_eq!(
        cal.business_duration(start, at("2026-03-09T06:30:00Z")),
        hours(24)
    );
    assert!(cal.is_business_time(at("2026-12-25T03:00:00Z")));
    assert_eq!(
        BusinessCalendar::always_open().deadline(start, hours(40)),
        at("2026-03-09T22:30:00Z")
    );
}

#[test]
fn a_thousand_hour_sla_skips_weeks_and_still_counts_holidays_and_dst() {
    // 1000 h of a 40-hour week is 25 weeks: from Monday 2026-01-05 09:00 to Friday 2026-06-26
    // 17:00.
    let start = at("2026-01-05T09:00:00Z");
    assert_eq!(
        office("UTC", &[]).deadline(start, hours(1000)),
        at("2026-06-26T17:00:00Z")
    );
    // A holiday on Tuesday 2026-03-10, deep in the skipped span, costs one more working day.
    assert_eq!(
        office("UTC", &["2026-03-10"]).deadline(start, hours(1000)),
        at("2026-06-29T17:00:00Z")
    );
    // In Warsaw the span crosses spring-forward: Monday 09:00 CET = 08:00Z, Friday 17:00 CEST =
    // 15:00Z.
    let cal = office("Europe/Warsaw", &[]);
    let start = at("2026-01-05T08:00:00Z");
    let due = cal.deadline(start, hours(1000));
    assert_eq!(due, at("2026-06-26T15:00:00Z"));
    assert_eq!(cal.business_duration(start, due), hours(1000));
}

#[test]
fn zero_business_time_is_due_at_once_and_huge_saturates() {
    let cal = office("Europe/Warsaw", &[]);
    let start = at("2026-06-13T10:00:00Z"); // Saturday
    assert_eq!(cal.deadline(start, Duration::zero()), start);
    assert_eq!(cal.deadline(start, Duration::MAX), DateTime::<Utc>::MAX_UTC);
    assert_eq!(
        cal.business_duration(start, start - hours(1)),
        Duration::zero()
    );
}

// --- validation -------------------------------------------------------------------------------

#[test]
fn overlapping_windows_are_named() {
    let message = refused(json!({"time_zone": "Europe/Warsaw", "hours": {
        "monday": ["11:00-13:00", "09:00-12:00"],
    }}));
    assert!(
        message.contains("monday: windows 09:00–12:00 and 11:00–13:00 overlap"),
        "{message}"
    );
    // Touching is not overlapping.
    let cal =
        calendar(json!({"time_zone": "UTC", "hours": {"monday": ["09:00-12:00", "12:00-17:00"]}}));
    assert_eq!(
        cal.deadline(at("2026-06-15T11:00:00Z"), hours(2)),
        at("2026-06-15T13:00:00Z")
    );
}

#[test]
fn an_unknown_zone_is_named() {
    let message =
        refused(json!({"time_zone": "Europe/Warsw", "hours": {"monday": ["09:00-17:00"]}}));
    assert!(
        message.contains("unknown time zone 'Europe/Warsw'"),
        "{message}"
    );
    let message = refused(json!({"hours": {"monday": ["09:00-17:00"]}}));
    assert!(message.contains("time_zone is required"), "{message}");
}

#[test]
fn a_window_that_does_not_start_before_it_ends_is_named() {
    let message = refused(json!({"time_zone": "UTC", "hours": {"tuesday": ["22:00-06:00"]}}));
    assert!(
        message.contains("tuesday: window 22:00–06:00 must start before it ends")
            && message.contains("22:00–24:00 and 00:00–06:00 on the next day"),
        "{message}"
    );
    let message = refused(json!({"time_zone": "UTC", "hours": {"friday": ["09:00-09:00"]}}));
    assert!(
        message.contains("friday: window 09:00–09:00 must start before it ends"),
        "{message}"
    );
}

#[test]
fn malformed_times_and_windows_are_named() {
    for (window, bad) in [
        ("25:00-26:00", "'25:00'"),
        ("09:60-10:00", "'09:60'"),
        ("09:00-24:30", "'24:30'"),
        ("9-17", "'9'"),
    ] {
        let message = refused(json!({"time_zone": "UTC", "hours": {"monday": [window]}}));
        assert!(
            message.contains(&format!("monday: {bad} is not a time of day")),
            "{window}: {message}"
        );
    }
    let message = refused(json!({"time_zone": "UTC", "hours": {"monday": ["09:00"]}}));
    assert!(
        message.contains("monday: '09:00' is not a window; write HH:MM-HH:MM"),
        "{message}"
    );
    // Single-digit hours and an en dash are fine.
    let cal = calendar(json!({"time_zone": "UTC", "hours": {"monday": ["9:00–17:00"]}}));
    assert!(cal.is_business_time(at("2026-06-15T09:00:00Z")));
}

#[test]
fn bad_holiday_dates_are_named() {
    for holiday in [
        "2026-02-30",
        "13-01",
        "2026/12/25",
        "2027-02-29",
        "12-25-2026",
        "",
    ] {
        let message = refused(
            json!({"time_zone": "UTC", "hours": {"monday": ["09:00-17:00"]},
            "holidays": [holiday]}),
        );
        assert!(
            message.contains(&format!("holiday '{holiday}' is not a date")),
            "{holiday}: {message}"
        );
    }
}

#[test]
fn calendars_without_working_time_are_refused() {
    let message = refused(json!({"time_zone": "UTC"}));
    assert!(message.contains("no working hours"), "{message}");
    let every_day: Vec<String> = (1..=366)
        .filter_map(|d| NaiveDate::from_yo_opt(2000, d))
        .map(|d| d.format("%m-%d").to_string())
        .collect();
    let message = refused(
        json!({"time_zone": "UTC", "hours": {"monday": ["09:00-17:00"]},
        "holidays": every_day}),
    );
    assert!(
        message.contains("yearly holidays cover every day"),
        "{message}"
    );
}

#[test]
fn always_open_with_hours_or_holidays_is_refused() {
    let message = refused(json!({"always_open": true, "holidays": ["12-25"]}));
    assert!(
        message.contains("always_open calendar takes no hours or holidays"),
        "{message}"
    );
}

#[test]
fn a_misspelt_weekday_is_refused() {
    let message = refused(json!({"time_zone": "UTC", "hours": {"mondy": ["09:00-17:00"]}}));
    assert!(message.contains("unknown field `mondy`"), "{message}");
}

#[test]
fn serialises_the_normalised_admin_shape() {
    let cal = calendar(json!({
        "time_zone": "Europe/Warsaw",
        "hours": {"tuesday": ["13:00-17:00", "9:00–12:00"], "friday": ["20:00-24:00"]},
        "holidays": ["12-25", "2026-11-11", "01-01", "2026-11-11"],
    }));
    let written = serde_json::to_value(&cal).unwrap();
    assert_eq!(
        written,
        json!({
            "time_zone": "Europe/Warsaw",
            "hours": {"tuesday": ["09:00-12:00", "13:00-17:00"], "friday": ["20:00-24:00"]},
            "holidays": ["2026-11-11", "01-01", "12-25"],
        })
    );
    assert_eq!(
        serde_json::from_value::<BusinessCalendar>(written).unwrap(),
        cal
    );
    assert_eq!(
        serde_json::to_value(BusinessCalendar::always_open()).unwrap(),
        json!({"always_open": true})
    );
}

// --- properties -------------------------------------------------------------------------------

/// Zones with DST at 02:00 or 03:00, at midnight (Santiago, Havana), of half an hour (Lord Howe),
/// with odd offsets (Kathmandu, Chatham, St John's), Ramadan changes (Casablanca), and none.
const ZONES: [&str; 12] = [
    "UTC",
    "Europe/Warsaw",
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",
    "America/Santiago",
    "America/Havana",
    "Asia/Kathmandu",
    "Pacific/Chatham",
    "America/St_Johns",
    "Africa/Casablanca",
    "Asia/Tokyo",
];

fn boundary() -> impl Strategy<Value = u16> {
    // Half of the boundaries on the half hour, so DST edges (02:00, 03:00) are hit often.
    prop_oneof![0..=1440u16, (0..=48u16).prop_map(|h| h * 30)]
}

fn day_windows() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::btree_set(boundary(), 0..=6).prop_map(|points| {
        let points: Vec<u16> = points.into_iter().collect();
        points
            .chunks_exact(2)
            .map(|p| format!("{}-{}", Clock(p[0]), Clock(p[1])))
            .collect()
    })
}

fn spec() -> impl Strategy<Value = CalendarSpec> {
    let fixed = (0..1100i64).prop_map(|d| {
        (NaiveDate::from_ymd_opt(2025, 1, 1).unwrap() + Duration::days(d))
            .format("%Y-%m-%d")
            .to_string()
    });
    let yearly = (1..=366u32).prop_map(|d| {
        NaiveDate::from_yo_opt(2000, d)
            .unwrap()
            .format("%m-%d")
            .to_string()
    });
    (
        proptest::sample::select(ZONES.to_vec()),
        proptest::collection::vec(day_windows(), 7),
        proptest::collection::vec(fixed, 0..12),
        proptest::collection::vec(yearly, 0..6),
    )
        .prop_map(|(zone, mut days, fixed, yearly)| {
            if days.iter().all(|d| d.is_empty()) {
                days[0] = vec!["09:00-17:00".into()];
            }
            let mut d = days.into_iter();
            let mut next = || d.next().unwrap();
            CalendarSpec {
                time_zone: Some(zone.to_string()),
                always_open: false,
                hours: WeeklyHours {
                    monday: next(),
                    tuesday: next(),
                    wednesday: next(),
                    thursday: next(),
                    friday: next(),
                    saturday: next(),
                    sunday: next(),
                },
                holidays: fixed.into_iter().chain(yearly).collect(),
            }
        })
}

/// An instant in 2025–2027 to the nanosecond.
fn instant_2025_2027() -> impl Strategy<Value = DateTime<Utc>> {
    let from = at("2025-01-01T00:00:00Z").timestamp();
    (from..from + 3 * 365 * 86_400, 0..1_000_000_000u32)
        .prop_map(|(s, n)| DateTime::from_timestamp(s, n).unwrap())
}

/// Up to 3,000 hours, to the nanosecond: enough to cross DST changes and skip many weeks.
fn business_time() -> impl Strategy<Value = Duration> {
    (1..3_000 * 3_600i64, 0..1_000_000_000u32).prop_map(|(s, n)| Duration::new(s, n).unwrap())
}

/// The definition, straight from the admin's strings and chrono's local time: is the wall clock
/// inside a window of a working, non-holiday date?
fn reference(spec: &CalendarSpec, tz: Tz, t: DateTime<Utc>) -> bool {
    let local = t.with_timezone(&tz);
    let date = local.date_naive();
    let (full, yearly) = (
        date.format("%Y-%m-%d").to_string(),
        date.format("%m-%d").to_string(),
    );
    if spec.holidays.iter().any(|h| *h == full || *h == yearly) {
        return false;
    }
    let h = &spec.hours;
    let windows = match local.weekday() {
        Weekday::Mon => &h.monday,
        Weekday::Tue => &h.tuesday,
        Weekday::Wed => &h.wednesday,
        Weekday::Thu => &h.thursday,
        Weekday::Fri => &h.friday,
        Weekday::Sat => &h.saturday,
        Weekday::Sun => &h.sunday,
    };
    let minute = local.hour() * 60 + local.minute();
    let clock = |s: &str| {
        let (h, m) = s.split_once(':').unwrap();
        h.parse::<u32>().unwrap() * 60 + m.parse::<u32>().unwrap()
    };
    windows.iter().any(|w| {
        let (a, b) = w.split_once('-').unwrap();
        clock(a) <= minute && minute < clock(b)
    })
}

/// Midnights (UTC) of the days in 2025–2027 on which `tz` changes its offset.
fn offset_change_days(tz: Tz) -> Vec<DateTime<Utc>> {
    let offset = |t: DateTime<Utc>| t.with_timezone(&tz).offset().fix();
    let mut t = at("2025-01-01T00:00:00Z");
    let mut out = Vec::new();
    while t < at("2028-01-01T00:00:00Z") {
        if offset(t) != offset(t + Duration::days(1)) {
            out.push(t);
        }
        t += Duration::days(1);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_deadline_uses_exactly_the_business_time_asked_for(
        spec in spec(), start in instant_2025_2027(), d in business_time(),
    ) {
        let cal = BusinessCalendar::new(spec).unwrap();
        let due = cal.deadline(start, d);
        prop_assert!(due > start);
        prop_assert_eq!(cal.business_duration(start, due), d);
        // The last moment before a deadline is business time: it never lands in a closed stretch.
        prop_assert!(cal.is_business_time(due - Duration::nanoseconds(1)));
    }

    #[test]
    fn more_business_time_is_due_strictly_later(
        spec in spec(), start in instant_2025_2027(), a in business_time(), b in business_time(),
    ) {
        let cal = BusinessCalendar::new(spec).unwrap();
        let (short, long) = if a <= b { (a, b) } else { (b, a) };
        let (early, late) = (cal.deadline(start, short), cal.deadline(start, long));
        if short < long {
            prop_assert!(early < late);
        } else {
            prop_assert_eq!(early, late);
        }
        // Counting on from the earlier deadline lands on the later one.
        prop_assert_eq!(cal.deadline(early, long - short), late);
    }

    #[test]
    fn business_time_adds_up_over_split_spans(
        spec in spec(), a in instant_2025_2027(), x in 0..90 * 86_400i64, y in 0..90 * 86_400i64,
    ) {
        // Long spans, split anywhere, so whole-week skipping starts at different days.
        let cal = BusinessCalendar::new(spec).unwrap();
        let (b, c) = (a + Duration::seconds(x.min(y)), a + Duration::seconds(x.max(y)));
        prop_assert_eq!(
            cal.business_duration(a, c),
            cal.business_duration(a, b) + cal.business_duration(b, c)
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn agrees_minute_by_minute_with_the_wall_clock_definition(
        spec in spec(),
        near_change in any::<bool>(),
        pick in any::<prop::sample::Index>(),
        minute in 0..3 * 365 * 1_440i64,
        shift in 0..3 * 1_440i64,
        k in any::<prop::sample::Index>(),
    ) {
        let tz: Tz = spec.time_zone.as_deref().unwrap().parse().unwrap();
        let cal = BusinessCalendar::new(spec.clone()).unwrap();
        // Half the spans start within a day either side of a DST change.
        let changes = offset_change_days(tz);
        let start = if near_change && !changes.is_empty() {
            *pick.get(&changes) - Duration::days(1) + Duration::minutes(shift % 1_440)
        } else {
            at("2025-01-01T00:00:00Z") + Duration::minutes(minute)
        };
        let span = 2 * 1_440;
        let mut business = Vec::new();
        for i in 0..span {
            let t = start + Duration::minutes(i);
            let expected = reference(&spec, tz, t);
            prop_assert_eq!(cal.is_business_time(t), expected, "at {} ({})", t, t.with_timezone(&tz));
            if expected {
                business.push(t);
            }
        }
        let end = start + Duration::minutes(span);
        prop_assert_eq!(cal.business_duration(start, end), minutes(business.len() as i64));
        if !business.is_empty() {
            // The n-th business minute ends at the deadline for n minutes.
            let n = k.index(business.len());
            prop_assert_eq!(
                cal.deadline(start, minutes(n as i64 + 1)),
                business[n] + minutes(1)
            );
        }
    }
}
