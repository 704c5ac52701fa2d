//! Backups that have been restored: `chitti-hub backup --to DIR`, `backup verify DIR`,
//! `restore --from DIR [--force]`.
//!
//! A backup folder holds the database (`chitti.db`, a consistent SQLite copy; or
//! `chitti.pgdump`, a `pg_dump` custom-format archive), the evidence folder's files
//! (`evidence/`, with `evidence.sha256` in `sha256sum -c` format), the configuration
//! file and the hub's ack-signing key (`config/`), and `manifest.json`, written last:
//! a folder without one is an unfinished backup.
//!
//! Consistency while ingest runs:
//! - SQLite: `VACUUM INTO` copies one read transaction's snapshot (WAL mode lets
//!   writers go on). The online backup API was not used: stepping it while another
//!   connection writes restarts it, so under steady ingest it may never finish. The
//!   manifest's counts and audit head are read from the copy itself.
//! - Postgres: a `REPEATABLE READ` transaction exports its snapshot; the counts and the
//!   audit head are read in it and `pg_dump --snapshot` dumps exactly that state.
//!
//! Everything committed (and so acknowledged to a gateway) before the backup started is
//! in it. Evidence is copied after the database snapshot; blobs are immutable and
//! written before their rows, so every evidence row in the snapshot has its file.
//! Evidence in S3 is not copied (bucket versioning or replication keeps it); the
//! manifest says so.

use crate::config::{EvidenceBackend, HubConfig};
use crate::store::{AnyStore, AuditLog, Backed, Db, SqliteStore, StoreError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The manifest's file name.
pub const MANIFEST: &str = "manifest.json";
/// The manifest format this build writes and reads.
pub const FORMAT: u32 = 1;
/// The SQLite copy's file name.
pub const SQLITE_FILE: &str = "chitti.db";
/// The Postgres archive's file name.
pub const PG_DUMP_FILE: &str = "chitti.pgdump";
/// The evidence folder in a backup.
pub const EVIDENCE_DIR: &str = "evidence";
/// The evidence checksums (`<sha256>  <path>` lines, `sha256sum -c` format).
pub const EVIDENCE_SUMS: &str = "evidence.sha256";
/// The configuration folder in a backup.
pub const CONFIG_DIR: &str = "config";

/// The tables counted in a manifest: every table that holds fleet data or accounts.
pub const COUNTED_TABLES: &[&str] = &[
    "users",
    "api_tokens",
    "sessions",
    "sites",
    "structures",
    "assets",
    "gateways",
    "cameras",
    "findings",
    "alerts",
    "alert_events",
    "alert_transitions",
    "notifications",
    "dead_letters",
    "evidence",
    "telemetry_minutes",
    "audit_log",
    "gateway_configs",
    "models",
    "rollouts",
];

/// Tables whose rows make a store "not empty" for `restore` (what losing would hurt).
const PRECIOUS_TABLES: &[&str] = &["users", "gateways", "sites", "findings", "audit_log"];

/// What went wrong with a backup or a restore.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// Which.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The database refused.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The folder to back up into has files in it.
    #[error("backup folder {0} is not empty: back up into a new folder")]
    TargetNotEmpty(String),
    /// The store to restore into holds data.
    #[error(
        "the store {store} holds data ({what}): restore refuses to overwrite it without --force"
    )]
    StoreNotEmpty {
        /// Which store.
        store: String,
        /// What is in it.
        what: String,
    },
    /// `pg_dump` or `pg_restore` failed or is missing.
    #[error("{tool}: {detail}")]
    Tool {
        /// The program.
        tool: &'static str,
        /// What it said.
        detail: String,
    },
    /// The backup does not match its manifest (or has none).
    #[error("backup {dir} is not intact:\n  {}", problems.join("\n  "))]
    NotIntact {
        /// The folder.
        dir: String,
        /// What is wrong, one line each.
        problems: Vec<String>,
    },
    /// The backup is of the other engine than the configured store.
    #[error("the backup is of a {backup} store but this hub is configured for {configured}")]
    WrongEngine {
        /// The backup's engine.
        backup: String,
        /// The configured engine.
        configured: &'static str,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What a backup holds, written last into its folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// When the backup started (hub clock).
    pub created_at: DateTime<Utc>,
    /// The hub version that made it.
    pub hub_version: String,
    /// The database copy.
    pub database: FileEntry,
    /// `sqlite` or `postgres`.
    pub engine: String,
    /// Rows per table in the snapshot.
    pub counts: BTreeMap<String, u64>,
    /// The audit chain's head in the snapshot.
    pub audit_head: AuditHead,
    /// The evidence copied: `local` (files under `evidence/`) or `s3` (not copied).
    pub evidence_backend: String,
    /// Evidence files copied.
    pub evidence_files: u64,
    /// Their bytes.
    pub evidence_bytes: u64,
    /// SHA-256 of `evidence.sha256`.
    pub evidence_sums_sha256: String,
    /// Configuration files copied (the configuration file, the hub key).
    pub config_files: Vec<FileEntry>,
}

