//! The `pbx` binary as an operator meets it: first start with the demo,
//! restart, bad configuration, an unusable data directory, the separate
//! parts on PostgreSQL, and the admin commands.

mod support;

use std::time::Duration;

use support::{http_get, postgres_url, run_pbx, Node, TempDir};

fn demo_json(dir: &TempDir) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.path().join("demo.json")).expect("demo.json written");
    serde_json::from_str(&text).expect("demo.json is JSON")
}

#[test]
fn demo_starts_answers_health_and_keeps_data_across_restart() {
    let dir = TempDir::new("demo");
    let node = Node::start(dir.path(), &["serve", "--demo"], &[]);
    let out = node.stdout_text();
    let demo = demo_json(&dir);
    // The banner tells a newcomer everything demo.json holds.
    for key in [
        demo["operator"]["name"].as_str(),
        demo["reseller"]["console_url"].as_str(),
        demo["customer"]["sip_domain"].as_str(),
        demo["customer"]["admin_login"]["password"].as_str(),
        demo["extensions"][0]["password"].as_str(),
    ] {
        let key = key.expect("demo.json field");
        assert!(out.contains(key), "banner lacks {key}:\n{out}");
    }
    assert_eq!(demo["extensions"].as_array().map(Vec::len), Some(3));
    assert_eq!(demo["reseller"]["console_host"], "nordlicht.localhost");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("demo.json"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "demo.json holds passwords: owner-only");
    }

    let health = http_get(node.http, "localhost", "/healthz").expect("healthz");
    assert_eq!(health.status, 200);
    assert!(
        health.text().contains("\"database\":\"ok\""),
        "{}",
        health.text()
    );
    let metrics = http_get(node.http, "localhost", "/metrics").expect("metrics");
    assert!(metrics
        .text()
        .contains("pbx_http_requests_total{class=\"2xx\"}"));

    let status = node.stop();
    assert!(status.success(), "graceful stop exits 0: {status}");

    // Second start: same data, same credentials, nothing seeded twice.
    let node = Node::start(dir.path(), &["serve", "--demo"], &[]);
    let again = demo_json(&dir);
    assert_eq!(
        demo["extensions"], again["extensions"],
        "SIP credentials kept"
    );
    assert_eq!(
        demo["customer"]["admin_login"], again["customer"]["admin_login"],
        "console password kept"
    );
    assert_eq!(demo["customer"]["id"], again["customer"]["id"]);
    drop(node);
    let env = [("PBX_DATA_DIR", dir.path().to_str().expect("utf-8 path"))];
    let listed = run_pbx(&["admin", "list-customers"], &env);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert_eq!(text.matches("Acme GmbH").count(), 1, "{text}");
}

#[test]
fn a_deleted_demo_json_is_rewritten_with_working_logins() {
    let dir = TempDir::new("demo-heal");
    let node = Node::start(dir.path(), &["serve", "--demo"], &[]);
    let first = demo_json(&dir);
    node.stop();
    std::fs::remove_file(dir.path().join("demo.json")).expect("remove");
    let node = Node::start(dir.path(), &["serve", "--demo"], &[]);
    let second = demo_json(&dir);
    // SIP secrets are recoverable; console passwords are re-issued.
    assert_eq!(first["extensions"], second["extensions"]);
    assert!(second["operator"]["login"]["password"]
        .as_str()
        .is_some_and(|p| p.len() >= 10));
    drop(node);
}

fn assert_one_line_error(output: &std::process::Output, needle: &str) {
    assert!(!output.status.success(), "should fail");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("pbx: ")).collect();
    assert_eq!(errors.len(), 1, "exactly one error line: {stderr}");
    assert!(
        errors[0].contains(needle),
        "the error should name {needle:?}: {stderr}"
    );
    assert!(!errors[0].contains("os error"), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{stderr}"
    );
}

