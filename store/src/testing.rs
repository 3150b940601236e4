//! Fresh databases for tests, on both engines.
//!
//! SQLite: a file in a temporary directory. PostgreSQL: a new database on the
//! server named by `PBX_TEST_POSTGRES_URL`, dropped when the test ends. When
//! that variable is unset the PostgreSQL half of a test is skipped with a
//! message, unless `PBX_TEST_REQUIRE_POSTGRES=1` (set by CI) makes it a failure.
//!
//! [`both_engines!`](crate::both_engines) turns one `async fn(TestDb)` into a
//! test per engine.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::any::AnyConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor};

use crate::{Engine, Store, StoreConfig};

/// The key tests encrypt secrets with.
pub const TEST_KEY: [u8; 32] = [42; 32];

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A migrated store on a database that exists for one test.
pub struct TestDb {
    pub store: Store,
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Dir(PathBuf),
    Database { admin_url: String, name: String },
}

/// The PostgreSQL server tests use, if configured. Panics when CI requires
/// PostgreSQL and it is not configured.
pub fn postgres_url() -> Option<String> {
    match std::env::var("PBX_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("PBX_TEST_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!("PBX_TEST_REQUIRE_POSTGRES=1 but PBX_TEST_POSTGRES_URL is not set");
            }
            None
        }
    }
}

fn unique_name() -> String {
    format!(
        "pbx_test_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        crate::secrets::random_token(4)
            .to_lowercase()
            .replace(['-', '_'], "x")
    )
}

impl TestDb {
    pub async fn new(engine: Engine) -> Option<TestDb> {
        match engine {
            Engine::Sqlite => Some(TestDb::sqlite().await),
            Engine::Postgres => TestDb::postgres().await,
        }
    }

    pub async fn sqlite() -> TestDb {
        let dir = std::env::temp_dir().join(unique_name());
        std::fs::create_dir_all(&dir).expect("create test directory");
        let url = format!("sqlite://{}?mode=rwc", dir.join("pbx.db").display());
        let store = open(&url).await;
        TestDb {
            store,
            url,
            cleanup: Cleanup::Dir(dir),
        }
    }

    /// None (with a message) when PostgreSQL is not configured for tests.
    pub async fn postgres() -> Option<TestDb> {
        let Some(admin_url) = postgres_url() else {
            eprintln!("SKIPPED on PostgreSQL: PBX_TEST_POSTGRES_URL is not set");
            return None;
        };
        let name = unique_name();
        sqlx::any::install_default_drivers();
        let mut admin = sqlx::AnyConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {admin_url}: {e}"));
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create test database");
        let _ = admin.close().await;
        let url = database_url(&admin_url, &name);
        let store = open(&url).await;
        Some(TestDb {
            store,
            url,
            cleanup: Cleanup::Database { admin_url, name },
        })
    }

    /// Runs raw SQL, for tests that check the schema refuses what the store
    /// API would never send.
    pub async fn execute(&self, sql: &str) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query(sql)
            .execute(self.store.pool())
            .await?
            .rows_affected())
    }

    /// Runs a `SELECT COUNT(*) AS n …` and returns n.
    pub async fn count(&self, sql: &str) -> i64 {
        use sqlx::Row;
        let row = sqlx::query(sql)
            .fetch_one(self.store.pool())
            .await
            .expect("count query");
        row.try_get("n").expect("count column n")
    }
}

/// The URL of database `name` on the server of `admin_url`.
pub fn database_url(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (admin_url, String::new()),
    };
    let prefix_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[prefix_end..].rfind('/') {
        Some(i) => &base[..prefix_end + i],
        None => base,
    };
    format!("{base}/{name}{query}")
}

async fn open(url: &str) -> Store {
    let store = Store::connect(&StoreConfig {
        database_url: url.to_owned(),
        max_connections: 4,
        secret_key: TEST_KEY,
    })
    .await
    .unwrap_or_else(|e| panic!("cannot open test database {url}: {e}"));
    store.migrate().await.expect("migrate test database");
    store
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Database { admin_url, name } => {
                let (admin_url, name) = (admin_url.clone(), name.clone());
                // Drop runs outside async context: use a private runtime on a
                // thread of its own. FORCE ends the pool's connections.
                let _ = std::thread::spawn(move || {
                    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    else {
                        return;
                    };
                    rt.block_on(async move {
                        let Ok(options) = admin_url.parse::<AnyConnectOptions>() else {
                            return;
                        };
                        if let Ok(mut admin) = options.connect().await {
                            let _ = admin
                                .execute(
                                    format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
                                )
                                .await;
                        }
                    });
                })
                .join();
            }
        }
    }
}

/// Declares each listed `async fn(TestDb)` as a test on SQLite and one on
/// PostgreSQL (`sqlite::name`, `postgres::name`).
#[macro_export]
macro_rules! both_engines {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::testing::TestDb::sqlite().await).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(db) = $crate::testing::TestDb::postgres().await {
                        super::$name(db).await;
                    }
                }
            )+
        }
    };
}

/// Two resellers with one customer each, an extension with a device in each
/// customer, and an admin login at every level: the attacker's and the
/// victim's side of every tenant-isolation test.
pub struct TwoTenants {
    pub reseller_x: crate::resellers::Reseller,
    pub reseller_y: crate::resellers::Reseller,
    /// Customer of reseller X.
    pub customer_a: crate::customers::Customer,
    /// Customer of reseller Y.
    pub customer_b: crate::customers::Customer,
    pub extension_a: crate::extensions::Extension,
    pub extension_b: crate::extensions::Extension,
    pub device_a: crate::devices::Device,
    pub device_b: crate::devices::Device,
    pub reseller_x_admin: crate::Principal,
    pub reseller_y_admin: crate::Principal,
    pub customer_a_admin: crate::Principal,
    pub customer_b_admin: crate::Principal,
    pub customer_a_user: crate::Principal,
}

