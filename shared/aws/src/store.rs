//! `DynamoStore`: the `ItemStore` port over one DynamoDB table (production).
//!
//! - Values map to `AttributeValue` by hand (S, N, BOOL, NULL, L, M); other DynamoDB types
//!   (sets, binary) are not part of the port and are reported as errors when read.
//! - Conditions, updates and key conditions are rendered to expression strings with
//!   placeholders only (`#n0`… for names, `:v0`… for values): attribute names are never
//!   interpolated, so reserved words (`status`, `name`) and odd names are safe.
//! - Every conditional write asks for `ALL_OLD` on failure, so `ConditionFailed` and
//!   transaction cancellation reasons carry the item as it was.
//! - Requests are validated client-side with the port's `validate_*` first, so DynamoDB and the
//!   embedded store refuse the same requests (emulators, for one, accept wrong-type GSI keys).
//! - `get` and table queries are strongly consistent (a repository reading its own write must
//!   see it); index queries cannot be, as in DynamoDB.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    self as ddb, AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure,
};
use closedloop_core::store::{
    CancelReason, Condition, Index, Item, ItemStore, Key, PK, Page, Query, SK, SortKeyCondition,
    StoreError, TTL_ATTRIBUTE, Update, Value, WriteOp, validate_condition, validate_item,
    validate_key, validate_query, validate_transaction, validate_update,
};

/// The item store over the DynamoDB table `table`.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    /// Uses `client` (built once per process from the shared `SdkConfig`) on `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

#[async_trait]
impl ItemStore for DynamoStore {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        validate_key(key)?;
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_attributes(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        output.item().map(item_from_attributes).transpose()
    }

    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), StoreError> {
        validate_item(&item)?;
        let mut expression = Expression::default();
        let condition = render_condition(&mut expression, condition.as_ref())?;
        let has_condition = condition.is_some();
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item_to_attributes(&item)))
            .set_condition_expression(condition)
            .set_expression_attribute_names(expression.names())
            .set_expression_attribute_values(expression.values())
            .set_return_values_on_condition_check_failure(all_old_if(has_condition))
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(failed)) => {
                    condition_failed(failed.item())
                }
                _ => sdk_error("PutItem", e),
            })?;
        Ok(())
    }

    async fn update(
        &self,
        key: &Key,
        update: Update,
        condition: Option<Condition>,
    ) -> Result<Item, StoreError> {
        validate_key(key)?;
        validate_update(&update)?;
        let mut expression = Expression::default();
        let update_expression = expression.update(&update);
        let condition = render_condition(&mut expression, condition.as_ref())?;
        let has_condition = condition.is_some();
        let output = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_attributes(key)))
            .update_expression(update_expression)
            .set_condition_expression(condition)
            .set_expression_attribute_names(expression.names())
            .set_expression_attribute_values(expression.values())
            .return_values(ReturnValue::AllNew)
            .set_return_values_on_condition_check_failure(all_old_if(has_condition))
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                    condition_failed(failed.item())
                }
                _ => sdk_error("UpdateItem", e),
            })?;
        let attributes = output.attributes().ok_or_else(|| {
            StoreError::Other("UpdateItem returned no attributes despite ALL_NEW".into())
        })?;
        item_from_attributes(attributes)
    }

    async fn delete(&self, key: &Key, condition: Option<Condition>) -> Result<(), StoreError> {
        validate_key(key)?;
        let mut expression = Expression::default();
        let condition = render_condition(&mut expression, condition.as_ref())?;
        let has_condition = condition.is_some();
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key_attributes(key)))
            .set_condition_expression(condition)
            .set_expression_attribute_names(expression.names())
            .set_expression_attribute_values(expression.values())
            .set_return_values_on_condition_check_failure(all_old_if(has_condition))
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(DeleteItemError::ConditionalCheckFailedException(failed)) => {
                    condition_failed(failed.item())
                }
                _ => sdk_error("DeleteItem", e),
            })?;
        Ok(())
    }

    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        validate_query(&query)?;
        let mut expression = Expression::default();
        let key_condition = expression.key_condition(&query);
        let mut request = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression(key_condition)
            .set_expression_attribute_names(expression.names())
            .set_expression_attribute_values(expression.values())
            .scan_index_forward(query.forward)
            .set_limit(
                query
                    .limit
                    .map(|limit| i32::try_from(limit).unwrap_or(i32::MAX)),
            );
        request = match query.index {
            Some(index) => request.index_name(index.name()),
            None => request.consistent_read(true),
        };
        if let Some(start) = &query.start_after {
            request = request.set_exclusive_start_key(Some(start_key(start, query.index)?));
        }
        let output = request.send().await.map_err(|e| sdk_error("Query", e))?;
        let items = output
            .items()
            .iter()
            .map(item_from_attributes)
            .collect::<Result<Vec<_>, _>>()?;
        let last_evaluated = output
            .last_evaluated_key()
            .map(item_from_attributes)
            .transpose()?;
        Ok(Page {
            items,
            last_evaluated,
        })
    }

    async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        validate_transaction(&ops)?;
        let items = ops
            .iter()
            .map(|op| transact_item(&self.table, op))
            .collect::<Result<Vec<_>, _>>()?;
        self.client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
                    cancellation(cancelled.cancellation_reasons(), cancelled.message())
                }
                _ => sdk_error("TransactWriteItems", e),
            })?;
        Ok(())
    }
}

