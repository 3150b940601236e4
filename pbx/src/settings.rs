//! The command line, and the settings that can come from a TOML file, the
//! environment (`PBX_…`) or a flag. One struct serves all three so that an
//! option cannot exist in one place and be forgotten in another: its flag is
//! `--name-with-dashes`, its environment variable `PBX_NAME_WITH_UNDERSCORES`,
//! its key in the file `name_with_underscores`. Precedence: flag, then
//! environment, then file, then the default.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

#[derive(Parser, Debug)]
#[command(
    name = "pbx",
    version,
    about = "White-label hosted PBX: SIP registrar and proxy, control plane, billing",
    long_about = "White-label hosted PBX.\n\n\
        `pbx serve` runs everything in one process on an SQLite file in the data directory.\n\
        `pbx sip-proxy` and `pbx control-plane` run the parts separately on a shared PostgreSQL.\n\n\
        Every option can also be set in the environment (PBX_…) or in a TOML file (--config),\n\
        with the key spelled like the option with underscores (http_listen = \"0.0.0.0:8080\")."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run SIP proxy and control plane in one process (default: SQLite in the data directory)
    Serve {
        /// Seed demo data once (operator, reseller, customer, three extensions) and print the logins
        #[arg(long)]
        demo: bool,
    },
    /// Run only the SIP proxy (scale-out; needs --database-url to a shared PostgreSQL)
    SipProxy,
    /// Run only the control plane (scale-out; needs --database-url to a shared PostgreSQL)
    ControlPlane,
    /// Run only the media relay, driven by SIP proxies elsewhere over rtpengine's ng
    /// control protocol (offer, answer, delete); uses the --rtp-* options
    MediaRelay {
        /// UDP address of the ng control socket (keep it private to your proxies)
        #[arg(long, default_value = "127.0.0.1:2223")]
        ng_listen: String,
    },
    /// Create or update the database schema, then exit
    Migrate,
    /// Print a new random secret key (for --secret-key / PBX_SECRET_KEY)
    GenerateSecretKey,
    /// Administration from the shell
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Create an operator administrator login (the first one on a new installation)
    CreateOperator {
        /// E-mail address to log in with
        #[arg(long)]
        email: String,
        /// Password (at least 10 characters); generated and printed if left out
        #[arg(long, env = "PBX_ADMIN_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// The operator's name, set if the installation has none yet
        #[arg(long, default_value = "Operator")]
        operator_name: String,
    },
    /// Set a new password for any login
    ResetPassword {
        #[arg(long)]
        email: String,
        /// New password (at least 10 characters); generated and printed if left out
        #[arg(long, env = "PBX_ADMIN_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// List all resellers
    ListResellers,
    /// List customers, of all resellers or of one
    ListCustomers {
        /// Only this reseller's customers (its id)
        #[arg(long)]
        reseller: Option<i64>,
    },
    /// Create an API token and print it (shown once): the operator's, a reseller's (--reseller)
    /// or a customer's (--customer)
    CreateToken {
        /// What the token is for
        #[arg(long, default_value = "shell")]
        name: String,
        /// Scope it to this reseller (its id)
        #[arg(long, conflicts_with = "customer")]
        reseller: Option<i64>,
        /// Scope it to this customer (its id)
        #[arg(long)]
        customer: Option<i64>,
        /// The token may read but not change anything
        #[arg(long)]
        read_only: bool,
        /// Expire after this many days (never when left out)
        #[arg(long, value_name = "DAYS")]
        expires_in_days: Option<u32>,
    },
}

