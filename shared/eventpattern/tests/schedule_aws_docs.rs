//! Schedule expressions from AWS's documentation, checked against dated firings.
//!
//! Sources:
//! * "Creating an Amazon EventBridge rule that runs on a schedule" (cron and rate expressions):
//!   https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-create-rule-schedule.html
//! * "Schedule types in EventBridge Scheduler" (`at(...)` one-time schedules):
//!   https://docs.aws.amazon.com/scheduler/latest/UserGuide/schedule-types.html

use chrono::{DateTime, TimeZone, Utc};
use closedloop_eventpattern::{ScheduleError, ScheduleExpression};

fn at(year: i32, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(year, month, day, hour, minute, second)
        .single()
        .expect("a valid UTC time")
}

fn schedule(expression: &str) -> ScheduleExpression {
    ScheduleExpression::parse(expression)
        .unwrap_or_else(|error| panic!("{expression} is invalid: {error}"))
}

/// The next `count` firings after `after`.
fn firings(expression: &str, after: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
    let schedule = schedule(expression);
    std::iter::successors(schedule.next_after(after), |previous| {
        schedule.next_after(*previous)
    })
    .take(count)
    .collect()
}

// 2024-06-07 is a Friday and 2024-06-10 a Monday.

#[test]
fn every_day_at_ten() {
    // "Run at 10:00 am (UTC+0) every day"
    let expression = "cron(0 10 * * ? *)";
    assert_eq!(
        firings(expression, at(2024, 6, 7, 9, 59, 59), 2),
        [at(2024, 6, 7, 10, 0, 0), at(2024, 6, 8, 10, 0, 0)]
    );
    // Strictly after: a firing time itself is not returned again.
    assert_eq!(
        schedule(expression).next_after(at(2024, 6, 7, 10, 0, 0)),
        Some(at(2024, 6, 8, 10, 0, 0))
    );
}

#[test]
fn every_day_at_quarter_past_twelve() {
    // "Run at 12:15 pm (UTC+0) every day"
    assert_eq!(
        firings("cron(15 12 * * ? *)", at(2024, 6, 7, 12, 15, 30), 2),
        [at(2024, 6, 8, 12, 15, 0), at(2024, 6, 9, 12, 15, 0)]
    );
}

#[test]
fn weekdays_at_six_pm() {
    // "Run at 6:00 pm (UTC+0) every Monday through Friday"
    assert_eq!(
        firings("cron(0 18 ? * MON-FRI *)", at(2024, 6, 7, 18, 0, 0), 2),
        [at(2024, 6, 10, 18, 0, 0), at(2024, 6, 11, 18, 0, 0)]
    );
}

#[test]
fn first_day_of_every_month_at_eight() {
    // "Run at 8:00 am (UTC+0) every 1st day of the month"
    assert_eq!(
        firings("cron(0 8 1 * ? *)", at(2024, 11, 15, 0, 0, 0), 3),
        [
            at(2024, 12, 1, 8, 0, 0),
            at(2025, 1, 1, 8, 0, 0),
            at(2025, 2, 1, 8, 0, 0)
        ]
    );
}

#[test]
fn every_fifteen_minutes() {
    // "Run every 15 minutes"
    assert_eq!(
        firings("cron(0/15 * * * ? *)", at(2024, 6, 7, 23, 31, 0), 3),
        [
            at(2024, 6, 7, 23, 45, 0),
            at(2024, 6, 8, 0, 0, 0),
            at(2024, 6, 8, 0, 15, 0)
        ]
    );
}

#[test]
fn every_ten_minutes_on_weekdays() {
    // "Run every 10 minutes Monday through Friday"
    assert_eq!(
        firings("cron(0/10 * ? * MON-FRI *)", at(2024, 6, 7, 23, 45, 0), 3),
        [
            at(2024, 6, 7, 23, 50, 0),
            at(2024, 6, 10, 0, 0, 0),
            at(2024, 6, 10, 0, 10, 0)
        ]
    );
}

