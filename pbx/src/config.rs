//! Settings resolved into a checked configuration. Every refusal names the
//! option (flag, environment variable and file key) and the value.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use pbx_store::Engine;

use crate::settings::Settings;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The checked configuration of one process.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub database_url: String,
    pub engine: Engine,
    pub database_max_connections: u32,
    /// The key as configured; None means "use or create DATA_DIR/secret.key".
    pub secret_key: Option<[u8; pbx_store::secrets::KEY_LEN]>,
    pub node_id: String,
    pub http_listen: Vec<SocketAddr>,
    pub operator_hosts: Vec<String>,
    /// Proxies whose X-Forwarded-For is believed (sign-in throttles per client).
    pub http_trusted_proxies: Vec<pbx_control_plane::client::Block>,
    pub sip_udp: Vec<SocketAddr>,
    pub sip_tcp: Vec<SocketAddr>,
    pub sip_advertise: Option<String>,
    pub sip_digest_algorithms: Vec<pbx_sip_proxy::digest::Algorithm>,
    pub sip_digest_md5_only_user_agents: Vec<String>,
    pub sip_digest_check_uri: bool,
    pub sip_min_expires: u32,
    pub sip_max_expires: u32,
    pub sip_max_transactions: usize,
    pub sip_max_call_duration: std::time::Duration,
    pub sip_guard: pbx_sip_proxy::guard::GuardConfig,
    pub media: pbx_sip_proxy::config::MediaConfig,
    pub api_rate_limit: u32,
    pub api_rate_burst: u32,
    pub api_event_retention: std::time::Duration,
    pub webhook_allow_private_targets: bool,
    /// Extra root certificates for webhook endpoints (PEM), read at start.
    pub webhook_extra_roots: Vec<u8>,
    /// The console's e-mail relay; None: no e-mail (no password resets).
    pub mail: Option<pbx_control_plane::mail::MailConfig>,
    pub log: String,
    pub log_format: LogFormat,
}

/// How an option is spelled in each of the three places it can be set.
fn option_names(key: &str) -> String {
    format!(
        "{key} (--{}, PBX_{})",
        key.replace('_', "-"),
        key.to_ascii_uppercase()
    )
}

fn invalid(key: &str, value: &str, why: &str) -> anyhow::Error {
    anyhow::anyhow!("invalid {}: {value:?} {why}", option_names(key))
}

/// `value` of option `key` if it lies in `range`.
fn within(key: &str, value: u64, range: std::ops::RangeInclusive<u64>) -> Result<u64> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(invalid(
            key,
            &value.to_string(),
            &format!("must be {} to {}", range.start(), range.end()),
        ))
    }
}

/// The media relay's settings: policy, port range, addresses, timeouts.
fn media_config(settings: &Settings) -> Result<pbx_sip_proxy::config::MediaConfig> {
    use std::net::IpAddr;
    let mut m = pbx_sip_proxy::config::MediaConfig::default();
    if let Some(mode) = &settings.media_anchor {
        m.anchor = pbx_store::media::AnchorMode::parse(mode)
            .ok_or_else(|| invalid("media_anchor", mode, "must be always, nat or never"))?;
    }
    if let Some(range) = &settings.rtp_ports {
        let parsed = range.split_once('-').and_then(|(a, b)| {
            Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?))
        });
        match parsed {
            Some((first, last)) if first >= 1024 && last > first => m.relay.ports = (first, last),
            _ => {
                return Err(invalid(
                    "rtp_ports",
                    range,
                    "must be FIRST-LAST with 1024 <= FIRST < LAST <= 65535",
                ))
            }
        }
    }
    let ips = |key: &str, values: &Option<Vec<String>>| -> Result<Vec<IpAddr>> {
        let mut out: Vec<IpAddr> = Vec::new();
        for v in values.iter().flatten() {
            let ip: IpAddr = v
                .trim()
                .parse()
                .map_err(|_| invalid(key, v, "must be IP addresses, at most one per family"))?;
            if out.iter().any(|o| o.is_ipv4() == ip.is_ipv4()) {
                return Err(invalid(key, v, "names a second address of one family"));
            }
            out.push(ip);
        }
        Ok(out)
    };
    for ip in ips("rtp_address", &settings.rtp_address)? {
        match ip {
            IpAddr::V4(a) => m.relay.bind_v4 = a,
            IpAddr::V6(a) => m.relay.bind_v6 = a,
        }
    }
    for ip in ips("rtp_advertised_address", &settings.rtp_advertised_address)? {
        match ip {
            IpAddr::V4(a) => m.relay.advertise_v4 = Some(a),
            IpAddr::V6(a) => m.relay.advertise_v6 = Some(a),
        }
    }
    if let Some(s) = settings.rtp_timeout {
        m.relay.timeout = std::time::Duration::from_secs(within("rtp_timeout", s, 5..=86_400)?);
    }
    if let Some(s) = settings.rtp_hold_timeout {
        m.relay.hold_timeout =
            std::time::Duration::from_secs(within("rtp_hold_timeout", s, 5..=7 * 86_400)?);
    }
    m.relay.music_on_hold = settings.music_on_hold.unwrap_or(true);
    Ok(m)
}

