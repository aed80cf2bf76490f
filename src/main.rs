//! The `sse-relay` binary: parse the CLI, load and validate the config (exit 2 naming file, key
//! and reason, before binding anything), start logging, run the relay, drain on SIGTERM/SIGINT.
//!
//! It never builds a component itself: [`App`] does, so tests can drive the same code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sse_relay::app::App;
use sse_relay::config::{LogConfig, LogFormat, Settings};

/// Edge relay for Server-Sent Events: one upstream subscription per topic, fanned out over TLS
/// HTTP/2.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// The TOML config file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a config file and exit (0: valid, 2: invalid).
    CheckConfig {
        /// The TOML config file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (path, check_only) = match (cli.command, cli.config) {
        (Some(Command::CheckConfig { file }), _) => (file, true),
        (None, Some(file)) => (file, false),
        (None, None) => {
            eprintln!("sse-relay: give --config FILE (or: sse-relay check-config FILE)");
            return ExitCode::from(2);
        }
    };
    let settings = match Settings::load(&path) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("sse-relay: invalid config: {e}");
            return ExitCode::from(2);
        }
    };
    if check_only {
        println!("{}: ok", path.display());
        return ExitCode::SUCCESS;
    }
    init_logging(&settings.log);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sse-relay: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sse-relay: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let demo = settings.listeners.demo_origin.is_some();
    let first_route = settings
        .edge
        .router
        .routes()
        .first()
        .map_or("/", |r| r.path().as_str())
        .to_string();
    let app = App::bind(settings).await?;
    let addr = app.tls_addr();
    let port = addr.port();
    tracing::info!(%addr, "listening (TLS; ALPN h2, http/1.1)");
    if let Some(plain) = app.plaintext_addr() {
        tracing::info!(addr = %plain, "listening (plaintext HTTP/1.1 and h2c)");
    }
    tracing::info!(addr = %app.admin_addr(), "admin listening: /metrics /healthz /readyz /topics /");
    if let Some(cert) = app.dev_cert_path() {
        tracing::warn!(
            "DEV CERTIFICATE: self-signed, generated at start, written to {} — not for production; set server.tls_cert and server.tls_key",
            cert.display()
        );
        let path = first_route.replace("{topic}", if demo { "clock" } else { "TOPIC" });
        println!("Try:");
        println!("  curl --http2 -k -N https://localhost:{port}{path}");
        println!(
            "  curl --http2 --cacert {} -N https://localhost:{port}{path}",
            cert.display()
        );
        if demo {
            println!(
                "  curl --http2 -k -N https://localhost:{port}{}",
                first_route.replace("{topic}", "ticker")
            );
        }
    }
    app.run(shutdown_signal()).await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler can be installed");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown signal received: draining (signal again to exit at once)");
    tokio::spawn(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::warn!("second signal: exiting without finishing the drain");
        std::process::exit(130);
    });
    #[cfg(unix)]
    tokio::spawn(async {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            term.recv().await;
            tracing::warn!("second signal: exiting without finishing the drain");
            std::process::exit(143);
        }
    });
}

/// Logging: filter from `SSE_RELAY_LOG` (else `[log] filter`), format from
/// `SSE_RELAY_LOG_FORMAT` (else `[log] format`): `text` or `json` (one object per line).
fn init_logging(config: &LogConfig) {
    let directives = std::env::var("SSE_RELAY_LOG").unwrap_or_else(|_| config.filter.clone());
    // The h2 crate warns once per misbehaving connection, outside our rate limits: an attacker
    // could flood the log. Its errors still show; say `h2=…` in the filter to see more.
    let directives = if directives.contains("h2") {
        directives
    } else {
        format!("{directives},h2=error")
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,h2=error"));
    let json = match std::env::var("SSE_RELAY_LOG_FORMAT").ok().as_deref() {
        Some("json") => true,
        Some("text") => false,
        _ => config.format == LogFormat::Json,
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder.json().with_current_span(true).init();
    } else {
        builder.init();
    }
}
