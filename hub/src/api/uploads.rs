//! `POST /api/v1/uploads`: handheld inspections. An operator uploads the FLIR files a
//! thermographer took (R-JPEG `.jpg`, `.fff`, `.seq`, `.csq`); the hub analyses each
//! one with the thermal core's own file analysis
//! ([`chitti_common::inspection::inspect_file`], which runs the very
//! `analyze_frame` of `chitti-agent inspect`), stores the file as evidence and the
//! findings as if a gateway had sent them, so alerts open exactly as for gateway
//! findings.
//!
//! # The request
//!
//! `multipart/form-data`, role operator or admin. Form fields come **before** the files
//! (browsers' `FormData` and `curl -F` keep the order given), because files are analysed
//! as they arrive:
//!
//! | field | | |
//! |---|---|---|
//! | `site` | required | an existing site (404 otherwise) |
//! | `asset` | optional | an existing asset of that site (404 otherwise); put on every finding |
//! | `severity_table` | optional | a built-in table id; default `utility-absolute` (the agent's default) |
//! | `reference_c` | optional | reference °C for ΔT tables (default: the file's atmospheric temperature as ambient, as `inspect` does) |
//! | `reference_kind` | optional | `ambient` (default) or `similar` (a similar component, e.g. the healthy phase); `neta-similar` needs `similar` |
//! | `note` | optional | free text (≤ 4000 bytes) for the audit log |
//! | `file` | one or more | the files, up to [`MAX_FILES`] |
//!
//! There is no `structure` field: a finding has no place for one, and an asset already
//! names its structure.
//!
//! # Limits
//!
//! - The whole body: [`ApiState::max_upload_bytes`] (`http.max_upload_bytes`). The
//!   route lifts the hub's global 1 MiB body limit and applies this one to the request
//!   itself; a declared `Content-Length` above it is refused before anything is read,
//!   an undeclared (chunked) body when it passes the limit. Either way 413
//!   `payload_too_large`.
//! - Each file: the evidence store's limit (`evidence.max_bytes`); a larger file is a
//!   per-file error, the others go on.
//! - At most [`MAX_FILES`] files; the next file part is a 400.
//!
//! A failure of the request itself after some files were analysed (the body limit, a
//! malformed body, a file beyond the limit) leaves those files' findings stored; sending
//! them again duplicates nothing (see ids below).
//!
//! # Findings
//!
//! - `site` and `asset` from the form; gateway [`UPLOAD_GATEWAY`]; camera the file's
//!   model and serial as an id (`flir-t640-62202337`), or [`HANDHELD_CAMERA`] when the
//!   file names neither; source `upload`.
//! - `captured_at` is the frame's own timestamp (the upload time when the file has
//!   none), `observed_at` the upload time.
//! - Every reportable region (severity level ≥ 1, or a cool exception) is its own
//!   episode, raised at once: a still has no tracking.
//! - Ids (finding and track) derive from the file's content, the frame, the region's
//!   rank and the site, gateway and camera ([`chitti_common::inspection::still_ids`]):
//!   uploading the same file to the same site again stores nothing new (the answer
//!   marks those findings `new: false`). The asset is not part of the id, so a second
//!   upload naming another asset does not move the stored findings.
//! - Evidence is the original file (`evidence.sha256` on every finding), stored before
//!   the findings.
//!
//! **Sequences** (`.seq`, `.csq`): every frame is analysed, and the frame with the
//! hottest reportable hotspot (the earliest on ties) is reported: its findings, its
//! capture time. A handheld recording is one look at one scene, so its worst moment is
//! the finding; reporting every frame would raise one alert per frame for the same
//! hotspot. A frame that cannot be read fails the file (as the agent's folder source
//! quarantines it).
//!
//! # The answer
//!
//! 200 with [`UploadResponse`] once the form is valid: each file is `ok` (with its
//! findings) or `error` (with a code and a message naming what was wrong, e.g. "not a
//! FLIR radiometric file: …"), and one file's error never fails the others. With
//! `Accept: application/x-ndjson` the answer streams one line per file as it finishes,
//! `{"file": {…}}`, then `{"summary": {…}}` (the whole [`UploadResponse`]), or, when
//! the request fails half-way, `{"error": {code, message}}` as the last line.
//!
//! One audit entry per upload (`upload.create` on the site), also when it fails
//! half-way, and one per file with findings (`upload.file`: the upload, the file, its
//! SHA-256 and the finding ids), written in the same transaction as those findings, so
//! an upload cut off by a crash leaves no stored finding without its record.

