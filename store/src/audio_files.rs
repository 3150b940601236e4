//! Where recorded and uploaded audio lives: files under one directory (by
//! default `<data dir>/audio`), each named by a key the database keeps
//! (`voicemail/<customer>/<name>.wav`). The media application server writes
//! them, the control plane serves and mails them. One directory serves one
//! machine; several nodes need a shared one (an S3-compatible store is not
//! built yet).

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum AudioFileError {
    #[error("not an audio key: {0:?}")]
    BadKey(String),
    #[error("audio store: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone)]
pub struct AudioFiles {
    root: PathBuf,
}

impl AudioFiles {
    pub fn new(root: impl Into<PathBuf>) -> AudioFiles {
        AudioFiles { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of `key`. Keys are ours, but they come back from the
    /// database: only `a-z0-9._-` parts joined by `/`, none starting with a
    /// dot, are accepted, so a key can never leave the directory.
    pub fn path(&self, key: &str) -> Result<PathBuf, AudioFileError> {
        let ok = !key.is_empty()
            && key.len() <= 200
            && key.split('/').all(|part| {
                !part.is_empty()
                    && !part.starts_with('.')
                    && part.bytes().all(|b| {
                        b.is_ascii_lowercase()
                            || b.is_ascii_digit()
                            || matches!(b, b'.' | b'_' | b'-')
                    })
            });
        if !ok {
            return Err(AudioFileError::BadKey(key.to_owned()));
        }
        Ok(self.root.join(key))
    }

    /// A new key under `folder` (e.g. `voicemail/17`), unique.
    pub fn new_key(folder: &str, extension: &str) -> String {
        format!(
            "{folder}/{}-{}.{extension}",
            crate::now_ms(),
            crate::secrets::random_token(8)
                .to_ascii_lowercase()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "x")
        )
    }

    /// Writes `bytes` under `key` (written aside, then renamed: a reader
    /// never sees half a file).
    pub fn write(&self, key: &str, bytes: &[u8]) -> Result<(), AudioFileError> {
        let path = self.path(key)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let partial = path.with_extension("partial");
        std::fs::write(&partial, bytes)?;
        std::fs::rename(&partial, &path)?;
        Ok(())
    }

    pub fn read(&self, key: &str) -> Result<Vec<u8>, AudioFileError> {
        Ok(std::fs::read(self.path(key)?)?)
    }

    /// Removes `key`'s file; one already gone is fine.
    pub fn remove(&self, key: &str) -> Result<(), AudioFileError> {
        match std::fs::remove_file(self.path(key)?) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_inside_the_directory() {
        let dir = std::env::temp_dir().join(format!("pbx-audio-{}", std::process::id()));
        let files = AudioFiles::new(&dir);
        for bad in [
            "",
            "../etc/passwd",
            "voicemail/../../x",
            "/abs",
            "a//b",
            ".hidden",
            "A.wav",
            "a b",
        ] {
            assert!(files.path(bad).is_err(), "{bad:?}");
        }
        let key = AudioFiles::new_key("voicemail/17", "wav");
        assert!(files.path(&key).is_ok(), "{key}");
        files.write(&key, b"RIFF").expect("write");
        assert_eq!(files.read(&key).expect("read"), b"RIFF");
        files.remove(&key).expect("remove");
        files.remove(&key).expect("again");
        assert!(files.read(&key).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
