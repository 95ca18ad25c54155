//! EventBridge (rules and Scheduler) schedule expressions, evaluated in UTC.
//!
//! Syntax follows AWS's "Creating an Amazon EventBridge rule that runs on a schedule" and
//! "Schedule types in EventBridge Scheduler":
//!
//! * `rate(value unit)`: a positive whole `value` and a unit of minute(s), hour(s) or day(s);
//!   the unit must be singular when the value is 1 and plural otherwise.
//! * `cron(minutes hours day-of-month month day-of-week year)`: six fields using `*`, `,`, `-`
//!   and `/`; months `1-12` or `JAN-DEC`; weekdays `1-7` or `SUN-SAT` (1 is Sunday); years
//!   `1970-2199`. One of day-of-month and day-of-week must be `?`. Day-of-month also takes `L`
//!   (last day), `LW` (last weekday) and `nW` (weekday nearest day n, staying in the month);
//!   day-of-week takes `L` (Saturday, the last day of the week), `nL` (last weekday n of the
//!   month) and `n#k` (k-th weekday n of the month). Ranges in the cyclic fields (minutes, hours,
//!   day-of-month, month, day-of-week) may wrap, e.g. hours `20-2` is 20:00 through 02:59.
//! * `at(yyyy-mm-ddThh:mm:ss)`: EventBridge Scheduler's one-time schedule.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeDelta, Timelike, Utc, Weekday};
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// Why a string is not a valid schedule expression.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScheduleError {
    #[error(
        "`{expression}` is not a schedule expression; expected rate(value unit), \
         cron(minutes hours day-of-month month day-of-week year) or at(yyyy-mm-ddThh:mm:ss)"
    )]
    UnknownForm { expression: String },
    #[error("invalid rate expression `{expression}`: {reason}")]
    Rate { expression: String, reason: String },
    #[error("invalid cron expression `{expression}`: {reason}")]
    Cron { expression: String, reason: String },
    #[error("invalid cron expression `{expression}`: {field} field `{value}`: {reason}")]
    CronField {
        expression: String,
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error("invalid one-time expression `{expression}`: expected at(yyyy-mm-ddThh:mm:ss)")]
    At { expression: String },
}

/// A parsed schedule expression.
#[derive(Clone)]
pub struct ScheduleExpression {
    /// The expression as written.
    text: String,
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Rate { period_seconds: i64 },
    Cron(Cron),
    At(DateTime<Utc>),
}

impl ScheduleExpression {
    /// Parses `rate(...)`, `cron(...)` or `at(...)`.
    pub fn parse(expression: &str) -> Result<Self, ScheduleError> {
        let text = expression.trim();
        let kind = if let Some(body) = call_body(text, "rate") {
            Kind::Rate {
                period_seconds: parse_rate(body).map_err(|reason| ScheduleError::Rate {
                    expression: text.to_owned(),
                    reason,
                })?,
            }
        } else if let Some(body) = call_body(text, "cron") {
            Kind::Cron(Cron::parse(text, body)?)
        } else if let Some(body) = call_body(text, "at") {
            let at = NaiveDateTime::parse_from_str(body, "%Y-%m-%dT%H:%M:%S").map_err(|_| {
                ScheduleError::At {
                    expression: text.to_owned(),
                }
            })?;
            Kind::At(at.and_utc())
        } else {
            return Err(ScheduleError::UnknownForm {
                expression: text.to_owned(),
            });
        };
        Ok(Self {
            text: text.to_owned(),
            kind,
        })
    }

    /// The next time the schedule fires strictly after `after`, or `None` if it never fires
    /// again (a past `at(...)`, or a cron whose years have run out).
    ///
    /// Cron and one-time schedules fire on whole minutes. A `rate(...)` schedule has no start
    /// time of its own in this crate, so it fires at every whole multiple of its period since the
    /// Unix epoch: `rate(5 minutes)` at :00, :05, :10, ..., `rate(1 day)` at midnight UTC.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.kind {
            Kind::Rate { period_seconds } => {
                let periods = after.timestamp().div_euclid(*period_seconds);
                let next = periods.checked_add(1)?.checked_mul(*period_seconds)?;
                DateTime::from_timestamp(next, 0)
            }
            Kind::Cron(cron) => cron
                .next_after(after.naive_utc())
                .map(|next| next.and_utc()),
            Kind::At(at) => (*at > after).then_some(*at),
        }
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for ScheduleExpression {
    type Err = ScheduleError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for ScheduleExpression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for ScheduleExpression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ScheduleExpression({})", self.text)
    }
}

