//! Listening to a box from a phone: one's own (`*97`), or any box of the
//! customer with its number and PIN (`*98`: three tries per call; a caller
//! who keyed ten wrong ones within 15 minutes, or a box that got ten wrong
//! ones from anybody, is refused unchecked until they have passed: many
//! phones guessing together get no further than one). Then: how many new
//! messages,
//! then each message (new ones first, oldest first; then those heard,
//! newest first) followed by a menu: `1` again, `7` delete, `9` keep and
//! go on (also when the menu goes unanswered). A key pressed while a
//! message plays acts at once. A message gone on from counts as heard; the
//! lamps follow through the store's change feed.

use std::time::Duration;

use pbx_media::audio::Clip;
use pbx_store::voicemail::VoicemailMessage;
use pbx_store::{CustomerId, ExtensionId, Principal};

use crate::media::Ended;
use crate::prompts::Prompts;
use crate::Run;

/// How long the menu waits for a key before it is said again, and how
/// often it is said before the next message.
const MENU_WAIT: Duration = Duration::from_secs(5);
const MENU_TRIES: usize = 2;

/// The longest recording played (a sanity bound on what a file holds).
const LONGEST_S: u32 = 3600;

/// What the caller chose for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choice {
    Again,
    Delete,
    Next,
    Hangup,
}

fn choice_of(key: char) -> Option<Choice> {
    match key {
        '1' => Some(Choice::Again),
        '7' => Some(Choice::Delete),
        '9' | '#' => Some(Choice::Next),
        _ => None,
    }
}

/// The order messages are heard in: new ones oldest first, then heard
/// ones newest first.
fn in_order(mut messages: Vec<VoicemailMessage>) -> Vec<VoicemailMessage> {
    messages.sort_by_key(|m| match m.heard_at {
        None => (0, m.received_at, m.id),
        Some(_) => (1, -m.received_at, -m.id),
    });
    messages
}

/// Tries at the number and PIN per call.
const LOGIN_TRIES: usize = 3;

/// Who keyed wrong mailbox PINs lately, by customer and caller.
pub type Logins = crate::keys::Guesses<(CustomerId, String)>;

/// `*98`: asks for a box of `customer` and its PIN, then runs a listening
/// session on it; true when the caller hung up.
pub(crate) async fn login(mut run: Run, customer: CustomerId) -> bool {
    let store = run.inner.store.clone();
    let prompts = Prompts::of_customer(&store, customer).await;
    for _ in 0..LOGIN_TRIES {
        let Some(number) = crate::keys::entry(&mut run, prompts.box_number()).await else {
            return true;
        };
        let Some(pin) = crate::keys::entry(&mut run, prompts.box_pin()).await else {
            return true;
        };
        let who = (customer, run.caller.clone());
        let which = (customer, format!("box {number}"));
        let logins = &run.inner.logins;
        if logins.locked_out(&who) || logins.locked_out(&which) {
            tracing::warn!(customer = customer.0, caller = %run.caller, call_id = %run.call_id,
                "voicemail PIN guessing: refused unchecked");
        } else {
            let opened = store
                .voicemail()
                .open_with_pin(&Principal::system(), customer, &number, &pin)
                .await;
            match opened {
                Ok(Some(extension)) => {
                    tracing::info!(customer = customer.0, extension = extension.0,
                        call_id = %run.call_id, "voicemail box opened with its PIN");
                    return listen(run, extension).await;
                }
                Ok(None) => {
                    run.inner.logins.wrong(who);
                    run.inner.logins.wrong(which);
                }
                Err(e) => {
                    tracing::warn!(error = %e, customer = customer.0, call_id = %run.call_id,
                        "voicemail boxes not readable");
                    return run
                        .media
                        .play(prompts.unavailable(), &mut run.events, false)
                        .await
                        == Ended::Hangup;
                }
            }
        }
        if run
            .media
            .play(prompts.box_wrong(), &mut run.events, false)
            .await
            == Ended::Hangup
        {
            return true;
        }
    }
    false
}

/// Runs a listening session; true when the caller hung up.
pub(crate) async fn listen(mut run: Run, extension: ExtensionId) -> bool {
    let store = run.inner.store.clone();
    let sys = Principal::system();
    let Some((_, prompts)) = Prompts::of_extension(&store, extension).await else {
        return false;
    };
    let messages = match store.voicemail().list(&sys, extension).await {
        Ok(list) => in_order(list),
        Err(e) => {
            tracing::warn!(error = %e, extension = extension.0, call_id = %run.call_id,
                "voicemail box not readable");
            return run
                .media
                .play(prompts.unavailable(), &mut run.events, false)
                .await
                == Ended::Hangup;
        }
    };
    let new = messages.iter().filter(|m| m.heard_at.is_none()).count();
    for clip in prompts.new_messages(new) {
        match run.media.play(clip, &mut run.events, true).await {
            Ended::Hangup => return true,
            // A key skips the count.
            Ended::Key(_) => break,
            Ended::Done => {}
        }
    }
    for message in &messages {
        if hear(&mut run, prompts, message).await == Choice::Hangup {
            return true;
        }
    }
    run.media
        .play(prompts.no_more(), &mut run.events, false)
        .await
        == Ended::Hangup
}

