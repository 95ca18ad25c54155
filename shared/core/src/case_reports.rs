//! Case reports: the cases tab (open and closed counts, average time to close in wall-clock and
//! business hours) and the SLA tab (inside and outside the SLA), overall and per assignee.
//!
//! A report covers the cases **opened** in a date range (a cohort): it reads exactly those,
//! from the tenant's by-opening index (GSI2 `T#<t>#CASES`, sort key `<opened>#<id>` between the
//! range's ends), and aggregates them in memory. The cost is one read unit per 4 KB of the
//! range's cases (about four cases), whatever the tenant's history. Counters would be cheaper
//! for long ranges, but a case's bucket changes when it is reassigned or closed, and a counter
//! per (day, assignee, state) would have to move with it; reading the cohort is always right.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use serde::Serialize;

use crate::domain::{Case, CaseStatus};
use crate::ids::TenantId;
use crate::store::{ItemStore, StoreError};

/// A report reads at most this many cases; a longer range is refused with a clear message.
pub const MAX_CASES: usize = 50_000;
pub const MAX_RANGE_DAYS: i64 = 366;
pub const DEFAULT_RANGE_DAYS: i64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error(
        "more than {MAX_CASES} cases were opened in this range; ask for a shorter one (from, to)"
    )]
    TooMany,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The instants a report covers: cases opened at or after `from` and before `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Range {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// Reads `from` and `to` as the admin wrote them: a date (`2026-01-31`, a whole day in the
/// tenant's time zone; `to` included) or an RFC 3339 instant (`to` excluded). Without `to` the
/// range ends now; without `from` it starts 30 days before its end.
pub fn parse_range(
    from: Option<&str>,
    to: Option<&str>,
    tz: chrono_tz::Tz,
    now: DateTime<Utc>,
) -> Result<Range, ReportError> {
    let end = match to {
        Some(t) => instant(t, tz, "to", 1)?,
        None => now,
    };
    let start = match from {
        Some(f) => instant(f, tz, "from", 0)?,
        None => end - Duration::days(DEFAULT_RANGE_DAYS),
    };
    if start >= end {
        return Err(ReportError::Invalid {
            field: "from",
            reason: "must be before to".into(),
        });
    }
    if end - start > Duration::days(MAX_RANGE_DAYS) {
        return Err(ReportError::Invalid {
            field: "to",
            reason: format!("a report covers at most {MAX_RANGE_DAYS} days"),
        });
    }
    Ok(Range {
        from: start,
        to: end,
    })
}

/// One end of a range: an RFC 3339 instant, or a date's midnight in `tz` (`days_after` 1
/// makes a date mean the end of that day).
pub fn instant(
    text: &str,
    tz: chrono_tz::Tz,
    field: &'static str,
    days_after: i64,
) -> Result<DateTime<Utc>, ReportError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| ReportError::Invalid {
        field,
        reason: format!(
            "'{}' is not a date (YYYY-MM-DD) or an RFC 3339 time",
            text.chars().take(40).collect::<String>()
        ),
    })?;
    let day = date
        .checked_add_signed(Duration::days(days_after))
        .ok_or_else(|| ReportError::Invalid {
            field,
            reason: "is out of range".into(),
        })?;
    let midnight = day.and_hms_opt(0, 0, 0).expect("midnight exists");
    // A zone whose midnight is skipped by DST starts the day at its first real instant.
    tz.from_local_datetime(&midnight)
        .earliest()
        .or_else(|| {
            tz.from_local_datetime(&(midnight + Duration::hours(1)))
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| ReportError::Invalid {
            field,
            reason: "has no midnight in the tenant's time zone".into(),
        })
}

/// The cases opened in the range (oldest first).
pub async fn cases_in(
    store: &dyn ItemStore,
    tenant: &TenantId,
    range: Range,
) -> Result<Vec<Case>, ReportError> {
    crate::cases::opened_between(store, tenant, range.from, range.to, MAX_CASES)
        .await?
        .ok_or(ReportError::TooMany)
}

fn assignee_of(case: &Case) -> Option<String> {
    case.assignee.as_ref().map(|a| a.as_str().to_string())
}

fn hours(seconds: i64, count: u64) -> Option<f64> {
    (count > 0).then(|| ((seconds as f64 / count as f64 / 3600.0) * 100.0).round() / 100.0)
}

// ── The cases tab ────────────────────────────────────────────────────────────────────────────

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CasesRow {
    /// The agent; `null` for the unassigned cases (and for the total row).
    pub assignee: Option<String>,
    pub opened: u64,
    pub open: u64,
    pub closed: u64,
    /// Mean over the closed cases, in hours rounded to 0.01; `null` when none closed.
    pub avg_hours_to_close: Option<f64>,
    pub avg_business_hours_to_close: Option<f64>,
}

#[derive(Default)]
struct CasesAcc {
    opened: u64,
    open: u64,
    closed: u64,
    seconds: i64,
    business_seconds: i64,
}

impl CasesAcc {
    fn add(&mut self, case: &Case) {
        self.opened += 1;
        match case.status {
            CaseStatus::Open => self.open += 1,
            CaseStatus::Closed => {
                self.closed += 1;
                self.seconds += case.seconds_to_close.unwrap_or(0);
                self.business_seconds += case.business_seconds_to_close.unwrap_or(0);
            }
        }
    }
    fn row(&self, assignee: Option<String>) -> CasesRow {
        CasesRow {
            assignee,
            opened: self.opened,
            open: self.open,
            closed: self.closed,
            avg_hours_to_close: hours(self.seconds, self.closed),
            avg_business_hours_to_close: hours(self.business_seconds, self.closed),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CasesReport {
    pub range: Range,
    pub total: CasesRow,
    /// One row per assignee, by agent id, unassigned last.
    pub by_assignee: Vec<CasesRow>,
}

pub fn cases_report(range: Range, cases: &[Case]) -> CasesReport {
    let mut total = CasesAcc::default();
    let mut by: BTreeMap<Option<String>, CasesAcc> = BTreeMap::new();
    for case in cases {
        total.add(case);
        by.entry(assignee_of(case)).or_default().add(case);
    }
    CasesReport {
        range,
        total: total.row(None),
        by_assignee: ordered(by.into_iter().map(|(a, acc)| acc.row(a))),
    }
}

/// Agents by id, then the unassigned row (BTreeMap puts `None` first).
fn ordered<R: HasAssignee>(rows: impl Iterator<Item = R>) -> Vec<R> {
    let (mut named, unassigned): (Vec<R>, Vec<R>) = rows.partition(|r| r.assignee().is_some());
    named.extend(unassigned);
    named
}

trait HasAssignee {
    fn assignee(&self) -> Option<&str>;
}
impl HasAssignee for CasesRow {
    fn assignee(&self) -> Option<&str> {
        self.assignee.as_deref()
    }
}
impl HasAssignee for SlaRow {
    fn assignee(&self) -> Option<&str> {
        self.assignee.as_deref()
    }
}

// ── The SLA tab ──────────────────────────────────────────────────────────────────────────────

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlaRow {
    pub assignee: Option<String>,
    /// Closed by their deadline.
    pub inside: u64,
    /// Closed after their deadline, or still open past it.
    pub outside: u64,
    /// Open, deadline still ahead.
    pub open_within_sla: u64,
    /// Opened while the SLA was off: no deadline, in neither bucket.
    pub without_sla: u64,
    /// inside / (inside + outside), in percent rounded to 0.1; `null` when both are 0.
    pub inside_percent: Option<f64>,
}

#[derive(Default)]
struct SlaAcc {
    inside: u64,
    outside: u64,
    pending: u64,
    without: u64,
}

impl SlaAcc {
    fn add(&mut self, case: &Case, now: DateTime<Utc>) {
        let Some(deadline) = case.sla_deadline else {
            self.without += 1;
            return;
        };
        match (case.status, case.sla_met) {
            (CaseStatus::Closed, Some(true)) => self.inside += 1,
            (CaseStatus::Closed, _) => self.outside += 1,
            (CaseStatus::Open, _) if case.sla_breached || deadline <= now => self.outside += 1,
            (CaseStatus::Open, _) => self.pending += 1,
        }
    }
    fn row(&self, assignee: Option<String>) -> SlaRow {
        let decided = self.inside + self.outside;
        SlaRow {
            assignee,
            inside: self.inside,
            outside: self.outside,
            open_within_sla: self.pending,
            without_sla: self.without,
            inside_percent: (decided > 0)
                .then(|| (self.inside as f64 * 1000.0 / decided as f64).round() / 10.0),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlaReport {
    pub range: Range,
    /// The SLA in force now (cases keep the deadline they were opened with).
    pub close_within_hours: u32,
    pub total: SlaRow,
    pub by_assignee: Vec<SlaRow>,
}

/// `now` decides whether an open case's deadline has passed.
pub fn sla_report(
    range: Range,
    close_within_hours: u32,
    cases: &[Case],
    now: DateTime<Utc>,
) -> SlaReport {
    let mut total = SlaAcc::default();
    let mut by: BTreeMap<Option<String>, SlaAcc> = BTreeMap::new();
    for case in cases {
        total.add(case, now);
        by.entry(assignee_of(case)).or_default().add(case, now);
    }
    SlaReport {
        range,
        close_within_hours,
        total: total.row(None),
        by_assignee: ordered(by.into_iter().map(|(a, acc)| acc.row(a))),
    }
}

// ── CSV ──────────────────────────────────────────────────────────────────────────────────────

/// One CSV field: quoted when it holds a comma, quote or line break; a leading `=`, `+`, `-`
/// or `@` is prefixed with `'` so a spreadsheet does not run it as a formula.
fn field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn number(n: Option<f64>) -> String {
    n.map(|n| n.to_string()).unwrap_or_default()
}