fn addresses(key: &str, values: Option<Vec<String>>, default: &[&str]) -> Result<Vec<SocketAddr>> {
    let values = values.unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect());
    values
        .iter()
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    key,
                    v,
                    "is not an IP address with a port, such as 0.0.0.0:5060 or [::]:5060",
                )
            })
        })
        .collect()
}

/// Reads the TOML file named by `--config`, if any.
pub fn read_file(path: &Path) -> Result<Settings> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str::<Settings>(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| {
                text.as_bytes()[..s.start.min(text.len())]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1
            })
            .unwrap_or(0);
        anyhow::anyhow!(
            "config file {}, line {line}: {}",
            path.display(),
            e.message().replace('\n', " ")
        )
    })
}

impl Config {
    pub fn resolve(settings: Settings) -> Result<Config> {
        let sip_guard = guard_config(&settings)?;
        let media = media_config(&settings)?;
        let settings = match &settings.config {
            Some(path) => {
                let file = read_file(path)?;
                settings.or(file)
            }
            None => settings,
        };
        let data_dir = settings
            .data_dir
            .unwrap_or_else(|| PathBuf::from("pbx-data"));
        if data_dir.as_os_str().is_empty() {
            bail!("invalid {}: must not be empty", option_names("data_dir"));
        }
        let database_url = settings
            .database_url
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", data_dir.join("pbx.db").display()));
        let engine = Engine::from_url(&database_url).ok_or_else(|| {
            // The URL may carry a password: name only its scheme.
            let scheme = database_url.split(':').next().unwrap_or("");
            invalid(
                "database_url",
                &format!("{scheme}:…"),
                "must start with sqlite:// or postgres://",
            )
        })?;
        let database_max_connections = settings.database_max_connections.unwrap_or(10);
        if !(1..=1000).contains(&database_max_connections) {
            return Err(invalid(
                "database_max_connections",
                &database_max_connections.to_string(),
                "must be 1 to 1000",
            ));
        }
        let secret_key = match &settings.secret_key {
            Some(text) => Some(
                pbx_store::secrets::SecretBox::parse_key(text)
                    .map_err(|why| invalid("secret_key", "…", &why))?,
            ),
            None => None,
        };
        let node_id = settings.node_id.unwrap_or_else(default_node_id);
        if node_id.is_empty()
            || node_id.len() > 64
            || !node_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(invalid(
                "node_id",
                &node_id,
                "must be 1 to 64 letters, digits, '-', '_' or '.'",
            ));
        }
        let http_listen = addresses("http_listen", settings.http_listen, &["0.0.0.0:8080"])?;
        let sip_udp = addresses("sip_udp", settings.sip_udp, &["0.0.0.0:5060"])?;
        let sip_tcp = addresses("sip_tcp", settings.sip_tcp, &["0.0.0.0:5060"])?;
        let mut http_trusted_proxies = Vec::new();
        for text in settings.http_trusted_proxies.iter().flatten() {
            if text.trim().is_empty() {
                continue;
            }
            let block = pbx_control_plane::client::Block::parse(text).ok_or_else(|| {
                invalid(
                    "http_trusted_proxies",
                    text,
                    "must be addresses or blocks such as 10.0.0.0/8",
                )
            })?;
            http_trusted_proxies.push(block);
        }
        let operator_hosts: Vec<String> = settings
            .operator_hosts
            .unwrap_or_else(|| vec!["localhost".into(), "127.0.0.1".into()])
            .into_iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        for host in &operator_hosts {
            if !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
            {
                return Err(invalid(
                    "operator_hosts",
                    host,
                    "must be host names such as console.operator.example",
                ));
            }
        }
        if let Some(adv) = &settings.sip_advertise {
            if adv.is_empty() || adv.contains(|c: char| c.is_whitespace() || c == '/' || c == '@') {
                return Err(invalid(
                    "sip_advertise",
                    adv,
                    "must be a host name or IP address, optionally with :port",
                ));
            }
        }
        let sip_digest_algorithms = match &settings.sip_digest_algorithms {
            None => vec![
                pbx_sip_proxy::digest::Algorithm::Sha256,
                pbx_sip_proxy::digest::Algorithm::Md5,
            ],
            Some(list) => {
                let mut out = Vec::new();
                for name in list.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
                    let alg =
                        pbx_sip_proxy::digest::Algorithm::parse(Some(name)).ok_or_else(|| {
                            invalid("sip_digest_algorithms", name, "must be SHA-256 or MD5")
                        })?;
                    if !out.contains(&alg) {
                        out.push(alg);
                    }
                }
                if out.is_empty() {
                    return Err(invalid(
                        "sip_digest_algorithms",
                        "",
                        "must name at least one of SHA-256, MD5",
                    ));
                }
                out
            }
        };
        let sip_min_expires = settings.sip_min_expires.unwrap_or(60);
        let sip_max_expires = settings.sip_max_expires.unwrap_or(3600);
        if sip_min_expires == 0 || sip_min_expires > sip_max_expires {
            return Err(invalid(
                "sip_min_expires",
                &sip_min_expires.to_string(),
                "must be 1 or more and at most sip_max_expires",
            ));
        }
        if sip_max_expires > 86_400 * 7 {
            return Err(invalid(
                "sip_max_expires",
                &sip_max_expires.to_string(),
                "must be at most 604800 (a week)",
            ));
        }
        let sip_max_transactions = settings.sip_max_transactions.unwrap_or(200_000);
        if sip_max_transactions < 100 {
            return Err(invalid(
                "sip_max_transactions",
                &sip_max_transactions.to_string(),
                "must be at least 100",
            ));
        }
        let max_call = settings.sip_max_call_duration.unwrap_or(4 * 3600);
        if !(10..=7 * 86_400).contains(&max_call) {
            return Err(invalid(
                "sip_max_call_duration",
                &max_call.to_string(),
                "must be between 10 seconds and a week",
            ));
        }
        let api_rate_limit = settings.api_rate_limit.unwrap_or(20);
        let api_rate_burst = settings.api_rate_burst.unwrap_or(100);
        for (name, value) in [
            ("api_rate_limit", api_rate_limit),
            ("api_rate_burst", api_rate_burst),
        ] {
            if !(1..=1_000_000).contains(&value) {
                return Err(invalid(name, &value.to_string(), "must be 1 to 1000000"));
            }
        }
        let api_event_retention = settings.api_event_retention.unwrap_or(600);
        if !(10..=86_400).contains(&api_event_retention) {
            return Err(invalid(
                "api_event_retention",
                &api_event_retention.to_string(),
                "must be between 10 seconds and a day",
            ));
        }
        let webhook_extra_roots = match &settings.webhook_ca_file {
            Some(path) => std::fs::read(path).map_err(|e| {
                invalid(
                    "webhook_ca_file",
                    &path.display().to_string(),
                    &format!("cannot be read ({e})"),
                )
            })?,
            None => Vec::new(),
        };
        let mail = match &settings.smtp_relay {
            None => None,
            Some(relay) => {
                let (host, port) = relay
                    .rsplit_once(':')
                    .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse::<u16>().ok()?)))
                    .filter(|(h, _)| !h.is_empty())
                    .ok_or_else(|| invalid("smtp_relay", relay, "must be host:port"))?;
                if let Some(from) = &settings.smtp_from {
                    if !pbx_control_plane::mail::is_address(from) {
                        return Err(invalid("smtp_from", from, "must be an e-mail address"));
                    }
                }
                Some(pbx_control_plane::mail::MailConfig {
                    relay_host: host.to_owned(),
                    relay_port: port,
                    from_address: settings.smtp_from.clone(),
                })
            }
        };
        let log = settings.log.unwrap_or_else(|| "info".to_owned());
        tracing_subscriber::EnvFilter::try_new(&log)
            .map_err(|e| invalid("log", &log, &format!("is not a log filter ({e})")))?;
        let log_format = match settings.log_format.as_deref().unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => return Err(invalid("log_format", other, "must be text or json")),
        };
        Ok(Config {
            data_dir,
            database_url,
            engine,
            database_max_connections,
            secret_key,
            node_id,
            http_listen,
            operator_hosts,
            http_trusted_proxies,
            sip_udp,
            sip_tcp,
            sip_advertise: settings.sip_advertise,
            sip_digest_algorithms,
            sip_digest_md5_only_user_agents: settings
                .sip_digest_md5_only_user_agents
                .unwrap_or_else(|| vec!["baresip".to_owned()])
                .iter()
                .map(|p| p.trim().to_ascii_lowercase())
                .filter(|p| !p.is_empty())
                .collect(),
            sip_digest_check_uri: settings.sip_digest_check_uri.unwrap_or(true),
            sip_min_expires,
            sip_max_expires,
            sip_max_transactions,
            sip_max_call_duration: std::time::Duration::from_secs(max_call),
            sip_guard,
            media,
            api_rate_limit,
            api_rate_burst,
            api_event_retention: std::time::Duration::from_secs(api_event_retention),
            webhook_allow_private_targets: settings.webhook_allow_private_targets.unwrap_or(false),
            webhook_extra_roots,
            mail,
            log,
            log_format,
        })
    }
}

