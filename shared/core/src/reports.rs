//! Satisfaction reports from counters, never from the reviews themselves.
//!
//! **Counters.** One item per tenant, tenant-local day and agent, `T#<t>#COUNTS` /
//! `<YYYY-MM-DD>#<agent>` (no agent: nothing after the `#`), holding one number per bucket:
//! `csat_positive`, `csat_neutral`, `csat_negative` and `nps_0` … `nps_10` (NPS is counted by
//! score, so the tenant's detractor threshold applies when a report is read). A review counts
//! once it has settled (`review.received`): a rating-link review when its change window ends,
//! a provider's response when it arrives. Its review item then carries `counted` =
//! `<day>#<agent>#<bucket>`, and every later write of the review moves the count from that
//! marker to the new one in the same transaction (old bucket −1, new +1, atomic `ADD`), so the
//! counters always equal a recount of the stored reviews. The day is the day the customer
//! first answered, in the tenant's time zone when the review first counted; it never moves.
//!
//! **Rated tickets.** A counted review is also in GSI2 `T#<t>#RATED#<YYYY-MM>` /
//! `<day>#<recorded_at>#<review pk>`, for the list of tickets with ratings by date.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde::Serialize;

use crate::domain::{CsatValue, NpsBand, Rating, Review};
use crate::ids::TenantId;
use crate::keys;
use crate::records::read_record;
use crate::store::{
    Index, Item, ItemExt, ItemStore, Key, Query, SortKeyCondition, StoreError, Update, Value,
    WriteOp,
};

/// The review item's attribute naming the counter bucket it is counted in.
pub const COUNTED: &str = "counted";
const CSAT_BUCKETS: [&str; 3] = ["csat_positive", "csat_neutral", "csat_negative"];
const NPS_BUCKETS: [&str; 11] = [
    "nps_0", "nps_1", "nps_2", "nps_3", "nps_4", "nps_5", "nps_6", "nps_7", "nps_8", "nps_9",
    "nps_10",
];
/// Reports cover at most this many days (a year and a month).
pub const MAX_RANGE_DAYS: i64 = 400;

pub fn counters_partition(tenant: &TenantId) -> String {
    format!("{}#COUNTS", keys::tenant_prefix(tenant))
}

fn counter_key(tenant: &TenantId, day: &str, agent: &str) -> Key {
    Key::new(counters_partition(tenant), format!("{day}#{agent}"))
}

/// GSI2 partition of a month's counted reviews.
pub fn rated_index(tenant: &TenantId, month: &str) -> String {
    format!("{}#RATED#{month}", keys::tenant_prefix(tenant))
}

fn bucket_of(rating: Rating) -> &'static str {
    match rating {
        Rating::Csat(CsatValue::Positive) => CSAT_BUCKETS[0],
        Rating::Csat(CsatValue::Neutral) => CSAT_BUCKETS[1],
        Rating::Csat(CsatValue::Negative) => CSAT_BUCKETS[2],
        Rating::Nps(s) => NPS_BUCKETS[usize::from(s.value())],
    }
}

/// Where a review is counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    pub day: String,
    pub agent: String,
    pub bucket: &'static str,
}

impl Counted {
    pub fn marker(&self) -> String {
        format!("{}#{}#{}", self.day, self.agent, self.bucket)
    }
    fn parse(marker: &str) -> Option<(String, String, String)> {
        let (day, rest) = marker.split_once('#')?;
        let (agent, bucket) = rest.rsplit_once('#')?;
        Some((day.into(), agent.into(), bucket.into()))
    }
}

/// How `review` counts now. A review counted before keeps its day (the stored marker's).
pub fn counted_as(review: &Review, tz: chrono_tz::Tz, previous_marker: Option<&str>) -> Counted {
    let day = previous_marker
        .and_then(Counted::parse)
        .map(|(day, _, _)| day)
        .unwrap_or_else(|| {
            review
                .recorded_at
                .with_timezone(&tz)
                .format("%Y-%m-%d")
                .to_string()
        });
    Counted {
        day,
        agent: review
            .agent_id
            .as_ref()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default(),
        bucket: bucket_of(review.rating),
    }
}

