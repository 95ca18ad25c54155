//! `/admin/v1/reports/...`: satisfaction reports (JSON, or CSV with `format=csv`), read from
//! the counters (never from the reviews), and the report page.
//!
//! - `GET /reports/agents?from=&to=[&agent=]`: per agent over a date range;
//! - `GET /reports/trend?from=&to=&period=day|week|month[&agent=]`;
//! - `GET /reports/ratings?from=&to=[&agent=&rating=positive|neutral|negative&has_comment=&limit=&after=]`:
//!   tickets with ratings;
//! - `POST /reports/links {"minutes": 15}`: a short-lived signed link to the page;
//! - `GET /reports/page?from=&to=`: the page (API key, or `link=` from a signed link).
//!
//! Dates are the tenant's (its time zone); without `from`/`to` a report covers the last 30 days.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use closedloop_core::domain::TenantSettings;
use closedloop_core::html::escape;
use closedloop_core::ids::TenantId;
use closedloop_core::reports::{
    self, AgentReport, DateRange, Figures, Period, RatedFilter, Trend, csv_field,
};
use closedloop_core::store::{Index, ItemStore, Query as StoreQuery, StoreError};
use closedloop_core::{keys, tenancy};
use closedloop_http::{ApiError, Json};
use serde::Deserialize;

use crate::{AdminState, Authenticated, store_error, tenancy_error};

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/v1/reports/agents", get(agents))
        .route("/admin/v1/reports/trend", get(trend))
        .route("/admin/v1/reports/ratings", get(ratings))
        .route("/admin/v1/reports/links", post(link))
        .route("/admin/v1/reports/page", get(page))
}

type Params = HashMap<String, String>;

