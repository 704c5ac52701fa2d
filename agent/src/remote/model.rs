//! Models from the hub (issue #19): the agent's side of `/model/set` and
//! `/model/state`.
//!
//! ```text
//! /model/set (retained, hub-signed) ─▶ MqttSink ─verify─▶ desired (watch: newest wins)
//!   not newer than the last decided? ignore
//!   manifest signed by a pinned hub key? ─ no ─▶ failed
//!   downloading: GET evidence.hub_url + path ?token (Range: resume) ─▶ staging/<sha>.part
//!   verifying: sha256 and size are the signed manifest's ─ no ─▶ failed (file removed)
//!   testing: the manifest's reference frames with this gateway's detector settings
//!   switch: <sha>.onnx (fsync + rename) · active.json (the one before kept, probation
//!           marked) · every camera's detector takes the new session between two frames
//!   probation: the detector degrades ─▶ the model before runs again ─▶ rolled_back
//!              probation_s without ─▶ active
//! /model/state (retained, gateway-signed) ◀── MqttSink ◀── state (watch)
//! ```
//!
//! # Invariants
//!
//! - **Nothing unverified runs**: the manifest's signature is checked first, then the
//!   file's hash, then the self-test; only then does any camera see the model.
//! - **What runs is on disk first**: `active.json` names the model before the cameras
//!   switch, and the agent starts on what it names only after checking the file's
//!   sha256 again (a file damaged on disk falls back to the one before, then to the
//!   configuration's own model) — so a `kill -9` at any moment starts on a working
//!   model.
//! - **A probation survives a restart** (`probation.json`), like a configuration's.
//! - **Only newer**: a `seq` already decided is not acted on again (a retained message
//!   seen on every reconnect); one in progress when the agent stopped is taken up.

use super::{read_json as read, remove_if_present, write_json as write};
use crate::detector::{ModelChoice, ModelSwitch};
use chitti_common::agent_config::DetectorConfig;
use chitti_common::finding::ModelIdentity;
use chitti_common::model_manifest::ModelManifest;
use chitti_common::protocol::{DesiredModel, ModelOffer, ModelPhase, ModelState};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often a model on probation is looked at.
const PROBATION_CHECK: Duration = Duration::from_secs(1);
/// Download attempts before the update fails (the hub's rollout decides what next).
const DOWNLOAD_ATTEMPTS: u32 = 4;

/// The model a gateway runs from the registry, as kept on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveModel {
    /// The `/model/set` seq that installed it.
    pub seq: u64,
    /// Registry id.
    pub model_id: String,
    /// File name within the models folder (`<sha256>.onnx`).
    pub file: String,
    /// Name, version and sha256 (the manifest's).
    pub identity: ModelIdentity,
    /// When it was switched to.
    pub activated_at: DateTime<Utc>,
}

/// The probation of a switched model, kept across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Probation {
    seq: u64,
    probation_s: u64,
}

/// The files under `<remote.state_dir>/models`.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    dir: PathBuf,
}

