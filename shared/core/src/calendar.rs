//! Business-hours calendars and SLA deadline maths.
//!
//! A [`BusinessCalendar`] says when a tenant's team works: weekly windows of local wall-clock time
//! in one IANA zone, minus holidays, or always (24/7). [`BusinessCalendar::deadline`] turns an SLA
//! of business time into the real instant it runs out; [`BusinessCalendar::business_duration`]
//! measures business time between two instants; [`BusinessCalendar::is_business_time`] answers
//! "within business hours?" for rules.
//!
//! **What counts as business time.** An instant is business time when the zone's wall clock, at
//! that instant, shows a working weekday that is not a holiday and a time inside one of that
//! day's windows. Everything follows from that one rule, including daylight saving time:
//!
//! - fall-back: the repeated hour counts every time the clock shows it. In Europe/Warsaw on
//!   2026-10-25 a 01:00–03:00 window is three real hours, and a 01:00–02:30 window is two (01:00 to
//!   02:30 summer time, then 02:00 to 02:30 winter time);
//! - spring-forward: the local times the clock skips never happen, so their part of a window is
//!   simply missing. In Europe/Warsaw on 2026-03-29 a 01:00–03:00 window is one real hour and a
//!   02:00–02:30 window is none;
//! - `24:00` ends a window at the end of the local date (when the clock would first show the next
//!   date's 00:00), so 20:00–24:00 on Monday followed by 00:00–04:00 on Tuesday is one stretch.
//!
//! Internally each local date's windows become at most two real-time pieces per window (one per
//! UTC offset in force that day), computed from the zone's offsets rather than by resolving
//! ambiguous local times, so there is no "earliest or latest?" choice to get wrong. This assumes
//! a zone does not change its UTC offset twice within nine days (true of the tz database's rules
//! in current use, where changes are weeks apart at the closest, e.g. Morocco around Ramadan).

use std::fmt;
use std::ops::ControlFlow;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

const DAY_SECS: i64 = 86_400;
const NANOS: i128 = 1_000_000_000;
/// No UTC offset is beyond ±16 h, so every instant whose local date is D lies between D's local
/// midnight minus 16 h and the next midnight plus 16 h (read as UTC).
const PROBE_HOURS: u32 = 16;
const PROBE_SECS: i64 = PROBE_HOURS as i64 * 3_600;
/// Spans over which equal offsets at both ends are taken to mean no change in between: a week
/// plus the probes either side, with a day to spare.
const CHAIN_SECS: i64 = 9 * DAY_SECS;
/// `NaiveDate::num_days_from_ce` of 1970-01-01.
const UNIX_EPOCH_DAYS_FROM_CE: i64 = 719_163;

/// Weekday names as they appear in the JSON and in error messages, Monday first.
pub const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// Why a calendar was refused. Each message names what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("unknown time zone '{0}' (use an IANA name such as Europe/Warsaw)")]
    UnknownTimeZone(String),
    #[error(
        "time_zone is required when the calendar has working hours (an IANA name such as Europe/Warsaw)"
    )]
    MissingTimeZone,
    #[error("{day}: '{text}' is not a window; write HH:MM-HH:MM, for example 09:00-17:00")]
    MalformedWindow { day: &'static str, text: String },
    #[error("{day}: '{text}' is not a time of day; use HH:MM from 00:00 to 24:00")]
    MalformedTime { day: &'static str, text: String },
    #[error(
        "{day}: window {start}–{end} must start before it ends (a shift past midnight is two \
         windows: {start}–24:00 and 00:00–{end} on the next day)"
    )]
    EmptyWindow {
        day: &'static str,
        start: String,
        end: String,
    },
    #[error("{day}: windows {first} and {second} overlap")]
    OverlappingWindows {
        day: &'static str,
        first: String,
        second: String,
    },
    #[error("holiday '{0}' is not a date; use YYYY-MM-DD for one day or MM-DD for every year")]
    MalformedHoliday(String),
    #[error(
        "the calendar has no working hours: give at least one weekday a window, or set always_open"
    )]
    NoWorkingHours,
    #[error("the yearly holidays cover every day of the year, so the calendar has no working time")]
    NoWorkingDays,
    #[error(
        "an always_open calendar takes no hours or holidays; remove them, or set always_open to false"
    )]
    AlwaysOpenWithHours,
}