#[test]
fn every_five_minutes_in_weekday_working_hours() {
    // "Run every 5 minutes Monday through Friday between 8:00 am and 5:55 pm (UTC+0)"
    let expression = "cron(0/5 8-17 ? * MON-FRI *)";
    assert_eq!(
        firings(expression, at(2024, 6, 10, 7, 0, 0), 2),
        [at(2024, 6, 10, 8, 0, 0), at(2024, 6, 10, 8, 5, 0)]
    );
    assert_eq!(
        firings(expression, at(2024, 6, 10, 17, 50, 0), 2),
        [at(2024, 6, 10, 17, 55, 0), at(2024, 6, 11, 8, 0, 0)]
    );
    assert_eq!(
        schedule(expression).next_after(at(2024, 6, 7, 17, 55, 0)),
        Some(at(2024, 6, 10, 8, 0, 0))
    );
}

#[test]
fn hour_ranges_wrap_past_midnight() {
    // The "0/30 20-2 ? * MON-FRI *" example: hours 20-2 are 20:00 through 02:59. Each day is
    // checked against MON-FRI on its own, so Saturday 00:00 (after a Friday) does not fire.
    let expression = "cron(0/30 20-2 ? * MON-FRI *)";
    assert_eq!(
        firings(expression, at(2024, 6, 10, 2, 30, 0), 2),
        [at(2024, 6, 10, 20, 0, 0), at(2024, 6, 10, 20, 30, 0)]
    );
    assert_eq!(
        firings(expression, at(2024, 6, 10, 23, 30, 0), 2),
        [at(2024, 6, 11, 0, 0, 0), at(2024, 6, 11, 0, 30, 0)]
    );
    assert_eq!(
        schedule(expression).next_after(at(2024, 6, 7, 23, 30, 0)),
        Some(at(2024, 6, 10, 0, 0, 0))
    );
}

#[test]
fn cli_examples() {
    // aws events put-rule --schedule-expression "cron(0 12 * * ? *)": every day at 12:00 pm.
    assert_eq!(
        schedule("cron(0 12 * * ? *)").next_after(at(2024, 6, 7, 12, 0, 0)),
        Some(at(2024, 6, 8, 12, 0, 0))
    );
    // "cron(5,35 14 * * ? *)": every day at 2:05 pm and 2:35 pm.
    assert_eq!(
        firings("cron(5,35 14 * * ? *)", at(2024, 6, 7, 14, 5, 0), 2),
        [at(2024, 6, 7, 14, 35, 0), at(2024, 6, 8, 14, 5, 0)]
    );
}

#[test]
fn last_friday_of_each_month_in_2019_to_2022() {
    // "cron(15 10 ? * 6L 2019-2022)": 10:15 am on the last Friday of each month, 2019 to 2022.
    let expression = "cron(15 10 ? * 6L 2019-2022)";
    assert_eq!(
        firings(expression, at(2018, 6, 1, 0, 0, 0), 2),
        [at(2019, 1, 25, 10, 15, 0), at(2019, 2, 22, 10, 15, 0)]
    );
    assert_eq!(
        schedule(expression).next_after(at(2022, 12, 1, 0, 0, 0)),
        Some(at(2022, 12, 30, 10, 15, 0))
    );
    assert_eq!(
        schedule(expression).next_after(at(2022, 12, 30, 10, 15, 0)),
        None
    );
}

#[test]
fn nth_weekday_of_the_month() {
    // "3#2 would be the second Tuesday of the month".
    assert_eq!(
        firings("cron(0 9 ? * 3#2 *)", at(2024, 6, 1, 0, 0, 0), 2),
        [at(2024, 6, 11, 9, 0, 0), at(2024, 7, 9, 9, 0, 0)]
    );
}

