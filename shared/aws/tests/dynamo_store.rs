//! The shared store conformance suite against DynamoDB as emulated by moto on loopback, plus
//! the table definition and error mapping. Needs `--features emulators` and moto running:
//! `moto_server -H 127.0.0.1 -p 5055` (or set `AWS_ENDPOINT_URL_MOTO`).
#![cfg(feature = "emulators")]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{Credentials, Region};
use aws_sdk_dynamodb::types::{KeyType, ProjectionType, StreamViewType, TimeToLiveStatus};
use closedloop_aws::store::{DynamoStore, create_table};
use closedloop_core::store::{ItemStore, Key};

/// Attribute names and key types, in schema order.
type KeySchema = Vec<(String, KeyType)>;

async fn client_for(endpoint: &str) -> Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "test",
            "test",
            None,
            None,
            "closedloop-tests",
        ))
        .load()
        .await;
    Client::new(&config)
}

async fn moto_client() -> Client {
    let endpoint =
        std::env::var("AWS_ENDPOINT_URL_MOTO").unwrap_or_else(|_| "http://127.0.0.1:5055".into());
    client_for(&endpoint).await
}

/// A table of its own for every test.
fn unique_table_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "closedloop-test-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

async fn fresh_store() -> DynamoStore {
    let client = moto_client().await;
    let table = unique_table_name();
    create_table(&client, &table)
        .await
        .expect("create the test table (is moto running?)");
    DynamoStore::new(client, table)
}

// moto applies a write as read-check-write with no per-item lock (see `update_item` and
// `put_item` in moto/dynamodb/models), so truly concurrent writes to one item can be lost or
// both pass a condition; DynamoDB itself is atomic. Run them anyway with `--include-ignored`.
closedloop_core::store_conformance_tests!(fresh_store().await;
    ignore [concurrent_adds_are_exact, concurrent_conditional_puts_have_one_winner]
    because "moto has no per-item lock: concurrent writes to one item race (DynamoDB does not)");

/// The table the adapter creates is the one `template.yaml` declares.
#[tokio::test]
async fn create_table_declares_keys_indexes_stream_and_ttl() {
    let client = moto_client().await;
    let table = unique_table_name();
    create_table(&client, &table).await.expect("create");
    create_table(&client, &table)
        .await
        .expect("creating it again is a no-op");

    let described = client
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .expect("describe");
    let description = described.table().expect("table");
    let keys = |schema: &[aws_sdk_dynamodb::types::KeySchemaElement]| -> KeySchema {
        schema
            .iter()
            .map(|k| (k.attribute_name().to_string(), k.key_type().clone()))
            .collect()
    };
    assert_eq!(
        keys(description.key_schema()),
        [
            ("PK".to_string(), KeyType::Hash),
            ("SK".to_string(), KeyType::Range)
        ]
    );
    let mut indexes: Vec<(String, KeySchema, Option<ProjectionType>)> = description
        .global_secondary_indexes()
        .iter()
        .map(|gsi| {
            (
                gsi.index_name().unwrap_or_default().to_string(),
                keys(gsi.key_schema()),
                gsi.projection().and_then(|p| p.projection_type().cloned()),
            )
        })
        .collect();
    indexes.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        indexes,
        [
            (
                "GSI1".to_string(),
                vec![
                    ("GSI1PK".to_string(), KeyType::Hash),
                    ("GSI1SK".to_string(), KeyType::Range)
                ],
                Some(ProjectionType::All)
            ),
            (
                "GSI2".to_string(),
                vec![
                    ("GSI2PK".to_string(), KeyType::Hash),
                    ("GSI2SK".to_string(), KeyType::Range)
                ],
                Some(ProjectionType::All)
            ),
        ]
    );
    let stream = description.stream_specification().expect("stream");
    assert!(stream.stream_enabled());
    assert_eq!(stream.stream_view_type(), Some(&StreamViewType::NewImage));

    let ttl = client
        .describe_time_to_live()
        .table_name(&table)
        .send()
        .await
        .expect("ttl");
    let ttl = ttl.time_to_live_description().expect("ttl description");
    assert_eq!(ttl.attribute_name(), Some("expires_at"));
    assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
}

/// An unreachable endpoint is a transient error (worth retrying), not a crash.
#[tokio::test]
async fn an_unreachable_endpoint_is_transient() {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url("http://127.0.0.1:9") // discard port: nothing listens
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "test",
            "test",
            None,
            None,
            "closedloop-tests",
        ))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .build(),
        )
        .load()
        .await;
    let store = DynamoStore::new(Client::new(&config), "nowhere");
    let error = store
        .get(&Key::new("T#a", "X"))
        .await
        .expect_err("nothing listens there");
    assert!(error.is_transient(), "{error:?}");
}

/// A table that does not exist is a plain failure, with the service's words.
#[tokio::test]
async fn a_missing_table_is_reported() {
    let store = DynamoStore::new(moto_client().await, unique_table_name());
    let error = store
        .get(&Key::new("T#a", "X"))
        .await
        .expect_err("no such table");
    assert!(
        matches!(&error, closedloop_core::store::StoreError::Other(m) if m.contains("ResourceNotFound")),
        "{error:?}"
    );
}
