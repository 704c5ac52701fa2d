//! Reports: CSV exports of the alert and finding lists, the PDF inspection report of a
//! site and period, and the camera's visual image inside FLIR evidence.
//!
//! | endpoint | role |
//! |---|---|
//! | `GET /api/v1/alerts/export.csv` (the alert list's filters and `sort`) | viewer |
//! | `GET /api/v1/findings/export.csv` (the finding list's filters) | viewer |
//! | `GET /api/v1/reports/inspection.pdf?site=&from=&to=` | viewer |
//! | `GET /api/v1/evidence/{sha256}/visual.jpg` | viewer |
//!
//! # CSV
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
//! # PDF inspection report
//!
//! For a site and a period `[from, to)` of the hub's clock (`received_at`): the
//! findings received then, grouped by track (one alert each), each track shown by its
//! worst finding of the period (highest level, then hottest). A cover page (site,
//! period, generated at and by whom, findings and tracks, tracks by severity level),
//! then one page per track, worst first: the thermogram with its boxes (the renderer
//! of `thermogram.png`, iron palette, automatic span and scale, scale bar), the visual
//! image when the evidence carries a JPEG one, max °C, reference °C and ΔT, the
//! severity table, level, name and recommended action, and the alert's status.
//!
//! Bounds: at most [`MAX_REPORT_TRACKS`] track pages (the cover says when more
//! matched and how many were left out: narrow the period), at most
//! [`MAX_REPORT_SCANNED_FINDINGS`] findings read (likewise noted), and at most
//! [`MAX_REPORT_IMAGE_BYTES`] of embedded images (visual images past it are left out,
//! noted on their page). Each evidence file is read and converted once for all the
//! report's findings from it, and its visual image embedded once. Status comes from at
//! most [`MAX_REPORT_SCANNED_ALERTS`] alerts read (a track past them shows "no alert
//! found"). Caps are noted in the PDF rather than refused: a 200 with a note beats a 413
//! the operator cannot act on. One page per track, not per finding, because a streamed
//! track has a finding every few seconds. The report is built in memory; rendering runs
//! on blocking threads.
//!
//! The PDF is written with `pdf-writer` (MIT/Apache-2.0, the typst project's low-level
//! writer, no transitive dependencies). Text uses the PDF's built-in Helvetica and
//! Helvetica-Bold with `WinAnsiEncoding` (no font file is embedded; characters outside
//! Windows-1252 print as `?`, so ΔT is written "Delta T"). Thermograms are embedded as
//! Flate-compressed RGB; visual JPEGs pass through as `DCTDecode`, never re-encoded.

use super::alerts::AlertParams;
use super::auth::Principal;
use super::error::{ApiError, ErrorBody, ErrorCode};
use super::evidence::{
    evidence_error, finding_overlays, measurement_overrides, temperature_image, BinaryBody,
};
use super::findings::FindingParams;
use super::{ApiQuery, ApiState};
use crate::evidence::{validate_sha256, EvidenceKind};
use crate::store::{
    AlertEventKind, AlertQuery, AlertRecord, FindingQuery, Role, StoredFinding, MAX_PAGE_LIMIT,
};
use crate::store::{AlertStore, IngestStore, SiteStore};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chitti_common::finding::Finding;
use chitti_common::flir::{EmbeddedImage, VisualImageKind};
use chitti_common::render::{Palette, RenderOptions};
use chitti_common::severity::SeverityCatalog;
use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::StreamExt as _;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(alerts_csv))
        .routes(routes!(findings_csv))
        .routes(routes!(inspection_pdf))
        .routes(routes!(visual_jpg))
}

/// Columns of `alerts/export.csv`, in order: the alert id; site, structure (from the
/// site's asset register, empty when the asset is not registered), asset, component
/// class; `level` (the worst level of the track) and `level_name` (its name in the
/// severity table); workflow status; `max_c` (the track's hottest °C), `last_max_c`,
/// `reference_c` and `delta_c` (of the latest finding); severity table; first and last
/// seen (`observed_at` of the first and latest finding); number of findings; assignee
/// (the latest assignment, empty if none); camera, gateway; link (the alert in the API);
/// `cool_exception` (`true` when a finding of the track was a cool exception: level 0,
/// far colder than its reference).
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

/// Most track pages in one inspection report.
pub const MAX_REPORT_TRACKS: usize = 200;
/// Most findings one inspection report reads.
pub const MAX_REPORT_SCANNED_FINDINGS: usize = 50_000;
/// Most alerts one inspection report reads to find its tracks' status.
pub const MAX_REPORT_SCANNED_ALERTS: usize = 50_000;
/// Most bytes of images embedded in one inspection report.
pub const MAX_REPORT_IMAGE_BYTES: usize = 256 << 20;

