//! Gateways and their cameras, with health: what each gateway's latest `/status` said
//! (versions, outbox, cameras), whether it is online, and revocation.
//!
//! | endpoint | role |
//! |---|---|
//! | `GET /api/v1/gateways` (`?site=`) | viewer |
//! | `GET /api/v1/gateways/{site}/{gateway}` (with every camera it has reported) | viewer |
//! | `POST /api/v1/gateways/{site}/{gateway}/revoke` | admin |
//! | `GET /api/v1/cameras` (`?site=&gateway=`) | viewer |
//!
//! *Online* is what the latest status says (an agent's Last Will says offline the
//! moment its MQTT session drops), and never for a revoked gateway. While offline,
//! `offline_for_s` counts from the last status heard (or from enrolment, if none was).
//!
//! Revoking keeps the record (its findings still name it) and is audited
//! (`gateway.revoke`). It refuses new MQTT logins and signed batches once the hub's
//! caches of the gateway expire (a minute or so); enrolling again needs a new id.

use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::sites::check_id;
use super::{audit, ApiQuery, ApiState, ListPage};
use crate::store::FleetStore;
use crate::store::{CameraRecord, GatewayRecord, Role};
use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_gateways))
        .routes(routes!(gateway))
        .routes(routes!(revoke_gateway))
        .routes(routes!(list_cameras))
}

/// The detection model a gateway runs.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelView {
    /// Model name.
    pub name: String,
    /// Model version.
    pub version: String,
    /// SHA-256 of the model file, hex.
    pub sha256: String,
}

/// A camera as the gateway's latest status listed it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CameraStatusView {
    /// Camera id.
    pub id: String,
    /// `streaming`, `reconnecting`, `idle`, `failed` …
    pub state: String,
    /// Frames per second over the agent's last interval.
    pub fps: f64,
    /// When its last frame was captured.
    pub last_frame_at: Option<DateTime<Utc>>,
}

/// A gateway and its health, as `GET /api/v1/gateways` lists it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GatewayView {
    /// Site id.
    pub site: String,
    /// Gateway id (unique within the site).
    pub gateway: String,
    /// Its MQTT username, `{site}/{gateway}`.
    pub username: String,
    /// When enrolled.
    pub created_at: DateTime<Utc>,
    /// Whether it is revoked.
    pub revoked: bool,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Online according to its latest status; never for a revoked gateway.
    pub online: bool,
    /// When the hub last received a status (hub clock).
    pub last_seen_at: Option<DateTime<Utc>>,
    /// The latest status' own timestamp (gateway clock).
    pub status_at: Option<DateTime<Utc>>,
    /// While offline: seconds since `last_seen_at` (or since enrolment, when it was
    /// never seen); `null` while online.
    pub offline_for_s: Option<u64>,
    /// Agent version.
    pub agent_version: Option<String>,
    /// Applied configuration version.
    pub config_version: Option<u32>,
    /// Detection model; `null` when it runs on thresholds alone or never said.
    pub model: Option<ModelView>,
    /// Its component detector as its latest status said: `disabled`,
    /// `ok (<model> <version>)` or `degraded (<reason>)` (running on thresholds alone
    /// because the model, ONNX Runtime or its library failed); `null` when the latest
    /// status did not say (agents older than the detector, the offline will).
    pub detector: Option<String>,
    /// Findings in its outbox, not yet acknowledged.
    pub buffer_depth: Option<u64>,
    /// Bytes in its outbox.
    pub buffer_bytes: Option<u64>,
    /// Its oldest unacknowledged finding.
    pub buffer_oldest_at: Option<DateTime<Utc>>,
    /// Evidence blobs its outbox evicted since the agent started.
    pub evicted_evidence: Option<u64>,
    /// Findings its outbox evicted since the agent started.
    pub evicted_findings: Option<u64>,
    /// Cameras as its latest online status listed them.
    pub cameras: Vec<CameraStatusView>,
}