use super::auth::Principal;
use super::error::{ApiError, ErrorBody, ErrorCode, ErrorDetail};
use super::ApiState;
use crate::store::{EvidenceIndex, IngestStore, SiteStore};
use crate::store::{EvidenceRecord, IngestedFinding, Role};
use axum::body::{Body, Bytes};
use axum::extract::multipart::{Field, MultipartError};
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chitti_common::analysis::AnalysisOptions;
use chitti_common::finding::{EvidenceRef, Finding, FindingSource};
use chitti_common::flir::ContainerKind;
use chitti_common::inspection::{inspect_file, InspectionError, InspectionOptions};
use chitti_common::severity::{
    ReferenceKind, ReferenceTemperature, SeverityBasis, SeverityCatalog, SeverityTable,
};
use chrono::{DateTime, FixedOffset, Utc};
use serde::Serialize;
use std::collections::HashSet;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

/// Most files in one upload.
pub const MAX_FILES: usize = 100;
/// The gateway id of uploaded findings.
pub const UPLOAD_GATEWAY: &str = "upload";
/// The camera id of uploaded findings whose file names no camera.
pub const HANDHELD_CAMERA: &str = "handheld";
/// The severity table unless the form names one (the agent's default too).
pub const DEFAULT_TABLE: &str = "utility-absolute";
/// The media type of the streamed answer.
pub const NDJSON: &str = "application/x-ndjson";
/// Longest note, bytes.
const MAX_NOTE_BYTES: usize = 4000;
/// Longest other text field, bytes.
const MAX_FIELD_BYTES: usize = 256;
/// Where a reference given in the form is said to come from.
const FORM_REFERENCE_SOURCE: &str = "entered with the upload";

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(utoipa_axum::routes!(create_upload))
        // The hub's global body limit (1 MiB) does not apply here: the handler limits
        // the body to `max_upload_bytes`, which only the state knows.
        .layer(DefaultBodyLimit::disable())
}

fn severity_table_schema() -> utoipa::openapi::schema::Object {
    super::enum_schema(
        &chitti_common::severity::BUILTIN_TABLE_IDS,
        false,
        "Built-in severity table id (default `utility-absolute`)",
    )
}

fn reference_kind_schema() -> utoipa::openapi::schema::Object {
    super::enum_schema(
        &["ambient", "similar"],
        false,
        "`ambient` (default) or `similar`",
    )
}

/// The form, as OpenAPI describes it (the handler reads the parts as they come).
#[derive(ToSchema)]
#[allow(dead_code)] // documentation only: never built
struct UploadForm {
    /// Site id (must exist).
    #[schema(pattern = "^[a-z0-9-]{1,64}$")]
    site: String,
    /// Asset id in the site (must exist).
    #[schema(pattern = "^[a-z0-9-]{1,64}$")]
    asset: Option<String>,
    /// Built-in severity table id (default `utility-absolute`).
    #[schema(schema_with = severity_table_schema)]
    severity_table: Option<String>,
    /// Reference °C for ΔT tables.
    reference_c: Option<f64>,
    /// `ambient` (default) or `similar`.
    #[schema(schema_with = reference_kind_schema)]
    reference_kind: Option<String>,
    /// Free text for the audit log, at most 4000 bytes.
    #[schema(max_length = 1000)]
    note: Option<String>,
    /// The FLIR files (R-JPEG, .fff, .seq, .csq), after the other fields.
    #[schema(value_type = Vec<String>, format = Binary, content_media_type = "application/octet-stream")]
    file: Vec<Vec<u8>>,
}

