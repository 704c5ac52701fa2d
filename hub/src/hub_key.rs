//! The hub's own Ed25519 key: it signs every `/ack`, so an agent deletes findings from
//! its outbox only on the word of the hub that stored them, whatever broker carried
//! the message and whoever else can publish on it (`chitti_common::signing`,
//! "Acknowledgements").
//!
//! - **Where**: `ingest.hub_key_file`, by default `hub-signing.key` in the data
//!   directory; replicas of one fleet share one file (a secret, mode 0600).
//! - **Made once**: the first `serve` or `gateway add` that finds no file creates it
//!   (`create_new`, so two processes starting together end up with the same key).
//! - **Given to gateways**: `gateway add` writes the public half into the gateway's
//!   `agent-credentials.toml` (`mqtt.hub_public_keys`) and `hub-public-key`;
//!   `chitti-hub hub-key` prints it.
//! - **Rotation with overlap**: put the new key's public half into every agent's
//!   `hub_public_keys` beside the old one, then point the hub at the new file; once
//!   every hub signs with it, drop the old public key from the agents. An agent never
//!   deletes on an ack it cannot verify, so a mistake costs resends, never findings.

use chitti_common::signing::{public_key_hex, signing_key_from_seed};
use ed25519_dalek::SigningKey;
use std::path::{Path, PathBuf};

/// The key file's name in the data directory when `ingest.hub_key_file` is not set.
pub const DEFAULT_FILE: &str = "hub-signing.key";

/// The hub key could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum HubKeyError {
    /// Reading or writing the file failed.
    #[error("hub key {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file holds something else than a 64-hex-character seed.
    #[error("hub key {0}: not an Ed25519 seed (64 hex characters)")]
    Malformed(PathBuf),
    /// No randomness for a new key.
    #[error("hub key: no randomness: {0}")]
    Random(String),
}

/// Where the key of `config` lives.
pub fn path(config: &crate::config::HubConfig) -> PathBuf {
    config
        .ingest
        .hub_key_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join(DEFAULT_FILE))
}

/// Reads the key at `path`, creating it when there is none.
pub fn load_or_create(path: &Path) -> Result<SigningKey, HubKeyError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| HubKeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    if !path.exists() {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| HubKeyError::Random(e.to_string()))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        // Write beside it and link into place: a crash never leaves half a key, and of
        // two processes racing, the second finds the first's file and reads it.
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(format!("{}\n", hex::encode(seed)).as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(io)?;
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                tracing::info!(path = %path.display(),
                    public_key = %public_key_hex(&signing_key_from_seed(&seed).verifying_key()),
                    "hub signing key created");
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(e)),
        }
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed)
        .map_err(|_| HubKeyError::Malformed(path.to_path_buf()))?;
    Ok(signing_key_from_seed(&seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_privately_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/hub-signing.key");
        let made = load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = load_or_create(&path).unwrap();
        assert_eq!(made.to_bytes(), again.to_bytes());
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }

    #[test]
    fn a_damaged_key_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub-signing.key");
        std::fs::write(&path, "not hex").unwrap();
        let err = load_or_create(&path).unwrap_err().to_string();
        assert!(
            err.contains("hub-signing.key") && err.contains("64 hex"),
            "{err}"
        );
    }
}