/// One operation of `TransactWriteItems`.
fn transact_item(table: &str, op: &WriteOp) -> Result<ddb::TransactWriteItem, StoreError> {
    let mut expression = Expression::default();
    let built = match op {
        WriteOp::Put { item, condition } => {
            let condition = render_condition(&mut expression, condition.as_ref())?;
            let all_old = all_old_if(condition.is_some());
            let put = ddb::Put::builder()
                .table_name(table)
                .set_item(Some(item_to_attributes(item)))
                .set_condition_expression(condition)
                .set_expression_attribute_names(expression.names())
                .set_expression_attribute_values(expression.values())
                .set_return_values_on_condition_check_failure(all_old)
                .build();
            ddb::TransactWriteItem::builder().put(put.map_err(build_error)?)
        }
        WriteOp::Update {
            key,
            update,
            condition,
        } => {
            let update_expression = expression.update(update);
            let condition = render_condition(&mut expression, condition.as_ref())?;
            let all_old = all_old_if(condition.is_some());
            let update = ddb::Update::builder()
                .table_name(table)
                .set_key(Some(key_attributes(key)))
                .update_expression(update_expression)
                .set_condition_expression(condition)
                .set_expression_attribute_names(expression.names())
                .set_expression_attribute_values(expression.values())
                .set_return_values_on_condition_check_failure(all_old)
                .build();
            ddb::TransactWriteItem::builder().update(update.map_err(build_error)?)
        }
        WriteOp::Delete { key, condition } => {
            let condition = render_condition(&mut expression, condition.as_ref())?;
            let all_old = all_old_if(condition.is_some());
            let delete = ddb::Delete::builder()
                .table_name(table)
                .set_key(Some(key_attributes(key)))
                .set_condition_expression(condition)
                .set_expression_attribute_names(expression.names())
                .set_expression_attribute_values(expression.values())
                .set_return_values_on_condition_check_failure(all_old)
                .build();
            ddb::TransactWriteItem::builder().delete(delete.map_err(build_error)?)
        }
        WriteOp::ConditionCheck { key, condition } => {
            let condition = expression.condition(condition);
            let check = ddb::ConditionCheck::builder()
                .table_name(table)
                .set_key(Some(key_attributes(key)))
                .condition_expression(condition)
                .set_expression_attribute_names(expression.names())
                .set_expression_attribute_values(expression.values())
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build();
            ddb::TransactWriteItem::builder().condition_check(check.map_err(build_error)?)
        }
    };
    Ok(built.build())
}