/// What an upload did.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadResponse {
    /// The upload's id (the findings' batch id).
    pub upload_id: Uuid,
    /// The site.
    pub site: String,
    /// The asset, when the form named one.
    pub asset: Option<String>,
    /// The severity table used.
    pub severity_table: String,
    /// Every file, in the order sent.
    pub files: Vec<UploadedFile>,
    /// Findings of all files (new and already stored).
    pub findings: usize,
    /// Findings stored by this upload (the others were stored by an earlier one).
    pub new_findings: usize,
}

/// Whether a file was analysed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    /// Analysed; its findings (maybe none) are stored.
    Ok,
    /// Not analysed: see `error`.
    Error,
}

/// One uploaded file.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadedFile {
    /// The name the client gave (no path).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the bytes (its evidence name); `null` when the file was too large to read.
    pub sha256: Option<String>,
    /// `ok` or `error`.
    pub status: FileStatus,
    /// `r-jpeg` or `fff-sequence`.
    #[schema(value_type = Option<String>)]
    pub container: Option<ContainerKind>,
    /// The camera id the findings carry.
    pub camera: Option<String>,
    /// Frames in the file.
    pub frames: Option<usize>,
    /// The frame reported (0-based; the hottest of a sequence).
    pub frame: Option<usize>,
    /// Its capture time (camera clock).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub captured_at: Option<DateTime<FixedOffset>>,
    /// Its hottest pixel, °C.
    pub max_c: Option<f64>,
    /// Its findings, hottest first, then cool exceptions.
    pub findings: Vec<UploadedFinding>,
    /// Non-fatal problems (a short last frame, saturated pixels …).
    pub warnings: Vec<String>,
    /// Why the file was not analysed.
    pub error: Option<ErrorDetail>,
}

/// A finding of an uploaded file, in short (the whole finding is at
/// `GET /api/v1/findings/{id}`).
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadedFinding {
    /// Finding id.
    pub id: Uuid,
    /// Track (episode) id: the alert's key.
    pub track_id: Uuid,
    /// Severity level (0 for a cool exception).
    pub severity: u8,
    /// The level's name.
    pub level_name: String,
    /// Recommended action.
    pub action: String,
    /// True for a region far colder than its similar-component reference.
    pub cool_exception: bool,
    /// Hottest pixel of the region, °C.
    pub max_c: f64,
    /// Mean over the region, °C.
    pub mean_c: f64,
    /// Hottest pixel, `[x, y]`.
    pub max_at: [u32; 2],
    /// Bounding box, `[x, y, w, h]`.
    pub bbox: [u32; 4],
    /// Region size, pixels.
    pub area_px: u32,
    /// False when an earlier upload already stored it.
    pub new: bool,
}

/// One line of the streamed answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
enum ProgressLine<'a> {
    File(&'a UploadedFile),
    Summary(&'a UploadResponse),
    Error(ErrorDetail),
}

impl ProgressLine<'_> {
    fn to_bytes(&self) -> Bytes {
        let mut line = serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec());
        line.push(b'\n');
        Bytes::from(line)
    }
}