/// Refuses parameters the call does not take, naming the first.
fn only(params: &Params, allowed: &[&str]) -> Result<(), ApiError> {
    let mut names: Vec<&String> = params.keys().collect();
    names.sort();
    match names.into_iter().find(|n| !allowed.contains(&n.as_str())) {
        Some(n) => Err(ApiError::bad_request(format!(
            "unknown parameter {:?}; this report takes {}",
            n.chars().take(40).collect::<String>(),
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

fn range(
    params: &Params,
    settings: &TenantSettings,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<DateRange, ApiError> {
    match (params.get("from"), params.get("to")) {
        (None, None) => Ok(DateRange::last_days(now, settings.time_zone.tz(), 30)),
        (Some(from), Some(to)) => DateRange::parse(from, to).map_err(ApiError::bad_request),
        _ => Err(ApiError::bad_request(
            "give both from and to (YYYY-MM-DD), or neither for the last 30 days",
        )),
    }
}

fn agent(params: &Params) -> Result<Option<&str>, ApiError> {
    match params.get("agent").map(String::as_str) {
        None => Ok(None),
        // The reviews of tickets without an agent.
        Some("none") => Ok(Some("")),
        Some(a) => closedloop_core::ids::AgentId::parse(a)
            .map(|_| Some(a))
            .map_err(|e| ApiError::bad_request(format!("agent: {e}"))),
    }
}

fn csv_wanted(params: &Params) -> Result<bool, ApiError> {
    match params.get("format").map(String::as_str) {
        None | Some("json") => Ok(false),
        Some("csv") => Ok(true),
        Some(_) => Err(ApiError::bad_request("format is json or csv")),
    }
}

fn csv_response(name: &str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.csv\""),
            ),
        ],
        body,
    )
        .into_response()
}

const FIGURE_COLUMNS: &str =
    "positive,neutral,negative,total,satisfaction,nps_answers,promoters,passives,detractors,nps";

fn figure_cells(f: &Figures) -> String {
    let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    format!(
        "{},{},{},{},{},{},{},{},{},{}",
        f.positive,
        f.neutral,
        f.negative,
        f.total,
        opt(f.satisfaction),
        f.nps_answers,
        f.promoters,
        f.passives,
        f.detractors,
        opt(f.nps)
    )
}

async fn settings(state: &AdminState, tenant: &TenantId) -> Result<TenantSettings, ApiError> {
    tenancy::get_settings(state.store.as_ref(), tenant)
        .await
        .map_err(tenancy_error)
}

/// The per-agent report with the agents' names from the directory.
async fn agent_report(
    store: &dyn ItemStore,
    tenant: &TenantId,
    settings: &TenantSettings,
    range: DateRange,
    agent: Option<&str>,
) -> Result<AgentReport, StoreError> {
    let mut report =
        reports::agent_report(store, tenant, settings.detractor_max_score, range, agent).await?;
    let names: HashMap<String, String> = tenancy::list_agents(store, tenant)
        .await?
        .into_iter()
        .map(|a| (a.id.as_str().to_string(), a.name))
        .collect();
    for row in &mut report.agents {
        row.agent_name = row.agent_id.as_ref().and_then(|id| names.get(id).cloned());
    }
    Ok(report)
}

async fn agents(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    only(&params, &["from", "to", "agent", "format"])?;
    let settings = settings(&state, &tenant).await?;
    let range = range(&params, &settings, state.clock.now())?;
    let csv = csv_wanted(&params)?;
    let report = agent_report(
        state.store.as_ref(),
        &tenant,
        &settings,
        range,
        agent(&params)?,
    )
    .await
    .map_err(store_error)?;
    if !csv {
        return Ok(Json(report).into_response());
    }
    let mut body = format!("agent_id,agent_name,{FIGURE_COLUMNS}\r\n");
    for row in &report.agents {
        body.push_str(&format!(
            "{},{},{}\r\n",
            csv_field(row.agent_id.as_deref().unwrap_or("")),
            csv_field(row.agent_name.as_deref().unwrap_or("")),
            figure_cells(&row.figures)
        ));
    }
    Ok(csv_response("agents", body))
}

async fn trend(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    only(&params, &["from", "to", "agent", "period", "format"])?;
    let settings = settings(&state, &tenant).await?;
    let range = range(&params, &settings, state.clock.now())?;
    let period = match params.get("period") {
        None => Period::Day,
        Some(p) => {
            Period::parse(p).ok_or_else(|| ApiError::bad_request("period is day, week or month"))?
        }
    };
    let csv = csv_wanted(&params)?;
    let trend = reports::trend(
        state.store.as_ref(),
        &tenant,
        settings.detractor_max_score,
        range,
        period,
        agent(&params)?,
    )
    .await
    .map_err(store_error)?;
    if !csv {
        return Ok(Json(trend).into_response());
    }
    let mut body = format!("period,{FIGURE_COLUMNS}\r\n");
    for row in &trend.periods {
        body.push_str(&format!(
            "{},{}\r\n",
            row.period,
            figure_cells(&row.figures)
        ));
    }
    Ok(csv_response("trend", body))
}

async fn ratings(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    only(
        &params,
        &[
            "from",
            "to",
            "agent",
            "rating",
            "has_comment",
            "limit",
            "after",
            "format",
        ],
    )?;
    let settings = settings(&state, &tenant).await?;
    let range = range(&params, &settings, state.clock.now())?;
    let csv = csv_wanted(&params)?;
    let filter = RatedFilter {
        agent: agent(&params)?.map(str::to_string),
        sentiment: match params.get("rating").map(String::as_str) {
            None => None,
            Some(r @ ("positive" | "neutral" | "negative")) => Some(r.to_string()),
            Some(_) => {
                return Err(ApiError::bad_request(
                    "rating is positive, neutral or negative",
                ));
            }
        },
        has_comment: match params.get("has_comment").map(String::as_str) {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(_) => return Err(ApiError::bad_request("has_comment is true or false")),
        },
    };
    let limit = match params.get("limit") {
        None => {
            if csv {
                10_000
            } else {
                100
            }
        }
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=10_000).contains(l))
            .ok_or_else(|| ApiError::bad_request("limit is 1 to 10000"))?,
    };
    let after = params.get("after").map(String::as_str);
    if after.is_some_and(|a| a.len() > 600) {
        return Err(ApiError::bad_request(
            "after is the next_after of a previous page",
        ));
    }
    let page = reports::rated_tickets(
        state.store.as_ref(),
        &tenant,
        settings.detractor_max_score,
        range,
        &filter,
        after,
        limit,
    )
    .await
    .map_err(store_error)?;
    if !csv {
        return Ok(Json(page).into_response());
    }
    let mut body = String::from(
        "day,ticket_id,agent_id,kind,value,rating,comment,recorded_at,updated_at,source\r\n",
    );
    for t in &page.tickets {
        body.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{}\r\n",
            t.day,
            csv_field(t.ticket_id.as_deref().unwrap_or("")),
            csv_field(t.agent_id.as_deref().unwrap_or("")),
            match t.rating.kind() {
                closedloop_core::domain::SurveyKind::Csat => "csat",
                closedloop_core::domain::SurveyKind::Nps => "nps",
            },
            t.rating.value_string(),
            t.sentiment,
            csv_field(t.comment.as_deref().unwrap_or("")),
            closedloop_core::keys::sortable_time(t.recorded_at),
            closedloop_core::keys::sortable_time(t.updated_at),
            csv_field(&t.source)
        ));
    }
    Ok(csv_response("ratings", body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkBody {
    #[serde(default)]
    minutes: Option<i64>,
}

/// A signed link to the report page, for people without the API key (a browser, a chat).
async fn link(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    Json(body): Json<LinkBody>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let minutes = body.minutes.unwrap_or(15);
    if !(1..=reports::MAX_LINK_MINUTES).contains(&minutes) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            format!("minutes must be 1 to {}", reports::MAX_LINK_MINUTES),
        ));
    }
    let expires_at = state.clock.now() + chrono::Duration::minutes(minutes);
    let token = reports::issue_link(state.store.as_ref(), &tenant, expires_at)
        .await
        .map_err(store_error)?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "path": format!("/admin/v1/reports/page?link={token}"),
            "expires_at": expires_at,
        })),
    ))
}

