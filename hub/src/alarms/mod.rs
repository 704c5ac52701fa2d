//! The fleet watch: alarms about the fleet itself, raised and ended by the hub.
//!
//! Every `check_interval_s` the watch reads every gateway from the store and decides,
//! from what the gateway last reported and when, which conditions hold
//! ([`assess`], pure): `gateway_offline` (its Last Will, or nothing heard for
//! `ingest.offline_after_s`), `camera_stalled`, `outbox_pressure`, `detector_degraded`,
//! `evidence_upload_failing`, `clock_skew`, and `config_failed` (the gateway rejected
//! or rolled back its newest desired configuration, [`config_condition`]), and
//! `model_failed` (it failed the model update of its newest rollout,
//! [`model_condition`]). A condition without an unresolved alarm raises one; an alarm whose condition no longer holds is ended (resolved by `hub`,
//! with how long it lasted). Both go through the store's transitions, so notifications
//! follow exactly as for thermal alerts.
//!
//! What an offline gateway last said is not evidence of anything now: while a gateway is
//! offline only its offline alarm is decided, its other alarms stay as they are.
//!
//! The decision reads only the store, never memory, so hub replicas agree: each may
//! run the watch; a raise is an insert under a unique index and an end a conditional
//! update, so two replicas never raise or end one alarm twice.

pub mod config;

pub use config::AlarmsConfig;

use crate::store::{
    AlertKind, AlertRecord, ConfigFailure, FleetCondition, GatewayRecord, ModelFailure, Store,
    StoreError,
};
use chrono::{DateTime, Duration, Utc};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Camera states that deliver no frames by design: a folder source waiting for files,
/// a replay at its end.
const IDLE_CAMERA_STATES: &[&str] = &["watching", "finished"];

/// What the watch decided about one gateway.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Assessment {
    /// The conditions that hold.
    pub conditions: Vec<FleetCondition>,
    /// The kinds it could decide: an alarm of another kind is left as it is.
    pub decided: Vec<AlertKind>,
}

/// The watch's thresholds, from `[alarms]` and `ingest.offline_after_s`.
#[derive(Debug, Clone)]
pub struct WatchRules {
    /// `[alarms]`.
    pub alarms: AlarmsConfig,
    /// `ingest.offline_after_s`.
    pub offline_after: Duration,
}

impl WatchRules {
    fn secs(s: u64) -> Duration {
        Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1_000_000))
    }
}

/// The `config_failed` condition of a gateway that rejected or rolled back its newest
/// desired configuration (none when the kind is disabled).
pub fn config_condition(failure: &ConfigFailure, rules: &WatchRules) -> Option<FleetCondition> {
    let kind = AlertKind::ConfigFailed;
    if !rules.alarms.enabled(kind) {
        return None;
    }
    let what = match failure.status {
        chitti_common::protocol::ConfigStatus::RolledBack => "rolled back",
        _ => "rejected",
    };
    let why = match failure.errors.as_slice() {
        [] => String::new(),
        [one] => format!(": {one}"),
        [first, rest @ ..] => format!(": {first} (and {} more)", rest.len()),
    };
    Some(FleetCondition {
        site: failure.site.clone(),
        gateway: failure.gateway.clone(),
        kind,
        camera: String::new(),
        level: rules.alarms.level(&failure.site, kind),
        since: failure.received_at,
        detail: format!("configuration version {} {what}{why}", failure.version),
    })
}

/// The `model_failed` condition of a gateway that failed the model update of its newest
/// rollout (none when the kind is disabled).
pub fn model_condition(failure: &ModelFailure, rules: &WatchRules) -> Option<FleetCondition> {
    let kind = AlertKind::ModelFailed;
    rules.alarms.enabled(kind).then(|| FleetCondition {
        site: failure.site.clone(),
        gateway: failure.gateway.clone(),
        kind,
        camera: String::new(),
        level: rules.alarms.level(&failure.site, kind),
        since: failure.at,
        detail: format!(
            "model {} failed in rollout {}: {}",
            failure.model,
            failure.rollout,
            failure.reason.as_deref().unwrap_or("no reason given")
        ),
    })
}

