//! Message waiting (RFC 3842): a `message-summary` NOTIFY to every phone of
//! an extension whenever its box changes, sent through the proxy (which
//! knows where the phones are and trusts this server). Phones light their
//! lamp from it without having subscribed, as desk phones do.

use std::sync::Arc;

use pbx_store::{ExtensionId, Principal};

use crate::dialog::{new_branch, new_token};
use crate::server::{send_reliably, Inner};

/// The body a phone reads: whether messages wait, and how many.
pub fn summary(account: &str, new: u32, heard: u32) -> String {
    format!(
        "Messages-Waiting: {}\r\nMessage-Account: {account}\r\nVoice-Message: {new}/{heard} (0/0)\r\n",
        if new > 0 { "yes" } else { "no" }
    )
}

pub(crate) async fn notify(inner: &Arc<Inner>, extension: ExtensionId) {
    let sys = Principal::system();
    let (Some(proxy), Ok(ext)) = (
        inner.proxy(),
        inner.store.extensions().get(&sys, extension).await,
    ) else {
        return;
    };
    let (Ok(customer), Ok(counts)) = (
        inner.store.customers().get(&sys, ext.customer_id).await,
        inner.store.voicemail().counts(&sys, extension).await,
    ) else {
        return;
    };
    let aor = format!("sip:{}@{}", ext.number, customer.sip_domain);
    let body = summary(&aor, counts.new, counts.heard);
    let text = format!(
        "NOTIFY {aor} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch}\r\nMax-Forwards: 70\r\n\
From: <{aor}>;tag={tag}\r\nTo: <{aor}>\r\nCall-ID: {call}@mwi\r\nCSeq: 1 NOTIFY\r\n\
Event: message-summary\r\nSubscription-State: active;expires=3600\r\n\
Content-Type: application/simple-message-summary\r\nContent-Length: {len}\r\n\r\n{body}",
        local = inner.local,
        branch = new_branch(),
        tag = new_token(),
        call = new_token(),
        len = body.len(),
    );
    tracing::debug!(
        extension = extension.0,
        new = counts.new,
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