impl ModelFiles {
    /// The models folder of a state folder.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("models"),
        }
    }

    fn active(&self) -> PathBuf {
        self.dir.join("active.json")
    }

    fn previous(&self) -> PathBuf {
        self.dir.join("active.previous.json")
    }

    fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    fn probation(&self) -> PathBuf {
        self.dir.join("probation.json")
    }

    /// The newest desired model received (verified), kept so that an update the agent
    /// was stopped in is taken up again at start: a broker resuming the gateway's
    /// session does not deliver a retained message it already delivered.
    fn desired(&self) -> PathBuf {
        self.dir.join("desired.json")
    }

    fn staging(&self, sha256: &str) -> PathBuf {
        self.dir.join("staging").join(format!("{sha256}.part"))
    }

    fn model_file(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.onnx"))
    }

    /// The detectors' choice for an active model.
    pub fn choice(&self, active: &ActiveModel) -> ModelChoice {
        ModelChoice {
            path: self.dir.join(&active.file),
            name: active.identity.name.clone(),
            version: active.identity.version.clone(),
        }
    }

    /// The active model if its file is intact; else the one before it (made active
    /// again); else none (the configuration's model). Blocking: hashes the file.
    pub fn startup(&self) -> Option<ActiveModel> {
        for path in [self.active(), self.previous()] {
            let Some(active) = read::<ActiveModel>(&path) else {
                continue;
            };
            match file_sha256(&self.dir.join(&active.file)) {
                Ok(sha) if sha == active.identity.sha256 => {
                    if path != self.active() {
                        if let Err(err) = write(&self.active(), &active) {
                            tracing::error!(%err, "cannot restore the previous model as active");
                        }
                    }
                    return Some(active);
                }
                Ok(sha) => {
                    tracing::error!(file = %active.file, %sha, expected = %active.identity.sha256,
                    "model file damaged on disk: not used")
                }
                Err(err) => {
                    tracing::error!(file = %active.file, %err, "model file unreadable: not used")
                }
            }
        }
        if self.active().exists() {
            // Neither is usable: the configuration's model runs.
            let _ = remove_if_present(&self.active());
        }
        None
    }

    /// Makes `next` active on probation, keeping the current one as the previous.
    fn apply(&self, next: &ActiveModel, probation_s: u64) -> std::io::Result<()> {
        write(
            &self.probation(),
            &Probation {
                seq: next.seq,
                probation_s,
            },
        )?;
        match read::<ActiveModel>(&self.active()) {
            Some(current) => write(&self.previous(), &current)?,
            None => remove_if_present(&self.previous())?,
        }
        write(&self.active(), next)
    }

    /// The configuration's own model becomes active (the current one kept as the
    /// previous).
    fn clear(&self) -> std::io::Result<()> {
        if let Some(current) = read::<ActiveModel>(&self.active()) {
            write(&self.previous(), &current)?;
        }
        remove_if_present(&self.probation())?;
        remove_if_present(&self.active())
    }

    /// Puts the previous model back (none: the configuration's own).
    fn restore_previous(&self) -> std::io::Result<Option<ActiveModel>> {
        let previous = read::<ActiveModel>(&self.previous());
        match &previous {
            Some(p) => write(&self.active(), p)?,
            None => remove_if_present(&self.active())?,
        }
        remove_if_present(&self.previous())?;
        remove_if_present(&self.probation())?;
        Ok(previous)
    }
}

fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// How the gateway reaches the hub's HTTP side (`[evidence]`).
#[derive(Debug, Clone)]
pub struct HubHttp {
    /// `evidence.hub_url`.
    pub url: Option<String>,
    /// `evidence.ca_file`'s certificates (PEM).
    pub ca_pem: Option<Vec<u8>>,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// Everything the updater works with.
pub struct ModelUpdater {
    /// The files.
    pub files: ModelFiles,
    /// The running detectors' model.
    pub switch: Arc<ModelSwitch>,
    /// Verified desired models (from the sink).
    pub desired: watch::Receiver<Option<DesiredModel>>,
    /// What to report (to the sink and `/status`).
    pub state: watch::Sender<ModelState>,
    /// The running configuration's `[detector]` (the self-test's settings).
    pub detector: watch::Receiver<DetectorConfig>,
    /// The pinned hub keys (the manifest's signature).
    pub hub_keys: Vec<ed25519_dalek::VerifyingKey>,
    /// The hub's HTTP side.
    pub hub: HubHttp,
}

/// The detectors' choice for `active` (its file in `files`' folder).
pub fn choice_of(files: &ModelFiles, active: &ActiveModel) -> ModelChoice {
    files.choice(active)
}

/// The state to start from: the last one kept, what runs now.
pub fn initial_state(files: &ModelFiles, active: Option<&ActiveModel>) -> ModelState {
    let mut state = read::<ModelState>(&files.state()).unwrap_or(ModelState {
        seq: 0,
        model_id: None,
        phase: ModelPhase::Active,
        reason: None,
        running: None,
        ts: Utc::now(),
    });
    state.running = active.map(|a| a.identity.clone());
    state
}

impl ModelUpdater {
    /// Runs until `shutdown` turns true.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut on_probation: Option<(tokio::time::Instant, u64)> = None;
        // A probation the agent stopped in resumes.
        let files = self.files.clone();
        if let Some(p) = blocking(move || read::<Probation>(&files.probation())).await {
            let active = read::<ActiveModel>(&self.files.active());
            if active.as_ref().is_some_and(|a| a.seq == p.seq) {
                tracing::warn!(
                    seq = p.seq,
                    "the model was on probation when the agent stopped: on probation again"
                );
                on_probation = Some((
                    tokio::time::Instant::now() + Duration::from_secs(p.probation_s),
                    p.seq,
                ));
            } else {
                let files = self.files.clone();
                let _ = blocking(move || remove_if_present(&files.probation())).await;
            }
        }
        // An update the agent stopped in is taken up again.
        let files = self.files.clone();
        if let Some(desired) = blocking(move || read::<DesiredModel>(&files.desired())).await {
            if self.is_new(&desired) {
                tracing::info!(
                    seq = desired.seq,
                    "taking up the model update the agent stopped in"
                );
                on_probation = self.update(desired).await.or(on_probation);
            }
        }
        loop {
            let deadline = on_probation.map(|(at, _)| at);
            tokio::select! {
                () = super::stopped(&mut shutdown) => return,
                changed = self.desired.changed() => {
                    if changed.is_err() {
                        std::future::pending::<()>().await;
                    }
                    while let Ok(Ok(())) =
                        tokio::time::timeout(super::DESIRED_SETTLE, self.desired.changed()).await
                    {}
                    let Some(desired) = self.desired.borrow_and_update().clone() else { continue };
                    if !self.is_new(&desired) {
                        continue;
                    }
                    let (files, kept) = (self.files.clone(), desired.clone());
                    if let Err(err) = blocking(move || write(&files.desired(), &kept)).await {
                        tracing::error!(%err, "cannot keep the desired model");
                    }
                    // A newer one ends any probation: it decides what runs next.
                    on_probation = self.update(desired).await;
                }
                () = tick(deadline) => {
                    let Some((until, seq)) = on_probation else { continue };
                    if let Some(why) = self.switch.degraded() {
                        self.roll_back(seq, format!("the detector degraded during probation: {why}")).await;
                        on_probation = None;
                    } else if tokio::time::Instant::now() >= until {
                        let files = self.files.clone();
                        let _ = blocking(move || remove_if_present(&files.probation())).await;
                        tracing::info!(seq, "model probation passed: active");
                        let state = ModelState { phase: ModelPhase::Active, reason: None, ts: Utc::now(), ..self.state.borrow().clone() };
                        self.report(state).await;
                        on_probation = None;
                    }
                }
            }
        }
    }

    /// Whether `desired` is still to be acted on: newer than the last decided, or the
    /// one in progress.
    fn is_new(&self, desired: &DesiredModel) -> bool {
        let current = self.state.borrow().clone();
        let decided = current.phase.is_final() || current.phase == ModelPhase::Probation;
        if desired.seq < current.seq {
            tracing::warn!(
                seq = desired.seq,
                decided = current.seq,
                "desired model older than the last decided: ignored"
            );
        }
        desired.seq > current.seq || (desired.seq == current.seq && !decided)
    }

    async fn report(&self, state: ModelState) {
        let files = self.files.clone();
        let kept = state.clone();
        if let Err(err) = blocking(move || write(&files.state(), &kept)).await {
            tracing::error!(%err, "cannot record the model state");
        }
        self.state.send_replace(state);
    }

    async fn phase(&self, desired: &DesiredModel, phase: ModelPhase, reason: Option<String>) {
        let running = self.state.borrow().running.clone();
        self.report(ModelState {
            seq: desired.seq,
            model_id: desired.model.as_ref().map(|m| m.id.clone()),
            phase,
            reason,
            running,
            ts: Utc::now(),
        })
        .await;
    }