/// Which fleet conditions hold for a gateway at `now` (hub clock). A revoked gateway,
/// or one never heard from, has none and decides every kind (its alarms end).
pub fn assess(gateway: &GatewayRecord, rules: &WatchRules, now: DateTime<Utc>) -> Assessment {
    let Some(last_seen) = gateway.last_seen_at.filter(|_| !gateway.is_revoked()) else {
        return Assessment {
            conditions: Vec::new(),
            decided: AlertKind::FLEET.to_vec(),
        };
    };
    let alarms = &rules.alarms;
    let mut conditions = Vec::new();
    let mut decided = vec![AlertKind::GatewayOffline];
    let mut condition = |kind: AlertKind, camera: &str, since: DateTime<Utc>, detail: String| {
        if alarms.enabled(kind) {
            conditions.push(FleetCondition {
                site: gateway.site.clone(),
                gateway: gateway.gateway.clone(),
                kind,
                camera: camera.to_string(),
                level: alarms.level(&gateway.site, kind),
                since: since.min(now),
                detail,
            });
        }
    };
    let silent_for = now - last_seen;
    // Offline by its Last Will (the latest status says so), or marked offline by the
    // watch after a silence (the latest status still says online).
    let will = !gateway.online && gateway.last_status.as_ref().is_none_or(|s| !s.online);
    if will {
        condition(
            AlertKind::GatewayOffline,
            "",
            last_seen,
            format!(
                "the broker lost the gateway's connection (its Last Will) at {}",
                hub_time(last_seen)
            ),
        );
    } else if !gateway.online || silent_for >= rules.offline_after {
        condition(
            AlertKind::GatewayOffline,
            "",
            last_seen,
            format!(
                "nothing heard since {} (offline after {} s)",
                hub_time(last_seen),
                rules.offline_after.num_seconds()
            ),
        );
    }
    let offline = !gateway.online || silent_for >= rules.offline_after;
    let Some(status) = gateway
        .last_status
        .as_ref()
        .filter(|s| s.online && !offline)
    else {
        return Assessment {
            conditions,
            decided,
        };
    };
    decided.extend(AlertKind::FLEET.iter().skip(1));
    // Times the gateway reported are on its clock: ages are measured against the
    // gateway's clock now (the hub's, moved by the measured offset; without one, by the
    // latest status's `ts` against when the hub last heard from it).
    let offset = gateway
        .clock_offset_ms
        .map(Duration::milliseconds)
        .unwrap_or_else(|| status.ts - last_seen);
    let age = |t: DateTime<Utc>| (now + offset - t).max(Duration::zero());

    let stall = WatchRules::secs(alarms.camera_stalled_after_s);
    for camera in &status.cameras {
        let word = camera.state.split(':').next().unwrap_or("").trim();
        if IDLE_CAMERA_STATES.contains(&word) {
            continue;
        }
        let (quiet, since_what) = match (camera.last_frame_at, status.session) {
            (Some(frame), _) => (
                age(frame),
                format!("last frame {}", hub_time(now - age(frame))),
            ),
            (None, Some(session)) => (age(session), "no frame since the agent started".into()),
            (None, None) => continue,
        };
        if quiet >= stall {
            condition(
                AlertKind::CameraStalled,
                &camera.id,
                now - quiet,
                format!(
                    "camera {} is {:?}; {since_what} ({} s without frames, stalled after {} s)",
                    camera.id,
                    camera.state,
                    quiet.num_seconds(),
                    alarms.camera_stalled_after_s
                ),
            );
        }
    }

    if let Some(buffer) = &status.buffer {
        let share = buffer
            .cap_bytes
            .filter(|&cap| cap > 0)
            .map(|cap| buffer.bytes as f64 / cap as f64);
        let evicting = gateway
            .evicted_at
            .filter(|&at| now - at < WatchRules::secs(alarms.outbox_eviction_hold_s));
        let full = share.filter(|&s| s >= alarms.outbox_pressure_share);
        if full.is_some() || evicting.is_some() {
            let mut why = Vec::new();
            if let Some(share) = full {
                why.push(format!(
                    "{:.0} % of its {} byte cap used (alarm at {:.0} %)",
                    share * 100.0,
                    buffer.cap_bytes.unwrap_or(0),
                    alarms.outbox_pressure_share * 100.0
                ));
            }
            if let Some(at) = evicting {
                why.push(format!(
                    "evicting since start: {} evidence, {} findings (last at {})",
                    buffer.evicted.evidence,
                    buffer.evicted.findings,
                    hub_time(at)
                ));
            }
            condition(
                AlertKind::OutboxPressure,
                "",
                evicting.unwrap_or(now),
                format!(
                    "outbox holds {} findings, {} bytes: {}",
                    buffer.depth,
                    buffer.bytes,
                    why.join("; ")
                ),
            );
        }
    }

    if let Some(detector) = status.detector.as_deref() {
        if detector.starts_with("degraded") {
            condition(
                AlertKind::DetectorDegraded,
                "",
                now,
                format!("component detector {detector}: findings from thresholds alone"),
            );
        }
    }

    if let Some(failing_since) = status.evidence.as_ref().and_then(|e| e.failing_since) {
        let failing = age(failing_since);
        if failing >= WatchRules::secs(alarms.evidence_failing_after_s) {
            let last = status
                .evidence
                .as_ref()
                .and_then(|e| e.last_error.as_deref())
                .unwrap_or("no error recorded");
            condition(
                AlertKind::EvidenceUploadFailing,
                "",
                now - failing,
                format!(
                    "no evidence upload has succeeded for {} s; latest error: {last}",
                    failing.num_seconds()
                ),
            );
        }
    }

    if let Some(offset) = gateway.clock_offset_ms {
        let bound = i64::try_from(alarms.clock_skew_max_s)
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000);
        // Transit only ever makes a clock read behind: a clock ahead is skewed at once;
        // one behind when two measurements agree (a queue of late messages draining
        // after an outage reads less behind each time).
        let agreed = offset > 0
            || gateway
                .clock_offset_prev_ms
                .is_some_and(|prev| (prev - offset).abs() <= 5_000);
        if offset.abs() > bound && agreed {
            condition(
                AlertKind::ClockSkew,
                "",
                now,
                format!(
                    "gateway clock {} s {} the hub's (bound {} s)",
                    offset.abs() / 1000,
                    if offset > 0 { "ahead of" } else { "behind" },
                    alarms.clock_skew_max_s
                ),
            );
        }
    }
    Assessment {
        conditions,
        decided,
    }
}