fn internal() -> ApiError {
    ApiError::new(ErrorCode::Internal, "internal error")
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn opt_num(v: Option<f64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

// ----------------------------------------------------------------------------------
// CSV

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
trait Export: Send + 'static {
    /// The next page's CSV (the header row before the first); `None` when done.
    fn next_chunk(
        &mut self,
    ) -> impl std::future::Future<Output = Result<Option<Bytes>, ApiError>> + Send;
}

fn csv_bytes(rows: &[Vec<String>]) -> Result<Bytes, ApiError> {
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

fn header_row(columns: &[&str]) -> Vec<String> {
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
        let last = self
            .s
            .store
            .finding(a.last_finding_id)
            .await?
            .map(|f| f.finding);
        let level_name = self
            .catalog
            .get(&a.severity_table)
            .and_then(|t| t.level(a.worst_level))
            .map(|l| l.name.clone())
            .or_else(|| {
                last.as_ref()
                    .filter(|f| f.severity.level == a.worst_level)
                    .map(|f| f.severity.level_name.clone())
            })
            .unwrap_or_default();
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
            a.worst_max_c.to_string(),
            a.last_max_c.to_string(),
            opt_num(inputs.and_then(|i| i.reference_c)),
            opt_num(inputs.and_then(|i| i.delta_c)),
            a.severity_table,
            rfc3339(a.first_finding_at),
            rfc3339(a.last_finding_at),
            a.finding_count.to_string(),
            assignee,
            a.camera,
            a.gateway,
            format!("/api/v1/alerts/{}", a.id),
            a.cool_exception.to_string(),
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
async fn csv_response(mut export: impl Export, name: &str) -> Result<Response, ApiError> {
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
    description = "Every alert matching the alert list's filters, in its `sort` order, as CSV (RFC 4180, UTF-8, a header row first). Columns: id, site, structure, asset, component_class, level (worst), level_name, status, max_c (worst), last_max_c, reference_c and delta_c (of the latest finding), severity_table, first_seen, last_seen, finding_count, assignee, camera, gateway, link, cool_exception (true or false). `after` starts after that cursor; `limit` is ignored (the export pages internally and streams).",
    params(AlertParams),
    responses(
        (status = 200, description = "The alerts as CSV", body = String, content_type = "text/csv"),
        (status = 400, description = "An invalid filter, order or cursor, or an unknown parameter", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the viewer role", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn alerts_csv(
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
async fn findings_csv(
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

// ----------------------------------------------------------------------------------
// Visual images

/// Why an evidence blob has no visual JPEG to show.
#[derive(Debug, thiserror::Error)]
pub enum VisualError {
    /// The blob cannot carry one (agent stream evidence).
    #[error("it is a radiometric PNG from a gateway, which carries no visual image")]
    NotAFlirFile,
    /// A FLIR file without an embedded visual image.
    #[error("the FLIR file carries no visual image")]
    Absent,
    /// A visual image in another encoding.
    #[error("its visual image is {0}, not a JPEG")]
    NotJpeg(&'static str),
    /// A FLIR file that does not parse.
    #[error("it cannot be read as a FLIR file: {0}")]
    Unreadable(String),
}

/// The camera's visual (daylight) JPEG inside an evidence blob.
pub fn visual_jpeg(bytes: &[u8]) -> Result<EmbeddedImage, VisualError> {
    match EvidenceKind::sniff(bytes) {
        Some(EvidenceKind::Jpeg | EvidenceKind::Fff) => {}
        Some(EvidenceKind::Png) => return Err(VisualError::NotAFlirFile),
        None => return Err(VisualError::Unreadable("unknown content".into())),
    }
    let frame = chitti_common::flir::parse_bytes(bytes)
        .map_err(|e| VisualError::Unreadable(e.to_string()))?;
    let visual = frame.visual.ok_or(VisualError::Absent)?;
    match visual.kind {
        VisualImageKind::Jpeg => Ok(visual),
        VisualImageKind::Png => Err(VisualError::NotJpeg("a PNG")),
        VisualImageKind::Raw => Err(VisualError::NotJpeg("uncompressed")),
    }
}

/// The visual (daylight) image a FLIR evidence file carries, as the camera stored it.
#[utoipa::path(
    get,
    path = "/api/v1/evidence/{sha256}/visual.jpg",
    tag = "evidence",
    params(("sha256" = String, Path, pattern = "^[0-9a-f]{64}$", description = "Lowercase hex SHA-256 of the evidence")),
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "The embedded visual JPEG, byte for byte", body = BinaryBody, content_type = "image/jpeg"),
        (status = 400, description = "Malformed hash", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the viewer role", body = ErrorBody),
        (status = 404, description = "Unknown evidence, or it carries no visual JPEG (agent PNG evidence, a FLIR file without one or with a PNG one)", body = ErrorBody),
        (status = 415, description = "The evidence cannot be read as a FLIR file", body = ErrorBody),
    )
)]
async fn visual_jpg(
    State(s): State<ApiState>,
    p: Principal,
    Path(sha): Path<String>,
) -> Result<Response, ApiError> {
    p.require(Role::Viewer)?;
    validate_sha256(&sha).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let bytes = s
        .evidence
        .get(&sha)
        .await
        .map_err(evidence_error)?
        .ok_or_else(|| ApiError::not_found(format!("evidence {sha}")))?;
    let _slot = s.analysis_slot()?;
    let visual = tokio::task::spawn_blocking(move || visual_jpeg(&bytes))
        .await
        .map_err(|_| internal())?
        .map_err(|e| match e {
            VisualError::Unreadable(_) => ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!("no visual image in evidence {sha}: {e}"),
            ),
            _ => ApiError::new(
                ErrorCode::NotFound,
                format!("no visual image in evidence {sha}: {e}"),
            ),
        })?;
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg")),
        (
            header::CONTENT_DISPOSITION,
            HeaderValue::from_str(&format!("inline; filename=\"{sha}-visual.jpg\""))
                .map_err(|_| internal())?,
        ),
        (
            header::ETAG,
            HeaderValue::from_str(&format!("\"{sha}-visual\"")).map_err(|_| internal())?,
        ),
    ];
    Ok((headers, visual.bytes).into_response())
}

// ----------------------------------------------------------------------------------
// The PDF inspection report

/// The site and period of an inspection report.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InspectionParams {
    /// Site id.
    pub site: String,
    /// Start of the period (inclusive; hub clock, RFC 3339).
    pub from: DateTime<Utc>,
    /// End of the period (exclusive; hub clock, RFC 3339); not before `from`.
    pub to: DateTime<Utc>,
}

/// One track of the report: its worst finding of the period.
struct TrackPage {
    worst: Finding,
    findings_in_period: u64,
    status: Option<String>,
    alert_id: Option<Uuid>,
}

/// A visual JPEG, ready to embed: the bytes, width, height, colour components.
type Visual = (Vec<u8>, u32, u32, u8);

/// Images of one track page, ready to embed.
#[derive(Default)]
struct PageImages {
    /// Flate-compressed 8-bit RGB, width, height.
    thermogram: Option<(Vec<u8>, u32, u32)>,
    /// The visual image (an index into the report's visual images, one per evidence
    /// file, embedded once however many pages show it).
    visual: Option<usize>,
    /// What could not be shown, and why.
    notes: Vec<String>,
}

fn track_key(f: &Finding) -> (String, String, Uuid) {
    (f.gateway.clone(), f.camera.clone(), f.track.id)
}

fn worse(a: &Finding, b: &Finding) -> bool {
    (a.severity.level, a.hotspot.max_c) > (b.severity.level, b.hotspot.max_c)
}

/// A PDF inspection report of a site's findings in a period.
#[utoipa::path(
    get,
    path = "/api/v1/reports/inspection.pdf",
    tag = "reports",
    description = "The findings a site's gateways and uploads delivered in `[from, to)` (hub clock), one page per track (alert) by its worst finding of the period, worst first, after a cover page with the counts by severity level. Each page: the thermogram with its boxes and °C scale, the camera's visual image when the evidence carries a JPEG one, max °C, reference °C and ΔT, the severity table, level and recommended action, and the alert's status. At most 200 track pages (and 50 000 findings read); the cover says when more matched.",
    params(InspectionParams),
    responses(
        (status = 200, description = "The report", body = BinaryBody, content_type = "application/pdf"),
        (status = 400, description = "A missing or invalid parameter, or `from` after `to`", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the viewer role", body = ErrorBody),
        (status = 404, description = "No such site", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn inspection_pdf(
    State(s): State<ApiState>,
    p: Principal,
    ApiQuery(q): ApiQuery<InspectionParams>,
) -> Result<Response, ApiError> {
    p.require(Role::Viewer)?;
    if q.from > q.to {
        return Err(ApiError::bad_request(format!(
            "from ({}) is after to ({}): the period must not end before it starts",
            rfc3339(q.from),
            rfc3339(q.to)
        )));
    }
    let _slot = s.analysis_slot()?;
    let site = s
        .store
        .site(&q.site)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("site {:?}", q.site)))?;

    // The period's findings, grouped by track, each kept only by its worst.
    let mut tracks: HashMap<(String, String, Uuid), TrackPage> = HashMap::new();
    let mut scanned = 0usize;
    let mut scan_capped = false;
    let mut query = FindingQuery {
        site: Some(site.id.clone()),
        since: Some(q.from),
        until: Some(q.to),
        limit: MAX_PAGE_LIMIT,
        ..FindingQuery::default()
    };
    loop {
        let page = s.store.list_findings(&query).await?;
        for f in page.items {
            scanned += 1;
            let f = f.finding;
            match tracks.entry(track_key(&f)) {
                std::collections::hash_map::Entry::Occupied(mut e) => {
                    let t = e.get_mut();
                    t.findings_in_period += 1;
                    if worse(&f, &t.worst) {
                        t.worst = f;
                    }
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(TrackPage {
                        worst: f,
                        findings_in_period: 1,
                        status: None,
                        alert_id: None,
                    });
                }
            }
        }
        match page.next_cursor {
            Some(_) if scanned >= MAX_REPORT_SCANNED_FINDINGS => {
                scan_capped = true;
                break;
            }
            Some(c) => query.after = Some(c),
            None => break,
        }
    }

    // Their alerts' status: the site's alerts opened before the period ended.
    let mut alerts = AlertQuery {
        site: Some(site.id.clone()),
        until: Some(q.to),
        limit: MAX_PAGE_LIMIT,
        ..AlertQuery::default()
    };
    let mut alerts_read = 0usize;
    let mut unmatched = tracks.len();
    while unmatched > 0 && alerts_read < MAX_REPORT_SCANNED_ALERTS {
        let page = s.store.list_alerts(&alerts).await?;
        alerts_read += page.items.len();
        for a in page.items {
            if let Some(t) = tracks.get_mut(&(a.gateway, a.camera, a.track_id)) {
                if t.status.is_none() {
                    unmatched -= 1;
                }
                t.status = Some(a.status.as_str().to_string());
                t.alert_id = Some(a.id);
            }
        }
        match page.next_cursor {
            Some(c) => alerts.after = Some(c),
            None => break,
        }
    }

    let mut by_level: BTreeMap<u8, (String, u64)> = BTreeMap::new();
    for t in tracks.values() {
        let e = by_level
            .entry(t.worst.severity.level)
            .or_insert_with(|| (t.worst.severity.level_name.clone(), 0));
        e.1 += 1;
    }
    let track_count = tracks.len();
    let mut pages: Vec<TrackPage> = tracks.into_values().collect();
    pages.sort_by(|a, b| {
        (b.worst.severity.level, b.worst.hotspot.max_c)
            .partial_cmp(&(a.worst.severity.level, a.worst.hotspot.max_c))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.worst.observed_at.cmp(&b.worst.observed_at))
    });
    pages.truncate(MAX_REPORT_TRACKS);

    // Images, evidence file by evidence file (one in memory at a time): each is read,
    // converted to °C and searched for its visual image once, however many of the
    // report's findings came from it (an upload's hotspots share one file).
    let mut images: Vec<PageImages> = Vec::new();
    images.resize_with(pages.len(), PageImages::default);
    let mut visuals: Vec<Visual> = Vec::new();
    let mut by_evidence: BTreeMap<Option<String>, Vec<usize>> = BTreeMap::new();
    for (i, t) in pages.iter().enumerate() {
        let sha = t.worst.evidence.as_ref().map(|e| e.sha256.clone());
        by_evidence.entry(sha).or_default().push(i);
    }
    let mut image_bytes = 0usize;
    for (sha, indices) in by_evidence {
        let findings: Vec<Finding> = indices.iter().map(|&i| pages[i].worst.clone()).collect();
        let (page_images, visual) = evidence_images(&s, sha, findings, &mut image_bytes).await;
        let visual = visual.map(|v| {
            visuals.push(v);
            visuals.len() - 1
        });
        for (i, mut img) in indices.into_iter().zip(page_images) {
            img.visual = visual;
            images[i] = img;
        }
    }

    let cover = Cover {
        site_id: site.id.clone(),
        site_name: site.name.clone(),
        from: q.from,
        to: q.to,
        generated_at: Utc::now(),
        by: p.actor(),
        findings: scanned,
        scan_capped,
        tracks: track_count,
        by_level,
    };
    let pdf = tokio::task::spawn_blocking(move || write_pdf(&cover, &pages, images, visuals))
        .await
        .map_err(|_| internal())?;
    let disposition = format!(
        "inline; filename=\"inspection-{}-{}.pdf\"",
        sanitize_filename(&site.id),
        q.from.format("%Y%m%d")
    );
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/pdf"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition).map_err(|_| internal())?,
            ),
        ],
        pdf,
    )
        .into_response())
}

