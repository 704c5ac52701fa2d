//! Gateway credentials: what `chitti-hub gateway add` issues and what the broker and
//! the ingest check.
//!
//! A gateway gets two things: an MQTT password (the broker's login; the hub keeps only
//! its argon2id hash) and an Ed25519 signing key (every finding batch is signed with
//! it; the hub keeps only the public key). The operator may instead bring a public key
//! made on the gateway with `chitti-agent keygen`, so the private key never leaves it.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chitti_common::signing::{public_key_hex, signing_key_from_seed};
use ed25519_dalek::VerifyingKey;
use std::path::Path;

/// Credentials could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The system gave no randomness.
    #[error("no randomness available: {0}")]
    Random(String),
    /// Hashing failed.
    #[error("cannot hash the password: {0}")]
    Hash(String),
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

fn random_bytes<const N: usize>() -> Result<[u8; N], CredentialError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| CredentialError::Random(e.to_string()))?;
    Ok(b)
}

/// An argon2id hash (PHC string) of `password`.
pub fn hash_password(password: &str) -> Result<String, CredentialError> {
    let salt_bytes: [u8; 16] = random_bytes()?;
    let salt =
        SaltString::encode_b64(&salt_bytes).map_err(|e| CredentialError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| CredentialError::Hash(e.to_string()))
}

/// True when `password` matches the stored hash (false for a malformed hash).
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// What `gateway add` hands to the gateway's installer.
#[derive(Clone)]
pub struct IssuedCredentials {
    /// Site id.
    pub site: String,
    /// Gateway id.
    pub gateway: String,
    /// MQTT user name.
    pub username: String,
    /// MQTT password (shown once; only its hash is stored).
    pub password: String,
    /// The argon2id hash of the password (what the store keeps).
    pub password_hash: String,
    /// The signing key's seed, when the hub made the key.
    pub signing_seed: Option<[u8; 32]>,
    /// The public key the hub registers.
    pub public_key: VerifyingKey,
}

impl std::fmt::Debug for IssuedCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secrets.
        f.debug_struct("IssuedCredentials")
            .field("site", &self.site)
            .field("gateway", &self.gateway)
            .field("username", &self.username)
            .field("public_key", &public_key_hex(&self.public_key))
            .finish_non_exhaustive()
    }
}

/// Makes a gateway's credentials: a random password, and a signing key unless the
/// operator brings the public key of one made on the gateway.
pub fn issue(
    site: &str,
    gateway: &str,
    username: &str,
    public_key: Option<VerifyingKey>,
) -> Result<IssuedCredentials, CredentialError> {
    let password_bytes: [u8; 18] = random_bytes()?;
    // 24 characters of URL-safe base64: 144 bits, easy to paste into a file.
    let password = base64_url(&password_bytes);
    let password_hash = hash_password(&password)?;
    let (signing_seed, public_key) = match public_key {
        Some(k) => (None, k),
        None => {
            let seed: [u8; 32] = random_bytes()?;
            (Some(seed), signing_key_from_seed(&seed).verifying_key())
        }
    };
    Ok(IssuedCredentials {
        site: site.to_string(),
        gateway: gateway.to_string(),
        username: username.to_string(),
        password,
        password_hash,
        signing_seed,
        public_key,
    })
}

fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    bytes
        .chunks(3)
        .flat_map(|c| {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            let count = c.len() + 1;
            (0..4)
                .take(count)
                .map(move |i| ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char)
        })
        .collect()
}

impl IssuedCredentials {
    /// Writes the gateway's files into `dir`: `mqtt-password`, `signing.key` (when the
    /// hub made the key), both mode 0600, `hub-public-key` (what the agent verifies
    /// every `/ack` with) and `agent-credentials.toml`, the part of the agent's
    /// configuration that uses them.
    pub fn write_to(
        &self,
        dir: &Path,
        broker_url: &str,
        hub_key: &VerifyingKey,
    ) -> Result<Vec<std::path::PathBuf>, CredentialError> {
        let write = |name: &str,
                     text: &str,
                     private: bool|
         -> Result<std::path::PathBuf, CredentialError> {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let path = dir.join(name);
            let err = |source| CredentialError::Write {
                path: path.display().to_string(),
                source,
            };
            std::fs::create_dir_all(dir).map_err(err)?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(if private { 0o600 } else { 0o644 })
                .open(&path)
                .map_err(err)?;
            f.write_all(text.as_bytes()).map_err(err)?;
            f.sync_all().map_err(err)?;
            Ok(path)
        };
        let mut written = vec![write(
            "mqtt-password",
            &format!("{}\n", self.password),
            true,
        )?];
        if let Some(seed) = &self.signing_seed {
            written.push(write(
                "signing.key",
                &format!("{}\n", hex::encode(seed)),
                true,
            )?);
        }
        let hub_key = public_key_hex(hub_key);
        written.push(write("hub-public-key", &format!("{hub_key}\n"), false)?);
        let snippet = format!(
            "# Credentials of gateway {site}/{gateway}, issued by chitti-hub gateway add.\n\
             # Merge into the agent's configuration; keep the files next to it (mode 0600).\n\
             [identity]\nsite = \"{site}\"\ngateway = \"{gateway}\"\n\n\
             [mqtt]\nurl = \"{broker_url}\"\nusername = \"{user}\"\npassword_file = \"mqtt-password\"\n\
             hub_public_keys_file = \"hub-public-key\"   # the hub's key: only acks it signed delete findings\n{signing}",
            site = self.site,
            gateway = self.gateway,
            user = self.username,
            signing = if self.signing_seed.is_some() {
                "signing_key_file = \"signing.key\"\n".to_string()
            } else {
                "# signing_key_file: the key made on the gateway with chitti-agent keygen\n".to_string()
            },
        );
        written.push(write("agent-credentials.toml", &snippet, false)?);
        Ok(written)
    }
}

