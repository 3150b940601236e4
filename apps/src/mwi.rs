//! Message waiting (RFC 3842): the lamp of a voicemail box on its phones.
//! Phones that subscribed (see `subscriptions`) are told in their
//! subscriptions; phones that do not subscribe, as many desk phones do
//! not, get the same NOTIFY unsolicited, addressed to the extension through
//! the proxy, which rings its registered phones but those that subscribed.

use std::sync::Arc;

use pbx_sip_message::HeaderName;
use pbx_store::{ExtensionId, Principal};

use crate::dialog::{new_branch, new_token};
use crate::server::{send_reliably, Inner};
use crate::subscriptions::{notify_all, Package, Snapshot};

/// The body a phone reads: whether messages wait, and how many.
pub fn summary(account: &str, new: u32, heard: u32) -> String {
    format!(
        "Messages-Waiting: {}\r\nMessage-Account: {account}\r\nVoice-Message: {new}/{heard} (0/0)\r\n",
        if new > 0 { "yes" } else { "no" }
    )
}

/// The extension's address and the summary of its box now.
pub(crate) async fn box_state(inner: &Inner, extension: ExtensionId) -> Option<(String, String)> {
    let sys = Principal::system();
    let ext = inner.store.extensions().get(&sys, extension).await.ok()?;
    let (Ok(customer), Ok(counts)) = (
        inner.store.customers().get(&sys, ext.customer_id).await,
        inner.store.voicemail().counts(&sys, extension).await,
    ) else {
        return None;
    };
    let aor = format!("sip:{}@{}", ext.number, customer.sip_domain);
    let body = summary(&aor, counts.new, counts.heard);
    Some((aor, body))
}

/// Tells every phone of `extension` the state of its box: in their
/// subscriptions, and unsolicited to the others.
pub(crate) async fn notify(inner: &Arc<Inner>, extension: ExtensionId) {
    let Some((aor, body)) = box_state(inner, extension).await else {
        return;
    };
    let state = Snapshot::Summary(body.clone());
    let subscribed = notify_all(inner, Package::MessageSummary, extension, state).await;
    let Some(proxy) = inner.proxy() else {
        return;
    };
    let mut text = format!(
        "NOTIFY {aor} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch}\r\nMax-Forwards: 70\r\n\
From: <{aor}>;tag={tag}\r\nTo: <{aor}>\r\nCall-ID: {call}@mwi\r\nCSeq: 1 NOTIFY\r\n\
Event: message-summary\r\nSubscription-State: active;expires=3600\r\n\
Content-Type: application/simple-message-summary\r\n",
        local = inner.local,
        branch = new_branch(),
        tag = new_token(),
        call = new_token(),
    );
    for contact in &subscribed {
        let name = HeaderName::LampSubscribed;
        text.push_str(&format!("{}: <{contact}>\r\n", name.as_str()));
    }
    text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    tracing::debug!(
        extension = extension.0,
        subscribed = subscribed.len(),
        "message waiting notified"
    );
    send_reliably(inner, text.into(), proxy).await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_summary_says_what_waits() {
        assert_eq!(
            super::summary("sip:101@a.test", 2, 1),
            "Messages-Waiting: yes\r\nMessage-Account: sip:101@a.test\r\nVoice-Message: 2/1 (0/0)\r\n"
        );
        assert!(super::summary("sip:101@a.test", 0, 3).starts_with("Messages-Waiting: no"));
    }
}
