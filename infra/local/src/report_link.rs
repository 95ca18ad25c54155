//! `closedloop report-link`: asks the running local runner's admin API for a short-lived
//! signed link to the report page, with the tenant's API key from the data directory.

use std::path::Path;

use crate::setup::TenantCredentials;

/// The first tenant's credentials the runner wrote (`tenant-<name>.json`), or the named one.
pub fn credentials(data_dir: &Path, tenant: Option<&str>) -> Result<TenantCredentials, String> {
    let names: Vec<String> = match tenant {
        Some(t) => vec![t.to_string()],
        None => vec![
            crate::setup::DEMO_TENANT.into(),
            crate::setup::DEFAULT_TENANT.into(),
        ],
    };
    for name in &names {
        let path = data_dir.join(format!("tenant-{name}.json"));
        if let Ok(text) = std::fs::read_to_string(&path) {
            return serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()));
        }
    }
    Err(format!(
        "no tenant credentials in {} (start `closedloop up` once, or pass --tenant)",
        data_dir.display()
    ))
}

/// The full URL of a report page link valid for `minutes`.
pub async fn request_link(base_url: &str, api_key: &str, minutes: i64) -> Result<String, String> {
    let client = closedloop_connectors::http_client(std::time::Duration::from_secs(10));
    let response = client
        .post(format!("{base_url}/admin/v1/reports/links"))
        .bearer_auth(api_key)
        .json(&serde_json::json!({ "minutes": minutes }))
        .send()
        .await
        .map_err(|e| format!("is `closedloop up` running at {base_url}? {e}"))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!(
            "the admin API answered {status}: {}",
            body["error"]["message"]
        ));
    }
    let path = body["path"].as_str().ok_or("the answer has no path")?;
    Ok(format!("{base_url}{path}"))
}