fn all_old_if(has_condition: bool) -> Option<ReturnValuesOnConditionCheckFailure> {
    has_condition.then_some(ReturnValuesOnConditionCheckFailure::AllOld)
}

fn render_condition(
    expression: &mut Expression,
    condition: Option<&Condition>,
) -> Result<Option<String>, StoreError> {
    condition
        .map(|condition| {
            validate_condition(condition)?;
            Ok(expression.condition(condition))
        })
        .transpose()
}

// ---------------------------------------------------------------------------------------------
// Expressions

/// Builds expression text with placeholders, collecting the names and values they stand for.
#[derive(Default)]
struct Expression {
    /// `#n0` → attribute name; one placeholder per distinct name.
    names: HashMap<String, String>,
    placeholder_of: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expression {
    fn name(&mut self, attribute: &str) -> String {
        if let Some(placeholder) = self.placeholder_of.get(attribute) {
            return placeholder.clone();
        }
        let placeholder = format!("#n{}", self.names.len());
        self.names
            .insert(placeholder.clone(), attribute.to_string());
        self.placeholder_of
            .insert(attribute.to_string(), placeholder.clone());
        placeholder
    }

    fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    fn condition(&mut self, condition: &Condition) -> String {
        match condition {
            Condition::Exists(name) => format!("attribute_exists({})", self.name(name)),
            Condition::NotExists(name) => format!("attribute_not_exists({})", self.name(name)),
            Condition::Eq(name, value) => self.comparison(name, "=", value),
            Condition::Lt(name, value) => self.comparison(name, "<", value),
            Condition::Le(name, value) => self.comparison(name, "<=", value),
            Condition::Gt(name, value) => self.comparison(name, ">", value),
            Condition::Ge(name, value) => self.comparison(name, ">=", value),
            Condition::BeginsWith(name, prefix) => {
                let name = self.name(name);
                let prefix = self.value(AttributeValue::S(prefix.clone()));
                format!("begins_with({name}, {prefix})")
            }
            Condition::And(all) => self.junction(all, "AND"),
            Condition::Or(any) => self.junction(any, "OR"),
            Condition::Not(inner) => format!("(NOT {})", self.condition(inner)),
        }
    }

    fn comparison(&mut self, name: &str, operator: &str, value: &Value) -> String {
        let name = self.name(name);
        let value = self.value(to_attribute(value));
        format!("{name} {operator} {value}")
    }

    /// `AND`/`OR` of the parts; an empty `AND` holds and an empty `OR` does not, as in the
    /// embedded store (DynamoDB has no literal true/false, so say it with the key attribute).
    fn junction(&mut self, parts: &[Condition], operator: &str) -> String {
        if parts.is_empty() {
            let pk = self.name(PK);
            return match operator {
                "AND" => format!("(attribute_exists({pk}) OR attribute_not_exists({pk}))"),
                _ => format!("(attribute_exists({pk}) AND attribute_not_exists({pk}))"),
            };
        }
        let rendered: Vec<String> = parts.iter().map(|part| self.condition(part)).collect();
        format!("({})", rendered.join(&format!(" {operator} ")))
    }

    fn update(&mut self, update: &Update) -> String {
        let mut clauses = Vec::new();
        let mut set: Vec<String> = Vec::new();
        for (name, value) in &update.set {
            let (name, value) = (self.name(name), self.value(to_attribute(value)));
            set.push(format!("{name} = {value}"));
        }
        for (name, value) in &update.set_if_not_exists {
            let (name, value) = (self.name(name), self.value(to_attribute(value)));
            set.push(format!("{name} = if_not_exists({name}, {value})"));
        }
        if !set.is_empty() {
            clauses.push(format!("SET {}", set.join(", ")));
        }
        let add: Vec<String> = update
            .add
            .iter()
            .map(|(name, delta)| {
                let (name, delta) = (
                    self.name(name),
                    self.value(AttributeValue::N(delta.to_string())),
                );
                format!("{name} {delta}")
            })
            .collect();
        if !add.is_empty() {
            clauses.push(format!("ADD {}", add.join(", ")));
        }
        let remove: Vec<String> = update.remove.iter().map(|name| self.name(name)).collect();
        if !remove.is_empty() {
            clauses.push(format!("REMOVE {}", remove.join(", ")));
        }
        clauses.join(" ")
    }

    fn key_condition(&mut self, query: &Query) -> String {
        let (pk_attribute, sk_attribute) = match query.index {
            Some(index) => (index.pk_attribute(), index.sk_attribute()),
            None => (PK, SK),
        };
        let pk = self.name(pk_attribute);
        let pk_value = self.value(AttributeValue::S(query.pk.clone()));
        let partition = format!("{pk} = {pk_value}");
        let Some(condition) = &query.sk else {
            return partition;
        };
        let sk = self.name(sk_attribute);
        let mut text = |s: &String| self.value(AttributeValue::S(s.clone()));
        let range = match condition {
            SortKeyCondition::BeginsWith(prefix) => format!("begins_with({sk}, {})", text(prefix)),
            SortKeyCondition::Between(low, high) => {
                let low = text(low);
                format!("{sk} BETWEEN {low} AND {}", text(high))
            }
            SortKeyCondition::Lt(v) => format!("{sk} < {}", text(v)),
            SortKeyCondition::Le(v) => format!("{sk} <= {}", text(v)),
            SortKeyCondition::Gt(v) => format!("{sk} > {}", text(v)),
            SortKeyCondition::Ge(v) => format!("{sk} >= {}", text(v)),
            SortKeyCondition::Eq(v) => format!("{sk} = {}", text(v)),
        };
        format!("{partition} AND {range}")
    }

    /// `None` when empty: DynamoDB refuses empty name/value maps.
    fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

// ---------------------------------------------------------------------------------------------
// Values

/// An item as DynamoDB attribute values.
pub fn item_to_attributes(item: &Item) -> HashMap<String, AttributeValue> {
    item.iter()
        .map(|(name, value)| (name.clone(), to_attribute(value)))
        .collect()
}

/// An item from DynamoDB attribute values; types outside the port (sets, binary) are errors.
pub fn item_from_attributes(
    attributes: &HashMap<String, AttributeValue>,
) -> Result<Item, StoreError> {
    attributes
        .iter()
        .map(|(name, value)| Ok((name.clone(), from_attribute(name, value)?)))
        .collect()
}

fn to_attribute(value: &Value) -> AttributeValue {
    match value {
        Value::S(s) => AttributeValue::S(s.clone()),
        Value::N(n) => AttributeValue::N(n.clone()),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Null(b) => AttributeValue::Null(*b),
        Value::L(values) => AttributeValue::L(values.iter().map(to_attribute).collect()),
        Value::M(map) => AttributeValue::M(
            map.iter()
                .map(|(name, value)| (name.clone(), to_attribute(value)))
                .collect(),
        ),
    }
}

fn from_attribute(name: &str, value: &AttributeValue) -> Result<Value, StoreError> {
    Ok(match value {
        AttributeValue::S(s) => Value::S(s.clone()),
        AttributeValue::N(n) => Value::N(n.clone()),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::Null(b) => Value::Null(*b),
        AttributeValue::L(values) => Value::L(
            values
                .iter()
                .map(|v| from_attribute(name, v))
                .collect::<Result<_, _>>()?,
        ),
        AttributeValue::M(map) => Value::M(
            map.iter()
                .map(|(key, v)| Ok((key.clone(), from_attribute(name, v)?)))
                .collect::<Result<_, StoreError>>()?,
        ),
        other => {
            return Err(StoreError::Other(format!(
                "attribute {name} has a DynamoDB type the item store does not support: {other:?}"
            )));
        }
    })
}

fn key_attributes(key: &Key) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (PK.to_string(), AttributeValue::S(key.pk.clone())),
        (SK.to_string(), AttributeValue::S(key.sk.clone())),
    ])
}

