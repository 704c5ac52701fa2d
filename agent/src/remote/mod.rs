//! Configuration from the hub (issue #19; DESIGN.md §9): the agent's side of
//! `/config/set` and `/config/state`.
//!
//! ```text
//! /config/set (retained, hub-signed) ─▶ MqttSink ─verify─▶ desired (watch: newest wins)
//!                                                              │
//! run_managed: not newer? ignore · validate + keep local keys + preflight
//!   ├─ invalid ─▶ rejected (errors), the running configuration stays
//!   └─ valid ──▶ write applied.json (fsync + rename, the one before kept) ─▶ restart the
//!                pipeline on it (the outbox is closed and reopened: nothing in it is lost
//!                or sent twice) ─▶ applied ─▶ probation: no broker within
//!                remote.probation_s ─▶ the one before is restored ─▶ rolled_back
//! /config/state (retained, gateway-signed) ◀── MqttSink ◀── state (watch)
//! ```
//!
//! # Invariants
//!
//! - **Only the hub, only newer.** A document counts only when it verifies against a
//!   hub key pinned in the local file, for this gateway's topic, and its version is
//!   newer than the last one this gateway decided on (`state.json` keeps it across
//!   restarts), so a replayed or retained older document changes nothing.
//! - **The local file keeps who the gateway is**: identity, keys, broker and hub
//!   addresses, the outbox path and `[remote]` (`chitti_common::agent_config::remote`).
//! - **What runs is on disk first**: the applied document is written and synced
//!   before the pipeline restarts on it; a restart of the agent runs it again.
//! - **A change that loses the broker undoes itself** after `probation_s`, also when
//!   the agent restarts in between (`probation.json` marks an unconfirmed change).
//!
//! A change of `[mqtt]` alone (another broker, other timings) replaces only the MQTT
//! sink: cameras, analysis, trackers and the outbox run on. Any other change restarts
//! the pipeline (within the shutdown deadline); the outbox keeps every finding across it.

pub mod model;

use crate::config::{AgentConfig, AgentConfigFile, TablesOnDisk};
pub use crate::sinks::mqtt::RemoteLink;
use chitti_common::agent_config::remote::{keep_local, redacted_toml};
use chitti_common::protocol::{ConfigState, ConfigStatus, DesiredConfig};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// How long after a document arrives the agent waits for a newer one before deciding
/// (a burst of queued versions ends in the newest; each arrival waits again).
pub const DESIRED_SETTLE: Duration = Duration::from_millis(1500);

/// A document the gateway applied, as kept on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct AppliedDocument {
    version: u64,
    config: String,
    applied_at: DateTime<Utc>,
}

/// The files under `remote.state_dir`.
#[derive(Debug, Clone)]
struct StateFiles {
    dir: PathBuf,
}

impl StateFiles {
    fn applied(&self) -> PathBuf {
        self.dir.join("applied.json")
    }

    fn previous(&self) -> PathBuf {
        self.dir.join("applied.previous.json")
    }

    fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// The version on probation: written before the document is applied, removed once
    /// the broker is reached or the change is undone, so a restart in between resumes
    /// the probation instead of trusting an unconfirmed change.
    fn probation(&self) -> PathBuf {
        self.dir.join("probation.json")
    }

    fn end_probation(&self) {
        if let Err(err) = remove_if_present(&self.probation()) {
            tracing::error!(%err, "cannot remove the probation marker");
        }
    }

    fn read<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
        read_json(path)
    }

    fn write<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
        write_json(path, value)
    }

    /// Makes `doc` the applied document, on probation, keeping the current one as the
    /// previous.
    fn apply(&self, doc: &AppliedDocument) -> std::io::Result<()> {
        Self::write(&self.probation(), &doc.version)?;
        match Self::read::<AppliedDocument>(&self.applied()) {
            Some(current) => Self::write(&self.previous(), &current)?,
            // The local file ran before: no previous document.
            None => remove_if_present(&self.previous())?,
        }
        Self::write(&self.applied(), doc)
    }

    /// Puts the previous document back (none: the local file runs again).
    fn restore_previous(&self) -> std::io::Result<Option<AppliedDocument>> {
        let previous = Self::read::<AppliedDocument>(&self.previous());
        match &previous {
            Some(p) => Self::write(&self.applied(), p)?,
            None => remove_if_present(&self.applied())?,
        }
        remove_if_present(&self.previous())?;
        remove_if_present(&self.probation())?;
        Ok(previous)
    }
}

/// A state file's value; `None` when it is absent or unreadable (logged: a damaged
/// file is ignored, never fatal).
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(v) => Some(v),
        Err(err) => {
            tracing::error!(path = %path.display(), %err,
                "unreadable remote state file; ignored");
            None
        }
    }
}

