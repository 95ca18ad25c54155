//! Cases and their SLA: `/admin/v1/sla`, `/business-hours`, `/close-options`, `/cases`, and the
//! case reports (`/reports/cases`, `/reports/sla`, JSON or CSV). `docs/cases.md` has the shapes.
//!
//! Bad input is a 400 naming the field (`error.path`) and writes nothing.

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use closedloop_core::calendar::BusinessCalendar;
use closedloop_core::case_reports::{self, Range, ReportError};
use closedloop_core::cases::{self, CaseError, CaseFilter, SlaPolicy};
use closedloop_core::domain::CaseStatus;
use closedloop_core::ids::{AgentId, CaseId, TenantId};
use closedloop_core::tenancy;
use closedloop_http::{ApiError, Json};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::{AdminState, Authenticated, store_error, tenancy_error};

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/v1/sla", get(get_sla).put(put_sla))
        .route(
            "/admin/v1/business-hours",
            get(get_hours).put(put_hours).delete(delete_hours),
        )
        .route(
            "/admin/v1/close-options",
            get(list_options).post(add_option),
        )
        .route("/admin/v1/close-options/{id}", patch(change_option))
        .route("/admin/v1/cases", get(list))
        .route("/admin/v1/cases/{id}", get(show))
        .route("/admin/v1/cases/{id}/close", post(close))
        .route("/admin/v1/cases/{id}/assign", post(assign))
        .route("/admin/v1/cases/{id}/reply", post(reply))
        .route("/admin/v1/reports/cases", get(cases_report))
        .route("/admin/v1/reports/sla", get(sla_report))
}

/// A JSON body, refused with a 400 that names the offending field.
fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if inner.is_syntax() || inner.is_eof() {
            format!("the body is not valid JSON: {inner}")
        } else if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        };
        let error = ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", message);
        if path == "." { error } else { error.at(path) }
    })
}

fn case_error(e: CaseError) -> ApiError {
    let message = e.to_string();
    match e {
        CaseError::Invalid { field, .. } => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", message).at(field)
        }
        CaseError::UnknownOption { .. } => ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown_close_option",
            format!("option_id: {message}"),
        )
        .at("option_id"),
        CaseError::RetiredOption { .. } => ApiError::new(
            StatusCode::BAD_REQUEST,
            "retired_close_option",
            format!("option_id: {message}"),
        )
        .at("option_id"),
        CaseError::AlreadyClosed { .. } => {
            ApiError::new(StatusCode::BAD_REQUEST, "case_closed", message)
        }
        CaseError::NoTicket(_) => ApiError::new(StatusCode::BAD_REQUEST, "no_ticket", message),
        CaseError::NotFound(_) => ApiError::not_found(message),
        CaseError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
        CaseError::NoHelpdesk => ApiError::new(StatusCode::CONFLICT, "no_helpdesk", message),
        CaseError::Helpdesk(_) => {
            ApiError::new(StatusCode::BAD_GATEWAY, "helpdesk_failed", message)
        }
        CaseError::Store(e) => store_error(e),
    }
}

fn report_error(e: ReportError) -> ApiError {
    match e {
        ReportError::Invalid { field, .. } => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", e.to_string()).at(field)
        }
        ReportError::TooMany => {
            ApiError::new(StatusCode::BAD_REQUEST, "range_too_large", e.to_string())
        }
        ReportError::Store(e) => store_error(e),
    }
}

/// Who did it, as the caller says (the API key is the tenant's, not a person's).
fn by(by: Option<String>) -> Result<String, ApiError> {
    match by {
        None => Ok("admin".into()),
        Some(b) if !b.trim().is_empty() && b.chars().count() <= 200 => Ok(b.trim().to_string()),
        Some(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "by: must be 1 to 200 characters",
        )
        .at("by")),
    }
}