    /// Acts on a desired model; the probation it starts, if any.
    async fn update(&mut self, desired: DesiredModel) -> Option<(tokio::time::Instant, u64)> {
        let Some(offer) = desired.model.clone() else {
            // Back to the configuration's own model.
            let (files, switch) = (self.files.clone(), Arc::clone(&self.switch));
            let result = blocking(move || -> Result<(), String> {
                if switch.model_override().is_some() {
                    switch.switch_to(None)?;
                }
                files.clear().map_err(|e| e.to_string())
            })
            .await;
            let mut state = ModelState {
                seq: desired.seq,
                model_id: None,
                phase: ModelPhase::Active,
                reason: None,
                running: None,
                ts: Utc::now(),
            };
            if let Err(why) = result {
                tracing::error!(%why, "cannot return to the configured model");
                state.phase = ModelPhase::Failed;
                state.running = self.state.borrow().running.clone();
                state.reason = Some(format!("cannot return to the configured model: {why}"));
            } else {
                tracing::info!(
                    seq = desired.seq,
                    "the configuration's own model runs again"
                );
            }
            self.report(state).await;
            return None;
        };
        match self.install(&desired, &offer).await {
            Ok(Some(active)) => {
                tracing::info!(seq = desired.seq, model = %active.identity.name,
                    version = %active.identity.version, probation_s = desired.probation_s,
                    "model switched: on probation");
                let state = ModelState {
                    seq: desired.seq,
                    model_id: Some(offer.id.clone()),
                    phase: ModelPhase::Probation,
                    reason: None,
                    running: Some(active.identity),
                    ts: Utc::now(),
                };
                self.report(state).await;
                Some((
                    tokio::time::Instant::now() + Duration::from_secs(desired.probation_s),
                    desired.seq,
                ))
            }
            Ok(None) => {
                // Already running it.
                self.phase(&desired, ModelPhase::Active, None).await;
                None
            }
            Err(why) => {
                tracing::warn!(seq = desired.seq, reason = %why, "model refused; the running one stays");
                self.phase(&desired, ModelPhase::Failed, Some(why)).await;
                None
            }
        }
    }

    /// Verify, fetch, verify, test, switch. `Ok(None)` when the model already runs.
    async fn install(
        &mut self,
        desired: &DesiredModel,
        offer: &ModelOffer,
    ) -> Result<Option<ActiveModel>, String> {
        let manifest =
            chitti_common::signing::open_manifest(offer.manifest.as_bytes(), &self.hub_keys)
                .map_err(|e| format!("manifest: {e}"))?;
        let active = read::<ActiveModel>(&self.files.active());
        if active.as_ref().is_some_and(|a| {
            a.identity.sha256 == manifest.sha256 && self.switch.model_override().is_some()
        }) {
            return Ok(None);
        }
        let target = self.files.model_file(&manifest.sha256);
        let have = {
            let (target, sha) = (target.clone(), manifest.sha256.clone());
            blocking(move || file_sha256(&target).is_ok_and(|h| h == sha)).await
        };
        let staged = if have {
            target.clone()
        } else {
            self.phase(desired, ModelPhase::Downloading, None).await;
            let part = self.files.staging(&manifest.sha256);
            let (hub, offer2, part2) = (self.hub.clone(), offer.clone(), part.clone());
            blocking(move || download(&hub, &offer2, &part2)).await?;
            self.phase(desired, ModelPhase::Verifying, None).await;
            let (part2, sha, bytes) = (part.clone(), manifest.sha256.clone(), offer.bytes);
            blocking(move || verify(&part2, &sha, bytes)).await?;
            part
        };
        self.phase(desired, ModelPhase::Testing, None).await;
        let detector = self.detector.borrow().clone();
        let (staged2, manifest2) = (staged.clone(), manifest.clone());
        let results = blocking(move || self_test(&detector, &staged2, &manifest2)).await;
        if let Err(why) = results {
            if staged != target {
                let _ = std::fs::remove_file(&staged);
            }
            return Err(why);
        }
        // Switch: the file in place, the choice on disk, then the cameras.
        let next = ActiveModel {
            seq: desired.seq,
            model_id: offer.id.clone(),
            file: format!("{}.onnx", manifest.sha256),
            identity: ModelIdentity {
                name: manifest.name.clone(),
                version: manifest.version.clone(),
                sha256: manifest.sha256.clone(),
            },
            activated_at: Utc::now(),
        };
        let (files, switch, next2, probation_s) = (
            self.files.clone(),
            Arc::clone(&self.switch),
            next.clone(),
            desired.probation_s,
        );
        blocking(move || -> Result<(), String> {
            if staged != target {
                std::fs::rename(&staged, &target)
                    .and_then(|()| std::fs::File::open(&files.dir)?.sync_all())
                    .map_err(|e| format!("cannot keep the model file: {e}"))?;
            }
            files
                .apply(&next2, probation_s)
                .map_err(|e| format!("cannot record the active model: {e}"))?;
            if let Err(why) = switch.switch_to(Some(files.choice(&next2))) {
                // Not every camera could load it: none switched; the one before stays.
                let _ = files.restore_previous();
                return Err(format!("the model did not load on every camera: {why}"));
            }
            Ok(())
        })
        .await?;
        Ok(Some(next))
    }

