//! The model registry and staged rollouts (issue #19; [`crate::rollouts`]).
//!
//! | endpoint | role |
//! |---|---|
//! | `POST /api/v1/models` (multipart: `manifest` JSON, `model` file) | admin |
//! | `GET /api/v1/models`, `GET /api/v1/models/{id}` | viewer |
//! | `GET /api/v1/models/{id}/file` (range requests) | viewer, or `?token=` (gateways) |
//! | `GET /api/v1/model-distribution` (which gateway runs what) | viewer |
//! | `POST /api/v1/rollouts` | admin |
//! | `GET /api/v1/rollouts`, `GET /api/v1/rollouts/{id}` | viewer |
//! | `POST /api/v1/rollouts/{id}/pause`, `…/resume`, `…/abort` | admin |
//!
//! An uploaded model is checked before it is saved — the manifest valid, the file's
//! sha256 the manifest's, ONNX Runtime loads it and its reference frames find what the
//! manifest expects — and every problem is a 422; nothing unchecked can be rolled out.
//! Uploads, rollouts and each admin action are audited (`model.upload`,
//! `rollout.create`, `rollout.pause`, `rollout.resume`, `rollout.abort`).

use super::alerts::action_body;
use super::auth::Principal;
use super::error::{ApiError, ErrorBody, ErrorCode};
use super::{audit, ApiJson, ApiQuery, ApiState, ListPage};
use crate::rollouts::{abort_plan, check_model};
use crate::store::{
    FleetStore, GatewayRolloutState, ModelRecord, Role, RolloutGatewayRecord, RolloutPlan,
    RolloutRecord, RolloutState, RolloutStore, StoreError,
};
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Multipart, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chitti_common::model_manifest::{FrameResult, ModelManifest, Version, MAX_MANIFEST_BYTES};
use chitti_common::protocol::ModelState;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// Rollouts listed, newest first.
const ROLLOUTS_LISTED: u32 = 200;
/// Longest reason accepted, characters.
const MAX_REASON_CHARS: usize = 1024;
/// Longest probation, seconds (a week).
const MAX_PROBATION_S: i64 = 7 * 86_400;

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(upload_model, list_models))
        // Model files are larger than the JSON limit; the upload bounds its own body.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .routes(routes!(get_model))
        .routes(routes!(model_file))
        .routes(routes!(model_distribution))
        .routes(routes!(create_rollout, list_rollouts))
        .routes(routes!(get_rollout))
        .routes(routes!(pause_rollout))
        .routes(routes!(resume_rollout))
        .routes(routes!(abort_rollout))
}

/// A model in the registry.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelView {
    /// Registry id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// SHA-256 of the file.
    pub sha256: String,
    /// File size, bytes.
    pub bytes: i64,
    /// The manifest as uploaded (checked).
    pub manifest: ModelManifest,
    /// The self-test at upload, per reference frame.
    pub check: Vec<FrameResult>,
    /// Who uploaded it.
    pub uploaded_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

impl From<ModelRecord> for ModelView {
    fn from(m: ModelRecord) -> Self {
        Self {
            id: m.id,
            name: m.name,
            version: m.version,
            sha256: m.sha256,
            bytes: m.bytes,
            manifest: m.manifest,
            check: m.check_results,
            uploaded_by: m.uploaded_by,
            created_at: m.created_at,
        }
    }
}

/// The upload form.
#[allow(dead_code)]
#[derive(ToSchema)]
struct ModelForm {
    /// The manifest, JSON (`chitti-agent model-manifest` writes one).
    manifest: String,
    /// The `.onnx` file.
    #[schema(format = Binary, content_media_type = "application/octet-stream")]
    model: String,
}

