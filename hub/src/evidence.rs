//! The evidence store: the radiometric frames behind findings, content-addressed by
//! SHA-256, in a local folder (the default) or S3-compatible object storage (a fleet),
//! both through the `object_store` crate.
//!
//! - **Content addressed**: a blob lives at `ab/cd/abcd…` (its hash); a `put` whose
//!   bytes do not hash to the given name is refused, so a name always means those bytes.
//! - **Idempotent**: putting a blob that is already stored succeeds without writing.
//! - **Checked**: size limit, and content by magic number (JPEG, FLIR FFF/SEQ/CSQ, PNG);
//!   anything else is refused with the reason.
//! - The hub never builds a path from anything but a validated hash.

use bytes::Bytes;
use object_store::{path::Path as StorePath, ObjectStore, PutPayload};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// What kind of file a blob is, by its first bytes (shared with `inspect`).
pub use chitti_common::evidence::EvidenceKind;

/// Evidence could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// The name is not a lowercase hex SHA-256.
    #[error("{0:?} is not a sha256 (64 lowercase hex characters)")]
    BadName(String),
    /// The bytes do not hash to the name.
    #[error("the body's sha256 is {actual}, not {expected}")]
    HashMismatch {
        /// The name given.
        expected: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// Too large.
    #[error("evidence of {size} bytes is larger than the {limit} bytes accepted")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Not a thermal image the hub knows.
    #[error("evidence is not a FLIR radiometric file or a radiometric PNG (first bytes {0})")]
    UnknownContent(String),
    /// The storage backend failed.
    #[error("evidence storage: {0}")]
    Backend(String),
}

/// What a put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// Written now.
    Stored,
    /// It was already there (an idempotent retry).
    AlreadyStored,
}

/// The evidence store.
#[derive(Debug, Clone)]
pub struct EvidenceStore {
    store: Arc<dyn ObjectStore>,
    max_bytes: u64,
    backend: &'static str,
}

/// Checks a SHA-256 name.
pub fn validate_sha256(name: &str) -> Result<(), EvidenceError> {
    if name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(EvidenceError::BadName(name.chars().take(80).collect()))
    }
}

/// Bodies up to this size are hashed on the calling task; larger ones on a blocking
/// thread (SHA-256 runs at a few hundred MB/s: 64 KiB is well under a millisecond).
const HASH_INLINE_MAX: usize = 64 << 10;

/// Lowercase hex SHA-256 of a blob, off the async workers when it is large.
async fn sha256_hex(bytes: &Bytes) -> Result<String, EvidenceError> {
    if bytes.len() <= HASH_INLINE_MAX {
        return Ok(hex::encode(Sha256::digest(bytes)));
    }
    let bytes = bytes.clone();
    tokio::task::spawn_blocking(move || hex::encode(Sha256::digest(&bytes)))
        .await
        .map_err(|e| EvidenceError::Backend(format!("hashing failed: {e}")))
}

fn model_location(sha: &str) -> StorePath {
    StorePath::from(format!("models/{sha}.onnx"))
}

fn location(sha: &str) -> StorePath {
    StorePath::from(format!("{}/{}/{sha}", &sha[..2], &sha[2..4]))
}

