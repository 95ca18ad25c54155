//! The routing declared in a SAM `template.yaml`: which function handles which HTTP routes,
//! EventBridge events, schedules and DynamoDB stream records.
//!
//! Read from every `AWS::Serverless::Function`'s `Properties.Events`:
//!
//! * `HttpApi` / `Api`: `Path` and `Method`. An `HttpApi` event with neither is API Gateway's
//!   catch-all `$default` route, reported as method `ANY` and path [`HttpRoute::DEFAULT_PATH`].
//! * `EventBridgeRule` (and its older name `CloudWatchEvent`): `Pattern`, `RetryPolicy`,
//!   `DeadLetterConfig`, `State`.
//! * `Schedule`: `Schedule`, `Enabled` or `State`. `ScheduleV2`: `ScheduleExpression`, `State`.
//! * `DynamoDB`: `FilterCriteria.Filters[].Pattern` (a JSON string) and `BatchSize`.
//!
//! Other event types (SQS, S3, ...) are not routed by this crate and are skipped. Standalone
//! `AWS::Events::Rule` resources are attributed to each function their `Targets` name with
//! `!GetAtt Function.Arn`, as event routes (`EventPattern`) and/or schedules
//! (`ScheduleExpression`). Rules that are `DISABLED` deliver no events, so they add no event
//! route; disabled schedules are kept with `enabled: false`.
//!
//! CloudFormation intrinsics (`!Ref`, `!Sub`, `Fn::If`, ...) parse anywhere, but the properties
//! above must be literal values: an intrinsic there cannot be resolved locally and is reported as
//! an error naming the function and event.

use crate::pattern::{EventPattern, PatternError};
use crate::schedule::{ScheduleError, ScheduleExpression};
use serde::Serialize;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;
use std::ops::RangeInclusive;
use thiserror::Error;

/// Why the routes could not be read from a template.
#[derive(Debug, Error)]
pub enum TemplateError {
    #[error("template is not valid YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("template has no `Resources` mapping; is this a SAM template?")]
    MissingResources,
    #[error("resource `{resource}`: {reason}")]
    Resource { resource: String, reason: String },
    #[error("function `{function}`, event `{event}`: {reason}")]
    Event {
        function: String,
        event: String,
        reason: String,
    },
    #[error("function `{function}`, event `{event}`: bad event pattern: {source}")]
    Pattern {
        function: String,
        event: String,
        source: Box<PatternError>,
    },
    #[error("function `{function}`, event `{event}`: {source}")]
    Schedule {
        function: String,
        event: String,
        source: Box<ScheduleError>,
    },
}