/// Uploads a model with its manifest; saved only when the check passes.
#[utoipa::path(
    post,
    path = "/api/v1/models",
    tag = "models",
    request_body(content = inline(ModelForm), content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "Checked and saved", body = ModelView),
        (status = 400, description = "A part is missing, repeated or unknown", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 409, description = "This name and version are already in the registry", body = ErrorBody),
        (status = 413, description = "Larger than models.max_bytes", body = ErrorBody),
        (status = 415, description = "Not a multipart/form-data body", body = ErrorBody),
        (status = 422, description = "The manifest is invalid or the model fails its check (every problem)", body = ErrorBody),
        (status = 503, description = "Every analysis slot is busy", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn upload_model(
    State(s): State<ApiState>,
    p: Principal,
    req: Request,
) -> Result<Response, ApiError> {
    p.require(Role::Admin)?;
    let limit = s.models.max_bytes.0;
    let too_large = || {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the model is larger than the {limit} bytes accepted (models.max_bytes)"),
        )
    };
    let body_limit = usize::try_from(limit.saturating_add(MAX_MANIFEST_BYTES as u64 + 64 * 1024))
        .unwrap_or(usize::MAX);
    let req = req.map(|body| Body::new(http_body_util::Limited::new(body, body_limit)));
    let _slot = s.analysis_slot()?;
    let mut multipart = Multipart::from_request(req, &()).await.map_err(|_| {
        ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "expected a multipart/form-data body (with a boundary)",
        )
    })?;
    let (mut manifest, mut model): (Option<Bytes>, Option<Bytes>) = (None, None);
    while let Some(field) = multipart.next_field().await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            ApiError::bad_request(format!("malformed multipart body: {}", e.body_text()))
        }
    })? {
        let name = field.name().unwrap_or_default().to_string();
        let slot = match name.as_str() {
            "manifest" => &mut manifest,
            "model" => &mut model,
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown part {other:?}: send `manifest` (JSON) and `model` (the .onnx file)"
                )))
            }
        };
        if slot.is_some() {
            return Err(ApiError::bad_request(format!("part {name:?} sent twice")));
        }
        let bytes = field.bytes().await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::bad_request(format!("part {name:?}: {}", e.body_text()))
            }
        })?;
        *slot = Some(bytes);
    }
    let (Some(manifest), Some(model)) = (manifest, model) else {
        return Err(ApiError::bad_request(
            "send both parts: `manifest` (JSON) and `model` (the .onnx file)",
        ));
    };
    if model.len() as u64 > limit {
        return Err(too_large());
    }
    if model.is_empty() {
        return Err(ApiError::invalid_document(
            "model",
            vec!["model: the file is empty".into()],
        ));
    }
    let manifest = ModelManifest::parse(&manifest)
        .map_err(|problems| ApiError::invalid_document("manifest", problems))?;
    let results = {
        let (model, manifest, library) = (
            model.clone(),
            manifest.clone(),
            s.models.onnxruntime_library.clone(),
        );
        tokio::task::spawn_blocking(move || check_model(&model, &manifest, library))
            .await
            .map_err(|e| {
                ApiError::new(ErrorCode::Internal, format!("the model check failed: {e}"))
            })?
            .map_err(|problems| ApiError::invalid_document("model", problems))?
    };
    s.evidence
        .put_model(&manifest.sha256, model.clone())
        .await
        .map_err(|e| ApiError::new(ErrorCode::Unavailable, e.to_string()))?;
    let mut token = [0u8; 24];
    getrandom::fill(&mut token)
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("no randomness: {e}")))?;
    let record = ModelRecord {
        id: Uuid::now_v7().to_string(),
        name: manifest.name.clone(),
        version: manifest.version.clone(),
        sha256: manifest.sha256.clone(),
        bytes: i64::try_from(model.len()).unwrap_or(i64::MAX),
        manifest,
        check_results: results,
        download_token: hex::encode(token),
        uploaded_by: p.actor(),
        created_at: Utc::now(),
    };
    s.store.insert_model(&record).await.map_err(|e| match e {
        StoreError::AlreadyExists { id, .. } => ApiError::new(
            ErrorCode::Conflict,
            format!("model {id} is already in the registry: give the new one another version"),
        ),
        other => other.into(),
    })?;
    audit(
        &s,
        &p,
        "model.upload",
        &format!("model/{}", record.id),
        json!({"name": record.name, "version": record.version, "sha256": record.sha256, "bytes": record.bytes}),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(ModelView::from(record))).into_response())
}

/// Every model in the registry, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/models",
    tag = "models",
    responses(
        (status = 200, description = "The registry", body = ListPage<ModelView>),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn list_models(
    State(s): State<ApiState>,
    p: Principal,
) -> Result<Json<ListPage<ModelView>>, ApiError> {
    p.require(Role::Viewer)?;
    let models = s.store.models().await?;
    Ok(Json(ListPage::whole(
        models.into_iter().map(ModelView::from).collect(),
    )))
}

async fn existing_model(s: &ApiState, id: &str) -> Result<ModelRecord, ApiError> {
    if id.len() > 64 {
        return Err(ApiError::not_found(format!("model {}", &id[..64])));
    }
    s.store
        .model(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("model {id}")))
}

