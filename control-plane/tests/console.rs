//! The branded console, driven like a browser without a socket: sign-in per
//! host, every page and form of each role, CSRF and Origin checks, URL
//! tampering into another tenant as each role, and a crawl of everything
//! reachable under a reseller's host name that must never show the operator
//! (or the other reseller). On SQLite and PostgreSQL.

mod support;

use std::collections::{BTreeSet, VecDeque};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use pbx_store::logins::{NewLogin, Role};
use pbx_store::testing::TestDb;
use pbx_store::Principal;
use support::Api;
use tower::ServiceExt;

const OPERATOR_NAME: &str = "Ostwind Carrier Services";
const OPERATOR_HOST: &str = "ops.ostwind.test";
const HOST_X: &str = "console.reseller-x.test";
const HOST_Y: &str = "console.reseller-y.test";
const PASSWORD: &str = "a long enough password";

struct Page {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .expect("page has a form");
        let rest = &self.body[at + 19..];
        rest[..rest.find('"').expect("value ends")].to_owned()
    }
}

/// A browser on one host: keeps the session cookie.
struct Browser {
    router: axum::Router,
    host: &'static str,
    cookie: Option<String>,
}

impl Browser {
    fn new(api: &Api, host: &'static str) -> Browser {
        Browser {
            router: api.router.clone(),
            host,
            cookie: None,
        }
    }

    async fn send(&mut self, method: Method, path: &str, body: Option<(Vec<u8>, &str)>) -> Page {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.host)
            .header(header::ACCEPT_LANGUAGE, "en");
        if let Some(c) = &self.cookie {
            req = req.header(header::COOKIE, format!("__Host-session={c}"));
        }
        let body = match body {
            Some((text, content_type)) => {
                req = req
                    .header(header::CONTENT_TYPE, content_type)
                    .header(header::ORIGIN, format!("https://{}", self.host));
                Body::from(text)
            }
            None => Body::empty(),
        };
        let response = self
            .router
            .clone()
            .oneshot(req.body(body).expect("request"))
            .await
            .expect("answer");
        let status = response.status();
        let headers = response.headers().clone();
        for cookie in headers.get_all(header::SET_COOKIE) {
            let text = cookie.to_str().unwrap_or("");
            if let Some(rest) = text.strip_prefix("__Host-session=") {
                let value = rest.split(';').next().unwrap_or("");
                self.cookie = (!value.is_empty()).then(|| value.to_owned());
            }
        }
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        Page {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        self.send(Method::GET, path, None).await
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.send(
            Method::POST,
            path,
            Some((body.into_bytes(), "application/x-www-form-urlencoded")),
        )
        .await
    }

    /// Posts an upload form: its `csrf` field, then `file` holding `bytes`.
    async fn upload(&mut self, path: &str, csrf: &str, file: &str, bytes: &[u8]) -> Page {
        let boundary = "XyZboundary";
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"{file}\"; filename=\"upload\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        self.send(
            Method::POST,
            path,
            Some((body, "multipart/form-data; boundary=XyZboundary")),
        )
        .await
    }

    async fn sign_in(&mut self, email: &str) -> Page {
        let page = self
            .post("/login", &[("email", email), ("password", PASSWORD)])
            .await;
        assert_eq!(
            page.status,
            StatusCode::SEE_OTHER,
            "{email} signs in: {}",
            page.body
        );
        page
    }

    /// A page's CSRF token, read from the page as a browser would.
    async fn token(&mut self, path: &str) -> String {
        self.get(path).await.csrf()
    }
}

async fn setup(db: TestDb) -> Api {
    let api = Api::new(db).await;
    let sys = Principal::system();
    let store = &api.db.store;
    store
        .operator()
        .set(&sys, OPERATOR_NAME, &[OPERATOR_HOST.to_owned()])
        .await
        .expect("operator");
    store
        .logins()
        .create(
            &sys,
            &NewLogin {
                email: "root@ostwind.test".into(),
                password: PASSWORD.into(),
                role: Role::OperatorAdmin,
                reseller_id: None,
                customer_id: None,
                extension_id: None,
                display_name: "Root".into(),
            },
        )
        .await
        .expect("operator admin");
    api
}

