//! The baseline for the HTTP benchmark: a bare axum hello-world on the same runtime settings.
//! `cargo run --release --example bare_axum -- 127.0.0.1:18081`

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18081".into());
    let app = axum::Router::new().route(
        "/admin/v1/health",
        axum::routing::get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    axum::serve(listener, app).await.expect("serve");
}