fn case_id(raw: &str) -> Result<CaseId, ApiError> {
    CaseId::parse(raw).map_err(|_| {
        ApiError::not_found(format!(
            "no case {}",
            raw.chars().take(40).collect::<String>()
        ))
    })
}

// ── SLA and business hours ───────────────────────────────────────────────────────────────────

async fn sla_view(state: &AdminState, tenant: &TenantId) -> Result<Value, ApiError> {
    let (settings, _) = cases::settings(state.store.as_ref(), tenant)
        .await
        .map_err(store_error)?;
    let tenant_settings = tenancy::get_settings(state.store.as_ref(), tenant)
        .await
        .map_err(tenancy_error)?;
    Ok(json!({
        "enabled": settings.sla.enabled,
        "close_within_hours": settings.sla.close_within_hours,
        // What the hours count in (set with PUT /admin/v1/business-hours).
        "business_hours": tenant_settings.business_hours.unwrap_or_else(BusinessCalendar::always_open),
    }))
}

async fn get_sla(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
) -> Result<Json<Value>, ApiError> {
    sla_view(&state, &tenant).await.map(Json)
}

async fn put_sla(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    closedloop_http::RawBody(bytes): closedloop_http::RawBody,
) -> Result<Json<Value>, ApiError> {
    let sla: SlaPolicy = body(&bytes)?;
    cases::set_sla(state.store.as_ref(), &tenant, sla)
        .await
        .map_err(case_error)?;
    sla_view(&state, &tenant).await.map(Json)
}

async fn get_hours(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
) -> Result<Json<Value>, ApiError> {
    let settings = tenancy::get_settings(state.store.as_ref(), &tenant)
        .await
        .map_err(tenancy_error)?;
    Ok(Json(json!({ "business_hours": settings.business_hours })))
}

/// Sets the tenant's business-hours calendar (SLA deadlines, rules' `time.business_hours`).
/// An invalid calendar is refused with what to fix, and the stored one stays.
async fn put_hours(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    closedloop_http::RawBody(bytes): closedloop_http::RawBody,
) -> Result<Json<Value>, ApiError> {
    let calendar: BusinessCalendar = body(&bytes).map_err(|mut e| {
        e.code = "invalid_calendar";
        e
    })?;
    save_hours(&state, &tenant, Some(calendar)).await
}

async fn delete_hours(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
) -> Result<Json<Value>, ApiError> {
    save_hours(&state, &tenant, None).await
}

async fn save_hours(
    state: &AdminState,
    tenant: &TenantId,
    calendar: Option<BusinessCalendar>,
) -> Result<Json<Value>, ApiError> {
    let store = state.store.as_ref();
    let mut settings = tenancy::get_settings(store, tenant)
        .await
        .map_err(tenancy_error)?;
    settings.business_hours = calendar;
    tenancy::put_settings(store, tenant, &settings)
        .await
        .map_err(tenancy_error)?;
    Ok(Json(json!({ "business_hours": settings.business_hours })))
}

// ── Close options ────────────────────────────────────────────────────────────────────────────

async fn list_options(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
) -> Result<Json<Value>, ApiError> {
    let (settings, _) = cases::settings(state.store.as_ref(), &tenant)
        .await
        .map_err(store_error)?;
    Ok(Json(json!({ "close_options": settings.close_options })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOption {
    label: String,
}

async fn add_option(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    closedloop_http::RawBody(bytes): closedloop_http::RawBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let new: NewOption = body(&bytes)?;
    let option = cases::add_close_option(state.store.as_ref(), &tenant, &new.label)
        .await
        .map_err(case_error)?;
    Ok((StatusCode::CREATED, Json(json!(option))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OptionChange {
    label: Option<String>,
    retired: Option<bool>,
}

/// Renames (`label`) and/or retires (`retired: true`) or restores an option.
async fn change_option(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    Path(id): Path<String>,
    closedloop_http::RawBody(bytes): closedloop_http::RawBody,
) -> Result<Json<Value>, ApiError> {
    let change: OptionChange = body(&bytes)?;
    if change.label.is_none() && change.retired.is_none() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "send label (to rename) and/or retired (true to retire, false to restore)",
        ));
    }
    let option = cases::change_close_option(
        state.store.as_ref(),
        &tenant,
        &id,
        change.label.as_deref(),
        change.retired,
    )
    .await
    .map_err(case_error)?;
    Ok(Json(json!(option)))
}

// ── Cases ────────────────────────────────────────────────────────────────────────────────────

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    /// An agent id, or `none` for unassigned cases.
    assignee: Option<String>,
    breached: Option<bool>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
    before: Option<String>,
}

fn query_error(e: QueryRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text())
}

fn field_error(field: &'static str, message: impl Into<String>) -> ApiError {
    let message = message.into();
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_field",
        format!("{field}: {message}"),
    )
    .at(field)
}

