//! The announcements shipped with the platform, in German and English
//! (other languages hear English): the default voicemail greeting, a full
//! box, a saved message's goodbye, "not available", and what a phone
//! listening to its box hears (how many new messages, the menu), and a
//! conference room's (the PIN, a wrong PIN, a full room, the first one
//! in), that a call is recorded, and an auto-attendant menu's (its default
//! greeting, a wrong key, nobody taking the call), and that there is no
//! call to pick up. They name nobody:
//! neither the operator nor a product. Made once with espeak-ng and sox
//! (`apps/prompts/make.sh`), kept as 8 kHz 16-bit WAV files in the binary.

use std::sync::OnceLock;

use pbx_media::audio::Clip;

/// One language's announcements.
#[derive(Debug)]
pub struct Prompts {
    greeting: Clip,
    full: Clip,
    goodbye: Clip,
    unavailable: Clip,
    no_new: Clip,
    one_new: Clip,
    you_have: Clip,
    new_messages: Clip,
    many: Clip,
    menu: Clip,
    deleted: Clip,
    no_more: Clip,
    /// "two" … "twenty".
    numbers: Vec<Clip>,
    conf_pin: Clip,
    conf_wrong_pin: Clip,
    conf_full: Clip,
    conf_first: Clip,
    recorded: Clip,
    box_number: Clip,
    box_pin: Clip,
    box_wrong: Clip,
    menu_default: Clip,
    menu_invalid: Clip,
    menu_unreachable: Clip,
    pickup_none: Clip,
}

/// Each file's longest allowed length, in seconds (a sanity bound).
const LONGEST_S: u32 = 60;

fn clip(bytes: &[u8]) -> Clip {
    // The files are ours and tested to read; a broken build plays silence
    // rather than take the server down.
    Clip::from_wav(bytes, LONGEST_S).unwrap_or_else(|_| Clip::new(Vec::new()))
}

/// One of a language's files, built into the binary.
macro_rules! wav {
    ($lang:literal, $name:literal) => {
        clip(include_bytes!(concat!(
            "../prompts/",
            $lang,
            "/",
            $name,
            ".wav"
        )))
    };
}

/// One language's files.
macro_rules! language {
    ($lang:literal) => {
        Prompts {
            greeting: wav!($lang, "greeting"),
            full: wav!($lang, "full"),
            goodbye: wav!($lang, "goodbye"),
            unavailable: wav!($lang, "unavailable"),
            no_new: wav!($lang, "no_new"),
            one_new: wav!($lang, "one_new"),
            you_have: wav!($lang, "you_have"),
            new_messages: wav!($lang, "new_messages"),
            many: wav!($lang, "many"),
            menu: wav!($lang, "menu"),
            deleted: wav!($lang, "deleted"),
            no_more: wav!($lang, "no_more"),
            numbers: vec![
                wav!($lang, "n2"),
                wav!($lang, "n3"),
                wav!($lang, "n4"),
                wav!($lang, "n5"),
                wav!($lang, "n6"),
                wav!($lang, "n7"),
                wav!($lang, "n8"),
                wav!($lang, "n9"),
                wav!($lang, "n10"),
                wav!($lang, "n11"),
                wav!($lang, "n12"),
                wav!($lang, "n13"),
                wav!($lang, "n14"),
                wav!($lang, "n15"),
                wav!($lang, "n16"),
                wav!($lang, "n17"),
                wav!($lang, "n18"),
                wav!($lang, "n19"),
                wav!($lang, "n20"),
            ],
            conf_pin: wav!($lang, "conf_pin"),
            conf_wrong_pin: wav!($lang, "conf_wrong_pin"),
            conf_full: wav!($lang, "conf_full"),
            conf_first: wav!($lang, "conf_first"),
            recorded: wav!($lang, "recorded"),
            box_number: wav!($lang, "box_number"),
            box_pin: wav!($lang, "box_pin"),
            box_wrong: wav!($lang, "box_wrong"),
            menu_default: wav!($lang, "menu_default"),
            menu_invalid: wav!($lang, "menu_invalid"),
            menu_unreachable: wav!($lang, "menu_unreachable"),
            pickup_none: wav!($lang, "pickup_none"),
        }
    };
}

fn english() -> &'static Prompts {
    static EN: OnceLock<Prompts> = OnceLock::new();
    EN.get_or_init(|| language!("en"))
}

fn german() -> &'static Prompts {
    static DE: OnceLock<Prompts> = OnceLock::new();
    DE.get_or_init(|| language!("de"))
}

/// An announcement a customer uploaded (a greeting), read off the serving
/// threads; None (with a warning naming `what`) when it cannot be read or
/// played, so the caller hears the shipped one instead.
pub(crate) async fn uploaded(
    files: &pbx_store::audio_files::AudioFiles,
    key: String,
    what: &str,
) -> Option<Clip> {
    let files = files.clone();
    let read = tokio::task::spawn_blocking(move || {
        let bytes = files.read(&key).map_err(|e| e.to_string())?;
        Clip::from_wav(&bytes, pbx_media::audio::LONGEST_UPLOAD_S).map_err(|e| e.to_string())
    })
    .await;
    match read {
        Ok(Ok(clip)) => Some(clip),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, what, "uploaded announcement not played");
            None
        }
        Err(_) => None,
    }
}