/// Every function in a template, in template order, with its routes.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Routes {
    pub functions: Vec<FunctionRoutes>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionRoutes {
    /// The function's logical ID in the template, e.g. `RatingLinkFunction`.
    pub logical_id: String,
    pub http: Vec<HttpRoute>,
    pub events: Vec<EventRoute>,
    pub schedules: Vec<ScheduleRoute>,
    pub streams: Vec<StreamRoute>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpRoute {
    /// Upper-case HTTP method, or `ANY`.
    pub method: String,
    /// API Gateway path such as `/r/{token}` or `/admin/v1/{proxy+}`, or [`Self::DEFAULT_PATH`].
    pub path: String,
}

impl HttpRoute {
    /// The path reported for an HTTP API's catch-all `$default` route.
    pub const DEFAULT_PATH: &'static str = "$default";
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRoute {
    /// The event's key in the function's `Events` map, or the logical ID of a standalone rule.
    pub name: String,
    pub pattern: EventPattern,
    pub max_retries: Option<u32>,
    pub max_event_age_seconds: Option<u32>,
    pub has_dead_letter: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduleRoute {
    /// The event's key in the function's `Events` map, or the logical ID of a standalone rule.
    pub name: String,
    pub expression: ScheduleExpression,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamRoute {
    pub name: String,
    /// Records pass when any filter matches; no filters means every record passes.
    pub filters: Vec<EventPattern>,
    pub batch_size: Option<u32>,
}

impl Routes {
    /// Reads the routes of every `AWS::Serverless::Function` in a SAM template.
    pub fn from_template_yaml(yaml: &str) -> Result<Routes, TemplateError> {
        let mut template: Yaml = serde_yaml::from_str(yaml)?;
        // A `!Ref` to a parameter reads as that parameter's default, which is what a deploy
        // without overrides gets, so such properties need not be literals.
        let defaults = parameter_defaults(&template);
        if let Some(resources) = template.get_mut("Resources") {
            substitute_refs(resources, &defaults);
        }
        let resources = template
            .get("Resources")
            .and_then(Yaml::as_mapping)
            .ok_or(TemplateError::MissingResources)?;
        let mut routes = Routes::default();
        let mut rules = Vec::new();
        for (id, resource) in resources {
            let id = id.as_str().ok_or_else(|| TemplateError::Resource {
                resource: format!("{id:?}"),
                reason: "logical IDs must be strings".to_owned(),
            })?;
            match resource.get("Type").and_then(Yaml::as_str) {
                Some("AWS::Serverless::Function") => {
                    routes.functions.push(function_routes(id, resource)?);
                }
                Some("AWS::Events::Rule") => rules.push((id, resource)),
                _ => {}
            }
        }
        // Rules may come before the functions they target, so attach them once all are known.
        for (id, rule) in rules {
            attach_rule(&mut routes, id, rule)?;
        }
        Ok(routes)
    }

    /// The routes of the function with this logical ID.
    pub fn function(&self, logical_id: &str) -> Option<&FunctionRoutes> {
        self.functions
            .iter()
            .find(|function| function.logical_id == logical_id)
    }
}

/// Stands in for an absent mapping so property lookups can simply find nothing.
static ABSENT: Yaml = Yaml::Null;

/// The function and event being read, for error messages.
struct Context<'a> {
    function: &'a str,
    event: &'a str,
}

impl Context<'_> {
    fn error(&self, reason: impl Into<String>) -> TemplateError {
        TemplateError::Event {
            function: self.function.to_owned(),
            event: self.event.to_owned(),
            reason: reason.into(),
        }
    }

    /// A property's value, refusing intrinsics that only CloudFormation can resolve.
    fn literal<'y>(
        &self,
        container: &'y Yaml,
        key: &str,
    ) -> Result<Option<&'y Yaml>, TemplateError> {
        match container.get(key) {
            None | Some(Yaml::Null) => Ok(None),
            Some(value) => match intrinsic_name(value) {
                Some(intrinsic) => Err(self.error(format!(
                    "`{key}` uses {intrinsic}, which cannot be resolved outside CloudFormation; \
                     use a literal value"
                ))),
                None => Ok(Some(value)),
            },
        }
    }

    fn string<'y>(&self, container: &'y Yaml, key: &str) -> Result<Option<&'y str>, TemplateError> {
        match self.literal(container, key)? {
            None => Ok(None),
            Some(Yaml::String(text)) => Ok(Some(text)),
            Some(_) => Err(self.error(format!("`{key}` must be a string"))),
        }
    }

    fn number(
        &self,
        container: &Yaml,
        key: &str,
        allowed: RangeInclusive<u32>,
    ) -> Result<Option<u32>, TemplateError> {
        let Some(value) = self.literal(container, key)? else {
            return Ok(None);
        };
        value
            .as_u64()
            .and_then(|number| u32::try_from(number).ok())
            .filter(|number| allowed.contains(number))
            .map(Some)
            .ok_or_else(|| {
                self.error(format!(
                    "`{key}` must be a whole number from {} to {}",
                    allowed.start(),
                    allowed.end()
                ))
            })
    }

    /// `State` (`ENABLED`/`DISABLED`) or the older `Enabled` flag; enabled when neither is set.
    fn enabled(&self, properties: &Yaml) -> Result<bool, TemplateError> {
        if let Some(state) = self.string(properties, "State")? {
            return match state {
                "DISABLED" => Ok(false),
                "ENABLED" | "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS" => Ok(true),
                other => Err(self.error(format!(
                    "`State` must be ENABLED or DISABLED, found `{other}`"
                ))),
            };
        }
        match self.literal(properties, "Enabled")? {
            None => Ok(true),
            Some(Yaml::Bool(enabled)) => Ok(*enabled),
            Some(_) => Err(self.error("`Enabled` must be true or false")),
        }
    }

    /// An event pattern written as YAML or as a JSON string.
    fn pattern(&self, value: &Yaml) -> Result<EventPattern, TemplateError> {
        let pattern_error = |source| TemplateError::Pattern {
            function: self.function.to_owned(),
            event: self.event.to_owned(),
            source: Box::new(source),
        };
        match value {
            Yaml::String(json) => json.parse().map_err(pattern_error),
            yaml => {
                let json = yaml_to_json(yaml)
                    .map_err(|reason| self.error(format!("event pattern {reason}")))?;
                EventPattern::parse(&json).map_err(pattern_error)
            }
        }
    }

    fn schedule(&self, text: &str) -> Result<ScheduleExpression, TemplateError> {
        ScheduleExpression::parse(text).map_err(|source| TemplateError::Schedule {
            function: self.function.to_owned(),
            event: self.event.to_owned(),
            source: Box::new(source),
        })
    }
}

