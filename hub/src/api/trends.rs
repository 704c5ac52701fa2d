//! An asset's history: max °C and ΔT over time for the asset and its sibling phases
//! (the assets of its structure with its component class), in time buckets sized to
//! the period, with the handheld inspections per bucket and the assets' alerts.
//!
//! | endpoint | role |
//! |---|---|
//! | `GET /api/v1/sites/{site}/assets/{asset}/trend` (`?since=&until=&points=`) | viewer |
//! | `GET /api/v1/sites/{site}/assets/{asset}/trend.csv` (the same) | viewer |
//!
//! The period defaults to the last 365 days; `points` (default 500, at most
//! [`MAX_POINTS`]) buckets per asset at most, none shorter than a minute. Answered from
//! one index (`findings_asset_observed`).

use super::alerts::AlertView;
use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::reports::{csv_bytes, header_row};
use super::sites::existing_asset;
use super::{ApiQuery, ApiState};
use crate::store::{AlertQuery, AlertStore, Phase, Role, SiteStore, TrendPoint, TrendStore};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Most buckets per asset.
pub const MAX_POINTS: u32 = 5000;

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(asset_trend))
        .routes(routes!(asset_trend_csv))
}

/// The period and resolution of a trend.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TrendParams {
    /// From (default: 365 days before `until`).
    pub since: Option<DateTime<Utc>>,
    /// Until (default: now).
    pub until: Option<DateTime<Utc>>,
    /// Buckets per asset at most (default 500, at most 5000).
    #[param(maximum = 4294967295u32)]
    pub points: Option<u32>,
}

/// One bucket of one asset.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrendPointView {
    /// The bucket's start.
    pub t: DateTime<Utc>,
    /// Findings in it.
    pub findings: u64,
    /// The hottest, °C.
    pub max_c: f64,
    /// The largest ΔT (`null`: no finding had a reference).
    pub max_delta_c: Option<f64>,
    /// The worst severity level.
    pub worst_level: u8,
    /// Findings from handheld inspections (uploads).
    pub inspections: u64,
}

/// One asset's series.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrendSeries {
    /// Asset id.
    pub asset: String,
    /// Its name.
    pub name: String,
    /// Its phase, when it has one.
    #[schema(value_type = Option<String>)]
    pub phase: Option<Phase>,
    /// Buckets with findings, oldest first.
    pub points: Vec<TrendPointView>,
}

/// An asset's trend with its sibling phases.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssetTrend {
    /// Site.
    pub site: String,
    /// The asset asked for.
    pub asset: String,
    /// From.
    pub since: DateTime<Utc>,
    /// Until.
    pub until: DateTime<Utc>,
    /// Bucket length, seconds.
    pub bucket_s: i64,
    /// The severity table of the asset's newest finding (the chart's bands).
    pub severity_table: Option<String>,
    /// The asset first, then its siblings (same structure and component class).
    pub series: Vec<TrendSeries>,
    /// The assets' alerts created in the period, newest first (at most 100 each).
    pub alerts: Vec<AlertView>,
}

/// The trend, computed.
pub(crate) async fn trend(
    s: &ApiState,
    site: &str,
    asset: &str,
    q: TrendParams,
) -> Result<AssetTrend, ApiError> {
    let record = existing_asset(s, site, asset).await?;
    let until = q.until.unwrap_or_else(Utc::now);
    let since = q.since.unwrap_or(until - Duration::days(365));
    if since >= until {
        return Err(ApiError::bad_request("since must be before until"));
    }
    let points = i64::from(q.points.unwrap_or(500).clamp(1, MAX_POINTS));
    let bucket_s = ((until - since).num_seconds() / points + 1).max(60);
    let mut assets = vec![record.clone()];
    if let (Some(structure), Some(class)) = (&record.structure, &record.component_class) {
        let mut siblings: Vec<_> = s
            .store
            .list_assets(Some(site))
            .await?
            .into_iter()
            .filter(|a| {
                a.id != record.id
                    && a.structure.as_ref() == Some(structure)
                    && a.component_class.as_ref() == Some(class)
            })
            .collect();
        siblings.sort_by(|a, b| (a.phase, &a.id).cmp(&(b.phase, &b.id)));
        assets.extend(siblings);
    }
    let ids: Vec<String> = assets.iter().map(|a| a.id.clone()).collect();
    let rows = s
        .store
        .asset_trend(site, &ids, since, until, Duration::seconds(bucket_s))
        .await?;
    let series = assets
        .iter()
        .map(|a| TrendSeries {
            asset: a.id.clone(),
            name: a.name.clone(),
            phase: a.phase,
            points: rows
                .iter()
                .filter(|p| p.asset == a.id)
                .map(point_view)
                .collect(),
        })
        .collect();
    let mut alerts = Vec::new();
    for id in &ids {
        let page = s
            .store
            .list_alerts(&AlertQuery {
                site: Some(site.to_string()),
                asset: Some(id.clone()),
                since: Some(since),
                until: Some(until),
                limit: 100,
                ..AlertQuery::default()
            })
            .await?;
        alerts.extend(page.items.into_iter().map(AlertView::from));
    }
    alerts.sort_by_key(|a| std::cmp::Reverse(a.created_at));
    Ok(AssetTrend {
        site: site.to_string(),
        asset: asset.to_string(),
        since,
        until,
        bucket_s,
        severity_table: s.store.asset_severity_table(site, asset).await?,
        series,
        alerts,
    })
}