/// The counter writes that move a review from `previous` (its stored marker) to `now`, to go
/// in the transaction that writes the review. Empty when nothing moves.
pub fn count_ops(tenant: &TenantId, previous: Option<&str>, now: Option<&Counted>) -> Vec<WriteOp> {
    let mut deltas: BTreeMap<Key, Vec<(String, i64)>> = BTreeMap::new();
    let new_marker = now.map(Counted::marker);
    if previous == new_marker.as_deref() {
        return Vec::new();
    }
    if let Some((day, agent, bucket)) = previous.and_then(Counted::parse) {
        deltas
            .entry(counter_key(tenant, &day, &agent))
            .or_default()
            .push((bucket, -1));
    }
    if let Some(c) = now {
        deltas
            .entry(counter_key(tenant, &c.day, &c.agent))
            .or_default()
            .push((c.bucket.to_string(), 1));
    }
    deltas
        .into_iter()
        .map(|(key, adds)| {
            let mut update = Update::new().set("entity", Value::s("counter"));
            for (bucket, delta) in adds {
                update = update.add(bucket, delta);
            }
            WriteOp::Update {
                key,
                update,
                condition: None,
            }
        })
        .collect()
}

/// The attributes a counted review item carries: its marker and its place in the list of
/// rated tickets.
pub fn counted_attributes(
    tenant: &TenantId,
    review_key: &Key,
    review: &Review,
    counted: &Counted,
) -> [(String, Value); 3] {
    [
        (COUNTED.to_string(), Value::S(counted.marker())),
        (
            Index::Gsi2.pk_attribute().to_string(),
            Value::S(rated_index(tenant, &counted.day[..7])),
        ),
        (
            Index::Gsi2.sk_attribute().to_string(),
            Value::S(format!(
                "{}#{}#{}",
                counted.day,
                keys::sortable_time(review.recorded_at),
                review_key.pk
            )),
        ),
    ]
}

/// Everything counting needs to do when a review is written: the counter ops for the
/// transaction, and the attributes to put on (or set in) the review item.
pub fn on_review_write(
    tenant: &TenantId,
    tz: chrono_tz::Tz,
    review_key: &Key,
    previous_marker: Option<&str>,
    review: &Review,
) -> (Vec<WriteOp>, [(String, Value); 3]) {
    let counted = counted_as(review, tz, previous_marker);
    (
        count_ops(tenant, previous_marker, Some(&counted)),
        counted_attributes(tenant, review_key, review, &counted),
    )
}

// ── Reading ──────────────────────────────────────────────────────────────────────────────────

/// Counts of one agent, day or period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub csat: [u64; 3],
    pub nps: [u64; 11],
}