fn function_routes(logical_id: &str, function: &Yaml) -> Result<FunctionRoutes, TemplateError> {
    let mut routes = FunctionRoutes {
        logical_id: logical_id.to_owned(),
        http: Vec::new(),
        events: Vec::new(),
        schedules: Vec::new(),
        streams: Vec::new(),
    };
    let events = match function
        .get("Properties")
        .and_then(|properties| properties.get("Events"))
    {
        None | Some(Yaml::Null) => return Ok(routes),
        Some(Yaml::Mapping(events)) => events,
        Some(_) => {
            return Err(TemplateError::Resource {
                resource: logical_id.to_owned(),
                reason: "`Properties.Events` must be a mapping of event names to events".to_owned(),
            });
        }
    };
    for (name, event) in events {
        let name = name.as_str().ok_or_else(|| TemplateError::Resource {
            resource: logical_id.to_owned(),
            reason: format!("event name {name:?} must be a string"),
        })?;
        let context = Context {
            function: logical_id,
            event: name,
        };
        let event_type = context
            .string(event, "Type")?
            .ok_or_else(|| context.error("has no `Type`"))?;
        let properties = event.get("Properties").unwrap_or(&ABSENT);
        match event_type {
            "HttpApi" => routes.http.push(http_route(&context, properties, true)?),
            "Api" => routes.http.push(http_route(&context, properties, false)?),
            "EventBridgeRule" | "CloudWatchEvent" => {
                let pattern = properties
                    .get("Pattern")
                    .ok_or_else(|| context.error("has no `Pattern`"))?;
                let route = event_route(&context, name, pattern, properties)?;
                if context.enabled(properties)? {
                    routes.events.push(route);
                }
            }
            "Schedule" => routes
                .schedules
                .push(schedule_route(&context, name, properties, "Schedule")?),
            "ScheduleV2" => routes.schedules.push(schedule_route(
                &context,
                name,
                properties,
                "ScheduleExpression",
            )?),
            "DynamoDB" => routes
                .streams
                .push(stream_route(&context, name, properties)?),
            _ => {}
        }
    }
    Ok(routes)
}

fn http_route(
    context: &Context,
    properties: &Yaml,
    http_api: bool,
) -> Result<HttpRoute, TemplateError> {
    let path = context.string(properties, "Path")?;
    let method = context.string(properties, "Method")?;
    let (path, method) = match (path, method) {
        (None, None) if http_api => {
            return Ok(HttpRoute {
                method: "ANY".to_owned(),
                path: HttpRoute::DEFAULT_PATH.to_owned(),
            });
        }
        (Some(path), Some(method)) => (path, method),
        _ => return Err(context.error("needs both `Path` and `Method`")),
    };
    if !path.starts_with('/') {
        return Err(context.error(format!("`Path` must start with `/`, found `{path}`")));
    }
    let method = match method.to_ascii_uppercase().as_str() {
        "ANY" | "X-AMAZON-APIGATEWAY-ANY-METHOD" => "ANY".to_owned(),
        known @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => {
            known.to_owned()
        }
        _ => return Err(context.error(format!("`Method` `{method}` is not an HTTP method"))),
    };
    Ok(HttpRoute {
        method,
        path: path.to_owned(),
    })
}