fn sanitize_filename(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}

/// The thermograms of findings that share one evidence file (`None`: none reported),
/// in their order, and the file's visual image, as far as the file allows.
async fn evidence_images(
    s: &ApiState,
    sha: Option<String>,
    findings: Vec<Finding>,
    image_bytes: &mut usize,
) -> (Vec<PageImages>, Option<Visual>) {
    let noted = |note: String| {
        let pages = findings
            .iter()
            .map(|_| PageImages {
                notes: vec![note.clone()],
                ..PageImages::default()
            })
            .collect();
        (pages, None)
    };
    let Some(sha) = sha else {
        return noted("No evidence file was reported with this finding.".into());
    };
    let bytes = match s.evidence.get(&sha).await {
        Ok(Some(b)) => b,
        Ok(None) | Err(crate::evidence::EvidenceError::BadName(_)) => {
            return noted(format!("Evidence {sha} has not been uploaded yet."));
        }
        Err(e) => {
            tracing::error!(err = %e, "evidence storage failed while writing a report");
            return noted(format!("Evidence {sha} could not be read (storage error)."));
        }
    };
    let budget_left = MAX_REPORT_IMAGE_BYTES.saturating_sub(*image_bytes);
    let count = findings.len();
    let result =
        tokio::task::spawn_blocking(move || render_evidence(&findings, &bytes, budget_left)).await;
    match result {
        Ok((pages, visual)) => {
            *image_bytes += pages
                .iter()
                .map(|p| p.thermogram.as_ref().map_or(0, |t| t.0.len()))
                .sum::<usize>()
                + visual.as_ref().map_or(0, |v| v.0.len());
            (pages, visual)
        }
        Err(_) => {
            let pages = (0..count)
                .map(|_| PageImages {
                    notes: vec!["The evidence could not be rendered.".into()],
                    ..PageImages::default()
                })
                .collect();
            (pages, None)
        }
    }
}