/// How an ended alarm's trail reads: what ended it and how long it lasted.
pub fn end_note(
    alarm: &AlertRecord,
    gateway: Option<&GatewayRecord>,
    now: DateTime<Utc>,
) -> String {
    let lasted = duration_words(alarm.outage(now).unwrap_or_default());
    match gateway {
        None => format!(
            "gateway no longer enrolled; {} lasted {lasted}",
            alarm.kind.title()
        ),
        Some(g) if g.is_revoked() => {
            format!("gateway revoked; {} lasted {lasted}", alarm.kind.title())
        }
        Some(_) if alarm.kind == AlertKind::GatewayOffline => {
            format!("gateway back online after {lasted}")
        }
        Some(_) => format!("{} cleared after {lasted}", alarm.kind.title()),
    }
}

/// A duration as the dashboard writes it (`4 min 13 s`).
pub fn duration_words(d: Duration) -> String {
    crate::dashboard::layout::duration(u64::try_from(d.num_seconds()).unwrap_or(0))
}

fn hub_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// What one pass changed.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WatchPass {
    /// Alarms raised.
    pub raised: Vec<AlertRecord>,
    /// Alarms ended.
    pub ended: Vec<AlertRecord>,
}

/// The fleet watch: one [`pass`](FleetWatch::pass) per `check_interval_s`.
pub struct FleetWatch<S> {
    store: Arc<S>,
    rules: WatchRules,
    live: Option<Arc<crate::live::LiveEvents>>,
}