/// `properties` holds `RetryPolicy` and `DeadLetterConfig`: the event's own properties for a
/// SAM event, or the target entry for a standalone rule.
fn event_route(
    context: &Context,
    name: &str,
    pattern: &Yaml,
    properties: &Yaml,
) -> Result<EventRoute, TemplateError> {
    let retry_policy = properties.get("RetryPolicy").unwrap_or(&ABSENT);
    Ok(EventRoute {
        name: name.to_owned(),
        pattern: context.pattern(pattern)?,
        // Limits from EventBridge's RetryPolicy documentation.
        max_retries: context.number(retry_policy, "MaximumRetryAttempts", 0..=185)?,
        max_event_age_seconds: context.number(
            retry_policy,
            "MaximumEventAgeInSeconds",
            60..=86_400,
        )?,
        has_dead_letter: properties
            .get("DeadLetterConfig")
            .is_some_and(|config| !config.is_null()),
    })
}

fn schedule_route(
    context: &Context,
    name: &str,
    properties: &Yaml,
    expression_key: &str,
) -> Result<ScheduleRoute, TemplateError> {
    let expression = context
        .string(properties, expression_key)?
        .ok_or_else(|| context.error(format!("has no `{expression_key}`")))?;
    // Schedules are evaluated in UTC here; silently shifting another zone would fire at the
    // wrong hour.
    if let Some(zone) = context.string(properties, "ScheduleExpressionTimezone")?
        && !matches!(zone, "UTC" | "Etc/UTC")
    {
        return Err(context.error(format!(
            "`ScheduleExpressionTimezone: {zone}` is not supported; schedules are evaluated in UTC"
        )));
    }
    Ok(ScheduleRoute {
        name: name.to_owned(),
        expression: context.schedule(expression)?,
        enabled: context.enabled(properties)?,
    })
}