/// A file in the backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Its path in the backup folder.
    pub path: String,
    /// Its size.
    pub bytes: u64,
    /// Its SHA-256 (hex).
    pub sha256: String,
}

/// The audit chain's head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditHead {
    /// Its seq.
    pub seq: i64,
    /// Its hash.
    pub hash: String,
}

/// Backs the configured hub up into `to` (created; must be empty or missing).
/// `config_file` is the configuration file the hub runs with, copied alongside.
pub async fn create(
    config: &HubConfig,
    config_file: Option<&Path>,
    to: &Path,
) -> Result<Manifest, BackupError> {
    if to.exists() {
        let mut entries = std::fs::read_dir(to).map_err(io(to))?;
        if entries.next().is_some() {
            return Err(BackupError::TargetNotEmpty(to.display().to_string()));
        }
    }
    std::fs::create_dir_all(to).map_err(io(to))?;
    let created_at = Utc::now();
    let store = open(config, false).await?;
    let (database, counts, audit_head) = match &store {
        AnyStore::Sqlite(db) => sqlite_snapshot(db, &to.join(SQLITE_FILE)).await?,
        AnyStore::Postgres(db) => {
            postgres_snapshot(db.pool(), &config.store_url(), &to.join(PG_DUMP_FILE)).await?
        }
    };
    let engine = engine_of(&store).to_string();
    store.close().await;
    let (evidence_files, evidence_bytes, evidence_sums_sha256) = match config.evidence.backend {
        EvidenceBackend::Local => {
            let from = config.evidence_dir();
            let to = to.to_path_buf();
            tokio::task::spawn_blocking(move || copy_evidence(&from, &to))
                .await
                .map_err(|e| BackupError::Tool {
                    tool: "evidence copy",
                    detail: e.to_string(),
                })??
        }
        _ => {
            write_file(&to.join(EVIDENCE_SUMS), b"")?;
            (0, 0, hex::encode(Sha256::digest(b"")))
        }
    };
    let mut config_files = Vec::new();
    let config_dir = to.join(CONFIG_DIR);
    std::fs::create_dir_all(&config_dir).map_err(io(&config_dir))?;
    let key = crate::hub_key::path(config);
    for (source, name) in [
        (config_file.map(Path::to_path_buf), "hub.toml"),
        (Some(key).filter(|k| k.exists()), "hub-key"),
    ] {
        let Some(source) = source else { continue };
        let bytes = std::fs::read(&source).map_err(io(&source))?;
        let path = format!("{CONFIG_DIR}/{name}");
        write_file(&to.join(&path), &bytes)?;
        config_files.push(FileEntry {
            path,
            bytes: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(&bytes)),
        });
    }
    let manifest = Manifest {
        format: FORMAT,
        created_at,
        hub_version: env!("CARGO_PKG_VERSION").to_string(),
        database,
        engine,
        counts,
        audit_head,
        evidence_backend: match config.evidence.backend {
            EvidenceBackend::Local => "local".into(),
            _ => "s3".into(),
        },
        evidence_files,
        evidence_bytes,
        evidence_sums_sha256,
        config_files,
    };
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::Tool {
        tool: "manifest",
        detail: e.to_string(),
    })?;
    // Written last, by rename: a folder with a manifest is a finished backup.
    let partial = to.join(format!("{MANIFEST}.partial"));
    write_file(&partial, &text)?;
    std::fs::rename(&partial, to.join(MANIFEST)).map_err(io(to))?;
    Ok(manifest)
}

/// The configured store, migrated or as it is.
async fn open(config: &HubConfig, migrate: bool) -> Result<AnyStore, BackupError> {
    let opened = if migrate {
        crate::serve::open_store(config).await
    } else {
        crate::serve::open_store_unmigrated(config).await
    };
    opened.map_err(|e| match e {
        crate::serve::ServeError::Store(s) => BackupError::Store(s),
        other => BackupError::Tool {
            tool: "store",
            detail: other.to_string(),
        },
    })
}

