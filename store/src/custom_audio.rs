//! Audio a customer uploads in place of the platform's: an extension's
//! voicemail greeting and the customer's music on hold. The control plane
//! converts an upload to 8 kHz mono WAV and writes it to the
//! [`AudioFiles`](crate::audio_files) store; this module keeps which key is
//! in use (and hands back the one replaced, for its file to go). An
//! extension's own user may change its greeting; music is the customer's
//! administrators' (and those above them).

use sqlx::Row;

use crate::audit::{self, Event};
use crate::changes::Change;
use crate::principal::Level;
use crate::{CustomerId, ExtensionId, Principal, Result, Store, StoreError};

pub struct CustomAudio<'s>(pub(crate) &'s Store);

impl CustomAudio<'_> {
    /// The key of an extension's uploaded greeting, if it has one.
    pub async fn greeting(&self, by: &Principal, extension: ExtensionId) -> Result<Option<String>> {
        let ext = self.0.extensions().get_live(by, extension).await?;
        let row = sqlx::query("SELECT greeting_audio FROM voicemail_boxes WHERE extension_id = $1")
            .bind(ext.id.0)
            .fetch_optional(self.0.pool())
            .await?;
        Ok(match row {
            Some(row) => row.try_get("greeting_audio")?,
            None => None,
        })
    }

    /// Sets (or with None removes) an extension's greeting; returns the key
    /// it replaced.
    pub async fn set_greeting(
        &self,
        by: &Principal,
        extension: ExtensionId,
        audio: Option<&str>,
    ) -> Result<Option<String>> {
        if by.read_only {
            return Err(StoreError::Forbidden("this credential is read-only"));
        }
        let ext = self.0.extensions().get_live(by, extension).await?;
        let mut tx = self.0.begin().await?;
        // Read in the transaction: of two uploads at once, each hands back
        // the key it really replaced.
        let before =
            match sqlx::query("SELECT greeting_audio FROM voicemail_boxes WHERE extension_id = $1")
                .bind(ext.id.0)
                .fetch_optional(tx.conn())
                .await?
            {
                Some(row) => row.try_get("greeting_audio")?,
                None => None,
            };
        sqlx::query(
            "INSERT INTO voicemail_boxes (extension_id, customer_id, greeting_audio) VALUES ($1, $2, $3) \
             ON CONFLICT (extension_id) DO UPDATE SET greeting_audio = $3, \
             version = voicemail_boxes.version + 1",
        )
        .bind(ext.id.0)
        .bind(ext.customer_id.0)
        .bind(audio)
        .execute(tx.conn())
        .await?;
        audit::record(
            &mut tx,
            by,
            Event {
                action: if audio.is_some() {
                    "upload_greeting"
                } else {
                    "remove_greeting"
                },
                object_type: "extension",
                object_id: Some(ext.id.0),
                reseller: Some(ext.reseller_id),
                customer: Some(ext.customer_id),
                details: serde_json::json!({}),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(before)
    }

    /// The key of a customer's uploaded music on hold, if it has one.
    pub async fn music(&self, by: &Principal, customer: CustomerId) -> Result<Option<String>> {
        self.0.customers().get(by, customer).await?;
        let row = sqlx::query("SELECT music_audio FROM customers WHERE id = $1")
            .bind(customer.0)
            .fetch_one(self.0.pool())
            .await?;
        Ok(row.try_get("music_audio")?)
    }

    /// Sets (or with None removes) a customer's music on hold; returns the
    /// key it replaced. Every SIP node hears of it (its directory).
    pub async fn set_music(
        &self,
        by: &Principal,
        customer: CustomerId,
        audio: Option<&str>,
    ) -> Result<Option<String>> {
        by.may_write(Level::Customer)?;
        let owner = self.0.customers().get(by, customer).await?;
        let mut tx = self.0.begin().await?;
        let before: Option<String> = sqlx::query("SELECT music_audio FROM customers WHERE id = $1")
            .bind(customer.0)
            .fetch_one(tx.conn())
            .await?
            .try_get("music_audio")?;
        sqlx::query("UPDATE customers SET music_audio = $1 WHERE id = $2")
            .bind(audio)
            .bind(customer.0)
            .execute(tx.conn())
            .await?;
        audit::record(
            &mut tx,
            by,
            Event {
                action: if audio.is_some() {
                    "upload_music_on_hold"
                } else {
                    "remove_music_on_hold"
                },
                object_type: "customer",
                object_id: Some(customer.0),
                reseller: Some(owner.reseller_id),
                customer: Some(customer),
                details: serde_json::json!({}),
            },
        )
        .await?;
        tx.changed(Change::Customer { customer });
        tx.commit().await?;
        Ok(before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TestDb, TwoTenants};

    async fn greetings_and_music_are_kept_per_tenant(db: TestDb) {
        let t = TwoTenants::create(&db.store).await;
        let audio = db.store.custom_audio();
        let sys = Principal::system();
        let (a, ext) = (t.customer_a.id, t.extension_a.id);
        // The extension's own user sets its greeting; the key replaced comes back.
        assert_eq!(audio.greeting(&t.customer_a_user, ext).await.unwrap(), None);
        let old = audio
            .set_greeting(&t.customer_a_user, ext, Some("greetings/1/a.wav"))
            .await
            .unwrap();
        assert_eq!(old, None);
        let old = audio
            .set_greeting(&t.customer_a_admin, ext, Some("greetings/1/b.wav"))
            .await
            .unwrap();
        assert_eq!(old.as_deref(), Some("greetings/1/a.wav"));
        // The box's other settings are kept.
        let b = db.store.voicemail().get_box(&sys, ext).await.unwrap();
        assert_eq!(b.max_messages, crate::voicemail::DEFAULT_MAX_MESSAGES);
        assert!(matches!(
            audio.set_greeting(&t.customer_b_admin, ext, None).await,
            Err(StoreError::NotFound)
        ));
        // Music: the admins', in the SIP directory.
        assert!(matches!(
            audio
                .set_music(&t.customer_a_user, a, Some("music/1/m.wav"))
                .await,
            Err(StoreError::Forbidden(_))
        ));
        assert!(matches!(
            audio
                .set_music(&t.reseller_y_admin, a, Some("music/1/m.wav"))
                .await,
            Err(StoreError::NotFound)
        ));
        audio
            .set_music(&t.customer_a_admin, a, Some("music/1/m.wav"))
            .await
            .unwrap();
        let dir = db
            .store
            .directory()
            .customer(&sys, a)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(dir.music_audio.as_deref(), Some("music/1/m.wav"));
        assert_eq!(
            audio
                .set_music(&t.customer_a_admin, a, None)
                .await
                .unwrap()
                .as_deref(),
            Some("music/1/m.wav")
        );
        assert_eq!(audio.music(&sys, a).await.unwrap(), None);
    }

    crate::both_engines!(greetings_and_music_are_kept_per_tenant);
}