/// Two expressions are equal when they were written the same way.
impl PartialEq for ScheduleExpression {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for ScheduleExpression {}

impl serde::Serialize for ScheduleExpression {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for ScheduleExpression {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `name(body)` → `body`.
fn call_body<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.strip_prefix(name)?
        .strip_prefix('(')?
        .strip_suffix(')')
}

/// Returns the period in seconds.
fn parse_rate(body: &str) -> Result<i64, String> {
    let mut words = body.split_whitespace();
    let (Some(value), Some(unit), None) = (words.next(), words.next(), words.next()) else {
        return Err("expected rate(value unit), e.g. rate(5 minutes)".to_owned());
    };
    let count: i64 = value
        .parse()
        .ok()
        .filter(|count| *count > 0 && value.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("the value `{value}` must be a positive whole number"))?;
    let (singular, unit_seconds) = match unit {
        "minute" | "minutes" => ("minute", 60),
        "hour" | "hours" => ("hour", 3_600),
        "day" | "days" => ("day", 86_400),
        _ => {
            return Err(format!(
                "unknown unit `{unit}`; use minute(s), hour(s) or day(s)"
            ));
        }
    };
    let expected_unit = if count == 1 {
        singular.to_owned()
    } else {
        format!("{singular}s")
    };
    if unit != expected_unit {
        return Err(format!(
            "AWS requires the unit `{expected_unit}` for a value of {count}"
        ));
    }
    count
        .checked_mul(unit_seconds)
        .ok_or_else(|| format!("the value `{value}` is too large"))
}

#[derive(Clone)]
struct Cron {
    minutes: BTreeSet<u32>,
    hours: BTreeSet<u32>,
    days: DaySpec,
    months: BTreeSet<u32>,
    years: BTreeSet<u32>,
}

/// Which days fire: exactly one of day-of-month and day-of-week is set, the other being `?`.
/// A "workday" is Monday to Friday (the "weekday" of AWS's `W`); weekday numbers run from
/// 1 (Sunday) to 7 (Saturday).
#[derive(Clone)]
enum DaySpec {
    MonthDays(BTreeSet<u32>),
    LastDayOfMonth,
    LastWorkdayOfMonth,
    WorkdayNearest(u32),
    WeekDays(BTreeSet<u32>),
    LastInMonth { weekday: u32 },
    NthInMonth { weekday: u32, nth: u32 },
}

/// The bounds and spelling of one cron field.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    /// Names for `min`, `min + 1`, ... (upper-case).
    names: &'static [&'static str],
    allows_step: bool,
    /// Whether a range may wrap past `max` back to `min` (not for years).
    cyclic: bool,
}

const MINUTES: Field = Field {
    name: "minutes",
    min: 0,
    max: 59,
    names: &[],
    allows_step: true,
    cyclic: true,
};
const HOURS: Field = Field {
    name: "hours",
    min: 0,
    max: 23,
    names: &[],
    allows_step: true,
    cyclic: true,
};
const DAY_OF_MONTH: Field = Field {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
    allows_step: true,
    cyclic: true,
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
    allows_step: true,
    cyclic: true,
};
// AWS lists no `/` for day-of-week.
const DAY_OF_WEEK: Field = Field {
    name: "day-of-week",
    min: 1,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
    allows_step: false,
    cyclic: true,
};
const YEAR: Field = Field {
    name: "year",
    min: 1970,
    max: 2199,
    names: &[],
    allows_step: true,
    cyclic: false,
};

