//! Connection, engine detection, migrations and transactions.

use std::borrow::Cow;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Any, AnyConnection, AnyPool, Executor};

use crate::changes::{Change, ChangeFeed, CHANNEL};
use crate::secrets::{SecretBox, KEY_LEN};
use crate::{Result, StoreError};

/// The database engine behind a [`Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    /// The engine a database URL names, or None for an unsupported scheme.
    pub fn from_url(url: &str) -> Option<Engine> {
        if url.starts_with("sqlite:") {
            Some(Engine::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Engine::Postgres)
        } else {
            None
        }
    }
}

/// Everything needed to open a [`Store`].
#[derive(Clone)]
pub struct StoreConfig {
    /// `sqlite://PATH?mode=rwc` or `postgres://…`.
    pub database_url: String,
    pub max_connections: u32,
    /// Key for secrets that must be recoverable (see [`crate::secrets`]).
    pub secret_key: [u8; KEY_LEN],
}

/// The storage handle shared by every part of a node. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    engine: Engine,
    secrets: SecretBox,
    changes: ChangeFeed,
}

/// The migrations, embedded per engine; version numbers are shared.
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    (
        1,
        "tenancy",
        include_str!("../../migrations/sqlite/0001_tenancy.sql"),
        include_str!("../../migrations/postgres/0001_tenancy.sql"),
    ),
    (
        2,
        "billing",
        include_str!("../../migrations/sqlite/0002_billing.sql"),
        include_str!("../../migrations/postgres/0002_billing.sql"),
    ),
    (
        3,
        "api",
        include_str!("../../migrations/sqlite/0003_api.sql"),
        include_str!("../../migrations/postgres/0003_api.sql"),
    ),
    (
        4,
        "console",
        include_str!("../../migrations/sqlite/0004_console.sql"),
        include_str!("../../migrations/postgres/0004_console.sql"),
    ),
    (
        5,
        "carriers",
        include_str!("../../migrations/sqlite/0005_carriers.sql"),
        include_str!("../../migrations/postgres/0005_carriers.sql"),
    ),
    (
        6,
        "abuse",
        include_str!("../../migrations/sqlite/0006_abuse.sql"),
        include_str!("../../migrations/postgres/0006_abuse.sql"),
    ),
    (
        7,
        "media",
        include_str!("../../migrations/sqlite/0007_media.sql"),
        include_str!("../../migrations/postgres/0007_media.sql"),
    ),
    (
        8,
        "voicemail",
        include_str!("../../migrations/sqlite/0008_voicemail.sql"),
        include_str!("../../migrations/postgres/0008_voicemail.sql"),
    ),
    (
        9,
        "conference",
        include_str!("../../migrations/sqlite/0009_conference.sql"),
        include_str!("../../migrations/postgres/0009_conference.sql"),
    ),
    (
        10,
        "call_recording",
        include_str!("../../migrations/sqlite/0010_call_recording.sql"),
        include_str!("../../migrations/postgres/0010_call_recording.sql"),
    ),
    (
        11,
        "uploaded_audio",
        include_str!("../../migrations/sqlite/0011_uploaded_audio.sql"),
        include_str!("../../migrations/postgres/0011_uploaded_audio.sql"),
    ),
    (
        12,
        "voicemail_pin",
        include_str!("../../migrations/sqlite/0012_voicemail_pin.sql"),
        include_str!("../../migrations/postgres/0012_voicemail_pin.sql"),
    ),
    (
        13,
        "more_destinations",
        include_str!("../../migrations/sqlite/0013_more_destinations.sql"),
        include_str!("../../migrations/postgres/0013_more_destinations.sql"),
    ),
    (
        14,
        "ivr_menus",
        include_str!("../../migrations/sqlite/0014_ivr_menus.sql"),
        include_str!("../../migrations/postgres/0014_ivr_menus.sql"),
    ),
];

fn migrator(engine: Engine) -> Migrator {
    let migrations = MIGRATIONS
        .iter()
        .map(|&(version, name, sqlite, postgres)| {
            let sql = match engine {
                Engine::Sqlite => sqlite,
                Engine::Postgres => postgres,
            };
            Migration::new(
                version,
                Cow::Borrowed(name),
                MigrationType::Simple,
                Cow::Borrowed(sql),
                false,
            )
        })
        .collect::<Vec<_>>();
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}