impl GatewayView {
    /// The view of a record at `now` (for `offline_for_s`).
    pub(crate) fn new(g: GatewayRecord, now: DateTime<Utc>) -> Self {
        let revoked = g.is_revoked();
        let online = g.online && !revoked;
        let offline_for_s = (!online).then(|| {
            let since = g.last_seen_at.unwrap_or(g.created_at);
            u64::try_from((now - since).num_seconds()).unwrap_or(0)
        });
        let buffer = g.buffer.as_ref();
        Self {
            username: g.username(),
            created_at: g.created_at,
            revoked,
            revoked_at: g.revoked_at,
            online,
            last_seen_at: g.last_seen_at,
            status_at: g.status_at,
            offline_for_s,
            agent_version: g.agent_version,
            config_version: g.config_version,
            detector: g.last_status.as_ref().and_then(|s| s.detector.clone()),
            model: g.model.map(|m| ModelView {
                name: m.name,
                version: m.version,
                sha256: m.sha256,
            }),
            buffer_depth: buffer.map(|b| b.depth),
            buffer_bytes: buffer.map(|b| b.bytes),
            buffer_oldest_at: buffer.and_then(|b| b.oldest_at),
            evicted_evidence: buffer.map(|b| b.evicted_evidence),
            evicted_findings: buffer.map(|b| b.evicted_findings),
            cameras: g
                .cameras
                .into_iter()
                .map(|c| CameraStatusView {
                    id: c.id,
                    state: c.state,
                    fps: c.fps,
                    last_frame_at: c.last_frame_at,
                })
                .collect(),
            site: g.site,
            gateway: g.gateway,
        }
    }
}

/// A camera as its gateway last reported it, with its gateway's state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CameraView {
    /// Site id.
    pub site: String,
    /// Gateway id.
    pub gateway: String,
    /// Camera id (unique within the gateway).
    pub camera: String,
    /// `streaming`, `reconnecting`, `idle`, `failed` … as last reported.
    pub state: String,
    /// Frames per second, as last reported.
    pub fps: f64,
    /// When its last frame was captured.
    pub last_frame_at: Option<DateTime<Utc>>,
    /// When a status last listed it (hub clock).
    pub updated_at: DateTime<Utc>,
    /// Whether the gateway's latest online status still lists it (a camera taken out
    /// of the configuration stays known, with `false` here).
    pub listed: bool,
    /// Whether its gateway is online: a camera's state is stale while it is not.
    pub gateway_online: bool,
    /// Whether its gateway is revoked.
    pub gateway_revoked: bool,
}

impl CameraView {
    fn new(c: CameraRecord, g: &GatewayRecord) -> Self {
        Self {
            listed: g.cameras.iter().any(|l| l.id == c.camera),
            gateway_online: g.online && !g.is_revoked(),
            gateway_revoked: g.is_revoked(),
            site: c.site,
            gateway: c.gateway,
            camera: c.camera,
            state: c.state,
            fps: c.fps,
            last_frame_at: c.last_frame_at,
            updated_at: c.updated_at,
        }
    }
}

/// A gateway with every camera it has reported and its latest status as received.
#[derive(Debug, Serialize, ToSchema)]
pub struct GatewayDetail {
    /// The gateway.
    #[serde(flatten)]
    pub gateway: GatewayView,
    /// Every camera it has reported, by camera id.
    pub known_cameras: Vec<CameraView>,
    /// Its latest `/status` message as received (the agent's protocol), if any.
    pub last_status: Option<chitti_common::protocol::AgentStatus>,
}

/// Filters of the gateway list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GatewayParams {
    /// Only gateways of this site.
    #[param(pattern = "^[a-z0-9-]{1,64}$")]
    pub site: Option<String>,
}

/// Filters of the camera list; they combine.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CameraParams {
    /// Only cameras of this site.
    #[param(pattern = "^[a-z0-9-]{1,64}$")]
    pub site: Option<String>,
    /// Only cameras of gateways with this id.
    #[param(pattern = "^[a-z0-9-]{1,64}$")]
    pub gateway: Option<String>,
}

/// Every gateway, revoked ones included, by site and gateway id.
#[utoipa::path(
    get,
    path = "/api/v1/gateways",
    tag = "fleet",
    params(GatewayParams),
    responses(
        (status = 200, description = "Gateways and their health, by site and id", body = ListPage<GatewayView>),
        (status = 400, description = "An invalid filter", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the viewer role", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn list_gateways(
    State(s): State<ApiState>,
    p: Principal,
    ApiQuery(q): ApiQuery<GatewayParams>,
) -> Result<Json<ListPage<GatewayView>>, ApiError> {
    p.require(Role::Viewer)?;
    if let Some(site) = &q.site {
        check_id("site", site)?;
    }
    let now = Utc::now();
    let items = s
        .store
        .list_gateways()
        .await?
        .into_iter()
        .filter(|g| q.site.as_ref().is_none_or(|site| &g.site == site))
        .map(|g| GatewayView::new(g, now))
        .collect();
    Ok(Json(ListPage::whole(items)))
}

/// The gateway, or a 404 naming it.
pub(crate) async fn existing_gateway(
    s: &ApiState,
    site: &str,
    gateway: &str,
) -> Result<GatewayRecord, ApiError> {
    check_id("site", site)?;
    check_id("gateway", gateway)?;
    s.store
        .gateway(site, gateway)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("gateway {site}/{gateway}")))
}

