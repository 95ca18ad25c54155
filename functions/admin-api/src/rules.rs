//! `/admin/v1/rules`: create, list, read, update (versioned), switch on or off, delete and
//! simulate rules; `/admin/v1/rule-templates`: ready-made rules; `/admin/v1/rule-fields`: what
//! a rule editor can offer; `/admin/v1/reviews/{review}/audit`: a review's audit trail.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Duration, Utc};
use closedloop_core::automation::{self, AutomationError};
use closedloop_core::helpdesk;
use closedloop_core::ids::TenantId;
use closedloop_core::ids::{RuleId, SurveyRequestId};
use closedloop_core::keys;
use closedloop_core::records::read_record;
use closedloop_core::rules::Action;
use closedloop_core::rules::model::{Field, FieldKind, Op, Trigger};
use closedloop_core::rules::{RuleError, library, parse_draft, rule_json};
use closedloop_http::{ApiError, Json};
use serde_json::{Value as JsonValue, json};

use crate::{AdminState, Authenticated, store_error};

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/v1/rules", get(list).post(create))
        .route("/admin/v1/rules/simulate", post(simulate))
        .route(
            "/admin/v1/rules/{rule}",
            get(read).put(update).delete(delete),
        )
        .route("/admin/v1/rules/{rule}/enable", post(enable))
        .route("/admin/v1/rules/{rule}/disable", post(disable))
        .route("/admin/v1/rule-templates", get(list_templates))
        .route("/admin/v1/rule-templates/{template}", post(add_template))
        .route("/admin/v1/rule-fields", get(fields))
        .route("/admin/v1/reviews/{review}/audit", get(review_audit))
}

/// 400 naming the offending path; nothing was saved.
fn invalid_rule(e: RuleError) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_rule", e.to_string()).at(e.path)
}

/// Refuses a rule whose action the tenant's helpdesk cannot do, naming the vendor (400
/// `invalid_rule` at `actions[i]`). Without a connected helpdesk there is nothing to check yet.
async fn check_helpdesk_can(
    state: &AdminState,
    tenant: &TenantId,
    actions: &[Action],
) -> Result<(), ApiError> {
    let Some(config) = helpdesk::get_config(state.store.as_ref(), tenant)
        .await
        .map_err(store_error)?
    else {
        return Ok(());
    };
    for (i, action) in actions.iter().enumerate() {
        if let Some(op) = action.helpdesk_operation()
            && !config.kind.supports(op)
        {
            return Err(invalid_rule(RuleError {
                path: format!("actions[{i}]"),
                message: format!(
                    "{} cannot {} ({}): the tenant's helpdesk has no such operation; remove the action or connect another helpdesk",
                    config.kind.display_name(),
                    op.as_str().replace('_', " "),
                    action.kind()
                ),
            }));
        }
    }
    Ok(())
}

fn automation_error(e: AutomationError) -> ApiError {
    match e {
        AutomationError::RuleNotFound(_) => ApiError::not_found(e.to_string()),
        AutomationError::VersionConflict { .. } => {
            ApiError::new(StatusCode::CONFLICT, "version_conflict", e.to_string())
        }
        AutomationError::VersionMissing => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_rule", e.to_string()).at("version")
        }
        AutomationError::InvalidRule(e) => invalid_rule(e),
        AutomationError::Store(s) => store_error(s),
    }
}

fn rule_id(raw: &str) -> Result<RuleId, ApiError> {
    RuleId::parse(raw).map_err(|_| {
        ApiError::not_found(format!(
            "no rule '{}'",
            raw.chars().take(40).collect::<String>()
        ))
    })
}

async fn list(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
) -> Result<Json<JsonValue>, ApiError> {
    let mut rules = automation::load_rules(state.store.as_ref(), &tenant)
        .await
        .map_err(store_error)?;
    rules.sort_by_key(|r| (r.created_at, r.id));
    Ok(Json(
        json!({ "rules": rules.iter().map(rule_json).collect::<Vec<_>>() }),
    ))
}