fn render_evidence(
    findings: &[Finding],
    bytes: &[u8],
    budget_left: usize,
) -> (Vec<PageImages>, Option<Visual>) {
    let mut pages: Vec<PageImages> = findings.iter().map(|_| PageImages::default()).collect();
    let mut used = 0usize;
    // One conversion per set of measurement conditions (an upload's findings share
    // them; a stream's may differ).
    let mut converted: Option<(chitti_common::radiometry::ParamOverrides, _)> = None;
    for (f, page) in findings.iter().zip(&mut pages) {
        let overrides = measurement_overrides(&f.measurement);
        let reuse = matches!(&converted, Some((o, _)) if *o == overrides);
        if !reuse {
            converted = Some((overrides, temperature_image(bytes, &overrides)));
        }
        let Some((_, result)) = &converted else {
            continue;
        };
        let t = match result {
            Ok(t) => t,
            Err(e) => {
                page.notes.push(format!(
                    "No temperatures could be read from the evidence: {e}."
                ));
                continue;
            }
        };
        let overlays = finding_overlays(f, t.image.width(), t.image.height());
        let options = RenderOptions {
            palette: Palette::Iron,
            span: None,
            scale: chitti_common::render::AUTO_SCALE,
            scale_bar: true,
        };
        match chitti_common::render::render(&t.image, &overlays, &options) {
            Ok(rgb) => {
                // Fast deflate: thermograms are large flat areas; level 1 is several
                // times quicker than the default for a few percent more bytes.
                let packed = miniz_oxide::deflate::compress_to_vec_zlib(&rgb.pixels, 1);
                if used + packed.len() <= budget_left {
                    used += packed.len();
                    page.thermogram = Some((packed, rgb.width, rgb.height));
                } else {
                    page.notes
                        .push("Thermogram left out: the report's image limit is reached.".into());
                }
            }
            Err(e) => page
                .notes
                .push(format!("The thermogram could not be drawn: {e}.")),
        }
    }
    let mut visual = None;
    let note = match visual_jpeg(bytes) {
        Ok(v) => match jpeg_geometry(&v.bytes) {
            Some((w, h, comps)) if used + v.bytes.len() <= budget_left => {
                visual = Some((v.bytes, w, h, comps));
                None
            }
            Some(_) => Some("Visual image left out: the report's image limit is reached.".into()),
            None => Some("The visual image is a JPEG this report cannot embed.".into()),
        },
        Err(VisualError::NotAFlirFile) | Err(VisualError::Absent) => None,
        Err(e) => Some(format!("Visual image not shown: {e}.")),
    };
    if let Some(note) = note {
        for page in &mut pages {
            page.notes.push(note.clone());
        }
    }
    (pages, visual)
}