/// The tenant of a page request: the API key, else a signed link.
async fn page_tenant(
    state: &AdminState,
    headers: &HeaderMap,
    params: &Params,
) -> Result<TenantId, Response> {
    if headers.contains_key(header::AUTHORIZATION) {
        let mut parts = axum::http::Request::new(()).into_parts().0;
        parts.headers = headers.clone();
        return <Authenticated as axum::extract::FromRequestParts<AdminState>>::from_request_parts(
            &mut parts, state,
        )
        .await
        .map(|a| a.0)
        .map_err(IntoResponse::into_response);
    }
    let refuse = |status: StatusCode, text: &str| {
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            format!(
                "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Report</title></head><body><p>{}</p></body></html>",
                escape(text)
            ),
        )
            .into_response()
    };
    let Some(token) = params.get("link") else {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "Open this page with the API key, or with a link from `closedloop report-link`.",
        ));
    };
    match reports::verify_link(state.store.as_ref(), token, state.clock.now()).await {
        Ok(Ok(tenant)) => Ok(tenant),
        Ok(Err(e)) => Err(refuse(StatusCode::UNAUTHORIZED, &e.to_string())),
        Err(e) => Err(store_error(e).into_response()),
    }
}

async fn page(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    match render_page(&state, &headers, &params).await {
        Ok(r) | Err(r) => r,
    }
}

async fn render_page(
    state: &AdminState,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Response, Response> {
    let tenant = page_tenant(state, headers, params).await?;
    only(params, &["from", "to", "link"]).map_err(IntoResponse::into_response)?;
    let settings = settings(state, &tenant)
        .await
        .map_err(IntoResponse::into_response)?;
    let now = state.clock.now();
    let range = range(params, &settings, now).map_err(IntoResponse::into_response)?;
    let store = state.store.as_ref();
    let period = if (range.to - range.from).num_days() > 62 {
        Period::Week
    } else {
        Period::Day
    };
    let report = agent_report(store, &tenant, &settings, range, None)
        .await
        .map_err(|e| store_error(e).into_response())?;
    let trend = reports::trend(
        store,
        &tenant,
        settings.detractor_max_score,
        range,
        period,
        None,
    )
    .await
    .map_err(|e| store_error(e).into_response())?;
    let cases = case_figures(store, &tenant, now)
        .await
        .map_err(|e| store_error(e).into_response())?;
    let html = page_html(&settings, &report, &trend, cases);
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Nothing on the page loads from elsewhere, and it never runs script.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
            ),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        html,
    )
        .into_response())
}

