//! Helpers for end-to-end tests: start the real `pbx` binary on free loopback
//! ports in a scratch data directory, talk to it over HTTP, stop it by PID.
//! Nothing here sends traffic anywhere but 127.0.0.1.

#![allow(dead_code)]

pub mod audio;
pub mod browser;
pub mod sip;
pub mod softphone;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn pbx_bin() -> &'static str {
    env!("CARGO_BIN_EXE_pbx")
}

/// A scratch directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "pbx-e2e-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port free for both UDP and TCP right now. Taken from a counter
/// below the kernel's ephemeral range (32768 and up), so that sockets the
/// processes under test open on their own can never grab it between our
/// check and its use; each test binary starts at its own offset. Every call
/// reserves a block of 8 ports, because SIPp also binds ports above the ones
/// it is given (media on +2 and +4).
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 400) * 24,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..2000 {
        let n = NEXT.fetch_add(8, Ordering::Relaxed);
        let port = 20_000 + (n - 20_000) % 12_000;
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
    panic!("no free port");
}

/// A running `pbx` process.
pub struct Node {
    child: Option<Child>,
    pub http: SocketAddr,
    pub sip_port: u16,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

fn collect(stream: impl Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if let Ok(mut lines) = into.lock() {
                lines.push(line);
            }
        }
    });
}