/// One model.
#[utoipa::path(
    get,
    path = "/api/v1/models/{id}",
    tag = "models",
    params(("id" = String, Path, description = "Model id")),
    responses(
        (status = 200, description = "The model", body = ModelView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such model", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn get_model(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<ModelView>, ApiError> {
    p.require(Role::Viewer)?;
    Ok(Json(existing_model(&s, &id).await?.into()))
}

/// `?token=` of a model download.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct FileQuery {
    /// The download capability a gateway was given in its signed `/model/set`; without
    /// it, a viewer's session or token.
    token: Option<String>,
}

/// The model file, with range requests (`Range: bytes=N-`), so a download over a poor
/// link resumes where it stopped.
#[utoipa::path(
    get,
    path = "/api/v1/models/{id}/file",
    tag = "models",
    params(("id" = String, Path, description = "Model id"), FileQuery),
    responses(
        (status = 200, description = "The whole file", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "The range asked for", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 401, description = "Neither a valid token nor signed in", body = ErrorBody),
        (status = 404, description = "No such model", body = ErrorBody),
        (status = 416, description = "The range is outside the file", body = ErrorBody),
    ),
    security((), ("bearer" = []), ("session" = []))
)]
async fn model_file(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<FileQuery>,
    req: Request,
) -> Result<Response, ApiError> {
    let (mut parts, _) = req.into_parts();
    let model = match &q.token {
        Some(token) => {
            let model = existing_model(&s, &id)
                .await
                .map_err(|_| ApiError::unauthorized())?;
            // Constant-time: the token is a secret.
            let same = model.download_token.len() == token.len()
                && model
                    .download_token
                    .bytes()
                    .zip(token.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0;
            if !same {
                return Err(ApiError::new(
                    ErrorCode::Unauthorized,
                    "the download token is not this model's",
                ));
            }
            model
        }
        None => {
            let p = Principal::from_request_parts(&mut parts, &s).await?;
            p.require(Role::Viewer)?;
            existing_model(&s, &id).await?
        }
    };
    let size = s
        .evidence
        .model_size(&model.sha256)
        .await
        .map_err(|e| ApiError::new(ErrorCode::Unavailable, e.to_string()))?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unavailable,
                format!(
                    "the file of model {} is missing from the evidence store",
                    model.id
                ),
            )
        })?;
    let range = match requested_range(&parts.headers, size) {
        Ok(r) => r,
        Err(()) => {
            let mut r = ApiError::new(
                ErrorCode::RangeNotSatisfiable,
                format!("the range starts beyond the file's {size} bytes"),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(r);
        }
    };
    let (status, start, end) = match range {
        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b),
        None => (StatusCode::OK, 0, size),
    };
    let bytes = s
        .evidence
        .model_range(&model.sha256, start..end)
        .await
        .map_err(|e| ApiError::new(ErrorCode::Unavailable, e.to_string()))?;
    let mut response = (status, bytes).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", model.sha256)) {
        h.insert(header::ETAG, etag);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end - 1)) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(response)
}

/// The one range of a `Range: bytes=…` header as `[start, end)`: `None` without one
/// (or one this server answers whole, such as several ranges), `Err` when it is
/// outside a file of `size` bytes.
fn requested_range(headers: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.parse::<u64>().ok(), b.parse::<u64>().ok()) {
        (Some(start), None) if b.is_empty() => (start, size),
        (Some(start), Some(last)) if last >= start => (start, last.saturating_add(1).min(size)),
        (None, Some(suffix)) if a.is_empty() && suffix > 0 => (size.saturating_sub(suffix), size),
        _ => return Ok(None),
    };
    if range.0 >= size {
        return Err(());
    }
    Ok(Some(range))
}

/// One model identity and the gateways reporting it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelShare {
    /// Model name (`null`: thresholds alone, no model running).
    pub name: Option<String>,
    /// Version.
    pub version: Option<String>,
    /// SHA-256 of the file.
    pub sha256: Option<String>,
    /// The registry id, when the file is in the registry.
    pub model_id: Option<String>,
    /// `site/gateway` of each gateway running it.
    pub gateways: Vec<String>,
}

/// Which gateway runs which model (their last status), and the model updates in
/// progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelDistribution {
    /// One entry per model identity running, most gateways first.
    pub models: Vec<ModelShare>,
    /// Each gateway's last `/model/state`, by `site/gateway`.
    pub updates: BTreeMap<String, ModelState>,
}