/// Analyses uploaded FLIR files into findings (see the module documentation).
#[utoipa::path(
    post,
    path = "/api/v1/uploads",
    tag = "uploads",
    request_body(content = inline(UploadForm), content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "The form was valid: per-file results (each `ok` or `error`). With `Accept: application/x-ndjson`, one `{\"file\": …}` line per file, then `{\"summary\": …}` (or `{\"error\": …}` when the request failed half-way).",
            content(
                (UploadResponse = "application/json"),
                (String = "application/x-ndjson"),
            )),
        (status = 400, description = "A form field is missing, invalid or after the files; no file; more files than accepted", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Viewers may not upload", body = ErrorBody),
        (status = 404, description = "No such site, or no such asset in the site", body = ErrorBody),
        (status = 413, description = "The request is larger than http.max_upload_bytes", body = ErrorBody),
        (status = 415, description = "Not a multipart/form-data body", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn create_upload(
    State(s): State<ApiState>,
    p: Principal,
    req: Request,
) -> Result<Response, ApiError> {
    p.require(Role::Operator)?;
    let limit = s.max_upload_bytes;
    if content_length(req.headers()).is_some_and(|len| len > limit) {
        return Err(too_large(limit));
    }
    // One analysis slot for the whole upload, taken before its body is read.
    let slot = s.analysis_slot()?;
    let stream = wants_ndjson(req.headers());
    let body_limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let req = req.map(|body| Body::new(http_body_util::Limited::new(body, body_limit)));
    let mut multipart = Multipart::from_request(req, &()).await.map_err(|_| {
        ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "expected a multipart/form-data body (with a boundary)",
        )
    })?;
    let upload = Upload::begin(&s, &p, &mut multipart).await?;
    if !stream {
        let summary = upload.run(multipart, None).await?;
        return Ok(Json(summary).into_response());
    }
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes>::new(4);
    tokio::spawn(async move {
        let _slot = slot;
        let line = match upload.run(multipart, Some(&mut tx)).await {
            Ok(summary) => ProgressLine::Summary(&summary).to_bytes(),
            Err(err) => ProgressLine::Error(ErrorDetail {
                code: err.code,
                message: err.message,
                problems: err.problems,
            })
            .to_bytes(),
        };
        // The client may be gone; nothing else to tell it.
        let _ = tx.send_data(line).await;
    });
    let mut response = Body::new(body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON));
    Ok(response)
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn wants_ndjson(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case(NDJSON))
        })
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!(
            "the upload is larger than the {limit} bytes accepted (http.max_upload_bytes); send fewer files at a time"
        ),
    )
}

/// A multipart error as the API's error, naming the body limit when that was it.
fn multipart_error(err: MultipartError, limit: u64) -> ApiError {
    if err.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        too_large(limit)
    } else {
        ApiError::bad_request(format!("malformed multipart body: {}", err.body_text()))
    }
}

/// The form fields, checked.
#[derive(Debug, Clone)]
struct Form {
    site: String,
    asset: Option<String>,
    table: SeverityTable,
    reference: Option<ReferenceTemperature>,
    note: Option<String>,
}

/// The form fields as sent.
#[derive(Debug, Default)]
struct RawForm {
    site: Option<String>,
    asset: Option<String>,
    severity_table: Option<String>,
    reference_c: Option<String>,
    reference_kind: Option<String>,
    note: Option<String>,
}

impl RawForm {
    fn set(&mut self, name: &str, value: String) -> Result<(), ApiError> {
        let slot = match name {
            "site" => &mut self.site,
            "asset" => &mut self.asset,
            "severity_table" => &mut self.severity_table,
            "reference_c" => &mut self.reference_c,
            "reference_kind" => &mut self.reference_kind,
            "note" => &mut self.note,
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown form field {other:?} (expected site, asset, severity_table, reference_c, reference_kind, note, file)"
                )))
            }
        };
        if slot.is_some() {
            return Err(ApiError::bad_request(format!(
                "form field {name:?} given twice"
            )));
        }
        *slot = Some(value);
        Ok(())
    }

    /// Checks the fields; the site and asset must exist.
    async fn check(self, s: &ApiState) -> Result<Form, ApiError> {
        let non_empty =
            |v: Option<String>| v.map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let site = non_empty(self.site).ok_or_else(|| {
            ApiError::bad_request("the form needs a site field, before the files")
        })?;
        chitti_common::protocol::validate_id("site", &site)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        if s.store.site(&site).await?.is_none() {
            return Err(ApiError::not_found(format!("site {site}")));
        }
        let asset = non_empty(self.asset);
        if let Some(asset) = &asset {
            chitti_common::protocol::validate_id("asset", asset)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            if s.store.asset(&site, asset).await?.is_none() {
                return Err(ApiError::not_found(format!("asset {asset} in site {site}")));
            }
        }
        let table_id = non_empty(self.severity_table).unwrap_or_else(|| DEFAULT_TABLE.into());
        let catalog = SeverityCatalog::builtin();
        let table = catalog.get(&table_id).cloned().ok_or_else(|| {
            ApiError::bad_request(format!(
                "unknown severity table {table_id:?}; known tables: {}",
                catalog.ids().collect::<Vec<_>>().join(", ")
            ))
        })?;
        let kind = match non_empty(self.reference_kind).as_deref() {
            None | Some("ambient") => ReferenceKind::Ambient,
            Some("similar") => ReferenceKind::SimilarComponent,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "reference_kind {other:?}: expected ambient or similar"
                )))
            }
        };
        let reference = match non_empty(self.reference_c) {
            None => None,
            Some(text) => {
                let c: f64 = text
                    .parse()
                    .ok()
                    .filter(|c: &f64| c.is_finite() && (-273.15..=5000.0).contains(c))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "reference_c {text:?} is not a temperature in °C"
                        ))
                    })?;
                Some(ReferenceTemperature {
                    celsius: c,
                    kind,
                    source: FORM_REFERENCE_SOURCE.into(),
                })
            }
        };
        if table.basis == SeverityBasis::OverSimilar
            && reference.as_ref().map(|r| r.kind) != Some(ReferenceKind::SimilarComponent)
        {
            return Err(ApiError::bad_request(format!(
                "severity table {} compares against a similar component: give reference_c and reference_kind=similar",
                table.id
            )));
        }
        let note = self.note.filter(|n| !n.trim().is_empty());
        Ok(Form {
            site,
            asset,
            table,
            reference,
            note,
        })
    }
}