impl Counts {
    fn add_item(&mut self, item: &Item) {
        for (i, b) in CSAT_BUCKETS.iter().enumerate() {
            self.csat[i] += item.i64_attr(b).unwrap_or(0).max(0) as u64;
        }
        for (i, b) in NPS_BUCKETS.iter().enumerate() {
            self.nps[i] += item.i64_attr(b).unwrap_or(0).max(0) as u64;
        }
    }
    pub fn add(&mut self, other: &Counts) {
        for i in 0..3 {
            self.csat[i] += other.csat[i];
        }
        for i in 0..11 {
            self.nps[i] += other.nps[i];
        }
    }
    /// Counts one rating (the recount's way).
    pub fn count(&mut self, rating: Rating) {
        match rating {
            Rating::Csat(CsatValue::Positive) => self.csat[0] += 1,
            Rating::Csat(CsatValue::Neutral) => self.csat[1] += 1,
            Rating::Csat(CsatValue::Negative) => self.csat[2] += 1,
            Rating::Nps(s) => self.nps[usize::from(s.value())] += 1,
        }
    }
    /// The figures a report shows, with the tenant's detractor threshold.
    pub fn figures(&self, detractor_max: u8) -> Figures {
        let band = |b: NpsBand| -> u64 {
            (0..=10u8)
                .filter(|s| {
                    crate::domain::NpsScore::new(*s)
                        .map(|n| n.band(detractor_max) == b)
                        .unwrap_or(false)
                })
                .map(|s| self.nps[usize::from(s)])
                .sum()
        };
        let (promoters, passives, detractors) = (
            band(NpsBand::Promoter),
            band(NpsBand::Passive),
            band(NpsBand::Detractor),
        );
        let positive = self.csat[0] + promoters;
        let neutral = self.csat[1] + passives;
        let negative = self.csat[2] + detractors;
        let total = positive + neutral + negative;
        let nps_answers = promoters + passives + detractors;
        Figures {
            positive,
            neutral,
            negative,
            total,
            satisfaction: (total > 0).then(|| round2(positive as f64 / total as f64)),
            nps_answers,
            promoters,
            passives,
            detractors,
            nps: (nps_answers > 0).then(|| {
                round2((promoters as f64 - detractors as f64) * 100.0 / nps_answers as f64)
            }),
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// What a report shows for an agent or a period. NPS answers count as positive (promoters),
/// neutral (passives) or negative (detractors) beside CSAT answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    pub positive: u64,
    pub neutral: u64,
    pub negative: u64,
    pub total: u64,
    /// positive / total, none without answers.
    pub satisfaction: Option<f64>,
    pub nps_answers: u64,
    pub promoters: u64,
    pub passives: u64,
    pub detractors: u64,
    /// % promoters − % detractors over the NPS answers, none without any.
    pub nps: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    /// ISO weeks, Monday first.
    Week,
    Month,
}

impl Period {
    pub fn parse(s: &str) -> Option<Period> {
        match s {
            "day" => Some(Period::Day),
            "week" => Some(Period::Week),
            "month" => Some(Period::Month),
            _ => None,
        }
    }
    /// The first day of the period holding `day`.
    pub fn start(self, day: NaiveDate) -> NaiveDate {
        match self {
            Period::Day => day,
            Period::Week => day - Duration::days(i64::from(day.weekday().num_days_from_monday())),
            Period::Month => day.with_day(1).expect("every month has a first day"),
        }
    }
}

/// A validated date range, inclusive, in the tenant's calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl DateRange {
    /// `from`/`to` as `YYYY-MM-DD`; at most [`MAX_RANGE_DAYS`].
    pub fn parse(from: &str, to: &str) -> Result<DateRange, String> {
        let day = |name: &str, s: &str| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
                format!(
                    "{name} must be a date like 2026-01-31, got {:?}",
                    s.chars().take(20).collect::<String>()
                )
            })
        };
        let (from, to) = (day("from", from)?, day("to", to)?);
        if to < from {
            return Err("to is before from".into());
        }
        if (to - from).num_days() >= MAX_RANGE_DAYS {
            return Err(format!("a report covers at most {MAX_RANGE_DAYS} days"));
        }
        Ok(DateRange { from, to })
    }
    /// The last `days` days up to `now`'s local day.
    pub fn last_days(now: DateTime<Utc>, tz: chrono_tz::Tz, days: i64) -> DateRange {
        let to = now.with_timezone(&tz).date_naive();
        DateRange {
            from: to - Duration::days(days - 1),
            to,
        }
    }
}

/// The counter items of a range, day by day: `(day, agent, counts)`.
pub struct CounterRows {
    pub rows: Vec<(NaiveDate, String, Counts)>,
    pub items_read: usize,
}