/// One message: played, then the menu until a choice (or its tries run out).
async fn hear(run: &mut Run, prompts: &Prompts, message: &VoicemailMessage) -> Choice {
    let recording = recording_of(run, message).await;
    loop {
        let played = run
            .media
            .play(recording.samples(), &mut run.events, true)
            .await;
        let mut choice = match played {
            Ended::Hangup => return Choice::Hangup,
            Ended::Key(k) => choice_of(k),
            Ended::Done => None,
        };
        let mut tries = 0;
        while choice.is_none() && tries < MENU_TRIES {
            tries += 1;
            choice = match run.media.play(prompts.menu(), &mut run.events, true).await {
                Ended::Hangup => return Choice::Hangup,
                Ended::Key(k) => choice_of(k),
                Ended::Done => match run.media.wait_key(MENU_WAIT, &mut run.events).await {
                    Ended::Hangup => return Choice::Hangup,
                    Ended::Key(k) => choice_of(k),
                    Ended::Done => None,
                },
            };
        }
        match choice.unwrap_or(Choice::Next) {
            Choice::Again => continue,
            Choice::Delete => {
                delete(run, message).await;
                if run
                    .media
                    .play(prompts.deleted(), &mut run.events, true)
                    .await
                    == Ended::Hangup
                {
                    return Choice::Hangup;
                }
                return Choice::Delete;
            }
            Choice::Next => {
                mark_heard(run, message).await;
                return Choice::Next;
            }
            Choice::Hangup => return Choice::Hangup,
        }
    }
}

/// A message's audio; silence when its file is gone or unreadable (the
/// caller can still delete it).
async fn recording_of(run: &Run, message: &VoicemailMessage) -> Clip {
    let store = run.inner.store.clone();
    let files = run.inner.config.audio.clone();
    let key = match store
        .voicemail()
        .get(&Principal::system(), message.id)
        .await
    {
        Ok((_, key)) => key,
        Err(e) => {
            tracing::warn!(error = %e, message = message.id, "voicemail message not readable");
            return Clip::new(Vec::new());
        }
    };
    let read = tokio::task::spawn_blocking(move || files.read(&key)).await;
    match read {
        Ok(Ok(bytes)) => Clip::from_wav(&bytes, LONGEST_S).unwrap_or_else(|e| {
            tracing::warn!(error = %e, message = message.id, "voicemail recording unreadable");
            Clip::new(Vec::new())
        }),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, message = message.id, "voicemail recording missing");
            Clip::new(Vec::new())
        }
        Err(_) => Clip::new(Vec::new()),
    }
}

async fn mark_heard(run: &Run, message: &VoicemailMessage) {
    if message.heard_at.is_some() {
        return;
    }
    let marked = run
        .inner
        .store
        .voicemail()
        .set_heard(&Principal::system(), message.id, true, pbx_store::now_ms())
        .await;
    if let Err(e) = marked {
        tracing::warn!(error = %e, message = message.id, call_id = %run.call_id,
            "voicemail message not marked heard");
    }
}

async fn delete(run: &Run, message: &VoicemailMessage) {
    let deleted = run
        .inner
        .store
        .voicemail()
        .delete(&Principal::system(), message.id)
        .await;
    match deleted {
        Ok(key) => {
            let files = run.inner.config.audio.clone();
            let removed = tokio::task::spawn_blocking(move || files.remove(&key)).await;
            if let Ok(Err(e)) = removed {
                tracing::warn!(error = %e, message = message.id, "voicemail recording not removed");
            }
            tracing::info!(message = message.id, extension = message.extension_id.0,
                call_id = %run.call_id, "voicemail message deleted from a phone");
        }
        Err(e) => tracing::warn!(error = %e, message = message.id, call_id = %run.call_id,
            "voicemail message not deleted"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pbx_store::{CustomerId, ResellerId};

    fn message(id: i64, received_at: i64, heard: bool) -> VoicemailMessage {
        VoicemailMessage {
            id,
            reseller_id: ResellerId(1),
            customer_id: CustomerId(1),
            extension_id: ExtensionId(1),
            caller: "101".into(),
            duration_ms: 1000,
            received_at,
            heard_at: heard.then_some(received_at + 1),
        }
    }

    #[test]
    fn new_messages_come_first_oldest_first_then_heard_newest_first() {
        let order: Vec<i64> = in_order(vec![
            message(1, 100, true),
            message(2, 200, false),
            message(3, 300, true),
            message(4, 50, false),
        ])
        .iter()
        .map(|m| m.id)
        .collect();
        assert_eq!(order, vec![4, 2, 3, 1]);
    }

    #[test]
    fn keys_choose_what_happens_to_a_message() {
        assert_eq!(choice_of('1'), Some(Choice::Again));
        assert_eq!(choice_of('7'), Some(Choice::Delete));
        assert_eq!(choice_of('9'), Some(Choice::Next));
        assert_eq!(choice_of('#'), Some(Choice::Next));
        assert_eq!(choice_of('5'), None);
    }
}