    /// Undoes the model on probation: the one before runs again.
    async fn roll_back(&mut self, seq: u64, why: String) {
        tracing::warn!(seq, reason = %why, "rolling the model back");
        let (files, switch) = (self.files.clone(), Arc::clone(&self.switch));
        let restored = blocking(move || -> Result<Option<ActiveModel>, String> {
            let previous = files.restore_previous().map_err(|e| e.to_string())?;
            switch.switch_to(previous.as_ref().map(|p| files.choice(p)))?;
            Ok(previous)
        })
        .await;
        let (running, reason) = match restored {
            Ok(previous) => {
                let what = previous
                    .as_ref()
                    .map_or("the configuration's own model".to_string(), |p| {
                        format!("{} {}", p.identity.name, p.identity.version)
                    });
                (
                    previous.map(|p| p.identity),
                    format!("{why}; {what} runs again"),
                )
            }
            Err(err) => (
                None,
                format!("{why}; and the model before could not be restored: {err}"),
            ),
        };
        let state = ModelState {
            phase: ModelPhase::RolledBack,
            reason: Some(reason),
            running,
            ts: Utc::now(),
            ..self.state.borrow().clone()
        };
        self.report(state).await;
    }
}

async fn tick(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(_) => tokio::time::sleep(PROBATION_CHECK).await,
        None => std::future::pending().await,
    }
}

/// Blocking work (files, downloads, the runtime) on the blocking pool.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(v) => v,
        Err(err) => std::panic::resume_unwind(err.into_panic()),
    }
}

/// Fetches the offered file into `part`, resuming what an earlier attempt left there.
fn download(hub: &HubHttp, offer: &ModelOffer, part: &Path) -> Result<(), String> {
    let base = hub
        .url
        .as_deref()
        .ok_or("download: no evidence.hub_url: this gateway cannot reach the hub's files")?
        .trim_end_matches('/');
    let url = format!("{base}{}?token={}", offer.path, offer.token);
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(hub.timeout.max(Duration::from_secs(5)) * 4))
        .user_agent(concat!("chitti-agent/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = &hub.ca_pem {
        let certs = crate::sinks::evidence::parse_ca_pem(pem)
            .map_err(|e| format!("download: evidence.ca_file: {e}"))?;
        config = config.tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)))
                .build(),
        );
    }
    let agent = ureq::Agent::new_with_config(config.build());
    if let Some(dir) = part.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("download: {}: {e}", dir.display()))?;
    }
    let mut last = String::new();
    for attempt in 0..DOWNLOAD_ATTEMPTS {
        if attempt > 0 {
            std::thread::sleep(Duration::from_secs(1 << attempt.min(4)));
        }
        let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        if have >= offer.bytes && offer.bytes > 0 {
            return Ok(());
        }
        let mut request = agent.get(&url);
        if have > 0 {
            request = request.header("Range", &format!("bytes={have}-"));
        }
        let mut response = match request.call() {
            Ok(r) => r,
            Err(err) => {
                last = format!("download: {err}");
                continue;
            }
        };
        let status = response.status().as_u16();
        let append = match status {
            206 => true,
            200 => false,
            // The part is longer than the file: start again.
            416 => {
                let _ = std::fs::remove_file(part);
                last = "download: the partial file did not fit the hub's".into();
                continue;
            }
            401 | 403 | 404 => {
                return Err(format!("download: the hub refused the file ({status})"))
            }
            _ => {
                last = format!("download: the hub answered {status}");
                continue;
            }
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(append)
            .write(true)
            .truncate(!append)
            .open(part);
        let mut file = match file {
            Ok(f) => f,
            Err(e) => return Err(format!("download: {}: {e}", part.display())),
        };
        let limit = offer.bytes.saturating_sub(if append { have } else { 0 });
        let mut body = response
            .body_mut()
            .as_reader()
            .take(limit.saturating_add(1));
        match std::io::copy(&mut body, &mut file).and_then(|_| file.sync_all()) {
            Ok(()) => {
                let len = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
                if len == offer.bytes {
                    return Ok(());
                }
                last = format!("download: {len} of {} bytes", offer.bytes);
            }
            Err(e) => last = format!("download: interrupted: {e}"),
        }
    }
    Err(last)
}

