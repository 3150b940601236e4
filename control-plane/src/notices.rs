//! E-mail that the SIP side's work calls for, in the reseller's brand: when
//! an account comes under a password guess from many addresses (and is
//! protected), its customer's administrators and its reseller's are told,
//! once, each in their own language, with what to do; and each new
//! voicemail message goes, once, with its recording, to the address its box
//! names, in the customer's language.
//!
//! Any number of control-plane nodes may run this: each protection is
//! claimed by one of them in the store before its mail goes out.

use std::sync::Arc;
use std::time::Duration;

use pbx_store::abuse::AccountProtection;
use pbx_store::audio_files::AudioFiles;
use pbx_store::logins::Role;
use pbx_store::{Principal, Scope, Store};
use tokio::sync::watch;

use crate::console::i18n::Format;
use crate::console::Console;
use crate::mail::Letter;

const EVERY: Duration = Duration::from_secs(5);

/// Sends what is due until `stop` turns true (nothing without a mail relay).
pub async fn run(
    store: Store,
    console: Arc<Console>,
    audio: AudioFiles,
    mut stop: watch::Receiver<bool>,
) {
    if console.mailer.is_none() {
        return;
    }
    loop {
        match send_due(&store, &console, pbx_store::now_ms()).await {
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "security notices not sent; will retry"),
        }
        match send_voicemail_due(&store, &console, &audio, pbx_store::now_ms()).await {
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "voicemail mails not sent; will retry"),
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Mails every protection not told yet; returns how many letters went out.
pub async fn send_due(
    store: &Store,
    console: &Console,
    now: pbx_store::Millis,
) -> pbx_store::Result<usize> {
    let Some(mailer) = console.mailer.as_ref() else {
        return Ok(0);
    };
    let system = Principal::system();
    let mut sent = 0;
    for p in store
        .account_protections()
        .claim_unnotified(&system, now)
        .await?
    {
        let letters = letters(store, console, &p).await?;
        let mut failed = false;
        for (to, sender, host, subject, text) in &letters {
            let letter = Letter {
                to,
                sender_name: sender,
                console_host: host,
                subject,
                text: text.clone(),
                attachment: None,
            };
            match mailer.send(letter).await {
                Ok(()) => sent += 1,
                Err(e) => {
                    // The claim runs out and another try comes; a letter
                    // already sent may then go twice, which beats none.
                    tracing::warn!(error = %e, protection = p.id, "security notice not sent");
                    failed = true;
                }
            }
        }
        if !failed {
            store
                .account_protections()
                .notified(&system, p.id, now)
                .await?;
        }
    }
    Ok(sent)
}

/// (to, sender name, console host, subject, text) of each letter one
/// protection calls for.
async fn letters(
    store: &Store,
    console: &Console,
    p: &AccountProtection,
) -> pbx_store::Result<Vec<(String, String, String, String, String)>> {
    let system = Principal::system();
    let reseller = store.resellers().get(&system, p.reseller_id).await?;
    let customer = store.customers().get(&system, p.customer_id).await?;
    let product = reseller.brand.product_name.clone();
    let sender = reseller
        .brand
        .email_sender_name
        .clone()
        .unwrap_or_else(|| product.clone());
    let Some(host) = reseller.console_hosts.first().cloned() else {
        // No console host: no address the brand's mail could come from.
        return Ok(Vec::new());
    };
    let tz = customer.time_zone.parse().unwrap_or(chrono_tz::Tz::UTC);
    let of_customer = Principal::new(
        Scope::Customer {
            reseller: reseller.id,
            customer: customer.id,
        },
        pbx_store::Actor::System,
    );
    let of_reseller = Principal::new(
        Scope::Reseller {
            reseller: reseller.id,
        },
        pbx_store::Actor::System,
    );
    let mut recipients: Vec<_> = store
        .logins()
        .list(&of_customer)
        .await?
        .into_iter()
        .filter(|l| l.role == Role::CustomerAdmin)
        .collect();
    recipients.extend(
        store
            .logins()
            .list(&of_reseller)
            .await?
            .into_iter()
            .filter(|l| l.role == Role::ResellerAdmin),
    );
    let link = format!("https://{host}/security");
    Ok(recipients
        .into_iter()
        .filter(|l| !l.disabled)
        .map(|login| {
            let lang = console.catalog.choose(
                login.language.as_deref(),
                None,
                None,
                &reseller.default_language,
            );
            let texts = console.catalog.texts(lang);
            let fill = |key: &str| {
                texts
                    .get(key)
                    .replace("{product}", &product)
                    .replace("{customer}", &customer.name)
                    .replace("{user}", &p.sip_user)
                    .replace("{failures}", &p.failures.to_string())
                    .replace("{sources}", &p.sources.to_string())
                    .replace(
                        "{until}",
                        &Format::for_language(lang).date_time(p.until, tz),
                    )
                    .replace("{link}", &link)
            };
            (
                login.email,
                sender.clone(),
                host.clone(),
                fill("mail_protected_subject"),
                fill("mail_protected_body"),
            )
        })
        .collect())
}

/// Mails each new voicemail message whose box names an address, with its
/// recording, once; returns how many went out.
pub async fn send_voicemail_due(
    store: &Store,
    console: &Console,
    audio: &AudioFiles,
    now: pbx_store::Millis,
) -> pbx_store::Result<usize> {
    let Some(mailer) = console.mailer.as_ref() else {
        return Ok(0);
    };
    let mut sent = 0;
    for due in store
        .voicemail()
        .claim_unmailed(&Principal::system(), now)
        .await?
    {
        let id = due.message.id;
        // One message that cannot be mailed does not hold up the others.
        match mail_voicemail(store, console, mailer, audio, due, now).await {
            Ok(true) => sent += 1,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, message = id, "voicemail mail not sent"),
        }
    }
    Ok(sent)
}

