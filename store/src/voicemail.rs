//! Voicemail: each extension's box (where new messages are mailed, how long
//! a message may be, how many the box holds) and the messages callers left
//! in it. The media application server adds messages (as the system); the
//! box's own user and the customer's administrators (and those above them)
//! list, hear and delete them; one control-plane node mails each new
//! message once. The audio itself is in the [`AudioFiles`](crate::audio_files)
//! store under the message's `audio` key.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::audit::{self, Event};
use crate::changes::Change;
use crate::principal::Level;
use crate::validate::Checker;
use crate::{CustomerId, ExtensionId, Millis, Principal, ResellerId, Result, Store, StoreError};

/// A message's e-mail claimed but not confirmed sent by then may be claimed again.
const NOTIFY_LEASE_MS: Millis = 5 * 60_000;

pub const DEFAULT_MAX_MESSAGE_S: u32 = 120;
pub const DEFAULT_MAX_MESSAGES: u32 = 100;

/// An extension's voicemail box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VoicemailBox {
    pub extension_id: ExtensionId,
    /// New messages are mailed here (with the audio attached); none: not mailed.
    pub email: Option<String>,
    /// The longest message a caller may leave, in seconds (10-600).
    pub max_message_s: u32,
    /// Messages the box holds at most (1-1000); a full box takes no more.
    pub max_messages: u32,
    /// Whether it has a PIN, and so can be listened to from any phone of
    /// the customer (`*98`). The PIN itself is never shown.
    pub has_pin: bool,
}

/// A box's settings as a user writes them: the e-mail address (absent or
/// null: messages are not mailed); limits and PIN left out keep their
/// value; an empty PIN removes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BoxSettings {
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub max_message_s: Option<u32>,
    #[serde(default)]
    pub max_messages: Option<u32>,
    /// 4 to 10 digits; "" removes it.
    #[serde(default)]
    pub pin: Option<String>,
}

/// A message left in a box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VoicemailMessage {
    pub id: i64,
    pub reseller_id: ResellerId,
    pub customer_id: CustomerId,
    pub extension_id: ExtensionId,
    /// Who called: a number or an extension, as the call's record has it.
    pub caller: String,
    pub duration_ms: i64,
    pub received_at: Millis,
    /// When it was first heard (on a phone or in the console); none: new.
    pub heard_at: Option<Millis>,
}

/// A message the application server recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub reseller: ResellerId,
    pub customer: CustomerId,
    pub extension: ExtensionId,
    pub caller: String,
    pub call_id: String,
    pub duration_ms: i64,
    /// The key of its audio in the audio store.
    pub audio: String,
    pub received_at: Millis,
}

/// A new message to mail, with where to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmailed {
    pub message: VoicemailMessage,
    pub audio: String,
    pub email: String,
}

/// New and heard messages of a box (what a phone's lamp shows).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub new: u32,
    pub heard: u32,
}

const COLUMNS: &str = "m.id, m.reseller_id, m.customer_id, m.extension_id, m.caller, \
    m.duration_ms, m.received_at, m.heard_at, m.audio";

/// Messages the caller's scope may see ($1 reseller, $2 customer, $3 extension).
const SCOPED: &str = "FROM voicemail_messages m \
    WHERE ($1 IS NULL OR m.reseller_id = $1) AND ($2 IS NULL OR m.customer_id = $2) \
    AND ($3 IS NULL OR m.extension_id = $3)";

fn message_from(row: &AnyRow) -> Result<(VoicemailMessage, String), sqlx::Error> {
    Ok((
        VoicemailMessage {
            id: row.try_get("id")?,
            reseller_id: ResellerId(row.try_get("reseller_id")?),
            customer_id: CustomerId(row.try_get("customer_id")?),
            extension_id: ExtensionId(row.try_get("extension_id")?),
            caller: row.try_get("caller")?,
            duration_ms: row.try_get("duration_ms")?,
            received_at: row.try_get("received_at")?,
            heard_at: row.try_get("heard_at")?,
        },
        row.try_get("audio")?,
    ))
}

