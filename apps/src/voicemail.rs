//! Leaving a message: the caller hears the box's greeting (the one its user
//! uploaded, else the default in the customer's language), a tone, and
//! speaks until `#`, hanging up, or
//! the box's longest message. What was said is written to the audio store
//! and stored as a message of the box (unless the box is full, or the
//! message shorter than a second); then the box's phones are told.
//! A full disk or database loses that message, never the call.

use std::time::Duration;

use pbx_media::audio::{self, RATE};
use pbx_store::audio_files::AudioFiles;
use pbx_store::voicemail::NewMessage;
use pbx_store::{ExtensionId, Principal};

use crate::media::Ended;
use crate::prompts::Prompts;
use crate::Run;

/// Shorter than this is a caller who hung up at the tone: not kept.
const SHORTEST_MS: usize = 1000;

/// The greeting the box's user uploaded, if there is one and its file
/// reads (else the caller hears the default: a missing file is logged,
/// never a silent greeting).
async fn uploaded_greeting(run: &Run, extension: ExtensionId) -> Option<audio::Clip> {
    let sys = Principal::system();
    let key = match run
        .inner
        .store
        .custom_audio()
        .greeting(&sys, extension)
        .await
    {
        Ok(key) => key?,
        Err(e) => {
            tracing::warn!(error = %e, extension = extension.0, "greeting not readable");
            return None;
        }
    };
    let what = format!("greeting of extension {}", extension.0);
    crate::prompts::uploaded(&run.inner.config.audio, key, &what).await
}

/// Runs a deposit; true when the caller hung up (no BYE needed).
pub(crate) async fn deposit(mut run: Run, extension: ExtensionId) -> bool {
    let store = run.inner.store.clone();
    let sys = Principal::system();
    let Some((ext, prompts)) = Prompts::of_extension(&store, extension).await else {
        return false;
    };
    let (mailbox, held) = match store.voicemail().deposit_limits(&sys, extension).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, extension = extension.0, "voicemail box not readable");
            return run
                .media
                .play(prompts.unavailable(), &mut run.events, false)
                .await
                == Ended::Hangup;
        }
    };
    if held >= mailbox.max_messages {
        return run.media.play(prompts.full(), &mut run.events, false).await == Ended::Hangup;
    }
    let uploaded = uploaded_greeting(&run, extension).await;
    let greeting = uploaded
        .as_ref()
        .map_or(prompts.greeting(), |clip| clip.samples());
    if run.media.play(greeting, &mut run.events, true).await == Ended::Hangup {
        return true;
    }
    let beep = audio::tone(1000.0, 400, 0.5);
    if run.media.play(&beep, &mut run.events, false).await == Ended::Hangup {
        return true;
    }
    let longest = Duration::from_secs(u64::from(mailbox.max_message_s));
    let (said, ended) = run.media.record(longest, &mut run.events, '#').await;
    let hung_up = ended == Ended::Hangup;
    let mut kept = false;
    if said.len() * 1000 / RATE as usize >= SHORTEST_MS {
        let message = Said {
            reseller: ext.reseller_id,
            customer: ext.customer_id,
            extension,
            caller: run.caller.clone(),
            call_id: run.call_id.clone(),
            samples: said,
        };
        // The lamps follow from the store's change feed.
        kept = keep(&run, message).await;
    }
    if hung_up {
        return true;
    }
    // "Saved" only when it was.
    let last = if kept {
        prompts.goodbye()
    } else {
        prompts.unavailable()
    };
    run.media.play(last, &mut run.events, false).await == Ended::Hangup
}

struct Said {
    reseller: pbx_store::ResellerId,
    customer: pbx_store::CustomerId,
    extension: ExtensionId,
    caller: String,
    call_id: String,
    samples: Vec<i16>,
}

/// Writes the audio and stores the message; false when either failed or
/// the box filled meanwhile (the audio is then removed).
async fn keep(run: &Run, said: Said) -> bool {
    let files = run.inner.config.audio.clone();
    let key = AudioFiles::new_key(&format!("voicemail/{}", said.customer.0), "wav");
    let duration_ms = (said.samples.len() as i64) * 1000 / i64::from(RATE);
    let wav = audio::wav_bytes(&said.samples);
    let written = {
        let (files, key) = (files.clone(), key.clone());
        tokio::task::spawn_blocking(move || files.write(&key, &wav)).await
    };
    let failed = match written {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(e) => Some(e.to_string()),
    };
    if let Some(e) = failed {
        // A full or broken disk: this message is lost, the call goes on.
        tracing::error!(error = %e, call_id = %said.call_id, "voicemail message not written");
        return false;
    }
    let new = NewMessage {
        reseller: said.reseller,
        customer: said.customer,
        extension: said.extension,
        caller: said.caller,
        call_id: said.call_id.clone(),
        duration_ms,
        audio: key.clone(),
        received_at: pbx_store::now_ms(),
    };
    match run
        .inner
        .store
        .voicemail()
        .add(&Principal::system(), &new)
        .await
    {
        Ok(Some(id)) => {
            tracing::info!(
                message = id,
                extension = said.extension.0,
                duration_ms,
                "voicemail message left"
            );
            true
        }
        Ok(None) => {
            let _ = files.remove(&key);
            false
        }
        Err(e) => {
            tracing::error!(error = %e, call_id = %said.call_id, "voicemail message not stored");
            let _ = files.remove(&key);
            false
        }
    }
}