/// The file is the one the signed manifest names.
fn verify(part: &Path, sha256: &str, bytes: u64) -> Result<(), String> {
    let result = match file_sha256(part) {
        Ok(actual) if actual == sha256 => Ok(()),
        Ok(actual) => Err(format!(
            "verification: the file's sha256 is {actual}, the signed manifest says {sha256}"
        )),
        Err(e) => Err(format!("verification: {e}")),
    };
    if result.is_err() {
        // A damaged download is not resumed.
        let _ = std::fs::remove_file(part);
    } else if std::fs::metadata(part).map(|m| m.len()).unwrap_or(0) != bytes {
        return Err(format!("verification: the file is not {bytes} bytes"));
    }
    result
}

/// The manifest's self-test with this gateway's detector settings (its runtime library,
/// thresholds, input size) on the model at `path`.
fn self_test(
    detector: &DetectorConfig,
    path: &Path,
    manifest: &ModelManifest,
) -> Result<(), String> {
    let mut settings = crate::detector::DetectorSettings::from_config(detector)
        .unwrap_or_else(|| crate::detector::DetectorSettings::new(path));
    settings.model = path.to_path_buf();
    settings.library = detector.library.clone();
    let results =
        std::panic::catch_unwind(|| crate::detector::selftest::self_test(&settings, manifest))
            .unwrap_or_else(|_| Err("the runtime panicked on this model".into()))
            .map_err(|e| format!("self-test: {e}"))?;
    tracing::info!(frames = results.len(), "model self-test passed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active(seq: u64, dir: &Path, bytes: &[u8]) -> ActiveModel {
        let sha = hex::encode(sha2::Sha256::digest(bytes));
        std::fs::write(dir.join(format!("{sha}.onnx")), bytes).unwrap();
        ActiveModel {
            seq,
            model_id: format!("m{seq}"),
            file: format!("{sha}.onnx"),
            identity: ModelIdentity {
                name: "m".into(),
                version: format!("1.{seq}.0"),
                sha256: sha,
            },
            activated_at: Utc::now(),
        }
    }

    #[test]
    fn a_damaged_active_model_falls_back_to_the_one_before_then_to_none() {
        let dir = tempfile::tempdir().unwrap();
        let files = ModelFiles::new(dir.path());
        std::fs::create_dir_all(&files.dir).unwrap();
        let one = active(1, &files.dir, b"model one");
        let two = active(2, &files.dir, b"model two");
        files.apply(&one, 60).unwrap();
        files.apply(&two, 60).unwrap();
        assert_eq!(files.startup().unwrap().seq, 2);
        // The active file damaged: the one before comes back, and is active again.
        std::fs::write(files.dir.join(&two.file), b"model twO").unwrap();
        assert_eq!(files.startup().unwrap().seq, 1);
        assert_eq!(read::<ActiveModel>(&files.active()).unwrap().seq, 1);
        // Both gone: the configuration's own model.
        std::fs::remove_file(files.dir.join(&one.file)).unwrap();
        assert_eq!(files.startup(), None);
        assert!(!files.active().exists());
    }

    #[test]
    fn roll_back_restores_the_previous_and_ends_probation() {
        let dir = tempfile::tempdir().unwrap();
        let files = ModelFiles::new(dir.path());
        std::fs::create_dir_all(&files.dir).unwrap();
        files.apply(&active(1, &files.dir, b"a"), 30).unwrap();
        assert!(!files.previous().exists() && files.probation().exists());
        files.apply(&active(2, &files.dir, b"b"), 30).unwrap();
        assert_eq!(files.restore_previous().unwrap().unwrap().seq, 1);
        assert_eq!(read::<ActiveModel>(&files.active()).unwrap().seq, 1);
        assert!(!files.probation().exists() && !files.previous().exists());
        assert_eq!(files.restore_previous().unwrap(), None);
        assert!(!files.active().exists());
    }

    #[test]
    fn a_damaged_download_is_refused_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("x.part");
        std::fs::write(&part, b"abc").unwrap();
        let sha = hex::encode(sha2::Sha256::digest(b"abd"));
        let err = verify(&part, &sha, 3).unwrap_err();
        assert!(err.contains("the signed manifest says"), "{err}");
        assert!(!part.exists());
    }
}
