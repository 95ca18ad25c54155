//! `closedloop-tenants`: provisions tenants and manages their admin API keys on a deployed
//! stack, straight in its DynamoDB table through the AWS SDK (credentials, region and endpoint
//! from the usual AWS environment). docs/operations.md, "Tenants and their secrets".
//!
//!   closedloop-tenants --table <TableName> provision <tenant> [--name <display name>]
//!   closedloop-tenants --table <TableName> add-api-key <tenant>
//!   closedloop-tenants --table <TableName> revoke-api-key <tenant> <key id>
//!
//! Secrets are printed once, on stdout, and never logged; only hashes of API keys are stored.

use anyhow::{Context, bail};
use closedloop_aws::config::sdk_config;
use closedloop_aws::store::DynamoStore;
use closedloop_core::domain::TenantSettings;
use closedloop_core::ids::TenantId;
use closedloop_core::ports::{Clock, SystemClock};
use closedloop_core::tenancy;

const USAGE: &str = "usage:
  closedloop-tenants --table <TableName> provision <tenant> [--name <display name>]
  closedloop-tenants --table <TableName> add-api-key <tenant>
  closedloop-tenants --table <TableName> revoke-api-key <tenant> <key id>
<TableName> is the stack's TableName output; AWS credentials and region come from the environment.";

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut table = None;
    let mut name = None;
    let mut words = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--table" => table = Some(args.next().context("--table needs a value")?),
            "--name" => name = Some(args.next().context("--name needs a value")?),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            flag if flag.starts_with("--") => bail!("unknown option {flag}\n{USAGE}"),
            _ => words.push(arg),
        }
    }
    let Some(table) = table else {
        bail!("--table is required\n{USAGE}")
    };
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk_config().await), table);
    let tenant = |id: &str| TenantId::parse(id).map_err(|e| anyhow::anyhow!("tenant '{id}': {e}"));
    let now = SystemClock.now();
    match words.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["provision", id] => {
            let id = tenant(id)?;
            let name = name.unwrap_or_else(|| id.as_str().to_string());
            let made = tenancy::provision_tenant(&store, id, &name, TenantSettings::default(), now)
                .await?;
            println!("tenant: {}", made.tenant.id.as_str());
            println!("admin API key (shown once): {}", made.api_key);
            println!(
                "webhook secret of source 'generic' (shown once): {}",
                made.webhook_secret
            );
        }
        ["add-api-key", id] => {
            let key = tenancy::create_api_key(&store, &tenant(id)?, now).await?;
            println!("admin API key (shown once): {key}");
        }
        ["revoke-api-key", id, key_id] => {
            tenancy::revoke_api_key(&store, &tenant(id)?, key_id, now).await?;
            println!("revoked API key {key_id}");
        }
        _ => bail!("{USAGE}"),
    }
    Ok(())
}