async fn create(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    closedloop_http::RawBody(body): closedloop_http::RawBody,
) -> Result<Response, ApiError> {
    let draft = parse_draft(&body).map_err(invalid_rule)?;
    check_helpdesk_can(&state, &tenant, &draft.actions).await?;
    let rule = automation::create_rule(state.store.as_ref(), &tenant, draft, state.clock.now())
        .await
        .map_err(automation_error)?;
    Ok((StatusCode::CREATED, Json(rule_json(&rule))).into_response())
}

async fn read(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<JsonValue>, ApiError> {
    let id = rule_id(&id)?;
    automation::get_rule(state.store.as_ref(), &tenant, id)
        .await
        .map_err(store_error)?
        .map(|r| Json(rule_json(&r)))
        .ok_or_else(|| automation_error(AutomationError::RuleNotFound(id)))
}

/// Replaces the rule. The body carries the `version` it was read at; a rule changed since gets
/// 409 and stays as the other admin left it.
async fn update(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    Path(id): Path<String>,
    closedloop_http::RawBody(body): closedloop_http::RawBody,
) -> Result<Json<JsonValue>, ApiError> {
    let id = rule_id(&id)?;
    let draft = parse_draft(&body).map_err(invalid_rule)?;
    check_helpdesk_can(&state, &tenant, &draft.actions).await?;
    automation::update_rule(state.store.as_ref(), &tenant, id, draft, state.clock.now())
        .await
        .map(|r| Json(rule_json(&r)))
        .map_err(automation_error)
}

async fn switch(
    state: &AdminState,
    tenant: &closedloop_core::ids::TenantId,
    id: &str,
    on: bool,
) -> Result<Json<JsonValue>, ApiError> {
    let id = rule_id(id)?;
    automation::set_enabled(state.store.as_ref(), tenant, id, on, state.clock.now())
        .await
        .map(|r| Json(rule_json(&r)))
        .map_err(automation_error)
}

async fn enable(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<JsonValue>, ApiError> {
    switch(&state, &tenant, &id, true).await
}

async fn disable(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<JsonValue>, ApiError> {
    switch(&state, &tenant, &id, false).await
}

/// Deletes for good: there is no restore.
async fn delete(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = rule_id(&id)?;
    match automation::delete_rule(state.store.as_ref(), &tenant, id).await {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(automation_error(AutomationError::RuleNotFound(id))),
        Err(e) => Err(store_error(e)),
    }
}

/// Longest span one simulation replays.
const MAX_SIMULATION_DAYS: i64 = 92;

/// `{"rule": {...}}` (a rule not saved yet) or `{"rule_id": "..."}`, and `from`/`to`. Replays
/// the stored events of the range; nothing is written, nothing is sent.
async fn simulate(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    closedloop_http::RawBody(body): closedloop_http::RawBody,
) -> Result<Json<JsonValue>, ApiError> {
    let request: JsonValue = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    let time = |name: &str| -> Result<DateTime<Utc>, ApiError> {
        request[name]
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "{name}: an RFC 3339 time such as 2026-11-01T00:00:00Z"
                ))
                .at(name)
            })
    };
    let (from, to) = (time("from")?, time("to")?);
    if to <= from || to - from > Duration::days(MAX_SIMULATION_DAYS) {
        return Err(ApiError::bad_request(format!(
            "to: must be after from, at most {MAX_SIMULATION_DAYS} days later"
        ))
        .at("to"));
    }
    let now = state.clock.now();
    let rule = match (&request["rule"], request["rule_id"].as_str()) {
        (JsonValue::Object(_), None) => {
            let bytes = serde_json::to_vec(&request["rule"]).expect("JSON serialises");
            parse_draft(&bytes)
                .map_err(|e| {
                    invalid_rule(RuleError {
                        path: format!("rule.{}", e.path),
                        message: e.message,
                    })
                })?
                .into_rule(RuleId::new(), now)
        }
        (JsonValue::Null, Some(id)) => {
            let id = rule_id(id)?;
            automation::get_rule(state.store.as_ref(), &tenant, id)
                .await
                .map_err(store_error)?
                .ok_or_else(|| automation_error(AutomationError::RuleNotFound(id)))?
        }
        _ => {
            return Err(ApiError::bad_request(
                "give either `rule` (a rule, saved or not) or `rule_id`",
            ));
        }
    };
    if rule.trigger == Trigger::TimeBased {
        return Err(ApiError::bad_request(
            "time-based rules read each hour's open tickets, which the event history does not hold: they cannot be simulated",
        )
        .at("rule.trigger"));
    }
    let result = automation::simulate(state.store.as_ref(), &tenant, &rule, from, to)
        .await
        .map_err(store_error)?;
    Ok(Json(json!({
        "rule": rule_json(&rule),
        "from": from, "to": to,
        "events_replayed": result.events_replayed,
        "matched": result.matched,
        "not_matched_examples": result.not_matched_examples,
    })))
}