/// The fleet's models.
#[utoipa::path(
    get,
    path = "/api/v1/model-distribution",
    tag = "models",
    responses(
        (status = 200, description = "Which gateway runs which model", body = ModelDistribution),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn model_distribution(
    State(s): State<ApiState>,
    p: Principal,
) -> Result<Json<ModelDistribution>, ApiError> {
    p.require(Role::Viewer)?;
    Ok(Json(distribution(&s).await?))
}

/// The model distribution (shared with the dashboard).
pub(crate) async fn distribution(s: &ApiState) -> Result<ModelDistribution, ApiError> {
    // One file may be registered under several versions: match all three.
    let registry: BTreeMap<(String, String, String), String> = s
        .store
        .models()
        .await?
        .into_iter()
        .map(|m| ((m.name, m.version, m.sha256), m.id))
        .collect();
    // (name, version, sha256) → gateways.
    type Identity = (Option<String>, Option<String>, Option<String>);
    let mut shares: BTreeMap<Identity, Vec<String>> = BTreeMap::new();
    for g in s.store.list_gateways().await? {
        if g.is_revoked() {
            continue;
        }
        let key = match &g.model {
            Some(m) => (
                Some(m.name.clone()),
                Some(m.version.clone()),
                Some(m.sha256.clone()),
            ),
            None => (None, None, None),
        };
        shares
            .entry(key)
            .or_default()
            .push(format!("{}/{}", g.site, g.gateway));
    }
    let mut models: Vec<ModelShare> = shares
        .into_iter()
        .map(|((name, version, sha256), gateways)| ModelShare {
            model_id: match (&name, &version, &sha256) {
                (Some(n), Some(v), Some(h)) => {
                    registry.get(&(n.clone(), v.clone(), h.clone())).cloned()
                }
                _ => None,
            },
            name,
            version,
            sha256,
            gateways,
        })
        .collect();
    models.sort_by_key(|m| std::cmp::Reverse(m.gateways.len()));
    let updates = s
        .store
        .reported_models()
        .await?
        .into_iter()
        .map(|((site, gateway), r)| (format!("{site}/{gateway}"), r.state))
        .collect();
    Ok(ModelDistribution { models, updates })
}

/// Which gateways a rollout reaches.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutTarget {
    /// `site/gateway` each, in the order the waves take them (the first wave is the
    /// canary).
    #[serde(default)]
    pub gateways: Option<Vec<String>>,
    /// Every enrolled gateway of this site, by id.
    #[serde(default)]
    pub site: Option<String>,
}

/// One wave: a number of gateways or a share of the target.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WaveSpec {
    /// Gateways in this wave.
    #[serde(default)]
    pub size: Option<u32>,
    /// Percent of the target in this wave (rounded up, at least one gateway).
    #[serde(default)]
    pub percent: Option<f64>,
}

/// A new rollout.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRollout {
    /// The registry id of the model.
    pub model_id: String,
    /// The gateways.
    pub target: RolloutTarget,
    /// Waves in order; the gateways no wave takes form one last wave. Default: one
    /// wave of everything.
    #[serde(default)]
    pub waves: Vec<WaveSpec>,
    /// How long each gateway watches the new model before it counts as good, seconds
    /// (default 300).
    #[serde(default = "default_probation")]
    pub probation_s: i64,
    /// Longest from sending a gateway the model to its decision, seconds (default
    /// probation_s + 900); silence past it is a failure (or a skip when offline).
    #[serde(default)]
    pub step_timeout_s: Option<i64>,
    /// Failed / decided above this aborts the rollout (default 0: any failure).
    #[serde(default)]
    pub abort_failure_ratio: f64,
    /// Decided gateways before the ratio counts (default 1).
    #[serde(default = "one")]
    pub min_gateways: i32,
    /// Allow gateways to go to a lower version of a model they run.
    #[serde(default)]
    pub allow_downgrade: bool,
    /// Why (audited).
    #[serde(default)]
    pub reason: String,
}

fn default_probation() -> i64 {
    300
}

fn one() -> i32 {
    1
}