/// Reads the range's counter items (one query, paged): never a review.
pub async fn read_counters(
    store: &dyn ItemStore,
    tenant: &TenantId,
    range: DateRange,
    agent: Option<&str>,
) -> Result<CounterRows, StoreError> {
    // '$' sorts right after '#', so `<to>$` bounds every agent of the last day.
    let mut query = Query::partition(counters_partition(tenant)).sk(SortKeyCondition::Between(
        range.from.format("%Y-%m-%d").to_string(),
        format!("{}$", range.to.format("%Y-%m-%d")),
    ));
    let mut out = CounterRows {
        rows: Vec::new(),
        items_read: 0,
    };
    loop {
        let page = store.query(query.clone()).await?;
        out.items_read += page.items.len();
        for item in &page.items {
            let Some((day, who)) = item
                .str_attr(crate::store::SK)
                .and_then(|sk| sk.split_once('#'))
            else {
                continue;
            };
            if agent.is_some_and(|a| a != who) {
                continue;
            }
            let Ok(day) = NaiveDate::parse_from_str(day, "%Y-%m-%d") else {
                continue;
            };
            let mut counts = Counts::default();
            counts.add_item(item);
            out.rows.push((day, who.to_string(), counts));
        }
        match page.last_evaluated {
            Some(last) => query = query.start_after(Some(last)),
            None => return Ok(out),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentRow {
    /// None: reviews of tickets without an agent.
    pub agent_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_name: Option<String>,
    #[serde(flatten)]
    pub figures: Figures,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentReport {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub agents: Vec<AgentRow>,
    pub total: Figures,
    /// Counter items read to answer (no review is read).
    pub items_read: usize,
}

/// Per agent over a range.
pub async fn agent_report(
    store: &dyn ItemStore,
    tenant: &TenantId,
    detractor_max: u8,
    range: DateRange,
    agent: Option<&str>,
) -> Result<AgentReport, StoreError> {
    let counters = read_counters(store, tenant, range, agent).await?;
    let mut per_agent: BTreeMap<String, Counts> = BTreeMap::new();
    let mut total = Counts::default();
    for (_, who, counts) in &counters.rows {
        per_agent.entry(who.clone()).or_default().add(counts);
        total.add(counts);
    }
    Ok(AgentReport {
        from: range.from,
        to: range.to,
        agents: per_agent
            .into_iter()
            .map(|(who, c)| AgentRow {
                agent_id: (!who.is_empty()).then_some(who),
                agent_name: None,
                figures: c.figures(detractor_max),
            })
            .collect(),
        total: total.figures(detractor_max),
        items_read: counters.items_read,
    })
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeriodRow {
    /// The period's first day.
    pub period: NaiveDate,
    #[serde(flatten)]
    pub figures: Figures,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trend {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub period: &'static str,
    /// Every period of the range, empty ones too (a chart's x axis).
    pub periods: Vec<PeriodRow>,
    pub items_read: usize,
}

/// The figures per day, week or month over a range.
pub async fn trend(
    store: &dyn ItemStore,
    tenant: &TenantId,
    detractor_max: u8,
    range: DateRange,
    period: Period,
    agent: Option<&str>,
) -> Result<Trend, StoreError> {
    let counters = read_counters(store, tenant, range, agent).await?;
    let mut per: BTreeMap<NaiveDate, Counts> = BTreeMap::new();
    let mut day = period.start(range.from);
    while day <= range.to {
        per.insert(day, Counts::default());
        day = match period {
            Period::Day => day + Duration::days(1),
            Period::Week => day + Duration::days(7),
            Period::Month => day
                .checked_add_months(chrono::Months::new(1))
                .expect("dates stay in range"),
        };
    }
    for (day, _, counts) in &counters.rows {
        per.entry(period.start(*day)).or_default().add(counts);
    }
    Ok(Trend {
        from: range.from,
        to: range.to,
        period: match period {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        },
        periods: per
            .into_iter()
            .map(|(period, c)| PeriodRow {
                period,
                figures: c.figures(detractor_max),
            })
            .collect(),
        items_read: counters.items_read,
    })
}

/// How a rating reads in filters: positive, neutral or negative.
pub fn sentiment(rating: Rating, detractor_max: u8) -> &'static str {
    match rating {
        Rating::Csat(v) => v.as_str(),
        Rating::Nps(s) => match s.band(detractor_max) {
            NpsBand::Promoter => "positive",
            NpsBand::Passive => "neutral",
            NpsBand::Detractor => "negative",
        },
    }
}

/// Filters of the rated-tickets list.
#[derive(Debug, Clone, Default)]
pub struct RatedFilter {
    pub agent: Option<String>,
    /// positive, neutral or negative.
    pub sentiment: Option<String>,
    pub has_comment: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RatedTicket {
    pub day: String,
    pub ticket_id: Option<String>,
    pub agent_id: Option<String>,
    pub rating: Rating,
    pub sentiment: &'static str,
    pub comment: Option<String>,
    pub recorded_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// `link` (rating link) or the survey provider.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RatedPage {
    pub tickets: Vec<RatedTicket>,
    /// Pass as `after` for the next page; none at the end.
    pub next_after: Option<String>,
    pub items_read: usize,
}

/// Counted reviews by day, oldest first, filtered; `after` continues a previous page.
pub async fn rated_tickets(
    store: &dyn ItemStore,
    tenant: &TenantId,
    detractor_max: u8,
    range: DateRange,
    filter: &RatedFilter,
    after: Option<&str>,
    limit: usize,
) -> Result<RatedPage, StoreError> {
    let mut page_out = RatedPage {
        tickets: Vec::new(),
        next_after: None,
        items_read: 0,
    };
    let from = range.from.format("%Y-%m-%d").to_string();
    let upper = format!("{}$", range.to.format("%Y-%m-%d"));
    let lower = match after {
        Some(a) if a > from.as_str() => a.to_string(),
        _ => from.clone(),
    };
    let Ok(first_month) =
        NaiveDate::parse_from_str(&format!("{}-01", lower.get(..7).unwrap_or("")), "%Y-%m-%d")
    else {
        return Ok(page_out);
    };
    let mut month = first_month;
    while month <= range.to {
        let mut query = Query::on_index(
            Index::Gsi2,
            rated_index(tenant, &month.format("%Y-%m").to_string()),
        )
        .sk(SortKeyCondition::Between(lower.clone(), upper.clone()))
        // Pages about the size asked for, so a call reads little beyond what it returns.
        .limit(limit.clamp(50, 1000) + 1);
        loop {
            let page = store.query(query.clone()).await?;
            page_out.items_read += page.items.len();
            for item in &page.items {
                let Some(sk) = item.str_attr(Index::Gsi2.sk_attribute()) else {
                    continue;
                };
                if Some(sk) == after {
                    continue;
                }
                let Ok(review) = read_record::<Review>(item) else {
                    continue;
                };
                let s = sentiment(review.rating, detractor_max);
                let agent = review.agent_id.as_ref().map(|a| a.as_str().to_string());
                if filter
                    .agent
                    .as_ref()
                    .is_some_and(|a| Some(a) != agent.as_ref())
                    || filter.sentiment.as_deref().is_some_and(|f| f != s)
                    || filter
                        .has_comment
                        .is_some_and(|h| h != review.comment.is_some())
                {
                    continue;
                }
                page_out.tickets.push(RatedTicket {
                    day: sk.get(..10).unwrap_or_default().to_string(),
                    ticket_id: review.ticket_id.as_ref().map(|t| t.as_str().to_string()),
                    agent_id: agent,
                    rating: review.rating,
                    sentiment: s,
                    comment: review.comment.as_ref().map(|c| c.as_str().to_string()),
                    recorded_at: review.recorded_at,
                    updated_at: review.updated_at,
                    source: review
                        .provider
                        .as_ref()
                        .map(|p| p.source.clone())
                        .unwrap_or_else(|| "link".into()),
                });
                if page_out.tickets.len() == limit {
                    page_out.next_after = Some(sk.to_string());
                    return Ok(page_out);
                }
            }
            match page.last_evaluated {
                Some(last) => query = query.start_after(Some(last)),
                None => break,
            }
        }
        month = month
            .checked_add_months(chrono::Months::new(1))
            .expect("dates stay in range");
    }
    Ok(page_out)
}

/// Escapes a CSV field (RFC 4180), and defuses spreadsheet formulas in customer text.
pub fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

// ── Short-lived signed links to the report page ─────────────────────────────────────────────

/// A report link lives this long at most.
pub const MAX_LINK_MINUTES: i64 = 24 * 60;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("this report link is damaged")]
    Malformed,
    #[error("this report link was not issued by us")]
    BadSignature,
    #[error("this report link has expired; ask for a new one (closedloop report-link)")]
    Expired,
}

fn link_key(tenant: &TenantId) -> Key {
    Key::new(keys::tenant_prefix(tenant), "REPORT_LINK_KEY")
}

/// The tenant's link-signing secret, created on first use (deleting the item revokes every
/// link given out).
async fn link_secret(
    store: &dyn ItemStore,
    tenant: &TenantId,
    create: bool,
) -> Result<Option<Vec<u8>>, StoreError> {
    use base64::Engine;
    let decode = |item: &Item| {
        item.str_attr("secret")
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
    };
    if let Some(item) = store.get(&link_key(tenant)).await? {
        return Ok(decode(&item));
    }
    if !create {
        return Ok(None);
    }
    let mut item = link_key(tenant).to_item();
    item.insert("entity".into(), Value::s("report_link_key"));
    item.insert(
        "secret".into(),
        Value::S(base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())),
    );
    match store
        .put(item.clone(), Some(crate::store::Condition::item_absent()))
        .await
    {
        Ok(()) => Ok(decode(&item)),
        // Another call created it first: use that one.
        Err(e) if e.is_condition_failure() => Ok(store
            .get(&link_key(tenant))
            .await?
            .as_ref()
            .and_then(decode)),
        Err(e) => Err(e),
    }
}

fn link_mac(secret: &[u8], payload: &str) -> Vec<u8> {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(payload.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// A token that opens the tenant's report page until `expires_at`.
pub async fn issue_link(
    store: &dyn ItemStore,
    tenant: &TenantId,
    expires_at: DateTime<Utc>,
) -> Result<String, StoreError> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let secret = link_secret(store, tenant, true)
        .await?
        .ok_or_else(|| StoreError::Other("the report link key is unreadable".into()))?;
    let payload = format!("r1|{}|{}", tenant.as_str(), expires_at.timestamp());
    Ok(format!(
        "{}.{}",
        b64.encode(&payload),
        b64.encode(link_mac(&secret, &payload))
    ))
}

/// The tenant a report link opens, if it is genuine and current.
pub async fn verify_link(
    store: &dyn ItemStore,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Result<TenantId, LinkError>, StoreError> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parsed = (|| {
        let (p, m) = token.split_once('.')?;
        let payload = String::from_utf8(b64.decode(p).ok()?).ok()?;
        let mac = b64.decode(m).ok()?;
        let mut parts = payload.split('|');
        let (Some("r1"), Some(tenant), Some(expires), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        Some((
            TenantId::parse(tenant).ok()?,
            expires.parse::<i64>().ok()?,
            payload.clone(),
            mac,
        ))
    })();
    let Some((tenant, expires, payload, mac)) = parsed.filter(|_| token.len() <= 300) else {
        return Ok(Err(LinkError::Malformed));
    };
    let Some(secret) = link_secret(store, &tenant, false).await? else {
        return Ok(Err(LinkError::BadSignature));
    };
    if !crate::signature::constant_time_eq(&link_mac(&secret, &payload), &mac) {
        return Ok(Err(LinkError::BadSignature));
    }
    if now.timestamp() >= expires {
        return Ok(Err(LinkError::Expired));
    }
    Ok(Ok(tenant))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::NpsScore;

    #[test]
    fn figures_follow_the_definitions() {
        let mut c = Counts::default();
        for r in [
            Rating::Csat(CsatValue::Positive),
            Rating::Csat(CsatValue::Positive),
            Rating::Csat(CsatValue::Negative),
            Rating::Nps(NpsScore::new(10).unwrap()),
            Rating::Nps(NpsScore::new(7).unwrap()),
            Rating::Nps(NpsScore::new(3).unwrap()),
            Rating::Nps(NpsScore::new(9).unwrap()),
        ] {
            c.count(r);
        }
        let f = c.figures(6);
        assert_eq!((f.positive, f.neutral, f.negative, f.total), (4, 1, 2, 7));
        assert_eq!(f.satisfaction, Some(0.57));
        // 2 promoters, 1 passive, 1 detractor of 4: 50 - 25.
        assert_eq!(f.nps, Some(25.0));
        // With "7 or less", the 7 is a detractor: 50 - 50.
        assert_eq!(c.figures(7).nps, Some(0.0));
        assert_eq!(Counts::default().figures(6).satisfaction, None);
    }

    #[test]
    fn a_changed_rating_moves_one_count_on_one_item() {
        let t = TenantId::parse("acme").unwrap();
        let ops = count_ops(
            &t,
            Some("2026-01-02#a1#csat_positive"),
            Some(&Counted {
                day: "2026-01-02".into(),
                agent: "a1".into(),
                bucket: "csat_negative",
            }),
        );
        assert_eq!(ops.len(), 1, "one item, two ADDs");
        let WriteOp::Update { update, .. } = &ops[0] else {
            panic!()
        };
        assert_eq!(
            update.add,
            vec![("csat_positive".into(), -1), ("csat_negative".into(), 1)]
        );
        assert!(
            count_ops(
                &t,
                Some("2026-01-02#a1#nps_3"),
                Some(&Counted {
                    day: "2026-01-02".into(),
                    agent: "a1".into(),
                    bucket: "nps_3"
                })
            )
            .is_empty()
        );
    }

    #[test]
    fn weeks_start_on_monday_and_months_on_the_first() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 26).unwrap(); // a Thursday
        assert_eq!(
            Period::Week.start(d),
            NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()
        );
        assert_eq!(
            Period::Month.start(d),
            NaiveDate::from_ymd_opt(2026, 11, 1).unwrap()
        );
    }

    #[test]
    fn ranges_are_checked() {
        assert!(DateRange::parse("2026-01-01", "2026-12-31").is_ok());
        assert!(DateRange::parse("2026-02-01", "2026-01-01").is_err());
        assert!(DateRange::parse("2025-01-01", "2026-12-31").is_err());
        assert!(
            DateRange::parse("yesterday", "2026-12-31")
                .unwrap_err()
                .contains("from")
        );
    }

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,\"b\"\nc"), "\"a,\"\"b\"\"\nc\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
    }
}