/// Cases newest first (by opening), filtered; `next_before` continues the list.
async fn list(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(query_error)?;
    let status = match q.status.as_deref() {
        None => None,
        Some("open") => Some(CaseStatus::Open),
        Some("closed") => Some(CaseStatus::Closed),
        Some(_) => return Err(field_error("status", "must be open or closed")),
    };
    let assignee = match q.assignee.as_deref() {
        None => None,
        Some("none") => Some(None),
        Some(a) => Some(Some(
            AgentId::parse(a).map_err(|e| field_error("assignee", e.to_string()))?,
        )),
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(field_error("limit", "must be 1 to 100"));
    }
    let tz = tenancy::get_settings(state.store.as_ref(), &tenant)
        .await
        .map_err(tenancy_error)?
        .time_zone
        .tz();
    let bound = |text: &Option<String>, field, end| {
        text.as_deref()
            .map(|t| case_reports::instant(t, tz, field, end))
            .transpose()
            .map_err(report_error)
    };
    let filter = CaseFilter {
        status,
        assignee,
        breached: q.breached,
        from: bound(&q.from, "from", 0)?,
        to: bound(&q.to, "to", 1)?,
        limit,
        before: q.before,
    };
    let (found, next) = cases::list(state.store.as_ref(), &tenant, &filter)
        .await
        .map_err(store_error)?;
    Ok(Json(json!({ "cases": found, "next_before": next })))
}