impl<S: Store + Send + Sync + 'static> FleetWatch<S> {
    /// A watch over the store's gateways; `live` is told of every alarm it changes
    /// (which wakes the notifier and the dashboards).
    pub fn new(
        store: Arc<S>,
        rules: WatchRules,
        live: Option<Arc<crate::live::LiveEvents>>,
    ) -> Self {
        Self { store, rules, live }
    }

    /// Looks at every gateway once: raises, refreshes and ends alarms.
    pub async fn pass(&self, now: DateTime<Utc>) -> Result<WatchPass, StoreError> {
        let gateways = self.store.list_gateways().await?;
        let config_failures: HashMap<(String, String), ConfigFailure> = self
            .store
            .config_failures()
            .await?
            .into_iter()
            .map(|f| ((f.site.clone(), f.gateway.clone()), f))
            .collect();
        let model_failures: HashMap<(String, String), ModelFailure> = self
            .store
            .model_failures()
            .await?
            .into_iter()
            .map(|f| ((f.site.clone(), f.gateway.clone()), f))
            .collect();
        let unresolved = self.store.unresolved_fleet_alarms().await?;
        let mut open: HashMap<(String, String, AlertKind, String), &AlertRecord> = unresolved
            .iter()
            .map(|a| {
                (
                    (a.site.clone(), a.gateway.clone(), a.kind, a.camera.clone()),
                    a,
                )
            })
            .collect();
        let mut pass = WatchPass::default();
        let mut seen = HashSet::new();
        for gateway in &gateways {
            seen.insert((gateway.site.clone(), gateway.gateway.clone()));
            let mut assessment = assess(gateway, &self.rules, now);
            let key = (gateway.site.clone(), gateway.gateway.clone());
            if assessment.decided.contains(&AlertKind::ConfigFailed) {
                if let Some(failure) = config_failures.get(&key) {
                    assessment
                        .conditions
                        .extend(config_condition(failure, &self.rules));
                }
            }
            if assessment.decided.contains(&AlertKind::ModelFailed) {
                if let Some(failure) = model_failures.get(&key) {
                    assessment
                        .conditions
                        .extend(model_condition(failure, &self.rules));
                }
            }
            // A silent gateway is offline everywhere it is shown (the fleet page, the
            // overview, the live stream), as if its Last Will had come.
            let silent = gateway.online
                && assessment
                    .conditions
                    .iter()
                    .any(|c| c.kind == AlertKind::GatewayOffline);
            if silent
                && self
                    .store
                    .mark_silent_offline(
                        &gateway.site,
                        &gateway.gateway,
                        now - self.rules.offline_after,
                    )
                    .await?
            {
                if let Some(live) = &self.live {
                    live.gateway_changed(&gateway.site, &gateway.gateway);
                }
            }
            for condition in &assessment.conditions {
                match open.remove(&condition.key()) {
                    Some(alarm) => {
                        if alarm.detail.as_deref() != Some(condition.detail.as_str()) {
                            self.store
                                .refresh_fleet_alarm(alarm.id, &condition.detail, now)
                                .await?;
                        }
                    }
                    None => {
                        if let Some(alarm) = self.store.raise_fleet_alarm(condition, now).await? {
                            tracing::warn!(
                                site = %alarm.site,
                                gateway = %alarm.gateway,
                                kind = alarm.kind.as_str(),
                                camera = %alarm.camera,
                                level = alarm.worst_level,
                                detail = alarm.detail.as_deref().unwrap_or(""),
                                "fleet alarm raised"
                            );
                            pass.raised.push(alarm);
                        }
                    }
                }
            }
            // What is left open for this gateway, of a kind decided now, has ended.
            let ended: Vec<_> = open
                .iter()
                .filter(|((site, gw, kind, _), _)| {
                    site == &gateway.site
                        && gw == &gateway.gateway
                        && assessment.decided.contains(kind)
                })
                .map(|(key, alarm)| (key.clone(), *alarm))
                .collect();
            for (key, alarm) in ended {
                open.remove(&key);
                self.end(alarm, Some(gateway), now, &mut pass).await?;
            }
        }
        // Alarms of gateways that are gone.
        for alarm in open.into_values() {
            if !seen.contains(&(alarm.site.clone(), alarm.gateway.clone())) {
                self.end(alarm, None, now, &mut pass).await?;
            }
        }
        if let Some(live) = &self.live {
            let changed: Vec<_> = pass
                .raised
                .iter()
                .chain(&pass.ended)
                .map(|a| a.id)
                .collect();
            if !changed.is_empty() {
                live.alerts_changed(changed);
            }
        }
        Ok(pass)
    }

    async fn end(
        &self,
        alarm: &AlertRecord,
        gateway: Option<&GatewayRecord>,
        now: DateTime<Utc>,
        pass: &mut WatchPass,
    ) -> Result<(), StoreError> {
        let note = end_note(alarm, gateway, now);
        if let Some(ended) = self.store.end_fleet_alarm(alarm.id, &note, now).await? {
            tracing::info!(
                site = %ended.site,
                gateway = %ended.gateway,
                kind = ended.kind.as_str(),
                camera = %ended.camera,
                %note,
                "fleet alarm ended"
            );
            pass.ended.push(ended);
        }
        Ok(())
    }

    /// Runs passes until `stop` resolves. A store error is logged and the next pass
    /// tries again.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        let every = std::time::Duration::from_secs(self.rules.alarms.check_interval_s.max(1));
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = ticks.tick() => {
                    if let Err(err) = self.pass(Utc::now()).await {
                        tracing::error!(%err, "fleet watch pass failed; trying again at the next check");
                    }
                }
            }
        }
    }
}