/// Options shared by all commands; see README.md for each one.
#[derive(Args, Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// TOML file with settings (keys as the long options, with underscores)
    #[arg(
        long,
        short = 'c',
        env = "PBX_CONFIG",
        global = true,
        value_name = "FILE"
    )]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Directory for the SQLite database, secret key, spool and demo.json [default: ./pbx-data]
    #[arg(long, env = "PBX_DATA_DIR", global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// sqlite://PATH or postgres://USER@HOST:PORT/DB [default: sqlite in the data directory]
    #[arg(
        long,
        env = "PBX_DATABASE_URL",
        global = true,
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,

    /// Connections in the database pool [default: 10]
    #[arg(
        long,
        env = "PBX_DATABASE_MAX_CONNECTIONS",
        global = true,
        value_name = "N"
    )]
    pub database_max_connections: Option<u32>,

    /// Base64 key (32 bytes) that encrypts recoverable secrets; all nodes must share it
    /// [default: DATA_DIR/secret.key, created on first start with SQLite]
    #[arg(
        long,
        env = "PBX_SECRET_KEY",
        global = true,
        value_name = "BASE64",
        hide_env_values = true
    )]
    pub secret_key: Option<String>,

    /// This node's name in logs, metrics and registrations [default: the host name]
    #[arg(long, env = "PBX_NODE_ID", global = true, value_name = "NAME")]
    pub node_id: Option<String>,

    /// HTTP listen addresses of the control plane, comma-separated [default: 0.0.0.0:8080]
    #[arg(
        long,
        env = "PBX_HTTP_LISTEN",
        global = true,
        value_name = "ADDR",
        value_delimiter = ','
    )]
    pub http_listen: Option<Vec<String>>,

    /// Host names of the operator's own console, comma-separated [default: localhost,127.0.0.1]
    #[arg(
        long,
        env = "PBX_OPERATOR_HOSTS",
        global = true,
        value_name = "HOST",
        value_delimiter = ','
    )]
    pub operator_hosts: Option<Vec<String>>,

    /// Reverse proxies (addresses or blocks like 10.0.0.0/8) whose X-Forwarded-For names the client [default: none]
    #[arg(
        long,
        env = "PBX_HTTP_TRUSTED_PROXIES",
        global = true,
        value_name = "BLOCK",
        value_delimiter = ','
    )]
    pub http_trusted_proxies: Option<Vec<String>>,

    /// SIP over UDP listen addresses, comma-separated; empty for none [default: 0.0.0.0:5060]
    #[arg(
        long,
        env = "PBX_SIP_UDP",
        global = true,
        value_name = "ADDR",
        value_delimiter = ','
    )]
    pub sip_udp: Option<Vec<String>>,

    /// SIP over TCP listen addresses, comma-separated; empty for none [default: 0.0.0.0:5060]
    #[arg(
        long,
        env = "PBX_SIP_TCP",
        global = true,
        value_name = "ADDR",
        value_delimiter = ','
    )]
    pub sip_tcp: Option<Vec<String>>,

    /// Address phones and peers reach this node at, put in Via and Record-Route
    /// (needed behind NAT) [default: the listening address, or the local
    /// address toward each destination when listening on 0.0.0.0]
    #[arg(long, env = "PBX_SIP_ADVERTISE", global = true, value_name = "HOST")]
    pub sip_advertise: Option<String>,

    /// When calls' media goes through this node's relay: always, nat (calls with a
    /// carrier, and calls where a phone is behind NAT) or never; resellers and
    /// customers may choose otherwise through the API [default: nat]
    #[arg(long, env = "PBX_MEDIA_ANCHOR", global = true, value_name = "MODE")]
    pub media_anchor: Option<String>,

    /// UDP ports the media relay uses, FIRST-LAST (two per party and stream:
    /// RTP on the even one, RTCP on the next) [default: 20000-29999]
    #[arg(long, env = "PBX_RTP_PORTS", global = true, value_name = "FIRST-LAST")]
    pub rtp_ports: Option<String>,

    /// Addresses the relay's sockets bind to, one per family, comma-separated
    /// [default: 0.0.0.0,::]
    #[arg(
        long,
        env = "PBX_RTP_ADDRESS",
        global = true,
        value_name = "IP",
        value_delimiter = ','
    )]
    pub rtp_address: Option<Vec<String>>,

    /// Addresses the relay names in SDP, one per family, comma-separated: the
    /// public address of a host behind a 1:1 NAT (a cloud VM) [default: the
    /// address this node's SIP uses toward each phone or carrier]
    #[arg(
        long,
        env = "PBX_RTP_ADVERTISED_ADDRESS",
        global = true,
        value_name = "IP",
        value_delimiter = ','
    )]
    pub rtp_advertised_address: Option<Vec<String>>,

    /// Seconds without media in either direction after which an answered
    /// anchored call is ended and billed to its last packet [default: 60]
    #[arg(long, env = "PBX_RTP_TIMEOUT", global = true, value_name = "SECONDS")]
    pub rtp_timeout: Option<u64>,

    /// The same while the call is on hold [default: 3600]
    #[arg(
        long,
        env = "PBX_RTP_HOLD_TIMEOUT",
        global = true,
        value_name = "SECONDS"
    )]
    pub rtp_hold_timeout: Option<u64>,

    /// Music on hold: a phone held by the other side hears the platform's
    /// tune instead of what the holding phone sends [default: true]
    #[arg(long, env = "PBX_MUSIC_ON_HOLD", global = true, value_name = "BOOL")]
    pub music_on_hold: Option<bool>,

    /// Digest algorithms offered to phones, in order, comma-separated [default: SHA-256,MD5]
    #[arg(
        long,
        env = "PBX_SIP_DIGEST_ALGORITHMS",
        global = true,
        value_name = "ALG",
        value_delimiter = ','
    )]
    pub sip_digest_algorithms: Option<Vec<String>>,

    /// User-Agent prefixes of phones offered MD5 only, because they fail when any challenge names another algorithm, comma-separated; empty for none [default: baresip]
    #[arg(
        long,
        env = "PBX_SIP_DIGEST_MD5_ONLY_USER_AGENTS",
        global = true,
        value_name = "PREFIX",
        value_delimiter = ','
    )]
    pub sip_digest_md5_only_user_agents: Option<Vec<String>>,

    /// Require the digest uri to equal the Request-URI (RFC 3261 §22.4); turn off only
    /// for load generators that cannot do it [default: true]
    #[arg(
        long,
        env = "PBX_SIP_DIGEST_CHECK_URI",
        global = true,
        value_name = "BOOL"
    )]
    pub sip_digest_check_uri: Option<bool>,

    /// Shortest registration accepted, in seconds (shorter: 423) [default: 60]
    #[arg(
        long,
        env = "PBX_SIP_MIN_EXPIRES",
        global = true,
        value_name = "SECONDS"
    )]
    pub sip_min_expires: Option<u32>,

    /// Longest registration granted, in seconds [default: 3600]
    #[arg(
        long,
        env = "PBX_SIP_MAX_EXPIRES",
        global = true,
        value_name = "SECONDS"
    )]
    pub sip_max_expires: Option<u32>,

    /// SIP transactions held at most before new requests get 503 [default: 200000]
    #[arg(
        long,
        env = "PBX_SIP_MAX_TRANSACTIONS",
        global = true,
        value_name = "N"
    )]
    pub sip_max_transactions: Option<usize>,

    /// Answered calls are ended and billed at this length at the latest [default: 14400]
    #[arg(
        long,
        env = "PBX_SIP_MAX_CALL_DURATION",
        global = true,
        value_name = "SECONDS"
    )]
    pub sip_max_call_duration: Option<u64>,

    /// The SIP abuse guard: bans for password guessers, scanners and floods, account
    /// protection; off only for benchmarks and lab set-ups [default: true]
    #[arg(long, env = "PBX_SIP_GUARD", global = true, value_name = "BOOL")]
    pub sip_guard: Option<bool>,

    /// Wrong passwords from one address within the failure window before it is banned, 2 to 20 [default: 5]
    #[arg(
        long,
        env = "PBX_SIP_GUARD_AUTH_FAILURES",
        global = true,
        value_name = "N"
    )]
    pub sip_guard_auth_failures: Option<u32>,

    /// The window wrong passwords are counted in, in seconds [default: 600]
    #[arg(
        long,
        env = "PBX_SIP_GUARD_FAILURE_WINDOW",
        global = true,
        value_name = "SECONDS"
    )]
    pub sip_guard_failure_window: Option<u64>,

    /// How long the first, second, third ban of an address lasts within a week, in seconds,
    /// comma-separated (the last repeats) [default: 900,3600,86400]
    #[arg(
        long,
        env = "PBX_SIP_GUARD_BAN_TIMES",
        global = true,
        value_name = "SECONDS",
        value_delimiter = ','
    )]
    pub sip_guard_ban_times: Option<Vec<u64>>,

    /// Wrong passwords for one account within an hour, from at least three addresses,
    /// before the account is protected, 2 to 250 [default: 10]
    #[arg(
        long,
        env = "PBX_SIP_GUARD_ACCOUNT_FAILURES",
        global = true,
        value_name = "N"
    )]
    pub sip_guard_account_failures: Option<u32>,

    /// How long a protected account accepts only addresses it registered from, in seconds [default: 3600]
    #[arg(
        long,
        env = "PBX_SIP_GUARD_PROTECTION",
        global = true,
        value_name = "SECONDS"
    )]
    pub sip_guard_protection: Option<u64>,

    /// New SIP requests (outside dialogs) an address may send per second on average
    /// before it is banned (throttled if phones registered from it) [default: 200]
    #[arg(
        long,
        env = "PBX_SIP_GUARD_REQUEST_RATE",
        global = true,
        value_name = "N"
    )]
    pub sip_guard_request_rate: Option<u32>,

    /// New SIP requests an address may send at once above that average [default: 2000]
    #[arg(
        long,
        env = "PBX_SIP_GUARD_REQUEST_BURST",
        global = true,
        value_name = "N"
    )]
    pub sip_guard_request_burst: Option<u32>,

    /// Challenges an address may get for requests without (right) credentials before it
    /// has authenticated once, within the failure window, before it is banned as an
    /// extension scanner [default: 100]
    #[arg(
        long,
        env = "PBX_SIP_GUARD_CHALLENGES",
        global = true,
        value_name = "N"
    )]
    pub sip_guard_challenges: Option<u32>,

    /// Addresses or blocks never banned nor limited (monitoring), comma-separated,
    /// beside the operator's allow list in the API [default: none]
    #[arg(
        long,
        env = "PBX_SIP_GUARD_ALLOW",
        global = true,
        value_name = "BLOCK",
        value_delimiter = ','
    )]
    pub sip_guard_allow: Option<Vec<String>>,

    /// User-Agent fragments of SIP scanners, dropped unanswered and banned, comma-separated;
    /// empty for none [default: friendly-scanner,sipvicious,sipcli,vaxsipuseragent,sundayddr,iwar,sipscan,sip-scan,smap,sivus]
    #[arg(
        long,
        env = "PBX_SIP_SCANNER_USER_AGENTS",
        global = true,
        value_name = "FRAGMENT",
        value_delimiter = ','
    )]
    pub sip_scanner_user_agents: Option<Vec<String>>,

    /// API requests per second each token may make on average (more get 429) [default: 20]
    #[arg(long, env = "PBX_API_RATE_LIMIT", global = true, value_name = "N")]
    pub api_rate_limit: Option<u32>,

    /// API requests a token may make in a burst above the average [default: 100]
    #[arg(long, env = "PBX_API_RATE_BURST", global = true, value_name = "N")]
    pub api_rate_burst: Option<u32>,

    /// How long live events are kept for clients that reconnect [default: 600]
    #[arg(
        long,
        env = "PBX_API_EVENT_RETENTION",
        global = true,
        value_name = "SECONDS"
    )]
    pub api_event_retention: Option<u64>,

    /// Let webhooks call private, loopback and link-local addresses (off: only public ones) [default: false]
    #[arg(
        long,
        env = "PBX_WEBHOOK_ALLOW_PRIVATE_TARGETS",
        global = true,
        value_name = "BOOL"
    )]
    pub webhook_allow_private_targets: Option<bool>,

    /// PEM file of extra root certificates webhook endpoints may use (beside the public web's)
    #[arg(long, env = "PBX_WEBHOOK_CA_FILE", global = true, value_name = "FILE")]
    pub webhook_ca_file: Option<PathBuf>,

    /// SMTP relay (host:port) for the console's e-mail (password resets); unset: no e-mail [default: none]
    #[arg(long, env = "PBX_SMTP_RELAY", global = true, value_name = "HOST:PORT")]
    pub smtp_relay: Option<String>,

    /// Sender address of console e-mail [default: no-reply@<the console host asked on>]
    #[arg(long, env = "PBX_SMTP_FROM", global = true, value_name = "ADDRESS")]
    pub smtp_from: Option<String>,

    /// Log filter: a level (error, warn, info, debug, trace) or per-module directives [default: info]
    #[arg(long, env = "PBX_LOG", global = true, value_name = "FILTER")]
    pub log: Option<String>,

    /// Log format: text or json [default: text]
    #[arg(long, env = "PBX_LOG_FORMAT", global = true, value_name = "FORMAT")]
    pub log_format: Option<String>,
}