impl Store {
    /// Opens the database (creating an SQLite file if the URL asks for it),
    /// without migrating.
    pub async fn connect(config: &StoreConfig) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let engine = Engine::from_url(&config.database_url).ok_or_else(|| {
            StoreError::invalid("database_url", "must start with sqlite: or postgres://")
        })?;
        let options: AnyConnectOptions = config.database_url.parse()?;
        let pool = AnyPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if engine == Engine::Sqlite {
                        // WAL lets readers proceed while one writer commits; NORMAL
                        // sync is durable across process crashes in WAL mode.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let changes = match engine {
            Engine::Sqlite => ChangeFeed::local(),
            Engine::Postgres => ChangeFeed::postgres(&config.database_url),
        };
        Ok(Store {
            pool,
            engine,
            secrets: SecretBox::new(&config.secret_key),
            changes,
        })
    }

    /// Brings the schema up to date. Safe to run on every start and from
    /// several nodes at once (the migrator takes a database lock).
    pub async fn migrate(&self) -> Result<()> {
        migrator(self.engine).run(&self.pool).await?;
        Ok(())
    }

    /// The newest migration version this build knows.
    pub fn schema_version() -> i64 {
        MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    pub fn changes(&self) -> &ChangeFeed {
        &self.changes
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub(crate) fn secrets(&self) -> &SecretBox {
        &self.secrets
    }

    /// Waits for in-flight queries and closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub fn operator(&self) -> crate::operator::Operators<'_> {
        crate::operator::Operators(self)
    }
    pub fn resellers(&self) -> crate::resellers::Resellers<'_> {
        crate::resellers::Resellers(self)
    }
    pub fn customers(&self) -> crate::customers::Customers<'_> {
        crate::customers::Customers(self)
    }
    pub fn extensions(&self) -> crate::extensions::Extensions<'_> {
        crate::extensions::Extensions(self)
    }
    pub fn devices(&self) -> crate::devices::Devices<'_> {
        crate::devices::Devices(self)
    }
    pub fn numbers(&self) -> crate::numbers::Numbers<'_> {
        crate::numbers::Numbers(self)
    }
    pub fn logins(&self) -> crate::logins::Logins<'_> {
        crate::logins::Logins(self)
    }
    pub fn api_tokens(&self) -> crate::api_tokens::ApiTokens<'_> {
        crate::api_tokens::ApiTokens(self)
    }
    pub fn audit(&self) -> crate::audit::Audit<'_> {
        crate::audit::Audit(self)
    }
    pub fn registrations(&self) -> crate::registrations::Registrations<'_> {
        crate::registrations::Registrations(self)
    }
    pub fn directory(&self) -> crate::directory::Directory<'_> {
        crate::directory::Directory(self)
    }
    pub fn price_plans(&self) -> crate::price_plans::PricePlans<'_> {
        crate::price_plans::PricePlans(self)
    }
    pub fn call_records(&self) -> crate::call_records::CallRecords<'_> {
        crate::call_records::CallRecords(self)
    }
    pub fn call_recordings(&self) -> crate::call_recordings::CallRecordings<'_> {
        crate::call_recordings::CallRecordings(self)
    }
    pub fn custom_audio(&self) -> crate::custom_audio::CustomAudio<'_> {
        crate::custom_audio::CustomAudio(self)
    }
    pub fn conference_rooms(&self) -> crate::conference_rooms::ConferenceRooms<'_> {
        crate::conference_rooms::ConferenceRooms(self)
    }
    pub fn ivr_menus(&self) -> crate::ivr_menus::IvrMenus<'_> {
        crate::ivr_menus::IvrMenus(self)
    }
    pub fn ring_groups(&self) -> crate::ring_groups::RingGroups<'_> {
        crate::ring_groups::RingGroups(self)
    }
    pub fn voicemail(&self) -> crate::voicemail::Voicemail<'_> {
        crate::voicemail::Voicemail(self)
    }

    pub fn forwards(&self) -> crate::forwards::Forwards<'_> {
        crate::forwards::Forwards(self)
    }
    pub fn password_resets(&self) -> crate::password_resets::PasswordResets<'_> {
        crate::password_resets::PasswordResets(self)
    }
    pub fn call_limits(&self) -> crate::limits::CallLimits<'_> {
        crate::limits::CallLimits(self)
    }
    pub fn business_hours(&self) -> crate::business_hours::BusinessHoursRules<'_> {
        crate::business_hours::BusinessHoursRules(self)
    }
    pub fn trunks(&self) -> crate::trunks::Trunks<'_> {
        crate::trunks::Trunks(self)
    }
    pub fn unrouted_calls(&self) -> crate::unrouted::UnroutedCalls<'_> {
        crate::unrouted::UnroutedCalls(self)
    }
    pub fn totp(&self) -> crate::totp::Totp<'_> {
        crate::totp::Totp(self)
    }
    pub fn sessions(&self) -> crate::sessions::Sessions<'_> {
        crate::sessions::Sessions(self)
    }
    pub fn webhooks(&self) -> crate::webhooks::Webhooks<'_> {
        crate::webhooks::Webhooks(self)
    }
    pub fn idempotency(&self) -> crate::idempotency::Idempotency<'_> {
        crate::idempotency::Idempotency(self)
    }
    pub fn statements(&self) -> crate::statements::Statements<'_> {
        crate::statements::Statements(self)
    }

    pub(crate) async fn begin(&self) -> Result<Tx<'_>> {
        // SQLite: take the write lock at BEGIN. A deferred transaction that
        // reads, then writes after another connection committed, fails at
        // once with SQLITE_BUSY_SNAPSHOT (busy_timeout cannot wait for it);
        // IMMEDIATE ones queue behind each other instead.
        let inner = match self.engine {
            Engine::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Engine::Postgres => self.pool.begin().await?,
        };
        Ok(Tx {
            inner,
            store: self,
            changes: Vec::new(),
        })
    }
}

/// A write transaction that also carries the change notifications it causes,
/// so they are sent if and only if it commits.
pub(crate) struct Tx<'s> {
    inner: sqlx::Transaction<'static, Any>,
    store: &'s Store,
    changes: Vec<Change>,
}

impl Tx<'_> {
    pub fn conn(&mut self) -> &mut AnyConnection {
        &mut self.inner
    }

    /// Records that `change` happens when this transaction commits.
    pub fn changed(&mut self, change: Change) {
        if !self.changes.contains(&change) {
            self.changes.push(change);
        }
    }

    pub async fn commit(mut self) -> Result<()> {
        if self.store.changes.is_distributed() {
            for change in &self.changes {
                let payload = serde_json::to_string(change).unwrap_or_default();
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(CHANNEL)
                    .bind(payload)
                    .execute(&mut *self.inner)
                    .await?;
            }
            self.inner.commit().await?;
        } else {
            self.inner.commit().await?;
            self.store.changes.publish_local(&self.changes);
        }
        Ok(())
    }
}