/// One gateway, with every camera it has reported.
#[utoipa::path(
    get,
    path = "/api/v1/gateways/{site}/{gateway}",
    tag = "fleet",
    params(
        ("site" = String, Path, pattern = "^[a-z0-9-]{1,64}$", description = "Site id"),
        ("gateway" = String, Path, pattern = "^[a-z0-9-]{1,64}$", description = "Gateway id"),
    ),
    responses(
        (status = 200, description = "The gateway", body = GatewayDetail),
        (status = 400, description = "An invalid id", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the viewer role", body = ErrorBody),
        (status = 404, description = "No such gateway", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn gateway(
    State(s): State<ApiState>,
    p: Principal,
    Path((site, gateway)): Path<(String, String)>,
) -> Result<Json<GatewayDetail>, ApiError> {
    p.require(Role::Viewer)?;
    let g = existing_gateway(&s, &site, &gateway).await?;
    let known_cameras = s
        .store
        .list_cameras(&site, &gateway)
        .await?
        .into_iter()
        .map(|c| CameraView::new(c, &g))
        .collect();
    let last_status = g.last_status.clone();
    Ok(Json(GatewayDetail {
        gateway: GatewayView::new(g, Utc::now()),
        known_cameras,
        last_status,
    }))
}

/// Revokes a gateway: it may no longer connect or deliver findings.
#[utoipa::path(
    post,
    path = "/api/v1/gateways/{site}/{gateway}/revoke",
    tag = "fleet",
    params(
        ("site" = String, Path, pattern = "^[a-z0-9-]{1,64}$", description = "Site id"),
        ("gateway" = String, Path, pattern = "^[a-z0-9-]{1,64}$", description = "Gateway id"),
    ),
    responses(
        (status = 200, description = "The gateway, now revoked", body = GatewayView),
        (status = 400, description = "An invalid id", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
        (status = 404, description = "No such gateway", body = ErrorBody),
        (status = 409, description = "Already revoked", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn revoke_gateway(
    State(s): State<ApiState>,
    p: Principal,
    Path((site, gateway)): Path<(String, String)>,
) -> Result<Json<GatewayView>, ApiError> {
    p.require(Role::Admin)?;
    let before = existing_gateway(&s, &site, &gateway).await?;
    let already = || {
        ApiError::new(
            super::error::ErrorCode::Conflict,
            format!("gateway {site}/{gateway} is already revoked"),
        )
    };
    if before.is_revoked() {
        return Err(already());
    }
    // `false` here means another admin revoked it between the read and now.
    if !s.store.revoke_gateway(&site, &gateway).await? {
        return Err(already());
    }
    audit(
        &s,
        &p,
        "gateway.revoke",
        &before.username(),
        json!({ "was_online": before.online, "last_seen_at": before.last_seen_at }),
    )
    .await?;
    s.live.gateway_changed(&site, &gateway);
    tracing::warn!(%site, %gateway, actor = %p.actor(), "gateway revoked");
    let after = existing_gateway(&s, &site, &gateway).await?;
    Ok(Json(GatewayView::new(after, Utc::now())))
}

/// Every camera every gateway has reported, by site, gateway and camera id.
#[utoipa::path(
    get,
    path = "/api/v1/cameras",
    tag = "fleet",
    params(CameraParams),
    responses(
        (status = 200, description = "Cameras and their state", body = ListPage<CameraView>),
        (status = 400, description = "An invalid filter", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the viewer role", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn list_cameras(
    State(s): State<ApiState>,
    p: Principal,
    ApiQuery(q): ApiQuery<CameraParams>,
) -> Result<Json<ListPage<CameraView>>, ApiError> {
    p.require(Role::Viewer)?;
    if let Some(site) = &q.site {
        check_id("site", site)?;
    }
    if let Some(gateway) = &q.gateway {
        check_id("gateway", gateway)?;
    }
    let gateways = s.store.list_gateways().await?;
    let mut items = Vec::new();
    // One query per gateway: the store lists cameras by gateway. Fleets are hundreds
    // of gateways; a store-wide camera listing would make this one query.
    for g in gateways
        .iter()
        .filter(|g| q.site.as_ref().is_none_or(|site| &g.site == site))
        .filter(|g| q.gateway.as_ref().is_none_or(|id| &g.gateway == id))
    {
        let cameras = s.store.list_cameras(&g.site, &g.gateway).await?;
        items.extend(cameras.into_iter().map(|c| CameraView::new(c, g)));
    }
    Ok(Json(ListPage::whole(items)))
}