impl Field {
    fn value(&self, token: &str) -> Result<u32, String> {
        let named = self
            .names
            .iter()
            .zip(self.min..)
            .find(|(name, _)| name.eq_ignore_ascii_case(token))
            .map(|(_, value)| value);
        let value = match named {
            Some(value) => value,
            None if !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()) => {
                token.parse().map_err(|_| self.out_of_range(token))?
            }
            None => return Err(self.out_of_range(token)),
        };
        if (self.min..=self.max).contains(&value) {
            Ok(value)
        } else {
            Err(self.out_of_range(token))
        }
    }

    fn out_of_range(&self, token: &str) -> String {
        let names = match (self.names.first(), self.names.last()) {
            (Some(first), Some(last)) => format!(" or {first}-{last}"),
            _ => String::new(),
        };
        format!(
            "`{token}` is not a value from {}-{}{names}",
            self.min, self.max
        )
    }

    /// Parses a comma-separated list of `*`, `n`, `a-b`, `*/step`, `n/step` and `a-b/step`.
    fn parse_set(&self, text: &str) -> Result<BTreeSet<u32>, String> {
        let mut set = BTreeSet::new();
        for part in text.split(',') {
            let (range, step) = match part.split_once('/') {
                Some((range, step)) if self.allows_step => (range, Some(step)),
                Some(_) => {
                    return Err(format!(
                        "`/` increments are not allowed in the {} field",
                        self.name
                    ));
                }
                None => (part, None),
            };
            let values: Vec<u32> = if range == "*" {
                (self.min..=self.max).collect()
            } else if let Some((start, end)) = range.split_once('-') {
                let (start, end) = (self.value(start)?, self.value(end)?);
                if start <= end {
                    (start..=end).collect()
                } else if self.cyclic {
                    (start..=self.max).chain(self.min..=end).collect()
                } else {
                    return Err(format!("range `{range}` runs backwards"));
                }
            } else if step.is_some() {
                // `5/15` means "from 5, every 15".
                (self.value(range)?..=self.max).collect()
            } else {
                vec![self.value(range)?]
            };
            let step = match step {
                None => 1,
                Some(step) => step
                    .parse::<usize>()
                    .ok()
                    .filter(|step| *step > 0)
                    .ok_or_else(|| format!("increment `{step}` must be a positive whole number"))?,
            };
            set.extend(values.into_iter().step_by(step));
        }
        Ok(set)
    }
}

impl Cron {
    fn parse(expression: &str, body: &str) -> Result<Self, ScheduleError> {
        let fields: Vec<&str> = body.split_whitespace().collect();
        let &[minutes, hours, day_of_month, month, day_of_week, year] = fields.as_slice() else {
            return Err(ScheduleError::Cron {
                expression: expression.to_owned(),
                reason: format!(
                    "expected 6 fields (minutes hours day-of-month month day-of-week year), found {}",
                    fields.len()
                ),
            });
        };
        let field_error = |field: &Field, value: &str| {
            let expression = expression.to_owned();
            let (name, value) = (field.name, value.to_owned());
            move |reason| ScheduleError::CronField {
                expression,
                field: name,
                value,
                reason,
            }
        };
        let set =
            |field: &Field, value: &str| field.parse_set(value).map_err(field_error(field, value));
        let days = match (day_of_month, day_of_week) {
            ("?", "?") => {
                return Err(ScheduleError::Cron {
                    expression: expression.to_owned(),
                    reason: "day-of-month and day-of-week cannot both be `?`; set one of them"
                        .to_owned(),
                });
            }
            (days, "?") => parse_day_of_month(days).map_err(field_error(&DAY_OF_MONTH, days))?,
            ("?", days) => parse_day_of_week(days).map_err(field_error(&DAY_OF_WEEK, days))?,
            _ => {
                return Err(ScheduleError::Cron {
                    expression: expression.to_owned(),
                    reason:
                        "one of day-of-month and day-of-week must be `?`, e.g. cron(0 8 1 * ? *) \
                             or cron(0 18 ? * MON-FRI *)"
                            .to_owned(),
                });
            }
        };
        Ok(Self {
            minutes: set(&MINUTES, minutes)?,
            hours: set(&HOURS, hours)?,
            days,
            months: set(&MONTH, month)?,
            years: set(&YEAR, year)?,
        })
    }