/// Writes `value` to `path` durably: a temporary file, fsync, rename, fsync of the
/// folder.
fn write_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Runs the agent on its local file and the hub's newest accepted document, applying
/// new ones as they come, until `shutdown`.
pub async fn run_managed(
    base: AgentConfig,
    base_dir: PathBuf,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let files = StateFiles {
        dir: base.remote.state_dir.clone(),
    };
    let probation = Duration::from_secs(base.remote.probation_s);
    let mut state: ConfigState = StateFiles::read(&files.state()).unwrap_or(ConfigState {
        version: 0,
        status: ConfigStatus::Applied,
        errors: Vec::new(),
        applied_version: None,
        applied_at: None,
        config: None,
        ts: Utc::now(),
    });
    // What ran last time, if it still validates here; still on probation if the agent
    // stopped before the broker confirmed it.
    let mut running = base.clone();
    let mut on_probation: Option<(tokio::time::Instant, u64)> = None;
    let unconfirmed = StateFiles::read::<u64>(&files.probation());
    if let Some(doc) = StateFiles::read::<AppliedDocument>(&files.applied()) {
        let version = doc.version;
        let checked = {
            let (base, base_dir) = (base.clone(), base_dir.clone());
            blocking(move || accept(&base, &base_dir, &doc.config, doc.version)).await
        };
        match checked {
            Ok(config) => {
                running = config;
                if unconfirmed == Some(version) {
                    tracing::warn!(version, probation_s = probation.as_secs(),
                        "the applied configuration was not confirmed before the agent stopped: on probation again");
                    on_probation = Some((tokio::time::Instant::now() + probation, version));
                }
            }
            Err(errors) => tracing::error!(
                version = doc.version,
                ?errors,
                "the applied configuration no longer validates: running the local file"
            ),
        }
    }
    state.config = Some(redacted_toml(&running));
    state.ts = Utc::now();
    let (desired_tx, mut desired_rx) = watch::channel::<Option<DesiredConfig>>(None);
    let (state_tx, state_rx) = watch::channel(state.clone());
    let connected = Arc::new(Notify::new());
    let (relink_tx, relink_rx) = watch::channel(None);
    // Models from the hub: what runs is decided before the first pipeline starts.
    let model_files = model::ModelFiles::new(&base.remote.state_dir);
    let active = {
        let files = model_files.clone();
        blocking(move || files.startup()).await
    };
    let switch = crate::detector::ModelSwitch::new(
        active.as_ref().map(|a| model::choice_of(&model_files, a)),
    );
    let (desired_model_tx, desired_model_rx) = watch::channel(None);
    let (model_state_tx, model_state_rx) =
        watch::channel(model::initial_state(&model_files, active.as_ref()));
    let (detector_tx, detector_rx) = watch::channel(running.detector.clone());
    let updater = model::ModelUpdater {
        files: model_files,
        switch: Arc::clone(&switch),
        desired: desired_model_rx,
        state: model_state_tx,
        detector: detector_rx,
        hub_keys: crate::sinks::mqtt::config::hub_public_keys(&base.mqtt)
            .map_err(anyhow::Error::msg)?,
        hub: model::HubHttp {
            url: base.evidence.hub_url.clone(),
            ca_pem: match &base.evidence.ca_file {
                Some(f) => Some(
                    std::fs::read(f)
                        .map_err(|e| anyhow::anyhow!("evidence.ca_file {}: {e}", f.display()))?,
                ),
                None => None,
            },
            timeout: Duration::from_secs(base.evidence.timeout_s),
        },
    };
    let updater = tokio::spawn(updater.run(shutdown.clone()));
    loop {
        detector_tx.send_replace(running.detector.clone());
        let (stop_tx, stop_rx) = watch::channel(false);
        let link = RemoteLink {
            desired: desired_tx.clone(),
            state: state_rx.clone(),
            desired_model: desired_model_tx.clone(),
            model_state: model_state_rx.clone(),
            models: Arc::clone(&switch),
            connected: Arc::clone(&connected),
            relink: relink_rx.clone(),
        };
        let mut pipeline = tokio::spawn(crate::topology::run_with(
            running.clone(),
            stop_rx,
            Some(link),
        ));
        // Until the pipeline must restart on another configuration, or stop.
        loop {
            let probation_end = on_probation.map(|(at, _)| at);
            tokio::select! {
                () = stopped(&mut shutdown) => {
                    let _ = stop_tx.send(true);
                    let _ = updater.await;
                    return pipeline.await?.map(|_| ());
                }
                ended = &mut pipeline => {
                    // The pipeline stopped by itself: an error it cannot run with.
                    return ended?.map(|_| ());
                }
                () = connected.notified() => {
                    if let Some((_, version)) = on_probation.take() {
                        tracing::info!(version, "broker reached after the change: probation over");
                        let files = files.clone();
                        blocking(move || files.end_probation()).await;
                    }
                }
                () = sleep_until(probation_end), if probation_end.is_some() => {
                    let Some((_, version)) = on_probation.take() else { continue };
                    tracing::warn!(version, probation_s = probation.as_secs(),
                        "no broker connection after applying the configuration: rolling back");
                    let (config, applied) = {
                        let (files, base, base_dir) = (files.clone(), base.clone(), base_dir.clone());
                        blocking(move || restore(&files, &base, &base_dir)).await
                    };
                    state = ConfigState {
                        version,
                        status: ConfigStatus::RolledBack,
                        errors: vec![format!(
                            "no connection to the broker within {} s of applying version \
                             {version}: the configuration before it runs again",
                            probation.as_secs()
                        )],
                        applied_version: applied.as_ref().map(|d| d.version),
                        applied_at: Some(Utc::now()),
                        config: Some(redacted_toml(&config)),
                        ts: Utc::now(),
                    };
                    if only_the_link_differs(&running, &config) {
                        running = config;
                        persist(&files, &state, &state_tx).await;
                        relink_tx.send_replace(Some(running.mqtt.clone()));
                        continue;
                    }
                    running = config;
                    break;
                }
                changed = desired_rx.changed() => {
                    if changed.is_err() {
                        continue;
                    }
                    // A resumed MQTT session may deliver every version published while
                    // the gateway was away, in a burst: decide on the newest of it only.
                    while let Ok(Ok(())) =
                        tokio::time::timeout(DESIRED_SETTLE, desired_rx.changed()).await
                    {}
                    let Some(doc) = desired_rx.borrow_and_update().clone() else { continue };
                    if doc.version == state.version {
                        // The retained document again (every reconnect delivers it).
                        tracing::debug!(version = doc.version, "configuration already decided");
                        continue;
                    }
                    if doc.version < state.version {
                        tracing::warn!(version = doc.version, decided = state.version,
                            "configuration document older than the last decided: ignored");
                        continue;
                    }
                    let rejected = |state: &ConfigState, errors: Vec<String>| ConfigState {
                        version: doc.version,
                        status: ConfigStatus::Rejected,
                        errors,
                        ts: Utc::now(),
                        ..state.clone()
                    };
                    let checked = {
                        let (base, base_dir, text) = (base.clone(), base_dir.clone(), doc.config.clone());
                        blocking(move || accept(&base, &base_dir, &text, doc.version)).await
                    };
                    let config = match checked {
                        Ok(config) => config,
                        Err(errors) => {
                            tracing::warn!(version = doc.version, ?errors,
                                "configuration rejected; the running one stays");
                            state = rejected(&state, errors);
                            persist(&files, &state, &state_tx).await;
                            continue;
                        }
                    };
                    let applied = AppliedDocument {
                        version: doc.version,
                        config: doc.config.clone(),
                        applied_at: Utc::now(),
                    };
                    let written = {
                        let (files, applied) = (files.clone(), applied.clone());
                        blocking(move || files.apply(&applied)).await
                    };
                    if let Err(err) = written {
                        let error = format!("cannot write {}: {err}", files.applied().display());
                        state = rejected(&state, vec![error]);
                        persist(&files, &state, &state_tx).await;
                        continue;
                    }
                    let link_only = only_the_link_differs(&running, &config);
                    if link_only {
                        tracing::info!(version = doc.version,
                            "configuration applied; only [mqtt] changed: replacing the link");
                    } else {
                        tracing::info!(version = doc.version,
                            "configuration applied; restarting the pipeline on it");
                    }
                    state = ConfigState {
                        version: doc.version,
                        status: ConfigStatus::Applied,
                        errors: Vec::new(),
                        applied_version: Some(doc.version),
                        applied_at: Some(applied.applied_at),
                        config: Some(redacted_toml(&config)),
                        ts: Utc::now(),
                    };
                    running = config;
                    on_probation = Some((tokio::time::Instant::now() + probation, doc.version));
                    if link_only {
                        // Only `[mqtt]` changed: the sink alone is replaced.
                        persist(&files, &state, &state_tx).await;
                        let _ = tokio::time::timeout(Duration::ZERO, connected.notified()).await;
                        relink_tx.send_replace(Some(running.mqtt.clone()));
                        continue;
                    }
                    break;
                }
            }
        }
        let _ = stop_tx.send(true);
        if let Err(err) = pipeline.await? {
            tracing::error!(%err, "the pipeline stopped with an error during the change");
        }
        persist(&files, &state, &state_tx).await;
        // A connection the stopped pipeline made does not end the new one's probation.
        let _ = tokio::time::timeout(Duration::ZERO, connected.notified()).await;
    }
}