/// A PIN a phone can key: 4 to 10 digits, or empty (none).
fn pin_is_valid(pin: &str) -> bool {
    pin.is_empty() || ((4..=10).contains(&pin.len()) && pin.bytes().all(|b| b.is_ascii_digit()))
}

fn count(row: &AnyRow, col: &str) -> Result<u32, sqlx::Error> {
    Ok(u32::try_from(row.try_get::<i64, _>(col)?).unwrap_or(u32::MAX))
}

pub struct Voicemail<'s>(pub(crate) &'s Store);

impl Voicemail<'_> {
    /// An extension's box (its defaults when nobody set anything).
    pub async fn get_box(&self, by: &Principal, extension: ExtensionId) -> Result<VoicemailBox> {
        let ext = self.0.extensions().get_live(by, extension).await?;
        let row = sqlx::query(
            "SELECT email, max_message_s, max_messages, CASE WHEN pin_hash IS NULL THEN 0 ELSE 1 END AS has_pin \
             FROM voicemail_boxes WHERE extension_id = $1",
        )
        .bind(ext.id.0)
        .fetch_optional(self.0.pool())
        .await?;
        Ok(match row {
            Some(row) => VoicemailBox {
                extension_id: ext.id,
                email: row.try_get("email")?,
                max_message_s: count(&row, "max_message_s")?,
                max_messages: count(&row, "max_messages")?,
                has_pin: crate::rows::flag(&row, "has_pin")?,
            },
            None => VoicemailBox {
                extension_id: ext.id,
                email: None,
                max_message_s: DEFAULT_MAX_MESSAGE_S,
                max_messages: DEFAULT_MAX_MESSAGES,
                has_pin: false,
            },
        })
    }

    /// Changes a box: its own user may set where messages are mailed; the
    /// customer's administrators (and above) anything.
    pub async fn set_box(
        &self,
        by: &Principal,
        extension: ExtensionId,
        settings: &BoxSettings,
    ) -> Result<VoicemailBox> {
        if by.read_only {
            return Err(StoreError::Forbidden("this credential is read-only"));
        }
        let current = self.get_box(by, extension).await?;
        let limits_changed = settings
            .max_message_s
            .is_some_and(|v| v != current.max_message_s)
            || settings
                .max_messages
                .is_some_and(|v| v != current.max_messages);
        if limits_changed {
            by.may_write(Level::Customer)?;
        }
        let email = settings.email.clone();
        let max_message_s = settings.max_message_s.unwrap_or(current.max_message_s);
        let max_messages = settings.max_messages.unwrap_or(current.max_messages);
        let mut check = Checker::new();
        if let Some(e) = &email {
            check.check(
                crate::validate::is_email(e),
                "email",
                "must be an e-mail address",
            );
        }
        check
            .check(
                (10..=600).contains(&max_message_s),
                "max_message_s",
                "must be 10 to 600 seconds",
            )
            .check(
                (1..=1000).contains(&max_messages),
                "max_messages",
                "must be 1 to 1000",
            )
            .check(
                settings.pin.as_deref().is_none_or(pin_is_valid),
                "pin",
                "must be 4 to 10 digits (or empty to remove it)",
            )
            .finish()?;
        // Hashed before the transaction: argon2 takes its time on purpose.
        let pin_hash = settings
            .pin
            .as_deref()
            .map(|pin| (!pin.is_empty()).then(|| crate::secrets::hash_password(pin)));
        let ext = self.0.extensions().get_live(by, extension).await?;
        let mut tx = self.0.begin().await?;
        sqlx::query(
            "INSERT INTO voicemail_boxes (extension_id, customer_id, email, max_message_s, max_messages) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (extension_id) DO UPDATE SET \
             email = $3, max_message_s = $4, max_messages = $5, version = voicemail_boxes.version + 1",
        )
        .bind(ext.id.0)
        .bind(ext.customer_id.0)
        .bind(&email)
        .bind(i64::from(max_message_s))
        .bind(i64::from(max_messages))
        .execute(tx.conn())
        .await?;
        if let Some(hash) = &pin_hash {
            sqlx::query("UPDATE voicemail_boxes SET pin_hash = $1 WHERE extension_id = $2")
                .bind(hash)
                .bind(ext.id.0)
                .execute(tx.conn())
                .await?;
        }
        audit::record(
            &mut tx,
            by,
            Event {
                action: "set_voicemail_box",
                object_type: "extension",
                object_id: Some(ext.id.0),
                reseller: Some(ext.reseller_id),
                customer: Some(ext.customer_id),
                details: serde_json::json!({
                    "email": email,
                    "max_message_s": max_message_s,
                    "max_messages": max_messages,
                    // Whether the PIN changed, never the PIN.
                    "pin": match &pin_hash {
                        None => "kept",
                        Some(None) => "removed",
                        Some(Some(_)) => "set",
                    },
                }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(VoicemailBox {
            extension_id: ext.id,
            email,
            max_message_s,
            max_messages,
            has_pin: match pin_hash {
                None => current.has_pin,
                Some(hash) => hash.is_some(),
            },
        })
    }

    /// The box of extension `number` of `customer` if `pin` opens it (the
    /// system only: the application server asks for `*98`). A box without
    /// a PIN opens to nobody; a wrong number costs the same as a wrong PIN.
    pub async fn open_with_pin(
        &self,
        by: &Principal,
        customer: CustomerId,
        number: &str,
        pin: &str,
    ) -> Result<Option<ExtensionId>> {
        by.may_write(Level::Operator)?;
        let row = sqlx::query(
            "SELECT e.id, b.pin_hash FROM extensions e \
             JOIN voicemail_boxes b ON b.extension_id = e.id \
             WHERE e.customer_id = $1 AND e.number = $2 AND e.deleted_at IS NULL \
             AND b.pin_hash IS NOT NULL",
        )
        .bind(customer.0)
        .bind(number)
        .fetch_optional(self.0.pool())
        .await?;
        let (hash, id) = match &row {
            Some(row) => (
                row.try_get::<String, _>("pin_hash")?,
                Some(ExtensionId(row.try_get("id")?)),
            ),
            None => (crate::secrets::dummy_hash().to_owned(), None),
        };
        // argon2 takes its time on purpose: not on the threads that serve.
        let pin = pin.to_owned();
        let right =
            tokio::task::spawn_blocking(move || crate::secrets::verify_password(&pin, &hash))
                .await
                .unwrap_or(false);
        Ok(id.filter(|_| right))
    }

    /// What the application server needs before it records: the box's
    /// limits, and how many messages it holds (the system only).
    pub async fn deposit_limits(
        &self,
        by: &Principal,
        extension: ExtensionId,
    ) -> Result<(VoicemailBox, u32)> {
        by.may_write(Level::Operator)?;
        let b = self.get_box(by, extension).await?;
        let row =
            sqlx::query("SELECT COUNT(*) AS n FROM voicemail_messages WHERE extension_id = $1")
                .bind(extension.0)
                .fetch_one(self.0.pool())
                .await?;
        Ok((b, count(&row, "n")?))
    }

    /// Stores a message the application server recorded (the system only).
    /// Ok(None) when the box is full or its extension is gone: the audio
    /// is then not kept.
    pub async fn add(&self, by: &Principal, m: &NewMessage) -> Result<Option<i64>> {
        by.may_write(Level::Operator)?;
        let mut tx = self.0.begin().await?;
        let limit = sqlx::query(
            "SELECT COALESCE(b.max_messages, $3) AS max_messages FROM extensions e \
             LEFT JOIN voicemail_boxes b ON b.extension_id = e.id \
             WHERE e.id = $1 AND e.customer_id = $2 AND e.deleted_at IS NULL",
        )
        .bind(m.extension.0)
        .bind(m.customer.0)
        .bind(i64::from(DEFAULT_MAX_MESSAGES))
        .fetch_optional(tx.conn())
        .await?;
        let Some(limit) = limit else {
            return Ok(None);
        };
        let held =
            sqlx::query("SELECT COUNT(*) AS n FROM voicemail_messages WHERE extension_id = $1")
                .bind(m.extension.0)
                .fetch_one(tx.conn())
                .await?;
        if count(&held, "n")? >= count(&limit, "max_messages")? {
            return Ok(None);
        }
        let row = sqlx::query(
            "INSERT INTO voicemail_messages (reseller_id, customer_id, extension_id, caller, call_id, \
             duration_ms, audio, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(m.reseller.0)
        .bind(m.customer.0)
        .bind(m.extension.0)
        .bind(crate::validate::clip(&m.caller, 128))
        .bind(crate::validate::clip(&m.call_id, 256))
        .bind(m.duration_ms.max(0))
        .bind(&m.audio)
        .bind(m.received_at)
        .fetch_one(tx.conn())
        .await?;
        let id: i64 = row.try_get("id")?;
        // Every node's phones of the box hear of it (their lamps).
        tx.changed(Change::Voicemail {
            extension: m.extension,
        });
        tx.commit().await?;
        Ok(Some(id))
    }

    /// The messages of a box, newest first.
    pub async fn list(
        &self,
        by: &Principal,
        extension: ExtensionId,
    ) -> Result<Vec<VoicemailMessage>> {
        self.0.extensions().get_live(by, extension).await?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} {SCOPED} AND m.extension_id = $4 ORDER BY m.received_at DESC, m.id DESC"
        ))
        .bind(by.scope.reseller_param())
        .bind(by.scope.customer_param())
        .bind(by.scope.extension_param())
        .bind(extension.0)
        .fetch_all(self.0.pool())
        .await?;
        rows.iter()
            .map(|r| Ok(message_from(r)?.0))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// One message and the key of its audio.
    pub async fn get(&self, by: &Principal, id: i64) -> Result<(VoicemailMessage, String)> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} {SCOPED} AND m.id = $4"))
            .bind(by.scope.reseller_param())
            .bind(by.scope.customer_param())
            .bind(by.scope.extension_param())
            .bind(id)
            .fetch_optional(self.0.pool())
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(message_from(&row)?)
    }

    /// Marks a message heard (or new again).
    pub async fn set_heard(
        &self,
        by: &Principal,
        id: i64,
        heard: bool,
        now: Millis,
    ) -> Result<VoicemailMessage> {
        if by.read_only {
            return Err(StoreError::Forbidden("this credential is read-only"));
        }
        let (m, _) = self.get(by, id).await?;
        let mut tx = self.0.begin().await?;
        sqlx::query("UPDATE voicemail_messages SET heard_at = $2 WHERE id = $1")
            .bind(m.id)
            .bind(if heard {
                Some(m.heard_at.unwrap_or(now))
            } else {
                None
            })
            .execute(tx.conn())
            .await?;
        if heard != m.heard_at.is_some() {
            tx.changed(Change::Voicemail {
                extension: m.extension_id,
            });
        }
        tx.commit().await?;
        self.get(by, id).await.map(|(m, _)| m)
    }

    /// Deletes a message; returns its audio key, for the audio to go too.
    pub async fn delete(&self, by: &Principal, id: i64) -> Result<String> {
        if by.read_only {
            return Err(StoreError::Forbidden("this credential is read-only"));
        }
        let (m, audio) = self.get(by, id).await?;
        let mut tx = self.0.begin().await?;
        sqlx::query("DELETE FROM voicemail_messages WHERE id = $1")
            .bind(m.id)
            .execute(tx.conn())
            .await?;
        audit::record(
            &mut tx,
            by,
            Event {
                action: "delete_voicemail_message",
                object_type: "voicemail_message",
                object_id: Some(m.id),
                reseller: Some(m.reseller_id),
                customer: Some(m.customer_id),
                details: serde_json::json!({
                    "extension_id": m.extension_id,
                    "caller": m.caller,
                    "received_at": m.received_at,
                }),
            },
        )
        .await?;
        tx.changed(Change::Voicemail {
            extension: m.extension_id,
        });
        tx.commit().await?;
        Ok(audio)
    }

    /// New and heard messages of a box (the system: for a phone's lamp).
    pub async fn counts(&self, by: &Principal, extension: ExtensionId) -> Result<Counts> {
        by.may_read(Level::Operator)?;
        let row = sqlx::query(
            "SELECT COALESCE(SUM(CASE WHEN heard_at IS NULL THEN 1 ELSE 0 END), 0) AS new, \
             COALESCE(SUM(CASE WHEN heard_at IS NULL THEN 0 ELSE 1 END), 0) AS heard \
             FROM voicemail_messages WHERE extension_id = $1",
        )
        .bind(extension.0)
        .fetch_one(self.0.pool())
        .await?;
        Ok(Counts {
            new: count(&row, "new")?,
            heard: count(&row, "heard")?,
        })
    }

    /// Claims new messages whose box mails them and that no node mailed
    /// yet (or whose claim ran out), for one node to send.
    pub async fn claim_unmailed(&self, by: &Principal, now: Millis) -> Result<Vec<Unmailed>> {
        by.may_write(Level::Operator)?;
        let mut tx = self.0.begin().await?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS}, b.email FROM voicemail_messages m \
             JOIN voicemail_boxes b ON b.extension_id = m.extension_id \
             WHERE m.notified_at IS NULL AND b.email IS NOT NULL \
             AND (m.notify_claimed_at IS NULL OR m.notify_claimed_at < $1) \
             ORDER BY m.id LIMIT 50"
        ))
        .bind(now - NOTIFY_LEASE_MS)
        .fetch_all(tx.conn())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let (message, audio) = message_from(row)?;
            // The claim holds only if nobody took it since the read: under
            // READ COMMITTED another node may have read the same rows.
            let claimed = sqlx::query(
                "UPDATE voicemail_messages SET notify_claimed_at = $2 WHERE id = $1 \
                 AND notified_at IS NULL \
                 AND (notify_claimed_at IS NULL OR notify_claimed_at < $3)",
            )
            .bind(message.id)
            .bind(now)
            .bind(now - NOTIFY_LEASE_MS)
            .execute(tx.conn())
            .await?;
            if claimed.rows_affected() != 1 {
                continue;
            }
            out.push(Unmailed {
                message,
                audio,
                email: row.try_get("email")?,
            });
        }
        tx.commit().await?;
        Ok(out)
    }

    /// A claimed message was mailed.
    pub async fn mailed(&self, by: &Principal, id: i64, now: Millis) -> Result<()> {
        by.may_write(Level::Operator)?;
        sqlx::query("UPDATE voicemail_messages SET notified_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now)
            .execute(self.0.pool())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TestDb, TwoTenants};

    fn new_message(t: &TwoTenants, audio: &str, at: Millis) -> NewMessage {
        NewMessage {
            reseller: t.reseller_x.id,
            customer: t.customer_a.id,
            extension: t.extension_a.id,
            caller: "102".into(),
            call_id: format!("call-{audio}"),
            duration_ms: 4_200,
            audio: audio.into(),
            received_at: at,
        }
    }

    async fn messages_are_kept_listed_heard_and_deleted_in_their_box(db: TestDb) {
        let t = TwoTenants::create(&db.store).await;
        let vm = db.store.voicemail();
        let sys = Principal::system();
        let first = vm
            .add(&sys, &new_message(&t, "voicemail/a/1.wav", 1_000))
            .await
            .expect("add")
            .expect("stored");
        vm.add(&sys, &new_message(&t, "voicemail/a/2.wav", 2_000))
            .await
            .expect("add");
        let list = vm
            .list(&t.customer_a_user, t.extension_a.id)
            .await
            .expect("the box's own user lists it");
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].received_at, 2_000, "newest first");
        assert_eq!(
            vm.counts(&sys, t.extension_a.id).await.expect("counts"),
            Counts { new: 2, heard: 0 }
        );
        let heard = vm
            .set_heard(&t.customer_a_admin, first, true, 5_000)
            .await
            .expect("heard");
        assert_eq!(heard.heard_at, Some(5_000));
        assert_eq!(
            vm.counts(&sys, t.extension_a.id).await.expect("counts"),
            Counts { new: 1, heard: 1 }
        );
        // The other tenant sees nothing of it: not found, not forbidden.
        assert!(matches!(
            vm.get(&t.customer_b_admin, first).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            vm.delete(&t.reseller_y_admin, first).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            vm.list(&t.customer_b_admin, t.extension_a.id).await,
            Err(StoreError::NotFound)
        ));
        let audio = vm.delete(&t.customer_a_user, first).await.expect("delete");
        assert_eq!(audio, "voicemail/a/1.wav");
        assert_eq!(
            vm.list(&t.reseller_x_admin, t.extension_a.id)
                .await
                .expect("list")
                .len(),
            1
        );
    }

    async fn a_full_box_takes_no_more_and_settings_are_checked(db: TestDb) {
        let t = TwoTenants::create(&db.store).await;
        let vm = db.store.voicemail();
        let sys = Principal::system();
        let set = |max: u32| BoxSettings {
            max_messages: Some(max),
            ..BoxSettings::default()
        };
        // A user may not change the limits; the customer's admin may.
        assert!(matches!(
            vm.set_box(&t.customer_a_user, t.extension_a.id, &set(1))
                .await,
            Err(StoreError::Forbidden(_))
        ));
        vm.set_box(&t.customer_a_admin, t.extension_a.id, &set(1))
            .await
            .expect("admin sets it");
        assert!(vm
            .add(&sys, &new_message(&t, "voicemail/a/1.wav", 1))
            .await
            .expect("add")
            .is_some());
        assert_eq!(
            vm.add(&sys, &new_message(&t, "voicemail/a/2.wav", 2))
                .await
                .expect("add"),
            None,
            "the box is full"
        );
        let bad = BoxSettings {
            email: Some("not an address".into()),
            max_message_s: Some(5),
            max_messages: None,
            pin: Some("12a4".into()),
        };
        match vm
            .set_box(&t.customer_a_admin, t.extension_a.id, &bad)
            .await
        {
            Err(StoreError::Invalid(fields)) => assert_eq!(fields.len(), 3),
            other => panic!("{other:?}"),
        }
        // The user sets where its own messages are mailed.
        let mine = BoxSettings {
            email: Some("ann@acme.test".into()),
            ..BoxSettings::default()
        };
        let b = vm
            .set_box(&t.customer_a_user, t.extension_a.id, &mine)
            .await
            .expect("user sets its e-mail");
        assert_eq!(b.email.as_deref(), Some("ann@acme.test"));
        assert_eq!(b.max_messages, 1);
        assert!(matches!(
            vm.set_box(&t.customer_b_admin, t.extension_a.id, &mine)
                .await,
            Err(StoreError::NotFound)
        ));
    }

    async fn each_new_message_is_claimed_for_mail_once(db: TestDb) {
        let t = TwoTenants::create(&db.store).await;
        let vm = db.store.voicemail();
        let sys = Principal::system();
        let id = vm
            .add(&sys, &new_message(&t, "voicemail/a/1.wav", 1))
            .await
            .expect("add")
            .expect("stored");
        assert!(
            vm.claim_unmailed(&sys, 10).await.expect("claim").is_empty(),
            "a box without an e-mail address mails nothing"
        );
        let mine = BoxSettings {
            email: Some("ann@acme.test".into()),
            ..BoxSettings::default()
        };
        vm.set_box(&t.customer_a_admin, t.extension_a.id, &mine)
            .await
            .expect("set");
        let claimed = vm.claim_unmailed(&sys, 20).await.expect("claim");
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].email, "ann@acme.test");
        assert_eq!(claimed[0].audio, "voicemail/a/1.wav");
        assert!(
            vm.claim_unmailed(&sys, 30).await.expect("claim").is_empty(),
            "claimed by another node"
        );
        // A claim not confirmed runs out.
        assert_eq!(
            vm.claim_unmailed(&sys, 20 + NOTIFY_LEASE_MS + 1)
                .await
                .expect("claim")
                .len(),
            1
        );
        vm.mailed(&sys, id, 40).await.expect("mailed");
        assert!(vm
            .claim_unmailed(&sys, 20 + 2 * NOTIFY_LEASE_MS + 2)
            .await
            .expect("claim")
            .is_empty());
    }

    async fn a_pin_opens_its_box_from_any_phone_of_the_customer(db: TestDb) {
        let t = TwoTenants::create(&db.store).await;
        let vm = db.store.voicemail();
        let sys = Principal::system();
        let ext = &t.extension_a;
        let open = |customer: CustomerId, number: String, pin: &'static str| {
            let vm = db.store.voicemail();
            async move {
                vm.open_with_pin(&Principal::system(), customer, &number, pin)
                    .await
                    .expect("open")
            }
        };
        assert_eq!(
            open(t.customer_a.id, ext.number.clone(), "1234").await,
            None,
            "a box without a PIN opens to nobody"
        );
        let pin = |p: &str| BoxSettings {
            pin: Some(p.into()),
            ..BoxSettings::default()
        };
        let b = vm
            .set_box(&t.customer_a_user, ext.id, &pin("1234"))
            .await
            .expect("its user sets the PIN");
        assert!(b.has_pin);
        assert!(vm.get_box(&sys, ext.id).await.expect("box").has_pin);
        assert_eq!(
            open(t.customer_a.id, ext.number.clone(), "1234").await,
            Some(ext.id)
        );
        assert_eq!(
            open(t.customer_a.id, ext.number.clone(), "4321").await,
            None
        );
        assert_eq!(
            open(t.customer_b.id, ext.number.clone(), "1234").await,
            None,
            "another customer's phones do not reach it"
        );
        // Other settings keep the PIN; an empty one removes it.
        let b = vm
            .set_box(&t.customer_a_user, ext.id, &BoxSettings::default())
            .await
            .expect("set");
        assert!(b.has_pin);
        let b = vm
            .set_box(&t.customer_a_user, ext.id, &pin(""))
            .await
            .expect("removed");
        assert!(!b.has_pin);
        assert_eq!(
            open(t.customer_a.id, ext.number.clone(), "1234").await,
            None
        );
        for bad in ["123", "12345678901", "12 4", "١٢٣٤"] {
            assert!(
                matches!(
                    vm.set_box(&t.customer_a_user, ext.id, &pin(bad)).await,
                    Err(StoreError::Invalid(_))
                ),
                "{bad}"
            );
        }
        assert!(vm
            .open_with_pin(&t.customer_a_admin, t.customer_a.id, &ext.number, "1234")
            .await
            .is_err());
    }

    crate::both_engines!(
        a_pin_opens_its_box_from_any_phone_of_the_customer,
        messages_are_kept_listed_heard_and_deleted_in_their_box,
        a_full_box_takes_no_more_and_settings_are_checked,
        each_new_message_is_claimed_for_mail_once,
    );
}
