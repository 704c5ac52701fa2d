//! Models and staged rollouts on the hub (issue #19; DESIGN.md §9).
//!
//! ```text
//! POST /api/v1/models ─ check: manifest valid · sha256 · ONNX Runtime loads it · its
//!                        reference frames find what the manifest expects ─▶ registry
//! POST /api/v1/rollouts ─▶ rollout: waves of gateways, probation, abort rule
//! RolloutDriver (every second, and when a gateway reports or an admin acts), per open
//! rollout, one locked step (decide_step):
//!   gateway reports (/model/state for the seq it was sent) ─▶ its state
//!   sent and undecided past step_timeout_s ─▶ failed (online) · skipped (offline)
//!   failed / decided > abort_failure_ratio, ≥ min_gateways decided ─▶ aborted:
//!       every gateway sent the model is sent back the model it had before
//!   wave all decided ─▶ next wave sent · none left ─▶ completed
//! ConfigPublisher ─▶ each gateway's newest desired model, signed, retained on /model/set
//! ```
//!
//! # Invariants
//!
//! - **Nothing unchecked runs**: a model enters the registry only after its self-test
//!   passed here, and a gateway runs it only after its own (same code, its settings).
//! - **Nothing stays in progress forever**: a gateway sent a model is decided within
//!   `step_timeout_s` (silence counts as failure, or as skipped when it is offline), a
//!   wave ends when its gateways are decided, and an admin may abort at any time.
//! - **An abort leaves no gateway on the rolled-out model**: each one sent it gets a
//!   newer `/model/set` naming what it was assigned before (or its own file's model).
//! - **Downgrades are refused** unless the rollout asks for one.

use crate::broker::HubBus;
use crate::store::{
    GatewayRolloutState, ModelRecord, RolloutPlan, RolloutSnapshot, RolloutState, Store,
};
use chitti_common::model_manifest::{FrameResult, ModelManifest};
use chitti_common::protocol::{DesiredModel, ModelOffer, Topic, TopicKind};
use chitti_common::signing::{sign_desired_model, sign_manifest};
use chrono::{DateTime, Utc};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How often the driver looks at open rollouts without being woken.
pub const DRIVE_EVERY: Duration = Duration::from_secs(1);

/// Checks a model file against its manifest: the sha256, then ONNX Runtime loads it
/// (`library`: the runtime library, else `ORT_DYLIB_PATH`) and runs the manifest's
/// reference frames with default detector settings. The per-frame results, or every
/// problem. Blocking work.
pub fn check_model(
    bytes: &[u8],
    manifest: &ModelManifest,
    library: Option<PathBuf>,
) -> Result<Vec<FrameResult>, Vec<String>> {
    use sha2::Digest;
    let actual = hex::encode(sha2::Sha256::digest(bytes));
    if actual != manifest.sha256 {
        return Err(vec![format!(
            "model: its sha256 is {actual}, the manifest says {}",
            manifest.sha256
        )]);
    }
    let dir = tempfile::tempdir().map_err(|e| vec![format!("model: no scratch space: {e}")])?;
    let path = dir.path().join("model.onnx");
    std::fs::write(&path, bytes).map_err(|e| vec![format!("model: cannot stage it: {e}")])?;
    let mut settings = chitti_detector::DetectorSettings::new(&path);
    settings.library = library;
    // A model that makes the runtime panic is refused, not a dead hub thread.
    std::panic::catch_unwind(|| chitti_detector::selftest::self_test(&settings, manifest))
        .unwrap_or_else(|_| Err("the runtime panicked on this model".into()))
        .map_err(|e| {
            // The runtime's words name the agent's key; the hub's is another.
            let hint = if e.contains("no onnx runtime library") {
                " (on the hub: [models] onnxruntime_library)"
            } else {
                ""
            };
            vec![format!("model: {e}{hint}")]
        })
}

