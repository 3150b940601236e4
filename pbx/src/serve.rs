//! Running the platform: all-in-one (`serve`), or one part per process
//! (`sip-proxy`, `control-plane`) on a shared PostgreSQL. Start-up refuses
//! with one line when something is wrong; SIGINT/SIGTERM stop the node
//! gracefully: listeners close, work in flight finishes, queues are flushed,
//! the database is closed last.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use pbx_control_plane::api::auth::RateLimit;
use pbx_control_plane::api::events::{follow_changes, EventHub};
use pbx_control_plane::api::ApiState;
use pbx_control_plane::webhooks::{Deliverer, WebhookConfig};
use pbx_control_plane::{metrics::Registry, AppState};
use pbx_sip_proxy::{SipConfig, SipProxy};
use pbx_store::{Engine, Store, StoreConfig};
use tokio::sync::watch;

use crate::config::Config;
use crate::demo;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    AllInOne { demo: bool },
    SipProxy,
    ControlPlane,
}

impl Mode {
    fn runs_http(self) -> bool {
        !matches!(self, Mode::SipProxy)
    }

    fn runs_sip(self) -> bool {
        !matches!(self, Mode::ControlPlane)
    }
}

/// Opens and migrates the database named by the configuration.
pub async fn open_store(config: &Config) -> Result<Store> {
    Ok(open_store_with_key(config).await?.0)
}

/// Like [`open_store`], also returning the platform secret key.
async fn open_store_with_key(config: &Config) -> Result<(Store, [u8; 32])> {
    if config.engine == Engine::Sqlite {
        crate::data_dir::prepare(&config.data_dir)?;
    }
    let secret_key = crate::data_dir::secret_key(config)?;
    let store = Store::connect(&StoreConfig {
        database_url: config.database_url.clone(),
        max_connections: config.database_max_connections,
        secret_key,
    })
    .await
    .map_err(|e| anyhow::anyhow!("cannot open the database (database_url): {e}"))?;
    store
        .migrate()
        .await
        .map_err(|e| anyhow::anyhow!("cannot migrate the database: {e}"))?;
    Ok((store, secret_key))
}

fn sip_config(config: &Config, secret: [u8; 32]) -> SipConfig {
    let mut sip = SipConfig::new(
        &config.node_id,
        secret,
        config.sip_udp.clone(),
        config.sip_tcp.clone(),
    );
    sip.advertise.clone_from(&config.sip_advertise);
    sip.digest
        .algorithms
        .clone_from(&config.sip_digest_algorithms);
    sip.digest.check_uri = config.sip_digest_check_uri;
    sip.digest
        .md5_only_user_agents
        .clone_from(&config.sip_digest_md5_only_user_agents);
    sip.registration.min_expires = config.sip_min_expires;
    sip.registration.max_expires = config.sip_max_expires;
    sip.registration.default_expires = config.sip_max_expires.min(3600).max(config.sip_min_expires);
    sip.max_transactions = config.sip_max_transactions;
    sip.max_call_duration = config.sip_max_call_duration;
    sip.guard = config.sip_guard.clone();
    sip.media = config.media.clone();
    sip.spool_dir = config.data_dir.join("spool");
    sip
}

/// Live events a node keeps for clients that reconnect (at most; the
/// retention time usually ends them sooner).
const EVENTS_HELD: usize = 100_000;

