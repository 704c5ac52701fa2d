//! The model registry and staged rollouts (issue #19; `crate::rollouts` drives them).
//!
//! # Invariants
//!
//! - **A model is saved only checked** (the caller ran its self-test) and is never
//!   changed; `(name, version)` is unique.
//! - **A gateway's desired model has one sequence**: `gateway_models.seq` grows by one
//!   with every assignment (a rollout's, or the undoing of one), whatever rollout it
//!   belongs to, so the agent's "only newer" rule holds across rollouts.
//! - **A rollout changes in one transaction with its row locked**
//!   ([`RolloutStore::advance_rollout`]): the driver of any replica and an admin's
//!   pause, resume or abort see one state and never interleave.
//! - **A gateway is in at most one unfinished rollout** (checked when one is created).
//! - **A report replaces the last only when newer** (its own `ts`).

use super::sql::{json_arg, Row, Sql, Tx};
use super::*;
use chitti_common::model_manifest::{FrameResult, ModelManifest};
use chitti_common::protocol::{ModelPhase, ModelState};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A model in the registry.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRecord {
    /// Registry id (UUIDv7, text).
    pub id: String,
    /// The manifest's name.
    pub name: String,
    /// The manifest's version.
    pub version: String,
    /// SHA-256 of the file.
    pub sha256: String,
    /// File size.
    pub bytes: i64,
    /// The checked manifest.
    pub manifest: ModelManifest,
    /// The self-test at upload, per reference frame.
    pub check_results: Vec<FrameResult>,
    /// The capability that fetches the file without an API token (sent to gateways
    /// inside their signed `/model/set`).
    pub download_token: String,
    /// Who uploaded it.
    pub uploaded_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    /// Waves advance.
    Running,
    /// Held by an admin: nothing new is assigned, nothing times out.
    Paused,
    /// Every wave done without reaching the abort rule.
    Completed,
    /// Stopped (the abort rule, or an admin); its gateways were sent back to the model
    /// they ran before.
    Aborted,
}

/// Where one gateway of a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GatewayRolloutState {
    /// Its wave has not started.
    Waiting,
    /// Sent; fetching the file (or not yet answered).
    Downloading,
    /// Checking the signature and sha256.
    Verifying,
    /// Running the reference frames.
    Testing,
    /// Switched, watched for `probation_s`.
    Probation,
    /// Runs the model, probation passed.
    Succeeded,
    /// Refused or undid the model, or did not answer in time (`reason` says which).
    Failed,
    /// Not updated: offline past the step timeout, or the rollout stopped first.
    Skipped,
    /// Ran the model and was sent back when the rollout was aborted.
    RolledBack,
}

macro_rules! names {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            /// Every value's stored (and API) name.
            pub const NAMES: &'static [&'static str] = &[$($s),*];

            /// The stored (and API) name.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }

            /// The value a stored name names.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(Self::$v),)* _ => None }
            }
        }
    };
}

names!(RolloutState { Running => "running", Paused => "paused", Completed => "completed", Aborted => "aborted" });
names!(GatewayRolloutState {
    Waiting => "waiting", Downloading => "downloading", Verifying => "verifying",
    Testing => "testing", Probation => "probation", Succeeded => "succeeded",
    Failed => "failed", Skipped => "skipped", RolledBack => "rolled_back",
});

impl RolloutState {
    /// Whether it can still change gateways.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Running | Self::Paused)
    }
}

impl GatewayRolloutState {
    /// Sent and not yet decided.
    pub fn in_flight(self) -> bool {
        matches!(
            self,
            Self::Downloading | Self::Verifying | Self::Testing | Self::Probation
        )
    }

    /// Decided (nothing more will happen to it in this rollout).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Skipped | Self::RolledBack
        )
    }

    /// The state a gateway's report puts it in.
    pub fn from_phase(phase: ModelPhase) -> Self {
        match phase {
            ModelPhase::Downloading => Self::Downloading,
            ModelPhase::Verifying => Self::Verifying,
            ModelPhase::Testing => Self::Testing,
            ModelPhase::Probation => Self::Probation,
            ModelPhase::Active => Self::Succeeded,
            ModelPhase::Failed | ModelPhase::RolledBack => Self::Failed,
        }
    }
}