/// Open cases with an SLA deadline and how many are past it (read from the open-cases index;
/// none when the tenant has no open case).
async fn case_figures(
    store: &dyn ItemStore,
    tenant: &TenantId,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<(usize, usize)>, StoreError> {
    let due = format!("{}#~", keys::sortable_time(now));
    let mut open = 0;
    let mut breached = 0;
    let mut query = StoreQuery::on_index(Index::Gsi1, keys::open_cases_index(tenant)).limit(500);
    loop {
        let page = store.query(query.clone()).await?;
        for item in &page.items {
            open += 1;
            let past = closedloop_core::store::ItemExt::str_attr(item, Index::Gsi1.sk_attribute())
                .is_some_and(|sk| sk <= due.as_str());
            let marked = item.get("sla_breached").and_then(|v| v.as_bool()) == Some(true);
            if past || marked {
                breached += 1;
            }
        }
        match page.last_evaluated {
            Some(last) => query = query.start_after(Some(last)),
            None => break,
        }
    }
    Ok((open > 0).then_some((open, breached)))
}

fn percent(v: Option<f64>) -> String {
    v.map(|v| format!("{:.0}%", v * 100.0))
        .unwrap_or_else(|| "–".into())
}

fn nps(v: Option<f64>) -> String {
    v.map(|v| format!("{v:+.0}")).unwrap_or_else(|| "–".into())
}

/// The satisfaction trend as an SVG line over answer-count bars.
fn trend_svg(trend: &Trend) -> String {
    let (w, h, left, bottom, top) = (720.0, 240.0, 44.0, 28.0, 12.0);
    let n = trend.periods.len().max(1) as f64;
    let step = (w - left - 8.0) / n;
    let max_total = trend
        .periods
        .iter()
        .map(|p| p.figures.total)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let plot_h = h - bottom - top;
    let mut svg = format!(
        "<svg role=\"img\" aria-labelledby=\"trend-title\" viewBox=\"0 0 {w} {h}\" width=\"100%\" xmlns=\"http://www.w3.org/2000/svg\"><title id=\"trend-title\">Satisfaction per {}</title>",
        trend.period
    );
    for pct in [0, 50, 100] {
        let y = top + plot_h * (1.0 - f64::from(pct) / 100.0);
        svg.push_str(&format!(
            "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#e5e7eb\"/><text x=\"{}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\" fill=\"#6b7280\">{pct}%</text>",
            w - 8.0,
            left - 6.0,
            y + 4.0
        ));
    }
    let mut points = Vec::new();
    for (i, p) in trend.periods.iter().enumerate() {
        let x = left + step * i as f64;
        let bar = plot_h * p.figures.total as f64 / max_total * 0.35;
        svg.push_str(&format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bar:.1}\" fill=\"#dbeafe\"><title>{}: {} answers</title></rect>",
            x + step * 0.15,
            top + plot_h - bar,
            (step * 0.7).max(1.0),
            p.period,
            p.figures.total
        ));
        if let Some(s) = p.figures.satisfaction {
            points.push((x + step / 2.0, top + plot_h * (1.0 - s), p));
        }
    }
    if points.len() > 1 {
        let path: Vec<String> = points
            .iter()
            .map(|(x, y, _)| format!("{x:.1},{y:.1}"))
            .collect();
        svg.push_str(&format!(
            "<polyline points=\"{}\" fill=\"none\" stroke=\"#2563eb\" stroke-width=\"2.5\"/>",
            path.join(" ")
        ));
    }
    for (x, y, p) in &points {
        svg.push_str(&format!(
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3.5\" fill=\"#2563eb\"><title>{}: {} satisfied</title></circle>",
            p.period,
            percent(p.figures.satisfaction)
        ));
    }
    // A few date labels along the bottom.
    let every = (trend.periods.len() / 6).max(1);
    for (i, p) in trend.periods.iter().enumerate().step_by(every) {
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#6b7280\">{}</text>",
            left + step * i as f64 + step / 2.0,
            h - 8.0,
            p.period.format("%b %d")
        ));
    }
    svg.push_str("</svg>");
    svg
}