/// Reads a text field, at most `max` bytes.
async fn read_text(
    mut field: Field<'_>,
    name: &str,
    max: usize,
    limit: u64,
) -> Result<String, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e, limit))? {
        if bytes.len() + chunk.len() > max {
            return Err(ApiError::bad_request(format!(
                "form field {name:?} is longer than {max} bytes"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes)
        .map_err(|_| ApiError::bad_request(format!("form field {name:?} is not UTF-8")))
}

/// A file part as received.
struct ReceivedFile {
    name: String,
    size: u64,
    /// The bytes, or `None` when the file was larger than accepted (it was drained).
    bytes: Option<Bytes>,
}

/// Reads a file part, keeping at most `max_bytes` (a larger one is drained and
/// reported by size).
async fn read_file(
    mut field: Field<'_>,
    number: usize,
    max_bytes: u64,
    limit: u64,
) -> Result<ReceivedFile, ApiError> {
    let name = display_name(field.file_name(), number);
    let mut bytes: Option<Vec<u8>> = Some(Vec::new());
    let mut size = 0u64;
    while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e, limit))? {
        size += chunk.len() as u64;
        if size > max_bytes {
            bytes = None;
        }
        if let Some(b) = &mut bytes {
            b.extend_from_slice(&chunk);
        }
    }
    Ok(ReceivedFile {
        name,
        size,
        bytes: bytes.map(Bytes::from),
    })
}

/// The client's file name without any path, printable, at most 255 characters.
fn display_name(file_name: Option<&str>, number: usize) -> String {
    let base = file_name
        .map(|n| n.rsplit(['/', '\\']).next().unwrap_or(n))
        .unwrap_or_default();
    let clean: String = base.chars().filter(|c| !c.is_control()).take(255).collect();
    if clean.trim().is_empty() {
        format!("file {}", number + 1)
    } else {
        clean
    }
}

/// An upload in progress.
struct Upload {
    s: ApiState,
    p: Principal,
    id: Uuid,
    form: Form,
    first: Option<ReceivedFile>,
    files: Vec<UploadedFile>,
}

impl Upload {
    /// Reads the form fields up to the first file, checks them, and reads that file.
    async fn begin(
        s: &ApiState,
        p: &Principal,
        multipart: &mut Multipart,
    ) -> Result<Self, ApiError> {
        let limit = s.max_upload_bytes;
        let mut raw = RawForm::default();
        let mut first = None;
        let mut form = None;
        while let Some(field) = multipart
            .next_field()
            .await
            .map_err(|e| multipart_error(e, limit))?
        {
            let name = field.name().unwrap_or_default().to_string();
            if name == "file" {
                form = Some(std::mem::take(&mut raw).check(s).await?);
                first = Some(read_file(field, 0, s.evidence.max_bytes(), limit).await?);
                break;
            }
            let max = if name == "note" {
                MAX_NOTE_BYTES
            } else {
                MAX_FIELD_BYTES
            };
            let value = read_text(field, &name, max, limit).await?;
            raw.set(&name, value)?;
        }
        let form = match form {
            Some(f) => f,
            None => raw.check(s).await?,
        };
        if first.is_none() {
            return Err(ApiError::bad_request(
                "no file: send one or more file parts after the form fields",
            ));
        }
        Ok(Self {
            s: s.clone(),
            p: p.clone(),
            id: Uuid::now_v7(),
            form,
            first,
            files: Vec::new(),
        })
    }

    /// Analyses every file, reporting each to `progress` as it finishes; then writes
    /// the audit entry (also after a failure half-way).
    async fn run(
        mut self,
        mut multipart: Multipart,
        mut progress: Option<&mut http_body_util::channel::Sender<Bytes>>,
    ) -> Result<UploadResponse, ApiError> {
        let result = self.receive(&mut multipart, &mut progress).await;
        let audited = self.audit(result.as_ref().err()).await;
        let (findings, new_findings) = self.counts();
        tracing::info!(
            upload = %self.id,
            site = %self.form.site,
            actor = %self.p.actor(),
            files = self.files.len(),
            findings,
            new_findings,
            failed = ?result.as_ref().err().map(|e| &e.message),
            "upload analysed"
        );
        result?;
        audited?;
        Ok(self.into_summary())
    }

    async fn receive(
        &mut self,
        multipart: &mut Multipart,
        progress: &mut Option<&mut http_body_util::channel::Sender<Bytes>>,
    ) -> Result<(), ApiError> {
        let limit = self.s.max_upload_bytes;
        let mut next = self.first.take();
        loop {
            let Some(file) = next.take() else {
                let Some(field) = multipart
                    .next_field()
                    .await
                    .map_err(|e| multipart_error(e, limit))?
                else {
                    return Ok(());
                };
                let name = field.name().unwrap_or_default().to_string();
                if name != "file" {
                    return Err(ApiError::bad_request(format!(
                        "form field {name:?} after the first file: send the form fields before the files"
                    )));
                }
                if self.files.len() >= MAX_FILES {
                    return Err(ApiError::bad_request(format!(
                        "more than {MAX_FILES} files in one upload (the first {MAX_FILES} were analysed and stored); send the rest in another"
                    )));
                }
                let number = self.files.len();
                next = Some(read_file(field, number, self.s.evidence.max_bytes(), limit).await?);
                continue;
            };
            let result = self.process(file).await;
            if let Some(tx) = progress.as_deref_mut() {
                // A client that stopped reading still gets its files analysed.
                let _ = tx.send_data(ProgressLine::File(&result).to_bytes()).await;
            }
            self.files.push(result);
        }
    }

    /// Analyses one file and stores its evidence and findings.
    async fn process(&self, file: ReceivedFile) -> UploadedFile {
        let mut out = UploadedFile {
            name: file.name,
            size: file.size,
            sha256: None,
            status: FileStatus::Error,
            container: None,
            camera: None,
            frames: None,
            frame: None,
            captured_at: None,
            max_c: None,
            findings: Vec::new(),
            warnings: Vec::new(),
            error: None,
        };
        let Some(bytes) = file.bytes else {
            out.error = Some(detail(
                ErrorCode::PayloadTooLarge,
                format!(
                    "the file is {} bytes, more than the {} bytes accepted per file (evidence.max_bytes)",
                    file.size,
                    self.s.evidence.max_bytes()
                ),
            ));
            return out;
        };
        let options = InspectionOptions {
            table: self.form.table.clone(),
            analysis: AnalysisOptions {
                reference: self.form.reference.clone(),
                ..AnalysisOptions::default()
            },
            limits: self.s.parse_limits,
        };
        let analysed = {
            let bytes = bytes.clone();
            tokio::task::spawn_blocking(move || {
                let sha = chitti_common::inspection::sha256_hex(&bytes);
                (sha, inspect_file(&bytes, &options))
            })
            .await
        };
        let (sha, inspection) = match analysed {
            Ok(v) => v,
            Err(err) => {
                tracing::error!(upload = %self.id, file = %out.name, %err, "analysis panicked");
                out.error = Some(detail(ErrorCode::Internal, "internal error"));
                return out;
            }
        };
        out.sha256 = Some(sha.clone());
        let inspection = match inspection {
            Ok(i) => i,
            Err(err) => {
                out.error = Some(inspection_error(&err));
                return out;
            }
        };
        let Some(frame) = inspection.hottest_frame() else {
            out.error = Some(inspection_error(&InspectionError::NoFrames));
            return out;
        };
        let now = Utc::now();
        let camera = inspection
            .camera
            .camera_id()
            .unwrap_or_else(|| HANDHELD_CAMERA.to_string());
        let origin = chitti_common::inspection::FindingOrigin {
            site: self.form.site.clone(),
            gateway: UPLOAD_GATEWAY.to_string(),
            camera: camera.clone(),
            asset: self.form.asset.clone(),
            preset: None,
            source: FindingSource::Upload,
            captured_at: now.fixed_offset(),
            observed_at: now,
            model: None,
        };
        let scope = format!("upload/{}/{UPLOAD_GATEWAY}/{camera}", self.form.site);
        let findings = frame.still_findings(
            &origin,
            &scope,
            &sha,
            Some(EvidenceRef {
                sha256: sha.clone(),
            }),
        );
        out.container = Some(inspection.kind);
        out.camera = Some(camera);
        out.frames = Some(inspection.frames.len());
        out.frame = Some(frame.index);
        out.captured_at = frame.captured_at;
        out.max_c = Some(chitti_common::inspection::round_millidegree(
            frame.stats.max_c,
        ));
        out.warnings = inspection
            .frames
            .iter()
            .flat_map(|f| f.warnings.iter().cloned())
            .collect();
        if frame.saturated_px > 0 {
            out.warnings.push(format!(
                "{} pixel(s) of frame {} at or above the camera's saturation limit: their true temperature may be higher",
                frame.saturated_px, frame.index
            ));
        }
        // Evidence first: a stored finding never names a missing file.
        if let Err(err) = self.store_evidence(&sha, bytes, now).await {
            out.error = Some(err);
            return out;
        }
        let new = match self.store_findings(&findings, now, &out.name, &sha).await {
            Ok(new) => new,
            Err(err) => {
                out.error = Some(err);
                return out;
            }
        };
        out.findings = findings
            .iter()
            .map(|f| short(f, new.contains(&f.id)))
            .collect();
        out.status = FileStatus::Ok;
        out
    }

    async fn store_evidence(
        &self,
        sha: &str,
        bytes: Bytes,
        now: DateTime<Utc>,
    ) -> Result<(), ErrorDetail> {
        let size = bytes.len() as u64;
        let (_, kind) = self.s.evidence.put(sha, bytes).await.map_err(|err| {
            tracing::error!(upload = %self.id, sha256 = sha, %err, "evidence not stored");
            match err {
                crate::evidence::EvidenceError::TooLarge { .. } => {
                    detail(ErrorCode::PayloadTooLarge, err.to_string())
                }
                crate::evidence::EvidenceError::UnknownContent(_) => {
                    detail(ErrorCode::UnsupportedMediaType, err.to_string())
                }
                _ => detail(
                    ErrorCode::Unavailable,
                    "the evidence store is unavailable; try again",
                ),
            }
        })?;
        // The same location string as a gateway's upload records.
        let location = self
            .s
            .evidence
            .location_of(sha)
            .map_err(|e| detail(ErrorCode::Internal, format!("evidence: {e}")))?;
        self.s
            .store
            .record_evidence(&EvidenceRecord {
                sha256: sha.to_string(),
                size,
                content_type: kind.content_type().to_string(),
                location,
                created_at: now,
            })
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// Stores one file's findings with their `upload.file` audit record (one
    /// transaction: a crash later in the upload leaves no finding unrecorded) and names
    /// the alerts they touched; returns the ids stored now.
    async fn store_findings(
        &self,
        findings: &[Finding],
        now: DateTime<Utc>,
        file: &str,
        sha256: &str,
    ) -> Result<HashSet<Uuid>, ErrorDetail> {
        if findings.is_empty() {
            return Ok(HashSet::new());
        }
        let rows: Vec<IngestedFinding> = findings
            .iter()
            .map(|f| IngestedFinding {
                finding: f.clone(),
                received_at: now,
                batch_id: self.id,
            })
            .collect();
        let record = crate::store::AuditEvent {
            at: now,
            actor: self.p.actor(),
            action: "upload.file".into(),
            target: self.form.site.clone(),
            from_address: self.p.from.clone(),
            detail: serde_json::json!({
                "upload_id": self.id,
                "file": file,
                "sha256": sha256,
                "asset": self.form.asset,
                "findings": findings.iter().map(|f| f.id).collect::<Vec<_>>(),
            }),
        };
        let report = self
            .s
            .store
            .insert_findings_audited(&rows, &record)
            .await
            .map_err(store_error)?;
        self.s.live.alerts_changed(report.alerts);
        Ok(report.inserted.into_iter().collect())
    }

    async fn audit(&self, failure: Option<&ApiError>) -> Result<(), ApiError> {
        let (findings, new_findings) = self.counts();
        let ok = self
            .files
            .iter()
            .filter(|f| f.status == FileStatus::Ok)
            .count();
        super::audit(
            &self.s,
            &self.p,
            "upload.create",
            &self.form.site,
            serde_json::json!({
                "upload_id": self.id,
                "asset": self.form.asset,
                "severity_table": self.form.table.id,
                "files": self.files.len(),
                "files_ok": ok,
                "files_failed": self.files.len() - ok,
                "findings": findings,
                "new_findings": new_findings,
                "note": self.form.note,
                "failed": failure.map(|e| &e.message),
            }),
        )
        .await
    }

    /// Findings of all files so far, and how many of them are new.
    fn counts(&self) -> (usize, usize) {
        let all = self.files.iter().flat_map(|f| &f.findings);
        (all.clone().count(), all.filter(|f| f.new).count())
    }

    fn into_summary(self) -> UploadResponse {
        let (findings, new_findings) = self.counts();
        UploadResponse {
            upload_id: self.id,
            site: self.form.site,
            asset: self.form.asset,
            severity_table: self.form.table.id,
            files: self.files,
            findings,
            new_findings,
        }
    }
}

fn short(f: &Finding, new: bool) -> UploadedFinding {
    let h = &f.hotspot;
    UploadedFinding {
        id: f.id,
        track_id: f.track.id,
        severity: f.severity.level,
        level_name: f.severity.level_name.clone(),
        action: f.severity.action.clone(),
        cool_exception: f.severity.cool_exception,
        max_c: h.max_c,
        mean_c: h.mean_c,
        max_at: [h.max_at.x, h.max_at.y],
        bbox: [h.bbox.x, h.bbox.y, h.bbox.w, h.bbox.h],
        area_px: h.area_px,
        new,
    }
}

fn detail(code: ErrorCode, message: impl Into<String>) -> ErrorDetail {
    ErrorDetail {
        code,
        message: message.into(),
        problems: Vec::new(),
    }
}

/// A file's analysis error: not FLIR at all (415), or a damaged FLIR file (400).
fn inspection_error(err: &InspectionError) -> ErrorDetail {
    let code = if err.is_not_flir() {
        ErrorCode::UnsupportedMediaType
    } else {
        ErrorCode::BadRequest
    };
    detail(code, err.to_string())
}

/// A store error as a per-file error, with the API's mapping (no SQL to the client).
fn store_error(err: crate::store::StoreError) -> ErrorDetail {
    let api = ApiError::from(err);
    detail(api.code, api.message)
}