/// A rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutRecord {
    /// Id (UUIDv7, text).
    pub id: String,
    /// The model rolled out.
    pub model_id: String,
    /// The target as asked for (`{gateways: [...]}` or `{site: ...}`).
    pub target: serde_json::Value,
    /// Gateways per wave.
    pub waves: Vec<usize>,
    /// The wave in progress (0-based).
    pub current_wave: i32,
    /// Probation per gateway, seconds.
    pub probation_s: i64,
    /// Longest a gateway may take from being sent the model to a decision, seconds.
    pub step_timeout_s: i64,
    /// Failed / decided above this aborts, once `min_gateways` are decided.
    pub abort_failure_ratio: f64,
    /// Decided gateways before the ratio counts.
    pub min_gateways: i32,
    /// Where it stands.
    pub state: RolloutState,
    /// Why it was paused, completed or aborted.
    pub reason: Option<String>,
    /// Who created it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// One gateway of a rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutGatewayRecord {
    /// Site id.
    pub site: String,
    /// Gateway id.
    pub gateway: String,
    /// Order in the rollout.
    pub position: i32,
    /// Its wave (0-based).
    pub wave: i32,
    /// Where it stands.
    pub state: GatewayRolloutState,
    /// Why (failures, skips, roll-backs).
    pub reason: Option<String>,
    /// The `/model/set` seq it was sent.
    pub seq: Option<i64>,
    /// The model it was assigned before (None: its own configuration's).
    pub previous_model_id: Option<String>,
    /// When it was sent the model.
    pub assigned_at: Option<DateTime<Utc>>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A gateway's desired model (`/model/set`).
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredModelRecord {
    /// Site id.
    pub site: String,
    /// Gateway id.
    pub gateway: String,
    /// 1, 2, … per gateway.
    pub seq: i64,
    /// The model (None: the gateway's own configuration's).
    pub model_id: Option<String>,
    /// The rollout that assigned it.
    pub rollout_id: Option<String>,
    /// Probation, seconds.
    pub probation_s: i64,
    /// When.
    pub issued_at: DateTime<Utc>,
}

/// The last `/model/state` of a gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportedModel {
    /// The report.
    pub state: ModelState,
    /// When the hub received it.
    pub received_at: DateTime<Utc>,
}

/// `(site, gateway)`.
pub type GatewayKey = (String, String);

/// A gateway's failure in the newest rollout it was part of
/// ([`RolloutStore::model_failures`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelFailure {
    /// Site id.
    pub site: String,
    /// Gateway id.
    pub gateway: String,
    /// The rollout.
    pub rollout: String,
    /// The model rolled out.
    pub model: String,
    /// Why, as the gateway or the driver said.
    pub reason: Option<String>,
    /// When it was decided.
    pub at: DateTime<Utc>,
}

/// Everything a rollout's next step is decided on, read under the rollout's lock.
#[derive(Debug, Clone)]
pub struct RolloutSnapshot {
    /// The rollout.
    pub rollout: RolloutRecord,
    /// Its gateways, in order.
    pub gateways: Vec<RolloutGatewayRecord>,
    /// Their last reports.
    pub reports: HashMap<(String, String), ReportedModel>,
    /// Whether each is online (its last status).
    pub online: HashMap<(String, String), bool>,
}

/// What a step changes, applied in the snapshot's transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RolloutPlan {
    /// New gateway states: `(site, gateway, state, reason)`.
    pub updates: Vec<(String, String, GatewayRolloutState, Option<String>)>,
    /// Gateways sent this rollout's model now (their previous model is recorded).
    pub assign: Vec<(String, String)>,
    /// Gateways sent back to the model they had before this rollout.
    pub revert: Vec<(String, String)>,
    /// The wave now in progress.
    pub current_wave: Option<i32>,
    /// The rollout's new state, with why.
    pub state: Option<(RolloutState, Option<String>)>,
}

