//! The restore drill, on both stores, through the real command line: findings are
//! ingested while `chitti-hub backup` runs; the store and evidence are destroyed;
//! `chitti-hub restore` brings back every finding committed (so acknowledged) before the
//! backup started, the manifest's counts, the evidence byte for byte and an intact audit
//! chain. Also: `backup verify` catches a damaged or unfinished backup, and `restore`
//! refuses a store holding data without `--force`.

mod support;

use chitti_hub::backup::{Manifest, EVIDENCE_DIR, MANIFEST};
use chitti_hub::config::HubConfig;
use chitti_hub::store::prelude::*;
use chitti_hub::store::{AnyStore, AuditEvent, EvidenceRecord, NewUser, Role};
use chitti_test_support::ScratchPostgres;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use support::{finding, ingested};
use uuid::Uuid;

/// Findings per ingested batch.
const BATCH: usize = 25;
/// Batches committed before the backup starts.
const BATCHES_BEFORE: usize = 12;
/// Evidence blobs.
const BLOBS: usize = 5;

/// Runs `chitti-hub` with `args`: (success, stdout, stderr).
async fn hub(args: &[&str]) -> (bool, String, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_chitti-hub"))
            .args(&args)
            .output()
            .expect("run chitti-hub");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

/// The hub's configuration for the drill: `data` for the data folder (SQLite and
/// evidence), `url` for Postgres.
fn write_config(dir: &Path, url: Option<&str>) -> PathBuf {
    let mut text = format!("version = 1\ndata_dir = {:?}\n", dir.join("data"));
    if let Some(url) = url {
        text.push_str(&format!("[store]\nurl = {url:?}\n"));
    }
    let path = dir.join("hub.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A hub's data folder, configuration and migrated store (Postgres: a scratch database).
struct Drill {
    dir: tempfile::TempDir,
    _scratch: Option<ScratchPostgres>,
    config_file: PathBuf,
    config: HubConfig,
    store: AnyStore,
}

impl Drill {
    async fn new(backend: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let scratch = match backend {
            "postgres" => Some(ScratchPostgres::create("chitti_drill").await),
            _ => None,
        };
        let config_file = write_config(dir.path(), scratch.as_ref().map(|s| s.url.as_str()));
        let config = HubConfig::load(&config_file).unwrap();
        let store = chitti_hub::serve::open_store(&config).await.unwrap();
        Self {
            dir,
            _scratch: scratch,
            config_file,
            config,
            store,
        }
    }
}

async fn seed(store: &AnyStore, config: &HubConfig) -> Vec<(String, Vec<u8>)> {
    store
        .add_user(&NewUser {
            username: "ada".into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            role: Role::Admin,
        })
        .await
        .unwrap();
    store
        .audit(&AuditEvent {
            at: chrono::Utc::now(),
            actor: "ada".into(),
            action: "user.add".into(),
            target: "ada".into(),
            from_address: Some("10.0.0.1".into()),
            detail: serde_json::json!({"role": "admin"}),
        })
        .await
        .unwrap();
    chitti_hub::hub_key::load_or_create(&chitti_hub::hub_key::path(config)).unwrap();
    let mut blobs = Vec::new();
    for i in 0..BLOBS {
        let bytes: Vec<u8> = (0..1000 + i * 777).map(|b| (b * 31 + i) as u8).collect();
        let sha = hex::encode(Sha256::digest(&bytes));
        let path = config
            .evidence_dir()
            .join(&sha[..2])
            .join(&sha[2..4])
            .join(&sha);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        store
            .record_evidence(&EvidenceRecord {
                sha256: sha.clone(),
                size: bytes.len() as u64,
                content_type: "image/jpeg".into(),
                location: format!("{}/{}/{sha}", &sha[..2], &sha[2..4]),
                created_at: chrono::Utc::now(),
            })
            .await
            .unwrap();
        blobs.push((sha, bytes));
    }
    blobs
}

/// Removes everything the hub keeps: the data folder and (Postgres) every table.
async fn destroy(store: AnyStore, dir: &Path) {
    if let AnyStore::Postgres(db) = &store {
        sqlx::query("DROP SCHEMA public CASCADE")
            .execute(db.pool())
            .await
            .unwrap();
        sqlx::query("CREATE SCHEMA public")
            .execute(db.pool())
            .await
            .unwrap();
    }
    store.close().await;
    std::fs::remove_dir_all(dir.join("data")).unwrap();
}

async fn all_finding_ids(store: &AnyStore) -> HashSet<Uuid> {
    let ids: Vec<Uuid> = match store {
        AnyStore::Sqlite(db) => sqlx::query_scalar("SELECT id FROM findings")
            .fetch_all(db.pool())
            .await
            .unwrap(),
        AnyStore::Postgres(db) => sqlx::query_scalar("SELECT id FROM findings")
            .fetch_all(db.pool())
            .await
            .unwrap(),
    };
    ids.into_iter().collect()
}

async fn a_backup_taken_while_ingesting_restores_everything_acknowledged_before_it(backend: &str) {
    let Drill {
        dir,
        _scratch,
        config_file,
        config,
        store,
    } = Drill::new(backend).await;
    let blobs = seed(&store, &config).await;

    // Ingest runs until told to stop; each batch's ids are "acknowledged" once the
    // insert returned (the hub acks only after its commit).
    let acked: Arc<Mutex<Vec<Uuid>>> = Arc::default();
    let (count_tx, mut count_rx) = tokio::sync::watch::channel(0usize);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ingest = {
        let (store, acked) = (store.clone(), acked.clone());
        tokio::spawn(async move {
            let mut batches = 0;
            while !*stop_rx.borrow() {
                let findings: Vec<_> = (0..BATCH)
                    .map(|i| finding(Uuid::now_v7(), 1 + (i % 3) as u8, 60.0, i as i64))
                    .collect();
                store
                    .insert_findings(&ingested(&findings, chrono::Utc::now()))
                    .await
                    .unwrap();
                acked.lock().unwrap().extend(findings.iter().map(|f| f.id));
                batches += 1;
                count_tx.send_replace(batches);
            }
            batches
        })
    };
    count_rx.wait_for(|n| *n >= BATCHES_BEFORE).await.unwrap();
    let before_backup: Vec<Uuid> = acked.lock().unwrap().clone();
    let backup = dir.path().join("backup");
    let (config_arg, backup_arg) = (
        config_file.display().to_string(),
        backup.display().to_string(),
    );
    let (ok, out, err) = hub(&["backup", "--config", &config_arg, "--to", &backup_arg]).await;
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("backup written to"), "{out}");
    // Ingest went on while the backup ran (or at least is still running now).
    stop_tx.send_replace(true);
    let batches = ingest.await.unwrap();
    assert!(batches > BATCHES_BEFORE);
    let total_acked = acked.lock().unwrap().len();

    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(backup.join(MANIFEST)).unwrap()).unwrap();
    assert_eq!(manifest.engine, backend);
    let in_backup = manifest.counts["findings"] as usize;
    assert!(
        in_backup >= before_backup.len() && in_backup <= total_acked,
        "{in_backup} findings in the backup; {} acked before it, {total_acked} in all",
        before_backup.len()
    );
    assert_eq!(in_backup % BATCH, 0, "a batch is all or nothing");
    assert_eq!(manifest.evidence_files, BLOBS as u64);
    assert_eq!(manifest.counts["users"], 1);
    let (ok, out, err) = hub(&["backup", "verify", &backup_arg]).await;
    assert!(ok && out.contains("intact"), "{out}\n{err}");

    destroy(store, dir.path()).await;
    let (ok, out, err) = hub(&["restore", "--config", &config_arg, "--from", &backup_arg]).await;
    assert!(ok, "{out}\n{err}");

    let store = chitti_hub::serve::open_store(&config).await.unwrap();
    let restored = all_finding_ids(&store).await;
    assert_eq!(restored.len(), in_backup);
    let missing = before_backup
        .iter()
        .filter(|id| !restored.contains(id))
        .count();
    assert_eq!(
        missing, 0,
        "findings acknowledged before the backup are missing"
    );
    for (sha, bytes) in &blobs {
        let path = config
            .evidence_dir()
            .join(&sha[..2])
            .join(&sha[2..4])
            .join(sha);
        assert_eq!(&std::fs::read(&path).unwrap(), bytes, "{sha}");
        assert!(store.evidence(sha).await.unwrap().is_some());
    }
    let chain = store.verify_audit_chain().await.unwrap();
    assert!(chain.is_intact(), "{chain:?}");
    let log = store.list_audit(10).await.unwrap();
    assert_eq!(
        log[0].event.action, "backup.restore",
        "the restore is audited"
    );
    assert!(store.user_by_username("ada").await.unwrap().is_some());
    assert!(
        chitti_hub::hub_key::path(&config).exists(),
        "the hub key is back"
    );
    store.close().await;

    // A store holding data is not overwritten without --force.
    let (ok, _, err) = hub(&["restore", "--config", &config_arg, "--from", &backup_arg]).await;
    assert!(!ok);
    assert!(
        err.contains("holds data") && err.contains("--force"),
        "{err}"
    );
    let (ok, out, err) = hub(&[
        "restore",
        "--config",
        &config_arg,
        "--from",
        &backup_arg,
        "--force",
    ])
    .await;
    assert!(ok, "{out}\n{err}");
}

async fn a_damaged_or_unfinished_backup_is_refused(backend: &str) {
    let Drill {
        dir,
        _scratch,
        config_file,
        config,
        store,
    } = Drill::new(backend).await;
    let blobs = seed(&store, &config).await;
    store.close().await;
    let backup = dir.path().join("backup");
    let (config_arg, backup_arg) = (
        config_file.display().to_string(),
        backup.display().to_string(),
    );
    let (ok, out, err) = hub(&["backup", "--config", &config_arg, "--to", &backup_arg]).await;
    assert!(ok, "{out}\n{err}");
    // Not into a folder with files in it.
    let (ok, _, err) = hub(&["backup", "--config", &config_arg, "--to", &backup_arg]).await;
    assert!(!ok && err.contains("not empty"), "{err}");

    // One flipped byte in one evidence file.
    let (sha, _) = &blobs[2];
    let damaged = backup
        .join(EVIDENCE_DIR)
        .join(&sha[..2])
        .join(&sha[2..4])
        .join(sha);
    let mut bytes = std::fs::read(&damaged).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&damaged, &bytes).unwrap();
    let (ok, _, err) = hub(&["backup", "verify", &backup_arg]).await;
    assert!(!ok, "{err}");
    assert!(
        err.contains("not intact") && err.contains(sha.as_str()),
        "{err}"
    );
    // Restore verifies first: it refuses too, and changes nothing.
    let (ok, _, err) = hub(&[
        "restore",
        "--config",
        &config_arg,
        "--from",
        &backup_arg,
        "--force",
    ])
    .await;
    assert!(!ok && err.contains(sha.as_str()), "{err}");
    bytes[10] ^= 1;
    std::fs::write(&damaged, &bytes).unwrap();

    // An extra file, and the database copy changed.
    std::fs::write(backup.join(EVIDENCE_DIR).join("stray"), b"x").unwrap();
    let db_file = backup.join(
        &serde_json::from_slice::<Manifest>(&std::fs::read(backup.join(MANIFEST)).unwrap())
            .unwrap()
            .database
            .path,
    );
    let mut db = std::fs::OpenOptions::new()
        .append(true)
        .open(&db_file)
        .unwrap();
    std::io::Write::write_all(&mut db, b"tail").unwrap();
    let (ok, _, err) = hub(&["backup", "verify", &backup_arg]).await;
    assert!(!ok);
    assert!(
        err.contains("evidence/stray: not in evidence.sha256"),
        "{err}"
    );
    assert!(err.contains("the manifest says"), "{err}");

    // Without its manifest a backup did not finish.
    std::fs::remove_file(backup.join(MANIFEST)).unwrap();
    let (ok, _, err) = hub(&["backup", "verify", &backup_arg]).await;
    assert!(!ok && err.contains("did not finish"), "{err}");
}

support::on_both!(
    a_backup_taken_while_ingesting_restores_everything_acknowledged_before_it,
    a_damaged_or_unfinished_backup_is_refused,
);