fn bar_svg(f: &Figures) -> String {
    if f.total == 0 {
        return String::new();
    }
    let total = f.total as f64;
    let (p, n) = (
        f.positive as f64 / total * 120.0,
        f.neutral as f64 / total * 120.0,
    );
    let g = 120.0 - p - n;
    format!(
        "<svg viewBox=\"0 0 120 12\" width=\"120\" height=\"12\" aria-hidden=\"true\" xmlns=\"http://www.w3.org/2000/svg\"><rect width=\"{p:.1}\" height=\"12\" fill=\"#16a34a\"/><rect x=\"{p:.1}\" width=\"{n:.1}\" height=\"12\" fill=\"#facc15\"/><rect x=\"{:.1}\" width=\"{g:.1}\" height=\"12\" fill=\"#dc2626\"/></svg>",
        p + n
    )
}

/// The page: every tenant- and customer-entered string escaped, nothing loaded from elsewhere.
fn page_html(
    settings: &TenantSettings,
    report: &AgentReport,
    trend: &Trend,
    cases: Option<(usize, usize)>,
) -> String {
    let brand = escape(&settings.brand_name);
    let colour = &settings.brand_color; // validated as #rrggbb
    let t = &report.total;
    let mut html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{brand}: satisfaction report</title><style>\
body{{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#111827;background:#f9fafb}}\
header{{background:{colour};color:#fff;padding:20px 24px}}h1{{margin:0;font-size:22px}}header p{{margin:4px 0 0;opacity:.9}}\
main{{max-width:960px;margin:0 auto;padding:16px 24px}}section{{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:16px;margin:16px 0}}\
h2{{font-size:16px;margin:0 0 12px}}.tiles{{display:flex;gap:12px;flex-wrap:wrap}}.tile{{flex:1;min-width:140px;background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:12px 16px}}\
.tile b{{display:block;font-size:28px}}.tile span{{color:#6b7280;font-size:13px}}table{{border-collapse:collapse;width:100%;font-size:14px}}\
th,td{{text-align:left;padding:6px 8px;border-bottom:1px solid #f3f4f6}}td.n{{text-align:right;font-variant-numeric:tabular-nums}}</style></head><body>\
<header><h1>{brand}: how customers rate us</h1><p>{} to {}</p></header><main>",
        report.from, report.to
    );
    html.push_str(&format!(
        "<div class=\"tiles\"><div class=\"tile\"><b>{}</b><span>answers</span></div><div class=\"tile\"><b>{}</b><span>satisfied (positive of all)</span></div><div class=\"tile\"><b>{}</b><span>NPS ({} NPS answers)</span></div><div class=\"tile\"><b>{} / {} / {}</b><span>positive / neutral / negative</span></div></div>",
        t.total,
        percent(t.satisfaction),
        nps(t.nps),
        t.nps_answers,
        t.positive,
        t.neutral,
        t.negative
    ));
    html.push_str(&format!(
        "<section><h2>Satisfaction per {}</h2>{}</section>",
        trend.period,
        trend_svg(trend)
    ));
    html.push_str("<section><h2>Per agent</h2><table><thead><tr><th>Agent</th><th>Answers</th><th>Positive</th><th>Neutral</th><th>Negative</th><th>Satisfied</th><th>NPS</th><th></th></tr></thead><tbody>");
    if report.agents.is_empty() {
        html.push_str("<tr><td colspan=\"8\">No ratings in this period.</td></tr>");
    }
    for row in &report.agents {
        let name = match (&row.agent_name, &row.agent_id) {
            (Some(name), _) => escape(name),
            (None, Some(id)) => escape(id),
            (None, None) => "(no agent)".into(),
        };
        let f = &row.figures;
        html.push_str(&format!(
            "<tr><td>{name}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            f.total,
            f.positive,
            f.neutral,
            f.negative,
            percent(f.satisfaction),
            nps(f.nps),
            bar_svg(f)
        ));
    }
    html.push_str("</tbody></table></section>");
    if let Some((open, breached)) = cases {
        html.push_str(&format!(
            "<section><h2>Follow-up cases</h2><div class=\"tiles\"><div class=\"tile\"><b>{open}</b><span>open with an SLA</span></div><div class=\"tile\"><b>{breached}</b><span>past their SLA deadline</span></div></div></section>"
        ));
    }
    html.push_str("</main></body></html>");
    html
}
