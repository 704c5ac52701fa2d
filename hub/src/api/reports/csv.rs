//! CSV exports of the alert and finding lists.
//!
//! The exports take exactly the list's query parameters (the same
//! [`AlertParams`]/[`FindingParams`], read by the same code), so a client can send its
//! current filter unchanged. Every matching row is written, the store paged internally
//! ([`MAX_PAGE_LIMIT`] rows a query) and the body streamed a page at a time: memory
//! stays bounded whatever the export's size. `after` starts the export after that
//! cursor; `limit` is accepted but ignored. The columns are [`ALERT_COLUMNS`] and
//! [`FINDING_COLUMNS`] (a header row first), RFC 4180 quoting (the `csv` crate), times
//! in RFC 3339 UTC, °C unrounded. Each alert row costs up to three more indexed
//! lookups (its trail for the assignee, its latest finding for reference and ΔT, the
//! site's assets once per site for the structure).
//!

use crate::api::alerts::AlertParams;
use crate::api::auth::Principal;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::findings::FindingParams;
use crate::api::{ApiQuery, ApiState};
use crate::store::{
    AlertEventKind, AlertQuery, AlertRecord, FindingQuery, Role, StoredFinding, MAX_PAGE_LIMIT,
};
use crate::store::{AlertStore, IngestStore, SiteStore};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chitti_common::severity::SeverityCatalog;
use chrono::Utc;
use futures_util::StreamExt as _;
use std::collections::HashMap;
use std::sync::Arc;

use super::{internal, opt_num, rfc3339};

/// Columns of `alerts/export.csv`, in order: the alert id; site, structure (from the
/// site's asset register, empty when the asset is not registered), asset, component
/// class; `level` (the worst level of the track) and `level_name` (its name in the
/// severity table); workflow status; `max_c` (the track's hottest °C), `last_max_c`,
/// `reference_c` and `delta_c` (of the latest finding); severity table; first and last
/// seen (`observed_at` of the first and latest finding); number of findings; assignee
/// (the latest assignment, empty if none); camera, gateway; link (the alert in the API);
/// `cool_exception` (`true` when a finding of the track was a cool exception: level 0,
/// far colder than its reference); `kind` (`hotspot`, `cool_exception` or a fleet
/// alarm's kind) and `detail` (what the hub saw, for a fleet alarm, whose °C, severity
/// table and finding columns are empty and whose `level_name` is the kind's title).
pub const ALERT_COLUMNS: &[&str] = &[
    "id",
    "site",
    "structure",
    "asset",
    "component_class",
    "level",
    "level_name",
    "status",
    "max_c",
    "last_max_c",
    "reference_c",
    "delta_c",
    "severity_table",
    "first_seen",
    "last_seen",
    "finding_count",
    "assignee",
    "camera",
    "gateway",
    "link",
    "cool_exception",
    "kind",
    "detail",
];

/// Columns of `findings/export.csv`, in order: the finding id; when the hub received
/// it and when the agent observed it; site, structure, asset, gateway, camera,
/// component class; severity `level`, `level_name` and recommended `action`; `max_c`,
/// `reference_c`, `delta_c`; severity table; track id and state; the evidence's
/// SHA-256 (empty if none); link (the finding in the API).
pub const FINDING_COLUMNS: &[&str] = &[
    "id",
    "received_at",
    "observed_at",
    "site",
    "structure",
    "asset",
    "gateway",
    "camera",
    "component_class",
    "level",
    "level_name",
    "action",
    "max_c",
    "reference_c",
    "delta_c",
    "severity_table",
    "track_id",
    "track_state",
    "evidence_sha256",
    "link",
];

/// Structures of assets, per site, loaded once per site an export meets.
#[derive(Default)]
struct Structures(HashMap<String, HashMap<String, Option<String>>>);

impl Structures {
    async fn of(
        &mut self,
        s: &ApiState,
        site: &str,
        asset: Option<&str>,
    ) -> Result<String, ApiError> {
        let Some(asset) = asset else {
            return Ok(String::new());
        };
        if !self.0.contains_key(site) {
            let assets = s.store.list_assets(Some(site)).await?;
            self.0.insert(
                site.to_string(),
                assets.into_iter().map(|a| (a.id, a.structure)).collect(),
            );
        }
        Ok(self
            .0
            .get(site)
            .and_then(|m| m.get(asset))
            .cloned()
            .flatten()
            .unwrap_or_default())
    }
}

/// The rows a CSV export writes, a page at a time.
pub(crate) trait Export: Send + 'static {
    /// The next page's CSV (the header row before the first); `None` when done.
    fn next_chunk(
        &mut self,
    ) -> impl std::future::Future<Output = Result<Option<Bytes>, ApiError>> + Send;
}