fn who(row_assignee: &Option<String>, total: bool) -> String {
    match (row_assignee, total) {
        (_, true) => "(all)".into(),
        (Some(a), _) => field(a),
        (None, _) => "(unassigned)".into(),
    }
}

/// The cases tab as CSV: the total first, then one line per assignee.
pub fn cases_csv(report: &CasesReport) -> String {
    let mut out = String::from(
        "from,to,assignee,opened,open,closed,avg_hours_to_close,avg_business_hours_to_close\r\n",
    );
    let rows =
        std::iter::once((&report.total, true)).chain(report.by_assignee.iter().map(|r| (r, false)));
    for (row, total) in rows {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{}\r\n",
            crate::keys::sortable_time(report.range.from),
            crate::keys::sortable_time(report.range.to),
            who(&row.assignee, total),
            row.opened,
            row.open,
            row.closed,
            number(row.avg_hours_to_close),
            number(row.avg_business_hours_to_close),
        ));
    }
    out
}

/// The SLA tab as CSV: the total first, then one line per assignee.
pub fn sla_csv(report: &SlaReport) -> String {
    let mut out = String::from(
        "from,to,assignee,inside,outside,open_within_sla,without_sla,inside_percent\r\n",
    );
    let rows =
        std::iter::once((&report.total, true)).chain(report.by_assignee.iter().map(|r| (r, false)));
    for (row, total) in rows {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{}\r\n",
            crate::keys::sortable_time(report.range.from),
            crate::keys::sortable_time(report.range.to),
            who(&row.assignee, total),
            row.inside,
            row.outside,
            row.open_within_sla,
            row.without_sla,
            number(row.inside_percent),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CaseOrigin;
    use crate::ids::{AgentId, CaseId};

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn case(assignee: Option<&str>, deadline: Option<&str>) -> Case {
        Case {
            id: CaseId::new(),
            tenant_id: TenantId::parse("acme").unwrap(),
            survey_request_id: None,
            ticket_id: None,
            review: None,
            contact_id: None,
            account_id: None,
            assignee: assignee.map(|a| AgentId::parse(a).unwrap()),
            status: CaseStatus::Open,
            opened_at: at("2026-01-12T09:00:00Z"),
            origin: CaseOrigin::Rule,
            opened_by_rule: None,
            sla_deadline: deadline.map(at),
            sla_breached: false,
            breached_at: None,
            closed_at: None,
            resolution: None,
            resolution_id: None,
            closed_by: None,
            sla_met: None,
            seconds_to_close: None,
            business_seconds_to_close: None,
        }
    }

    fn closed(mut c: Case, hours: i64, business_hours: i64, met: bool) -> Case {
        c.status = CaseStatus::Closed;
        c.seconds_to_close = Some(hours * 3600);
        c.business_seconds_to_close = Some(business_hours * 3600);
        c.sla_met = c.sla_deadline.map(|_| met);
        c
    }

    fn range() -> Range {
        Range {
            from: at("2026-01-01T00:00:00Z"),
            to: at("2026-02-01T00:00:00Z"),
        }
    }

    #[test]
    fn the_cases_tab_counts_and_averages_per_assignee() {
        let cases = [
            closed(case(Some("a-alice"), None), 26, 10, true),
            closed(case(Some("a-alice"), None), 2, 1, true),
            case(Some("a-alice"), None),
            case(None, None),
        ];
        let report = cases_report(range(), &cases);
        assert_eq!(
            (report.total.opened, report.total.open, report.total.closed),
            (4, 2, 2)
        );
        assert_eq!(report.total.avg_hours_to_close, Some(14.0));
        assert_eq!(report.total.avg_business_hours_to_close, Some(5.5));
        let alice = &report.by_assignee[0];
        assert_eq!(alice.assignee.as_deref(), Some("a-alice"));
        assert_eq!((alice.open, alice.closed), (1, 2));
        let nobody = &report.by_assignee[1];
        assert_eq!(nobody.assignee, None);
        assert_eq!(
            nobody.avg_hours_to_close, None,
            "nothing closed, no average"
        );
    }

    #[test]
    fn the_sla_tab_puts_each_case_in_one_bucket() {
        let now = at("2026-01-13T12:00:00Z");
        let mut breached = case(Some("a-mark"), Some("2026-01-13T09:00:00Z"));
        breached.sla_breached = true;
        let cases = [
            closed(
                case(Some("a-alice"), Some("2026-01-13T09:00:00Z")),
                3,
                3,
                true,
            ),
            closed(
                case(Some("a-alice"), Some("2026-01-13T09:00:00Z")),
                30,
                12,
                false,
            ),
            breached,
            // Past its deadline, not yet swept: already outside.
            case(Some("a-mark"), Some("2026-01-13T11:00:00Z")),
            case(Some("a-mark"), Some("2026-01-14T09:00:00Z")),
            case(None, None),
        ];
        let report = sla_report(range(), 8, &cases, now);
        let t = &report.total;
        assert_eq!(
            (t.inside, t.outside, t.open_within_sla, t.without_sla),
            (1, 3, 1, 1)
        );
        assert_eq!(t.inside_percent, Some(25.0));
        let alice = &report.by_assignee[0];
        assert_eq!((alice.inside, alice.outside), (1, 1));
        assert_eq!(alice.inside_percent, Some(50.0));
        let mark = &report.by_assignee[1];
        assert_eq!((mark.outside, mark.open_within_sla), (2, 1));
    }

    #[test]
    fn csv_quotes_what_needs_it_and_defuses_formulas() {
        let cases = [closed(case(Some("=cmd,x"), None), 1, 1, true)];
        let csv = cases_csv(&cases_report(range(), &cases));
        let lines: Vec<_> = csv.split("\r\n").collect();
        assert_eq!(
            lines[1],
            "2026-01-01T00:00:00.000Z,2026-02-01T00:00:00.000Z,(all),1,0,1,1,1"
        );
        assert!(lines[2].contains(",\"'=cmd,x\",1,0,1,1,1"), "{}", lines[2]);
    }

    #[test]
    fn dates_are_whole_days_in_the_tenants_zone() {
        let tz: chrono_tz::Tz = "Europe/Warsaw".parse().unwrap();
        let now = at("2026-03-01T00:00:00Z");
        let r = parse_range(Some("2026-01-01"), Some("2026-01-31"), tz, now).unwrap();
        assert_eq!(r.from, at("2025-12-31T23:00:00Z"));
        assert_eq!(r.to, at("2026-01-31T23:00:00Z"));
        let exact = parse_range(Some("2026-01-01T00:00:00Z"), None, tz, now).unwrap();
        assert_eq!((exact.from, exact.to), (at("2026-01-01T00:00:00Z"), now));
        let default = parse_range(None, None, tz, now).unwrap();
        assert_eq!(default.to - default.from, Duration::days(30));
        for (from, to, field) in [
            (Some("2026-02-01"), Some("2026-01-01"), "from"),
            (Some("yesterday"), None, "from"),
            (Some("2024-01-01"), Some("2026-01-01"), "to"),
        ] {
            let e = parse_range(from, to, tz, now).unwrap_err();
            assert!(e.to_string().starts_with(field), "{e}");
        }
    }
}
