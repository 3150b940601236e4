//! The console in a real browser (headless Chromium over WebDriver) against
//! the real `pbx serve --demo`: each role signs in under its brand's host
//! name, the customer admin creates an extension, a SIPp phone registers
//! with the credentials the page showed, and the dashboard shows it live;
//! an auto-attendant menu is made with a key to that extension and a number
//! routed to it.
//! Screenshots of the main pages under two resellers' brands go to
//! `target/screenshots/` (CI output, not committed).

mod support;

use std::path::PathBuf;
use std::time::Duration;

use pbx_store::customers::NewCustomer;
use pbx_store::logins::{NewLogin, Role};
use pbx_store::resellers::Brand;
use pbx_store::Principal;
use serde_json::Value;
use support::browser::{self, Browser};
use support::sip::{open_seeded, register, secret_key_base64, sipp_available, Phone};
use support::{free_port, Node, TempDir};

const SECOND_HOST: &str = "suedwind.localhost";
const SECOND_PASSWORD: &str = "korn-bakery-2026-admin";

fn screenshots() -> PathBuf {
    std::env::var_os("PBX_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
                .join("screenshots")
        })
}

/// A second reseller with a brand of its own, and a customer admin of it.
fn second_brand(dir: &TempDir) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = open_seeded(dir.path()).await;
        let sys = Principal::system();
        let mut settings = pbx_store::testing::reseller_settings("Suedwind Telefonie");
        settings.brand = Brand {
            primary_color: "#b45309".into(),
            accent_color: "#7c3aed".into(),
            login_text: Some("Willkommen bei Südwind Telefonie.".into()),
            support_phone: Some("+49 761 000000".into()),
            ..Brand::named("Südwind Telefonie")
        };
        settings.console_hosts = vec![SECOND_HOST.into()];
        let reseller = store
            .resellers()
            .create(&sys, &settings)
            .await
            .expect("reseller");
        let customer = store
            .customers()
            .create(
                &sys,
                reseller.id,
                &NewCustomer {
                    name: "Bäckerei Korn".into(),
                    ..NewCustomer::default()
                },
            )
            .await
            .expect("customer");
        store
            .logins()
            .create(
                &sys,
                &NewLogin {
                    email: "chef@korn.localhost".into(),
                    password: SECOND_PASSWORD.into(),
                    role: Role::CustomerAdmin,
                    reseller_id: None,
                    customer_id: Some(customer.id),
                    extension_id: None,
                    display_name: "Karla Korn".into(),
                },
            )
            .await
            .expect("login");
        store.close().await;
    });
}

/// A phone number of the demo customer, made as the operator would; its id.
fn a_number_for(dir: &TempDir, customer: i64) -> i64 {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = open_seeded(dir.path()).await;
        let sys = Principal::system();
        let customer = store
            .customers()
            .get(&sys, pbx_store::CustomerId(customer))
            .await
            .expect("customer");
        let number = store
            .numbers()
            .create(&sys, "+49401234500", Some(customer.reseller_id))
            .await
            .expect("number");
        store
            .numbers()
            .assign(&sys, number.id, customer.id)
            .await
            .expect("assigned");
        store.close().await;
        number.id.0
    })
}

/// The value of the option whose label starts with `label` in the page.
fn option_value(source: &str, label: &str) -> String {
    let end = source
        .find(&format!("\">{label}"))
        .unwrap_or_else(|| panic!("an option {label}"));
    let start = source[..end].rfind("value=\"").expect("its value") + "value=\"".len();
    source[start..end].to_owned()
}

fn sign_in(browser: &Browser, base: &str, email: &str, password: &str) -> String {
    browser.goto(&format!("{base}/login"));
    browser.type_into("#email", email);
    browser.type_into("#password", password);
    browser.click("form[action='/login'] button[type='submit']");
    browser.wait_for_url(Duration::from_secs(10), |u| !u.ends_with("/login"))
}

fn sign_out(browser: &Browser) {
    browser.click("form[action='/logout'] button");
    browser.wait_for_url(Duration::from_secs(10), |u| u.ends_with("/login"));
}

fn field<'a>(demo: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .fold(demo, |v, k| &v[*k])
        .as_str()
        .unwrap_or_else(|| panic!("demo.json has {path:?}"))
}

