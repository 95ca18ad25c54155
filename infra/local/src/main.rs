//! `closedloop`: the local runner and admin CLI.

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The runner allocates small, short-lived values on every request (items, JSON, pages);
/// mimalloc serves those from per-thread pages, where glibc malloc spent about a sixth of the
/// CPU time of `scripts/bench-clicks.sh`. Built with `no_thp` (see the workspace Cargo.toml):
/// mimalloc otherwise asks for transparent huge pages, and as the store grows each first touch
/// (and each re-touch after a purge) zeroes 2 MiB; that cost about an eighth of a click's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use closedloop::runner::{self, RunnerConfig};

#[derive(Parser)]
#[command(
    name = "closedloop",
    version,
    about = "closedloop: the customer-feedback loop, run locally"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start every function in one process, on embedded storage.
    Up {
        /// Port of the HTTP endpoints (rating links, webhooks, admin API).
        #[arg(long, env = "CLOSEDLOOP_PORT", default_value_t = 8080)]
        port: u16,
        /// Address to listen on; keep it on loopback unless you mean to share it.
        #[arg(long, env = "CLOSEDLOOP_HOST", default_value = "127.0.0.1")]
        host: IpAddr,
        /// Where the store, the outbox and the keys live.
        #[arg(long, env = "CLOSEDLOOP_DATA_DIR", default_value = ".closedloop")]
        data_dir: PathBuf,
        /// Seed a demo tenant with agents, rules and a sandbox helpdesk.
        #[arg(long)]
        demo: bool,
        /// Route by this SAM template instead of the built-in one.
        #[arg(long)]
        template: Option<PathBuf>,
    },
    /// Print a short-lived link to the report page of a running `closedloop up`.
    ReportLink {
        #[arg(long, env = "CLOSEDLOOP_PORT", default_value_t = 8080)]
        port: u16,
        #[arg(long, env = "CLOSEDLOOP_HOST", default_value = "127.0.0.1")]
        host: IpAddr,
        #[arg(long, env = "CLOSEDLOOP_DATA_DIR", default_value = ".closedloop")]
        data_dir: PathBuf,
        /// The tenant (default: the demo tenant, else the default one).
        #[arg(long)]
        tenant: Option<String>,
        /// How long the link works (1 to 1440 minutes).
        #[arg(long, default_value_t = 15)]
        minutes: i64,
    },
    /// Print the signature header for a generic webhook body read from stdin.
    SignWebhook {
        /// The tenant's webhook secret (see the tenant file in the data directory).
        #[arg(long, env = "CLOSEDLOOP_WEBHOOK_SECRET")]
        secret: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,closedloop=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Up {
            port,
            host,
            data_dir,
            demo,
            template,
        } => {
            let mut config = RunnerConfig::new(&data_dir, SocketAddr::new(host, port));
            config.demo = demo;
            if let Some(path) = template {
                match std::fs::read_to_string(&path) {
                    Ok(yaml) => config.template_yaml = yaml,
                    Err(e) => {
                        eprintln!("closedloop: cannot read {}: {e}", path.display());
                        return ExitCode::FAILURE;
                    }
                }
            }
            match runner::start(config).await {
                Ok(running) => {
                    print_banner(&running.info);
                    running.run_until_signal().await;
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("closedloop: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::ReportLink {
            port,
            host,
            data_dir,
            tenant,
            minutes,
        } => {
            let base = format!("http://{}", SocketAddr::new(host, port));
            let link = match closedloop::report_link::credentials(&data_dir, tenant.as_deref()) {
                Ok(c) => closedloop::report_link::request_link(&base, &c.api_key, minutes).await,
                Err(e) => Err(e),
            };
            match link {
                Ok(url) => {
                    println!("{url}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("closedloop: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::SignWebhook { secret } => {
            let mut body = Vec::new();
            if let Err(e) = std::io::stdin().read_to_end(&mut body) {
                eprintln!("closedloop: cannot read stdin: {e}");
                return ExitCode::FAILURE;
            }
            let now = chrono::Utc::now().timestamp();
            println!(
                "{}",
                closedloop_core::signature::sign_timestamped(secret.as_bytes(), now, &body)
            );
            ExitCode::SUCCESS
        }
    }
}

fn print_banner(info: &runner::StartupInfo) {
    let t = &info.tenant;
    println!("closedloop is up\n");
    println!("  HTTP            {}", info.base_url);
    println!("  admin API       {}/admin/v1/health", info.base_url);
    println!(
        "  webhooks        {}/webhooks/{}/generic",
        info.base_url, t.tenant
    );
    println!("  store           {}", info.store_path.display());
    println!("  outbox (mail)   {}", info.outbox_dir.display());
    println!("  dead letters    {}", info.dead_letter_dir.display());
    println!();
    println!("  tenant          {}", t.tenant);
    println!("  admin API key   {}", t.api_key);
    println!("  webhook secret  {}", t.webhook_secret);
    println!();
    println!(
        "  try:  curl -H 'Authorization: Bearer {}' {}/admin/v1/settings",
        t.api_key, info.base_url
    );
    if let Some(first) = info.demo_tickets.first() {
        println!(
            "  try:  curl -X POST {}/sandbox/tickets/{first}/close",
            info.base_url
        );
        println!(
            "        then open the newest .eml in {}",
            info.outbox_dir.display()
        );
    }
    println!("\n  Ctrl-C stops it; nothing queued is lost.");
}