/// What one step of an open rollout changes (pure: the store applies it in the
/// snapshot's transaction).
pub fn decide_step(s: &RolloutSnapshot, now: DateTime<Utc>) -> RolloutPlan {
    let r = &s.rollout;
    let mut plan = RolloutPlan::default();
    // Each gateway's state after this step's reports and timeouts.
    let mut states: Vec<(GatewayRolloutState, Option<String>)> = Vec::new();
    for g in &s.gateways {
        let key = (g.site.clone(), g.gateway.clone());
        let (mut state, mut reason) = (g.state, g.reason.clone());
        if g.state.in_flight() {
            if let Some(report) = s
                .reports
                .get(&key)
                .filter(|rep| Some(rep.state.seq as i64) == g.seq)
            {
                state = GatewayRolloutState::from_phase(report.state.phase);
                reason = report.state.reason.clone();
            }
            let overdue = g
                .assigned_at
                .is_some_and(|at| (now - at).num_seconds() >= r.step_timeout_s);
            if state.in_flight() && overdue && r.state == RolloutState::Running {
                if s.online.get(&key).copied().unwrap_or(false) {
                    reason = Some(format!(
                        "no decision within {} s of being sent the model (last: {})",
                        r.step_timeout_s,
                        state.as_str()
                    ));
                    state = GatewayRolloutState::Failed;
                } else {
                    reason = Some(format!(
                        "offline: no answer within {} s of being sent the model",
                        r.step_timeout_s
                    ));
                    state = GatewayRolloutState::Skipped;
                }
            }
        }
        if (state, &reason) != (g.state, &g.reason) {
            plan.updates
                .push((g.site.clone(), g.gateway.clone(), state, reason.clone()));
        }
        states.push((state, reason));
    }
    if r.state != RolloutState::Running {
        return plan;
    }
    // The abort rule.
    let failed: Vec<usize> = (0..states.len())
        .filter(|i| states[*i].0 == GatewayRolloutState::Failed)
        .collect();
    let decided = states
        .iter()
        .filter(|(st, _)| {
            matches!(
                st,
                GatewayRolloutState::Succeeded | GatewayRolloutState::Failed
            )
        })
        .count();
    if !failed.is_empty()
        && decided >= r.min_gateways.max(1) as usize
        && failed.len() as f64 / decided as f64 > r.abort_failure_ratio
    {
        let first = &s.gateways[failed[0]];
        let why = states[failed[0]].1.as_deref().unwrap_or("failed");
        let reason = format!(
            "{} of {decided} decided gateways failed (abort_failure_ratio {}); first: {}/{}: {why}",
            failed.len(),
            r.abort_failure_ratio,
            first.site,
            first.gateway
        );
        abort(s, &states, &mut plan, reason);
        return plan;
    }
    // Waves.
    let wave = r.current_wave;
    let in_wave = |w: i32| (0..s.gateways.len()).filter(move |i| s.gateways[*i].wave == w);
    let waiting: Vec<usize> = in_wave(wave)
        .filter(|i| states[*i].0 == GatewayRolloutState::Waiting)
        .collect();
    if !waiting.is_empty() {
        plan.assign.extend(waiting.iter().map(|i| key_of(s, *i)));
        return plan;
    }
    if in_wave(wave).all(|i| states[i].0.is_final()) {
        let next = wave + 1;
        if (next as usize) < r.waves.len() {
            plan.current_wave = Some(next);
            plan.assign.extend(in_wave(next).map(|i| key_of(s, i)));
        } else {
            let count = |st: GatewayRolloutState| states.iter().filter(|(x, _)| *x == st).count();
            plan.state = Some((
                RolloutState::Completed,
                Some(format!(
                    "{} succeeded, {} failed, {} skipped",
                    count(GatewayRolloutState::Succeeded),
                    count(GatewayRolloutState::Failed),
                    count(GatewayRolloutState::Skipped)
                )),
            ));
        }
    }
    plan
}

fn key_of(s: &RolloutSnapshot, i: usize) -> (String, String) {
    (s.gateways[i].site.clone(), s.gateways[i].gateway.clone())
}

/// Stops a rollout: every gateway sent the model is sent back what it had; those that
/// ran it are `rolled_back`, those in flight too, those not reached `skipped`.
fn abort(
    s: &RolloutSnapshot,
    states: &[(GatewayRolloutState, Option<String>)],
    plan: &mut RolloutPlan,
    reason: String,
) {
    plan.updates.clear();
    for (i, g) in s.gateways.iter().enumerate() {
        let (state, why) = &states[i];
        let (new, new_why) = match state {
            GatewayRolloutState::Waiting => (
                GatewayRolloutState::Skipped,
                Some("the rollout was aborted before its wave".to_string()),
            ),
            GatewayRolloutState::Succeeded => (
                GatewayRolloutState::RolledBack,
                Some("the rollout was aborted".to_string()),
            ),
            st if st.in_flight() => (
                GatewayRolloutState::RolledBack,
                Some("the rollout was aborted".to_string()),
            ),
            st => (*st, why.clone()),
        };
        if (new, &new_why) != (g.state, &g.reason) {
            plan.updates
                .push((g.site.clone(), g.gateway.clone(), new, new_why));
        }
        if g.seq.is_some() {
            plan.revert.push(key_of(s, i));
        }
    }
    plan.assign.clear();
    plan.state = Some((RolloutState::Aborted, Some(reason)));
}

/// An admin's abort, as a plan (the rollout must be open).
pub fn abort_plan(s: &RolloutSnapshot, now: DateTime<Utc>, reason: String) -> RolloutPlan {
    // This step's reports first, so the states rolled back are current ones.
    let step = decide_step(
        &RolloutSnapshot {
            rollout: crate::store::RolloutRecord {
                state: RolloutState::Paused,
                ..s.rollout.clone()
            },
            ..s.clone()
        },
        now,
    );
    let mut states: Vec<(GatewayRolloutState, Option<String>)> = s
        .gateways
        .iter()
        .map(|g| (g.state, g.reason.clone()))
        .collect();
    for (site, gateway, st, why) in step.updates {
        if let Some(i) = s
            .gateways
            .iter()
            .position(|g| g.site == site && g.gateway == gateway)
        {
            states[i] = (st, why);
        }
    }
    let mut plan = RolloutPlan::default();
    abort(s, &states, &mut plan, reason);
    plan
}