/// Width, height and colour components (1 or 3) of an 8-bit baseline or progressive
/// JPEG, from its frame header; `None` for anything else.
pub fn jpeg_geometry(jpeg: &[u8]) -> Option<(u32, u32, u8)> {
    if !jpeg.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut i = 2;
    while i + 4 <= jpeg.len() {
        if jpeg[i] != 0xFF {
            return None;
        }
        let marker = jpeg[i + 1];
        if marker == 0xFF {
            i += 1;
            continue;
        }
        if (0xD0..=0xD7).contains(&marker) || marker == 0x01 {
            i += 2;
            continue;
        }
        let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
        if len < 2 {
            return None;
        }
        let is_sof = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if is_sof {
            let seg = jpeg.get(i + 4..i + 2 + len)?;
            if seg.len() < 6 || seg[0] != 8 {
                return None;
            }
            let h = u32::from(u16::from_be_bytes([seg[1], seg[2]]));
            let w = u32::from(u16::from_be_bytes([seg[3], seg[4]]));
            let comps = seg[5];
            // Lossless and arithmetic-coded JPEGs are not what PDF readers decode.
            let supported = matches!(marker, 0xC0..=0xC2);
            return (supported && w > 0 && h > 0 && matches!(comps, 1 | 3))
                .then_some((w, h, comps));
        }
        if marker == 0xDA {
            return None;
        }
        i += 2 + len;
    }
    None
}

// ----------------------------------------------------------------------------------
// Layout

struct Cover {
    site_id: String,
    site_name: String,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    generated_at: DateTime<Utc>,
    by: String,
    findings: usize,
    scan_capped: bool,
    tracks: usize,
    by_level: BTreeMap<u8, (String, u64)>,
}