fn engine_of(store: &AnyStore) -> &'static str {
    match store.db() {
        Db::Sqlite(_) => "sqlite",
        Db::Postgres(_) => "postgres",
    }
}

/// `VACUUM INTO` the copy, then counts and the audit head read from the copy.
async fn sqlite_snapshot(
    db: &SqliteStore,
    copy: &Path,
) -> Result<(FileEntry, BTreeMap<String, u64>, AuditHead), BackupError> {
    let target = copy.display().to_string().replace('\'', "''");
    sqlx::query(&format!("VACUUM INTO '{target}'"))
        .execute(db.pool())
        .await
        .map_err(|e| BackupError::Store(StoreError::Database(e)))?;
    // It holds password hashes: as private as the hub key.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(copy, std::fs::Permissions::from_mode(0o600)).map_err(io(copy))?;
    }
    let database = file_entry(copy, SQLITE_FILE)?;
    let snapshot = SqliteStore::open_read_only(copy).await?;
    let (counts, head) = counts_and_head(snapshot.db()).await?;
    snapshot.close().await;
    Ok((database, counts, head))
}

/// A snapshot exported from a `REPEATABLE READ` transaction: counts and head read in
/// it, `pg_dump --snapshot` of it.
async fn postgres_snapshot(
    pool: &sqlx::PgPool,
    url: &str,
    dump: &Path,
) -> Result<(FileEntry, BTreeMap<String, u64>, AuditHead), BackupError> {
    use sqlx::Row as _;
    let db_err = |e| BackupError::Store(StoreError::Database(e));
    let mut tx = pool.begin().await.map_err(db_err)?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    let snapshot: String = sqlx::query("SELECT pg_export_snapshot() AS id")
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?
        .try_get("id")
        .map_err(db_err)?;
    let mut counts = BTreeMap::new();
    for table in COUNTED_TABLES {
        let n: i64 = sqlx::query(&format!("SELECT count(*) AS n FROM {table}"))
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?
            .try_get("n")
            .map_err(db_err)?;
        counts.insert((*table).to_string(), n as u64);
    }
    let head = sqlx::query("SELECT seq, hash FROM audit_chain_head WHERE id = 1")
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
    let head = AuditHead {
        seq: head.try_get("seq").map_err(db_err)?,
        hash: head.try_get("hash").map_err(db_err)?,
    };
    let args = vec![
        "--format=custom".to_string(),
        format!("--snapshot={snapshot}"),
        format!("--file={}", dump.display()),
        format!("--dbname={}", libpq_url(url)),
    ];
    run_tool("pg_dump", args).await?;
    tx.commit().await.map_err(db_err)?;
    Ok((file_entry(dump, PG_DUMP_FILE)?, counts, head))
}

/// `url` as libpq reads it: without sqlx's own parameter.
fn libpq_url(url: &str) -> String {
    match url.split_once('?') {
        None => url.to_string(),
        Some((base, query)) => {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|kv| !kv.starts_with("statement-cache-capacity"))
                .collect();
            if kept.is_empty() {
                base.to_string()
            } else {
                format!("{base}?{}", kept.join("&"))
            }
        }
    }
}