/// The abuse guard's settings, each checked against bounds that keep it useful.
fn guard_config(settings: &Settings) -> Result<pbx_sip_proxy::guard::GuardConfig> {
    let mut g = pbx_sip_proxy::guard::GuardConfig::default();
    let secs = |s: u64| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX);
    g.enabled = settings.sip_guard.unwrap_or(true);
    if let Some(n) = settings.sip_guard_auth_failures {
        g.auth_failures = within(
            "sip_guard_auth_failures",
            n.into(),
            2..=u64::from(pbx_store::abuse::MAX_AUTH_FAILURES),
        )? as u32;
    }
    if let Some(s) = settings.sip_guard_failure_window {
        g.failure_window = secs(within("sip_guard_failure_window", s, 10..=86_400)?);
    }
    if let Some(times) = &settings.sip_guard_ban_times {
        if times.is_empty() || times.len() > 10 {
            return Err(invalid(
                "sip_guard_ban_times",
                &format!("{times:?}"),
                "must be 1 to 10 durations",
            ));
        }
        g.ban_steps = times
            .iter()
            .map(|t| within("sip_guard_ban_times", *t, 10..=30 * 86_400).map(secs))
            .collect::<Result<_>>()?;
    }
    if let Some(n) = settings.sip_guard_account_failures {
        g.account_failures = within(
            "sip_guard_account_failures",
            n.into(),
            2..=u64::from(pbx_store::abuse::MAX_ACCOUNT_FAILURES),
        )? as u32;
    }
    if let Some(s) = settings.sip_guard_protection {
        g.protection = secs(within("sip_guard_protection", s, 60..=7 * 86_400)?);
    }
    if let Some(n) = settings.sip_guard_request_rate {
        g.budget.rate = within("sip_guard_request_rate", n.into(), 1..=10_000_000)? as u32;
    }
    if let Some(n) = settings.sip_guard_request_burst {
        g.budget.burst = within("sip_guard_request_burst", n.into(), 1..=10_000_000)? as u32;
    }
    if let Some(n) = settings.sip_guard_challenges {
        g.challenges = within("sip_guard_challenges", n.into(), 1..=10_000_000)? as u32;
    }
    for text in settings.sip_guard_allow.iter().flatten() {
        if text.trim().is_empty() {
            continue;
        }
        g.allow
            .push(pbx_store::net::Block::parse(text).ok_or_else(|| {
                invalid(
                    "sip_guard_allow",
                    text,
                    "must be addresses or blocks such as 192.0.2.0/24",
                )
            })?);
    }
    if let Some(fragments) = &settings.sip_scanner_user_agents {
        g.scanners = fragments
            .iter()
            .map(|f| f.trim().to_ascii_lowercase())
            .filter(|f| !f.is_empty())
            .collect();
    }
    Ok(g)
}