    fn next_after(&self, after: NaiveDateTime) -> Option<NaiveDateTime> {
        let mut t = after
            .date()
            .and_hms_opt(after.hour(), after.minute(), 0)?
            .checked_add_signed(TimeDelta::minutes(1))?;
        // Each pass either returns or moves `t` forward by at least an hour, jumping whole
        // years, months and days that cannot match, so this ends well within 2199.
        loop {
            let date = t.date();
            let year = u32::try_from(date.year()).ok()?;
            if !self.years.contains(&year) {
                let next_year = i32::try_from(*self.years.range(year..).next()?).ok()?;
                t = NaiveDate::from_ymd_opt(next_year, 1, 1)?.and_hms_opt(0, 0, 0)?;
                continue;
            }
            if !self.months.contains(&date.month()) {
                t = first_of_next_month(date)?.and_hms_opt(0, 0, 0)?;
                continue;
            }
            if !self.days.matches(date) {
                t = date.succ_opt()?.and_hms_opt(0, 0, 0)?;
                continue;
            }
            let Some(&hour) = self.hours.range(t.hour()..).next() else {
                t = date.succ_opt()?.and_hms_opt(0, 0, 0)?;
                continue;
            };
            let first_minute = if hour == t.hour() { t.minute() } else { 0 };
            match self.minutes.range(first_minute..).next() {
                Some(&minute) => return date.and_hms_opt(hour, minute, 0),
                None => {
                    t = date
                        .and_hms_opt(hour, 0, 0)?
                        .checked_add_signed(TimeDelta::hours(1))?;
                }
            }
        }
    }
}

fn parse_day_of_month(text: &str) -> Result<DaySpec, String> {
    match text {
        "L" => Ok(DaySpec::LastDayOfMonth),
        "LW" => Ok(DaySpec::LastWorkdayOfMonth),
        _ => match text.strip_suffix('W') {
            Some(day) => Ok(DaySpec::WorkdayNearest(DAY_OF_MONTH.value(day)?)),
            None if text.contains(['L', 'W']) => Err(
                "`L` and `W` must stand alone (`L`, `LW` or e.g. `15W`), not with other values"
                    .to_owned(),
            ),
            None => DAY_OF_MONTH.parse_set(text).map(DaySpec::MonthDays),
        },
    }
}

fn parse_day_of_week(text: &str) -> Result<DaySpec, String> {
    if text == "L" {
        return Ok(DaySpec::WeekDays(BTreeSet::from([7])));
    }
    if let Some((weekday, nth)) = text.split_once('#') {
        let nth = nth
            .parse()
            .ok()
            .filter(|nth| (1..=5).contains(nth))
            .ok_or_else(|| {
                format!(
                    "`#` takes one weekday and an occurrence from 1 to 5, e.g. 3#2; found `{text}`"
                )
            })?;
        return Ok(DaySpec::NthInMonth {
            weekday: DAY_OF_WEEK.value(weekday)?,
            nth,
        });
    }
    if let Some(weekday) = text.strip_suffix('L') {
        return Ok(DaySpec::LastInMonth {
            weekday: DAY_OF_WEEK.value(weekday)?,
        });
    }
    DAY_OF_WEEK.parse_set(text).map(DaySpec::WeekDays)
}

impl DaySpec {
    fn matches(&self, date: NaiveDate) -> bool {
        let day = date.day();
        let last = days_in_month(date.year(), date.month());
        let weekday = date.weekday().number_from_sunday();
        match self {
            Self::MonthDays(days) => days.contains(&day),
            Self::LastDayOfMonth => day == last,
            Self::LastWorkdayOfMonth => date
                .with_day(last)
                .is_some_and(|last_date| day == nearest_workday(last_date, last)),
            Self::WorkdayNearest(target) => {
                // A day the month lacks (31W in April) fires nothing that month.
                date.with_day(*target)
                    .is_some_and(|target_date| day == nearest_workday(target_date, last))
            }
            Self::WeekDays(weekdays) => weekdays.contains(&weekday),
            Self::LastInMonth { weekday: wanted } => weekday == *wanted && day + 7 > last,
            Self::NthInMonth {
                weekday: wanted,
                nth,
            } => weekday == *wanted && (day - 1) / 7 + 1 == *nth,
        }
    }
}

