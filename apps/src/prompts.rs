//! The announcements shipped with the platform, in German and English
//! (other languages hear English): the default voicemail greeting, a full
//! box, a saved message's goodbye, "not available", and what a phone
//! listening to its box hears (how many new messages, the menu). They name nobody:
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
}

/// Each file's longest allowed length, in seconds (a sanity bound).
const LONGEST_S: u32 = 60;

fn clip(bytes: &[u8]) -> Clip {
    // The files are ours and tested to read; a broken build plays silence
    // rather than take the server down.
    Clip::from_wav(bytes, LONGEST_S).unwrap_or_else(|_| Clip::new(Vec::new()))
}

/// One language's files, built into the binary.
macro_rules! language {
    ($lang:literal) => {
        Prompts {
            greeting: clip(include_bytes!(concat!(
                "../prompts/",
                $lang,
                "/greeting.wav"
            ))),
            full: clip(include_bytes!(concat!("../prompts/", $lang, "/full.wav"))),
            goodbye: clip(include_bytes!(concat!(
                "../prompts/",
                $lang,
                "/goodbye.wav"
            ))),
            unavailable: clip(include_bytes!(concat!(
                "../prompts/",
                $lang,
                "/unavailable.wav"
            ))),
            no_new: clip(include_bytes!(concat!("../prompts/", $lang, "/no_new.wav"))),
            one_new: clip(include_bytes!(concat!(
                "../prompts/",
                $lang,
                "/one_new.wav"
            ))),
            you_have: clip(include_bytes!(concat!(
                "../prompts/",
                $lang,
                "/you_have.wav"
            ))),
            new_messages: clip(include_bytes!(concat!(
                "../prompts/",
                $lang,
                "/new_messages.wav"
            ))),
            many: clip(include_bytes!(concat!("../prompts/", $lang, "/many.wav"))),
            menu: clip(include_bytes!(concat!("../prompts/", $lang, "/menu.wav"))),
            deleted: clip(include_bytes!(concat!(
                "../prompts/",
                $lang,
                "/deleted.wav"
            ))),
            no_more: clip(include_bytes!(concat!(
                "../prompts/",
                $lang,
                "/no_more.wav"
            ))),
            numbers: vec![
                clip(include_bytes!(concat!("../prompts/", $lang, "/n2.wav"))),
                clip(include_bytes!(concat!("../prompts/", $lang, "/n3.wav"))),
                clip(include_bytes!(concat!("../prompts/", $lang, "/n4.wav"))),
                clip(include_bytes!(concat!("../prompts/", $lang, "/n5.wav"))),
                clip(include_bytes!(concat!("../prompts/", $lang, "/n6.wav"))),
                clip(include_bytes!(concat!("../prompts/", $lang, "/n7.wav"))),
                clip(include_bytes!(concat!("../prompts/", $lang, "/n8.wav"))),
                clip(include_bytes!(concat!("../prompts/", $lang, "/n9.wav"))),
                clip(include_bytes!(concat!("../prompts/", $lang, "/n10.wav"))),
                clip(include_bytes!(concat!("../prompts/", $lang, "/n11.wav"))),
                clip(include_bytes!(concat!("../prompts/", $lang, "/n12.wav"))),
                clip(include_bytes!(concat!("../prompts/", $lang, "/n13.wav"))),
                clip(include_bytes!(concat!("../prompts/", $lang, "/n14.wav"))),
                clip(include_bytes!(concat!("../prompts/", $lang, "/n15.wav"))),
                clip(include_bytes!(concat!("../prompts/", $lang, "/n16.wav"))),
                clip(include_bytes!(concat!("../prompts/", $lang, "/n17.wav"))),
                clip(include_bytes!(concat!("../prompts/", $lang, "/n18.wav"))),
                clip(include_bytes!(concat!("../prompts/", $lang, "/n19.wav"))),
                clip(include_bytes!(concat!("../prompts/", $lang, "/n20.wav"))),
            ],
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
        let language = match store.customers().get(&sys, ext.customer_id).await {
            Ok(c) => c.language,
            Err(_) => String::new(),
        };
        Some((ext, Prompts::for_language(&language)))
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
                p.deleted(),
                p.no_more(),
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