/// A reseller's settings for tests, named `name`.
pub fn reseller_settings(name: &str) -> crate::resellers::ResellerSettings {
    let label = crate::validate::slug(name);
    crate::resellers::ResellerSettings {
        name: name.to_owned(),
        time_zone: "Europe/Berlin".to_owned(),
        currency: "EUR".to_owned(),
        vat_rate_bp: 1900,
        sip_domain_suffix: format!("voice.{label}.test"),
        default_language: "de".to_owned(),
        brand: crate::resellers::Brand::named(&format!("{name} Phone")),
        console_hosts: vec![format!("console.{label}.test")],
    }
}

impl TwoTenants {
    pub async fn create(store: &Store) -> TwoTenants {
        use crate::customers::NewCustomer;
        use crate::devices::NewDevice;
        use crate::extensions::NewExtension;
        use crate::logins::{NewLogin, Role};

        let op = crate::Principal::system();
        let reseller_x = store
            .resellers()
            .create(&op, &reseller_settings("Reseller X"))
            .await
            .expect("reseller X");
        let reseller_y = store
            .resellers()
            .create(&op, &reseller_settings("Reseller Y"))
            .await
            .expect("reseller Y");
        let customer = |name: &str| NewCustomer {
            name: name.to_owned(),
            ..NewCustomer::default()
        };
        let customer_a = store
            .customers()
            .create(&op, reseller_x.id, &customer("Acme"))
            .await
            .expect("customer A");
        let customer_b = store
            .customers()
            .create(&op, reseller_y.id, &customer("Bolt"))
            .await
            .expect("customer B");
        let ext = |n: &str| NewExtension {
            number: n.to_owned(),
            display_name: format!("Ext {n}"),
        };
        let extension_a = store
            .extensions()
            .create(&op, customer_a.id, &ext("101"))
            .await
            .expect("extension A");
        let extension_b = store
            .extensions()
            .create(&op, customer_b.id, &ext("101"))
            .await
            .expect("extension B");
        let device = NewDevice {
            name: "Desk".to_owned(),
            ..NewDevice::default()
        };
        let (device_a, _) = store
            .devices()
            .create(&op, extension_a.id, &device)
            .await
            .expect("device A");
        let (device_b, _) = store
            .devices()
            .create(&op, extension_b.id, &device)
            .await
            .expect("device B");
        let login = |email: &str, role, reseller, customer, extension| NewLogin {
            email: email.to_owned(),
            password: "a long enough password".to_owned(),
            role,
            reseller_id: reseller,
            customer_id: customer,
            extension_id: extension,
            display_name: String::new(),
        };
        let mut principals = Vec::new();
        for new in [
            login(
                "x@reseller-x.test",
                Role::ResellerAdmin,
                Some(reseller_x.id),
                None,
                None,
            ),
            login(
                "y@reseller-y.test",
                Role::ResellerAdmin,
                Some(reseller_y.id),
                None,
                None,
            ),
            login(
                "admin@acme.test",
                Role::CustomerAdmin,
                None,
                Some(customer_a.id),
                None,
            ),
            login(
                "admin@bolt.test",
                Role::CustomerAdmin,
                None,
                Some(customer_b.id),
                None,
            ),
            login(
                "user@acme.test",
                Role::CustomerUser,
                None,
                Some(customer_a.id),
                Some(extension_a.id),
            ),
        ] {
            let created = store.logins().create(&op, &new).await.expect("login");
            principals.push(created.principal().expect("login has a scope"));
        }
        let mut principals = principals.into_iter();
        let mut next = || principals.next().expect("five principals");
        TwoTenants {
            reseller_x,
            reseller_y,
            customer_a,
            customer_b,
            extension_a,
            extension_b,
            device_a,
            device_b,
            reseller_x_admin: next(),
            reseller_y_admin: next(),
            customer_a_admin: next(),
            customer_b_admin: next(),
            customer_a_user: next(),
        }
    }
}

/// An internal call of `customer` from 101 to 102, set up at `invite_at`,
/// answered a second later and talked for `talk_ms`: a record as a proxy
/// node would report it.
pub fn answered_call(
    uid: &str,
    reseller: crate::ResellerId,
    customer: crate::CustomerId,
    invite_at: crate::Millis,
    talk_ms: i64,
) -> crate::call_records::NewCallRecord {
    use crate::call_records::{CallDirection, Disposition, NewCallRecord};
    NewCallRecord {
        record_uid: uid.to_owned(),
        call_id: format!("call-{uid}"),
        leg: 0,
        reseller_id: reseller,
        customer_id: customer,
        direction: CallDirection::Internal,
        caller: "101".into(),
        callee: "102".into(),
        caller_extension_id: None,
        callee_extension_id: None,
        caller_device_id: None,
        callee_device_id: None,
        destination: None,
        trunk_id: None,
        invite_at,
        answer_at: Some(invite_at + 1000),
        end_at: invite_at + 1000 + talk_ms,
        disposition: Disposition::Answered,
        sip_status: Some(200),
        hangup_side: None,
        end_reason: None,
        recovered: false,
        node_id: "n1".into(),
        media: None,
        recording: None,
    }
}