async fn show(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = case_id(&id)?;
    let (case, history) = cases::get_with_history(state.store.as_ref(), &tenant, id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found(format!("no case {id}")))?;
    Ok(Json(json!({ "case": case, "history": history })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseBody {
    option_id: String,
    by: Option<String>,
}

async fn close(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    Path(id): Path<String>,
    closedloop_http::RawBody(bytes): closedloop_http::RawBody,
) -> Result<Json<Value>, ApiError> {
    let id = case_id(&id)?;
    let close: CloseBody = body(&bytes)?;
    let by = by(close.by)?;
    let case = cases::close_case(
        state.store.as_ref(),
        &tenant,
        id,
        &close.option_id,
        &by,
        state.clock.now(),
    )
    .await
    .map_err(case_error)?;
    Ok(Json(json!({ "case": case })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignBody {
    /// `null` unassigns.
    agent_id: Option<String>,
    by: Option<String>,
}

async fn assign(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    Path(id): Path<String>,
    closedloop_http::RawBody(bytes): closedloop_http::RawBody,
) -> Result<Json<Value>, ApiError> {
    let id = case_id(&id)?;
    let assign: AssignBody = body(&bytes)?;
    let agent = assign
        .agent_id
        .as_deref()
        .map(AgentId::parse)
        .transpose()
        .map_err(|e| field_error("agent_id", e.to_string()))?;
    let by = by(assign.by)?;
    let case = cases::assign_case(
        state.store.as_ref(),
        &tenant,
        id,
        agent,
        &by,
        state.clock.now(),
    )
    .await
    .map_err(case_error)?;
    Ok(Json(json!({ "case": case })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplyBody {
    body: String,
    /// Reply and close: the close option, and the case closes with the reply.
    close_with: Option<String>,
    by: Option<String>,
}

async fn reply(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    Path(id): Path<String>,
    closedloop_http::RawBody(bytes): closedloop_http::RawBody,
) -> Result<Json<Value>, ApiError> {
    let id = case_id(&id)?;
    let reply: ReplyBody = body(&bytes)?;
    let by = by(reply.by)?;
    let done = cases::reply(
        state.store.as_ref(),
        state.connectors.as_ref(),
        &tenant,
        id,
        &reply.body,
        &by,
        reply.close_with.as_deref(),
        state.clock.now(),
    )
    .await
    .map_err(|e| match e {
        // The reply's option is named `close_with` here.
        CaseError::UnknownOption { .. } | CaseError::RetiredOption { .. } => {
            let mut error = case_error(e);
            error.message = error.message.replacen("option_id", "close_with", 1);
            error.at("close_with")
        }
        e => case_error(e),
    })?;
    Ok(Json(
        json!({ "case": done.case, "idempotency_key": done.idempotency_key }),
    ))
}

// ── Reports ──────────────────────────────────────────────────────────────────────────────────

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportQuery {
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
}

/// CSV when `?format=csv`, or when the client accepts `text/csv` and asked for no format.
fn wants_csv(format: Option<&str>, headers: &HeaderMap) -> Result<bool, ApiError> {
    match format {
        Some("csv") => Ok(true),
        Some("json") => Ok(false),
        Some(_) => Err(field_error("format", "must be json or csv")),
        None => Ok(headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/csv"))),
    }
}

fn csv_response(name: &str, range: Range, csv: String) -> Response {
    let file = format!(
        "{name}-{}-{}.csv",
        range.from.format("%Y%m%dT%H%M"),
        range.to.format("%Y%m%dT%H%M")
    );
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        csv,
    )
        .into_response()
}

async fn report_input(
    state: &AdminState,
    tenant: &TenantId,
    q: &ReportQuery,
) -> Result<(Range, Vec<closedloop_core::domain::Case>), ApiError> {
    let settings = tenancy::get_settings(state.store.as_ref(), tenant)
        .await
        .map_err(tenancy_error)?;
    let range = case_reports::parse_range(
        q.from.as_deref(),
        q.to.as_deref(),
        settings.time_zone.tz(),
        state.clock.now(),
    )
    .map_err(report_error)?;
    let cases = case_reports::cases_in(state.store.as_ref(), tenant, range)
        .await
        .map_err(report_error)?;
    Ok((range, cases))
}

/// The cases tab: the cases opened in the range, open and closed, and how long closing took.
async fn cases_report(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    headers: HeaderMap,
    query: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(query_error)?;
    let csv = wants_csv(q.format.as_deref(), &headers)?;
    let (range, found) = report_input(&state, &tenant, &q).await?;
    let report = case_reports::cases_report(range, &found);
    Ok(if csv {
        csv_response("cases", range, case_reports::cases_csv(&report))
    } else {
        Json(report).into_response()
    })
}

/// The SLA tab: only while the SLA is on.
async fn sla_report(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    headers: HeaderMap,
    query: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(query_error)?;
    let csv = wants_csv(q.format.as_deref(), &headers)?;
    let (settings, _) = cases::settings(state.store.as_ref(), &tenant)
        .await
        .map_err(store_error)?;
    if !settings.sla.enabled {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "sla_off",
            "the SLA is off, so there is no SLA report; turn it on with PUT /admin/v1/sla",
        ));
    }
    let (range, found) = report_input(&state, &tenant, &q).await?;
    let report = case_reports::sla_report(
        range,
        settings.sla.close_within_hours,
        &found,
        state.clock.now(),
    );
    Ok(if csv {
        csv_response("sla", range, case_reports::sla_csv(&report))
    } else {
        Json(report).into_response()
    })
}