async fn sign_in_follows_the_host(db: TestDb) {
    let api = setup(db).await;
    let a = api.t.customer_a.id;
    let mut x = Browser::new(&api, HOST_X);
    let script = x.get("/assets/console.js").await;
    assert_eq!(script.status, StatusCode::OK);
    assert_eq!(
        script
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("text/javascript; charset=utf-8")
    );
    assert!(script.headers.contains_key(header::CONTENT_SECURITY_POLICY));
    assert_eq!(
        x.get("/assets/../secret").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(x.get("/assets/nope.js").await.status, StatusCode::NOT_FOUND);
    // Platform counters are not served under a reseller's name.
    assert_eq!(x.get("/metrics").await.status, StatusCode::NOT_FOUND);
    let mut ops = Browser::new(&api, OPERATOR_HOST);
    assert_eq!(ops.get("/metrics").await.status, StatusCode::OK);
    let login = x.get("/login").await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(login.body.contains("Reseller X Phone"), "{}", login.body);
    assert!(!login.body.contains(OPERATOR_NAME));

    // Customer A's admin belongs to reseller X: not on Y's host, not on the
    // operator's, and the failure reads exactly like a wrong password.
    let mut y = Browser::new(&api, HOST_Y);
    let wrong_host = y
        .post(
            "/login",
            &[("email", "admin@acme.test"), ("password", PASSWORD)],
        )
        .await;
    let wrong_password = y
        .post(
            "/login",
            &[
                ("email", "admin@bolt.test"),
                ("password", "not the password"),
            ],
        )
        .await;
    assert_eq!(wrong_host.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong_password.status, StatusCode::UNAUTHORIZED);
    assert!(wrong_host
        .body
        .contains("The e-mail address or the password is wrong."));
    assert!(!wrong_host.body.contains("Reseller X"));
    let mut ops = Browser::new(&api, OPERATOR_HOST);
    let refused = ops
        .post(
            "/login",
            &[("email", "admin@acme.test"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let mut unknown = Browser::new(&api, "unclaimed.example");
    let page = unknown.get("/login").await;
    assert!(page.body.contains("not set up"), "{}", page.body);
    assert!(!page.body.contains(OPERATOR_NAME) && !page.body.contains("Reseller"));
    let refused = unknown
        .post(
            "/login",
            &[("email", "root@ostwind.test"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);

    let signed = x.sign_in("admin@acme.test").await;
    assert_eq!(signed.location(), format!("/customers/{a}"));
    let cookie = signed
        .headers
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .expect("cookie");
    for attribute in [
        "__Host-session=",
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/",
    ] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let dashboard = x.get(&format!("/customers/{a}")).await;
    assert_eq!(dashboard.status, StatusCode::OK);
    assert!(dashboard.body.contains("Acme"));

    // The same cookie carried to reseller Y's host is no session there.
    let mut stolen = Browser::new(&api, HOST_Y);
    stolen.cookie = x.cookie.clone();
    let page = stolen.get(&format!("/customers/{a}")).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert!(page.location().starts_with("/login"));

    // Signing out ends the session for good.
    let token = x.token(&format!("/customers/{a}")).await;
    let old = x.cookie.clone();
    let out = x.post("/logout", &[("csrf", &token)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    x.cookie = old;
    let after = x.get(&format!("/customers/{a}")).await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert_eq!(after.location(), "/login?expired=1");
}

async fn customer_admin_creates_an_extension_and_sees_its_password_once(db: TestDb) {
    let api = setup(db).await;
    let a = api.t.customer_a.id;
    let mut x = Browser::new(&api, HOST_X);
    x.sign_in("admin@acme.test").await;
    let list = format!("/customers/{a}/extensions");
    let token = x.token(&list).await;

    // Without the session's token, or from another site: refused, nothing made.
    let forged = x
        .post(
            &list,
            &[
                ("csrf", "forged"),
                ("number", "150"),
                ("display_name", "Eve"),
            ],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(&list)
        .header(header::HOST, HOST_X)
        .header(header::ORIGIN, "https://evil.example")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    req = req.header(
        header::COOKIE,
        format!("__Host-session={}", x.cookie.clone().unwrap_or_default()),
    );
    let cross_site = api
        .router
        .clone()
        .oneshot(
            req.body(Body::from(format!(
                "csrf={token}&number=151&display_name=Eve"
            )))
            .expect("request"),
        )
        .await
        .expect("answer");
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    let names: Vec<String> = api
        .db
        .store
        .extensions()
        .list(&api.t.customer_a_admin, a)
        .await
        .expect("list")
        .into_iter()
        .map(|e| e.number)
        .collect();
    assert_eq!(names, vec!["101"]);

    // A bad number comes back on the form with the field named.
    let invalid = x
        .post(
            &list,
            &[("csrf", &token), ("number", "1x"), ("display_name", "Bad")],
        )
        .await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(invalid.body.contains("number"), "{}", invalid.body);

    let created = x
        .post(
            &list,
            &[
                ("csrf", &token),
                ("number", "102"),
                ("display_name", "Bea <b>"),
                ("with_device", "1"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    assert_eq!(
        created
            .headers
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let password = between(&created.body, "data-testid=\"sip-password\">", "<");
    assert_eq!(password.len(), 20, "{}", created.body);
    assert!(created.body.contains("data:image/svg+xml;base64,"));
    // Names are escaped, never markup.
    let listed = x.get(&list).await;
    assert!(listed.body.contains("Bea &lt;b&gt;"));
    assert!(!listed.body.contains("Bea <b>"));
    // The password is not on any later page.
    assert!(!listed.body.contains(&password));
    let ext = api
        .db
        .store
        .extensions()
        .list(&api.t.customer_a_admin, a)
        .await
        .expect("list")
        .into_iter()
        .find(|e| e.number == "102")
        .expect("created");
    let detail = x.get(&format!("/extensions/{}", ext.id)).await;
    assert_eq!(detail.status, StatusCode::OK);
    assert!(!detail.body.contains(&password));

    // Do-not-disturb and forwarding from the extension's page.
    let token = detail.csrf();
    let saved = x
        .post(
            &format!("/extensions/{}", ext.id),
            &[
                ("csrf", &token),
                ("display_name", "Bea"),
                ("dnd", "1"),
                ("version", &ext.version.to_string()),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let forwarded = x
        .post(
            &format!("/extensions/{}/forwarding", ext.id),
            &[
                ("csrf", &token),
                ("no_answer", "101"),
                ("ring_time_s", "15"),
                ("always", ""),
            ],
        )
        .await;
    assert_eq!(
        forwarded.status,
        StatusCode::SEE_OTHER,
        "{}",
        forwarded.body
    );
    let forwards = api
        .db
        .store
        .forwards()
        .get(&api.t.customer_a_admin, ext.id)
        .await
        .expect("forwards");
    assert_eq!(forwards.len(), 1);
    assert_eq!(
        (forwards[0].target.as_str(), forwards[0].timeout_s),
        ("101", Some(15))
    );
    let stale = x
        .post(
            &format!("/extensions/{}", ext.id),
            &[
                ("csrf", &token),
                ("display_name", "Old"),
                ("version", &ext.version.to_string()),
            ],
        )
        .await;
    assert_eq!(
        stale.status,
        StatusCode::CONFLICT,
        "a stale form does not overwrite"
    );

    // Deleting needs the confirmation box.
    let unconfirmed = x
        .post(
            &format!("/extensions/{}/delete", ext.id),
            &[("csrf", &token)],
        )
        .await;
    assert_eq!(unconfirmed.status, StatusCode::BAD_REQUEST);
    let deleted = x
        .post(
            &format!("/extensions/{}/delete", ext.id),
            &[("csrf", &token), ("confirm", "1")],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER);
    assert_eq!(
        x.get(&format!("/extensions/{}", ext.id)).await.status,
        StatusCode::NOT_FOUND
    );
}

fn between(text: &str, start: &str, end: &str) -> String {
    let at = text
        .find(start)
        .map(|i| i + start.len())
        .unwrap_or(text.len());
    let rest = &text[at..];
    rest[..rest.find(end).unwrap_or(rest.len())].to_owned()
}

/// Every page of another tenant, tried by URL as each role: a 404 (or the
/// sign-in page), never its content.
async fn other_tenants_pages_are_not_found_for_every_role(db: TestDb) {
    let api = setup(db).await;
    let t = &api.t;
    let (b, eb, db_) = (t.customer_b.id, t.extension_b.id, t.device_b.id);
    let a = t.customer_a.id;
    let foreign_gets = [
        format!("/customers/{b}"),
        format!("/customers/{b}/ring-groups"),
        format!("/customers/{b}/live"),
        format!("/customers/{b}/extensions"),
        format!("/customers/{b}/numbers"),
        format!("/customers/{b}/calls"),
        format!("/customers/{b}/calls?format=csv"),
        format!("/customers/{b}/usage"),
        format!("/extensions/{eb}"),
    ];
    let foreign_posts = [
        format!("/customers/{b}/extensions"),
        format!("/customers/{b}/ring-groups"),
        format!("/customers/{b}/impersonate"),
        format!("/customers/{b}/status"),
        format!("/extensions/{eb}"),
        format!("/extensions/{eb}/delete"),
        format!("/extensions/{eb}/forwarding"),
        format!("/extensions/{eb}/devices"),
        format!("/devices/{db_}/reset-secret"),
        format!("/devices/{db_}/delete"),
    ];
    for email in ["admin@acme.test", "user@acme.test", "x@reseller-x.test"] {
        let mut x = Browser::new(&api, HOST_X);
        x.sign_in(email).await;
        let start = x.get("/").await.location().to_owned();
        let token = x.token(&start).await;
        for path in &foreign_gets {
            let page = x.get(path).await;
            assert_eq!(page.status, StatusCode::NOT_FOUND, "{email} GET {path}");
            assert!(!page.body.contains("Bolt"), "{email} GET {path}");
            assert!(page.body.contains("Reseller X Phone"), "the 404 is branded");
        }
        for path in &foreign_posts {
            let page = x
                .post(
                    path,
                    &[
                        ("csrf", &token),
                        ("number", "555"),
                        ("name", "x"),
                        ("status", "suspended"),
                        ("confirm", "1"),
                        ("display_name", "x"),
                    ],
                )
                .await;
            assert!(
                matches!(page.status, StatusCode::NOT_FOUND | StatusCode::FORBIDDEN),
                "{email} POST {path}: {}",
                page.status
            );
        }
    }
    // Customer B was not touched by any of it.
    let sys = Principal::system();
    let b_now = api.db.store.customers().get(&sys, b).await.expect("B");
    assert_eq!(b_now.status, pbx_store::resellers::Status::Active);
    let devices = api
        .db
        .store
        .devices()
        .list(&sys, eb)
        .await
        .expect("devices");
    assert_eq!(devices.len(), 1);

    // A customer user sees only its own extension, not its colleagues' or
    // the admin pages of its own customer.
    let mut user = Browser::new(&api, HOST_X);
    user.sign_in("user@acme.test").await;
    for path in [
        format!("/customers/{a}"),
        format!("/customers/{a}/extensions"),
        "/customers".into(),
        "/brand".into(),
        "/resellers".into(),
    ] {
        assert_eq!(
            user.get(&path).await.status,
            StatusCode::NOT_FOUND,
            "user GET {path}"
        );
    }
    let own = user.get(&format!("/extensions/{}", t.extension_a.id)).await;
    assert_eq!(own.status, StatusCode::OK);
    // A customer admin is not a reseller, nor the operator.
    let mut admin = Browser::new(&api, HOST_X);
    admin.sign_in("admin@acme.test").await;
    for path in ["/customers", "/brand", "/resellers", "/health"] {
        assert_eq!(
            admin.get(path).await.status,
            StatusCode::NOT_FOUND,
            "admin GET {path}"
        );
    }
}

/// Everything reachable under each reseller's host, as each of its roles:
/// pages, stylesheets, scripts, images, exports. None may name the operator
/// or the other reseller (or its customer), in body, headers or cookies.
async fn nothing_under_a_resellers_host_shows_the_operator(db: TestDb) {
    let api = setup(db).await;
    let operator = [OPERATOR_NAME, "Ostwind", OPERATOR_HOST];
    let brands = [
        (
            HOST_X,
            ["Reseller Y", HOST_Y, "reseller-y", "Bolt"],
            &["admin@acme.test", "user@acme.test", "x@reseller-x.test"][..],
        ),
        (
            HOST_Y,
            ["Reseller X", HOST_X, "reseller-x", "Acme"],
            &["admin@bolt.test", "y@reseller-y.test"][..],
        ),
    ];
    for (host, other, emails) in brands {
        let markers: Vec<&str> = operator.iter().chain(other.iter()).copied().collect();
        let mut anonymous = Browser::new(&api, host);
        let mut crawled = crawl(&mut anonymous, "/login", &markers).await;
        for email in emails {
            let mut browser = Browser::new(&api, host);
            browser.sign_in(email).await;
            crawled += crawl(&mut browser, "/", &markers).await;
        }
        // Error pages too.
        for path in [
            "/no-such-page",
            "/customers/999999",
            "/extensions/abc",
            "/password/reset?token=x",
        ] {
            let page = anonymous.get(path).await;
            check_markers(&page, path, &markers);
        }
        assert!(crawled >= 20, "{host}: crawled only {crawled} resources");
    }
}

/// Follows every same-host link and resource from `start`; returns how many
/// resources were fetched.
async fn crawl(browser: &mut Browser, start: &str, markers: &[&str]) -> usize {
    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::from([start.to_owned()]);
    while let Some(path) = queue.pop_front() {
        if !seen.insert(path.clone()) || seen.len() > 300 {
            continue;
        }
        let page = browser.get(&path).await;
        check_markers(&page, &path, markers);
        if page.status.is_redirection() {
            queue.push_back(page.location().to_owned());
            continue;
        }
        assert!(
            page.status.is_success(),
            "{path} answered {}: {}",
            page.status,
            page.body
        );
        for attribute in ["href=\"", "src=\""] {
            for (i, _) in page.body.match_indices(attribute) {
                let rest = &page.body[i + attribute.len()..];
                let link = rest[..rest.find('"').unwrap_or(0)].replace("&amp;", "&");
                let link = link.split('#').next().unwrap_or("").to_owned();
                if link.starts_with('/') && !link.starts_with("//") {
                    queue.push_back(link);
                } else if link.starts_with('?') {
                    let base = path.split('?').next().unwrap_or("/");
                    queue.push_back(format!("{base}{link}"));
                }
            }
        }
    }
    seen.len()
}

fn check_markers(page: &Page, path: &str, markers: &[&str]) {
    for marker in markers {
        assert!(
            !page.body.to_lowercase().contains(&marker.to_lowercase()),
            "{path} shows {marker:?}"
        );
    }
    for (name, value) in &page.headers {
        let value = value.to_str().unwrap_or("");
        for marker in markers {
            assert!(
                !value.contains(marker),
                "{path}: header {name} shows {marker:?}"
            );
        }
        assert!(
            name != header::SERVER && name.as_str() != "x-powered-by",
            "{path} sends {name}"
        );
        if name == header::SET_COOKIE {
            let cookie = value.split('=').next().unwrap_or("");
            assert!(
                ["__Host-session", "lang"].contains(&cookie),
                "{path} sets {cookie}"
            );
        }
    }
    if page
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"))
    {
        let csp = page
            .headers
            .get(header::CONTENT_SECURITY_POLICY)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{path}: {csp}"
        );
        assert!(
            !page.body.contains("<script>") && !page.body.contains(" onclick="),
            "{path} has inline script"
        );
    }
}

async fn reseller_admin_runs_customers_and_brand(db: TestDb) {
    let api = setup(db).await;
    let mut x = Browser::new(&api, HOST_X);
    x.sign_in("x@reseller-x.test").await;
    let token = x.token("/customers").await;
    let created = x
        .post("/customers", &[("csrf", &token), ("name", "Cafe Nord")])
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let list = x.get("/customers?done=customer_created").await;
    assert!(list.body.contains("Cafe Nord") && list.body.contains("Customer created."));
    let a = api.t.customer_a.id;
    let suspended = x
        .post(
            &format!("/customers/{a}/status"),
            &[("csrf", &token), ("status", "suspended")],
        )
        .await;
    assert_eq!(suspended.status, StatusCode::SEE_OTHER);
    // The suspended customer's admin cannot sign in any more.
    let mut admin = Browser::new(&api, HOST_X);
    let refused = admin
        .post(
            "/login",
            &[("email", "admin@acme.test"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let usage = x.get(&format!("/customers/{a}/usage?month=2026-01")).await;
    assert_eq!(usage.status, StatusCode::OK);
    assert!(usage.body.contains("2026-01"));

    // The brand: colours and texts, then a logo; script-carrying SVG refused.
    let brand = x.get("/brand").await;
    let version = between(&brand.body, "name=\"version\" value=\"", "\"");
    let saved = x
        .post(
            "/brand",
            &[
                ("csrf", &token),
                ("version", &version),
                ("product_name", "Nordwind Telefon"),
                ("primary_color", "#AA3300"),
                ("accent_color", "#005577"),
                ("login_text", "Willkommen"),
                ("console_hosts", HOST_X),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let theme = x.get("/brand/theme.css").await;
    assert!(theme.body.contains("--primary:#aa3300"), "{}", theme.body);
    let mut anonymous = Browser::new(&api, HOST_X);
    let login = anonymous.get("/login").await;
    assert!(login.body.contains("Nordwind Telefon") && login.body.contains("Willkommen"));

    let upload = |image: &[u8], token: &str| {
        let boundary = "XyZboundary";
        let mut body = Vec::new();
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{token}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"logo\"\r\nContent-Type: image/png\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(image);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        body
    };
    let send = |body: Vec<u8>, cookie: String| {
        let router = api.router.clone();
        async move {
            router
                .oneshot(
                    Request::builder()
                        .method(Method::POST)
                        .uri("/brand/logo")
                        .header(header::HOST, HOST_X)
                        .header(header::ORIGIN, format!("https://{HOST_X}"))
                        .header(header::COOKIE, format!("__Host-session={cookie}"))
                        .header(
                            header::CONTENT_TYPE,
                            "multipart/form-data; boundary=XyZboundary",
                        )
                        .body(Body::from(body))
                        .expect("request"),
                )
                .await
                .expect("answer")
        }
    };
    let cookie = x.cookie.clone().expect("signed in");
    let evil = b"<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"></svg>";
    let refused = send(upload(evil, &token), cookie.clone()).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let forged = send(upload(b"\x89PNG\r\n\x1a\nrest", "forged"), cookie.clone()).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    let accepted = send(upload(png, &token), cookie).await;
    assert_eq!(accepted.status(), StatusCode::SEE_OTHER);
    let logo = anonymous.get("/brand/logo").await;
    assert_eq!(
        logo.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("image/png")
    );
    // Reseller Y's host still shows Y's own (default) logo.
    let mut y = Browser::new(&api, HOST_Y);
    let other = y.get("/brand/logo").await;
    assert_eq!(
        other
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("image/svg+xml")
    );
    assert!(other
        .headers
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("sandbox")));
}

async fn reseller_admin_opens_a_customers_console_visibly(db: TestDb) {
    let api = setup(db).await;
    let (a, b) = (api.t.customer_a.id, api.t.customer_b.id);
    let mut x = Browser::new(&api, HOST_X);
    x.sign_in("x@reseller-x.test").await;
    let token = x.token("/customers").await;
    assert!(x
        .get("/customers")
        .await
        .body
        .contains(&format!("/customers/{a}/impersonate")));
    // Another reseller's customer cannot be opened.
    let refused = x
        .post(&format!("/customers/{b}/impersonate"), &[("csrf", &token)])
        .await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    let opened = x
        .post(&format!("/customers/{a}/impersonate"), &[("csrf", &token)])
        .await;
    assert_eq!(opened.status, StatusCode::SEE_OTHER);
    assert_eq!(opened.location(), format!("/customers/{a}"));
    let dashboard = x.get(&format!("/customers/{a}")).await;
    assert_eq!(dashboard.status, StatusCode::OK);
    assert!(
        dashboard.body.contains("class=\"impersonation\""),
        "visibly marked"
    );
    assert!(dashboard.body.contains("Acme"));
    // While acting as the customer, the reseller's own pages are not at hand.
    assert_eq!(x.get("/brand").await.status, StatusCode::NOT_FOUND);
    // What it does is done as the customer, and logged as the reseller's admin.
    let list = format!("/customers/{a}/extensions");
    let created = x
        .post(
            &list,
            &[
                ("csrf", &token),
                ("number", "177"),
                ("display_name", "Via reseller"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let ended = x.post("/impersonation/end", &[("csrf", &token)]).await;
    assert_eq!(ended.status, StatusCode::SEE_OTHER);
    let back = x.get("/customers").await;
    assert_eq!(back.status, StatusCode::OK);
    assert!(!back.body.contains("class=\"impersonation\""));
    let logged = api
        .db
        .count(&format!(
            "SELECT COUNT(*) AS n FROM audit_log WHERE customer_id = {a} \
             AND actor = 'login:x@reseller-x.test' AND action IN ('impersonate', 'impersonate_end', 'create')"
        ))
        .await;
    assert_eq!(
        logged, 3,
        "opening, the change made, and closing are in the audit log"
    );
}

/// A local SMTP server that keeps what it is sent.
struct SmtpSink {
    addr: std::net::SocketAddr,
    mails: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

async fn smtp_sink() -> SmtpSink {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let mails = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = mails.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                let _ = write.write_all(b"220 sink ESMTP\r\n").await;
                let mut data: Option<String> = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(body) = data.as_mut() {
                        if line == "." {
                            kept.lock().expect("mails").push(std::mem::take(body));
                            data = None;
                            let _ = write.write_all(b"250 kept\r\n").await;
                        } else {
                            body.push_str(&line);
                            body.push('\n');
                        }
                        continue;
                    }
                    let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                    let answer: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 sink\r\n",
                        "DATA" => {
                            data = Some(String::new());
                            b"354 go on\r\n"
                        }
                        "QUIT" => {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            return;
                        }
                        _ => b"250 OK\r\n",
                    };
                    let _ = write.write_all(answer).await;
                }
            });
        }
    });
    SmtpSink { addr, mails }
}

impl SmtpSink {
    async fn wait_for(&self, count: usize) -> Vec<String> {
        for _ in 0..200 {
            let mails = self.mails.lock().expect("mails").clone();
            if mails.len() >= count {
                return mails;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        self.mails.lock().expect("mails").clone()
    }
}

/// A mail's text with quoted-printable soft breaks and escapes undone.
fn unquote(mail: &str) -> String {
    let joined = mail.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'=', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn a_forgotten_password_is_reset_by_a_branded_mail(db: TestDb) {
    use pbx_control_plane::console::Console;
    use pbx_control_plane::mail::MailConfig;
    let api = setup(db).await;
    let sink = smtp_sink().await;
    let mut state = api.state.clone();
    let mail = MailConfig {
        relay_host: sink.addr.ip().to_string(),
        relay_port: sink.addr.port(),
        from_address: None,
    };
    state.console = std::sync::Arc::new(Console::new(None, Some(&mail)).expect("console"));
    let router = pbx_control_plane::router(state);
    let mut x = Browser::new(&api, HOST_X);
    x.router = router.clone();
    let login = x.get("/login").await;
    assert!(login.body.contains("href=\"/password/forgot\""));
    // Asked on Y's host, A's admin gets nothing (the answer is the same).
    let mut y = Browser::new(&api, HOST_Y);
    y.router = router.clone();
    let foreign = y
        .post("/password/forgot", &[("email", "admin@acme.test")])
        .await;
    let unknown = x
        .post("/password/forgot", &[("email", "nobody@acme.test")])
        .await;
    let asked = x
        .post("/password/forgot", &[("email", "Admin@Acme.test")])
        .await;
    for answer in [&foreign, &unknown, &asked] {
        assert_eq!(answer.status, StatusCode::SEE_OTHER);
        assert_eq!(answer.location(), "/login?done=reset_sent");
    }
    let mails: Vec<String> = sink.wait_for(1).await.iter().map(|m| unquote(m)).collect();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mails_after = sink.mails.lock().expect("mails").clone();
    assert_eq!(
        mails_after.len(),
        1,
        "only the right host's request sends mail: {mails:?}"
    );
    let mail = &mails[0];
    assert!(mail.contains("Reseller X Phone"), "{mail}");
    assert!(mail.contains("no-reply@console.reseller-x.test"), "{mail}");
    for marker in [OPERATOR_NAME, "Ostwind", "Reseller Y", OPERATOR_HOST] {
        assert!(!mail.contains(marker), "the mail shows {marker}");
    }
    // The reseller's default language is German and the login has none set.
    assert!(mail.contains("Passwort"), "{mail}");
    let link_start = mail
        .find("https://console.reseller-x.test/password/reset?token=")
        .expect("link");
    let link = &mail[link_start..];
    let token: String = link["https://console.reseller-x.test/password/reset?token=".len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    assert!(token.len() >= 20, "{link}");

    let form = x.get(&format!("/password/reset?token={token}")).await;
    assert_eq!(form.status, StatusCode::OK);
    assert_eq!(
        form.headers
            .get(header::REFERRER_POLICY)
            .and_then(|v| v.to_str().ok()),
        Some("no-referrer")
    );
    // The link does not work on another brand's host.
    assert_eq!(
        y.get(&format!("/password/reset?token={token}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let differ = x
        .post(
            "/password/reset",
            &[
                ("token", &token),
                ("password", "new passphrase one"),
                ("password_again", "new passphrase two"),
            ],
        )
        .await;
    assert_eq!(differ.status, StatusCode::UNPROCESSABLE_ENTITY);
    let done = x
        .post(
            "/password/reset",
            &[
                ("token", &token),
                ("password", "new passphrase one"),
                ("password_again", "new passphrase one"),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location(), "/login?done=password_changed");
    let reused = x.get(&format!("/password/reset?token={token}")).await;
    assert_eq!(reused.status, StatusCode::NOT_FOUND, "a link works once");
    let old = x
        .post(
            "/login",
            &[("email", "admin@acme.test"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    let new = x
        .post(
            "/login",
            &[
                ("email", "admin@acme.test"),
                ("password", "new passphrase one"),
            ],
        )
        .await;
    assert_eq!(new.status, StatusCode::SEE_OTHER);
    // A request naming the brand's host in its request line but another in
    // Host gets its link to the brand's host, never to the other.
    let absolute = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{HOST_X}/password/forgot"))
        .header(header::HOST, "evil.example")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("email=admin%40acme.test"))
        .expect("request");
    let answer = router.clone().oneshot(absolute).await.expect("answer");
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    let mails = sink.wait_for(2).await;
    assert_eq!(mails.len(), 2);
    let second = unquote(&mails[1]);
    assert!(
        second.contains(&format!("https://{HOST_X}/password/reset?token=")),
        "{second}"
    );
    assert!(!second.contains("evil.example"), "{second}");

    // Without a relay configured, there is no such page.
    assert_eq!(
        Browser::new(&api, HOST_X)
            .get("/password/forgot")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

async fn admins_can_add_a_second_factor(db: TestDb) {
    use pbx_store::totp::{code, from_base32, step_at};
    let api = setup(db).await;
    let mut x = Browser::new(&api, HOST_X);
    x.sign_in("x@reseller-x.test").await;
    let account = x.get("/account").await;
    assert_eq!(account.status, StatusCode::OK);
    let secret = between(&account.body, "data-testid=\"totp-secret\">", "<");
    let bytes = from_base32(&secret).expect("base32 key");
    let at = |offset: i64| format!("{:06}", code(&bytes, step_at(pbx_store::now_ms()) + offset));
    let token = account.csrf();
    let wrong = x
        .post(
            "/account/totp",
            &[("csrf", &token), ("secret", &secret), ("code", "12345x")],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        wrong.body.contains(&secret),
        "the same key is offered again"
    );
    let on = x
        .post(
            "/account/totp",
            &[("csrf", &token), ("secret", &secret), ("code", &at(0))],
        )
        .await;
    assert_eq!(on.status, StatusCode::SEE_OTHER, "{}", on.body);
    x.post("/logout", &[("csrf", &token)]).await;

    // Password alone no longer signs in: the session waits for the code.
    let first = x
        .post(
            "/login",
            &[("email", "x@reseller-x.test"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(first.location(), "/login/code");
    assert_eq!(
        x.get("/customers").await.status,
        StatusCode::SEE_OTHER,
        "not yet signed in"
    );
    let form = x.get("/login/code").await;
    assert_eq!(form.status, StatusCode::OK);
    let token = form.csrf();
    let refused = x
        .post("/login/code", &[("csrf", &token), ("code", "000000x")])
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let forged = x
        .post("/login/code", &[("csrf", "forged"), ("code", &at(1))])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let accepted = x
        .post("/login/code", &[("csrf", &token), ("code", &at(1))])
        .await;
    assert_eq!(accepted.status, StatusCode::SEE_OTHER, "{}", accepted.body);
    assert_eq!(accepted.location(), "/customers");
    assert_eq!(x.get("/customers").await.status, StatusCode::OK);

    // Customers have no such page.
    let mut admin = Browser::new(&api, HOST_X);
    admin.sign_in("admin@acme.test").await;
    assert_eq!(admin.get("/account").await.status, StatusCode::NOT_FOUND);
}

async fn customer_admin_runs_ring_groups(db: TestDb) {
    let api = setup(db).await;
    let a = api.t.customer_a.id;
    let mut x = Browser::new(&api, HOST_X);
    x.sign_in("admin@acme.test").await;
    let list = format!("/customers/{a}/ring-groups");
    let token = x.token(&list).await;
    let extensions = format!("/customers/{a}/extensions");
    x.post(
        &extensions,
        &[("csrf", &token), ("number", "102"), ("display_name", "Bea")],
    )
    .await;
    let unknown = x
        .post(
            &list,
            &[
                ("csrf", &token),
                ("number", "600"),
                ("name", "Sales"),
                ("strategy", "sequential"),
                ("members", "101, 999"),
            ],
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(unknown.body.contains("999"), "{}", unknown.body);
    let created = x
        .post(
            &list,
            &[
                ("csrf", &token),
                ("number", "600"),
                ("name", "Sales"),
                ("strategy", "sequential"),
                ("member_timeout_s", "15"),
                ("members", "102, 101"),
                ("no_answer", "101"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let groups = api
        .db
        .store
        .ring_groups()
        .list(&api.t.customer_a_admin, a)
        .await
        .expect("groups");
    assert_eq!(groups.len(), 1);
    let g = &groups[0];
    assert_eq!(g.member_timeout_s, 15);
    assert_eq!(g.members.len(), 2, "in the order given");
    let page = x.get(&format!("/ring-groups/{}", g.id)).await;
    assert!(page.body.contains("value=\"102, 101\""), "{}", page.body);
    // Customer B's admin (on B's host) cannot reach it.
    let mut y = Browser::new(&api, HOST_Y);
    y.sign_in("admin@bolt.test").await;
    assert_eq!(
        y.get(&format!("/ring-groups/{}", g.id)).await.status,
        StatusCode::NOT_FOUND
    );
    let deleted = x
        .post(
            &format!("/ring-groups/{}/delete", g.id),
            &[("csrf", &token), ("confirm", "1")],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER);
    assert_eq!(
        x.get(&format!("/ring-groups/{}", g.id)).await.status,
        StatusCode::NOT_FOUND
    );
}

async fn customer_admin_runs_conference_rooms(db: TestDb) {
    let api = setup(db).await;
    let a = api.t.customer_a.id;
    let mut x = Browser::new(&api, HOST_X);
    x.sign_in("admin@acme.test").await;
    let list = format!("/customers/{a}/conference-rooms");
    let token = x.token(&list).await;
    // An extension's number and a short PIN are refused, with the form kept.
    for (number, pin) in [("101", ""), ("800", "12")] {
        let refused = x
            .post(
                &list,
                &[
                    ("csrf", &token),
                    ("number", number),
                    ("name", "Board"),
                    ("pin", pin),
                ],
            )
            .await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{number}");
        assert!(refused.body.contains("value=\"Board\""), "{}", refused.body);
    }
    let created = x
        .post(
            &list,
            &[
                ("csrf", &token),
                ("number", "800"),
                ("name", "Board"),
                ("pin", "4711"),
                ("max_participants", "12"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let rooms = api
        .db
        .store
        .conference_rooms()
        .list(&api.t.customer_a_admin, a)
        .await
        .expect("rooms");
    assert_eq!(rooms.len(), 1);
    let r = &rooms[0];
    assert_eq!((r.pin.as_deref(), r.max_participants), (Some("4711"), 12));
    let listed = x.get(&list).await;
    assert!(listed.body.contains("4711"), "{}", listed.body);
    let page = format!("/conference-rooms/{}", r.id);
    let saved = x
        .post(
            &page,
            &[
                ("csrf", &token),
                ("version", &r.version.to_string()),
                ("number", "801"),
                ("name", "Board"),
                ("pin", ""),
                ("max_participants", "12"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    assert!(x.get(&page).await.body.contains("value=\"801\""));
    // Customer B's admin (on B's host) cannot reach it.
    let mut y = Browser::new(&api, HOST_Y);
    y.sign_in("admin@bolt.test").await;
    assert_eq!(y.get(&page).await.status, StatusCode::NOT_FOUND);
    let y_token = y
        .token(&format!("/customers/{}/extensions", api.t.customer_b.id))
        .await;
    assert_eq!(
        y.post(
            &format!("{page}/delete"),
            &[("csrf", &y_token), ("confirm", "1")]
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        y.post(
            &list,
            &[("csrf", &y_token), ("number", "900"), ("name", "Mine")]
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    let deleted = x
        .post(
            &format!("{page}/delete"),
            &[("csrf", &token), ("confirm", "1")],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER);
    assert_eq!(x.get(&page).await.status, StatusCode::NOT_FOUND);
}

async fn voicemail_is_listed_played_and_deleted_in_the_console(db: TestDb) {
    let api = setup(db).await;
    let t = &api.t;
    let sys = Principal::system();
    // A message in extension A's box, with its recording.
    let mut wav = b"RIFF\x24\x01\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0\x40\x1f\0\0\x80\x3e\0\0\x02\0\x10\0data\0\x01\0\0".to_vec();
    wav.extend(std::iter::repeat_n(0u8, 256));
    let key = pbx_store::audio_files::AudioFiles::new_key("voicemail/console", "wav");
    api.state.audio.write(&key, &wav).expect("audio");
    let id = api
        .db
        .store
        .voicemail()
        .add(
            &sys,
            &pbx_store::voicemail::NewMessage {
                reseller: t.reseller_x.id,
                customer: t.customer_a.id,
                extension: t.extension_a.id,
                caller: "03012345678".into(),
                call_id: "console-vm".into(),
                duration_ms: 12_400,
                audio: key.clone(),
                received_at: pbx_store::now_ms(),
            },
        )
        .await
        .expect("add")
        .expect("kept");
    let mut x = Browser::new(&api, HOST_X);
    x.sign_in("admin@acme.test").await;
    let page_path = format!("/extensions/{}", t.extension_a.id);
    let page = x.get(&page_path).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("03012345678"), "{}", page.body);
    assert!(page.body.contains("12 s"), "{}", page.body);
    let audio_path = format!("/voicemail/messages/{id}/audio");
    assert!(page.body.contains(&audio_path), "{}", page.body);
    // The page's policy lets its own audio play.
    let csp = page
        .headers
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(csp.contains("media-src 'self'"), "{csp}");
    let audio = x.get(&audio_path).await;
    assert_eq!(audio.status, StatusCode::OK);
    assert_eq!(
        audio
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("audio/wav")
    );
    assert!(audio.body.as_bytes().starts_with(b"RIFF"));
    // Customer B's admin (on B's host) reaches neither the audio nor the delete.
    let mut y = Browser::new(&api, HOST_Y);
    y.sign_in("admin@bolt.test").await;
    assert_eq!(y.get(&audio_path).await.status, StatusCode::NOT_FOUND);
    let y_token = y
        .token(&format!("/customers/{}/extensions", t.customer_b.id))
        .await;
    assert_eq!(
        y.post(
            &format!("/voicemail/messages/{id}/delete"),
            &[("csrf", &y_token)]
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    // Without the session's token, nothing is deleted.
    assert_ne!(
        x.post(&format!("/voicemail/messages/{id}/delete"), &[])
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    let token = x.token(&page_path).await;
    let deleted = x
        .post(
            &format!("/voicemail/messages/{id}/delete"),
            &[("csrf", &token)],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER);
    assert_eq!(x.get(&audio_path).await.status, StatusCode::NOT_FOUND);
    assert!(api.state.audio.read(&key).is_err(), "the recording is gone");
    let after = x.get(&page_path).await;
    assert!(!after.body.contains("03012345678"));
}

async fn recorded_calls_are_listed_played_and_deleted_and_the_policy_set(db: TestDb) {
    let api = setup(db).await;
    let t = &api.t;
    let sys = Principal::system();
    let key = pbx_store::audio_files::AudioFiles::new_key("recordings/console", "wav");
    api.state.audio.write(&key, b"RIFF-call").expect("audio");
    let mut call = pbx_store::testing::answered_call(
        "console-rec",
        t.reseller_x.id,
        t.customer_a.id,
        pbx_store::now_ms() - 60_000,
        20_000,
    );
    call.caller = "0309876543".into();
    call.caller_extension_id = Some(t.extension_a.id);
    call.recording = Some(pbx_store::call_recordings::NewRecording {
        audio: key.clone(),
        started_at: call.answer_at.unwrap_or_default() + 3_000,
    });
    api.db
        .store
        .call_records()
        .insert_batch(&sys, &[call])
        .await
        .expect("record");
    let id = api
        .db
        .store
        .call_recordings()
        .list(&sys, t.customer_a.id, None, 1)
        .await
        .expect("list")[0]
        .id;
    let page_path = format!("/customers/{}/recordings", t.customer_a.id);
    let audio_path = format!("/call-recordings/{id}/audio");

    // The extension's own user hears it, and sets nothing.
    let mut user = Browser::new(&api, HOST_X);
    user.sign_in("user@acme.test").await;
    let page = user.get(&page_path).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("0309876543") && page.body.contains(&audio_path));
    assert!(!page.body.contains("retention_days"), "{}", page.body);
    assert_eq!(user.get(&audio_path).await.status, StatusCode::OK);

    let mut x = Browser::new(&api, HOST_X);
    x.sign_in("admin@acme.test").await;
    let page = x.get(&page_path).await;
    assert!(page.body.contains("17 s"), "{}", page.body);
    // The policy: extension A recorded, kept 14 days.
    let token = x.token(&page_path).await;
    let ext_box = format!("ext_{}", t.extension_a.id);
    let saved = x
        .post(
            &page_path,
            &[
                ("csrf", &token),
                ("retention_days", "14"),
                (ext_box.as_str(), "on"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER);
    let policy = api
        .db
        .store
        .call_recordings()
        .policy(&sys, t.customer_a.id)
        .await
        .expect("policy");
    assert_eq!(
        (policy.retention_days, policy.extensions),
        (14, vec![t.extension_a.id])
    );
    // Another customer's extension is refused, and nothing changes.
    let other = format!("ext_{}", t.extension_b.id);
    let refused = x
        .post(
            &page_path,
            &[
                ("csrf", &token),
                ("retention_days", "7"),
                (other.as_str(), "on"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        api.db
            .store
            .call_recordings()
            .policy(&sys, t.customer_a.id)
            .await
            .expect("policy")
            .retention_days,
        14
    );
    // A customer's user cannot set it.
    let user_token = user.token(&page_path).await;
    assert_eq!(
        user.post(
            &page_path,
            &[("csrf", &user_token), ("retention_days", "1")]
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    // Customer B's admin reaches neither the page, the audio nor the delete.
    let mut y = Browser::new(&api, HOST_Y);
    y.sign_in("admin@bolt.test").await;
    assert_eq!(y.get(&page_path).await.status, StatusCode::NOT_FOUND);
    assert_eq!(y.get(&audio_path).await.status, StatusCode::NOT_FOUND);
    let y_token = y
        .token(&format!("/customers/{}/recordings", t.customer_b.id))
        .await;
    assert_eq!(
        y.post(
            &format!("/call-recordings/{id}/delete"),
            &[("csrf", &y_token)]
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    let deleted = x
        .post(
            &format!("/call-recordings/{id}/delete"),
            &[("csrf", &token)],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER);
    assert_eq!(x.get(&audio_path).await.status, StatusCode::NOT_FOUND);
    assert!(api.state.audio.read(&key).is_err(), "the audio is gone");
}

async fn an_extension_user_uploads_its_greeting(db: TestDb) {
    let api = setup(db).await;
    let t = &api.t;
    let page_path = format!("/extensions/{}", t.extension_a.id);
    let upload_path = format!("{page_path}/greeting");
    let audio_path = format!("{page_path}/greeting/audio");
    let mut user = Browser::new(&api, HOST_X);
    user.sign_in("user@acme.test").await;
    let page = user.get(&page_path).await;
    assert!(page.body.contains("default greeting"), "{}", page.body);
    let token = user.token(&page_path).await;
    // Not audio: the page again, saying why; nothing kept.
    let refused = user
        .upload(&upload_path, &token, "audio", b"not a wav")
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body.contains("audio:"), "{}", refused.body);
    assert_eq!(user.get(&audio_path).await.status, StatusCode::NOT_FOUND);
    // A forged form changes nothing.
    // A minute: larger than the console's other forms may be.
    let wav = pbx_media::audio::Clip::new(pbx_media::audio::tone(500.0, 60_000, 0.3)).to_wav();
    assert_eq!(
        user.upload(&upload_path, "forged", "audio", &wav)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let saved = user.upload(&upload_path, &token, "audio", &wav).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let page = user.get(&page_path).await;
    assert!(page.body.contains(&audio_path), "{}", page.body);
    let played = user.get(&audio_path).await;
    assert_eq!(played.status, StatusCode::OK);
    // Another customer's admin reaches neither the greeting nor its upload.
    let mut y = Browser::new(&api, HOST_Y);
    y.sign_in("admin@bolt.test").await;
    assert_eq!(y.get(&audio_path).await.status, StatusCode::NOT_FOUND);
    let y_token = y
        .token(&format!("/customers/{}/extensions", t.customer_b.id))
        .await;
    assert_eq!(
        y.upload(&upload_path, &y_token, "audio", &wav).await.status,
        StatusCode::NOT_FOUND
    );
    // Back to the default.
    let removed = user
        .post(&format!("{page_path}/greeting/delete"), &[("csrf", &token)])
        .await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER);
    assert_eq!(user.get(&audio_path).await.status, StatusCode::NOT_FOUND);

    // Music on hold, on the customer's dashboard: its admins', not its users'.
    let dashboard = format!("/customers/{}", t.customer_a.id);
    let music_path = format!("{dashboard}/music-on-hold");
    assert_eq!(
        user.upload(&music_path, &token, "audio", &wav).await.status,
        StatusCode::FORBIDDEN
    );
    let mut admin = Browser::new(&api, HOST_X);
    admin.sign_in("admin@acme.test").await;
    let page = admin.get(&dashboard).await;
    assert!(page.body.contains("Held callers hear"), "{}", page.body);
    let admin_token = admin.token(&dashboard).await;
    let refused = admin
        .upload(&music_path, &admin_token, "audio", b"RIFF")
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    let saved = admin.upload(&music_path, &admin_token, "audio", &wav).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    assert_eq!(
        admin.get(&format!("{music_path}/audio")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        y.get(&format!("{music_path}/audio")).await.status,
        StatusCode::NOT_FOUND
    );
}

async fn resellers_and_the_operator_keep_their_price_plans(db: TestDb) {
    let api = setup(db).await;
    let mut x = Browser::new(&api, HOST_X);
    x.sign_in("x@reseller-x.test").await;
    let token = x.token("/plans").await;
    let bad = x
        .post(
            "/plans",
            &[
                ("csrf", &token),
                ("name", "Office"),
                ("currency", "EUR"),
                ("extension_month", "4.99.1"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let created = x
        .post(
            "/plans",
            &[
                ("csrf", &token),
                ("name", "Office"),
                ("currency", "EUR"),
                ("extension_month", "4,99"),
                ("number_month", "1.5"),
                ("internal_calls_free", "1"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let plan_path = created
        .location()
        .split('?')
        .next()
        .unwrap_or("")
        .to_owned();
    let plan = x.get(&plan_path).await;
    assert!(
        plan.body.contains("4.99") && plan.body.contains("1.50"),
        "{}",
        plan.body
    );
    let rates = "49; Deutschland; 0.019; 0; 60; 60; 0\n; Standard; 0.25; 0; 1; 1; 0";
    let wrong = x
        .post(
            &format!("{plan_path}/rates"),
            &[("csrf", &token), ("rates", "49; only three; 1")],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong.body.contains("only three"), "the typed text is kept");
    let saved = x
        .post(
            &format!("{plan_path}/rates"),
            &[("csrf", &token), ("rates", rates)],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let plans = api
        .db
        .store
        .price_plans()
        .list(&api.t.reseller_x_admin)
        .await
        .expect("plans");
    let office = plans.iter().find(|p| p.name == "Office").expect("created");
    assert_eq!(office.extension_month_micros, 4_990_000);
    let stored = api
        .db
        .store
        .price_plans()
        .rates(&api.t.reseller_x_admin, office.id)
        .await
        .expect("rates");
    assert_eq!(stored.len(), 2);
    assert!(stored
        .iter()
        .any(|r| r.prefix == "49" && r.minute_micros == 19_000));
    // The reseller puts its customer on the plan.
    let a = api.t.customer_a.id;
    let office_id = office.id.to_string();
    let assigned = x
        .post(
            &format!("/customers/{a}/plan"),
            &[("csrf", &token), ("plan", &office_id)],
        )
        .await;
    assert_eq!(assigned.status, StatusCode::SEE_OTHER, "{}", assigned.body);
    let on_plan = api
        .db
        .store
        .customers()
        .get(&api.t.reseller_x_admin, a)
        .await
        .expect("customer");
    assert_eq!(on_plan.retail_plan_id, Some(office.id));
    // And sets the customer's limits.
    let limited = x
        .post(
            &format!("/customers/{a}/limits"),
            &[
                ("csrf", &token),
                ("max_concurrent_outbound", "3"),
                ("max_attempts_per_minute", ""),
                ("max_spend_per_day", "25.50"),
                ("allow_international", "1"),
            ],
        )
        .await;
    assert_eq!(limited.status, StatusCode::SEE_OTHER, "{}", limited.body);
    let limits = api
        .db
        .store
        .call_limits()
        .for_customer(&api.t.customer_a_admin, a)
        .await
        .expect("limits");
    assert_eq!(limits.max_concurrent_outbound, Some(3));
    assert_eq!(limits.max_attempts_per_minute, None);
    assert_eq!(limits.max_spend_per_day_micros, Some(25_500_000));
    assert!(limits.allow_international && !limits.allow_premium);
    let usage = x.get(&format!("/customers/{a}/usage")).await;
    assert!(
        usage.body.contains("value=\"25.50\""),
        "the form shows what is set"
    );
    // And its toll-fraud alarms: new destinations blocked, bursts of 5.
    let alarmed = x
        .post(
            &format!("/customers/{a}/fraud-alarms"),
            &[
                ("csrf", &token),
                ("new_destination", "block"),
                ("burst", "warn"),
                ("burst_calls", "5"),
                ("burst_window_s", "60"),
                ("after_hours", "off"),
                ("after_hours_rule", ""),
            ],
        )
        .await;
    assert_eq!(alarmed.status, StatusCode::SEE_OTHER, "{}", alarmed.body);
    let alarms = api
        .db
        .store
        .fraud_alarms()
        .get(&api.t.customer_a_admin, a)
        .await
        .expect("alarms");
    assert_eq!(
        alarms.new_destination,
        pbx_store::fraud_alarms::AlarmMode::Block
    );
    assert_eq!((alarms.burst_calls, alarms.burst_window_s), (5, 60));
    let usage = x.get(&format!("/customers/{a}/usage")).await;
    assert!(
        usage.body.contains("<option value=\"block\" selected>"),
        "the alarms form shows what is set"
    );
    // Nonsense is refused, and nothing changes.
    let nonsense = x
        .post(
            &format!("/customers/{a}/fraud-alarms"),
            &[
                ("csrf", &token),
                ("new_destination", "sometimes"),
                ("burst", "warn"),
                ("burst_calls", "5"),
                ("burst_window_s", "60"),
                ("after_hours", "off"),
            ],
        )
        .await;
    assert_eq!(nonsense.status, StatusCode::BAD_REQUEST);
    // Reseller Y and customers do not reach it.
    let mut y = Browser::new(&api, HOST_Y);
    y.sign_in("y@reseller-y.test").await;
    assert_eq!(y.get(&plan_path).await.status, StatusCode::NOT_FOUND);
    let b = api.t.customer_b.id;
    let y_token_plan = y.token("/plans").await;
    let foreign_limits = y
        .post(
            &format!("/customers/{a}/limits"),
            &[("csrf", &y_token_plan), ("max_concurrent_outbound", "999")],
        )
        .await;
    assert_eq!(
        foreign_limits.status,
        StatusCode::NOT_FOUND,
        "another reseller's customer"
    );
    let foreign_alarms = y
        .post(
            &format!("/customers/{a}/fraud-alarms"),
            &[
                ("csrf", &y_token_plan),
                ("new_destination", "off"),
                ("burst", "off"),
                ("burst_calls", "10"),
                ("burst_window_s", "120"),
                ("after_hours", "off"),
            ],
        )
        .await;
    assert_eq!(foreign_alarms.status, StatusCode::NOT_FOUND);
    let borrowed = y
        .post(
            &format!("/customers/{b}/plan"),
            &[("csrf", &y_token_plan), ("plan", &office_id)],
        )
        .await;
    assert_eq!(
        borrowed.status,
        StatusCode::NOT_FOUND,
        "another reseller's plan cannot be used: {}",
        borrowed.body
    );
    let y_token = y.token("/plans").await;
    let foreign = y
        .post(
            &format!("{plan_path}/rates"),
            &[("csrf", &y_token), ("rates", "")],
        )
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    let mut admin = Browser::new(&api, HOST_X);
    admin.sign_in("admin@acme.test").await;
    assert_eq!(admin.get("/plans").await.status, StatusCode::NOT_FOUND);
    // The operator keeps wholesale plans, on its own host.
    let mut ops = Browser::new(&api, OPERATOR_HOST);
    ops.sign_in("root@ostwind.test").await;
    let token = ops.token("/plans").await;
    let wholesale = ops
        .post(
            "/plans",
            &[
                ("csrf", &token),
                ("name", "Wholesale 2027"),
                ("currency", "EUR"),
            ],
        )
        .await;
    assert_eq!(
        wholesale.status,
        StatusCode::SEE_OTHER,
        "{}",
        wholesale.body
    );
    let listed = ops.get("/plans").await;
    assert!(listed.body.contains("Wholesale 2027") && !listed.body.contains("Office"));
}

async fn trunks_are_kept_by_their_owner_and_never_show_their_secret(db: TestDb) {
    let api = setup(db).await;
    let mut x = Browser::new(&api, HOST_X);
    x.sign_in("x@reseller-x.test").await;
    let token = x.token("/trunks").await;
    let base = [
        ("csrf", token.as_str()),
        ("name", "Carrier X"),
        ("host", "127.0.0.1"),
        ("port", "5080"),
        ("transport", "udp"),
        ("number_format", "national"),
        ("country", "DE"),
        ("priority", "10"),
        ("enabled", "1"),
        ("inbound_sources", "127.0.0.2/32"),
    ];
    let mut without_secret = base.to_vec();
    without_secret.extend([("auth_mode", "register"), ("username", "pbx")]);
    let refused = x.post("/trunks", &without_secret).await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    let mut with_secret = without_secret.clone();
    with_secret.push(("secret", "carrier-secret-123"));
    let created = x.post("/trunks", &with_secret).await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let path = created
        .location()
        .split('?')
        .next()
        .unwrap_or("")
        .to_owned();
    let page = x.get(&path).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        !page.body.contains("carrier-secret-123"),
        "the secret is never shown"
    );
    let routes = x
        .post(
            &format!("{path}/routes"),
            &[("csrf", &token), ("routes", "+49; 10\n*; 500")],
        )
        .await;
    assert_eq!(routes.status, StatusCode::SEE_OTHER, "{}", routes.body);
    let trunks = api
        .db
        .store
        .trunks()
        .list(&api.t.reseller_x_admin)
        .await
        .expect("trunks");
    assert_eq!(trunks.len(), 1);
    assert_eq!(trunks[0].reseller_id, Some(api.t.reseller_x.id));
    let stored = api
        .db
        .store
        .trunks()
        .routes(&api.t.reseller_x_admin, trunks[0].id)
        .await
        .expect("routes");
    assert_eq!(stored.len(), 2);
    // Saved again without a secret: the secret stays.
    let mut again = base.to_vec();
    let version = trunks[0].version.to_string();
    again.extend([
        ("auth_mode", "register"),
        ("username", "pbx"),
        ("version", version.as_str()),
    ]);
    let saved = x.post(&path, &again).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    // Nobody else reaches it.
    let mut y = Browser::new(&api, HOST_Y);
    y.sign_in("y@reseller-y.test").await;
    assert_eq!(y.get(&path).await.status, StatusCode::NOT_FOUND);
    let mut admin = Browser::new(&api, HOST_X);
    admin.sign_in("admin@acme.test").await;
    assert_eq!(admin.get("/trunks").await.status, StatusCode::NOT_FOUND);
    let mut ops = Browser::new(&api, OPERATOR_HOST);
    ops.sign_in("root@ostwind.test").await;
    assert!(
        ops.get("/trunks").await.body.contains("Carrier X"),
        "the operator sees all"
    );
    let deleted = x
        .post(
            &format!("{path}/delete"),
            &[("csrf", &token), ("confirm", "1")],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER);
    assert_eq!(x.get(&path).await.status, StatusCode::NOT_FOUND);
}

async fn customer_admin_keeps_business_hours(db: TestDb) {
    let api = setup(db).await;
    let a = api.t.customer_a.id;
    let mut x = Browser::new(&api, HOST_X);
    x.sign_in("admin@acme.test").await;
    let list = format!("/customers/{a}/business-hours");
    let token = x.token(&list).await;
    let unknown = x
        .post(
            &list,
            &[
                ("csrf", &token),
                ("name", "Office"),
                ("weekly", "Mo-Fr 08:00-17:00"),
                ("open_to", "999"),
            ],
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    let created = x
        .post(
            &list,
            &[
                ("csrf", &token),
                ("name", "Office"),
                ("weekly", "Mo-Fr 08:00-17:30\nSa 09:00-12:00"),
                ("holidays", "2026-12-24 Heiligabend"),
                ("open_to", "101"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let rules = api
        .db
        .store
        .business_hours()
        .list(&api.t.customer_a_admin, a)
        .await
        .expect("rules");
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].weekly.len(), 6);
    assert_eq!(rules[0].holidays[0].name, "Heiligabend");
    assert_eq!(
        rules[0].open_destination,
        Some(pbx_store::numbers::Destination::Extension(
            api.t.extension_a.id
        ))
    );
    let page = x.get(created.location()).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Mo 08:00-17:30"), "{}", page.body);
    let mut y = Browser::new(&api, HOST_Y);
    y.sign_in("admin@bolt.test").await;
    let path = created
        .location()
        .split('?')
        .next()
        .unwrap_or("")
        .to_owned();
    assert_eq!(y.get(&path).await.status, StatusCode::NOT_FOUND);
    let bad_day = x
        .post(
            &path,
            &[
                ("csrf", &token),
                ("name", "Office"),
                ("weekly", "Xy 08:00-09:00"),
            ],
        )
        .await;
    assert_eq!(bad_day.status, StatusCode::UNPROCESSABLE_ENTITY);
    let deleted = x
        .post(
            &format!("{path}/delete"),
            &[("csrf", &token), ("confirm", "1")],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER);
}

async fn customer_admin_runs_ivr_menus(db: TestDb) {
    let api = setup(db).await;
    let t = &api.t;
    let (a, store) = (t.customer_a.id, &api.db.store);
    let ext = format!("extension:{}", t.extension_a.id.0);
    let boxed = format!("voicemail:{}", t.extension_a.id.0);
    let mut x = Browser::new(&api, HOST_X);
    x.sign_in("admin@acme.test").await;
    let list = format!("/customers/{a}/ivr-menus");
    let page = x.get(&list).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains(&format!("href=\"{list}\"")),
        "in the navigation"
    );
    // The select offers A's extension and box, not B's.
    assert!(
        page.body.contains(&format!("value=\"{ext}\"")),
        "{}",
        page.body
    );
    assert!(page.body.contains(&format!("value=\"{boxed}\"")));
    assert!(!page
        .body
        .contains(&format!("extension:{}\"", t.extension_b.id.0)));
    let token = x.token(&list).await;
    // B's extension, and a bad number of tries: refused, the form kept.
    let theirs = format!("extension:{}", t.extension_b.id.0);
    for (key, tries) in [(theirs.as_str(), "3"), (ext.as_str(), "9")] {
        let refused = x
            .post(
                &list,
                &[
                    ("csrf", &token),
                    ("name", "Empfang <b>"),
                    ("tries", tries),
                    ("key_1", key),
                ],
            )
            .await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{key}");
        assert!(
            refused.body.contains("value=\"Empfang &lt;b&gt;\""),
            "{}",
            refused.body
        );
    }
    let created = x
        .post(
            &list,
            &[
                ("csrf", &token),
                ("name", "Empfang <b>"),
                ("timeout_s", "7"),
                ("tries", "2"),
                ("direct_dial", "1"),
                ("key_1", &ext),
                ("key_hash", &boxed),
                ("key_2", ""),
                ("on_timeout", &ext),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let menus = store
        .ivr_menus()
        .list(&t.customer_a_admin, a)
        .await
        .expect("menus");
    assert_eq!(menus.len(), 1);
    let m = &menus[0];
    assert_eq!((m.timeout_s, m.tries, m.direct_dial), (7, 2, true));
    assert_eq!(
        m.options.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(),
        ["1", "#"]
    );
    assert_eq!(
        m.on_timeout,
        Some(pbx_store::numbers::Destination::Extension(t.extension_a.id))
    );
    let page_path = format!("/ivr-menus/{}", m.id);
    let shown = x.get(created.location()).await;
    assert!(shown.body.contains("Menu created."), "{}", shown.body);
    assert!(shown.body.contains("Empfang &lt;b&gt;") && !shown.body.contains("Empfang <b>"));
    let listed = x.get(&list).await;
    assert!(
        listed.body.contains(&format!("href=\"{page_path}\"")),
        "{}",
        listed.body
    );
    // Saved: key 1 now to the box, the rest cleared.
    let saved = x
        .post(
            &page_path,
            &[
                ("csrf", &token),
                ("version", &m.version.to_string()),
                ("name", "Empfang"),
                ("key_star", &boxed),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let m = store
        .ivr_menus()
        .get(&t.customer_a_admin, m.id)
        .await
        .expect("menu");
    assert_eq!(m.options.len(), 1);
    assert_eq!((m.options[0].key.as_str(), m.on_timeout), ("*", None));
    let edit = x.get(&page_path).await;
    assert!(
        edit.body.contains(&format!("value=\"{boxed}\" selected")),
        "{}",
        edit.body
    );
    // A menu is not offered as its own option.
    assert!(!edit
        .body
        .contains(&format!("value=\"ivr_menu:{}\"", m.id.0)));

    // Numbers and business hours offer it.
    let menu_value = format!("ivr_menu:{}", m.id.0);
    let sys = Principal::system();
    let number = store
        .numbers()
        .create(&sys, "+49301112223", Some(t.reseller_x.id))
        .await
        .expect("number");
    store
        .numbers()
        .assign(&sys, number.id, a)
        .await
        .expect("assigned");
    let numbers_path = format!("/customers/{a}/numbers");
    let numbers = x.get(&numbers_path).await;
    assert!(
        numbers.body.contains(&format!("value=\"{menu_value}\"")),
        "{}",
        numbers.body
    );
    let routed = x
        .post(
            &format!("/numbers/{}/destination", number.id.0),
            &[("csrf", &token), ("destination", &menu_value)],
        )
        .await;
    assert_eq!(routed.status, StatusCode::SEE_OTHER, "{}", routed.body);
    assert!(x
        .get(&numbers_path)
        .await
        .body
        .contains(&format!("value=\"{menu_value}\" selected")));
    let hours = x.get(&format!("/customers/{a}/business-hours")).await;
    assert!(
        hours.body.contains(&format!("value=\"{menu_value}\"")),
        "{}",
        hours.body
    );
    let rule = x
        .post(
            &format!("/customers/{a}/business-hours"),
            &[
                ("csrf", &token),
                ("name", "Office"),
                ("weekly", "Mo-Fr 08:00-17:00"),
                ("open_to", &menu_value),
                ("closed_to", &boxed),
            ],
        )
        .await;
    assert_eq!(rule.status, StatusCode::SEE_OTHER, "{}", rule.body);
    let rules = store
        .business_hours()
        .list(&t.customer_a_admin, a)
        .await
        .expect("rules");
    assert_eq!(
        rules[0].open_destination,
        Some(pbx_store::numbers::Destination::IvrMenu(m.id))
    );
    let rule_page = x.get(rule.location()).await;
    assert!(
        rule_page
            .body
            .contains(&format!("value=\"{menu_value}\" selected")),
        "{}",
        rule_page.body
    );

    // The greeting, uploaded on the menu's page and played back.
    let wav = pbx_media::audio::Clip::new(pbx_media::audio::tone(500.0, 2_000, 0.3)).to_wav();
    let upload_path = format!("{page_path}/greeting");
    let audio_path = format!("{page_path}/greeting/audio");
    let refused = x.upload(&upload_path, &token, "audio", b"RIFF").await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body.contains("audio:"), "{}", refused.body);
    let uploaded = x.upload(&upload_path, &token, "audio", &wav).await;
    assert_eq!(uploaded.status, StatusCode::SEE_OTHER, "{}", uploaded.body);
    assert!(x.get(&page_path).await.body.contains(&audio_path));
    assert_eq!(x.get(&audio_path).await.status, StatusCode::OK);

    // Customer B's admin (on B's host) reaches none of it, and its own
    // menu cannot lead to A's extension or menu.
    let mut y = Browser::new(&api, HOST_Y);
    y.sign_in("admin@bolt.test").await;
    assert_eq!(y.get(&page_path).await.status, StatusCode::NOT_FOUND);
    assert_eq!(y.get(&audio_path).await.status, StatusCode::NOT_FOUND);
    assert_eq!(y.get(&list).await.status, StatusCode::NOT_FOUND);
    let y_list = format!("/customers/{}/ivr-menus", t.customer_b.id);
    let y_token = y.token(&y_list).await;
    for (path, fields) in [
        (page_path.clone(), vec![("name", "Mine")]),
        (format!("{page_path}/delete"), vec![("confirm", "1")]),
        (format!("{page_path}/greeting/delete"), vec![]),
        (list.clone(), vec![("name", "Mine")]),
    ] {
        let mut form = vec![("csrf", y_token.as_str())];
        form.extend(fields);
        assert_eq!(
            y.post(&path, &form).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    assert_eq!(
        y.upload(&upload_path, &y_token, "audio", &wav).await.status,
        StatusCode::NOT_FOUND
    );
    for key in [ext.as_str(), menu_value.as_str()] {
        let refused = y
            .post(
                &y_list,
                &[("csrf", &y_token), ("name", "Mine"), ("key_1", key)],
            )
            .await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{key}");
    }
    assert!(store
        .ivr_menus()
        .list(&t.customer_b_admin, t.customer_b.id)
        .await
        .expect("menus")
        .is_empty());

    // Deleted, with its greeting: the rule leads nowhere while open.
    let key = store
        .ivr_menus()
        .get(&t.customer_a_admin, m.id)
        .await
        .expect("menu")
        .greeting_audio
        .expect("a greeting");
    let deleted = x
        .post(
            &format!("{page_path}/delete"),
            &[("csrf", &token), ("confirm", "1")],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER);
    assert_eq!(x.get(&page_path).await.status, StatusCode::NOT_FOUND);
    assert!(
        api.state.audio.read(&key).is_err(),
        "the greeting's file is gone"
    );
    let rules = store
        .business_hours()
        .list(&t.customer_a_admin, a)
        .await
        .expect("rules");
    assert_eq!(rules[0].open_destination, None);
    let number = store.numbers().get(&sys, number.id).await.expect("number");
    assert_eq!(number.destination, None);
}

async fn customer_admin_routes_its_numbers(db: TestDb) {
    let api = setup(db).await;
    let sys = Principal::system();
    let (a, store) = (api.t.customer_a.id, &api.db.store);
    let number = store
        .numbers()
        .create(&sys, "+49301234567", Some(api.t.reseller_x.id))
        .await
        .expect("number");
    store
        .numbers()
        .assign(&sys, number.id, a)
        .await
        .expect("assigned");
    let mut x = Browser::new(&api, HOST_X);
    x.sign_in("admin@acme.test").await;
    let list = format!("/customers/{a}/numbers");
    let page = x.get(&list).await;
    assert!(page.body.contains("+49301234567"), "{}", page.body);
    let token = x.token(&list).await;
    let path = format!("/numbers/{}/destination", number.id.0);
    let to_a = format!("extension:{}", api.t.extension_a.id.0);
    // Forged: refused, nothing routed.
    let forged = x
        .post(&path, &[("csrf", "forged"), ("destination", &to_a)])
        .await;
    assert_ne!(forged.status, StatusCode::SEE_OTHER);
    let routed = x
        .post(&path, &[("csrf", &token), ("destination", &to_a)])
        .await;
    assert_eq!(routed.status, StatusCode::SEE_OTHER, "{}", routed.body);
    let stored = || async {
        store
            .numbers()
            .get(&sys, number.id)
            .await
            .expect("number")
            .destination
    };
    assert_eq!(
        stored().await,
        Some(pbx_store::numbers::Destination::Extension(
            api.t.extension_a.id
        ))
    );
    let page = x.get(&list).await;
    assert!(
        page.body.contains(&format!("value=\"{to_a}\" selected")),
        "{}",
        page.body
    );
    // Another customer's extension, or nonsense: refused, unchanged.
    let to_b = format!("extension:{}", api.t.extension_b.id.0);
    let box_b = format!("voicemail:{}", api.t.extension_b.id.0);
    for bad in [to_b.as_str(), box_b.as_str(), "extension:x", "sauna:1"] {
        let refused = x
            .post(&path, &[("csrf", &token), ("destination", bad)])
            .await;
        assert_ne!(refused.status, StatusCode::SEE_OTHER, "{bad}");
    }
    assert_eq!(
        stored().await,
        Some(pbx_store::numbers::Destination::Extension(
            api.t.extension_a.id
        ))
    );
    // Another reseller's customer cannot touch it; A's user has no such page.
    let mut y = Browser::new(&api, HOST_Y);
    y.sign_in("admin@bolt.test").await;
    let y_token = y
        .token(&format!("/customers/{}/numbers", api.t.customer_b.id))
        .await;
    let theirs = y
        .post(&path, &[("csrf", &y_token), ("destination", "")])
        .await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    // Unrouting.
    let cleared = x
        .post(&path, &[("csrf", &token), ("destination", "")])
        .await;
    assert_eq!(cleared.status, StatusCode::SEE_OTHER);
    assert_eq!(stored().await, None);
}

async fn a_brand_changed_elsewhere_shows_without_waiting_for_the_cache(db: TestDb) {
    let api = setup(db).await;
    tokio::spawn(pbx_control_plane::console::look::follow_changes(
        api.db.store.clone(),
        api.state.console.clone(),
    ));
    let mut x = Browser::new(&api, HOST_X);
    assert!(x.get("/login").await.body.contains("Reseller X Phone"));
    // Renamed through the store (as the API or another node would): the
    // change feed drops the cached look.
    let sys = Principal::system();
    let mut settings = pbx_store::testing::reseller_settings("Reseller X");
    settings.brand.product_name = "Renamed Phone".into();
    api.db
        .store
        .resellers()
        .update(&sys, api.t.reseller_x.id, None, &settings)
        .await
        .expect("renamed");
    let mut shown = false;
    for _ in 0..100 {
        if x.get("/login").await.body.contains("Renamed Phone") {
            shown = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        shown,
        "the new name shows within two seconds, not after the cache's 30"
    );
}

async fn pages_speak_the_users_language(db: TestDb) {
    let api = setup(db).await;
    // Reseller X's default language is German; the browser asks for English.
    let mut x = Browser::new(&api, HOST_X);
    let english = x.get("/login").await;
    assert!(english.body.contains("<html lang=\"en\">") && english.body.contains("Sign in"));
    let german = x.get("/login?lang=de").await;
    assert!(german.body.contains("<html lang=\"de\">") && german.body.contains("Anmelden"));
    assert!(german
        .headers
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("lang=de")));
    let req = Request::builder()
        .uri("/login")
        .header(header::HOST, HOST_X)
        .body(Body::empty())
        .expect("request");
    let page = api.router.clone().oneshot(req).await.expect("answer");
    let body = page.into_body().collect().await.expect("body").to_bytes();
    assert!(
        String::from_utf8_lossy(&body).contains("<html lang=\"de\">"),
        "the reseller's default"
    );
    // A signed-in person's choice is saved with the login and beats the browser.
    let mut user = Browser::new(&api, HOST_X);
    user.sign_in("user@acme.test").await;
    let home = user.get("/").await.location().to_owned();
    let token = user.token(&home).await;
    let saved = user
        .post("/account/language", &[("csrf", &token), ("language", "de")])
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER);
    let page = user.get(&home).await;
    assert!(
        page.body.contains("<html lang=\"de\">"),
        "saved language over Accept-Language: en"
    );
    let refused = user
        .post("/account/language", &[("csrf", &token), ("language", "xx")])
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    // Back to the page the choice was made on, never to another site.
    for (referer, back) in [
        (
            format!("https://{HOST_X}/customers/1/calls?x=1"),
            "/customers/1/calls",
        ),
        (format!("https://{HOST_X}//evil.example/"), "/"),
        (format!("https://{HOST_X}/\\evil.example/"), "/"),
        ("https://evil.example/customers".to_owned(), "/"),
    ] {
        let req = Request::builder()
            .method(Method::POST)
            .uri("/account/language")
            .header(header::HOST, HOST_X)
            .header(header::REFERER, referer.as_str())
            .header(
                header::COOKIE,
                format!("__Host-session={}", user.cookie.clone().unwrap_or_default()),
            )
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("csrf={token}&language=en")))
            .expect("request");
        let answer = api.router.clone().oneshot(req).await.expect("answer");
        assert_eq!(answer.status(), StatusCode::SEE_OTHER, "{referer}");
        assert_eq!(
            answer
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok()),
            Some(back),
            "{referer}"
        );
    }
}

async fn dashboard_shows_registrations_heard_live(db: TestDb) {
    use pbx_control_plane::api::events::HeardBinding;
    let api = setup(db).await;
    let t = &api.t;
    let mut x = Browser::new(&api, HOST_X);
    x.sign_in("admin@acme.test").await;
    let live = format!("/customers/{}/live", t.customer_a.id);
    let before = x.get(&live).await;
    assert!(
        before.body.contains("data-testid=\"registered-count\">0<"),
        "{}",
        before.body
    );
    api.hub.binding_heard(
        t.customer_a.id,
        t.device_a.id,
        "<sip:101@127.0.0.1:5099>",
        HeardBinding {
            extension_id: t.extension_a.id,
            heard_at: pbx_store::now_ms(),
            expires_at: Some(pbx_store::now_ms() + 60_000),
        },
    );
    // Customer B's device heard too: never on A's dashboard.
    api.hub.binding_heard(
        t.customer_b.id,
        t.device_b.id,
        "<sip:101@127.0.0.1:5098>",
        HeardBinding {
            extension_id: t.extension_b.id,
            heard_at: pbx_store::now_ms(),
            expires_at: Some(pbx_store::now_ms() + 60_000),
        },
    );
    let after = x.get(&live).await;
    assert!(
        after.body.contains("data-testid=\"registered-count\">1<"),
        "{}",
        after.body
    );
    assert!(after.body.contains("127.0.0.1:5099") && !after.body.contains("5098"));
    api.hub.binding_heard(
        t.customer_a.id,
        t.device_a.id,
        "<sip:101@127.0.0.1:5099>",
        HeardBinding {
            extension_id: t.extension_a.id,
            heard_at: pbx_store::now_ms(),
            expires_at: None,
        },
    );
    let gone = x.get(&live).await;
    assert!(gone.body.contains("data-testid=\"registered-count\">0<"));
}

async fn sip_security_page_shows_protections_bans_and_the_allow_list(db: TestDb) {
    use pbx_store::abuse::{BanReason, NewBan, NewProtection};
    let api = setup(db).await;
    let sys = Principal::system();
    let now = pbx_store::now_ms();
    let protection = api
        .db
        .store
        .account_protections()
        .record(
            &sys,
            &NewProtection {
                reseller: api.t.reseller_x.id,
                customer: api.t.customer_a.id,
                device: api.t.device_a.id,
                sip_user: api.t.device_a.sip_user.clone(),
                failures: 12,
                sources: 11,
                node_id: "n1".into(),
                since: now,
                until: now + 3_600_000,
            },
        )
        .await
        .unwrap()
        .unwrap();
    let ban = api
        .db
        .store
        .sip_bans()
        .record(
            &sys,
            &NewBan {
                source: pbx_store::net::Source::parse("192.0.2.66").unwrap(),
                reason: BanReason::AuthFailures,
                level: 2,
                failures: 5,
                reseller: Some(api.t.reseller_x.id),
                customer: Some(api.t.customer_a.id),
                node_id: "n1".into(),
                banned_at: now,
                until: now + 3_600_000,
            },
        )
        .await
        .unwrap();
    let a = api.t.customer_a.id;
    // Customer A's admin: a banner on every page, the page with both.
    let mut x = Browser::new(&api, HOST_X);
    x.sign_in("admin@acme.test").await;
    let dashboard = x.get(&format!("/customers/{a}")).await;
    assert!(
        dashboard.body.contains("role=\"alert\""),
        "{}",
        dashboard.body
    );
    let page = x.get("/security").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(&api.t.device_a.sip_user));
    assert!(page.body.contains("192.0.2.66"));
    assert!(page.body.contains("Wrong passwords"));
    // The customer admin also sees its toll-fraud alarms (the defaults).
    assert!(page.body.contains("Toll-fraud alarms"), "{}", page.body);
    assert!(page.body.contains("(10 / 120 s)"), "{}", page.body);
    // Reseller Y's admin sees none of it and cannot lift it by a forged form.
    let mut y = Browser::new(&api, HOST_Y);
    y.sign_in("y@reseller-y.test").await;
    let theirs = y.get("/security").await;
    assert!(!theirs.body.contains("192.0.2.66") && !theirs.body.contains("role=\"alert\""));
    let csrf = y.token("/security").await;
    for path in [
        format!("/security/bans/{ban}/lift"),
        format!("/security/protections/{protection}/lift"),
    ] {
        assert_eq!(
            y.post(&path, &[("csrf", &csrf)]).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let forged = y
        .post(
            "/security/allow",
            &[
                ("csrf", &csrf),
                ("block", "203.0.113.9"),
                ("customer", &a.0.to_string()),
            ],
        )
        .await;
    assert_eq!(forged.status, StatusCode::NOT_FOUND);
    // A customer user has no such page.
    let mut user = Browser::new(&api, HOST_X);
    user.sign_in("user@acme.test").await;
    assert_eq!(user.get("/security").await.status, StatusCode::NOT_FOUND);
    // Without the CSRF token nothing happens.
    assert_eq!(
        x.post(&format!("/security/bans/{ban}/lift"), &[])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    // The customer admin puts its office on the allow list (which ends the
    // ban of that address) and lifts the protection.
    let csrf = x.token("/security").await;
    let bad = x
        .post(
            "/security/allow",
            &[("csrf", &csrf), ("block", "10.0.0.0/8")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let added = x
        .post(
            "/security/allow",
            &[("csrf", &csrf), ("block", "192.0.2.66"), ("note", "Office")],
        )
        .await;
    assert_eq!(added.location(), "/security?done=address_allowed");
    assert!(!api.db.store.sip_bans().get(&sys, ban).await.unwrap().active);
    let lifted = x
        .post(
            &format!("/security/protections/{protection}/lift"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(lifted.location(), "/security?done=protection_lifted");
    let after = x.get("/security?done=protection_lifted").await;
    assert!(after.body.contains("Protection lifted."));
    assert!(!after.body.contains("role=\"alert\""));
    assert!(after.body.contains("192.0.2.66/32"));
}

async fn a_protected_account_is_told_by_mail_once_in_the_resellers_brand(db: TestDb) {
    use pbx_control_plane::console::Console;
    use pbx_control_plane::mail::MailConfig;
    let api = setup(db).await;
    let sink = smtp_sink().await;
    let mail = MailConfig {
        relay_host: sink.addr.ip().to_string(),
        relay_port: sink.addr.port(),
        from_address: None,
    };
    let console = Console::new(None, Some(&mail)).expect("console");
    let now = pbx_store::now_ms();
    api.db
        .store
        .account_protections()
        .record(
            &Principal::system(),
            &pbx_store::abuse::NewProtection {
                reseller: api.t.reseller_x.id,
                customer: api.t.customer_a.id,
                device: api.t.device_a.id,
                sip_user: api.t.device_a.sip_user.clone(),
                failures: 12,
                sources: 11,
                node_id: "n1".into(),
                since: now,
                until: now + 3_600_000,
            },
        )
        .await
        .unwrap();
    let sent = pbx_control_plane::notices::send_due(&api.db.store, &console, now)
        .await
        .expect("sent");
    // The customer's administrator and the reseller's.
    assert_eq!(sent, 2);
    let mails: Vec<String> = sink.wait_for(2).await.iter().map(|m| unquote(m)).collect();
    let to_customer = mails
        .iter()
        .find(|m| m.contains("admin@acme.test"))
        .expect("to A's admin");
    assert!(
        mails.iter().any(|m| m.contains("x@reseller-x.test")),
        "{mails:?}"
    );
    assert!(!mails
        .iter()
        .any(|m| m.contains("bolt") || m.contains("reseller-y")));
    for m in &mails {
        assert!(m.contains("Reseller X Phone"), "{m}");
        assert!(m.contains("no-reply@console.reseller-x.test"), "{m}");
        assert!(
            m.contains("https://console.reseller-x.test/security"),
            "{m}"
        );
        assert!(!m.contains(OPERATOR_NAME) && !m.contains(OPERATOR_HOST));
    }
    // German, the reseller's language; what to do is in it.
    assert!(
        to_customer.contains(&api.t.device_a.sip_user),
        "{to_customer}"
    );
    assert!(to_customer.contains("Passwort"), "{to_customer}");
    // Once only.
    assert_eq!(
        pbx_control_plane::notices::send_due(&api.db.store, &console, now + 1000)
            .await
            .expect("sent"),
        0
    );
}

/// Posts a media anchoring choice to `path`.
async fn choose_anchor(b: &mut Browser, path: &str, token: &str, anchor: &str) -> StatusCode {
    b.post(path, &[("csrf", token), ("anchor", anchor)])
        .await
        .status
}

/// A customer's own anchoring choice, as stored.
async fn customer_anchor(
    store: &pbx_store::Store,
    customer: pbx_store::CustomerId,
) -> Option<pbx_store::media::AnchorMode> {
    let sys = Principal::system();
    let policy = store.media_policy().customer(&sys, customer).await;
    policy.expect("policy").anchor
}

/// A reseller chooses whether its customers' audio is relayed (for all of
/// them and for one), and the call history shows what the relay saw.
async fn media_anchoring_is_chosen_and_the_call_history_shows_the_audio(db: TestDb) {
    use pbx_store::media::{AnchorMode, MediaFigures, MediaSide};
    let api = setup(db).await;
    let sys = pbx_store::Principal::system();
    let (x_id, a) = (api.t.reseller_x.id, api.t.customer_a.id);
    let mut relayed =
        pbx_store::testing::answered_call("media-1", x_id, a, pbx_store::now_ms() - 60_000, 30_000);
    relayed.media = Some(MediaFigures {
        caller: Some(MediaSide {
            packets: 1990,
            lost: 10,
            jitter_ms: 3,
            codec: Some("PCMA".into()),
            ..MediaSide::default()
        }),
        callee: Some(MediaSide {
            packets: 2000,
            jitter_ms: 1,
            codec: Some("PCMA".into()),
            ..MediaSide::default()
        }),
    });
    let direct =
        pbx_store::testing::answered_call("media-2", x_id, a, pbx_store::now_ms() - 30_000, 5_000);
    api.db
        .store
        .call_records()
        .insert_batch(&sys, &[relayed, direct])
        .await
        .expect("records");

    let mut x = Browser::new(&api, HOST_X);
    x.sign_in("x@reseller-x.test").await;
    let calls = x.get(&format!("/customers/{a}/calls")).await;
    assert_eq!(calls.status, StatusCode::OK);
    assert!(
        calls
            .body
            .contains("Caller: PCMA · 1,990 packets · 0.50% lost · 3 ms jitter"),
        "{}",
        calls.body
    );
    assert!(calls
        .body
        .contains("Callee: PCMA · 2,000 packets · 0% lost · 1 ms jitter"));
    assert!(
        calls.body.contains(">direct<"),
        "the call not relayed says so"
    );
    let csv = x.get(&format!("/customers/{a}/calls?format=csv")).await;
    assert!(csv
        .body
        .lines()
        .next()
        .unwrap_or_default()
        .ends_with("callee_jitter_ms"));
    assert!(
        csv.body.contains(",PCMA,1990,10,3,PCMA,2000,0,1\n"),
        "{}",
        csv.body
    );
    assert!(csv.body.contains(",,,,,,,,\n"), "{}", csv.body);

    // The reseller's default for all its customers, then one customer's own.
    let token = x.token("/customers").await;
    let list = x.get("/customers").await;
    assert!(list
        .body
        .contains("<option value=\"\" selected>As the platform decides</option>"));
    assert_eq!(
        choose_anchor(&mut x, "/media-anchor", &token, "always").await,
        StatusCode::SEE_OTHER
    );
    let store = &api.db.store;
    let reseller = store
        .media_policy()
        .reseller(&sys, x_id)
        .await
        .expect("policy");
    assert_eq!(reseller.anchor, Some(AnchorMode::Always));
    assert_eq!(
        choose_anchor(
            &mut x,
            &format!("/customers/{a}/media-anchor"),
            &token,
            "never"
        )
        .await,
        StatusCode::SEE_OTHER
    );
    assert_eq!(customer_anchor(store, a).await, Some(AnchorMode::Never));
    let usage = x.get(&format!("/customers/{a}/usage")).await;
    assert!(usage.body.contains("<option value=\"never\" selected>"));
    // Back to the reseller's choice.
    assert_eq!(
        choose_anchor(&mut x, &format!("/customers/{a}/media-anchor"), &token, "").await,
        StatusCode::SEE_OTHER
    );
    assert_eq!(customer_anchor(store, a).await, None);
    // Nonsense changes nothing.
    assert_eq!(
        choose_anchor(&mut x, "/media-anchor", &token, "sometimes").await,
        StatusCode::BAD_REQUEST
    );
    let reseller = store
        .media_policy()
        .reseller(&sys, x_id)
        .await
        .expect("policy");
    assert_eq!(reseller.anchor, Some(AnchorMode::Always));

    // Another reseller, and the customer's own admin, cannot set it.
    let mut y = Browser::new(&api, HOST_Y);
    y.sign_in("y@reseller-y.test").await;
    let y_token = y.token("/customers").await;
    assert_eq!(
        choose_anchor(
            &mut y,
            &format!("/customers/{a}/media-anchor"),
            &y_token,
            "never"
        )
        .await,
        StatusCode::NOT_FOUND
    );
    let mut admin = Browser::new(&api, HOST_X);
    admin.sign_in("admin@acme.test").await;
    let admin_token = admin.token(&format!("/customers/{a}/calls")).await;
    assert_eq!(
        choose_anchor(
            &mut admin,
            &format!("/customers/{a}/media-anchor"),
            &admin_token,
            "never"
        )
        .await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(customer_anchor(store, a).await, None);
}

pbx_store::both_engines!(
    a_protected_account_is_told_by_mail_once_in_the_resellers_brand,
    sip_security_page_shows_protections_bans_and_the_allow_list,
    sign_in_follows_the_host,
    customer_admin_creates_an_extension_and_sees_its_password_once,
    other_tenants_pages_are_not_found_for_every_role,
    nothing_under_a_resellers_host_shows_the_operator,
    reseller_admin_runs_customers_and_brand,
    reseller_admin_opens_a_customers_console_visibly,
    a_forgotten_password_is_reset_by_a_branded_mail,
    admins_can_add_a_second_factor,
    customer_admin_runs_ring_groups,
    customer_admin_runs_conference_rooms,
    voicemail_is_listed_played_and_deleted_in_the_console,
    recorded_calls_are_listed_played_and_deleted_and_the_policy_set,
    an_extension_user_uploads_its_greeting,
    resellers_and_the_operator_keep_their_price_plans,
    trunks_are_kept_by_their_owner_and_never_show_their_secret,
    customer_admin_keeps_business_hours,
    customer_admin_routes_its_numbers,
    customer_admin_runs_ivr_menus,
    a_brand_changed_elsewhere_shows_without_waiting_for_the_cache,
    pages_speak_the_users_language,
    dashboard_shows_registrations_heard_live,
    media_anchoring_is_chosen_and_the_call_history_shows_the_audio,
);
