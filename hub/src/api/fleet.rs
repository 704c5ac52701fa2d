//! Gateways and their cameras, with health (being extended).

use super::auth::Principal;
use super::error::ApiError;
use super::{ApiState, PageView};
use crate::store::{Role, Store};
use axum::extract::State;
use axum::routing::get;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().route("/api/v1/gateways", get(list_gateways))
}

#[derive(Debug, Serialize)]
pub(crate) struct GatewayView {
    site: String,
    gateway: String,
    username: String,
    revoked: bool,
    online: bool,
    last_seen_at: Option<DateTime<Utc>>,
    agent_version: Option<String>,
    buffer_depth: Option<u64>,
    buffer_bytes: Option<u64>,
    buffer_oldest_at: Option<DateTime<Utc>>,
    evicted_evidence: Option<u64>,
    evicted_findings: Option<u64>,
    cameras: Vec<chitti_common::protocol::CameraStatus>,
}

async fn list_gateways(
    State(s): State<ApiState>,
    p: Principal,
) -> Result<Json<PageView<GatewayView>>, ApiError> {
    p.require(Role::Viewer)?;
    let items = s
        .store
        .list_gateways()
        .await?
        .into_iter()
        .map(gateway_view)
        .collect();
    Ok(Json(PageView {
        items,
        next_cursor: None,
    }))
}

/// A gateway as the API shows it.
pub(crate) fn gateway_view(g: crate::store::GatewayRecord) -> GatewayView {
    GatewayView {
        username: g.username(),
        revoked: g.is_revoked(),
        online: g.online && !g.is_revoked(),
        last_seen_at: g.last_seen_at,
        agent_version: g.agent_version.clone(),
        buffer_depth: g.buffer.as_ref().map(|b| b.depth),
        buffer_bytes: g.buffer.as_ref().map(|b| b.bytes),
        buffer_oldest_at: g.buffer.as_ref().and_then(|b| b.oldest_at),
        evicted_evidence: g.buffer.as_ref().map(|b| b.evicted_evidence),
        evicted_findings: g.buffer.as_ref().map(|b| b.evicted_findings),
        cameras: g.cameras.clone(),
        site: g.site,
        gateway: g.gateway,
    }
}