/// A4 in points.
const PAGE_W: f32 = 595.0;
const PAGE_H: f32 = 842.0;
const MARGIN: f32 = 40.0;
const REGULAR: pdf_writer::Name<'static> = pdf_writer::Name(b"F1");
const BOLD: pdf_writer::Name<'static> = pdf_writer::Name(b"F2");

/// Text in Windows-1252 (the built-in fonts' `WinAnsiEncoding`); other characters
/// become `?`.
fn win_ansi(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| match c {
            '\u{20}'..='\u{7E}' | '\u{A0}'..='\u{FF}' => c as u8,
            '\u{2013}' => 0x96,
            '\u{2014}' => 0x97,
            '\u{2022}' => 0x95,
            '\u{2018}' => 0x91,
            '\u{2019}' => 0x92,
            '\u{201C}' => 0x93,
            '\u{201D}' => 0x94,
            '\u{2026}' => 0x85,
            'Δ' => b'D',
            _ => b'?',
        })
        .collect()
}

/// Lines of at most `width` characters, broken at spaces where possible.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let mut word = word.to_string();
        while word.chars().count() > width {
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            let head: String = word.chars().take(width).collect();
            word = word.chars().skip(width).collect();
            lines.push(head);
        }
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// A page's content, written top to bottom.
struct Writer {
    content: pdf_writer::Content,
    y: f32,
}

impl Writer {
    fn new() -> Self {
        Self {
            content: pdf_writer::Content::new(),
            y: PAGE_H - MARGIN,
        }
    }

    fn text(&mut self, font: pdf_writer::Name<'_>, size: f32, x: f32, text: &str) {
        self.y -= size * 1.35;
        let bytes = win_ansi(text);
        self.content
            .begin_text()
            .set_font(font, size)
            .next_line(x, self.y)
            .show(pdf_writer::Str(&bytes))
            .end_text();
    }

    fn para(&mut self, size: f32, text: &str) {
        // Helvetica averages about half an em per character.
        let width = ((PAGE_W - 2.0 * MARGIN) / (size * 0.5)) as usize;
        for line in wrap(text, width) {
            self.text(REGULAR, size, MARGIN, &line);
        }
    }

    /// A `label: value` line, the label bold in a fixed column.
    fn field(&mut self, label: &str, value: &str) {
        let size = 10.0;
        let lines = wrap(value, 72);
        for (i, line) in lines.iter().enumerate() {
            self.y -= size * 1.35;
            let label_bytes = win_ansi(if i == 0 { label } else { "" });
            let value_bytes = win_ansi(line);
            self.content
                .begin_text()
                .set_font(BOLD, size)
                .next_line(MARGIN, self.y)
                .show(pdf_writer::Str(&label_bytes))
                .end_text()
                .begin_text()
                .set_font(REGULAR, size)
                .next_line(MARGIN + 130.0, self.y)
                .show(pdf_writer::Str(&value_bytes))
                .end_text();
        }
    }

    fn gap(&mut self, pt: f32) {
        self.y -= pt;
    }

    fn level_badge(&mut self, level: u8) {
        let (r, g, b) = level_colour(level);
        self.content
            .save_state()
            .set_fill_rgb(r, g, b)
            .rect(MARGIN, self.y - 6.0, PAGE_W - 2.0 * MARGIN, 4.0)
            .fill_nonzero()
            .restore_state();
        self.gap(8.0);
    }

    /// Places an image XObject, fitted into `max_w × max_h`, below the current line.
    fn image(&mut self, name: pdf_writer::Name<'_>, w: u32, h: u32, max_w: f32, max_h: f32) {
        let scale = (max_w / w as f32).min(max_h / h as f32);
        let (dw, dh) = (w as f32 * scale, h as f32 * scale);
        self.y -= dh;
        self.content
            .save_state()
            .transform([dw, 0.0, 0.0, dh, MARGIN, self.y])
            .x_object(name)
            .restore_state();
    }
}

/// The colour of a level's badge (0 grey, rising from yellow to dark red).
fn level_colour(level: u8) -> (f32, f32, f32) {
    match level {
        0 => (0.6, 0.6, 0.6),
        1 => (0.95, 0.8, 0.1),
        2 => (0.95, 0.55, 0.1),
        3 => (0.85, 0.15, 0.1),
        _ => (0.55, 0.0, 0.05),
    }
}

fn fmt_c(c: f64) -> String {
    format!("{c:.1} °C")
}

fn subject(f: &Finding) -> String {
    let what = f
        .asset
        .clone()
        .or_else(|| f.component.as_ref().map(|c| c.class.clone()))
        .unwrap_or_else(|| format!("camera {}", f.camera));
    format!(
        "{what} - level {} ({})",
        f.severity.level, f.severity.level_name
    )
}

/// Object numbers, handed out in order.
struct Refs(i32);

impl Refs {
    fn next(&mut self) -> pdf_writer::Ref {
        self.0 += 1;
        pdf_writer::Ref::new(self.0)
    }
}

