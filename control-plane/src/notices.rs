//! E-mail that the SIP side's security decisions call for: when an account
//! comes under a password guess from many addresses (and is protected), its
//! customer's administrators and its reseller's are told, once, in the
//! reseller's brand and each in their own language, with what to do.
//!
//! Any number of control-plane nodes may run this: each protection is
//! claimed by one of them in the store before its mail goes out.

use std::sync::Arc;
use std::time::Duration;

use pbx_store::abuse::AccountProtection;
use pbx_store::logins::Role;
use pbx_store::{Principal, Scope, Store};
use tokio::sync::watch;

use crate::console::i18n::Format;
use crate::console::Console;
use crate::mail::Letter;

const EVERY: Duration = Duration::from_secs(5);

/// Sends what is due until `stop` turns true (nothing without a mail relay).
pub async fn run(store: Store, console: Arc<Console>, mut stop: watch::Receiver<bool>) {
    if console.mailer.is_none() {
        return;
    }
    loop {
        match send_due(&store, &console, pbx_store::now_ms()).await {
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "security notices not sent; will retry"),
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