pub async fn run(config: Config, mode: Mode) -> Result<()> {
    if !matches!(mode, Mode::AllInOne { .. }) && config.engine == Engine::Sqlite {
        bail!(
            "running the parts separately needs a shared PostgreSQL: set --database-url / PBX_DATABASE_URL \
             to postgres://…, or use `pbx serve` for one process on SQLite"
        );
    }
    if mode.runs_sip() && config.engine != Engine::Sqlite {
        // The call-record spool is local to each proxy node, whatever the database.
        crate::data_dir::prepare(&config.data_dir)?;
    }
    let (store, secret) = open_store_with_key(&config).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics = Arc::new(Registry::default());

    let sip = if mode.runs_sip() && (!config.sip_udp.is_empty() || !config.sip_tcp.is_empty()) {
        let proxy = SipProxy::start(sip_config(&config, secret), store.clone())
            .await
            .map_err(|e| anyhow::anyhow!("{e} (sip_udp / sip_tcp)"))?;
        let proxy = Arc::new(proxy);
        let source = proxy.clone();
        metrics.add_source(Arc::new(
            move |w: &mut pbx_control_plane::metrics::Writer| {
                for (name, help, kind, value) in source.metrics() {
                    w.single(&name, kind, help, value as f64);
                }
            },
        ));
        Some(proxy)
    } else {
        None
    };
    // The media applications (voicemail) answer calls the proxy routes to them.
    let apps = match &sip {
        Some(proxy) => start_applications(&config, proxy, &store).await?,
        None => None,
    };
    if let Some(apps) = apps.clone() {
        metrics.add_source(Arc::new(
            move |w: &mut pbx_control_plane::metrics::Writer| {
                let calls = apps.calls() as f64;
                let subscriptions = apps.subscriptions() as f64;
                w.single(
                    "pbx_app_calls",
                    "gauge",
                    "Calls the application server is in (voicemail, rooms, *97/*98).",
                    calls,
                );
                w.single(
                    "pbx_app_subscriptions",
                    "gauge",
                    "Phones' subscriptions held (voicemail lamps, busy lamps).",
                    subscriptions,
                );
            },
        ));
    }

    let mut http_bound = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    if mode.runs_http() {
        let hub = Arc::new(EventHub::new(EVENTS_HELD, config.api_event_retention));
        // Helpers that end with the process: nothing waits for them at shutdown.
        tokio::spawn(follow_changes(store.clone(), hub.clone()));
        let deliverer = Deliverer::new(
            store.clone(),
            WebhookConfig {
                allow_private_targets: config.webhook_allow_private_targets,
                extra_roots_pem: config.webhook_extra_roots.clone(),
                ..WebhookConfig::default()
            },
        )
        .map_err(|e| anyhow::anyhow!("{e} (webhook_ca_file)"))?;
        tokio::spawn(deliverer.run(stop_rx.clone()));
        if let Some(sip) = &sip {
            tokio::spawn(crate::live::relay(sip.events().subscribe(), hub.clone()));
        }
        let console = Arc::new(
            pbx_control_plane::console::Console::new(
                phone_proxy(&config, sip.as_deref()),
                config.mail.as_ref(),
            )
            .map_err(|e| anyhow::anyhow!("the console's theme: {e}"))?,
        );
        tokio::spawn(pbx_control_plane::console::look::follow_changes(
            store.clone(),
            console.clone(),
        ));
        tokio::spawn(pbx_control_plane::notices::run(
            store.clone(),
            console.clone(),
            audio_files(&config),
            stop_rx.clone(),
        ));
        tokio::spawn(pbx_control_plane::recordings::sweep(
            store.clone(),
            audio_files(&config),
            stop_rx.clone(),
        ));
        let state = AppState {
            store: store.clone(),
            metrics: metrics.clone(),
            node_id: config.node_id.as_str().into(),
            api: Arc::new(
                ApiState::new(
                    RateLimit::new(config.api_rate_limit, config.api_rate_burst),
                    hub,
                )
                .with_trusted_proxies(config.http_trusted_proxies.clone()),
            ),
            console,
            audio: audio_files(&config),
        };
        for addr in &config.http_listen {
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                anyhow::anyhow!("cannot listen for HTTP on {addr} (http_listen): {e}")
            })?;
            http_bound.push(listener.local_addr().unwrap_or(*addr));
            let state = state.clone();
            let mut stop = stop_rx.clone();
            tasks.spawn(async move {
                let shutdown = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                pbx_control_plane::serve(listener, state, shutdown)
                    .await
                    .context("HTTP server failed")
            });
        }
    }

    let demo_info = match mode {
        Mode::AllInOne { demo: true } => {
            let endpoints = demo::Endpoints {
                http_port: http_bound.first().map(|a| a.port()).unwrap_or(8080),
                sip_proxy: sip_contact_address(&config, sip.as_deref()),
                sip_transports: sip_transports(&config),
            };
            Some(demo::ensure(&store, &config.data_dir, &config.operator_hosts, &endpoints).await?)
        }
        _ => None,
    };

    print_banner(
        &config,
        mode,
        &http_bound,
        sip.as_deref(),
        demo_info.as_ref(),
        &store,
    )
    .await;
    tracing::info!(node = %config.node_id, ?mode, "started");

    tokio::select! {
        () = shutdown_signal() => tracing::info!("shutting down"),
        Some(result) = tasks.join_next() => {
            // A server task ended on its own: that is a failure of this node.
            let _ = stop_tx.send(true);
            if let Some(sip) = &sip {
                sip.flush().await;
            }
            store.close().await;
            return match result {
                Ok(Ok(())) => Err(anyhow::anyhow!("a listener stopped unexpectedly")),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(anyhow::anyhow!("a server task failed: {e}")),
            };
        }
    }
    let _ = stop_tx.send(true);
    while let Some(result) = tasks.join_next().await {
        if let Ok(Err(e)) = result {
            tracing::warn!(error = %e, "during shutdown");
        }
    }
    if let Some(sip) = &sip {
        // Registrations not yet written go to the database before it closes.
        sip.flush().await;
        sip.close_media().await;
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Where recordings live: `<data dir>/audio` (shared by the SIP and the
/// control-plane processes of one machine).
fn audio_files(config: &Config) -> pbx_store::audio_files::AudioFiles {
    pbx_store::audio_files::AudioFiles::new(config.data_dir.join("audio"))
}

/// Starts the media application server beside the proxy, on loopback, and
/// tells the proxy where it is. None when the proxy has no UDP socket.
async fn start_applications(
    config: &Config,
    proxy: &SipProxy,
    store: &Store,
) -> Result<Option<pbx_apps::AppServer>> {
    let proxies = proxy.udp_addrs();
    let Some(first) = proxies.first() else {
        return Ok(None);
    };
    let listen: SocketAddr = if first.is_ipv4() {
        (std::net::Ipv4Addr::LOCALHOST, 0).into()
    } else {
        (std::net::Ipv6Addr::LOCALHOST, 0).into()
    };
    let apps = pbx_apps::AppServer::start(
        pbx_apps::AppConfig {
            listen,
            proxies,
            audio: audio_files(config),
        },
        store.clone(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot start the media applications: {e}"))?;
    proxy.set_applications(apps.address());
    apps.set_pickup(Arc::new(proxy.pick_up_handle()));
    tokio::spawn(crate::lamps::follow(
        proxy.events().subscribe(),
        apps.clone(),
    ));
    // The relay records calls into the same audio store, after the
    // announcement in the customer's language.
    let (en, de): (Arc<[i16]>, Arc<[i16]>) = (
        pbx_apps::prompts::Prompts::for_language("en")
            .call_recorded()
            .into(),
        pbx_apps::prompts::Prompts::for_language("de")
            .call_recorded()
            .into(),
    );
    proxy.set_audio(pbx_sip_proxy::core::NodeAudio {
        files: audio_files(config),
        recording_announcement: Box::new(move |language| {
            if language.starts_with("de") {
                de.clone()
            } else {
                en.clone()
            }
        }),
    });
    Ok(Some(apps))
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

fn sip_transports(config: &Config) -> Vec<&'static str> {
    let mut t = Vec::new();
    if !config.sip_udp.is_empty() {
        t.push("udp");
    }
    if !config.sip_tcp.is_empty() {
        t.push("tcp");
    }
    t
}

/// The host:port a phone on this machine should send SIP to.
/// What the console tells phones to send SIP to: the advertised address, or
/// this node's own SIP listener; nothing for a control-plane-only node
/// without one (phones then find the proxy from their SIP domain).
fn phone_proxy(config: &Config, sip: Option<&SipProxy>) -> Option<String> {
    if config.sip_advertise.is_none() && sip.is_none() {
        return None;
    }
    Some(sip_contact_address(config, sip))
}

fn sip_contact_address(config: &Config, sip: Option<&SipProxy>) -> String {
    if let Some(adv) = &config.sip_advertise {
        return adv.clone();
    }
    let bound = sip
        .map(|s| {
            s.udp_addrs()
                .into_iter()
                .chain(s.tcp_addrs())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let addr = bound
        .first()
        .or(config.sip_udp.first())
        .or(config.sip_tcp.first())
        .copied();
    match addr {
        Some(a) => reachable(a).to_string(),
        None => "(SIP disabled)".into(),
    }
}

/// A wildcard listen address as a local client would reach it.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], a.port()))
        }
        SocketAddr::V6(a) if a.ip().is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port()))
        }
        other => other,
    }
}