/// The largest recording attached; a longer one is told without it (mail
/// relays commonly refuse messages over 10 MB, and base64 adds a third).
const LARGEST_ATTACHMENT: usize = 5 * 1024 * 1024;

/// Mails one claimed message; true when it went out. A failed send keeps
/// the message unmailed: its claim runs out and the next try comes.
async fn mail_voicemail(
    store: &Store,
    console: &Console,
    mailer: &crate::mail::Mailer,
    audio: &AudioFiles,
    due: pbx_store::voicemail::Unmailed,
    now: pbx_store::Millis,
) -> pbx_store::Result<bool> {
    let system = Principal::system();
    let m = &due.message;
    let reseller = store.resellers().get(&system, m.reseller_id).await?;
    let customer = store.customers().get(&system, m.customer_id).await?;
    let extension = store.extensions().get(&system, m.extension_id).await?;
    let Some(host) = reseller.console_hosts.first().cloned() else {
        // No console host: no address the brand's mail could come from.
        store.voicemail().mailed(&system, m.id, now).await?;
        return Ok(false);
    };
    let product = reseller.brand.product_name.clone();
    let sender = reseller
        .brand
        .email_sender_name
        .clone()
        .unwrap_or_else(|| product.clone());
    let lang = console.catalog.choose(None, None, None, &customer.language);
    let texts = console.catalog.texts(lang);
    let tz = customer.time_zone.parse().unwrap_or(chrono_tz::Tz::UTC);
    let fill = |key: &str| {
        texts
            .get(key)
            .replace("{product}", &product)
            .replace("{caller}", &m.caller)
            .replace("{extension}", &extension.number)
            .replace("{seconds}", &(m.duration_ms / 1000).to_string())
            .replace(
                "{at}",
                &Format::for_language(lang).date_time(m.received_at, tz),
            )
            .replace("{link}", &format!("https://{host}/"))
    };
    let recording = {
        let (audio, key) = (audio.clone(), due.audio.clone());
        tokio::task::spawn_blocking(move || audio.read(&key)).await
    };
    // A message whose recording is gone, or too large to mail, is still
    // told, without it.
    let attachment = match recording {
        Ok(Ok(bytes)) if bytes.len() <= LARGEST_ATTACHMENT => {
            Some((format!("voicemail-{}.wav", m.id), "audio/wav", bytes))
        }
        _ => None,
    };
    let subject = fill("mail_voicemail_subject");
    let letter = Letter {
        to: &due.email,
        sender_name: &sender,
        console_host: &host,
        subject: &subject,
        text: fill("mail_voicemail_body"),
        attachment,
    };
    match mailer.send(letter).await {
        Ok(()) => {
            store.voicemail().mailed(&system, m.id, now).await?;
            Ok(true)
        }
        Err(e) => {
            tracing::warn!(error = %e, message = m.id, "voicemail mail not sent; will retry");
            Ok(false)
        }
    }
}