impl Settings {
    /// Fills every option left unset here from `lower` (the file's settings).
    pub fn or(self, lower: Settings) -> Settings {
        Settings {
            config: self.config.or(lower.config),
            data_dir: self.data_dir.or(lower.data_dir),
            database_url: self.database_url.or(lower.database_url),
            database_max_connections: self
                .database_max_connections
                .or(lower.database_max_connections),
            secret_key: self.secret_key.or(lower.secret_key),
            node_id: self.node_id.or(lower.node_id),
            http_listen: self.http_listen.or(lower.http_listen),
            operator_hosts: self.operator_hosts.or(lower.operator_hosts),
            http_trusted_proxies: self.http_trusted_proxies.or(lower.http_trusted_proxies),
            sip_udp: self.sip_udp.or(lower.sip_udp),
            sip_tcp: self.sip_tcp.or(lower.sip_tcp),
            sip_advertise: self.sip_advertise.or(lower.sip_advertise),
            media_anchor: self.media_anchor.or(lower.media_anchor),
            rtp_ports: self.rtp_ports.or(lower.rtp_ports),
            rtp_address: self.rtp_address.or(lower.rtp_address),
            rtp_advertised_address: self.rtp_advertised_address.or(lower.rtp_advertised_address),
            rtp_timeout: self.rtp_timeout.or(lower.rtp_timeout),
            rtp_hold_timeout: self.rtp_hold_timeout.or(lower.rtp_hold_timeout),
            music_on_hold: self.music_on_hold.or(lower.music_on_hold),
            sip_digest_algorithms: self.sip_digest_algorithms.or(lower.sip_digest_algorithms),
            sip_digest_md5_only_user_agents: self
                .sip_digest_md5_only_user_agents
                .or(lower.sip_digest_md5_only_user_agents),
            sip_digest_check_uri: self.sip_digest_check_uri.or(lower.sip_digest_check_uri),
            sip_min_expires: self.sip_min_expires.or(lower.sip_min_expires),
            sip_max_expires: self.sip_max_expires.or(lower.sip_max_expires),
            sip_max_transactions: self.sip_max_transactions.or(lower.sip_max_transactions),
            sip_max_call_duration: self.sip_max_call_duration.or(lower.sip_max_call_duration),
            sip_guard: self.sip_guard.or(lower.sip_guard),
            sip_guard_auth_failures: self
                .sip_guard_auth_failures
                .or(lower.sip_guard_auth_failures),
            sip_guard_failure_window: self
                .sip_guard_failure_window
                .or(lower.sip_guard_failure_window),
            sip_guard_ban_times: self.sip_guard_ban_times.or(lower.sip_guard_ban_times),
            sip_guard_account_failures: self
                .sip_guard_account_failures
                .or(lower.sip_guard_account_failures),
            sip_guard_protection: self.sip_guard_protection.or(lower.sip_guard_protection),
            sip_guard_request_rate: self.sip_guard_request_rate.or(lower.sip_guard_request_rate),
            sip_guard_request_burst: self
                .sip_guard_request_burst
                .or(lower.sip_guard_request_burst),
            sip_guard_challenges: self.sip_guard_challenges.or(lower.sip_guard_challenges),
            sip_guard_allow: self.sip_guard_allow.or(lower.sip_guard_allow),
            sip_scanner_user_agents: self
                .sip_scanner_user_agents
                .or(lower.sip_scanner_user_agents),
            api_rate_limit: self.api_rate_limit.or(lower.api_rate_limit),
            api_rate_burst: self.api_rate_burst.or(lower.api_rate_burst),
            api_event_retention: self.api_event_retention.or(lower.api_event_retention),
            webhook_allow_private_targets: self
                .webhook_allow_private_targets
                .or(lower.webhook_allow_private_targets),
            webhook_ca_file: self.webhook_ca_file.or(lower.webhook_ca_file),
            smtp_relay: self.smtp_relay.or(lower.smtp_relay),
            smtp_from: self.smtp_from.or(lower.smtp_from),
            log: self.log.or(lower.log),
            log_format: self.log_format.or(lower.log_format),
        }
    }
}