async fn print_banner(
    config: &Config,
    mode: Mode,
    http: &[SocketAddr],
    sip: Option<&SipProxy>,
    demo: Option<&demo::DemoInfo>,
    store: &Store,
) {
    let mut out = String::new();
    let engine = match config.engine {
        Engine::Sqlite => format!("SQLite in {}", config.data_dir.display()),
        Engine::Postgres => "PostgreSQL".to_owned(),
    };
    out.push_str(&format!(
        "pbx {} running ({mode:?}, node {}, {engine})\n",
        env!("CARGO_PKG_VERSION"),
        config.node_id
    ));
    for addr in http {
        let a = reachable(*addr);
        out.push_str(&format!(
            "  console and API   http://{a}/   (health: /healthz, metrics: /metrics)\n"
        ));
    }
    if let Some(sip) = sip {
        for a in sip.udp_addrs() {
            out.push_str(&format!("  SIP               udp {a}\n"));
        }
        for a in sip.tcp_addrs() {
            out.push_str(&format!("  SIP               tcp {a}\n"));
        }
    }
    match demo {
        Some(d) => {
            out.push_str(&format!(
                "\nDemo data (also in {}):\n",
                demo::json_path(&config.data_dir).display()
            ));
            let login = |l: &demo::LoginInfo| {
                format!(
                    "{} / {}",
                    l.email,
                    l.password
                        .as_deref()
                        .unwrap_or("(password changed since seeding)")
                )
            };
            let rows = [
                (
                    "operator",
                    d.operator.name.as_str(),
                    d.operator.console_url.as_str(),
                    login(&d.operator.login),
                ),
                (
                    "reseller",
                    d.reseller.name.as_str(),
                    d.reseller.console_url.as_str(),
                    login(&d.reseller.login),
                ),
                (
                    "customer admin",
                    d.customer.name.as_str(),
                    d.customer.console_url.as_str(),
                    login(&d.customer.admin_login),
                ),
                (
                    "customer user",
                    d.customer.name.as_str(),
                    d.customer.console_url.as_str(),
                    login(&d.customer.user_login),
                ),
            ];
            for (role, name, url, login) in rows {
                out.push_str(&format!("  {role:<15} {name:<26} {url:<34} {login}\n"));
            }
            out.push_str(&format!(
                "\n  Softphones: domain {}, outbound proxy {} ({})\n",
                d.customer.sip_domain,
                d.sip.proxy,
                d.sip.transports.join("/")
            ));
            for e in &d.extensions {
                out.push_str(&format!(
                    "    {}  {:<14} user {:<6} password {}\n",
                    e.number, e.display_name, e.sip_user, e.password
                ));
            }
        }
        None if mode.runs_http() => {
            let admins = store.logins().count_operator_admins().await.unwrap_or(0);
            if admins == 0 {
                out.push_str("\nNo operator login yet: create one with\n  pbx admin create-operator --email you@example.net\n");
            }
        }
        None => {}
    }
    print!("{out}");
}
