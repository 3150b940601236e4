//! Audio customers upload in place of the platform's, for the API and the
//! console alike: an extension's voicemail greeting, the customer's music
//! on hold and an auto-attendant menu's greeting. An upload is converted (any WAV `hound` reads: 8 to 32
//! bits or float, mono or stereo, 4 to 192 kHz) to 8 kHz mono 16-bit WAV
//! off the async threads, written to the audio store, and only then named
//! in the store; the file it replaces goes. Anything that is not such a
//! WAV, is empty or lasts longer than five minutes is refused before
//! anything is written.

use pbx_media::audio::{AudioError, Clip, LONGEST_UPLOAD_S};
use pbx_store::{CustomerId, ExtensionId, FieldError, IvrMenuId, Principal, StoreError};

use crate::recordings::Recording;
use crate::AppState;

/// What an upload replaces.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    Greeting(ExtensionId),
    MusicOnHold(CustomerId),
    MenuGreeting(IvrMenuId),
}

impl Target {
    /// Whether only the customer's administrators (not an extension's
    /// user) may change it.
    fn admins_only(self) -> bool {
        !matches!(self, Target::Greeting(_))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// Not audio we take: the caller's to fix (422, naming `audio`).
    #[error("{0}")]
    Audio(#[from] AudioError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The audio store could not keep it (a full disk): ours (500).
    #[error("audio store: {0}")]
    Files(String),
}

impl UploadError {
    /// The store's view of it: bad audio as an invalid field, the rest as is.
    pub fn into_store(self) -> StoreError {
        match self {
            UploadError::Audio(e) => {
                StoreError::Invalid(vec![FieldError::new("audio", e.to_string())])
            }
            UploadError::Store(e) => e,
            UploadError::Files(e) => {
                StoreError::Conflict(format!("the audio could not be kept: {e}"))
            }
        }
    }
}

/// The key `target`'s upload goes to, under its customer's folder.
async fn new_key(s: &AppState, by: &Principal, target: Target) -> Result<String, StoreError> {
    let (folder, customer) = match target {
        Target::Greeting(ext) => (
            "greetings",
            s.store.extensions().get(by, ext).await?.customer_id,
        ),
        Target::MusicOnHold(customer) => ("music", customer),
        Target::MenuGreeting(menu) => (
            "menus",
            s.store.ivr_menus().get(by, menu).await?.customer_id,
        ),
    };
    Ok(pbx_store::audio_files::AudioFiles::new_key(
        &format!("{folder}/{}", customer.0),
        "wav",
    ))
}

async fn current(
    s: &AppState,
    by: &Principal,
    target: Target,
) -> Result<Option<String>, StoreError> {
    let audio = s.store.custom_audio();
    match target {
        Target::Greeting(ext) => audio.greeting(by, ext).await,
        Target::MusicOnHold(customer) => audio.music(by, customer).await,
        Target::MenuGreeting(menu) => Ok(s.store.ivr_menus().get(by, menu).await?.greeting_audio),
    }
}

async fn set(
    s: &AppState,
    by: &Principal,
    target: Target,
    key: Option<&str>,
) -> Result<Option<String>, StoreError> {
    let audio = s.store.custom_audio();
    match target {
        Target::Greeting(ext) => audio.set_greeting(by, ext, key).await,
        Target::MusicOnHold(customer) => audio.set_music(by, customer, key).await,
        Target::MenuGreeting(menu) => s.store.ivr_menus().set_greeting(by, menu, key).await,
    }
}

/// Converts and keeps `bytes` as `target`'s audio; returns its length (ms).
pub async fn save(
    s: &AppState,
    by: &Principal,
    target: Target,
    bytes: Vec<u8>,
) -> Result<u64, UploadError> {
    // Who may change it is checked before any work is done (the store
    // checks again when it is named).
    current(s, by, target).await?;
    if by.read_only {
        return Err(StoreError::Forbidden("this credential is read-only").into());
    }
    if target.admins_only() && by.scope.extension().is_some() {
        return Err(StoreError::Forbidden("this needs an administrator's rights").into());
    }
    let clip = tokio::task::spawn_blocking(move || Clip::from_wav(&bytes, LONGEST_UPLOAD_S))
        .await
        .map_err(|e| UploadError::Files(e.to_string()))??;
    let key = new_key(s, by, target).await?;
    let files = s.audio.clone();
    let (written, wav) = (key.clone(), clip.to_wav());
    tokio::task::spawn_blocking(move || files.write(&written, &wav))
        .await
        .map_err(|e| UploadError::Files(e.to_string()))?
        .map_err(|e| UploadError::Files(e.to_string()))?;
    match set(s, by, target, Some(&key)).await {
        Ok(replaced) => {
            if let Some(old) = replaced {
                crate::recordings::remove(s, old, "replaced upload", 0).await;
            }
            Ok(clip.duration_ms())
        }
        Err(e) => {
            crate::recordings::remove(s, key, "refused upload", 0).await;
            Err(e.into())
        }
    }
}

/// Goes back to the platform's audio for `target`.
pub async fn remove(s: &AppState, by: &Principal, target: Target) -> Result<(), StoreError> {
    if let Some(old) = set(s, by, target, None).await? {
        crate::recordings::remove(s, old, "removed upload", 0).await;
    }
    Ok(())
}

/// `target`'s uploaded audio, if there is some.
pub async fn read(
    s: &AppState,
    by: &Principal,
    target: Target,
) -> Result<Option<Recording>, StoreError> {
    match current(s, by, target).await? {
        Some(key) => Ok(Some(crate::recordings::read(s, key, "upload", 0).await)),
        None => Ok(None),
    }
}

/// Deletes a menu, and its uploaded greeting's file.
pub async fn delete_menu(s: &AppState, by: &Principal, menu: IvrMenuId) -> Result<(), StoreError> {
    let greeting = s.store.ivr_menus().get(by, menu).await?.greeting_audio;
    s.store.ivr_menus().delete(by, menu).await?;
    if let Some(old) = greeting {
        crate::recordings::remove(s, old, "deleted menu's greeting", menu.0).await;
    }
    Ok(())
}