/// The JSON an admin writes; [`BusinessCalendar`] is its validated form (see there for examples).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarSpec {
    /// IANA zone the windows and holidays are read in. Required unless `always_open`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Every instant is business time; takes no hours or holidays.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub always_open: bool,
    #[serde(default, skip_serializing_if = "WeeklyHours::is_empty")]
    pub hours: WeeklyHours,
    /// `YYYY-MM-DD` for one date, `MM-DD` for that date every year (`02-29` only in leap years).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holidays: Vec<String>,
}

/// Working windows per weekday, each `HH:MM-HH:MM` in local time; a missing day is closed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeeklyHours {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub monday: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tuesday: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wednesday: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thursday: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub friday: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub saturday: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sunday: Vec<String>,
}

impl WeeklyHours {
    fn days(&self) -> [&Vec<String>; 7] {
        [
            &self.monday,
            &self.tuesday,
            &self.wednesday,
            &self.thursday,
            &self.friday,
            &self.saturday,
            &self.sunday,
        ]
    }
    fn days_mut(&mut self) -> [&mut Vec<String>; 7] {
        [
            &mut self.monday,
            &mut self.tuesday,
            &mut self.wednesday,
            &mut self.thursday,
            &mut self.friday,
            &mut self.saturday,
            &mut self.sunday,
        ]
    }
    fn is_empty(&self) -> bool {
        self.days().iter().all(|d| d.is_empty())
    }
}

/// When a team works, validated.
///
/// The JSON an admin writes (every field but `time_zone` may be left out; a weekday that is left
/// out or has `[]` is closed):
///
/// ```json
/// {
///   "time_zone": "Europe/Warsaw",
///   "hours": {
///     "monday":    ["09:00-17:00"],
///     "tuesday":   ["09:00-12:00", "13:00-17:00"],
///     "wednesday": ["09:00-17:00"],
///     "thursday":  ["09:00-17:00"],
///     "friday":    ["09:00-15:00", "20:00-24:00"]
///   },
///   "holidays": ["2026-11-11", "12-25", "01-01"]
/// }
/// ```
///
/// - windows are local wall-clock times on the minute, start before end; `24:00` means "until
///   midnight". A shift past midnight is two windows (`20:00-24:00`, next day `00:00-04:00`).
///   Windows of one day may touch but not overlap. An en dash (`09:00–17:00`) is accepted too.
/// - holidays: `YYYY-MM-DD` closes that date; `MM-DD` closes it every year. A holiday is a whole
///   local date.
/// - 24/7: `{"always_open": true}` (a `time_zone` may be kept but changes nothing). An always-open
///   calendar takes no hours or holidays: a 24/7 desk that still closes on holidays is a weekly
///   calendar with `00:00-24:00` every day plus holidays, and refusing the mix means an admin is
///   never surprised by holidays being silently ignored.
///
/// A calendar with no working time at all (no window on any weekday, or yearly holidays on every
/// day of the year) is refused, so [`deadline`](Self::deadline) always has an answer. Serialising
/// writes the same shape back, normalised: windows sorted, holidays sorted and deduplicated, fixed
/// dates before yearly ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "CalendarSpec", into = "CalendarSpec")]
pub struct BusinessCalendar {
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    AlwaysOpen { time_zone: Option<Tz> },
    Weekly(Box<Weekly>),
}

#[derive(Debug, Clone, PartialEq)]
struct Weekly {
    tz: Tz,
    /// Monday first; sorted, non-overlapping.
    days: [Vec<Window>; 7],
    /// Nominal (wall-clock) business seconds of each weekday, and of a week.
    day_secs: [i64; 7],
    week_secs: i64,
    /// Sorted, deduplicated.
    fixed_holidays: Vec<NaiveDate>,
    /// One bit per day of a leap year, 01-01 first.
    yearly_holidays: [u64; 6],
}

/// Minutes since local midnight, `start < end <= 1440`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    start: u16,
    end: u16,
}

impl Window {
    fn start_secs(self) -> i64 {
        i64::from(self.start) * 60
    }
    fn end_secs(self) -> i64 {
        i64::from(self.end) * 60
    }
}

struct Clock(u16);
impl fmt::Display for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}
impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}–{}", Clock(self.start), Clock(self.end))
    }
}