#[test]
fn weekday_nearest_a_day_of_the_month() {
    // "3W specifies the weekday closest to the third day of the month": 2024-08-03 is a
    // Saturday (so Friday the 2nd); 2024-09-03 is a Tuesday.
    assert_eq!(
        firings("cron(0 9 3W * ? *)", at(2024, 7, 31, 0, 0, 0), 2),
        [at(2024, 8, 2, 9, 0, 0), at(2024, 9, 3, 9, 0, 0)]
    );
}

#[test]
fn last_day_and_last_weekday_of_the_month() {
    assert_eq!(
        firings("cron(0 0 L * ? *)", at(2024, 2, 1, 0, 0, 0), 2),
        [at(2024, 2, 29, 0, 0, 0), at(2024, 3, 31, 0, 0, 0)]
    );
    // 2024-08-31 is a Saturday, so the last weekday is Friday the 30th.
    assert_eq!(
        schedule("cron(0 0 LW * ? *)").next_after(at(2024, 8, 1, 0, 0, 0)),
        Some(at(2024, 8, 30, 0, 0, 0))
    );
    // `L` alone in day-of-week is its last day, Saturday.
    assert_eq!(
        schedule("cron(0 0 ? * L *)").next_after(at(2024, 6, 7, 0, 0, 0)),
        Some(at(2024, 6, 8, 0, 0, 0))
    );
}

#[test]
fn month_and_weekday_names() {
    assert_eq!(
        schedule("cron(0 0 1 JAN,JUL ? *)").next_after(at(2024, 2, 1, 0, 0, 0)),
        Some(at(2024, 7, 1, 0, 0, 0))
    );
    assert_eq!(
        schedule("cron(0 0 ? * SAT,SUN *)").next_after(at(2024, 6, 10, 0, 0, 0)),
        Some(at(2024, 6, 15, 0, 0, 0))
    );
    // Day-of-week numbers run 1 (SUN) to 7 (SAT).
    assert_eq!(
        schedule("cron(0 0 ? * 1 *)").next_after(at(2024, 6, 10, 0, 0, 0)),
        Some(at(2024, 6, 16, 0, 0, 0))
    );
}

#[test]
fn rate_expressions_fire_on_multiples_of_their_period_since_the_epoch() {
    // The four CLI examples of the rate section.
    assert_eq!(
        firings("rate(1 minute)", at(2024, 6, 7, 10, 0, 30), 2),
        [at(2024, 6, 7, 10, 1, 0), at(2024, 6, 7, 10, 2, 0)]
    );
    assert_eq!(
        firings("rate(5 minutes)", at(2024, 6, 7, 10, 5, 0), 2),
        [at(2024, 6, 7, 10, 10, 0), at(2024, 6, 7, 10, 15, 0)]
    );
    assert_eq!(
        schedule("rate(1 hour)").next_after(at(2024, 6, 7, 10, 59, 59)),
        Some(at(2024, 6, 7, 11, 0, 0))
    );
    assert_eq!(
        schedule("rate(1 day)").next_after(at(2024, 6, 7, 10, 0, 0)),
        Some(at(2024, 6, 8, 0, 0, 0))
    );
    // 2024-06-07 is day 19881 since the epoch (odd), so every-2-days firings land on even days.
    assert_eq!(
        schedule("rate(2 days)").next_after(at(2024, 6, 7, 10, 0, 0)),
        Some(at(2024, 6, 8, 0, 0, 0))
    );
}

#[test]
fn one_time_schedules_fire_once() {
    let once = schedule("at(2024-06-07T10:30:00)");
    assert_eq!(
        once.next_after(at(2024, 6, 7, 10, 29, 59)),
        Some(at(2024, 6, 7, 10, 30, 0))
    );
    assert_eq!(once.next_after(at(2024, 6, 7, 10, 30, 0)), None);
}

#[test]
fn expressions_display_as_written() {
    let parsed: ScheduleExpression = "cron(0 18 ? * MON-FRI *)".parse().expect("valid cron");
    assert_eq!(parsed.to_string(), "cron(0 18 ? * MON-FRI *)");
    assert_eq!(parsed.as_str(), "cron(0 18 ? * MON-FRI *)");
}