#[test]
fn bad_configuration_is_refused_in_one_line_naming_the_option() {
    let dir = TempDir::new("badcfg");
    let data = dir.path().to_str().expect("utf-8");
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (&["serve", "--http-listen", "nonsense"], &[], "http_listen"),
        (&["serve"], &[("PBX_SIP_UDP", "127.0.0.1")], "sip_udp"),
        (&["serve"], &[("PBX_LOG_FORMAT", "xml")], "log_format"),
        (
            &["serve"],
            &[("PBX_DATABASE_URL", "mysql://u:secret@h/db")],
            "database_url",
        ),
        (&["serve"], &[("PBX_SECRET_KEY", "tooshort")], "secret_key"),
    ];
    for (args, env, needle) in cases {
        let mut env = env.to_vec();
        env.push(("PBX_DATA_DIR", data));
        let out = run_pbx(args, &env);
        assert_one_line_error(&out, needle);
        assert_eq!(out.status.code(), Some(2), "configuration errors exit 2");
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("secret@"),
            "password echoed"
        );
    }
    let file = dir.path().join("pbx.toml");
    std::fs::write(&file, "http_listen = [\"127.0.0.1:1\"]\nsip_udpp = []\n").expect("write");
    let out = run_pbx(
        &["serve", "--config", file.to_str().expect("utf-8")],
        &[("PBX_DATA_DIR", data)],
    );
    assert_one_line_error(&out, "line 2");
    assert!(String::from_utf8_lossy(&out.stderr).contains("sip_udpp"));
    // A port already taken is named too.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = run_pbx(
        &[
            "serve",
            "--http-listen",
            &addr,
            "--sip-udp",
            "",
            "--sip-tcp",
            "",
        ],
        &[("PBX_DATA_DIR", data)],
    );
    assert_one_line_error(&out, "http_listen");
}

#[test]
fn an_unwritable_data_directory_is_refused_in_one_line() {
    let dir = TempDir::new("ro");
    // A path below a regular file can never be created, whoever runs the test.
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "x").expect("write");
    let below_file = blocker.join("data");
    let out = run_pbx(
        &["migrate"],
        &[("PBX_DATA_DIR", below_file.to_str().expect("utf-8"))],
    );
    assert_one_line_error(&out, "data directory");

    // A directory without write permission, checked as an unprivileged user
    // (root may write anywhere).
    let ro = dir.path().join("readonly");
    std::fs::create_dir(&ro).expect("mkdir");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).expect("chmod");
        let is_root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout == b"0\n")
            .unwrap_or(false);
        let out = if is_root {
            std::process::Command::new("setpriv")
                .args([
                    "--reuid",
                    "65534",
                    "--regid",
                    "65534",
                    "--clear-groups",
                    support::pbx_bin(),
                    "migrate",
                ])
                .env_clear()
                .env("PBX_DATA_DIR", &ro)
                .output()
                .expect("setpriv")
        } else {
            run_pbx(
                &["migrate"],
                &[("PBX_DATA_DIR", ro.to_str().expect("utf-8"))],
            )
        };
        assert_one_line_error(&out, "not writable");
    }
}

#[test]
fn the_separate_parts_need_postgres() {
    let dir = TempDir::new("parts");
    for part in ["sip-proxy", "control-plane"] {
        let out = run_pbx(
            &[part],
            &[("PBX_DATA_DIR", dir.path().to_str().expect("utf-8"))],
        );
        assert_one_line_error(&out, "PostgreSQL");
    }
}

#[test]
fn control_plane_and_admin_commands_on_postgres() {
    let Some(_) = postgres_url() else { return };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let db = rt
        .block_on(pbx_store::testing::TestDb::postgres())
        .expect("postgres configured");
    let dir = TempDir::new("pg");
    let key = run_pbx(&["generate-secret-key"], &[]);
    let key = String::from_utf8_lossy(&key.stdout).trim().to_owned();
    let env = [
        ("PBX_DATABASE_URL", db.url.as_str()),
        ("PBX_SECRET_KEY", key.as_str()),
        ("PBX_DATA_DIR", dir.path().to_str().expect("utf-8")),
    ];
    // Without the shared key a node refuses to start rather than invent one.
    let out = run_pbx(&["migrate"], &env[..1]);
    assert_one_line_error(&out, "secret key");

    let out = run_pbx(
        &[
            "admin",
            "create-operator",
            "--email",
            "ops@operator.test",
            "--password",
            "a long enough password",
        ],
        &env,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let node = Node::start(dir.path(), &["control-plane"], &env);
    assert!(node.stdout_text().contains("PostgreSQL"));
    let out = run_pbx(
        &["admin", "reset-password", "--email", "ops@operator.test"],
        &env,
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("password: "));
    let out = run_pbx(
        &["admin", "reset-password", "--email", "nobody@operator.test"],
        &env,
    );
    assert_one_line_error(&out, "no login");
    let status = node.stop();
    assert!(status.success());
    let _ = Duration::from_secs(0);
    drop(db);
}