impl RolloutPlan {
    /// Whether the step changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

const MODEL_COLUMNS: &str = "id, name, version, sha256, bytes, manifest, check_results, \
    download_token, uploaded_by, created_at";
const ROLLOUT_COLUMNS: &str = "id, model_id, target, waves, current_wave, probation_s, \
    step_timeout_s, abort_failure_ratio, min_gateways, state, reason, created_by, created_at, \
    updated_at";
const ROLLOUT_GATEWAY_COLUMNS: &str = "site, gateway, position, wave, state, reason, seq, \
    previous_model_id, assigned_at, updated_at";
const DESIRED_MODEL_COLUMNS: &str =
    "site, gateway, seq, model_id, rollout_id, probation_s, issued_at";

fn model_from_row(row: &Row) -> Result<ModelRecord, StoreError> {
    Ok(ModelRecord {
        id: row.get("id")?,
        name: row.get("name")?,
        version: row.get("version")?,
        sha256: row.get("sha256")?,
        bytes: row.get("bytes")?,
        manifest: row.json("manifest", "model manifest")?,
        check_results: row.json("check_results", "model check")?,
        download_token: row.get("download_token")?,
        uploaded_by: row.get("uploaded_by")?,
        created_at: row.time("created_at")?,
    })
}

fn rollout_from_row(row: &Row) -> Result<RolloutRecord, StoreError> {
    let state: String = row.get("state")?;
    Ok(RolloutRecord {
        id: row.get("id")?,
        model_id: row.get("model_id")?,
        target: row.json("target", "rollout target")?,
        waves: row.json("waves", "rollout waves")?,
        current_wave: row.get("current_wave")?,
        probation_s: row.get("probation_s")?,
        step_timeout_s: row.get("step_timeout_s")?,
        abort_failure_ratio: row.get("abort_failure_ratio")?,
        min_gateways: row.get("min_gateways")?,
        state: RolloutState::parse(&state)
            .ok_or_else(|| StoreError::corrupt("rollout state", state))?,
        reason: row.get("reason")?,
        created_by: row.get("created_by")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

fn rollout_gateway_from_row(row: &Row) -> Result<RolloutGatewayRecord, StoreError> {
    let state: String = row.get("state")?;
    Ok(RolloutGatewayRecord {
        site: row.get("site")?,
        gateway: row.get("gateway")?,
        position: row.get("position")?,
        wave: row.get("wave")?,
        state: GatewayRolloutState::parse(&state)
            .ok_or_else(|| StoreError::corrupt("rollout gateway state", state))?,
        reason: row.get("reason")?,
        seq: row.get("seq")?,
        previous_model_id: row.get("previous_model_id")?,
        assigned_at: row.opt_time("assigned_at")?,
        updated_at: row.time("updated_at")?,
    })
}

fn desired_model_from_row(row: &Row) -> Result<DesiredModelRecord, StoreError> {
    Ok(DesiredModelRecord {
        site: row.get("site")?,
        gateway: row.get("gateway")?,
        seq: row.get("seq")?,
        model_id: row.get("model_id")?,
        rollout_id: row.get("rollout_id")?,
        probation_s: row.get("probation_s")?,
        issued_at: row.time("issued_at")?,
    })
}

fn reported_from_row(row: &Row) -> Result<ReportedModel, StoreError> {
    let phase: String = row.get("phase")?;
    Ok(ReportedModel {
        state: ModelState {
            seq: u64::try_from(row.get::<i64>("seq")?).unwrap_or(0),
            model_id: row.get("model_id")?,
            phase: ModelPhase::parse(&phase)
                .ok_or_else(|| StoreError::corrupt("model phase", phase))?,
            reason: row.get("reason")?,
            running: row.opt_json("running", "running model")?,
            ts: row.time("reported_at")?,
        },
        received_at: row.time("received_at")?,
    })
}

fn to_json(value: &impl Serialize, what: &'static str) -> Result<super::sql::Arg, StoreError> {
    serde_json::to_string(value)
        .map(|s| json_arg(Some(rows::json_without_nul(s))))
        .map_err(|e| StoreError::corrupt(what, e))
}

/// Sends `model_id` (None: the gateway's own) to a gateway: its next seq, returned
/// with the model it was assigned before.
async fn assign_in(
    tx: &mut Tx,
    site: &str,
    gateway: &str,
    model_id: Option<&str>,
    rollout_id: Option<&str>,
    probation_s: i64,
    at: DateTime<Utc>,
) -> Result<(i64, Option<String>), StoreError> {
    let lock = tx.backend().for_update();
    let current = tx
        .fetch_optional(
            Sql::new(format!(
                "SELECT seq, model_id FROM gateway_models WHERE site = $1 AND gateway = $2{lock}"
            ))
            .bind(site)
            .bind(gateway),
        )
        .await?;
    let (seq, previous) = match &current {
        Some(row) => (row.get::<i64>("seq")? + 1, row.get("model_id")?),
        None => (1, None),
    };
    tx.execute(
        Sql::new(format!(
            "INSERT INTO gateway_models ({DESIRED_MODEL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (site, gateway) DO UPDATE SET seq = excluded.seq, \
             model_id = excluded.model_id, rollout_id = excluded.rollout_id, \
             probation_s = excluded.probation_s, issued_at = excluded.issued_at"
        ))
        .bind(site)
        .bind(gateway)
        .bind(seq)
        .bind(model_id)
        .bind(rollout_id)
        .bind(probation_s)
        .bind(at),
    )
    .await?;
    Ok((seq, previous))
}

/// The registry, rollouts and each gateway's desired and reported model.
pub trait RolloutStore: Backed {
    /// Saves a checked model; [`StoreError::AlreadyExists`] when its name and version
    /// are taken.
    fn insert_model(
        &self,
        model: &ModelRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move {
            let exists = self
                .db()
                .fetch_optional(
                    Sql::new("SELECT id FROM models WHERE name = $1 AND version = $2")
                        .bind(model.name.as_str())
                        .bind(model.version.as_str()),
                )
                .await?;
            if exists.is_some() {
                return Err(StoreError::AlreadyExists {
                    what: "model",
                    id: format!("{} {}", model.name, model.version),
                });
            }
            let sql = Sql::new(format!(
                "INSERT INTO models ({MODEL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            ))
            .bind(model.id.as_str())
            .bind(text_without_nul(&model.name))
            .bind(text_without_nul(&model.version))
            .bind(model.sha256.as_str())
            .bind(model.bytes)
            .bind(to_json(&model.manifest, "model manifest")?)
            .bind(to_json(&model.check_results, "model check")?)
            .bind(model.download_token.as_str())
            .bind(text_without_nul(&model.uploaded_by))
            .bind(model.created_at);
            self.db().execute(sql).await.map_err(|e| match e {
                // Two uploads of one name and version at once: the second loses.
                StoreError::Database(_) => StoreError::AlreadyExists {
                    what: "model",
                    id: format!("{} {}", model.name, model.version),
                },
                other => other,
            })?;
            Ok(())
        }
    }

    /// One model.
    fn model(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<ModelRecord>, StoreError>> + Send {
        async move {
            let sql =
                Sql::new(format!("SELECT {MODEL_COLUMNS} FROM models WHERE id = $1")).bind(id);
            self.db()
                .fetch_optional(sql)
                .await?
                .as_ref()
                .map(model_from_row)
                .transpose()
        }
    }

    /// Every model, newest first.
    fn models(&self) -> impl Future<Output = Result<Vec<ModelRecord>, StoreError>> + Send {
        async move {
            let sql = Sql::new(format!(
                "SELECT {MODEL_COLUMNS} FROM models ORDER BY created_at DESC, id DESC"
            ));
            self.db()
                .fetch_all(sql)
                .await?
                .iter()
                .map(model_from_row)
                .collect()
        }
    }

    /// Creates a rollout with its gateways (`(site, gateway, wave)` in order); a
    /// gateway already in an unfinished rollout is a [`StoreError::InUse`] naming it.
    fn create_rollout(
        &self,
        rollout: &RolloutRecord,
        gateways: &[(String, String, i32)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move {
            let mut tx = self.db().begin_write().await?;
            for (site, gateway, _) in gateways {
                let busy = tx
                    .fetch_optional(
                        Sql::new(
                            "SELECT r.id FROM rollout_gateways g JOIN rollouts r ON r.id = g.rollout_id \
                             WHERE g.site = $1 AND g.gateway = $2 \
                             AND r.state IN ('running', 'paused') \
                             AND g.state NOT IN ('succeeded', 'failed', 'skipped', 'rolled_back')",
                        )
                        .bind(site.as_str())
                        .bind(gateway.as_str()),
                    )
                    .await?;
                if let Some(row) = busy {
                    let other: String = row.get("id")?;
                    return Err(StoreError::InUse {
                        what: format!("gateway {site}/{gateway} (in unfinished rollout {other})"),
                    });
                }
            }
            tx.execute(
                Sql::new(format!(
                    "INSERT INTO rollouts ({ROLLOUT_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
                ))
                .bind(rollout.id.as_str())
                .bind(rollout.model_id.as_str())
                .bind(to_json(&rollout.target, "rollout target")?)
                .bind(to_json(&rollout.waves, "rollout waves")?)
                .bind(rollout.current_wave)
                .bind(rollout.probation_s)
                .bind(rollout.step_timeout_s)
                .bind(rollout.abort_failure_ratio)
                .bind(rollout.min_gateways)
                .bind(rollout.state.as_str())
                .bind(&rollout.reason)
                .bind(text_without_nul(&rollout.created_by))
                .bind(rollout.created_at)
                .bind(rollout.updated_at),
            )
            .await?;
            for (position, (site, gateway, wave)) in gateways.iter().enumerate() {
                tx.execute(
                    Sql::new(format!(
                        "INSERT INTO rollout_gateways (rollout_id, {ROLLOUT_GATEWAY_COLUMNS}) \
                         VALUES ($1, $2, $3, $4, $5, 'waiting', NULL, NULL, NULL, NULL, $6)"
                    ))
                    .bind(rollout.id.as_str())
                    .bind(site.as_str())
                    .bind(gateway.as_str())
                    .bind(i32::try_from(position).unwrap_or(i32::MAX))
                    .bind(*wave)
                    .bind(rollout.created_at),
                )
                .await?;
            }
            tx.commit().await
        }
    }

    /// One rollout.
    fn rollout(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<RolloutRecord>, StoreError>> + Send {
        async move {
            let sql = Sql::new(format!(
                "SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE id = $1"
            ))
            .bind(id);
            self.db()
                .fetch_optional(sql)
                .await?
                .as_ref()
                .map(rollout_from_row)
                .transpose()
        }
    }

    /// Rollouts, newest first, at most `limit`.
    fn rollouts(
        &self,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<RolloutRecord>, StoreError>> + Send {
        async move {
            let sql = Sql::new(format!(
                "SELECT {ROLLOUT_COLUMNS} FROM rollouts ORDER BY created_at DESC, id DESC LIMIT $1"
            ))
            .bind(i64::from(limit));
            self.db()
                .fetch_all(sql)
                .await?
                .iter()
                .map(rollout_from_row)
                .collect()
        }
    }

    /// The ids of the rollouts still running or paused.
    fn open_rollouts(&self) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send {
        async move {
            let sql = Sql::new(
                "SELECT id FROM rollouts WHERE state IN ('running', 'paused') ORDER BY created_at",
            );
            self.db()
                .fetch_all(sql)
                .await?
                .iter()
                .map(|r| r.get("id"))
                .collect()
        }
    }

    /// A rollout's gateways, in order.
    fn rollout_gateways(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Vec<RolloutGatewayRecord>, StoreError>> + Send {
        async move {
            let sql = Sql::new(format!(
                "SELECT {ROLLOUT_GATEWAY_COLUMNS} FROM rollout_gateways WHERE rollout_id = $1 \
                 ORDER BY position"
            ))
            .bind(id);
            self.db()
                .fetch_all(sql)
                .await?
                .iter()
                .map(rollout_gateway_from_row)
                .collect()
        }
    }

    /// Takes one step of a rollout atomically: reads its [`RolloutSnapshot`] with the
    /// rollout locked, asks `decide` what changes, and applies that. The rollout after
    /// the step and whether anything changed; `Ok(None)` when there is no such rollout.
    fn advance_rollout<F>(
        &self,
        id: &str,
        now: DateTime<Utc>,
        decide: F,
    ) -> impl Future<Output = Result<Option<(RolloutRecord, RolloutPlan)>, StoreError>> + Send
    where
        F: FnOnce(&RolloutSnapshot) -> RolloutPlan + Send,
    {
        async move {
            let mut tx = self.db().begin_write().await?;
            let lock = tx.backend().for_update();
            let Some(row) = tx
                .fetch_optional(
                    Sql::new(format!(
                        "SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE id = $1{lock}"
                    ))
                    .bind(id),
                )
                .await?
            else {
                return Ok(None);
            };
            let rollout = rollout_from_row(&row)?;
            let gateways = tx
                .fetch_all(
                    Sql::new(format!(
                        "SELECT {ROLLOUT_GATEWAY_COLUMNS} FROM rollout_gateways \
                         WHERE rollout_id = $1 ORDER BY position"
                    ))
                    .bind(id),
                )
                .await?
                .iter()
                .map(rollout_gateway_from_row)
                .collect::<Result<Vec<_>, _>>()?;
            let mut reports = HashMap::new();
            let mut online = HashMap::new();
            for row in tx
                .fetch_all(
                    Sql::new(
                        "SELECT g.site, g.gateway, gw.online, s.seq, s.model_id, s.phase, s.reason, \
                         s.running, s.reported_at, s.received_at FROM rollout_gateways g \
                         JOIN gateways gw ON gw.site = g.site AND gw.gateway = g.gateway \
                         LEFT JOIN gateway_model_states s ON s.site = g.site AND s.gateway = g.gateway \
                         WHERE g.rollout_id = $1",
                    )
                    .bind(id),
                )
                .await?
            {
                let key: (String, String) = (row.get("site")?, row.get("gateway")?);
                online.insert(key.clone(), row.get::<bool>("online")?);
                if row.get::<Option<i64>>("seq")?.is_some() {
                    reports.insert(key, reported_from_row(&row)?);
                }
            }
            let snapshot = RolloutSnapshot {
                rollout,
                gateways,
                reports,
                online,
            };
            let plan = decide(&snapshot);
            let mut rollout = snapshot.rollout;
            if plan.is_empty() {
                return Ok(Some((rollout, plan)));
            }
            for (site, gateway, state, reason) in &plan.updates {
                tx.execute(
                    Sql::new(
                        "UPDATE rollout_gateways SET state = $4, reason = $5, updated_at = $6 \
                         WHERE rollout_id = $1 AND site = $2 AND gateway = $3",
                    )
                    .bind(id)
                    .bind(site.as_str())
                    .bind(gateway.as_str())
                    .bind(state.as_str())
                    .bind(reason.as_deref().map(text_without_nul))
                    .bind(now),
                )
                .await?;
            }
            for (site, gateway) in &plan.assign {
                let (seq, previous) = assign_in(
                    &mut tx,
                    site,
                    gateway,
                    Some(&rollout.model_id),
                    Some(id),
                    rollout.probation_s,
                    now,
                )
                .await?;
                tx.execute(
                    Sql::new(
                        "UPDATE rollout_gateways SET state = 'downloading', reason = NULL, \
                         seq = $4, previous_model_id = $5, assigned_at = $6, updated_at = $6 \
                         WHERE rollout_id = $1 AND site = $2 AND gateway = $3",
                    )
                    .bind(id)
                    .bind(site.as_str())
                    .bind(gateway.as_str())
                    .bind(seq)
                    .bind(previous)
                    .bind(now),
                )
                .await?;
            }
            for (site, gateway) in &plan.revert {
                let previous = snapshot_previous(&snapshot.gateways, site, gateway);
                assign_in(
                    &mut tx,
                    site,
                    gateway,
                    previous.as_deref(),
                    None,
                    rollout.probation_s,
                    now,
                )
                .await?;
            }
            if let Some(wave) = plan.current_wave {
                rollout.current_wave = wave;
            }
            if let Some((state, reason)) = &plan.state {
                rollout.state = *state;
                rollout.reason = reason.clone();
            }
            rollout.updated_at = now;
            tx.execute(
                Sql::new(
                    "UPDATE rollouts SET current_wave = $2, state = $3, reason = $4, updated_at = $5 \
                     WHERE id = $1",
                )
                .bind(id)
                .bind(rollout.current_wave)
                .bind(rollout.state.as_str())
                .bind(rollout.reason.as_deref().map(text_without_nul))
                .bind(now),
            )
            .await?;
            tx.commit().await?;
            Ok(Some((rollout, plan)))
        }
    }

    /// The newest desired-model seq of every gateway that has one, not revoked.
    fn desired_model_seqs(
        &self,
    ) -> impl Future<Output = Result<Vec<(String, String, i64)>, StoreError>> + Send {
        async move {
            let sql = Sql::new(
                "SELECT m.site, m.gateway, m.seq FROM gateway_models m \
                 JOIN gateways g ON g.site = m.site AND g.gateway = m.gateway \
                 WHERE g.revoked_at IS NULL ORDER BY m.site, m.gateway",
            );
            self.db()
                .fetch_all(sql)
                .await?
                .iter()
                .map(|r| Ok((r.get("site")?, r.get("gateway")?, r.get("seq")?)))
                .collect()
        }
    }

    /// A gateway's desired model.
    fn desired_model(
        &self,
        site: &str,
        gateway: &str,
    ) -> impl Future<Output = Result<Option<DesiredModelRecord>, StoreError>> + Send {
        async move {
            let sql = Sql::new(format!(
                "SELECT {DESIRED_MODEL_COLUMNS} FROM gateway_models WHERE site = $1 AND gateway = $2"
            ))
            .bind(site)
            .bind(gateway);
            self.db()
                .fetch_optional(sql)
                .await?
                .as_ref()
                .map(desired_model_from_row)
                .transpose()
        }
    }

    /// Records a gateway's `/model/state` when newer than the last kept; `false` when
    /// it is not.
    fn apply_model_state(
        &self,
        site: &str,
        gateway: &str,
        state: &ModelState,
        received_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        async move {
            let running = match &state.running {
                Some(r) => to_json(r, "running model")?,
                None => json_arg(None),
            };
            let sql = Sql::new(
                "INSERT INTO gateway_model_states (site, gateway, seq, model_id, phase, reason, \
                 running, reported_at, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (site, gateway) DO UPDATE SET seq = excluded.seq, \
                 model_id = excluded.model_id, phase = excluded.phase, reason = excluded.reason, \
                 running = excluded.running, reported_at = excluded.reported_at, \
                 received_at = excluded.received_at \
                 WHERE excluded.reported_at > gateway_model_states.reported_at",
            )
            .bind(site)
            .bind(gateway)
            .bind(i64::try_from(state.seq).unwrap_or(i64::MAX))
            .bind(state.model_id.as_deref().map(text_without_nul))
            .bind(state.phase.as_str())
            .bind(state.reason.as_deref().map(text_without_nul))
            .bind(running)
            .bind(state.ts)
            .bind(received_at);
            Ok(self.db().execute(sql).await? == 1)
        }
    }

    /// Every gateway's last `/model/state`.
    fn reported_models(
        &self,
    ) -> impl Future<Output = Result<Vec<(GatewayKey, ReportedModel)>, StoreError>> + Send {
        async move {
            let sql = Sql::new(
                "SELECT site, gateway, seq, model_id, phase, reason, running, reported_at, \
                 received_at FROM gateway_model_states ORDER BY site, gateway",
            );
            self.db()
                .fetch_all(sql)
                .await?
                .iter()
                .map(|r| Ok(((r.get("site")?, r.get("gateway")?), reported_from_row(r)?)))
                .collect()
        }
    }

    /// Per gateway, its failure in the newest rollout it was part of, when it failed
    /// there (what the fleet watch raises `model_failed` for; a later rollout that
    /// reaches it ends it).
    fn model_failures(&self) -> impl Future<Output = Result<Vec<ModelFailure>, StoreError>> + Send {
        async move {
            let sql = Sql::new(
                "SELECT g.site, g.gateway, g.rollout_id, r.model_id, g.reason, g.updated_at \
                 FROM rollout_gateways g JOIN rollouts r ON r.id = g.rollout_id \
                 WHERE g.state = 'failed' AND NOT EXISTS (SELECT 1 FROM rollout_gateways l \
                     JOIN rollouts lr ON lr.id = l.rollout_id \
                     WHERE l.site = g.site AND l.gateway = g.gateway AND l.seq > g.seq \
                     AND l.state <> 'waiting') \
                 ORDER BY g.site, g.gateway",
            );
            self.db()
                .fetch_all(sql)
                .await?
                .iter()
                .map(|r| {
                    Ok(ModelFailure {
                        site: r.get("site")?,
                        gateway: r.get("gateway")?,
                        rollout: r.get("rollout_id")?,
                        model: r.get("model_id")?,
                        reason: r.get("reason")?,
                        at: r.time("updated_at")?,
                    })
                })
                .collect()
        }
    }
}

fn snapshot_previous(
    gateways: &[RolloutGatewayRecord],
    site: &str,
    gateway: &str,
) -> Option<String> {
    gateways
        .iter()
        .find(|g| g.site == site && g.gateway == gateway)
        .and_then(|g| g.previous_model_id.clone())
}

impl<T: Backed> RolloutStore for T {}