/// One gateway of a rollout.
#[derive(Debug, Serialize, ToSchema)]
pub struct RolloutGatewayView {
    /// `site/gateway`.
    pub gateway: String,
    /// Its wave (0: the canary).
    pub wave: i32,
    /// `waiting`, `downloading`, `verifying`, `testing`, `probation`, `succeeded`,
    /// `failed`, `skipped` or `rolled_back`.
    #[schema(schema_with = gateway_state_schema)]
    pub state: GatewayRolloutState,
    /// Why (failures, skips, roll-backs; the gateway's own words where it gave them).
    pub reason: Option<String>,
    /// The `/model/set` seq it was sent.
    pub seq: Option<i64>,
    /// When it was sent the model.
    pub assigned_at: Option<DateTime<Utc>>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

fn gateway_state_schema() -> utoipa::openapi::schema::Object {
    super::enum_schema(
        GatewayRolloutState::NAMES,
        false,
        "Where the gateway stands",
    )
}

fn rollout_state_schema() -> utoipa::openapi::schema::Object {
    super::enum_schema(RolloutState::NAMES, false, "Where the rollout stands")
}

/// A rollout with its gateways.
#[derive(Debug, Serialize, ToSchema)]
pub struct RolloutView {
    /// Id.
    pub id: String,
    /// The model's registry id.
    pub model_id: String,
    /// Its name.
    pub model_name: String,
    /// Its version.
    pub model_version: String,
    /// `running`, `paused`, `completed` or `aborted`.
    #[schema(schema_with = rollout_state_schema)]
    pub state: RolloutState,
    /// Why it was paused, completed or aborted.
    pub reason: Option<String>,
    /// The target as asked for.
    pub target: serde_json::Value,
    /// Gateways per wave.
    pub waves: Vec<usize>,
    /// The wave in progress (0: the canary).
    pub current_wave: i32,
    /// Probation per gateway, seconds.
    pub probation_s: i64,
    /// Longest a gateway may take, seconds.
    pub step_timeout_s: i64,
    /// Abort above this failed / decided share.
    pub abort_failure_ratio: f64,
    /// Decided gateways before the share counts.
    pub min_gateways: i32,
    /// Who created it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Its gateways, in order.
    pub gateways: Vec<RolloutGatewayView>,
}

fn rollout_view(
    r: RolloutRecord,
    model: Option<&ModelRecord>,
    gateways: Vec<RolloutGatewayRecord>,
) -> RolloutView {
    RolloutView {
        model_name: model.map(|m| m.name.clone()).unwrap_or_default(),
        model_version: model.map(|m| m.version.clone()).unwrap_or_default(),
        id: r.id,
        model_id: r.model_id,
        state: r.state,
        reason: r.reason,
        target: r.target,
        waves: r.waves,
        current_wave: r.current_wave,
        probation_s: r.probation_s,
        step_timeout_s: r.step_timeout_s,
        abort_failure_ratio: r.abort_failure_ratio,
        min_gateways: r.min_gateways,
        created_by: r.created_by,
        created_at: r.created_at,
        updated_at: r.updated_at,
        gateways: gateways
            .into_iter()
            .map(|g| RolloutGatewayView {
                gateway: format!("{}/{}", g.site, g.gateway),
                wave: g.wave,
                state: g.state,
                reason: g.reason,
                seq: g.seq,
                assigned_at: g.assigned_at,
                updated_at: g.updated_at,
            })
            .collect(),
    }
}

/// A rollout as the API shows it (shared with the dashboard).
pub(crate) async fn load_rollout(s: &ApiState, id: &str) -> Result<RolloutView, ApiError> {
    if id.len() > 64 {
        return Err(ApiError::not_found("rollout"));
    }
    let rollout = s
        .store
        .rollout(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("rollout {id}")))?;
    let model = s.store.model(&rollout.model_id).await?;
    let gateways = s.store.rollout_gateways(id).await?;
    Ok(rollout_view(rollout, model.as_ref(), gateways))
}