/// Drives open rollouts: one locked step each, every [`DRIVE_EVERY`] and when woken.
pub struct RolloutDriver<S> {
    store: Arc<S>,
    signal: Arc<Notify>,
    publish: Arc<Notify>,
    live: Option<Arc<crate::live::LiveEvents>>,
}

impl<S: Store + 'static> RolloutDriver<S> {
    /// A driver over `store`, woken by `signal`; it wakes `publish` (the desired-model
    /// publisher) when it sends gateways a model.
    pub fn new(
        store: Arc<S>,
        signal: Arc<Notify>,
        publish: Arc<Notify>,
        live: Option<Arc<crate::live::LiveEvents>>,
    ) -> Self {
        Self {
            store,
            signal,
            publish,
            live,
        }
    }

    /// Runs until `stop` completes.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            self.pass(Utc::now()).await;
            tokio::select! {
                _ = &mut stop => return,
                _ = self.signal.notified() => {}
                _ = tokio::time::sleep(DRIVE_EVERY) => {}
            }
        }
    }

    /// One step of every open rollout; a store error is logged and tried again at the
    /// next pass.
    pub async fn pass(&self, now: DateTime<Utc>) {
        let open = match self.store.open_rollouts().await {
            Ok(ids) => ids,
            Err(err) => {
                tracing::warn!(%err, "rollouts: cannot read the store; trying again");
                return;
            }
        };
        for id in open {
            match self
                .store
                .advance_rollout(&id, now, |s| decide_step(s, now))
                .await
            {
                Ok(Some((rollout, plan))) if !plan.is_empty() => {
                    self.changed(&rollout, &plan);
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(rollout = %id, %err, "rollout step failed; trying again")
                }
            }
        }
    }

    fn changed(&self, rollout: &crate::store::RolloutRecord, plan: &RolloutPlan) {
        for (site, gateway, state, reason) in &plan.updates {
            tracing::info!(rollout = %rollout.id, %site, %gateway, state = state.as_str(),
                reason = reason.as_deref().unwrap_or(""), "rollout gateway");
        }
        if !plan.assign.is_empty() {
            tracing::info!(rollout = %rollout.id, wave = rollout.current_wave,
                gateways = plan.assign.len(), "rollout wave sent");
        }
        if let Some((state, reason)) = &plan.state {
            match state {
                RolloutState::Aborted => tracing::warn!(rollout = %rollout.id,
                    reason = reason.as_deref().unwrap_or(""), "rollout aborted"),
                _ => tracing::info!(rollout = %rollout.id, state = state.as_str(),
                    reason = reason.as_deref().unwrap_or(""), "rollout"),
            }
        }
        if !plan.assign.is_empty() || !plan.revert.is_empty() {
            self.publish.notify_one();
        }
        if let Some(live) = &self.live {
            for (site, gateway, _, _) in &plan.updates {
                live.gateway_changed(site, gateway);
            }
        }
    }
}

/// The `/model/set` payload of a gateway's desired model: the offer with its signed
/// manifest, all signed for the gateway's topic.
pub fn desired_model_payload(
    topic: &str,
    seq: i64,
    model: Option<&ModelRecord>,
    rollout: Option<String>,
    probation_s: i64,
    issued_at: DateTime<Utc>,
    key: &ed25519_dalek::SigningKey,
) -> Result<Vec<u8>, String> {
    let model = match model {
        Some(m) => Some(ModelOffer {
            id: m.id.clone(),
            path: format!("/api/v1/models/{}/file", m.id),
            token: m.download_token.clone(),
            bytes: u64::try_from(m.bytes).unwrap_or(0),
            manifest: String::from_utf8(sign_manifest(&m.manifest, key)?)
                .map_err(|e| e.to_string())?,
        }),
        None => None,
    };
    let desired = DesiredModel {
        seq: u64::try_from(seq).map_err(|e| e.to_string())?,
        model,
        rollout,
        probation_s: u64::try_from(probation_s).unwrap_or(0),
        issued_at,
    };
    sign_desired_model(topic, &desired, key)
}

/// Publishes one gateway's desired model (retained).
pub(crate) async fn publish_desired_model<S: Store>(
    store: &S,
    bus: &HubBus,
    key: &ed25519_dalek::SigningKey,
    site: &str,
    gateway: &str,
) -> Result<i64, String> {
    let desired = store
        .desired_model(site, gateway)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no desired model")?;
    let model = match &desired.model_id {
        Some(id) => Some(
            store
                .model(id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("model {id} is gone"))?,
        ),
        None => None,
    };
    let topic = Topic::new(site, gateway, TopicKind::ModelSet)
        .map_err(|e| e.to_string())?
        .to_string();
    let payload = desired_model_payload(
        &topic,
        desired.seq,
        model.as_ref(),
        desired.rollout_id.clone(),
        desired.probation_s,
        desired.issued_at,
        key,
    )?;
    bus.publish(&topic, payload, true)
        .await
        .map_err(|e| e.to_string())?;
    Ok(desired.seq)
}
