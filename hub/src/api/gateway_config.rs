//! A gateway's configuration from the hub (issue #19): the desired document with its
//! version and history, and what the gateway reported doing with it.
//!
//! | endpoint | role |
//! |---|---|
//! | `GET /api/v1/gateways/{site}/{gateway}/config` (`ETag`) | viewer |
//! | `PUT /api/v1/gateways/{site}/{gateway}/config` (`If-Match`; stale: 409) | admin |
//! | `POST /api/v1/gateways/config-changes` (one change to a site or a list) | admin |
//!
//! A change to a group sets keys (`analysis.tracking.raise_after_frames`,
//! `camera[0].table`; `null` removes one) in each gateway's newest document (or, before
//! the first, in the configuration it reported running), with per-gateway overrides;
//! every gateway's result is validated, and all are saved in one transaction or none.
//!
//! A document is the agent's whole TOML file. It is validated with the agent's own
//! code before anything is saved: every problem is listed in a 422 and nothing is
//! published. Saved, it gets the next version and goes out retained and signed on the
//! gateway's `/config/set` ([`crate::remote_config`]); the gateway answers on
//! `/config/state` (`applied`, `rejected` with its errors, or `rolled_back`), shown here
//! as `reported`. Every save is audited (`gateway.config`).

use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::fleet::existing_gateway;
use super::{audit, ApiState};
use crate::remote_config::{apply_settings, validate_document, MAX_CHANGE_KEYS};
use crate::store::{
    DesiredChange, DesiredRecord, FleetStore, GatewayConfigStore, ReportedConfig, Role,
};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Saved versions shown in `history`, newest first.
const HISTORY: u32 = 50;
/// Longest reason accepted, in characters.
const MAX_REASON_CHARS: usize = 1024;

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(get_config, put_config))
        .routes(routes!(change_configs))
}

/// The desired configuration (version 0 and no document before the first save).
#[derive(Debug, Serialize, ToSchema)]
pub struct DesiredView {
    /// 1, 2, … per gateway; 0 before the first save.
    pub version: i64,
    /// The agent's TOML; absent before the first save.
    pub config: Option<String>,
    /// Who saved it.
    pub author: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// When.
    pub created_at: Option<DateTime<Utc>>,
}

/// What the gateway last reported on `/config/state`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportedView {
    /// The desired version the report answers (0: none received yet).
    pub version: u64,
    /// `applied`, `rejected` or `rolled_back`.
    #[schema(pattern = "^(applied|rejected|rolled_back)$")]
    pub status: String,
    /// Why it was rejected or rolled back, `path: problem` each.
    pub errors: Vec<String>,
    /// The desired version running (absent: the gateway's local file).
    pub applied_version: Option<u64>,
    /// When the running configuration was applied.
    pub applied_at: Option<DateTime<Utc>>,
    /// The running configuration, secrets shown as `(kept)`.
    pub config: Option<String>,
    /// When the gateway made the report (its clock).
    pub reported_at: DateTime<Utc>,
    /// When the hub received it.
    pub received_at: DateTime<Utc>,
}

/// One saved version.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryEntry {
    /// Its version.
    pub version: i64,
    /// Who saved it.
    pub author: String,
    /// Why.
    pub reason: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// A gateway's configuration: desired, reported, history.
#[derive(Debug, Serialize, ToSchema)]
pub struct GatewayConfigView {
    /// What the hub wants the gateway to run.
    pub desired: DesiredView,
    /// What the gateway said it did; absent until it reports.
    pub reported: Option<ReportedView>,
    /// Saved versions, newest first (the last 50).
    pub history: Vec<HistoryEntry>,
    /// Whether the gateway runs the desired version.
    pub in_sync: bool,
}

/// A new desired document.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigRequest {
    /// The agent's whole configuration file, TOML.
    #[schema(max_length = 262144)]
    pub config: String,
    /// Why (shown in the history and the audit log).
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub reason: Option<String>,
}

/// The saved version.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConfigSaved {
    /// The new version, published to the gateway.
    pub version: i64,
}