/// Password checks waiting for a thread of the [`PasswordChecker`], beyond which
/// callers wait for room (a reconnect storm queues, it is not refused).
const PASSWORD_CHECK_QUEUE: usize = 256;

type PasswordCheck = (String, String, tokio::sync::oneshot::Sender<bool>);

/// Checks passwords against argon2id hashes on a few threads of its own.
///
/// One check costs ~20 ms of CPU and 19 MiB. On tokio's blocking pool a burst of
/// logins spreads over many threads, and the allocator keeps a freed 19 MiB block in
/// each thread's arena: after 1 000 gateways connected, the hub held ~280 MiB it no
/// longer used (BENCHMARKS.md, "The hub alone at 1 000 gateways"). A fixed set of
/// threads bounds both the CPU (no more checks at once than cores) and that memory.
#[derive(Clone)]
pub struct PasswordChecker {
    checks: tokio::sync::mpsc::Sender<PasswordCheck>,
}

impl PasswordChecker {
    /// Starts `threads` checking threads (`chitti-argon2`); they end when the last
    /// clone is dropped.
    pub fn start(threads: usize) -> std::io::Result<Self> {
        let (tx, rx) = tokio::sync::mpsc::channel::<PasswordCheck>(PASSWORD_CHECK_QUEUE);
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = std::sync::Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("chitti-argon2-{i}"))
                .spawn(move || loop {
                    // The lock is held only while waiting for the next check.
                    let next = rx.lock().unwrap_or_else(|e| e.into_inner()).blocking_recv();
                    let Some((hash, password, answer)) = next else {
                        return;
                    };
                    let _ = answer.send(verify_password(&hash, &password));
                })?;
        }
        Ok(Self { checks: tx })
    }

    /// One thread per core.
    pub fn per_core() -> std::io::Result<Self> {
        Self::start(std::thread::available_parallelism().map_or(2, |n| n.get()))
    }

    /// True when `password` matches `hash` (see [`verify_password`]); false also when
    /// the checker's threads are gone.
    pub async fn verify(&self, hash: String, password: String) -> bool {
        let (answer, answered) = tokio::sync::oneshot::channel();
        if self.checks.send((hash, password, answer)).await.is_err() {
            return false;
        }
        answered.await.unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_against_their_hash_only() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password(&hash, "correct horse"));
        assert!(!verify_password(&hash, "correct horse "));
        assert!(!verify_password("not a hash", "x"));
    }

    #[test]
    fn issued_credentials_are_random_and_written_privately() {
        use std::os::unix::fs::PermissionsExt;
        let a = issue("north", "gw-1", "north/gw-1", None).unwrap();
        let b = issue("north", "gw-1", "north/gw-1", None).unwrap();
        assert_ne!(a.password, b.password);
        assert_eq!(a.password.len(), 24);
        assert!(verify_password(&a.password_hash, &a.password));
        assert!(
            !format!("{a:?}").contains(&a.password),
            "Debug never shows the password"
        );
        let dir = tempfile::tempdir().unwrap();
        let files = a
            .write_to(
                dir.path(),
                "mqtt://hub:1883",
                &signing_key_from_seed(&[3; 32]).verifying_key(),
            )
            .unwrap();
        assert_eq!(files.len(), 4);
        let hub = public_key_hex(&signing_key_from_seed(&[3; 32]).verifying_key());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("hub-public-key")).unwrap(),
            format!("{hub}\n")
        );
        let mode = |f: &str| {
            std::fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("mqtt-password"), 0o600);
        assert_eq!(mode("signing.key"), 0o600);
        let seed = std::fs::read_to_string(dir.path().join("signing.key")).unwrap();
        let mut s = [0u8; 32];
        hex::decode_to_slice(seed.trim(), &mut s).unwrap();
        assert_eq!(signing_key_from_seed(&s).verifying_key(), a.public_key);
        let snippet = std::fs::read_to_string(dir.path().join("agent-credentials.toml")).unwrap();
        assert!(
            snippet.contains("username = \"north/gw-1\"") && snippet.contains("signing_key_file")
        );
        assert!(snippet.contains("hub_public_keys_file = \"hub-public-key\""));
        // Never overwrites.
        assert!(a
            .write_to(
                dir.path(),
                "mqtt://hub:1883",
                &signing_key_from_seed(&[3; 32]).verifying_key()
            )
            .is_err());
        // A key brought by the operator: no seed written.
        let own = issue("north", "gw-2", "north/gw-2", Some(a.public_key)).unwrap();
        assert!(own.signing_seed.is_none());
        assert_eq!(own.public_key, a.public_key);
    }

    #[tokio::test]
    async fn the_password_checker_answers_every_queued_check_on_its_own_threads() {
        let hash = hash_password("right horse battery").unwrap();
        let checker = PasswordChecker::start(1).unwrap();
        // More checks at once than the one thread: they queue, each gets its answer.
        let checks = (0..8).map(|i| {
            let checker = checker.clone();
            let hash = hash.clone();
            let password = if i % 2 == 0 {
                "right horse battery"
            } else {
                "wrong"
            };
            async move { checker.verify(hash, password.to_owned()).await }
        });
        let answers = futures_util::future::join_all(checks).await;
        assert_eq!(
            answers,
            [true, false, true, false, true, false, true, false],
            "right passwords accepted, wrong ones refused, in order"
        );
        assert!(!checker.verify("not a PHC string".into(), "x".into()).await);
    }
}