/// Whether `b` differs from `a` in `[mqtt]` and nowhere else: then only the MQTT sink
/// is rebuilt, and cameras, analysis, trackers and the outbox run on.
fn only_the_link_differs(a: &AgentConfig, b: &AgentConfig) -> bool {
    let mut same_link = b.clone();
    same_link.mqtt = a.mqtt.clone();
    a.mqtt != b.mqtt && same_link == *a
}

/// Until `shutdown` turns true (or its sender is gone); holds no borrow of it after.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The configuration before the one on probation, from disk (the local file when
/// there was none, or when it no longer validates).
fn restore(
    files: &StateFiles,
    base: &AgentConfig,
    base_dir: &Path,
) -> (AgentConfig, Option<AppliedDocument>) {
    match files.restore_previous() {
        Ok(Some(doc)) => match accept(base, base_dir, &doc.config, doc.version) {
            Ok(config) => (config, Some(doc)),
            Err(errors) => {
                tracing::error!(
                    ?errors,
                    "the previous configuration no longer validates; running the local file"
                );
                (base.clone(), None)
            }
        },
        Ok(None) => (base.clone(), None),
        Err(err) => {
            tracing::error!(%err, "cannot restore the previous configuration file; running the local file");
            (base.clone(), None)
        }
    }
}