async fn run_tool(tool: &'static str, args: Vec<String>) -> Result<String, BackupError> {
    let output =
        tokio::task::spawn_blocking(move || std::process::Command::new(tool).args(&args).output())
            .await
            .map_err(|e| BackupError::Tool {
                tool,
                detail: e.to_string(),
            })?
            .map_err(|e| BackupError::Tool {
                tool,
                detail: if e.kind() == std::io::ErrorKind::NotFound {
                    format!("not found on PATH (install the PostgreSQL client tools): {e}")
                } else {
                    e.to_string()
                },
            })?;
    if !output.status.success() {
        return Err(BackupError::Tool {
            tool,
            detail: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Rows per counted table, and the audit head.
async fn counts_and_head(db: Db<'_>) -> Result<(BTreeMap<String, u64>, AuditHead), BackupError> {
    let mut counts = BTreeMap::new();
    for table in COUNTED_TABLES {
        counts.insert((*table).to_string(), db.count_rows(table).await?);
    }
    let (seq, hash) = db.audit_head().await?;
    Ok((counts, AuditHead { seq, hash }))
}

/// Copies every file of the evidence folder into `to/evidence`, hashing as it goes;
/// writes `evidence.sha256`. Returns (files, bytes, SHA-256 of the sums file).
fn copy_evidence(from: &Path, to: &Path) -> Result<(u64, u64, String), BackupError> {
    let mut sums = Vec::new();
    let (mut files, mut bytes) = (0u64, 0u64);
    if from.exists() {
        for rel in walk(from)? {
            let source = from.join(&rel);
            let target = to.join(EVIDENCE_DIR).join(&rel);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            let (size, sha) = copy_hashing(&source, &target)?;
            sums.push(format!("{sha}  {EVIDENCE_DIR}/{}", rel_text(&rel)));
            files += 1;
            bytes += size;
        }
    }
    sums.sort();
    let text = if sums.is_empty() {
        String::new()
    } else {
        sums.join("\n") + "\n"
    };
    write_file(&to.join(EVIDENCE_SUMS), text.as_bytes())?;
    Ok((files, bytes, hex::encode(Sha256::digest(text.as_bytes()))))
}

/// Every file under `root`, relative, sorted; skips the evidence store's in-progress
/// uploads (`name#n`), which become a blob only by their final rename.
fn walk(root: &Path) -> Result<Vec<PathBuf>, BackupError> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let name = entry.file_name();
            let kind = entry.file_type().map_err(io(&entry.path()))?;
            let child = rel.join(&name);
            if kind.is_dir() {
                stack.push(child);
            } else if kind.is_file() && !name.to_string_lossy().contains('#') {
                out.push(child);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn rel_text(rel: &Path) -> String {
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// Copies `from` to `to`, returning (bytes, SHA-256 hex) of what was copied.
fn copy_hashing(from: &Path, to: &Path) -> Result<(u64, String), BackupError> {
    let mut output = std::fs::File::create(to).map_err(io(to))?;
    let hashed = read_hashing(from, |chunk| output.write_all(chunk).map_err(io(to)))?;
    output.sync_all().map_err(io(to))?;
    Ok(hashed)
}

/// (bytes, SHA-256 hex) of a file.
fn hash_file(path: &Path) -> Result<(u64, String), BackupError> {
    read_hashing(path, |_| Ok(()))
}

/// Reads `path` through, handing each chunk to `each`; (bytes, SHA-256 hex).
fn read_hashing(
    path: &Path,
    mut each: impl FnMut(&[u8]) -> Result<(), BackupError>,
) -> Result<(u64, String), BackupError> {
    let mut input = std::fs::File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = input.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        each(&buf[..n])?;
        total += n as u64;
    }
    Ok((total, hex::encode(hasher.finalize())))
}

fn file_entry(path: &Path, name: &str) -> Result<FileEntry, BackupError> {
    let (bytes, sha256) = hash_file(path)?;
    Ok(FileEntry {
        path: name.to_string(),
        bytes,
        sha256,
    })
}

/// Writes and fsyncs a file (private: the hub key is in a backup).
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// What `backup verify` checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The manifest.
    pub manifest: Manifest,
    /// What was checked, one line each (for the operator).
    pub checked: Vec<String>,
}

/// Checks a backup folder against its manifest: every file's size and hash, the
/// evidence files against their names' hashes and `evidence.sha256`, and (SQLite) the
/// copy's row counts and audit chain. An unfinished or damaged backup is
/// [`BackupError::NotIntact`] listing every problem.
pub async fn verify(dir: &Path) -> Result<Verified, BackupError> {
    let not_intact = |problems: Vec<String>| BackupError::NotIntact {
        dir: dir.display().to_string(),
        problems,
    };
    let manifest_path = dir.join(MANIFEST);
    if !manifest_path.exists() {
        return Err(not_intact(vec![format!(
            "no {MANIFEST}: the backup did not finish"
        )]));
    }
    let text = std::fs::read(&manifest_path).map_err(io(&manifest_path))?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .map_err(|e| not_intact(vec![format!("{MANIFEST} is not a manifest: {e}")]))?;
    if manifest.format != FORMAT {
        return Err(not_intact(vec![format!(
            "manifest format {} (this hub reads {FORMAT})",
            manifest.format
        )]));
    }
    let mut problems = Vec::new();
    let mut checked = Vec::new();
    for entry in std::iter::once(&manifest.database).chain(&manifest.config_files) {
        let path = dir.join(&entry.path);
        match hash_file(&path) {
            Ok((bytes, sha)) if bytes == entry.bytes && sha == entry.sha256 => {
                checked.push(format!("{}: {} bytes, sha256 ok", entry.path, bytes));
            }
            Ok((bytes, sha)) => problems.push(format!(
                "{}: {bytes} bytes, sha256 {sha}; the manifest says {} bytes, {}",
                entry.path, entry.bytes, entry.sha256
            )),
            Err(e) => problems.push(e.to_string()),
        }
    }
    let dir_owned = dir.to_path_buf();
    let expected = (manifest.evidence_files, manifest.evidence_bytes);
    let sums_sha = manifest.evidence_sums_sha256.clone();
    let evidence = tokio::task::spawn_blocking(move || check_evidence(&dir_owned, &sums_sha))
        .await
        .map_err(|e| BackupError::Tool {
            tool: "evidence check",
            detail: e.to_string(),
        })?;
    match evidence {
        Ok((files, bytes, mut found)) => {
            if (files, bytes) != expected {
                found.push(format!(
                    "evidence: {files} files, {bytes} bytes; the manifest says {} files, {} bytes",
                    expected.0, expected.1
                ));
            }
            if found.is_empty() {
                checked.push(format!(
                    "evidence: {files} files, {bytes} bytes, every sha256 ok"
                ));
            }
            problems.extend(found);
        }
        Err(e) => problems.push(e.to_string()),
    }
    if manifest.engine == "sqlite" && problems.is_empty() {
        problems.extend(check_sqlite_copy(dir, &manifest, &mut checked).await?);
    } else if manifest.engine == "postgres" && problems.is_empty() {
        let listing = run_tool(
            "pg_restore",
            vec![
                "--list".into(),
                dir.join(PG_DUMP_FILE).display().to_string(),
            ],
        )
        .await;
        match listing {
            Ok(list) => checked.push(format!(
                "{PG_DUMP_FILE}: a readable archive of {} entries (row counts are checked on restore)",
                list.lines().filter(|l| !l.starts_with(';') && !l.is_empty()).count()
            )),
            Err(e) => problems.push(e.to_string()),
        }
    }
    if problems.is_empty() {
        Ok(Verified { manifest, checked })
    } else {
        Err(not_intact(problems))
    }
}

/// (files, bytes, problems) of the evidence copy.
fn check_evidence(dir: &Path, sums_sha: &str) -> Result<(u64, u64, Vec<String>), BackupError> {
    let sums_path = dir.join(EVIDENCE_SUMS);
    let text = std::fs::read_to_string(&sums_path).map_err(io(&sums_path))?;
    let mut problems = Vec::new();
    if hex::encode(Sha256::digest(text.as_bytes())) != sums_sha {
        problems.push(format!("{EVIDENCE_SUMS} differs from the manifest's hash"));
    }
    let (mut files, mut bytes) = (0u64, 0u64);
    let mut listed = std::collections::HashSet::new();
    for line in text.lines() {
        let Some((sha, path)) = line.split_once("  ") else {
            problems.push(format!("{EVIDENCE_SUMS}: unreadable line {line:?}"));
            continue;
        };
        listed.insert(path.to_string());
        match hash_file(&dir.join(path)) {
            Ok((size, actual)) if actual == sha => {
                // A blob is named by its hash: the name must agree too.
                let name = path.rsplit('/').next().unwrap_or("");
                let name = name.strip_suffix(".onnx").unwrap_or(name);
                if name.len() == 64 && name != actual {
                    problems.push(format!("{path}: its content's sha256 is {actual}"));
                }
                files += 1;
                bytes += size;
            }
            Ok((_, actual)) => problems.push(format!(
                "{path}: sha256 {actual}, {EVIDENCE_SUMS} says {sha}"
            )),
            Err(e) => problems.push(e.to_string()),
        }
    }
    let root = dir.join(EVIDENCE_DIR);
    if root.exists() {
        for rel in walk(&root)? {
            let path = format!("{EVIDENCE_DIR}/{}", rel_text(&rel));
            if !listed.contains(&path) {
                problems.push(format!("{path}: not in {EVIDENCE_SUMS}"));
            }
        }
    }
    Ok((files, bytes, problems))
}

/// The SQLite copy's counts and audit chain against the manifest.
async fn check_sqlite_copy(
    dir: &Path,
    manifest: &Manifest,
    checked: &mut Vec<String>,
) -> Result<Vec<String>, BackupError> {
    let copy = SqliteStore::open_read_only(&dir.join(SQLITE_FILE)).await?;
    let mut problems = Vec::new();
    let (counts, head) = counts_and_head(copy.db()).await?;
    if counts != manifest.counts {
        problems.push(format!(
            "row counts differ from the manifest: {}",
            differences(&manifest.counts, &counts)
        ));
    } else {
        checked.push(format!(
            "{SQLITE_FILE}: row counts as in the manifest ({} findings, {} audit entries)",
            counts.get("findings").unwrap_or(&0),
            counts.get("audit_log").unwrap_or(&0)
        ));
    }
    if head != manifest.audit_head {
        problems.push(format!(
            "audit head seq {} differs from the manifest's seq {}",
            head.seq, manifest.audit_head.seq
        ));
    }
    let chain = copy.verify_audit_chain().await?;
    if chain.is_intact() {
        checked.push(format!("audit chain intact ({} entries)", chain.rows));
    } else {
        for p in &chain.problems {
            problems.push(format!("audit chain: seq {:?}: {}", p.seq, p.what));
        }
    }
    copy.close().await;
    Ok(problems)
}

fn differences(want: &BTreeMap<String, u64>, got: &BTreeMap<String, u64>) -> String {
    let keys: std::collections::BTreeSet<&String> = want.keys().chain(got.keys()).collect();
    keys.into_iter()
        .filter(|k| want.get(*k) != got.get(*k))
        .map(|k| {
            format!(
                "{k} {} (manifest {})",
                got.get(k).map_or("-".into(), u64::to_string),
                want.get(k).map_or("-".into(), u64::to_string)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What `restore` did.
#[derive(Debug, Clone, PartialEq)]
pub struct Restored {
    /// The backup's manifest.
    pub manifest: Manifest,
    /// What was done, one line each.
    pub done: Vec<String>,
}

/// Restores a verified backup into the configured store and evidence folder. Refuses
/// a store holding data unless `force`. The hub must not be running. The restored
/// store is migrated (a backup of an older hub is brought up to date), its counts
/// compared with the manifest and its audit chain verified.
pub async fn restore(
    config: &HubConfig,
    from: &Path,
    force: bool,
) -> Result<Restored, BackupError> {
    let verified = verify(from).await?;
    let manifest = verified.manifest;
    let configured = if config.store.url.is_some() && !config.store_url().starts_with("sqlite") {
        "postgres"
    } else {
        "sqlite"
    };
    if manifest.engine != configured {
        return Err(BackupError::WrongEngine {
            backup: manifest.engine.clone(),
            configured,
        });
    }
    let mut done = Vec::new();
    let store = open(config, false).await?;
    let held = precious_rows(store.db()).await?;
    if !held.is_empty() && !force {
        return Err(BackupError::StoreNotEmpty {
            store: describe_store(config),
            what: held.join(", "),
        });
    }
    match &store {
        AnyStore::Sqlite(_) => {
            store.close().await;
            let target = sqlite_path(config);
            let staging = target.with_extension("db.restoring");
            copy_hashing(&from.join(SQLITE_FILE), &staging)?;
            for suffix in ["-wal", "-shm"] {
                let side = PathBuf::from(format!("{}{suffix}", target.display()));
                if side.exists() {
                    std::fs::remove_file(&side).map_err(io(&side))?;
                }
            }
            std::fs::rename(&staging, &target).map_err(io(&target))?;
            done.push(format!("database restored to {}", target.display()));
        }
        AnyStore::Postgres(_) => {
            store.close().await;
            run_tool(
                "pg_restore",
                vec![
                    "--clean".into(),
                    "--if-exists".into(),
                    "--no-owner".into(),
                    "--single-transaction".into(),
                    "--exit-on-error".into(),
                    format!("--dbname={}", libpq_url(&config.store_url())),
                    from.join(PG_DUMP_FILE).display().to_string(),
                ],
            )
            .await?;
            done.push(format!("database restored into {}", describe_store(config)));
        }
    }
    if manifest.evidence_backend == "local" {
        let (source, target) = (from.join(EVIDENCE_DIR), config.evidence_dir());
        let n = tokio::task::spawn_blocking(move || restore_evidence(&source, &target))
            .await
            .map_err(|e| BackupError::Tool {
                tool: "evidence copy",
                detail: e.to_string(),
            })??;
        done.push(format!(
            "evidence: {n} files copied into {}",
            config.evidence_dir().display()
        ));
    } else {
        done.push("evidence is in S3: not part of the backup, nothing copied".into());
    }
    let key = crate::hub_key::path(config);
    let backed_up_key = from.join(CONFIG_DIR).join("hub-key");
    if backed_up_key.exists() {
        if key.exists() {
            done.push(format!(
                "hub key kept at {} (the backup's is {})",
                key.display(),
                backed_up_key.display()
            ));
        } else {
            let bytes = std::fs::read(&backed_up_key).map_err(io(&backed_up_key))?;
            if let Some(parent) = key.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            write_file(&key, &bytes)?;
            done.push(format!("hub key restored to {}", key.display()));
        }
    }
    // The restored store as the hub will see it.
    let store = open(config, true).await?;
    let (counts, _) = counts_and_head(store.db()).await?;
    let chain = store.verify_audit_chain().await?;
    store.close().await;
    let mut problems = Vec::new();
    if counts != manifest.counts {
        problems.push(format!(
            "restored row counts differ from the manifest: {}",
            differences(&manifest.counts, &counts)
        ));
    }
    if !chain.is_intact() || chain.head_seq < manifest.audit_head.seq {
        problems.push(format!(
            "restored audit chain: {} problems, head seq {} (manifest {})",
            chain.problem_count, chain.head_seq, manifest.audit_head.seq
        ));
    }
    if !problems.is_empty() {
        return Err(BackupError::NotIntact {
            dir: describe_store(config),
            problems,
        });
    }
    done.push(format!(
        "row counts as in the manifest; audit chain intact ({} entries)",
        chain.rows
    ));
    Ok(Restored { manifest, done })
}

/// "N users, M findings …" of the tables that make a store worth keeping.
async fn precious_rows(db: Db<'_>) -> Result<Vec<String>, BackupError> {
    let mut held = Vec::new();
    for table in PRECIOUS_TABLES {
        // A store never migrated has no tables: empty.
        if !db.has_table(table).await? {
            continue;
        }
        let n = db.count_rows(table).await?;
        if n > 0 {
            held.push(format!("{n} {table}"));
        }
    }
    Ok(held)
}

fn sqlite_path(config: &HubConfig) -> PathBuf {
    match config.store.url.as_deref().and_then(sqlite_url_path) {
        Some(p) => p,
        None => config.data_dir.join(SQLITE_FILE),
    }
}

/// The file a `sqlite:` URL names.
fn sqlite_url_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

fn describe_store(config: &HubConfig) -> String {
    match &config.store.url {
        Some(url) if !url.starts_with("sqlite") => {
            // Never print a password.
            match url.split_once('@') {
                Some((_, host)) => format!("postgres://…@{host}"),
                None => url.clone(),
            }
        }
        _ => sqlite_path(config).display().to_string(),
    }
}

/// Copies the backup's evidence files into the evidence folder; a blob already there
/// with the same size is kept (content-addressed). Returns how many were copied.
fn restore_evidence(from: &Path, to: &Path) -> Result<u64, BackupError> {
    if !from.exists() {
        return Ok(0);
    }
    let mut copied = 0;
    for rel in walk(from)? {
        let (source, target) = (from.join(&rel), to.join(&rel));
        let same = match (std::fs::metadata(&source), std::fs::metadata(&target)) {
            (Ok(a), Ok(b)) => a.len() == b.len(),
            _ => false,
        };
        if same {
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        copy_hashing(&source, &target)?;
        copied += 1;
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_url_path("sqlite:///var/lib/chitti/hub.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/chitti/hub.db"))
        );
        assert_eq!(
            sqlite_url_path("sqlite:data/hub.db"),
            Some(PathBuf::from("data/hub.db"))
        );
        assert_eq!(sqlite_url_path("sqlite::memory:"), None);
        assert_eq!(sqlite_url_path("postgres://x/y"), None);
    }

    #[test]
    fn libpq_gets_the_url_without_sqlx_parameters() {
        assert_eq!(
            libpq_url("postgres://u:p@h/db?statement-cache-capacity=0&sslmode=require"),
            "postgres://u:p@h/db?sslmode=require"
        );
        assert_eq!(libpq_url("postgres://h/db"), "postgres://h/db");
    }
}