/// The day of the workday nearest `target`, staying inside its month as Quartz cron's `W` does.
fn nearest_workday(target: NaiveDate, days_in_month: u32) -> u32 {
    let day = target.day();
    match target.weekday() {
        Weekday::Sat if day == 1 => 3,
        Weekday::Sat => day - 1,
        Weekday::Sun if day == days_in_month => day - 2,
        Weekday::Sun => day + 1,
        _ => day,
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn first_of_next_month(date: NaiveDate) -> Option<NaiveDate> {
    match date.month() {
        12 => NaiveDate::from_ymd_opt(date.year() + 1, 1, 1),
        month => NaiveDate::from_ymd_opt(date.year(), month + 1, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cron(expression: &str) -> Cron {
        match ScheduleExpression::parse(expression).map(|parsed| parsed.kind) {
            Ok(Kind::Cron(cron)) => cron,
            other => panic!("expected a cron expression, got {:?}", other.err()),
        }
    }

    impl Cron {
        /// Direct check of one minute, used to cross-check `next_after`'s jumps.
        fn fires_at(&self, t: NaiveDateTime) -> bool {
            u32::try_from(t.year()).is_ok_and(|year| self.years.contains(&year))
                && self.months.contains(&t.month())
                && self.days.matches(t.date())
                && self.hours.contains(&t.hour())
                && self.minutes.contains(&t.minute())
                && t.second() == 0
        }
    }

    fn cron_field(values: &'static [&'static str]) -> impl Strategy<Value = String> {
        prop::sample::select(values).prop_map(str::to_owned)
    }

    proptest! {
        /// `next_after` agrees with a minute-by-minute scan for dense schedules.
        #[test]
        fn next_after_finds_the_first_matching_minute(
            minutes in cron_field(&["*", "0", "0/15", "5,35", "50-10", "*/7"]),
            hours in cron_field(&["*", "0", "8-17", "20-2", "0/5", "23"]),
            (day_of_month, day_of_week) in prop::sample::select(&[
                ("*", "?"), ("?", "*"), ("?", "MON-FRI"), ("?", "SAT,SUN"), ("L", "?"), ("1,15", "?"),
                ("?", "6L"), ("?", "2#1"), ("15W", "?"), ("LW", "?"), ("1/10", "?"),
            ][..]),
            start in 1_700_000_000i64..1_800_000_000,
        ) {
            let expression = format!("cron({minutes} {hours} {day_of_month} * {day_of_week} *)");
            let schedule = cron(&expression);
            let after = DateTime::from_timestamp(start, 0).expect("in range").naive_utc();
            let next = schedule.next_after(after).expect("fires again");
            prop_assert!(next > after);
            prop_assert!(schedule.fires_at(next), "{expression} does not fire at {next}");
            let mut t = after.date().and_hms_opt(after.hour(), after.minute(), 0).expect("valid") + TimeDelta::minutes(1);
            while t < next {
                prop_assert!(!schedule.fires_at(t), "{expression} skipped {t} before {next}");
                t += TimeDelta::minutes(1);
            }
        }
    }

    #[test]
    fn nearest_workday_stays_inside_the_month() {
        // 2022-10-01 is a Saturday: 1W moves forward to Monday the 3rd, not back into September.
        let schedule = cron("cron(0 0 1W * ? *)");
        let after = NaiveDate::from_ymd_opt(2022, 9, 15)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .expect("date");
        let expected = NaiveDate::from_ymd_opt(2022, 10, 3).and_then(|d| d.and_hms_opt(0, 0, 0));
        assert_eq!(schedule.next_after(after), expected);
        // 2022-07-31 is a Sunday and the last day: 31W moves back to Friday the 29th.
        let schedule = cron("cron(0 0 31W * ? *)");
        let after = NaiveDate::from_ymd_opt(2022, 7, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .expect("date");
        let expected = NaiveDate::from_ymd_opt(2022, 7, 29).and_then(|d| d.and_hms_opt(0, 0, 0));
        assert_eq!(schedule.next_after(after), expected);
    }

    #[test]
    fn days_in_month_handles_leap_years() {
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(2100, 2), 28);
        assert_eq!(days_in_month(2000, 2), 29);
        assert_eq!(days_in_month(2023, 4), 30);
        assert_eq!(days_in_month(2023, 12), 31);
    }
}