fn default_node_id() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let name: String = name
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .take(64)
        .collect();
    if name.is_empty() {
        "node-1".to_owned()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings::default()
    }

    #[test]
    fn defaults_are_the_all_in_one_setup() {
        let c = Config::resolve(settings()).expect("defaults resolve");
        assert_eq!(c.engine, Engine::Sqlite);
        assert_eq!(c.database_url, "sqlite://pbx-data/pbx.db?mode=rwc");
        assert_eq!(
            c.http_listen,
            vec!["0.0.0.0:8080".parse::<SocketAddr>().expect("addr")]
        );
        assert_eq!(c.sip_udp.len(), 1);
        assert_eq!(c.log_format, LogFormat::Text);
    }

    #[test]
    fn bad_values_name_their_option() {
        let cases: Vec<(Settings, &str)> = vec![
            (
                Settings {
                    http_listen: Some(vec!["8080".into()]),
                    ..settings()
                },
                "http_listen (--http-listen, PBX_HTTP_LISTEN)",
            ),
            (
                Settings {
                    sip_udp: Some(vec!["[::]:99999".into()]),
                    ..settings()
                },
                "sip_udp",
            ),
            (
                Settings {
                    database_url: Some("mysql://x".into()),
                    ..settings()
                },
                "database_url",
            ),
            (
                Settings {
                    secret_key: Some("short".into()),
                    ..settings()
                },
                "secret_key",
            ),
            (
                Settings {
                    log_format: Some("xml".into()),
                    ..settings()
                },
                "log_format",
            ),
            (
                Settings {
                    log: Some("info,[".into()),
                    ..settings()
                },
                "log",
            ),
            (
                Settings {
                    node_id: Some("a b".into()),
                    ..settings()
                },
                "node_id",
            ),
            (
                Settings {
                    database_max_connections: Some(0),
                    ..settings()
                },
                "database_max_connections",
            ),
        ];
        for (s, name) in cases {
            let err = Config::resolve(s).expect_err("refused").to_string();
            assert!(err.contains(name), "{err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn secret_key_value_is_never_echoed() {
        let err = Config::resolve(Settings {
            secret_key: Some("c2VjcmV0".into()),
            ..settings()
        })
        .expect_err("refused")
        .to_string();
        assert!(!err.contains("c2VjcmV0"), "{err}");
    }

    #[test]
    fn file_settings_are_checked_and_overridden() {
        let dir = std::env::temp_dir().join(format!("pbx-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("pbx.toml");
        std::fs::write(
            &path,
            "http_listen = [\"127.0.0.1:9000\"]\nnode_id = \"file-node\"\n",
        )
        .expect("write");
        let c = Config::resolve(Settings {
            config: Some(path.clone()),
            node_id: Some("flag-node".into()),
            ..settings()
        })
        .expect("resolves");
        assert_eq!(
            c.http_listen,
            vec!["127.0.0.1:9000".parse::<SocketAddr>().expect("addr")]
        );
        assert_eq!(c.node_id, "flag-node");
        std::fs::write(&path, "\n\nhtp_listen = 1\n").expect("write");
        let err = Config::resolve(Settings {
            config: Some(path.clone()),
            ..settings()
        })
        .expect_err("unknown key")
        .to_string();
        assert!(
            err.contains("line 3") && err.contains("htp_listen"),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