impl EvidenceStore {
    /// A store in a local folder (created if missing).
    pub fn local(dir: &std::path::Path, max_bytes: u64) -> Result<Self, EvidenceError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| EvidenceError::Backend(format!("cannot create {}: {e}", dir.display())))?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| EvidenceError::Backend(e.to_string()))?;
        Ok(Self {
            store: Arc::new(fs),
            max_bytes,
            backend: "local",
        })
    }

    /// A store in an S3-compatible bucket; credentials come from the environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, or the instance's role).
    pub fn s3(
        bucket: &str,
        region: Option<&str>,
        endpoint: Option<&str>,
        max_bytes: u64,
    ) -> Result<Self, EvidenceError> {
        let mut builder = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(r) = region {
            builder = builder.with_region(r);
        }
        if let Some(e) = endpoint {
            builder = builder
                .with_endpoint(e)
                .with_allow_http(e.starts_with("http://"));
        }
        let s3 = builder
            .build()
            .map_err(|e| EvidenceError::Backend(e.to_string()))?;
        Ok(Self {
            store: Arc::new(s3),
            max_bytes,
            backend: "s3",
        })
    }

    /// A store in memory (lost on exit): for tests and API state built without one.
    pub fn in_memory(max_bytes: u64) -> Self {
        Self {
            store: Arc::new(object_store::memory::InMemory::new()),
            max_bytes,
            backend: "memory",
        }
    }

    /// A store over any `object_store` backend (tests use the in-memory one).
    pub fn with_backend(store: Arc<dyn ObjectStore>, max_bytes: u64) -> Self {
        Self {
            store,
            max_bytes,
            backend: "custom",
        }
    }

    /// The backend's name.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// Largest blob accepted.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Where a blob lives, as recorded in the store: `{backend}:ab/cd/abcd…`. Only for
    /// a validated hash.
    pub fn location_of(&self, sha256: &str) -> Result<String, EvidenceError> {
        validate_sha256(sha256)?;
        Ok(format!("{}:{}", self.backend, location(sha256)))
    }

    /// Checks and stores a blob under its hash.
    pub async fn put(
        &self,
        sha256: &str,
        bytes: Bytes,
    ) -> Result<(PutOutcome, EvidenceKind), EvidenceError> {
        validate_sha256(sha256)?;
        if bytes.len() as u64 > self.max_bytes {
            return Err(EvidenceError::TooLarge {
                size: bytes.len() as u64,
                limit: self.max_bytes,
            });
        }
        let kind = EvidenceKind::sniff(&bytes).ok_or_else(|| {
            EvidenceError::UnknownContent(hex::encode(&bytes[..bytes.len().min(8)]))
        })?;
        let actual = sha256_hex(&bytes).await?;
        if actual != sha256 {
            return Err(EvidenceError::HashMismatch {
                expected: sha256.to_string(),
                actual,
            });
        }
        let path = location(sha256);
        if self.store.head(&path).await.is_ok() {
            return Ok((PutOutcome::AlreadyStored, kind));
        }
        self.store
            .put(&path, PutPayload::from_bytes(bytes))
            .await
            .map_err(|e| EvidenceError::Backend(e.to_string()))?;
        Ok((PutOutcome::Stored, kind))
    }

    /// The bytes of a blob, if stored.
    pub async fn get(&self, sha256: &str) -> Result<Option<Bytes>, EvidenceError> {
        validate_sha256(sha256)?;
        match self.store.get(&location(sha256)).await {
            Ok(r) => r
                .bytes()
                .await
                .map(Some)
                .map_err(|e| EvidenceError::Backend(e.to_string())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(EvidenceError::Backend(e.to_string())),
        }
    }

    /// Removes a blob (retention, once no finding refers to it). `false` when there was
    /// none.
    pub async fn delete(&self, sha256: &str) -> Result<bool, EvidenceError> {
        validate_sha256(sha256)?;
        match self.store.delete(&location(sha256)).await {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(EvidenceError::Backend(e.to_string())),
        }
    }

    /// Stores a model file under `models/<sha256>.onnx` after checking its hash (model
    /// files share the evidence store's backend, local or S3, not its size limit or
    /// content check: the registry checks them).
    pub async fn put_model(&self, sha256: &str, bytes: Bytes) -> Result<PutOutcome, EvidenceError> {
        validate_sha256(sha256)?;
        let actual = sha256_hex(&bytes).await?;
        if actual != sha256 {
            return Err(EvidenceError::HashMismatch {
                expected: sha256.to_string(),
                actual,
            });
        }
        let path = model_location(sha256);
        if self.store.head(&path).await.is_ok() {
            return Ok(PutOutcome::AlreadyStored);
        }
        self.store
            .put(&path, PutPayload::from_bytes(bytes))
            .await
            .map_err(|e| EvidenceError::Backend(e.to_string()))?;
        Ok(PutOutcome::Stored)
    }

    /// A model file's size, if stored.
    pub async fn model_size(&self, sha256: &str) -> Result<Option<u64>, EvidenceError> {
        validate_sha256(sha256)?;
        match self.store.head(&model_location(sha256)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(EvidenceError::Backend(e.to_string())),
        }
    }

    /// Bytes `range` of a stored model file (served with range requests, so a gateway
    /// on a poor link resumes where it stopped).
    pub async fn model_range(
        &self,
        sha256: &str,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes, EvidenceError> {
        validate_sha256(sha256)?;
        self.store
            .get_range(&model_location(sha256), range)
            .await
            .map_err(|e| EvidenceError::Backend(e.to_string()))
    }

    /// True when a blob is stored.
    pub async fn contains(&self, sha256: &str) -> Result<bool, EvidenceError> {
        validate_sha256(sha256)?;
        match self.store.head(&location(sha256)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(EvidenceError::Backend(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    #[tokio::test]
    async fn blobs_are_stored_by_hash_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = EvidenceStore::local(dir.path(), 1 << 20).unwrap();
        let jpeg = Bytes::from_static(&[0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3]);
        let name = sha(&jpeg);
        assert_eq!(
            store.put(&name, jpeg.clone()).await.unwrap(),
            (PutOutcome::Stored, EvidenceKind::Jpeg)
        );
        assert_eq!(
            store.put(&name, jpeg.clone()).await.unwrap().0,
            PutOutcome::AlreadyStored
        );
        assert_eq!(store.get(&name).await.unwrap().unwrap(), jpeg);
        assert!(store.contains(&name).await.unwrap());
        assert!(dir
            .path()
            .join(&name[..2])
            .join(&name[2..4])
            .join(&name)
            .is_file());
        let other = sha(b"other");
        assert_eq!(store.get(&other).await.unwrap(), None);
        // Large blobs are hashed on a blocking thread, with the same checks.
        let mut big = b"\x89PNG\r\n\x1a\n".to_vec();
        big.resize(HASH_INLINE_MAX * 3, 7);
        let big = Bytes::from(big);
        let err = store.put(&other, big.clone()).await.unwrap_err();
        assert!(matches!(err, EvidenceError::HashMismatch { .. }), "{err}");
        assert_eq!(
            store.put(&sha(&big), big.clone()).await.unwrap(),
            (PutOutcome::Stored, EvidenceKind::Png)
        );
        assert_eq!(
            store.location_of(&name).unwrap(),
            format!("local:{}/{}/{name}", &name[..2], &name[2..4])
        );
    }

    #[tokio::test]
    async fn bad_names_wrong_hashes_sizes_and_contents_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = EvidenceStore::local(dir.path(), 16).unwrap();
        let png = Bytes::from_static(b"\x89PNG\r\n\x1a\nrest");
        for bad in [
            "../../etc/passwd",
            "ABC",
            &"g".repeat(64),
            &sha(&png).to_uppercase(),
        ] {
            assert!(
                matches!(
                    store.put(bad, png.clone()).await,
                    Err(EvidenceError::BadName(_))
                ),
                "{bad}"
            );
            assert!(matches!(
                store.get(bad).await,
                Err(EvidenceError::BadName(_))
            ));
        }
        let err = store.put(&sha(b"x"), png.clone()).await.unwrap_err();
        assert!(matches!(err, EvidenceError::HashMismatch { .. }), "{err}");
        let big = Bytes::from(vec![0xFF; 17]);
        assert!(matches!(
            store.put(&sha(&big), big).await,
            Err(EvidenceError::TooLarge {
                size: 17,
                limit: 16
            })
        ));
        let text = Bytes::from_static(b"hello world");
        let err = store.put(&sha(&text), text).await.unwrap_err();
        assert!(
            err.to_string().contains("not a FLIR radiometric file"),
            "{err}"
        );
        assert_eq!(
            store.put(&sha(&png), png).await.unwrap().1,
            EvidenceKind::Png
        );
        let fff = Bytes::from_static(b"FFF\0seq");
        assert_eq!(EvidenceKind::sniff(&fff), Some(EvidenceKind::Fff));
    }

    #[tokio::test]
    async fn s3_configuration_is_built_without_contacting_anything() {
        let store = EvidenceStore::s3(
            "chitti-evidence",
            Some("eu-west-1"),
            Some("http://127.0.0.1:9"),
            1 << 20,
        )
        .unwrap();
        assert_eq!(store.backend(), "s3");
        // Nothing listens on port 9: a clear backend error, not a panic.
        let err = store.contains(&sha(b"x")).await.unwrap_err();
        assert!(matches!(err, EvidenceError::Backend(_)), "{err}");
    }
}
