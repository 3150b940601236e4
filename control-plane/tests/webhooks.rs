//! Webhooks end to end, on SQLite and PostgreSQL: created through the API,
//! fed by stored call records, delivered over real HTTPS (a Python receiver
//! with a certificate from `openssl`, which we did not write) with a
//! signature the receiver can check, retried after a failure, logged; and
//! refused for private addresses unless allowed.

mod support;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::http::Method;
use pbx_control_plane::webhooks::{signature, Deliverer, WebhookConfig};
use pbx_store::call_records::NewCallRecord;
use pbx_store::testing::TestDb;
use pbx_store::webhooks::backoff_ms;
use pbx_store::Principal;
use serde_json::{json, Value};
use support::{Api, Who};

/// An HTTPS endpoint that answers 500 to its first `failures` requests and 204
/// after, writing each request (headers and body) as a JSON line to stdout.
const RECEIVER: &str = r#"
import http.server, json, ssl, sys
failures = int(sys.argv[3])
class Hook(http.server.BaseHTTPRequestHandler):
    seen = 0
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0"))).decode()
        Hook.seen += 1
        print(json.dumps({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}), flush=True)
        self.send_response(500 if Hook.seen <= failures else 204)
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[1], sys.argv[2])
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

struct Receiver {
    child: Child,
    port: u16,
    lines: std::sync::mpsc::Receiver<String>,
    dir: PathBuf,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA, a certificate for 127.0.0.1 signed by it, and the receiver.
fn receiver(failures: u32) -> (Receiver, Vec<u8>) {
    let dir = std::env::temp_dir().join(format!(
        "pbx-webhook-{}-{}",
        std::process::id(),
        pbx_store::secrets::random_token(4).replace(['-', '_'], "x")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=Test CA",
        "-days",
        "2",
    ]);
    openssl(&dir, &ca);
    let mut leaf = vec!["req"];
    leaf.extend(ec);
    leaf.extend([
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(&dir, &leaf);
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
        ],
    );
    std::fs::write(dir.join("receiver.py"), RECEIVER).unwrap();
    let mut child = Command::new("python3")
        .arg(dir.join("receiver.py"))
        .arg(dir.join("leaf.pem"))
        .arg(dir.join("leaf.key"))
        .arg(failures.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3");
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let port = lines
        .recv_timeout(Duration::from_secs(10))
        .expect("the receiver's port")
        .trim()
        .parse()
        .expect("a port number");
    let ca_pem = std::fs::read(dir.join("ca.pem")).unwrap();
    (
        Receiver {
            child,
            port,
            lines,
            dir,
        },
        ca_pem,
    )
}

fn record(uid: &str, api: &Api, of_b: bool) -> NewCallRecord {
    let t = &api.t;
    let (reseller, customer) = if of_b {
        (t.reseller_y.id, t.customer_b.id)
    } else {
        (t.reseller_x.id, t.customer_a.id)
    };
    pbx_store::testing::answered_call(uid, reseller, customer, 1_790_000_000_000, 30_000)
}

async fn delivered_signed_retried_and_logged(db: TestDb) {
    let (receiver, ca_pem) = receiver(1);
    let api = Api::new(db).await;
    let url = format!("https://127.0.0.1:{}/hooks/calls", receiver.port);
    let created = api
        .post(
            Who::ResellerX,
            "/api/v1/webhooks",
            &json!({"url": url, "events": ["call_ended"]}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.header("cache-control"), Some("no-store"));
    let created = created.json();
    let secret = created["secret"].as_str().unwrap().to_owned();
    let id = created["webhook"]["id"].as_i64().unwrap();
    // The other tenants cannot see or remove it; read-only tokens cannot add one.
    assert_eq!(
        api.get(Who::ResellerY, &format!("/api/v1/webhooks/{id}"))
            .await
            .status,
        404
    );
    assert_eq!(
        api.get(Who::CustomerB, &format!("/api/v1/webhooks/{id}/deliveries"))
            .await
            .status,
        404
    );
    assert_eq!(
        api.delete(Who::CustomerB, &format!("/api/v1/webhooks/{id}"))
            .await
            .status,
        404
    );
    let read_only = api
        .send(
            Who::CustomerAReadOnly,
            Method::POST,
            "/api/v1/webhooks",
            Some(
                &json!({"url": url, "events": ["call_ended"], "customer_id": api.t.customer_a.id}),
            ),
            &[],
        )
        .await;
    assert_eq!(read_only.status, 403);
    let invalid = api
        .post(
            Who::ResellerX,
            "/api/v1/webhooks",
            &json!({"url": "http://x.test/", "events": []}),
        )
        .await;
    assert_eq!(invalid.status, 422);

    // A call of customer A (reseller X) and one of customer B (reseller Y).
    let sys = Principal::system();
    api.db
        .store
        .call_records()
        .insert_batch(&sys, &[record("wa", &api, false), record("wb", &api, true)])
        .await
        .unwrap();

    let deliverer = Deliverer::new(
        api.db.store.clone(),
        WebhookConfig {
            allow_private_targets: true,
            extra_roots_pem: ca_pem,
            timeout: Duration::from_secs(5),
            ..WebhookConfig::default()
        },
    )
    .unwrap();
    let now = pbx_store::now_ms();
    assert_eq!(deliverer.deliver_due(now).await.unwrap(), 1);
    let log = api
        .get(Who::ResellerX, &format!("/api/v1/webhooks/{id}/deliveries"))
        .await
        .json();
    let first = &log["items"][0];
    assert_eq!(first["state"], "pending", "{log}");
    assert_eq!(first["attempts"], 1);
    assert_eq!(first["last_status"], 500);
    // Not due again before its backoff; delivered when it is.
    assert_eq!(deliverer.deliver_due(now + 1000).await.unwrap(), 0);
    assert_eq!(
        deliverer
            .deliver_due(now + backoff_ms(0) + 5_000)
            .await
            .unwrap(),
        1
    );
    let log = api
        .get(Who::ResellerX, &format!("/api/v1/webhooks/{id}/deliveries"))
        .await
        .json();
    assert_eq!(log["items"][0]["state"], "delivered", "{log}");
    assert_eq!(log["items"][0]["attempts"], 2);
    assert_eq!(
        log["items"].as_array().unwrap().len(),
        1,
        "B's call is not X's business"
    );

    // What the receiver got: the call, signed with the secret.
    let mut requests: Vec<Value> = Vec::new();
    while let Ok(line) = receiver.lines.recv_timeout(Duration::from_secs(2)) {
        requests.push(serde_json::from_str(&line).unwrap());
    }
    assert_eq!(requests.len(), 2);
    for r in &requests {
        assert_eq!(r["path"], "/hooks/calls");
        let headers = &r["headers"];
        assert_eq!(headers["webhook-event"], "call_ended");
        let body = r["body"].as_str().unwrap();
        let sig = headers["webhook-signature"].as_str().unwrap();
        let t: i64 = sig
            .split(',')
            .next()
            .unwrap()
            .trim_start_matches("t=")
            .parse()
            .unwrap();
        assert_eq!(sig, signature(&secret, t, body));
        let payload: Value = serde_json::from_str(body).unwrap();
        assert_eq!(payload["type"], "call_ended");
        assert_eq!(payload["record"]["record_uid"], "wa");
        assert_eq!(payload["billable_ms"], 30_000);
    }
}

async fn private_addresses_are_refused_by_default(db: TestDb) {
    let (receiver, ca_pem) = receiver(0);
    let api = Api::new(db).await;
    let url = format!("https://127.0.0.1:{}/hook", receiver.port);
    let created = api
        .post(
            Who::CustomerA,
            "/api/v1/webhooks",
            &json!({"url": url, "events": ["call_ended"], "customer_id": api.t.customer_a.id}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let id = created.json()["webhook"]["id"].as_i64().unwrap();
    api.db
        .store
        .call_records()
        .insert_batch(&Principal::system(), &[record("pa", &api, false)])
        .await
        .unwrap();
    let deliverer = Deliverer::new(
        api.db.store.clone(),
        WebhookConfig {
            extra_roots_pem: ca_pem,
            ..WebhookConfig::default()
        },
    )
    .unwrap();
    assert_eq!(deliverer.deliver_due(pbx_store::now_ms()).await.unwrap(), 1);
    let log = api
        .get(Who::CustomerA, &format!("/api/v1/webhooks/{id}/deliveries"))
        .await
        .json();
    assert_eq!(log["items"][0]["state"], "pending");
    assert!(
        log["items"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("public"),
        "{log}"
    );
    assert!(log["items"][0]["last_status"].is_null());
    assert!(
        receiver
            .lines
            .recv_timeout(Duration::from_millis(500))
            .is_err(),
        "nothing was sent"
    );
}

pbx_store::both_engines!(
    delivered_signed_retried_and_logged,
    private_addresses_are_refused_by_default,
);