/// `ExclusiveStartKey`: only the key attributes of `start` (a whole item is accepted too).
fn start_key(
    start: &Item,
    index: Option<Index>,
) -> Result<HashMap<String, AttributeValue>, StoreError> {
    let mut names = vec![PK, SK];
    if let Some(index) = index {
        names.extend([index.pk_attribute(), index.sk_attribute()]);
    }
    names
        .into_iter()
        .map(|name| match start.get(name) {
            Some(Value::S(s)) => Ok((name.to_string(), AttributeValue::S(s.clone()))),
            _ => Err(StoreError::Invalid(format!(
                "start_after lacks the string key attribute {name}"
            ))),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Errors

/// Error codes worth retrying (after the SDK's own retries gave up).
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionInProgressException",
    "TransactionConflictException",
    "LimitExceededException",
];

fn sdk_error<E>(operation: &str, error: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &error {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("Unknown");
            let message = service.err().message().unwrap_or("no message");
            let status = service.raw().status().as_u16();
            if TRANSIENT_CODES.contains(&code) || status >= 500 {
                StoreError::Transient(format!("{operation}: {code}: {message}"))
            } else if code == "ValidationException" {
                StoreError::Invalid(format!("{operation}: {message}"))
            } else {
                StoreError::Other(format!("{operation}: {code}: {message}"))
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StoreError::Transient(format!("{operation}: {}", DisplayErrorContext(&error)))
        }
        _ => StoreError::Other(format!("{operation}: {}", DisplayErrorContext(&error))),
    }
}

fn build_error(error: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Other(format!("cannot build a DynamoDB request: {error}"))
}

/// `ConditionalCheckFailedException` with its `ALL_OLD` item.
fn condition_failed(item: Option<&HashMap<String, AttributeValue>>) -> StoreError {
    match item.map(item_from_attributes).transpose() {
        Ok(old) => StoreError::ConditionFailed {
            old: old.map(Box::new),
        },
        Err(e) => e,
    }
}

/// Maps `TransactionCanceledException` reasons, one per operation. Codes other than a
/// condition failure or a conflict decide the whole error: a validation error makes the
/// request invalid; throttling or anything else makes it worth retrying.
fn cancellation(reasons: &[ddb::CancellationReason], message: Option<&str>) -> StoreError {
    let mut mapped = Vec::with_capacity(reasons.len());
    let mut other_codes = Vec::new();
    for reason in reasons {
        match reason.code() {
            None | Some("None") => mapped.push(None),
            Some("ConditionalCheckFailed") => {
                match reason.item().map(item_from_attributes).transpose() {
                    Ok(old) => mapped.push(Some(CancelReason::ConditionFailed(old))),
                    Err(e) => return e,
                }
            }
            Some("TransactionConflict") => mapped.push(Some(CancelReason::Conflict)),
            Some(code) => {
                other_codes.push(format!(
                    "{code}: {}",
                    reason.message().unwrap_or("no message")
                ));
                mapped.push(None);
            }
        }
    }
    let validation = reasons.iter().any(|r| r.code() == Some("ValidationError"));
    let detail = || {
        format!(
            "{} ({})",
            message.unwrap_or("transaction cancelled"),
            other_codes.join("; ")
        )
    };
    if validation {
        StoreError::Invalid(format!("TransactWriteItems: {}", detail()))
    } else if !other_codes.is_empty() {
        StoreError::Transient(format!("TransactWriteItems: {}", detail()))
    } else {
        StoreError::TransactionCanceled { reasons: mapped }
    }
}

// ---------------------------------------------------------------------------------------------
// Table

/// Creates the single table if it does not exist, waits until it is active, and turns TTL on.
/// Safe to call again on an existing table.
///
/// The table, which `template.yaml` must declare identically:
/// - keys `PK` (HASH, S) and `SK` (RANGE, S); `BillingMode: PAY_PER_REQUEST`;
/// - GSIs `GSI1` (`GSI1PK` HASH, `GSI1SK` RANGE) and `GSI2` (`GSI2PK` HASH, `GSI2SK` RANGE),
///   all strings, `ProjectionType: ALL`;
/// - `StreamSpecification: StreamViewType: NEW_IMAGE` (read by the event relay);
/// - `TimeToLiveSpecification: AttributeName: expires_at, Enabled: true`.
pub async fn create_table(client: &Client, table: &str) -> Result<(), StoreError> {
    let key = |name: &str, key_type| {
        ddb::KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(key_type)
            .build()
            .map_err(build_error)
    };
    let mut request = client
        .create_table()
        .table_name(table)
        .billing_mode(ddb::BillingMode::PayPerRequest)
        .key_schema(key(PK, ddb::KeyType::Hash)?)
        .key_schema(key(SK, ddb::KeyType::Range)?)
        .stream_specification(
            ddb::StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(ddb::StreamViewType::NewImage)
                .build()
                .map_err(build_error)?,
        );
    let mut string_attributes = vec![PK, SK];
    for index in Index::ALL {
        string_attributes.extend([index.pk_attribute(), index.sk_attribute()]);
        request = request.global_secondary_indexes(
            ddb::GlobalSecondaryIndex::builder()
                .index_name(index.name())
                .key_schema(key(index.pk_attribute(), ddb::KeyType::Hash)?)
                .key_schema(key(index.sk_attribute(), ddb::KeyType::Range)?)
                .projection(
                    ddb::Projection::builder()
                        .projection_type(ddb::ProjectionType::All)
                        .build(),
                )
                .build()
                .map_err(build_error)?,
        );
    }
    for name in string_attributes {
        request = request.attribute_definitions(
            ddb::AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ddb::ScalarAttributeType::S)
                .build()
                .map_err(build_error)?,
        );
    }
    match request.send().await {
        Ok(_) => {}
        Err(e)
            if matches!(
                e.as_service_error(),
                Some(CreateTableError::ResourceInUseException(_))
            ) =>
        {
            tracing::info!(table, "table exists already");
        }
        Err(e) => return Err(sdk_error("CreateTable", e)),
    }
    client
        .wait_until_table_exists()
        .table_name(table)
        .wait(Duration::from_secs(300))
        .await
        .map_err(|e| {
            StoreError::Transient(format!(
                "waiting for table {table}: {}",
                DisplayErrorContext(&e)
            ))
        })?;

    let ttl = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|e| sdk_error("DescribeTimeToLive", e))?;
    let ttl_on = ttl.time_to_live_description().is_some_and(|d| {
        d.attribute_name() == Some(TTL_ATTRIBUTE)
            && matches!(
                d.time_to_live_status(),
                Some(ddb::TimeToLiveStatus::Enabled | ddb::TimeToLiveStatus::Enabling)
            )
    });
    if !ttl_on {
        client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                ddb::TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(TTL_ATTRIBUTE)
                    .build()
                    .map_err(build_error)?,
            )
            .send()
            .await
            .map_err(|e| sdk_error("UpdateTimeToLive", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn names_and_values_are_always_placeholders() {
        let mut expression = Expression::default();
        let condition = Condition::eq("status", Value::s("open"))
            .and(Condition::BeginsWith("a.b #c".into(), "x".into()))
            .and(Condition::Lt("status".into(), Value::n(3)).negate());
        let text = expression.condition(&condition);
        assert_eq!(
            text,
            "(#n0 = :v0 AND begins_with(#n1, :v1) AND (NOT #n0 < :v2))"
        );
        let names = expression.names().expect("names");
        assert_eq!(names.get("#n0").map(String::as_str), Some("status"));
        assert_eq!(names.get("#n1").map(String::as_str), Some("a.b #c"));
        assert_eq!(expression.values().map(|v| v.len()), Some(3));
    }

    #[test]
    fn updates_render_every_clause() {
        let mut expression = Expression::default();
        let update = Update::new()
            .set("name", Value::s("x"))
            .set_if_not_exists("created", Value::n(1))
            .add("count", -2)
            .remove("GSI1PK")
            .remove("GSI1SK");
        assert_eq!(
            expression.update(&update),
            "SET #n0 = :v0, #n1 = if_not_exists(#n1, :v1) ADD #n2 :v2 REMOVE #n3, #n4"
        );
        assert_eq!(
            expression.values().and_then(|v| v.get(":v2").cloned()),
            Some(AttributeValue::N("-2".into()))
        );
    }

    #[test]
    fn key_conditions() {
        let mut expression = Expression::default();
        let query = Query::on_index(Index::Gsi2, "T#a#DUE")
            .sk(SortKeyCondition::Between("1".into(), "2".into()));
        assert_eq!(
            expression.key_condition(&query),
            "#n0 = :v0 AND #n1 BETWEEN :v1 AND :v2"
        );
        assert_eq!(
            expression
                .names()
                .and_then(|n| n.get("#n1").cloned())
                .as_deref(),
            Some("GSI2SK")
        );
    }

    #[test]
    fn empty_junctions_are_constant() {
        let mut expression = Expression::default();
        assert_eq!(
            expression.condition(&Condition::And(vec![])),
            "(attribute_exists(#n0) OR attribute_not_exists(#n0))"
        );
        assert_eq!(
            expression.condition(&Condition::Or(vec![])),
            "(attribute_exists(#n0) AND attribute_not_exists(#n0))"
        );
    }

    #[test]
    fn values_round_trip() {
        let mut item = Key::new("p", "s").to_item();
        item.insert(
            "m".into(),
            Value::M(BTreeMap::from([(
                "l".to_string(),
                Value::L(vec![Value::n(1), Value::Null(true), Value::Bool(false)]),
            )])),
        );
        assert_eq!(item_from_attributes(&item_to_attributes(&item)), Ok(item));
        let unsupported = HashMap::from([("ss".to_string(), AttributeValue::Ss(vec!["a".into()]))]);
        assert!(matches!(
            item_from_attributes(&unsupported),
            Err(StoreError::Other(_))
        ));
    }

    #[test]
    fn cancellation_reasons_map_per_operation() {
        let old = HashMap::from([
            ("PK".to_string(), AttributeValue::S("p".into())),
            ("SK".to_string(), AttributeValue::S("s".into())),
        ]);
        let reasons = [
            ddb::CancellationReason::builder().code("None").build(),
            ddb::CancellationReason::builder()
                .code("ConditionalCheckFailed")
                .set_item(Some(old))
                .build(),
            ddb::CancellationReason::builder()
                .code("ConditionalCheckFailed")
                .build(),
            ddb::CancellationReason::builder()
                .code("TransactionConflict")
                .build(),
        ];
        assert_eq!(
            cancellation(&reasons, None),
            StoreError::TransactionCanceled {
                reasons: vec![
                    None,
                    Some(CancelReason::ConditionFailed(Some(
                        Key::new("p", "s").to_item()
                    ))),
                    Some(CancelReason::ConditionFailed(None)),
                    Some(CancelReason::Conflict),
                ]
            }
        );
        let throttled = [ddb::CancellationReason::builder()
            .code("ThrottlingError")
            .build()];
        assert!(cancellation(&throttled, None).is_transient());
        let invalid = [ddb::CancellationReason::builder()
            .code("ValidationError")
            .build()];
        assert!(matches!(
            cancellation(&invalid, None),
            StoreError::Invalid(_)
        ));
    }
}