fn point_view(p: &TrendPoint) -> TrendPointView {
    TrendPointView {
        t: p.bucket_start,
        findings: p.findings,
        max_c: p.max_c,
        max_delta_c: p.max_delta_c,
        worst_level: p.worst_level,
        inspections: p.uploads,
    }
}

/// An asset's trend with its sibling phases.
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/assets/{asset}/trend",
    tag = "sites",
    params(
        ("site" = String, Path, pattern = "^[a-z0-9-]{1,64}$", description = "Site id"),
        ("asset" = String, Path, pattern = "^[a-z0-9-]{1,64}$", description = "Asset id"),
        TrendParams,
    ),
    responses(
        (status = 200, description = "The trend", body = AssetTrend),
        (status = 400, description = "An invalid id or period, or an unknown parameter", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the viewer role", body = ErrorBody),
        (status = 404, description = "No such site or asset", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn asset_trend(
    State(s): State<ApiState>,
    p: Principal,
    Path((site, asset)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<TrendParams>,
) -> Result<Json<AssetTrend>, ApiError> {
    p.require(Role::Viewer)?;
    Ok(Json(trend(&s, &site, &asset, q).await?))
}

/// Columns of `trend.csv`: asset, phase, bucket_start (RFC 3339 UTC), findings, max_c,
/// max_delta_c (empty without a reference), worst_level, inspections.
pub const TREND_COLUMNS: &[&str] = &[
    "asset",
    "phase",
    "bucket_start",
    "findings",
    "max_c",
    "max_delta_c",
    "worst_level",
    "inspections",
];

/// The trend as CSV.
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/assets/{asset}/trend.csv",
    tag = "reports",
    description = "The asset's trend (and its sibling phases') as CSV: asset, phase, bucket_start, findings, max_c, max_delta_c, worst_level, inspections; one row per asset and bucket with findings.",
    params(
        ("site" = String, Path, pattern = "^[a-z0-9-]{1,64}$", description = "Site id"),
        ("asset" = String, Path, pattern = "^[a-z0-9-]{1,64}$", description = "Asset id"),
        TrendParams,
    ),
    responses(
        (status = 200, description = "The trend as CSV", body = String, content_type = "text/csv"),
        (status = 400, description = "An invalid id or period, or an unknown parameter", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the viewer role", body = ErrorBody),
        (status = 404, description = "No such site or asset", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn asset_trend_csv(
    State(s): State<ApiState>,
    p: Principal,
    Path((site, asset)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<TrendParams>,
) -> Result<Response, ApiError> {
    p.require(Role::Viewer)?;
    let t = trend(&s, &site, &asset, q).await?;
    let mut rows = vec![header_row(TREND_COLUMNS)];
    for series in &t.series {
        for pt in &series.points {
            rows.push(vec![
                series.asset.clone(),
                series.phase.map(|p| format!("{p:?}")).unwrap_or_default(),
                pt.t.to_rfc3339_opts(SecondsFormat::Secs, true),
                pt.findings.to_string(),
                pt.max_c.to_string(),
                pt.max_delta_c.map(|d| d.to_string()).unwrap_or_default(),
                pt.worst_level.to_string(),
                pt.inspections.to_string(),
            ]);
        }
    }
    let body = csv_bytes(&rows)?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"trend-{site}-{asset}.csv\""),
            ),
        ],
        body,
    )
        .into_response())
}