/// File work (fsync) on the blocking pool, never on an async worker.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(v) => v,
        Err(err) => std::panic::resume_unwind(err.into_panic()),
    }
}

/// Keeps the decision on disk and hands it to the sink.
async fn persist(files: &StateFiles, state: &ConfigState, tx: &watch::Sender<ConfigState>) {
    let path = files.state();
    let kept = state.clone();
    if let Err(err) = blocking(move || StateFiles::write(&path, &kept)).await {
        tracing::error!(%err, path = %files.state().display(),
            "cannot record the configuration state");
    }
    tx.send_replace(state.clone());
}

/// A document as this gateway would run it: validated with the agent's code, the
/// gateway's own keys kept, and what it refers to checked on this machine.
fn accept(
    base: &AgentConfig,
    base_dir: &Path,
    text: &str,
    version: u64,
) -> Result<AgentConfig, Vec<String>> {
    let origin = format!("configuration version {version}");
    let lines = |e: crate::config::ConfigErrors| -> Vec<String> {
        e.errors.iter().map(ToString::to_string).collect()
    };
    let parsed = AgentConfig::parse(text, &origin, base_dir, &TablesOnDisk).map_err(lines)?;
    let merged = keep_local(base, parsed)?;
    merged.preflight(&origin).map_err(lines)?;
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(version: u64) -> AppliedDocument {
        AppliedDocument {
            version,
            config: format!("# version {version}\n"),
            applied_at: Utc::now(),
        }
    }

    #[test]
    fn applied_documents_keep_the_one_before_and_come_back_on_rollback() {
        let dir = tempfile::tempdir().unwrap();
        let files = StateFiles {
            dir: dir.path().join("remote-config"),
        };
        files.apply(&doc(1)).unwrap();
        assert_eq!(StateFiles::read::<u64>(&files.probation()), Some(1));
        assert!(
            !files.previous().exists(),
            "the local file ran before version 1"
        );
        files.apply(&doc(2)).unwrap();
        let previous: AppliedDocument = StateFiles::read(&files.previous()).unwrap();
        assert_eq!(previous.version, 1);
        // Version 2 undone: version 1 is applied again, no probation left.
        let restored = files.restore_previous().unwrap().unwrap();
        assert_eq!(restored.version, 1);
        let applied: AppliedDocument = StateFiles::read(&files.applied()).unwrap();
        assert_eq!(applied.version, 1);
        assert!(!files.previous().exists() && !files.probation().exists());
        // Undone again: nothing before it, so the local file runs.
        assert_eq!(files.restore_previous().unwrap(), None);
        assert!(!files.applied().exists());
    }

    #[test]
    fn unreadable_state_files_are_ignored_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let files = StateFiles {
            dir: dir.path().to_path_buf(),
        };
        for path in [files.applied(), files.state(), files.probation()] {
            std::fs::write(&path, b"\xff{ not json").unwrap();
        }
        assert!(StateFiles::read::<AppliedDocument>(&files.applied()).is_none());
        assert!(StateFiles::read::<ConfigState>(&files.state()).is_none());
        assert!(StateFiles::read::<u64>(&files.probation()).is_none());
        // And a new document replaces them.
        files.apply(&doc(3)).unwrap();
        assert_eq!(
            StateFiles::read::<AppliedDocument>(&files.applied())
                .unwrap()
                .version,
            3
        );
    }
}