impl Prompts {
    /// The announcements in `language` (a customer's `de`, `en`, …).
    pub fn for_language(language: &str) -> &'static Prompts {
        match language.get(..2) {
            Some("de") => german(),
            _ => english(),
        }
    }

    /// An extension and the announcements in its customer's language;
    /// None when the extension is gone.
    pub async fn of_extension(
        store: &pbx_store::Store,
        extension: pbx_store::ExtensionId,
    ) -> Option<(pbx_store::extensions::Extension, &'static Prompts)> {
        let sys = pbx_store::Principal::system();
        let ext = store.extensions().get(&sys, extension).await.ok()?;
        let prompts = Prompts::of_customer(store, ext.customer_id).await;
        Some((ext, prompts))
    }

    /// The announcements in the language of `customer`: English when it
    /// cannot be read.
    pub async fn of_customer(
        store: &pbx_store::Store,
        customer: pbx_store::CustomerId,
    ) -> &'static Prompts {
        let sys = pbx_store::Principal::system();
        match store.customers().get(&sys, customer).await {
            Ok(c) => Prompts::for_language(&c.language),
            Err(_) => english(),
        }
    }

    /// "Please leave a message after the tone."
    pub fn greeting(&self) -> &[i16] {
        self.greeting.samples()
    }

    /// "This mailbox is full."
    pub fn full(&self) -> &[i16] {
        self.full.samples()
    }

    /// "Your message has been saved. Goodbye."
    pub fn goodbye(&self) -> &[i16] {
        self.goodbye.samples()
    }

    /// "Voicemail is not available."
    pub fn unavailable(&self) -> &[i16] {
        self.unavailable.samples()
    }

    /// "You have no new messages" / "one new message" / "N new messages",
    /// as the clips to play one after the other.
    pub fn new_messages(&self, count: usize) -> Vec<&[i16]> {
        match count {
            0 => vec![self.no_new.samples()],
            1 => vec![self.one_new.samples()],
            n => {
                let number = self
                    .numbers
                    .get(n - 2)
                    .map_or(self.many.samples(), Clip::samples);
                vec![self.you_have.samples(), number, self.new_messages.samples()]
            }
        }
    }

    /// "Press 1 to hear it again, 7 to delete it, 9 to keep it and go on."
    pub fn menu(&self) -> &[i16] {
        self.menu.samples()
    }

    /// "Message deleted."
    pub fn deleted(&self) -> &[i16] {
        self.deleted.samples()
    }

    /// "You have no more messages. Goodbye."
    pub fn no_more(&self) -> &[i16] {
        self.no_more.samples()
    }

    /// "Please enter the conference PIN, followed by the hash key."
    pub fn conference_pin(&self) -> &[i16] {
        self.conf_pin.samples()
    }

    /// "That PIN is not correct."
    pub fn wrong_pin(&self) -> &[i16] {
        self.conf_wrong_pin.samples()
    }

    /// "This conference is full. Goodbye."
    pub fn conference_full(&self) -> &[i16] {
        self.conf_full.samples()
    }

    /// "You are the first participant."
    pub fn first_participant(&self) -> &[i16] {
        self.conf_first.samples()
    }

    /// "This call is being recorded." (both parties, before recording).
    pub fn call_recorded(&self) -> &[i16] {
        self.recorded.samples()
    }

    /// "Please enter the mailbox number, followed by the hash key." (`*98`)
    pub fn box_number(&self) -> &[i16] {
        self.box_number.samples()
    }

    /// "Please enter the mailbox PIN, followed by the hash key."
    pub fn box_pin(&self) -> &[i16] {
        self.box_pin.samples()
    }

    /// "That mailbox number or PIN is not correct."
    pub fn box_wrong(&self) -> &[i16] {
        self.box_wrong.samples()
    }

    /// A menu's greeting when the customer uploaded none.
    pub fn menu_default(&self) -> &[i16] {
        self.menu_default.samples()
    }

    /// A key the menu does not know.
    pub fn menu_invalid(&self) -> &[i16] {
        self.menu_invalid.samples()
    }

    /// A menu's transfer that nobody took.
    pub fn menu_unreachable(&self) -> &[i16] {
        self.menu_unreachable.samples()
    }

    /// No call rings that a pickup could take.
    pub fn pickup_none(&self) -> &[i16] {
        self.pickup_none.samples()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_prompt_is_speech_of_a_few_seconds() {
        for p in [Prompts::for_language("de"), Prompts::for_language("en")] {
            let sentences = [
                p.greeting(),
                p.full(),
                p.goodbye(),
                p.unavailable(),
                p.menu(),
                p.menu_default(),
                p.menu_invalid(),
                p.menu_unreachable(),
                p.pickup_none(),
                p.deleted(),
                p.no_more(),
                p.conference_pin(),
                p.wrong_pin(),
                p.conference_full(),
                p.first_participant(),
                p.call_recorded(),
                p.box_number(),
                p.box_pin(),
                p.box_wrong(),
            ];
            let counts = (0..=25).flat_map(|n| p.new_messages(n));
            for clip in sentences.into_iter().chain(counts) {
                let seconds = clip.len() as f64 / 8000.0;
                assert!((0.2..30.0).contains(&seconds), "{seconds} s");
                let rms = (clip.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>()
                    / clip.len() as f64)
                    .sqrt();
                assert!(rms > 300.0, "audible: rms {rms}");
            }
        }
        assert!(std::ptr::eq(
            Prompts::for_language("fr"),
            Prompts::for_language("en")
        ));
        assert!(std::ptr::eq(
            Prompts::for_language("de-AT"),
            Prompts::for_language("de")
        ));
    }
}