impl Node {
    /// Starts `pbx <args>` with HTTP and SIP on free loopback ports and waits
    /// until /healthz answers (or `until` appears in stdout for nodes without HTTP).
    pub fn start(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Node {
        Node::start_on(data_dir, args, env, free_port())
    }

    /// Like [`Node::start`] with SIP on a given port (to restart a node in place).
    pub fn start_on(data_dir: &Path, args: &[&str], env: &[(&str, &str)], sip_port: u16) -> Node {
        let http_port = free_port();
        let http: SocketAddr = ([127, 0, 0, 1], http_port).into();
        let sip = format!("127.0.0.1:{sip_port}");
        let mut cmd = Command::new(pbx_bin());
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PBX_DATA_DIR", data_dir)
            .env("PBX_HTTP_LISTEN", http.to_string())
            .env("PBX_SIP_UDP", &sip)
            .env("PBX_SIP_TCP", &sip)
            // PBX_TEST_LOG=debug (or a filter) to see more of a failing test.
            .env(
                "PBX_LOG",
                std::env::var("PBX_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("PBX_NODE_ID", "e2e")
            // The relay's ports kept clear of the ones free_port() hands out.
            .env("PBX_RTP_PORTS", "45000-49999")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start pbx");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().expect("stdout"), stdout.clone());
        collect(child.stderr.take().expect("stderr"), stderr.clone());
        let mut node = Node {
            child: Some(child),
            http,
            sip_port,
            stdout,
            stderr,
        };
        node.wait_ready();
        node
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "pbx exited during start-up ({status}); stderr:\n{}",
                    self.stderr_text()
                );
            }
            let printed = self.stdout_text().contains(" running (");
            if printed
                && http_get(self.http, "localhost", "/healthz").map(|r| r.status) == Some(200)
            {
                return;
            }
            if Instant::now() > deadline {
                panic!("pbx did not become ready; stderr:\n{}", self.stderr_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn stdout_text(&self) -> String {
        self.stdout.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// Sends `signal` (e.g. "TERM", "KILL") to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Stops the node with SIGTERM and returns its exit status.
    pub fn stop(mut self) -> ExitStatus {
        self.signal("TERM");
        self.wait(Duration::from_secs(30))
    }

    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return status;
            }
            if Instant::now() > deadline {
                panic!("pbx did not exit in time");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `pbx <args>` to completion with the given environment.
pub fn run_pbx(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(pbx_bin());
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run pbx")
}

pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A minimal HTTP/1.1 GET (Connection: close), enough for end-to-end checks.
pub fn http_get(addr: SocketAddr, host: &str, path: &str) -> Option<HttpResponse> {
    http_request(addr, "GET", host, path, None)
}

/// A minimal HTTP/1.1 request (Connection: close) with an optional JSON body.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    json: Option<&str>,
) -> Option<HttpResponse> {
    http_exchange(addr, method, host, path, json, None)
}

/// A GET with an API token.
pub fn http_get_bearer(addr: SocketAddr, path: &str, token: &str) -> Option<HttpResponse> {
    http_exchange(addr, "GET", "localhost", path, None, Some(token))
}

/// Any request with an API token and an optional JSON body.
pub fn http_request_bearer(
    addr: SocketAddr,
    method: &str,
    path: &str,
    json: Option<&str>,
    token: &str,
) -> Option<HttpResponse> {
    http_exchange(addr, method, "localhost", path, json, Some(token))
}

fn http_exchange(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    json: Option<&str>,
    bearer: Option<&str>,
) -> Option<HttpResponse> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .ok()?;
    let body = json.unwrap_or("");
    let mut head = if json.is_some() {
        format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        )
    } else {
        String::new()
    };
    if let Some(token) = bearer {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{head}\r\n{body}"
    )
    .ok()?;
    // Read the head, then as much body as Content-Length says (some servers
    // keep the connection open despite `Connection: close`), or to the end.
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let split = loop {
        if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break split;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&chunk[..n]);
    };
    let length = String::from_utf8_lossy(&raw[..split])
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok());
    match length {
        Some(length) => {
            while raw.len() < split + 4 + length {
                let n = stream.read(&mut chunk).ok()?;
                if n == 0 {
                    break;
                }
                raw.extend_from_slice(&chunk[..n]);
            }
        }
        None => {
            stream.read_to_end(&mut raw).ok()?;
        }
    }
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect::<Vec<_>>();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Some(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = end + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

/// A counter or gauge of the node's /metrics (0 when absent).
pub fn metric(node: &Node, name: &str) -> u64 {
    let text = http_get(node.http, "localhost", "/metrics")
        .map(|r| r.text())
        .unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

/// Waits (up to `within`, generous: a loaded CI machine is slow) until a
/// metric of the node reaches `value`; returns the last value read, so the
/// caller's assertion says what it saw instead of failing on a timer.
pub fn wait_for_metric(node: &Node, name: &str, value: u64, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let now = metric(node, name);
        if now >= value || Instant::now() >= deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The PostgreSQL server for tests, or None (with a message) when not configured.
pub fn postgres_url() -> Option<String> {
    let url = pbx_store::testing::postgres_url();
    if url.is_none() {
        eprintln!("SKIPPED on PostgreSQL: PBX_TEST_POSTGRES_URL is not set");
    }
    url
}

const IN_NETNS: &str = "PBX_TEST_IN_NETNS";

/// Runs the test named `test` of this test binary again inside a fresh
/// network namespace with only loopback up (`unshare --net`), so that
/// messages naming foreign hosts cannot make anything leave the machine;
/// true in the process inside, which then runs the test's body.
pub fn in_private_netns(test: &str) -> bool {
    if std::env::var(IN_NETNS).is_ok() {
        return true;
    }
    let exe = std::env::current_exe().expect("test binary path");
    let probe = Command::new("unshare").args(["--net", "true"]).status();
    if !probe.is_ok_and(|s| s.success()) {
        if std::env::var("PBX_TEST_REQUIRE_NETNS").as_deref() == Ok("1") {
            panic!(
                "cannot create a network namespace (unshare --net needs root or user namespaces)"
            );
        }
        eprintln!("SKIPPED: cannot create a private network namespace for foreign messages");
        return false;
    }
    let status = Command::new("unshare")
        .args([
            "--net",
            "--",
            "sh",
            "-c",
            "ip link set lo up && exec \"$0\" \"$@\"",
        ])
        .arg(&exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(IN_NETNS, "1")
        .status()
        .expect("run unshare");
    assert!(
        status.success(),
        "the test failed inside its network namespace"
    );
    false
}

/// An API token from `pbx admin create-token SCOPE…`, as an operator makes one.
pub fn create_token(dir: &TempDir, scope: &[&str]) -> String {
    let data_dir = dir.path().display().to_string();
    let key = sip::secret_key_base64();
    let mut args = vec!["admin", "--data-dir", data_dir.as_str(), "create-token"];
    args.extend_from_slice(scope);
    let out = run_pbx(&args, &[("PBX_SECRET_KEY", key.as_str())]);
    assert!(
        out.status.success(),
        "create-token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