async fn list_templates(Authenticated(_): Authenticated) -> Json<JsonValue> {
    Json(json!({
        "templates": library::templates().iter().map(|t| t.summary()).collect::<Vec<_>>()
    }))
}

/// Adds a template's rule, with the body's changes (`{"to": [...]}`, or any top-level field).
async fn add_template(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    Path(id): Path<String>,
    closedloop_http::RawBody(body): closedloop_http::RawBody,
) -> Result<Response, ApiError> {
    let template = library::find(&id).ok_or_else(|| {
        ApiError::not_found(format!(
            "no rule template '{}'; GET /admin/v1/rule-templates lists them",
            id.chars().take(60).collect::<String>()
        ))
    })?;
    let overrides: JsonValue = if body.is_empty() {
        JsonValue::Null
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("the body is not valid JSON: {e}"),
            )
        })?
    };
    let draft = template.instantiate(&overrides).map_err(invalid_rule)?;
    check_helpdesk_can(&state, &tenant, &draft.actions).await?;
    let rule = automation::create_rule(state.store.as_ref(), &tenant, draft, state.clock.now())
        .await
        .map_err(automation_error)?;
    Ok((StatusCode::CREATED, Json(rule_json(&rule))).into_response())
}

/// Triggers, fields with their operators and choices: what a rule editor offers.
async fn fields(Authenticated(_): Authenticated) -> Json<JsonValue> {
    let fields: Vec<JsonValue> = Field::ALL
        .iter()
        .map(|f| {
            let kind = f.kind();
            let mut j = json!({
                "field": f.as_str(),
                "description": f.description(),
                "operators": Op::allowed(kind).iter().map(|o| o.as_str()).collect::<Vec<_>>(),
            });
            match kind {
                FieldKind::Choice(choices) => j["choices"] = json!(choices),
                FieldKind::Number { min, max, whole } => {
                    j["number"] = json!({"min": min, "max": max, "whole": whole})
                }
                FieldKind::Bool => j["boolean"] = json!(true),
                _ => {}
            }
            j
        })
        .collect();
    Json(json!({
        "triggers": Trigger::ALL.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
        "fields": fields,
    }))
}

/// A rating-link review's audit trail (its id is the survey request's).
async fn review_audit(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    Path(review): Path<String>,
) -> Result<Json<Vec<JsonValue>>, ApiError> {
    let not_found = || {
        ApiError::not_found(format!(
            "no review '{}'",
            review.chars().take(40).collect::<String>()
        ))
    };
    let id = SurveyRequestId::parse(&review).map_err(|_| not_found())?;
    let item = state
        .store
        .get(&keys::review(&tenant, id))
        .await
        .map_err(store_error)?
        .ok_or_else(not_found)?;
    let stored: closedloop_core::domain::Review = read_record(&item).map_err(store_error)?;
    automation::review_audit_trail(
        state.store.as_ref(),
        &tenant,
        stored.ticket_id.as_ref(),
        &id.to_string(),
    )
    .await
    .map(Json)
    .map_err(store_error)
}