fn clip(s: &str) -> String {
    s.chars().take(60).collect()
}

/// `H:MM` or `HH:MM`, 00:00 to 24:00.
fn parse_clock(s: &str) -> Option<u16> {
    let (hours, minutes) = s.split_once(':')?;
    let number = |p: &str, lens: std::ops::RangeInclusive<usize>| {
        (lens.contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
            .then(|| p.parse::<u16>().ok())
            .flatten()
    };
    let (h, m) = (number(hours, 1..=2)?, number(minutes, 2..=2)?);
    (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
}

fn parse_window(day: &'static str, text: &str) -> Result<Window, CalendarError> {
    let (start, end) =
        text.split_once(['-', '–'])
            .ok_or_else(|| CalendarError::MalformedWindow {
                day,
                text: clip(text),
            })?;
    let clock = |s: &str| {
        parse_clock(s.trim()).ok_or_else(|| CalendarError::MalformedTime {
            day,
            text: clip(s.trim()),
        })
    };
    let (start, end) = (clock(start)?, clock(end)?);
    if start >= end {
        return Err(CalendarError::EmptyWindow {
            day,
            start: Clock(start).to_string(),
            end: Clock(end).to_string(),
        });
    }
    Ok(Window { start, end })
}

enum Holiday {
    Fixed(NaiveDate),
    /// Index into the leap-year bit set.
    Yearly(u32),
}

fn parse_holiday(text: &str) -> Option<Holiday> {
    let number = |p: &str, len| {
        (p.len() == len && p.bytes().all(|b| b.is_ascii_digit()))
            .then(|| p.parse::<u32>().ok())
            .flatten()
    };
    let mut parts = text.trim().split('-');
    let (a, b, c) = (parts.next()?, parts.next()?, parts.next());
    if parts.next().is_some() {
        return None;
    }
    match c {
        Some(c) => {
            let year = i32::try_from(number(a, 4)?).ok()?;
            NaiveDate::from_ymd_opt(year, number(b, 2)?, number(c, 2)?).map(Holiday::Fixed)
        }
        None => {
            // 2000 is a leap year, so 02-29 is accepted.
            let date = NaiveDate::from_ymd_opt(2000, number(a, 2)?, number(b, 2)?)?;
            Some(Holiday::Yearly(date.ordinal0()))
        }
    }
}

fn parse_zone(name: &str) -> Result<Tz, CalendarError> {
    name.trim()
        .parse::<Tz>()
        .map_err(|_| CalendarError::UnknownTimeZone(clip(name)))
}

impl BusinessCalendar {
    /// Validates an admin's calendar.
    pub fn new(spec: CalendarSpec) -> Result<Self, CalendarError> {
        if spec.always_open {
            if !spec.hours.is_empty() || !spec.holidays.is_empty() {
                return Err(CalendarError::AlwaysOpenWithHours);
            }
            let time_zone = spec.time_zone.as_deref().map(parse_zone).transpose()?;
            return Ok(BusinessCalendar {
                kind: Kind::AlwaysOpen { time_zone },
            });
        }
        let tz = parse_zone(
            spec.time_zone
                .as_deref()
                .ok_or(CalendarError::MissingTimeZone)?,
        )?;
        let mut days: [Vec<Window>; 7] = Default::default();
        for (i, texts) in spec.hours.days().into_iter().enumerate() {
            let day = WEEKDAYS[i];
            let mut windows = texts
                .iter()
                .map(|t| parse_window(day, t))
                .collect::<Result<Vec<_>, _>>()?;
            windows.sort_by_key(|w| w.start);
            if let Some(pair) = windows.windows(2).find(|p| p[1].start < p[0].end) {
                return Err(CalendarError::OverlappingWindows {
                    day,
                    first: pair[0].to_string(),
                    second: pair[1].to_string(),
                });
            }
            days[i] = windows;
        }
        let mut fixed_holidays = Vec::new();
        let mut yearly_holidays = [0u64; 6];
        for text in &spec.holidays {
            match parse_holiday(text) {
                Some(Holiday::Fixed(date)) => fixed_holidays.push(date),
                Some(Holiday::Yearly(i)) => yearly_holidays[i as usize / 64] |= 1 << (i % 64),
                None => return Err(CalendarError::MalformedHoliday(clip(text))),
            }
        }
        fixed_holidays.sort_unstable();
        fixed_holidays.dedup();
        let day_secs = days
            .each_ref()
            .map(|ws| ws.iter().map(|w| w.end_secs() - w.start_secs()).sum());
        let week_secs = day_secs.iter().sum();
        if week_secs == 0 {
            return Err(CalendarError::NoWorkingHours);
        }
        // Any day of the year falls on every weekday over the 400-year cycle, so one free day is
        // enough for working time to come round again.
        if yearly_holidays.iter().map(|b| b.count_ones()).sum::<u32>() == 366 {
            return Err(CalendarError::NoWorkingDays);
        }
        Ok(BusinessCalendar {
            kind: Kind::Weekly(Box::new(Weekly {
                tz,
                days,
                day_secs,
                week_secs,
                fixed_holidays,
                yearly_holidays,
            })),
        })
    }

    /// A 24/7 calendar: every instant is business time.
    pub fn always_open() -> Self {
        BusinessCalendar {
            kind: Kind::AlwaysOpen { time_zone: None },
        }
    }

    /// The zone the calendar is read in (`None` for an always-open calendar without one).
    pub fn time_zone(&self) -> Option<Tz> {
        match &self.kind {
            Kind::AlwaysOpen { time_zone } => *time_zone,
            Kind::Weekly(w) => Some(w.tz),
        }
    }

    pub fn is_always_open(&self) -> bool {
        matches!(self.kind, Kind::AlwaysOpen { .. })
    }

    /// The normalised admin form of this calendar.
    pub fn spec(&self) -> CalendarSpec {
        let w = match &self.kind {
            Kind::AlwaysOpen { time_zone } => {
                return CalendarSpec {
                    time_zone: time_zone.map(|tz| tz.name().to_string()),
                    always_open: true,
                    ..CalendarSpec::default()
                };
            }
            Kind::Weekly(w) => w,
        };
        let mut hours = WeeklyHours::default();
        for (texts, windows) in hours.days_mut().into_iter().zip(&w.days) {
            *texts = windows
                .iter()
                .map(|w| format!("{}-{}", Clock(w.start), Clock(w.end)))
                .collect();
        }
        let fixed = w
            .fixed_holidays
            .iter()
            .map(|d| d.format("%Y-%m-%d").to_string());
        let yearly = (0..366u32)
            .filter(|&i| w.yearly_holidays[i as usize / 64] & (1 << (i % 64)) != 0)
            .filter_map(|i| NaiveDate::from_yo_opt(2000, i + 1))
            .map(|d| d.format("%m-%d").to_string());
        CalendarSpec {
            time_zone: Some(w.tz.name().to_string()),
            always_open: false,
            hours,
            holidays: fixed.chain(yearly).collect(),
        }
    }

    /// The instant at which `business` of business time has elapsed since `start`.
    ///
    /// Counting starts at `start` if it is business time, else at the next window. A deadline
    /// that uses up a window exactly is that window's end, not the next one's start. `business`
    /// of zero or less gives `start` itself. Saturates at [`DateTime::<Utc>::MAX_UTC`].
    pub fn deadline(&self, start: DateTime<Utc>, business: Duration) -> DateTime<Utc> {
        if business <= Duration::zero() {
            return start;
        }
        match &self.kind {
            Kind::AlwaysOpen { .. } => start
                .checked_add_signed(business)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            Kind::Weekly(w) => w.deadline(start, business),
        }
    }

    /// Business time between `from` and `to`; zero if `to <= from`.
    pub fn business_duration(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
        if to <= from {
            return Duration::zero();
        }
        match &self.kind {
            Kind::AlwaysOpen { .. } => to - from,
            Kind::Weekly(w) => w.business_duration(from, to),
        }
    }

    /// Whether `at` is business time: the wall clock shows a window of a working, non-holiday day.
    pub fn is_business_time(&self, at: DateTime<Utc>) -> bool {
        match &self.kind {
            Kind::AlwaysOpen { .. } => true,
            Kind::Weekly(w) => w.is_business_time(at),
        }
    }
}

impl TryFrom<CalendarSpec> for BusinessCalendar {
    type Error = CalendarError;
    fn try_from(spec: CalendarSpec) -> Result<Self, CalendarError> {
        BusinessCalendar::new(spec)
    }
}
impl From<BusinessCalendar> for CalendarSpec {
    fn from(c: BusinessCalendar) -> CalendarSpec {
        c.spec()
    }
}

/// A local date, with what the day loop needs of it kept incrementally.
#[derive(Debug, Clone, Copy)]
struct Day {
    date: NaiveDate,
    /// 0 = Monday.
    weekday: usize,
    /// Local midnight of `date`, as seconds since 1970-01-01 00:00 local.
    midnight: i64,
}

impl Day {
    fn from_local_secs(local: i64) -> Option<Day> {
        let days = local.div_euclid(DAY_SECS);
        let date = NaiveDate::from_num_days_from_ce_opt(
            i32::try_from(days + UNIX_EPOCH_DAYS_FROM_CE).ok()?,
        )?;
        Some(Day {
            date,
            weekday: date.weekday().num_days_from_monday() as usize,
            midnight: days * DAY_SECS,
        })
    }
    fn next(self) -> Option<Day> {
        Some(Day {
            date: self.date.succ_opt()?,
            weekday: (self.weekday + 1) % 7,
            midnight: self.midnight + DAY_SECS,
        })
    }
    fn plus_week(self) -> Option<Day> {
        Some(Day {
            date: self.date.checked_add_days(chrono::Days::new(7))?,
            weekday: self.weekday,
            midnight: self.midnight + 7 * DAY_SECS,
        })
    }
}

/// An instant the day loops read the zone's offset at, `PROBE_SECS` before a local date starts
/// or after one ends, read as UTC.
#[derive(Debug, Clone, Copy)]
struct Probe {
    secs: i64,
    /// The same instant; built from the date, which is much cheaper than from seconds.
    utc: NaiveDateTime,
}

impl Probe {
    /// `PROBE_SECS` before `day` starts (08:00 on the date before).
    fn before(day: Day) -> Probe {
        let secs = day.midnight - PROBE_SECS;
        let utc = day
            .date
            .pred_opt()
            .and_then(|d| d.and_hms_opt(24 - PROBE_HOURS, 0, 0));
        Probe {
            secs,
            utc: utc.unwrap_or_else(|| naive_utc(secs)),
        }
    }
    /// `PROBE_SECS` into the date `days` after `day` (16:00 on it).
    fn after(day: Day, days: u64) -> Probe {
        let secs = day.midnight + days as i64 * DAY_SECS + PROBE_SECS;
        let utc = day
            .date
            .checked_add_days(chrono::Days::new(days))
            .and_then(|d| d.and_hms_opt(PROBE_HOURS, 0, 0));
        Probe {
            secs,
            utc: utc.unwrap_or_else(|| naive_utc(secs)),
        }
    }
}

fn naive_utc(secs: i64) -> NaiveDateTime {
    DateTime::from_timestamp(secs, 0)
        .unwrap_or(if secs < 0 {
            DateTime::<Utc>::MIN_UTC
        } else {
            DateTime::<Utc>::MAX_UTC
        })
        .naive_utc()
}

fn nanos_of(t: DateTime<Utc>) -> i128 {
    i128::from(t.timestamp()) * NANOS + i128::from(t.timestamp_subsec_nanos())
}

fn instant(nanos: i128) -> DateTime<Utc> {
    i64::try_from(nanos.div_euclid(NANOS))
        .ok()
        .and_then(|secs| DateTime::from_timestamp(secs, nanos.rem_euclid(NANOS) as u32))
        .unwrap_or(if nanos < 0 {
            DateTime::<Utc>::MIN_UTC
        } else {
            DateTime::<Utc>::MAX_UTC
        })
}

/// What one `deadline` or `business_duration` call has learnt of the zone's offsets.
#[derive(Default)]
struct KnownOffset(Option<Span>);

/// The UTC offset is `offset` from `from` to `until` (Unix seconds).
struct Span {
    from: i64,
    until: i64,
    offset: i64,
}

impl Span {
    /// What `offsets` at `lo` and `hi` tell: the whole span if they agree, else only `hi`.
    fn settled(lo: i64, hi: i64, before: i64, after: i64) -> Span {
        Span {
            from: if before == after { lo } else { hi },
            until: hi,
            offset: after,
        }
    }
}

impl Weekly {
    /// UTC offset in force at `secs` (Unix seconds), in seconds.
    fn offset(&self, secs: i64) -> i64 {
        self.offset_at(&naive_utc(secs))
    }

    fn offset_at(&self, utc: &NaiveDateTime) -> i64 {
        i64::from(
            self.tz
                .offset_from_utc_datetime(utc)
                .fix()
                .local_minus_utc(),
        )
    }

    /// The offsets at `lo` and `hi` (`lo < hi`, and `lo` no earlier than in the previous call with
    /// this `known`). The day loops probe overlapping or nearby spans in time order, so once an
    /// offset is known to hold up to some instant, one look-up at `hi` settles a span that starts
    /// before it: equal offsets at both ends of a span of at most `CHAIN_SECS` mean no change in
    /// between.
    fn offsets(&self, known: &mut KnownOffset, lo: Probe, hi: Probe) -> (i64, i64) {
        if let Some(k) = known.0.as_mut()
            && k.from <= lo.secs
            && hi.secs - k.until <= CHAIN_SECS
        {
            if hi.secs <= k.until {
                return (k.offset, k.offset);
            }
            let after = self.offset_at(&hi.utc);
            if after == k.offset {
                k.until = hi.secs;
                return (after, after);
            }
            let before = if lo.secs <= k.until {
                k.offset
            } else {
                self.offset_at(&lo.utc)
            };
            *k = Span::settled(lo.secs, hi.secs, before, after);
            return (before, after);
        }
        let (before, after) = (self.offset_at(&lo.utc), self.offset_at(&hi.utc));
        known.0 = Some(Span::settled(lo.secs, hi.secs, before, after));
        (before, after)
    }

    /// The first second in `(lo, hi]` whose offset is not `lo_offset`, given that `hi`'s is not.
    fn offset_change(&self, mut lo: i64, mut hi: i64, lo_offset: i64) -> i64 {
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.offset(mid) == lo_offset {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        hi
    }

    fn day_of(&self, secs: i64) -> Option<Day> {
        Day::from_local_secs(secs + self.offset(secs))
    }

    fn is_holiday(&self, date: NaiveDate) -> bool {
        // The day's place in a leap year, from the ordinal (cheaper than month and day).
        let ordinal = date.ordinal0();
        let i = if !date.leap_year() && ordinal >= 59 {
            ordinal + 1
        } else {
            ordinal
        };
        self.yearly_holidays[i as usize / 64] & (1 << (i % 64)) != 0
            || (!self.fixed_holidays.is_empty() && self.fixed_holidays.binary_search(&date).is_ok())
    }

    /// Calls `f` with the real-time pieces `[start, end)` (Unix seconds) of `day`'s windows, in
    /// time order: the instants at which the wall clock shows `day` and a time inside a window.
    fn pieces<B>(
        &self,
        known: &mut KnownOffset,
        day: Day,
        mut f: impl FnMut(i64, i64) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        let windows = &self.days[day.weekday];
        if windows.is_empty() || self.is_holiday(day.date) {
            return ControlFlow::Continue(());
        }
        let (lo, hi) = (Probe::before(day), Probe::after(day, 1));
        let (before, after) = self.offsets(known, lo, hi);
        if before == after {
            for w in windows {
                f(
                    day.midnight + w.start_secs() - before,
                    day.midnight + w.end_secs() - before,
                )?;
            }
            return ControlFlow::Continue(());
        }
        // Local time L happens at L - before until the change and at L - after from it on: the
        // skipped stretch of a spring-forward falls out of both, the repeated one is in both.
        let change = self.offset_change(lo.secs, hi.secs, before);
        for w in windows {
            let start = day.midnight + w.start_secs() - before;
            let end = (day.midnight + w.end_secs() - before).min(change);
            if start < end {
                f(start, end)?;
            }
        }
        for w in windows {
            let start = (day.midnight + w.start_secs() - after).max(change);
            let end = day.midnight + w.end_secs() - after;
            if start < end {
                f(start, end)?;
            }
        }
        ControlFlow::Continue(())
    }

    /// Business seconds of the seven local dates from `day`, if the offset stays the same over
    /// them (then every window is its nominal length and only holidays subtract).
    fn week_secs_from(&self, known: &mut KnownOffset, day: Day) -> Option<i64> {
        let (before, after) = self.offsets(known, Probe::before(day), Probe::after(day, 7));
        if before != after {
            return None;
        }
        let mut secs = self.week_secs;
        let mut date = day.date;
        for i in 0..7 {
            let weekday = (day.weekday + i) % 7;
            if self.day_secs[weekday] > 0 && self.is_holiday(date) {
                secs -= self.day_secs[weekday];
            }
            date = date.succ_opt()?;
        }
        Some(secs)
    }

    fn deadline(&self, start: DateTime<Utc>, business: Duration) -> DateTime<Utc> {
        let mut cursor = nanos_of(start);
        let mut remaining =
            i128::from(business.num_seconds()) * NANOS + i128::from(business.subsec_nanos());
        // Business time never runs faster than real time.
        if cursor + remaining > nanos_of(DateTime::<Utc>::MAX_UTC) {
            return DateTime::<Utc>::MAX_UTC;
        }
        let week = i128::from(self.week_secs) * NANOS;
        let Some(mut day) = self.day_of(start.timestamp()) else {
            return DateTime::<Utc>::MAX_UTC;
        };
        let mut known = KnownOffset::default();
        let mut first_day = true;
        loop {
            // Skip a week whole when the deadline is certainly beyond it; on the start's own day
            // the count begins mid-day, so that one is always walked.
            if !first_day
                && remaining > week
                && let Some(secs) = self.week_secs_from(&mut known, day)
            {
                remaining -= i128::from(secs) * NANOS;
                match day.plus_week() {
                    Some(d) => day = d,
                    None => return DateTime::<Utc>::MAX_UTC,
                }
                continue;
            }
            first_day = false;
            let found = self.pieces(&mut known, day, |start, end| {
                let (start, end) = (
                    (i128::from(start) * NANOS).max(cursor),
                    i128::from(end) * NANOS,
                );
                if start >= end {
                    return ControlFlow::Continue(());
                }
                if remaining <= end - start {
                    return ControlFlow::Break(start + remaining);
                }
                remaining -= end - start;
                cursor = end;
                ControlFlow::Continue(())
            });
            if let ControlFlow::Break(at) = found {
                return instant(at);
            }
            match day.next() {
                Some(d) => day = d,
                None => return DateTime::<Utc>::MAX_UTC,
            }
        }
    }

    fn business_duration(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
        let (from_ns, to_ns) = (nanos_of(from), nanos_of(to));
        let (Some(mut day), Some(last)) =
            (self.day_of(from.timestamp()), self.day_of(to.timestamp()))
        else {
            return to - from;
        };
        let mut total: i128 = 0;
        let mut known = KnownOffset::default();
        let mut first_day = true;
        while day.midnight <= last.midnight {
            // A week whose seven dates all end before `to`'s date lies wholly inside the span.
            if !first_day
                && day.midnight + 7 * DAY_SECS <= last.midnight
                && let Some(secs) = self.week_secs_from(&mut known, day)
            {
                total += i128::from(secs) * NANOS;
                match day.plus_week() {
                    Some(d) => day = d,
                    None => break,
                }
                continue;
            }
            first_day = false;
            let _ = self.pieces(&mut known, day, |start, end| {
                let start = (i128::from(start) * NANOS).max(from_ns);
                let end = (i128::from(end) * NANOS).min(to_ns);
                if start < end {
                    total += end - start;
                }
                ControlFlow::<()>::Continue(())
            });
            match day.next() {
                Some(d) => day = d,
                None => break,
            }
        }
        // At most `to - from`, which always fits.
        Duration::new(
            total.div_euclid(NANOS) as i64,
            total.rem_euclid(NANOS) as u32,
        )
        .unwrap_or(to - from)
    }

    fn is_business_time(&self, at: DateTime<Utc>) -> bool {
        let secs = at.timestamp();
        let local = secs + self.offset(secs);
        let Some(day) = Day::from_local_secs(local) else {
            return false;
        };
        let time = local - day.midnight;
        self.days[day.weekday]
            .iter()
            .any(|w| w.start_secs() <= time && time < w.end_secs())
            && !self.is_holiday(day.date)
    }
}

#[cfg(test)]
mod tests;