fn error(expression: &str) -> ScheduleError {
    match ScheduleExpression::parse(expression) {
        Ok(_) => panic!("{expression} should be rejected"),
        Err(error) => error,
    }
}

#[test]
fn rate_expressions_need_a_positive_value_and_the_right_unit() {
    let cases = [
        (
            "rate(1 hours)",
            "AWS requires the unit `hour` for a value of 1",
        ),
        (
            "rate(5 hour)",
            "AWS requires the unit `hours` for a value of 5",
        ),
        ("rate(0 minutes)", "positive whole number"),
        ("rate(-5 minutes)", "positive whole number"),
        ("rate(1.5 hours)", "positive whole number"),
        ("rate(2 weeks)", "unknown unit `weeks`"),
        ("rate(5minutes)", "expected rate(value unit)"),
        ("rate(5 minutes now)", "expected rate(value unit)"),
        ("every 5 minutes", "is not a schedule expression"),
    ];
    for (expression, expected) in cases {
        let message = error(expression).to_string();
        assert!(
            message.contains(expected),
            "{expression}: `{message}` lacks `{expected}`"
        );
    }
}

#[test]
fn invalid_cron_expressions_name_the_problem() {
    let cases = [
        ("cron(0 10 * * ?)", "expected 6 fields"),
        (
            "cron(0 10 * * * *)",
            "one of day-of-month and day-of-week must be `?`",
        ),
        (
            "cron(0 10 1 * MON *)",
            "one of day-of-month and day-of-week must be `?`",
        ),
        ("cron(0 10 ? * ? *)", "cannot both be `?`"),
        (
            "cron(60 10 * * ? *)",
            "minutes field `60`: `60` is not a value from 0-59",
        ),
        ("cron(0 24 * * ? *)", "hours field `24`"),
        ("cron(0 10 32 * ? *)", "day-of-month field `32`"),
        (
            "cron(0 10 * 13 ? *)",
            "month field `13`: `13` is not a value from 1-12 or JAN-DEC",
        ),
        (
            "cron(0 10 ? * 8 *)",
            "day-of-week field `8`: `8` is not a value from 1-7 or SUN-SAT",
        ),
        ("cron(0 10 ? * FUNDAY *)", "day-of-week field `FUNDAY`"),
        ("cron(0 10 * * ? 1969)", "year field `1969`"),
        ("cron(0 10 * * ? 2022-2019)", "runs backwards"),
        ("cron(? 10 * * ? *)", "minutes field `?`"),
        (
            "cron(0/0 10 * * ? *)",
            "increment `0` must be a positive whole number",
        ),
        (
            "cron(0 10 ? * MON/2 *)",
            "`/` increments are not allowed in the day-of-week field",
        ),
        ("cron(0 10 ? * 3#6 *)", "occurrence from 1 to 5"),
        ("cron(0 10 ? * 3#1,6#3 *)", "occurrence from 1 to 5"),
        ("cron(0 10 L-3 * ? *)", "`L` and `W` must stand alone"),
        ("cron(0 10 1,L * ? *)", "`L` and `W` must stand alone"),
        ("cron(0 10 1,, * ? *)", "day-of-month field `1,,`"),
        ("at(2024-06-07 10:30)", "expected at(yyyy-mm-ddThh:mm:ss)"),
    ];
    for (expression, expected) in cases {
        let message = error(expression).to_string();
        assert!(
            message.contains(expected),
            "{expression}: `{message}` lacks `{expected}`"
        );
    }
}

#[test]
fn expressions_round_trip_through_serde() {
    let parsed: ScheduleExpression =
        serde_json::from_value(serde_json::json!("rate(5 minutes)")).expect("valid rate");
    assert_eq!(
        serde_json::to_value(&parsed).expect("serialisable"),
        serde_json::json!("rate(5 minutes)")
    );
    assert!(
        serde_json::from_value::<ScheduleExpression>(serde_json::json!("rate(5 minute)")).is_err()
    );
}