fn view(history: Vec<DesiredRecord>, reported: Option<ReportedConfig>) -> GatewayConfigView {
    let desired = match history.first() {
        Some(d) => DesiredView {
            version: d.version,
            config: Some(d.document.clone()),
            author: Some(d.author.clone()),
            reason: Some(d.reason.clone()),
            created_at: Some(d.created_at),
        },
        None => DesiredView {
            version: 0,
            config: None,
            author: None,
            reason: None,
            created_at: None,
        },
    };
    let running = reported
        .as_ref()
        .and_then(|r| r.state.applied_version)
        .and_then(|v| i64::try_from(v).ok())
        .unwrap_or(0);
    GatewayConfigView {
        in_sync: running == desired.version,
        desired,
        reported: reported.map(|r| ReportedView {
            version: r.state.version,
            status: r.state.status.as_str().to_string(),
            errors: r.state.errors,
            applied_version: r.state.applied_version,
            applied_at: r.state.applied_at,
            config: r.state.config,
            reported_at: r.state.ts,
            received_at: r.received_at,
        }),
        history: history
            .into_iter()
            .map(|d| HistoryEntry {
                version: d.version,
                author: d.author,
                reason: d.reason,
                created_at: d.created_at,
            })
            .collect(),
    }
}

/// The desired configuration (with its version as `ETag`), what the gateway reported,
/// and the saved versions.
#[utoipa::path(
    get,
    path = "/api/v1/gateways/{site}/{gateway}/config",
    tag = "fleet",
    params(
        ("site" = String, Path, pattern = "^[a-z0-9-]{1,64}$", description = "Site id"),
        ("gateway" = String, Path, pattern = "^[a-z0-9-]{1,64}$", description = "Gateway id"),
    ),
    responses(
        (status = 200, description = "The gateway's configuration", body = GatewayConfigView,
         headers(("ETag" = String, description = "The desired version, quoted"))),
        (status = 400, description = "An invalid id", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the viewer role", body = ErrorBody),
        (status = 404, description = "No such gateway", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn get_config(
    State(s): State<ApiState>,
    p: Principal,
    Path((site, gateway)): Path<(String, String)>,
) -> Result<axum::response::Response, ApiError> {
    p.require(Role::Viewer)?;
    let v = gateway_config(&s, &site, &gateway).await?;
    Ok(super::with_etag(v.desired.version, Json(v)))
}

/// A gateway's configuration as [`get_config`] answers it (the dashboard's page too).
pub(crate) async fn gateway_config(
    s: &ApiState,
    site: &str,
    gateway: &str,
) -> Result<GatewayConfigView, ApiError> {
    existing_gateway(s, site, gateway).await?;
    let history = s.store.desired_configs(site, gateway, HISTORY).await?;
    let reported = s.store.reported_config(site, gateway).await?;
    Ok(view(history, reported))
}

/// Saves a new desired configuration and publishes it to the gateway. The document is
/// validated with the agent's own code first: every problem is listed (422) and
/// nothing is saved or published.
#[utoipa::path(
    put,
    path = "/api/v1/gateways/{site}/{gateway}/config",
    tag = "fleet",
    params(
        ("site" = String, Path, pattern = "^[a-z0-9-]{1,64}$", description = "Site id"),
        ("gateway" = String, Path, pattern = "^[a-z0-9-]{1,64}$", description = "Gateway id"),
        ("If-Match" = Option<String>, Header, pattern = r#"^(W/)?"[0-9]{1,18}"$"#, description = "The ETag of the version edited (\"0\" before the first save)"),
    ),
    request_body = ConfigRequest,
    responses(
        (status = 200, description = "Saved and published: the new version", body = ConfigSaved,
         headers(("ETag" = String, description = "The new version, quoted"))),
        (status = 400, description = "A malformed request", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
        (status = 404, description = "No such gateway, or it is revoked", body = ErrorBody),
        (status = 409, description = "Changed since the version edited: the message names the current one", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "The configuration is invalid: every problem in `problems`", body = ErrorBody),
        (status = 428, description = "No If-Match", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn put_config(
    State(s): State<ApiState>,
    p: Principal,
    Path((site, gateway)): Path<(String, String)>,
    headers: HeaderMap,
    super::ApiJson(body): super::ApiJson<ConfigRequest>,
) -> Result<axum::response::Response, ApiError> {
    p.require(Role::Admin)?;
    let g = existing_gateway(&s, &site, &gateway).await?;
    if g.revoked_at.is_some() {
        return Err(ApiError::not_found(format!(
            "gateway {site}/{gateway} (revoked)"
        )));
    }
    let expected = super::if_match(&headers, "GET …/config")?;
    let reason = body.reason.unwrap_or_default();
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(ApiError::bad_request(format!(
            "reason: longer than {MAX_REASON_CHARS} characters"
        )));
    }
    validate_document(&site, &gateway, &body.config)
        .map_err(|problems| ApiError::invalid_document("configuration", problems))?;
    let version = s
        .store
        .save_desired_config(
            &site,
            &gateway,
            expected,
            &body.config,
            &p.actor(),
            &reason,
            Utc::now(),
        )
        .await?;
    audit(
        &s,
        &p,
        "gateway.config",
        &format!("{site}/{gateway}"),
        json!({"version": version, "from_version": expected, "reason": reason}),
    )
    .await?;
    tracing::info!(%site, %gateway, version, actor = %p.actor(), "desired configuration saved");
    s.live.config_saved();
    Ok(super::with_etag(version, Json(ConfigSaved { version })))
}

/// Most gateways one change may name.
const MAX_CHANGE_GATEWAYS: usize = 10_000;

/// Which gateways a change is for: every unrevoked gateway of a site, or a list.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeTarget {
    /// Every unrevoked gateway of this site.
    #[schema(pattern = "^[a-z0-9-]{1,64}$")]
    pub site: Option<String>,
    /// These gateways, `site/gateway` each.
    #[schema(max_items = 10000)]
    pub gateways: Option<Vec<String>>,
}

/// One change to many gateways.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigChangeRequest {
    /// The gateways.
    pub target: ChangeTarget,
    /// Keys to set, dotted paths into the agent's file (`camera[0].table`); `null`
    /// removes a key (its default applies).
    #[schema(value_type = Object)]
    pub set: BTreeMap<String, serde_json::Value>,
    /// Per gateway (`site/gateway`), keys set over `set`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub overrides: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
    /// Why (shown in each gateway's history and the audit log).
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub reason: Option<String>,
}

/// One gateway's new version.
#[derive(Debug, Serialize, ToSchema)]
pub struct GatewayVersion {
    /// `site/gateway`.
    pub gateway: String,
    /// Its new desired version, published to it.
    pub version: i64,
}

/// What a change saved.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConfigChangeResult {
    /// Every gateway changed, with its new version.
    pub changes: Vec<GatewayVersion>,
}

/// Sets the same keys in the configuration of every gateway of a site (or a list),
/// with per-gateway overrides: each result is validated with the agent's code, and all
/// are saved and published together or none (422 lists every problem, by gateway).
#[utoipa::path(
    post,
    path = "/api/v1/gateways/config-changes",
    tag = "fleet",
    request_body = ConfigChangeRequest,
    responses(
        (status = 200, description = "Saved and published: each gateway's new version", body = ConfigChangeResult),
        (status = 400, description = "A malformed request", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
        (status = 404, description = "No such gateway or site, or it is revoked", body = ErrorBody),
        (status = 409, description = "A gateway's configuration changed meanwhile: nothing saved", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "A result is invalid: every problem in `problems`, nothing saved", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn change_configs(
    State(s): State<ApiState>,
    p: Principal,
    super::ApiJson(body): super::ApiJson<ConfigChangeRequest>,
) -> Result<Json<ConfigChangeResult>, ApiError> {
    p.require(Role::Admin)?;
    let reason = body.reason.unwrap_or_default();
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(ApiError::bad_request(format!(
            "reason: longer than {MAX_REASON_CHARS} characters"
        )));
    }
    if body.set.is_empty() && body.overrides.is_empty() {
        return Err(ApiError::bad_request(
            "set: name at least one key to change",
        ));
    }
    let too_many = std::iter::once(&body.set)
        .chain(body.overrides.values())
        .any(|keys| keys.len() > MAX_CHANGE_KEYS);
    if too_many {
        return Err(ApiError::bad_request(format!(
            "set, overrides: at most {MAX_CHANGE_KEYS} keys each"
        )));
    }
    let targets: Vec<(String, String)> = match (&body.target.site, &body.target.gateways) {
        (Some(site), None) => {
            super::sites::check_id("site", site)?;
            let all = s.store.list_gateways().await?;
            let of_site: Vec<_> = all
                .into_iter()
                .filter(|g| &g.site == site && g.revoked_at.is_none())
                .map(|g| (g.site, g.gateway))
                .collect();
            if of_site.is_empty() {
                return Err(ApiError::not_found(format!("gateways of site {site}")));
            }
            of_site
        }
        (None, Some(list)) if !list.is_empty() && list.len() <= MAX_CHANGE_GATEWAYS => {
            let mut targets = Vec::new();
            for name in list {
                let (site, gateway) = name.split_once('/').ok_or_else(|| {
                    ApiError::bad_request(format!("target.gateways: {name:?} is not site/gateway"))
                })?;
                let g = existing_gateway(&s, site, gateway).await?;
                if g.revoked_at.is_some() {
                    return Err(ApiError::not_found(format!("gateway {name} (revoked)")));
                }
                if !targets.contains(&(g.site.clone(), g.gateway.clone())) {
                    targets.push((g.site, g.gateway));
                }
            }
            targets
        }
        _ => {
            return Err(ApiError::bad_request(format!(
                "target: give either site or gateways (1 to {MAX_CHANGE_GATEWAYS} of them)"
            )))
        }
    };
    for name in body.overrides.keys() {
        if !targets.iter().any(|(s, g)| &format!("{s}/{g}") == name) {
            return Err(ApiError::bad_request(format!(
                "overrides: {name:?} is not one of the target's gateways"
            )));
        }
    }
    let mut problems = Vec::new();
    let mut changes = Vec::new();
    for (site, gateway) in &targets {
        let name = format!("{site}/{gateway}");
        let newest = s.store.desired_configs(site, gateway, 1).await?.pop();
        let expected = newest.as_ref().map_or(0, |d| d.version);
        let base = match newest {
            Some(d) => d.document,
            None => match s
                .store
                .reported_config(site, gateway)
                .await?
                .and_then(|r| r.state.config)
            {
                Some(running) => running,
                None => {
                    problems.push(format!(
                        "{name}: no configuration to change yet (it has not reported the one it runs; save one with PUT …/config)"
                    ));
                    continue;
                }
            },
        };
        let mut keys = body.set.clone();
        if let Some(own) = body.overrides.get(&name) {
            keys.extend(own.clone());
        }
        let document = match apply_settings(&base, &keys)
            .and_then(|text| validate_document(site, gateway, &text).map(|_| text))
        {
            Ok(text) => text,
            Err(errors) => {
                problems.extend(errors.into_iter().map(|e| format!("{name}: {e}")));
                continue;
            }
        };
        changes.push(DesiredChange {
            site: site.clone(),
            gateway: gateway.clone(),
            expected,
            document,
        });
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid_document("configuration change", problems));
    }
    let versions = s
        .store
        .save_desired_configs(&changes, &p.actor(), &reason, Utc::now())
        .await?;
    let changed: Vec<GatewayVersion> = changes
        .iter()
        .zip(versions)
        .map(|(c, version)| GatewayVersion {
            gateway: format!("{}/{}", c.site, c.gateway),
            version,
        })
        .collect();
    let target = match &body.target.site {
        Some(site) => format!("{site}/*"),
        None => format!("{} gateways", changed.len()),
    };
    audit(
        &s,
        &p,
        "gateway.config",
        &target,
        json!({
            "changes": changed.iter().map(|c| json!({"gateway": c.gateway, "version": c.version})).collect::<Vec<_>>(),
            "set": body.set, "overrides": body.overrides, "reason": reason,
        }),
    )
    .await?;
    tracing::info!(gateways = changed.len(), actor = %p.actor(), "configuration change saved");
    s.live.config_saved();
    Ok(Json(ConfigChangeResult { changes: changed }))
}