/// The PDF. Takes the images by value: each is freed once copied into the document.
fn write_pdf(
    cover: &Cover,
    pages: &[TrackPage],
    images: Vec<PageImages>,
    visuals: Vec<Visual>,
) -> Vec<u8> {
    use pdf_writer::{Filter, Finish, Name, Pdf, Rect, Ref, TextStr};
    let mut pdf = Pdf::new();
    let mut refs = Refs(0);
    let catalog = refs.next();
    let tree = refs.next();
    let fonts = (refs.next(), refs.next());
    let info = refs.next();
    pdf.catalog(catalog).pages(tree);
    pdf.type1_font(fonts.0)
        .base_font(Name(b"Helvetica"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(fonts.1)
        .base_font(Name(b"Helvetica-Bold"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    let title = format!("Thermal inspection report: {}", cover.site_name);
    pdf.document_info(info)
        .title(TextStr(&title))
        .creator(TextStr("Chitti hub"))
        .producer(TextStr("Chitti hub (pdf-writer)"));
    // Each visual image once, referenced by every page that shows it.
    let mut visual_ids = Vec::with_capacity(visuals.len());
    for (data, iw, ih, comps) in &visuals {
        let id = refs.next();
        let mut image = pdf.image_xobject(id, data);
        image.filter(Filter::DctDecode);
        image.width(*iw as i32);
        image.height(*ih as i32);
        if *comps == 1 {
            image.color_space().device_gray();
        } else {
            image.color_space().device_rgb();
        }
        image.bits_per_component(8);
        image.finish();
        visual_ids.push(id);
    }
    let mut page_ids = Vec::new();
    let mut add_page =
        |pdf: &mut Pdf, refs: &mut Refs, content: Vec<u8>, xobjects: &[(Vec<u8>, Ref)]| {
            let page_id = refs.next();
            let content_id = refs.next();
            let mut page = pdf.page(page_id);
            page.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H));
            page.parent(tree);
            page.contents(content_id);
            {
                let mut resources = page.resources();
                resources.fonts().pair(REGULAR, fonts.0).pair(BOLD, fonts.1);
                if !xobjects.is_empty() {
                    let mut x = resources.x_objects();
                    for (name, id) in xobjects {
                        x.pair(Name(name), *id);
                    }
                }
            }
            page.finish();
            pdf.stream(content_id, &content);
            page_ids.push(page_id);
        };

    // Cover.
    let mut w = Writer::new();
    w.text(BOLD, 22.0, MARGIN, "Thermal inspection report");
    w.gap(10.0);
    w.field("Site", &format!("{} ({})", cover.site_name, cover.site_id));
    w.field(
        "Period (UTC)",
        &format!(
            "{} to {}",
            cover.from.format("%Y-%m-%d %H:%M:%S"),
            cover.to.format("%Y-%m-%d %H:%M:%S")
        ),
    );
    w.field(
        "Generated",
        &format!("{} UTC", cover.generated_at.format("%Y-%m-%d %H:%M:%S")),
    );
    w.field("Generated by", &cover.by);
    w.field("Findings received", &cover.findings.to_string());
    w.field("Tracks (alerts)", &cover.tracks.to_string());
    w.gap(12.0);
    w.text(
        BOLD,
        13.0,
        MARGIN,
        "Tracks by severity level (worst finding)",
    );
    w.gap(4.0);
    if cover.by_level.is_empty() {
        w.para(
            10.0,
            "No findings were received for this site in the period.",
        );
    }
    for (level, (name, count)) in cover.by_level.iter().rev() {
        w.field(&format!("Level {level}"), &format!("{name}: {count}"));
    }
    w.gap(12.0);
    if cover.scan_capped {
        w.para(
            10.0,
            &format!(
                "Note: only the newest {MAX_REPORT_SCANNED_FINDINGS} findings of the period were read; narrow the period for a complete report."
            ),
        );
    }
    if cover.tracks > pages.len() {
        w.para(
            10.0,
            &format!(
                "Note: this report shows the {} worst of {} tracks ({} left out; at most {MAX_REPORT_TRACKS} per report). Narrow the period, or export the alert list as CSV for all of them.",
                pages.len(),
                cover.tracks,
                cover.tracks - pages.len()
            ),
        );
    }
    w.para(
        10.0,
        "One page per track follows, worst first: the thermogram (iron palette, the finding's boxes, °C scale), the camera's visual image when the file carries one, the temperatures and the severity assessment.",
    );
    add_page(&mut pdf, &mut refs, w.content.finish().into_vec(), &[]);

    for (i, (t, imgs)) in pages.iter().zip(images).enumerate() {
        let f = &t.worst;
        let sev = &f.severity;
        let mut xobjects = Vec::new();
        let mut w = Writer::new();
        w.text(BOLD, 15.0, MARGIN, &format!("{}. {}", i + 1, subject(f)));
        w.level_badge(sev.level);
        w.field(
            "Alert status",
            t.status.as_deref().unwrap_or("no alert found"),
        );
        w.field("Max", &fmt_c(f.hotspot.max_c));
        let reference = match (sev.inputs.reference_c, sev.inputs.reference_kind) {
            (Some(c), Some(kind)) => {
                let kind = serde_json::to_value(kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                let source = sev.inputs.reference_source.clone().unwrap_or_default();
                format!(
                    "{} ({kind}{}{source})",
                    fmt_c(c),
                    if source.is_empty() { "" } else { ", " }
                )
            }
            (Some(c), None) => fmt_c(c),
            _ => format!(
                "none (ambient {}, {})",
                fmt_c(f.reference.ambient_c),
                f.reference.ambient_source
            ),
        };
        w.field("Reference", &reference);
        w.field(
            "Delta T",
            &sev.inputs
                .delta_c
                .map_or_else(|| "-".to_string(), |d| format!("{d:.1} K")),
        );
        w.field(
            "Severity",
            &format!(
                "level {} ({}), table {} v{}",
                sev.level, sev.level_name, sev.table, sev.table_version
            ),
        );
        w.field("Recommended action", &sev.action);
        if let Some(reason) = &sev.not_assessed {
            w.field("Not assessed", reason);
        }
        w.field(
            "Where",
            &format!(
                "asset {}, gateway {}, camera {}",
                f.asset.as_deref().unwrap_or("-"),
                f.gateway,
                f.camera
            ),
        );
        if let Some(c) = &f.component {
            w.field(
                "Component",
                &format!("{} ({:.0}% confidence)", c.class, c.confidence * 100.0),
            );
        }
        w.field(
            "Observed",
            &format!("{} UTC", f.observed_at.format("%Y-%m-%d %H:%M:%S")),
        );
        w.field("Findings in period", &t.findings_in_period.to_string());
        w.field("Finding", &f.id.to_string());
        if let Some(id) = t.alert_id {
            w.field("Alert", &id.to_string());
        }
        w.gap(8.0);
        let bottom_room = |w: &Writer| w.y - MARGIN;
        if let Some((data, iw, ih)) = &imgs.thermogram {
            let id = refs.next();
            let mut image = pdf.image_xobject(id, data);
            image.filter(Filter::FlateDecode);
            image.width(*iw as i32);
            image.height(*ih as i32);
            image.color_space().device_rgb();
            image.bits_per_component(8);
            image.finish();
            let name = format!("Th{i}").into_bytes();
            let room = if imgs.visual.is_some() {
                (bottom_room(&w) - 20.0) * 0.55
            } else {
                bottom_room(&w) - 20.0
            };
            w.text(BOLD, 10.0, MARGIN, "Thermogram");
            w.gap(2.0);
            w.image(Name(&name), *iw, *ih, PAGE_W - 2.0 * MARGIN, room.max(60.0));
            xobjects.push((name, id));
            w.gap(6.0);
        }
        if let Some((v, id)) = imgs.visual.and_then(|v| Some((v, *visual_ids.get(v)?))) {
            let (_, iw, ih, _) = &visuals[v];
            let name = format!("Vi{v}").into_bytes();
            w.text(BOLD, 10.0, MARGIN, "Visual image");
            w.gap(2.0);
            let room = bottom_room(&w) - 14.0 * imgs.notes.len() as f32;
            w.image(Name(&name), *iw, *ih, PAGE_W - 2.0 * MARGIN, room.max(60.0));
            xobjects.push((name, id));
            w.gap(6.0);
        }
        for note in &imgs.notes {
            w.para(9.0, note);
        }
        add_page(
            &mut pdf,
            &mut refs,
            w.content.finish().into_vec(),
            &xobjects,
        );
    }

    let count = page_ids.len() as i32;
    pdf.pages(tree).kids(page_ids).count(count);
    pdf.finish()
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

    #[test]
    fn text_is_wrapped_at_spaces_and_long_words_are_split() {
        assert_eq!(wrap("a bb ccc", 4), ["a bb", "ccc"]);
        assert_eq!(wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap("", 4), [""]);
    }

    #[test]
    fn text_is_written_in_windows_1252() {
        assert_eq!(win_ansi("87.5 °C – ok"), b"87.5 \xB0C \x96 ok");
        assert_eq!(win_ansi("ΔT 漢"), b"DT ?");
    }

    #[test]
    fn jpeg_geometry_reads_the_frame_header() {
        // SOI, an APP0 of 4 bytes, SOF0 (8 bit, 2 x 3, 3 components), SOS.
        let jpeg = [
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0x00,
            0x03, 0x00, 0x02, 0x03, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1, 0xFF, 0xDA,
        ];
        assert_eq!(jpeg_geometry(&jpeg), Some((2, 3, 3)));
        assert_eq!(jpeg_geometry(b"\x89PNG"), None);
        assert_eq!(jpeg_geometry(&[0xFF, 0xD8, 0xFF, 0xDA, 0, 2]), None);
        // Truncated inside the frame header.
        assert_eq!(jpeg_geometry(&jpeg[..14]), None);
    }
}
