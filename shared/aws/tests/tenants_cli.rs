//! `closedloop-tenants` (the documented way to provision a tenant on a deployed stack) against
//! a table in moto: the keys it prints authenticate, a revoked key stops working, and a
//! repeated or bad command fails with a clear message and no change.
#![cfg(feature = "emulators")]

use std::process::Command;

use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::config::{Credentials, Region};
use closedloop_aws::store::{DynamoStore, create_table};
use closedloop_core::ids::TenantId;
use closedloop_core::store::ItemStore;
use closedloop_core::tenancy::{self, AuthError};

fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL_MOTO").unwrap_or_else(|_| "http://127.0.0.1:5055".into())
}

/// Runs the CLI against moto; (success, stdout, stderr).
fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_closedloop-tenants"))
        .args(args)
        .env("AWS_ENDPOINT_URL", endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .output()
        .expect("run closedloop-tenants");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The value printed after `label` on its line.
fn printed(stdout: &str, label: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("'{label}' in {stdout}"))
        .trim()
        .to_string()
}

#[tokio::test]
async fn provisions_a_tenant_whose_printed_keys_work_and_revokes_a_key() {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .load()
        .await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let table = format!(
        "closedloop-cli-{}",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    create_table(&client, &table).await.expect("moto table");
    let store = DynamoStore::new(client, table.clone());
    let acme = TenantId::parse("acme").unwrap();

    let (ok, out, err) = cli(&["--table", &table, "provision", "acme", "--name", "Acme"]);
    assert!(ok, "{err}");
    let first = printed(&out, "admin API key (shown once):");
    assert!(!printed(&out, "webhook secret of source 'generic' (shown once):").is_empty());
    assert_eq!(
        tenancy::authenticate(&store, &first).await,
        Ok(acme.clone())
    );
    let secrets = tenancy::webhook_secrets(&store, &acme, tenancy::GENERIC_SOURCE)
        .await
        .unwrap();
    assert_eq!(secrets.len(), 1, "one generic webhook secret");

    // A second provision of the same tenant changes nothing.
    let (ok, _, err) = cli(&["--table", &table, "provision", "acme"]);
    assert!(!ok);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(
        tenancy::authenticate(&store, &first).await,
        Ok(acme.clone())
    );

    // Rotation: a second key, then the first revoked.
    let (ok, out, err) = cli(&["--table", &table, "add-api-key", "acme"]);
    assert!(ok, "{err}");
    let second = printed(&out, "admin API key (shown once):");
    assert_ne!(first, second);
    assert_eq!(
        tenancy::authenticate(&store, &second).await,
        Ok(acme.clone())
    );
    let first_id = first.split('.').nth(2).unwrap();
    let (ok, _, err) = cli(&["--table", &table, "revoke-api-key", "acme", first_id]);
    assert!(ok, "{err}");
    assert_eq!(
        tenancy::authenticate(&store, &first).await,
        Err(AuthError::Invalid)
    );
    assert_eq!(
        tenancy::authenticate(&store, &second).await,
        Ok(acme.clone())
    );

    // Unknown key, unknown tenant, bad tenant id: refused, nothing written.
    let (ok, _, err) = cli(&["--table", &table, "revoke-api-key", "acme", "nosuchkey"]);
    assert!(!ok && err.contains("no API key"), "{err}");
    assert_eq!(
        store
            .get(&closedloop_core::keys::api_key(&acme, "nosuchkey"))
            .await
            .unwrap(),
        None,
        "revoking an unknown key creates no item"
    );
    let (ok, _, err) = cli(&["--table", &table, "add-api-key", "globex"]);
    assert!(!ok && err.contains("does not exist"), "{err}");
    let (ok, _, err) = cli(&["--table", &table, "provision", "Not A Tenant!"]);
    assert!(!ok && err.contains("tenant 'Not A Tenant!'"), "{err}");
    let (ok, _, err) = cli(&["provision", "acme"]);
    assert!(!ok && err.contains("--table is required"), "{err}");
}