pub(crate) fn csv_bytes(rows: &[Vec<String>]) -> Result<Bytes, ApiError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for row in rows {
        w.write_record(row.iter().map(|cell| spreadsheet_safe(cell).into_owned()))
            .map_err(|_| internal())?;
    }
    w.into_inner().map(Bytes::from).map_err(|_| internal())
}

/// A cell a spreadsheet will not run as a formula: text starting with `=`, `+`, `-`,
/// `@`, tab or carriage return gets a leading `'` (OWASP's CSV-injection advice), unless
/// it is a plain number such as `-3.5`, which stays a number.
fn spreadsheet_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    let risky = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if risky && cell.parse::<f64>().is_err() {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

pub(crate) fn header_row(columns: &[&str]) -> Vec<String> {
    columns.iter().map(|c| (*c).to_string()).collect()
}

struct AlertExport {
    s: ApiState,
    query: AlertQuery,
    catalog: Arc<SeverityCatalog>,
    structures: Structures,
    header: bool,
    done: bool,
}

impl AlertExport {
    async fn row(&mut self, a: AlertRecord) -> Result<Vec<String>, ApiError> {
        let structure = self
            .structures
            .of(&self.s, &a.site, a.asset.as_deref())
            .await?;
        let assignee = self
            .s
            .store
            .alert_events(a.id)
            .await?
            .into_iter()
            .rev()
            .find(|e| e.event.kind == AlertEventKind::Assign)
            .and_then(|e| e.event.detail)
            .and_then(|d| {
                d.get("assignee")
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_default();
        let last = match a.last_finding_id {
            Some(id) => self.s.store.finding(id).await?.map(|f| f.finding),
            None => None,
        };
        let level_name = match a.presented_kind() {
            "hotspot" => a
                .severity_table
                .as_deref()
                .and_then(|t| self.catalog.get(t))
                .and_then(|t| t.level(a.worst_level))
                .map(|l| l.name.clone())
                .or_else(|| {
                    last.as_ref()
                        .filter(|f| f.severity.level == a.worst_level)
                        .map(|f| f.severity.level_name.clone())
                })
                .unwrap_or_default(),
            "cool_exception" => "cool exception".to_string(),
            _ => a.kind.title().to_string(),
        };
        let celsius = |c: Option<f64>| c.map(|c| c.to_string()).unwrap_or_default();
        let kind = a.presented_kind();
        let detail = a.detail.clone().unwrap_or_default();
        let inputs = last.as_ref().map(|f| &f.severity.inputs);
        Ok(vec![
            a.id.to_string(),
            a.site.clone(),
            structure,
            a.asset.unwrap_or_default(),
            a.component_class.unwrap_or_default(),
            a.worst_level.to_string(),
            level_name,
            a.status.as_str().to_string(),
            celsius(a.worst_max_c),
            celsius(a.last_max_c),
            opt_num(inputs.and_then(|i| i.reference_c)),
            opt_num(inputs.and_then(|i| i.delta_c)),
            a.severity_table.clone().unwrap_or_default(),
            rfc3339(a.first_finding_at),
            rfc3339(a.last_finding_at),
            a.finding_count.to_string(),
            assignee,
            a.camera,
            a.gateway,
            format!("/api/v1/alerts/{}", a.id),
            a.cool_exception.to_string(),
            kind.to_string(),
            detail,
        ])
    }
}

impl Export for AlertExport {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, ApiError> {
        if self.done {
            return Ok(None);
        }
        let mut rows = Vec::new();
        if std::mem::take(&mut self.header) {
            rows.push(header_row(ALERT_COLUMNS));
        }
        let page = self.s.store.list_alerts(&self.query).await?;
        match page.next_cursor {
            Some(c) => self.query.after = Some(c),
            None => self.done = true,
        }
        for a in page.items {
            rows.push(self.row(a).await?);
        }
        csv_bytes(&rows).map(Some)
    }
}

struct FindingExport {
    s: ApiState,
    query: FindingQuery,
    structures: Structures,
    header: bool,
    done: bool,
}

impl Export for FindingExport {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, ApiError> {
        if self.done {
            return Ok(None);
        }
        let mut rows = Vec::new();
        if std::mem::take(&mut self.header) {
            rows.push(header_row(FINDING_COLUMNS));
        }
        let page = self.s.store.list_findings(&self.query).await?;
        match page.next_cursor {
            Some(c) => self.query.after = Some(c),
            None => self.done = true,
        }
        for StoredFinding {
            received_at,
            finding: f,
            ..
        } in page.items
        {
            let structure = self
                .structures
                .of(&self.s, &f.site, f.asset.as_deref())
                .await?;
            let sev = &f.severity;
            rows.push(vec![
                f.id.to_string(),
                rfc3339(received_at),
                rfc3339(f.observed_at),
                f.site.clone(),
                structure,
                f.asset.clone().unwrap_or_default(),
                f.gateway.clone(),
                f.camera.clone(),
                f.component
                    .as_ref()
                    .map(|c| c.class.clone())
                    .unwrap_or_default(),
                sev.level.to_string(),
                sev.level_name.clone(),
                sev.action.clone(),
                f.hotspot.max_c.to_string(),
                opt_num(sev.inputs.reference_c),
                opt_num(sev.inputs.delta_c),
                sev.table.clone(),
                f.track.id.to_string(),
                serde_json::to_value(f.track.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                f.evidence
                    .as_ref()
                    .map(|e| e.sha256.clone())
                    .unwrap_or_default(),
                format!("/api/v1/findings/{}", f.id),
            ]);
        }
        csv_bytes(&rows).map(Some)
    }
}

/// A streamed CSV answer. The first page is read before answering, so that a failing
/// store is an error status; a failure later ends the body early (logged).
pub(crate) async fn csv_response(
    mut export: impl Export,
    name: &str,
) -> Result<Response, ApiError> {
    let first = export.next_chunk().await?;
    let rest = futures_util::stream::unfold(Some(export), |state| async move {
        let mut export = state?;
        match export.next_chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), Some(export))),
            Ok(None) => None,
            Err(err) => {
                tracing::error!(?err, "CSV export failed part way; the body ends early");
                Some((Err(std::io::Error::other("export failed")), None))
            }
        }
    });
    let body = futures_util::stream::iter(first.map(Ok::<_, std::io::Error>)).chain(rest);
    let disposition = format!(
        "attachment; filename=\"{name}-{}.csv\"",
        Utc::now().format("%Y%m%dT%H%M%SZ")
    );
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition).map_err(|_| internal())?,
            ),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// Every alert the list's filters match, as CSV.
