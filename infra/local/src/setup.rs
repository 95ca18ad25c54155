//! First-start setup of a local data directory: token signing keys and a first tenant.

use std::path::Path;

use chrono::{DateTime, Utc};
use closedloop_core::domain::{Agent, Email, TenantSettings};
use closedloop_core::ids::{AgentId, TenantId};
use closedloop_core::records::record_item;
use closedloop_core::store::ItemStore;
use closedloop_core::tokens::TokenKeyring;
use closedloop_core::{automation, keys, tenancy};
use serde::{Deserialize, Serialize};

pub const DEFAULT_TENANT: &str = "default";
pub const DEMO_TENANT: &str = "demo";

/// Written once with mode 0600; only this machine's user can read it.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()
    }
    #[cfg(not(unix))]
    std::fs::write(path, contents)
}

/// The signing keys of rating links, created on first start.
pub fn load_or_create_keyring(data_dir: &Path) -> std::io::Result<TokenKeyring> {
    let path = data_dir.join("token-keys");
    if !path.exists() {
        write_private(&path, &TokenKeyring::generate_spec("local1"))?;
    }
    let spec = std::fs::read_to_string(&path)?;
    TokenKeyring::parse(spec.trim())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}

/// A tenant's credentials as the local runner shows them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantCredentials {
    pub tenant: String,
    pub api_key: String,
    pub webhook_secret: String,
}

/// Loads the first tenant's credentials, creating the tenant (and the demo data) on first start.
pub async fn first_tenant(
    data_dir: &Path,
    store: &dyn ItemStore,
    demo: bool,
    now: DateTime<Utc>,
) -> Result<TenantCredentials, Box<dyn std::error::Error + Send + Sync>> {
    let name = if demo { DEMO_TENANT } else { DEFAULT_TENANT };
    let path = data_dir.join(format!("tenant-{name}.json"));
    if path.exists() {
        return Ok(serde_json::from_str(&std::fs::read_to_string(&path)?)?);
    }
    let id = TenantId::parse(name)?;
    let settings = if demo {
        TenantSettings {
            brand_name: "Demo Helpdesk".into(),
            brand_color: "#0f766e".into(),
            ..TenantSettings::default()
        }
    } else {
        TenantSettings::default()
    };
    let provisioned = tenancy::provision_tenant(store, id.clone(), name, settings, now).await?;
    if demo {
        seed_demo(store, &id).await?;
    }
    let credentials = TenantCredentials {
        tenant: name.to_string(),
        api_key: provisioned.api_key,
        webhook_secret: provisioned.webhook_secret,
    };
    write_private(&path, &serde_json::to_string_pretty(&credentials)?)?;
    Ok(credentials)
}

/// A few agents and rules, so the demo does something on the first ticket.
async fn seed_demo(
    store: &dyn ItemStore,
    tenant: &TenantId,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    for agent in crate::sandbox::demo_agents() {
        store
            .put(
                record_item(&keys::agent(tenant, agent.id.as_str()), "agent", &agent),
                None,
            )
            .await?;
    }
    // The demo's rules, written as an admin would send them to the admin API.
    let rules = [
        r#"{"name": "Tell the team lead when a ticket closes", "trigger": "ticket_closed",
            "actions": [{"type": "send_email", "to": ["team-lead@demo.example"],
              "subject": "Closed: {{ ticket.subject }}",
              "body": "Ticket #{{ ticket.id }} for {{ customer.name }} was closed; a rating request is on its way.\n"}]}"#,
        r#"{"name": "Tell the team lead and the ticket's agent about a new review", "trigger": "review_received",
            "actions": [{"type": "send_email", "to": ["team-lead@demo.example"], "to_ticket_agent": true,
              "subject": "New review on ticket #{{ ticket.id }}: {{ rating.label }}",
              "body": "Rating: {{ rating.value }} ({{ rating.label }})\nComment: {{ comment or '(none)' }}\n"}]}"#,
    ];
    let now = chrono::Utc::now();
    for json in rules {
        let draft = closedloop_core::rules::parse_draft(json.as_bytes())?;
        automation::create_rule(store, tenant, draft, now).await?;
    }
    Ok(())
}

pub fn demo_agent(id: &str, name: &str, email: &str, notifications: bool) -> Agent {
    Agent {
        id: AgentId::parse(id).expect("demo agent ids are valid"),
        name: name.into(),
        email: Email::parse(email).expect("demo emails are valid"),
        email_notifications: notifications,
        working_hours: None,
    }
}
