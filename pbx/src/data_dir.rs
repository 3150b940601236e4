//! The data directory: SQLite database, secret key, call-record spool and
//! demo.json. Created on first start; refused with one clear line when it
//! cannot be written.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use pbx_store::secrets::{SecretBox, KEY_LEN};
use pbx_store::Engine;

use crate::config::Config;

/// Creates the data directory if needed and checks that this process can
/// write there.
pub fn prepare(dir: &Path) -> Result<()> {
    if let Err(e) = std::fs::create_dir_all(dir) {
        bail!(
            "cannot create data directory {}: {}",
            dir.display(),
            io_reason(&e)
        );
    }
    restrict(dir, 0o700);
    let probe = dir.join(format!(".write-test-{}", std::process::id()));
    let written = std::fs::File::create(&probe).and_then(|mut f| f.write_all(b"ok"));
    let _ = std::fs::remove_file(&probe);
    if let Err(e) = written {
        bail!(
            "data directory {} is not writable: {} (choose another with --data-dir / PBX_DATA_DIR)",
            dir.display(),
            io_reason(&e)
        );
    }
    Ok(())
}

/// The key that encrypts recoverable secrets: the configured one, else the
/// one in DATA_DIR/secret.key, else (SQLite only) a new one written there.
/// Nodes sharing PostgreSQL must share the key, so none is invented for them.
pub fn secret_key(config: &Config) -> Result<[u8; KEY_LEN]> {
    if let Some(key) = config.secret_key {
        return Ok(key);
    }
    let path = key_path(&config.data_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => SecretBox::parse_key(&text)
            .map_err(|why| anyhow::anyhow!("secret key file {}: {why}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if config.engine == Engine::Postgres {
                bail!(
                    "no secret key: with PostgreSQL every node needs the same key; create one with \
                     `pbx generate-secret-key` and set --secret-key / PBX_SECRET_KEY (or put it in {})",
                    path.display()
                );
            }
            let key = SecretBox::generate_key();
            write_private(&path, &key)
                .with_context(|| format!("cannot write secret key file {}", path.display()))?;
            tracing::info!(path = %path.display(), "created a new secret key; back it up with the database");
            SecretBox::parse_key(&key).map_err(|why| anyhow::anyhow!("generated key: {why}"))
        }
        Err(e) => bail!(
            "cannot read secret key file {}: {}",
            path.display(),
            io_reason(&e)
        ),
    }
}

fn key_path(dir: &Path) -> PathBuf {
    dir.join("secret.key")
}

/// Writes a file readable only by this user (it holds secrets).
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut file = std::fs::File::create(&tmp)?;
        restrict(&tmp, 0o600);
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(unix)]
fn restrict(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}

#[cfg(not(unix))]
fn restrict(_path: &Path, _mode: u32) {}

/// The OS reason without Rust's "(os error N)" noise.
fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}