#[test]
fn each_role_signs_in_and_a_phone_shows_up_live_on_the_dashboard() {
    if !browser::available() || !sipp_available() {
        return;
    }
    let dir = TempDir::new("console-browser");
    let key = secret_key_base64();
    let node = Node::start(
        dir.path(),
        &["serve", "--demo"],
        &[
            ("PBX_SECRET_KEY", key.as_str()),
            ("PBX_SIP_DIGEST_ALGORITHMS", "MD5"),
        ],
    );
    second_brand(&dir);
    let demo: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("demo.json")).expect("demo.json"),
    )
    .expect("demo.json is JSON");
    let port = node.http.port();
    let nordlicht = format!(
        "http://{}:{port}",
        field(&demo, &["reseller", "console_host"])
    );
    let shots = screenshots();
    let browser = Browser::start();

    // The customer admin: the demo reseller's brand, not the operator's.
    let home = sign_in(
        &browser,
        &nordlicht,
        field(&demo, &["customer", "admin_login", "email"]),
        field(&demo, &["customer", "admin_login", "password"]),
    );
    let customer = demo["customer"]["id"].as_i64().expect("customer id");
    assert!(home.ends_with(&format!("/customers/{customer}")), "{home}");
    let title = browser.title();
    assert!(title.contains("Nordlicht Voice"), "{title}");
    let operator = field(&demo, &["operator", "name"]);
    assert!(!browser.source().contains(operator));
    browser.screenshot(&shots, "nordlicht-dashboard");

    // Create an extension with a device; the page shows its credentials once.
    browser.goto(&format!("{nordlicht}/customers/{customer}/extensions"));
    browser.screenshot(&shots, "nordlicht-extensions");
    browser.type_into("#number", "150");
    browser.type_into("#display_name", "Browser Test");
    browser.click("form[action$='/extensions'] button[type='submit']");
    let user = browser.wait_for_text("[data-testid='sip-user']", Duration::from_secs(10), |t| {
        !t.is_empty()
    });
    let password = browser.text("[data-testid='sip-password']");
    let domain = browser.text("[data-testid='sip-domain']");
    assert_eq!(user, "150");
    assert_eq!(password.len(), 20, "a generated SIP password is shown");
    let proxy = browser.text("[data-testid='sip-server']");
    assert_eq!(
        proxy,
        format!("127.0.0.1:{}", node.sip_port),
        "phones are told where to send SIP"
    );
    browser.screenshot(&shots, "nordlicht-credentials");

    // A conference room with a PIN, made in the browser.
    browser.goto(&format!(
        "{nordlicht}/customers/{customer}/conference-rooms"
    ));
    browser.type_into("#cr-number", "880");
    browser.type_into("#cr-name", "Weekly meeting");
    browser.type_into("#cr-pin", "13579");
    browser.click("form[action$='/conference-rooms'] button[type='submit']");
    let heading = browser.wait_for_text("h1", Duration::from_secs(10), |t| t.contains("880"));
    assert!(heading.contains("Weekly meeting"), "{heading}");
    assert_eq!(browser.text(".flash"), "Conference room created.");
    browser.screenshot(&shots, "nordlicht-conference-room");

    // A menu whose key 1 rings the new extension; a number leads to it.
    browser.goto(&format!("{nordlicht}/customers/{customer}/ivr-menus"));
    browser.type_into("#menu-name", "Reception");
    let to_150 = option_value(&browser.source(), "150 Browser Test");
    assert!(to_150.starts_with("extension:"), "{to_150}");
    browser.click(&format!("#menu-key_1 option[value='{to_150}']"));
    browser.click("form[action$='/ivr-menus'] button[type='submit']");
    let heading = browser.wait_for_text("h1", Duration::from_secs(10), |t| t.contains("Reception"));
    assert!(heading.starts_with("Menu"), "{heading}");
    assert_eq!(browser.text(".flash"), "Menu created.");
    let menu_page = browser.url();
    let menu: i64 = menu_page
        .split("/ivr-menus/")
        .nth(1)
        .and_then(|rest| rest.split('?').next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("a menu's address: {menu_page}"));
    assert!(browser
        .source()
        .contains(&format!("value=\"{to_150}\" selected")));
    browser.screenshot(&shots, "nordlicht-ivr-menu");
    browser.goto(&format!("{nordlicht}/customers/{customer}/ivr-menus"));
    let listed = browser.text("main table");
    assert!(
        listed.contains("Reception") && listed.contains("150 Browser Test"),
        "{listed}"
    );
    let number = a_number_for(&dir, customer);
    browser.goto(&format!("{nordlicht}/customers/{customer}/numbers"));
    browser.click(&format!("#number-{number} option[value='ivr_menu:{menu}']"));
    browser.click(&format!(
        "form[action='/numbers/{number}/destination'] button[type='submit']"
    ));
    let flash = browser.wait_for_text(".flash", Duration::from_secs(10), |t| !t.is_empty());
    assert_eq!(flash, "Saved.");
    assert!(browser
        .source()
        .contains(&format!("value=\"ivr_menu:{menu}\" selected")));
    browser.screenshot(&shots, "nordlicht-numbers");

    // Call recording turned on for the new extension, kept 30 days.
    browser.goto(&format!("{nordlicht}/customers/{customer}/recordings"));
    browser.click("input[type='checkbox'][name^='ext_']");
    browser.type_into("#retention_days", "30");
    browser.click("form[action$='/recordings'] button[type='submit']");
    let flash = browser.wait_for_text(".flash", Duration::from_secs(10), |t| !t.is_empty());
    assert_eq!(flash, "Saved.");
    // The page shows what was stored.
    assert!(browser.source().contains("value=\"30\""));
    browser.screenshot(&shots, "nordlicht-call-recording");

    // The dashboard counts registered devices live: a SIPp phone registers
    // with what the page showed, and the count moves without a reload.
    browser.goto(&format!("{nordlicht}/customers/{customer}"));
    let before: usize = browser
        .text("[data-testid='registered-count']")
        .parse()
        .expect("count");
    let phone = Phone {
        user: user.clone(),
        password,
        domain,
    };
    let outcome = register(&node, &phone, free_port(), "u1");
    assert!(
        outcome.success,
        "SIPp registered with the console's credentials: {}",
        outcome.log
    );
    // What the phone saw on the wire names no operator either (realm = the
    // customer's domain, no product in Server).
    assert!(!outcome.log.contains(operator) && !outcome.log.contains("Ostwind"));
    assert!(
        outcome.log.contains(&format!("realm=\"{}\"", phone.domain)),
        "{}",
        outcome.log
    );
    let after = browser.wait_for_text(
        "[data-testid='registered-count']",
        Duration::from_secs(20),
        |t| t.parse::<usize>().is_ok_and(|n| n > before),
    );
    assert_eq!(
        after,
        (before + 1).to_string(),
        "the dashboard showed the phone live"
    );
    assert!(browser.source().contains("150"));
    browser.screenshot(&shots, "nordlicht-dashboard-registered");
    browser.goto(&format!("{nordlicht}/customers/{customer}/calls"));
    browser.screenshot(&shots, "nordlicht-calls");
    sign_out(&browser);

    // The customer's user lands on its own extension.
    let home = sign_in(
        &browser,
        &nordlicht,
        field(&demo, &["customer", "user_login", "email"]),
        field(&demo, &["customer", "user_login", "password"]),
    );
    assert!(home.contains("/extensions/"), "{home}");
    browser.screenshot(&shots, "nordlicht-user-extension");
    // The user gives its box a PIN (for *98) and an address for its mail.
    assert!(browser.source().contains("No PIN"));
    browser.type_into("#vm_email", "user@acme.test");
    browser.type_into("#vm_pin", "2468");
    browser.click("form[action$='/voicemail'] button[type='submit']");
    let flash = browser.wait_for_text(".flash", Duration::from_secs(10), |t| !t.is_empty());
    assert_eq!(flash, "Saved.");
    let page = browser.source();
    assert!(page.contains("The box has a PIN"), "{page}");
    assert!(!page.contains("2468"), "the PIN is never shown");
    assert!(page.contains("value=\"user@acme.test\""));
    sign_out(&browser);

    // The reseller admin: customers and the brand editor.
    let home = sign_in(
        &browser,
        &nordlicht,
        field(&demo, &["reseller", "login", "email"]),
        field(&demo, &["reseller", "login", "password"]),
    );
    assert!(home.ends_with("/customers"), "{home}");
    assert!(browser.source().contains("Acme GmbH"));
    browser.screenshot(&shots, "nordlicht-reseller-customers");
    browser.goto(&format!("{nordlicht}/brand"));
    browser.screenshot(&shots, "nordlicht-brand-editor");
    sign_out(&browser);

    // The operator, on the operator's own host.
    let ops = format!("http://localhost:{port}");
    let home = sign_in(
        &browser,
        &ops,
        field(&demo, &["operator", "login", "email"]),
        field(&demo, &["operator", "login", "password"]),
    );
    assert!(home.ends_with("/resellers"), "{home}");
    assert!(browser.source().contains("Nordlicht IT"));
    browser.screenshot(&shots, "operator-resellers");
    sign_out(&browser);

    // A second reseller's customer: its own brand, nothing of the first.
    let suedwind = format!("http://{SECOND_HOST}:{port}");
    browser.goto(&format!("{suedwind}/login"));
    browser.screenshot(&shots, "suedwind-login");
    let home = sign_in(&browser, &suedwind, "chef@korn.localhost", SECOND_PASSWORD);
    assert!(home.contains("/customers/"), "{home}");
    let title = browser.title();
    assert!(title.contains("Südwind Telefonie"), "{title}");
    let source = browser.source();
    assert!(!source.contains("Nordlicht") && !source.contains(operator));
    browser.screenshot(&shots, "suedwind-dashboard");
    // The language picked at the page foot is saved with the login: German.
    browser.click("form[action='/account/language'] button[value='de']");
    let german = browser.wait_for_text("main h2", Duration::from_secs(10), |t| {
        t.starts_with("Angemeldete Geräte")
    });
    assert!(german.starts_with("Angemeldete Geräte"), "{german}");
    assert!(browser.source().contains("<html lang=\"de\""));
    browser.screenshot(&shots, "suedwind-dashboard-de");
    sign_out(&browser);
    drop(browser);
    node.stop();
}