#[utoipa::path(
    get,
    path = "/api/v1/alerts/export.csv",
    tag = "reports",
    description = "Every alert matching the alert list's filters, in its `sort` order, as CSV (RFC 4180, UTF-8, a header row first). Columns: id, site, structure, asset, component_class, level (worst), level_name, status, max_c (worst), last_max_c, reference_c and delta_c (of the latest finding), severity_table, first_seen, last_seen, finding_count, assignee, camera, gateway, link, cool_exception (true or false), kind (hotspot, cool_exception or a fleet alarm kind), detail (a fleet alarm: what the hub saw). `after` starts after that cursor; `limit` is ignored (the export pages internally and streams).",
    params(AlertParams),
    responses(
        (status = 200, description = "The alerts as CSV", body = String, content_type = "text/csv"),
        (status = 400, description = "An invalid filter, order or cursor, or an unknown parameter", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the viewer role", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(super) async fn alerts_csv(
    State(s): State<ApiState>,
    p: Principal,
    ApiQuery(q): ApiQuery<AlertParams>,
) -> Result<Response, ApiError> {
    p.require(Role::Viewer)?;
    let mut query = q.into_query()?;
    query.limit = MAX_PAGE_LIMIT;
    let export = AlertExport {
        s,
        query,
        catalog: Arc::new(SeverityCatalog::builtin()),
        structures: Structures::default(),
        header: true,
        done: false,
    };
    csv_response(export, "alerts").await
}

/// Every finding the list's filters match, as CSV.
#[utoipa::path(
    get,
    path = "/api/v1/findings/export.csv",
    tag = "reports",
    description = "Every finding matching the finding list's filters, newest received first, as CSV (RFC 4180, UTF-8, a header row first). Columns: id, received_at, observed_at, site, structure, asset, gateway, camera, component_class, level, level_name, action, max_c, reference_c, delta_c, severity_table, track_id, track_state, evidence_sha256, link. `after` starts after that cursor; `limit` is ignored.",
    params(FindingParams),
    responses(
        (status = 200, description = "The findings as CSV", body = String, content_type = "text/csv"),
        (status = 400, description = "An invalid filter or cursor, or an unknown parameter", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the viewer role", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(super) async fn findings_csv(
    State(s): State<ApiState>,
    p: Principal,
    ApiQuery(q): ApiQuery<FindingParams>,
) -> Result<Response, ApiError> {
    p.require(Role::Viewer)?;
    let mut query = q.into_query()?;
    query.limit = MAX_PAGE_LIMIT;
    let export = FindingExport {
        s,
        query,
        structures: Structures::default(),
        header: true,
        done: false,
    };
    csv_response(export, "findings").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralised_and_numbers_kept() {
        for (cell, want) in [
            (
                "=HYPERLINK(\"http://evil\",\"x\")",
                "'=HYPERLINK(\"http://evil\",\"x\")",
            ),
            ("+1+1", "'+1+1"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tcmd", "'\tcmd"),
            ("\rcmd", "'\rcmd"),
            ("-3.25", "-3.25"),
            ("+4", "+4"),
            ("olga", "olga"),
            ("", ""),
        ] {
            assert_eq!(spreadsheet_safe(cell), want, "{cell:?}");
        }
    }
}