fn stream_route(
    context: &Context,
    name: &str,
    properties: &Yaml,
) -> Result<StreamRoute, TemplateError> {
    let filters = match properties
        .get("FilterCriteria")
        .and_then(|criteria| criteria.get("Filters"))
    {
        None | Some(Yaml::Null) => Vec::new(),
        Some(Yaml::Sequence(filters)) => filters
            .iter()
            .map(|filter| {
                let pattern = context.literal(filter, "Pattern")?.ok_or_else(|| {
                    context.error("each `FilterCriteria.Filters` entry needs a `Pattern`")
                })?;
                context.pattern(pattern)
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(context.error("`FilterCriteria.Filters` must be a list")),
    };
    Ok(StreamRoute {
        name: name.to_owned(),
        filters,
        batch_size: context.number(properties, "BatchSize", 1..=10_000)?,
    })
}

/// Adds a standalone `AWS::Events::Rule` to each function it targets.
fn attach_rule(routes: &mut Routes, rule_id: &str, rule: &Yaml) -> Result<(), TemplateError> {
    let properties = rule.get("Properties").unwrap_or(&ABSENT);
    let targets = match properties.get("Targets") {
        None | Some(Yaml::Null) => return Ok(()),
        Some(Yaml::Sequence(targets)) => targets,
        Some(_) => {
            return Err(TemplateError::Resource {
                resource: rule_id.to_owned(),
                reason: "`Targets` must be a list".to_owned(),
            });
        }
    };
    for target in targets {
        let Some(function_id) = target.get("Arn").and_then(arn_of_resource) else {
            continue;
        };
        let Some(function) = routes
            .functions
            .iter_mut()
            .find(|function| function.logical_id == function_id)
        else {
            continue;
        };
        let context = Context {
            function: function_id,
            event: rule_id,
        };
        let pattern = properties.get("EventPattern");
        let schedule = context.string(properties, "ScheduleExpression")?;
        if pattern.is_none() && schedule.is_none() {
            return Err(context.error("rule has neither `EventPattern` nor `ScheduleExpression`"));
        }
        let enabled = context.enabled(properties)?;
        if let Some(pattern) = pattern {
            let route = event_route(&context, rule_id, pattern, target)?;
            if enabled {
                function.events.push(route);
            }
        }
        if let Some(schedule) = schedule {
            function.schedules.push(ScheduleRoute {
                name: rule_id.to_owned(),
                expression: context.schedule(schedule)?,
                enabled,
            });
        }
    }
    Ok(())
}

/// `X` from `!GetAtt X.Arn`, `!GetAtt [X, Arn]` or `Fn::GetAtt: [X, Arn]`.
fn arn_of_resource(arn: &Yaml) -> Option<&str> {
    let arguments = match arn {
        Yaml::Tagged(tagged) if tagged.tag == "GetAtt" => &tagged.value,
        Yaml::Mapping(mapping) if mapping.len() == 1 => mapping.get("Fn::GetAtt")?,
        _ => return None,
    };
    match arguments {
        Yaml::String(dotted) => dotted.strip_suffix(".Arn"),
        Yaml::Sequence(parts) => match parts.as_slice() {
            [Yaml::String(resource), Yaml::String(attribute)] if attribute == "Arn" => {
                Some(resource)
            }
            _ => None,
        },
        _ => None,
    }
}

/// Each template parameter that has a default, by name.
fn parameter_defaults(template: &Yaml) -> std::collections::HashMap<String, Yaml> {
    template
        .get("Parameters")
        .and_then(Yaml::as_mapping)
        .into_iter()
        .flatten()
        .filter_map(|(name, parameter)| {
            Some((name.as_str()?.to_owned(), parameter.get("Default")?.clone()))
        })
        .collect()
}

/// Replaces `!Ref P` and `{Ref: P}` by the default of parameter `P`, everywhere in `value`.
fn substitute_refs(value: &mut Yaml, defaults: &std::collections::HashMap<String, Yaml>) {
    let referenced = match &*value {
        Yaml::Tagged(tagged) if tagged.tag == "Ref" => tagged.value.as_str(),
        Yaml::Mapping(mapping) if mapping.len() == 1 => mapping.get("Ref").and_then(Yaml::as_str),
        _ => None,
    };
    if let Some(default) = referenced.and_then(|name| defaults.get(name)) {
        *value = default.clone();
        return;
    }
    match value {
        Yaml::Mapping(mapping) => mapping
            .values_mut()
            .for_each(|v| substitute_refs(v, defaults)),
        Yaml::Sequence(items) => items.iter_mut().for_each(|v| substitute_refs(v, defaults)),
        Yaml::Tagged(tagged) => substitute_refs(&mut tagged.value, defaults),
        _ => {}
    }
}

/// The intrinsic function a value uses, e.g. `!Ref` or `Fn::If`.
fn intrinsic_name(value: &Yaml) -> Option<String> {
    match value {
        Yaml::Tagged(tagged) => Some(tagged.tag.to_string()),
        Yaml::Mapping(mapping) if mapping.len() == 1 => mapping
            .keys()
            .next()
            .and_then(Yaml::as_str)
            .filter(|key| *key == "Ref" || key.starts_with("Fn::"))
            .map(str::to_owned),
        _ => None,
    }
}

/// Converts a pattern written in YAML to JSON; errors complete "event pattern ...".
fn yaml_to_json(value: &Yaml) -> Result<Json, String> {
    let unresolvable = |intrinsic: String| {
        format!(
            "uses {intrinsic}, which cannot be resolved outside CloudFormation; use literal values"
        )
    };
    Ok(match value {
        Yaml::Null => Json::Null,
        Yaml::Bool(flag) => Json::Bool(*flag),
        Yaml::Number(number) => {
            if let Some(integer) = number.as_i64() {
                Json::from(integer)
            } else if let Some(integer) = number.as_u64() {
                Json::from(integer)
            } else {
                number
                    .as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map(Json::Number)
                    .ok_or_else(|| format!("has `{number}`, which is not a finite number"))?
            }
        }
        Yaml::String(text) => Json::String(text.clone()),
        Yaml::Sequence(items) => {
            Json::Array(items.iter().map(yaml_to_json).collect::<Result<_, _>>()?)
        }
        Yaml::Tagged(tagged) => return Err(unresolvable(tagged.tag.to_string())),
        Yaml::Mapping(mapping) => {
            if let Some(intrinsic) = intrinsic_name(value) {
                return Err(unresolvable(intrinsic));
            }
            let mut object = serde_json::Map::new();
            for (key, value) in mapping {
                let key = key
                    .as_str()
                    .ok_or_else(|| format!("has a non-string field name {key:?}"))?;
                object.insert(key.to_owned(), yaml_to_json(value)?);
            }
            Json::Object(object)
        }
    })
}