/// Starts a rollout: the first wave is sent at once (by the rollout driver).
#[utoipa::path(
    post,
    path = "/api/v1/rollouts",
    tag = "models",
    request_body = NewRollout,
    responses(
        (status = 201, description = "Created; `id` names it", body = RolloutView),
        (status = 400, description = "Not a rollout", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such model", body = ErrorBody),
        (status = 409, description = "A gateway is already in an unfinished rollout", body = ErrorBody),
        (status = 415, description = "Not a JSON body", body = ErrorBody),
        (status = 422, description = "Every problem: unknown gateways, bad waves, a downgrade not allowed, an agent too old", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn create_rollout(
    State(s): State<ApiState>,
    p: Principal,
    ApiJson(req): ApiJson<NewRollout>,
) -> Result<Response, ApiError> {
    p.require(Role::Admin)?;
    let model = existing_model(&s, &req.model_id).await?;
    let mut problems = Vec::new();
    if req.reason.chars().count() > MAX_REASON_CHARS {
        problems.push(format!("reason: at most {MAX_REASON_CHARS} characters"));
    }
    if !(0..=MAX_PROBATION_S).contains(&req.probation_s) {
        problems.push(format!("probation_s: within 0..={MAX_PROBATION_S}"));
    }
    let step_timeout_s = req
        .step_timeout_s
        .unwrap_or(req.probation_s.saturating_add(900));
    if step_timeout_s <= req.probation_s || step_timeout_s > MAX_PROBATION_S * 2 {
        problems.push(format!(
            "step_timeout_s: more than probation_s ({}) and at most {}",
            req.probation_s,
            MAX_PROBATION_S * 2
        ));
    }
    if !(0.0..=1.0).contains(&req.abort_failure_ratio) {
        problems.push("abort_failure_ratio: within 0..=1".into());
    }
    if req.min_gateways < 1 {
        problems.push("min_gateways: at least 1".into());
    }
    let all = s.store.list_gateways().await?;
    let enrolled: BTreeMap<(String, String), &crate::store::GatewayRecord> = all
        .iter()
        .filter(|g| !g.is_revoked())
        .map(|g| ((g.site.clone(), g.gateway.clone()), g))
        .collect();
    let mut targets: Vec<(String, String)> = Vec::new();
    match (&req.target.gateways, &req.target.site) {
        (Some(list), None) => {
            for (i, name) in list.iter().enumerate() {
                match name.split_once('/') {
                    Some((site, gw)) if enrolled.contains_key(&(site.into(), gw.into())) => {
                        let key = (site.to_string(), gw.to_string());
                        if targets.contains(&key) {
                            problems
                                .push(format!("target.gateways[{i}]: {name:?} is listed twice"));
                        } else {
                            targets.push(key);
                        }
                    }
                    _ => problems.push(format!(
                        "target.gateways[{i}]: {name:?} is not an enrolled gateway (site/gateway)"
                    )),
                }
            }
        }
        (None, Some(site)) => {
            targets.extend(enrolled.keys().filter(|(s, _)| s == site).cloned());
            if targets.is_empty() {
                problems.push(format!("target.site: {site:?} has no enrolled gateway"));
            }
        }
        _ => problems.push("target: give either gateways or site".into()),
    }
    if targets.is_empty() && req.target.gateways.as_ref().is_some_and(Vec::is_empty) {
        problems.push("target.gateways: at least one".into());
    }
    let waves = resolve_waves(&req.waves, targets.len(), &mut problems);
    for (site, gw) in &targets {
        let Some(g) = enrolled.get(&(site.clone(), gw.clone())) else {
            continue;
        };
        if let Some(running) = g.model.as_ref().filter(|m| m.name == model.name) {
            if Version::compare(&running.version, &model.version)
                == Some(std::cmp::Ordering::Greater)
                && !req.allow_downgrade
            {
                problems.push(format!(
                    "{site}/{gw} runs {} {}, newer than {}: a downgrade (set allow_downgrade to roll it out anyway)",
                    running.name, running.version, model.version
                ));
            }
        }
        if let Some(agent) = &g.agent_version {
            if Version::compare(agent, &model.manifest.min_agent_version)
                == Some(std::cmp::Ordering::Less)
            {
                problems.push(format!(
                    "{site}/{gw} runs agent {agent}; the model needs at least {}",
                    model.manifest.min_agent_version
                ));
            }
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid_document("rollout", problems));
    }
    let mut assignment = Vec::with_capacity(targets.len());
    let mut index = 0;
    for (wave, size) in waves.iter().enumerate() {
        for _ in 0..*size {
            let (site, gw) = targets[index].clone();
            assignment.push((site, gw, i32::try_from(wave).unwrap_or(i32::MAX)));
            index += 1;
        }
    }
    let now = Utc::now();
    let rollout = RolloutRecord {
        id: Uuid::now_v7().to_string(),
        model_id: model.id.clone(),
        target: json!({"gateways": targets.iter().map(|(a, b)| format!("{a}/{b}")).collect::<Vec<_>>()}),
        waves,
        current_wave: 0,
        probation_s: req.probation_s,
        step_timeout_s,
        abort_failure_ratio: req.abort_failure_ratio,
        min_gateways: req.min_gateways,
        state: RolloutState::Running,
        reason: None,
        created_by: p.actor(),
        created_at: now,
        updated_at: now,
    };
    s.store
        .create_rollout(&rollout, &assignment)
        .await
        .map_err(|e| match e {
            StoreError::InUse { what } => ApiError::new(
                ErrorCode::Conflict,
                format!("{what}: abort it or wait for it to finish"),
            ),
            other => other.into(),
        })?;
    audit(
        &s,
        &p,
        "rollout.create",
        &format!("rollout/{}", rollout.id),
        json!({"model": model.id, "name": model.name, "version": model.version,
            "gateways": assignment.len(), "waves": rollout.waves, "reason": req.reason}),
    )
    .await?;
    s.live.rollout_changed();
    let view = load_rollout(&s, &rollout.id).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Gateways per wave for `total` gateways: the waves asked for (sizes, or percents
/// rounded up), cut at the total, and one last wave of the rest.
fn resolve_waves(specs: &[WaveSpec], total: usize, problems: &mut Vec<String>) -> Vec<usize> {
    let mut waves = Vec::new();
    let mut left = total;
    for (i, w) in specs.iter().enumerate() {
        let size = match (w.size, w.percent) {
            (Some(n), None) if n >= 1 => n as usize,
            (None, Some(pct)) if pct > 0.0 && pct <= 100.0 => {
                ((total as f64 * pct / 100.0).ceil() as usize).max(1)
            }
            _ => {
                problems.push(format!(
                    "waves[{i}]: give either size (at least 1) or percent (within (0, 100])"
                ));
                continue;
            }
        };
        let size = size.min(left);
        if size > 0 {
            waves.push(size);
            left -= size;
        }
    }
    if left > 0 {
        waves.push(left);
    }
    waves
}

/// Rollouts, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/rollouts",
    tag = "models",
    responses(
        (status = 200, description = "The newest rollouts (200 at most), each with its gateways", body = ListPage<RolloutView>),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn list_rollouts(
    State(s): State<ApiState>,
    p: Principal,
) -> Result<Json<ListPage<RolloutView>>, ApiError> {
    p.require(Role::Viewer)?;
    let models: BTreeMap<String, ModelRecord> = s
        .store
        .models()
        .await?
        .into_iter()
        .map(|m| (m.id.clone(), m))
        .collect();
    let mut views = Vec::new();
    for r in s.store.rollouts(ROLLOUTS_LISTED).await? {
        let gateways = s.store.rollout_gateways(&r.id).await?;
        let model = models.get(&r.model_id);
        views.push(rollout_view(r, model, gateways));
    }
    Ok(Json(ListPage::whole(views)))
}

/// One rollout with its gateways.
#[utoipa::path(
    get,
    path = "/api/v1/rollouts/{id}",
    tag = "models",
    params(("id" = String, Path, description = "Rollout id")),
    responses(
        (status = 200, description = "The rollout", body = RolloutView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such rollout", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn get_rollout(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<RolloutView>, ApiError> {
    p.require(Role::Viewer)?;
    Ok(Json(load_rollout(&s, &id).await?))
}

/// Why an admin acted.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutAction {
    /// Why (audited, shown as the rollout's reason).
    #[serde(default)]
    pub reason: String,
}

enum Action {
    Pause,
    Resume,
    Abort,
}

async fn act(
    s: &ApiState,
    p: &Principal,
    id: &str,
    action: Action,
    why: String,
) -> Result<Json<RolloutView>, ApiError> {
    p.require(Role::Admin)?;
    if why.chars().count() > MAX_REASON_CHARS {
        return Err(ApiError::invalid_document(
            "request",
            vec![format!("reason: at most {MAX_REASON_CHARS} characters")],
        ));
    }
    let now = Utc::now();
    let actor = p.actor();
    let said = |verb: &str| match why.trim() {
        "" => format!("{verb} by {actor}"),
        w => format!("{verb} by {actor}: {w}"),
    };
    let (name, reason) = match action {
        Action::Pause => ("rollout.pause", said("paused")),
        Action::Resume => ("rollout.resume", said("resumed")),
        Action::Abort => ("rollout.abort", said("aborted")),
    };
    let mut refused = None;
    let stepped = s
        .store
        .advance_rollout(id, now, |snap| {
            let state = snap.rollout.state;
            match (&action, state) {
                (Action::Pause, RolloutState::Running) => RolloutPlan {
                    state: Some((RolloutState::Paused, Some(reason.clone()))),
                    ..Default::default()
                },
                (Action::Resume, RolloutState::Paused) => RolloutPlan {
                    state: Some((RolloutState::Running, Some(reason.clone()))),
                    ..Default::default()
                },
                (Action::Abort, st) if st.is_open() => abort_plan(snap, now, reason.clone()),
                _ => {
                    refused = Some(state);
                    RolloutPlan::default()
                }
            }
        })
        .await?;
    if stepped.is_none() {
        return Err(ApiError::not_found(format!("rollout {id}")));
    }
    if let Some(state) = refused {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "the rollout is {}: it cannot be {}",
                state.as_str(),
                name.trim_start_matches("rollout.")
            ),
        ));
    }
    audit(s, p, name, &format!("rollout/{id}"), json!({"reason": why})).await?;
    s.live.rollout_changed();
    s.live.config_saved();
    Ok(Json(load_rollout(s, id).await?))
}

/// Holds a rollout: no new wave starts and nothing times out until it is resumed
/// (gateways already sent the model go on and report).
#[utoipa::path(
    post,
    path = "/api/v1/rollouts/{id}/pause",
    tag = "models",
    params(("id" = String, Path, description = "Rollout id")),
    request_body(content = Option<RolloutAction>, description = "Why (optional)"),
    responses(
        (status = 200, description = "Paused", body = RolloutView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such rollout", body = ErrorBody),
        (status = 400, description = "The body is not a reason", body = ErrorBody),
        (status = 409, description = "Not running", body = ErrorBody),
        (status = 415, description = "A body that is not JSON", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn pause_rollout(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RolloutView>, ApiError> {
    let body = action_body(&headers, body, Some(RolloutAction::default()))?;
    act(&s, &p, &id, Action::Pause, body.reason).await
}

/// Resumes a paused rollout.
#[utoipa::path(
    post,
    path = "/api/v1/rollouts/{id}/resume",
    tag = "models",
    params(("id" = String, Path, description = "Rollout id")),
    request_body(content = Option<RolloutAction>, description = "Why (optional)"),
    responses(
        (status = 200, description = "Running again", body = RolloutView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such rollout", body = ErrorBody),
        (status = 400, description = "The body is not a reason", body = ErrorBody),
        (status = 409, description = "Not paused", body = ErrorBody),
        (status = 415, description = "A body that is not JSON", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn resume_rollout(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RolloutView>, ApiError> {
    let body = action_body(&headers, body, Some(RolloutAction::default()))?;
    act(&s, &p, &id, Action::Resume, body.reason).await
}

/// Aborts a rollout (the emergency stop): every gateway sent the model is sent back
/// the model it ran before.
#[utoipa::path(
    post,
    path = "/api/v1/rollouts/{id}/abort",
    tag = "models",
    params(("id" = String, Path, description = "Rollout id")),
    request_body(content = Option<RolloutAction>, description = "Why (optional)"),
    responses(
        (status = 200, description = "Aborted", body = RolloutView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such rollout", body = ErrorBody),
        (status = 400, description = "The body is not a reason", body = ErrorBody),
        (status = 409, description = "Already completed or aborted", body = ErrorBody),
        (status = 415, description = "A body that is not JSON", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn abort_rollout(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RolloutView>, ApiError> {
    let body = action_body(&headers, body, Some(RolloutAction::default()))?;
    act(&s, &p, &id, Action::Abort, body.reason).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_resume_downloads() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::RANGE, HeaderValue::from_str(v).unwrap());
            m
        };
        assert_eq!(requested_range(&HeaderMap::new(), 100), Ok(None));
        assert_eq!(requested_range(&h("bytes=40-"), 100), Ok(Some((40, 100))));
        assert_eq!(requested_range(&h("bytes=0-9"), 100), Ok(Some((0, 10))));
        assert_eq!(
            requested_range(&h("bytes=90-200"), 100),
            Ok(Some((90, 100)))
        );
        assert_eq!(requested_range(&h("bytes=-10"), 100), Ok(Some((90, 100))));
        assert_eq!(requested_range(&h("bytes=100-"), 100), Err(()));
        assert_eq!(requested_range(&h("bytes=0-1,5-6"), 100), Ok(None));
        assert_eq!(requested_range(&h("items=0-1"), 100), Ok(None));
    }

    #[test]
    fn waves_take_sizes_percents_and_the_rest() {
        let w = |size: Option<u32>, percent: Option<f64>| WaveSpec { size, percent };
        let mut p = Vec::new();
        assert_eq!(resolve_waves(&[w(Some(1), None)], 3, &mut p), vec![1, 2]);
        assert_eq!(resolve_waves(&[], 3, &mut p), vec![3]);
        assert_eq!(
            resolve_waves(&[w(None, Some(10.0)), w(Some(5), None)], 40, &mut p),
            vec![4, 5, 31]
        );
        assert_eq!(resolve_waves(&[w(Some(9), None)], 3, &mut p), vec![3]);
        assert!(p.is_empty());
        resolve_waves(&[w(None, None), w(Some(1), Some(5.0))], 3, &mut p);
        assert_eq!(p.len(), 2, "{p:?}");
    }
}
