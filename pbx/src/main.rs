//! `pbx`: the one binary of the platform. Subcommands run everything in one
//! process (`serve`), the SIP proxy or the control plane alone (scale-out on
//! PostgreSQL), migrations, and the operator's shell administration. This file
//! is the edge: it turns every error into one line on stderr and an exit code.

#![forbid(unsafe_code)]

mod admin;
mod config;
mod data_dir;
mod demo;
mod lamps;
mod live;
mod serve;
mod settings;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};
use crate::serve::Mode;
use crate::settings::{Cli, Command};

/// Messages are parsed on one thread and freed on another (a response on the
/// timer's thread, a context when its last timer fires): mimalloc's
/// per-thread heaps take those frees without the arena locks glibc's malloc
/// waits on, which stalled the node after an overload.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::resolve(cli.settings) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pbx: {e:#}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pbx: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pbx: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve { demo } => serve::run(config, Mode::AllInOne { demo }).await,
        Command::SipProxy => serve::run(config, Mode::SipProxy).await,
        Command::ControlPlane => serve::run(config, Mode::ControlPlane).await,
        Command::MediaRelay { ng_listen } => {
            let socket = tokio::net::UdpSocket::bind(&ng_listen)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen for ng control on {ng_listen}: {e}"))?;
            let relay = pbx_media::Relay::new(config.media.relay.clone());
            println!(
                "pbx media relay running (ng control on {}, RTP ports {}-{})",
                socket.local_addr()?,
                config.media.relay.ports.0,
                config.media.relay.ports.1
            );
            tokio::select! {
                served = pbx_media::ng::serve(relay.clone(), socket) => served?,
                _ = tokio::signal::ctrl_c() => {}
            }
            relay.clear();
            Ok(())
        }
        Command::Migrate => {
            let store = serve::open_store(&config).await?;
            println!(
                "database schema is at version {}",
                pbx_store::Store::schema_version()
            );
            store.close().await;
            Ok(())
        }
        Command::GenerateSecretKey => {
            println!("{}", pbx_store::secrets::SecretBox::generate_key());
            Ok(())
        }
        Command::Admin(cmd) => {
            let store = serve::open_store(&config).await?;
            let result = admin::run(&store, cmd, &config.operator_hosts).await;
            store.close().await;
            result
        }
    }
}

fn init_logging(config: &Config) {
    // The filter was validated in Config::resolve.
    // sqlx reports harmless notices ("already exists, skipping") at info.
    let directives = format!("sqlx=warn,{}", config.log);
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// An error and its causes on one line.
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let mut text = cause.to_string().replace('\n', " ");
        // "(os error 98)" says nothing the message before it does not.
        if let Some(i) = text.find(" (os error ") {
            if text.ends_with(')') {
                text.truncate(i);
            }
        }
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}
