//! Evidence: the radiometric frames behind findings, uploaded by gateways, and what a
//! viewer makes of them — the original file, a false-colour thermogram and the °C grid.
//!
//! | endpoint | who |
//! |---|---|
//! | `PUT /api/v1/evidence/{sha256}` | a gateway, by its signature (below) |
//! | `GET /api/v1/evidence/{sha256}` | viewer |
//! | `GET /api/v1/findings/{id}/thermogram.png?palette=&min_c=&max_c=&overlays=&scale=&scale_bar=` | viewer |
//! | `GET /api/v1/findings/{id}/temperatures` (JSON, or binary with `Accept: application/octet-stream`) | viewer |
//!
//! # Gateway uploads
//!
//! A gateway authenticates a PUT with the Ed25519 key it signs its MQTT finding
//! batches with (the hub has the public key from enrolment), not with a password: one
//! signature check per upload, no argon2. The request carries
//!
//! - `X-Chitti-Gateway: {site}/{gateway}`
//! - `X-Chitti-Signature: <hex Ed25519 signature>` over
//!   `"chitti/v1/evidence" 0x00 site 0x00 gateway 0x00 sha256_hex`
//!   ([`chitti_common::signing::evidence_message`]).
//!
//! Unknown gateway, missing headers or a signature that does not verify: 401; a
//! revoked gateway with a valid signature: 403. The signature names the blob but not
//! the bytes; the bytes are bound by their hash, which must equal the path's (400).
//! No nonce or clock is signed, deliberately: a blob is content-addressed and the PUT
//! idempotent, so replaying a captured signature can only upload the same bytes again.
//!
//! The body is checked before anything is written: at most the evidence store's
//! `max_bytes` (413; this route lifts the API's global 1 MiB body limit and applies
//! its own), a known radiometric container by magic number (415). The first upload
//! answers 201, a repeat 200, both with the evidence's metadata; the agent treats 200,
//! 201 and 204 as stored. Uploads are logged at debug level, not audited (a gateway
//! sends many).
//!
//! # Temperatures
//!
//! The hub never copies the agent's numbers: it recomputes every temperature from the
//! evidence with `chitti_common` ([`temperature_image`]) — a 16-bit PNG of raw counts
//! with its `chitti-radiometry` parameters (stream evidence), or the FLIR file itself
//! (R-JPEG, FFF) with the file's own parameters — and then the finding's measurement
//! conditions (emissivity, distance, reflected and atmospheric temperature, humidity),
//! so the grid is the one the finding was judged on. Decoding, conversion, rendering
//! and encoding run on blocking threads.
//!
//! # The binary temperature grid
//!
//! `GET /api/v1/findings/{id}/temperatures` with `Accept: application/octet-stream`
//! answers ([`encode_grid`]), all little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `CHTG` |
//! | 4 | 4 | u32 format version, `1` |
//! | 8 | 4 | u32 width |
//! | 12 | 4 | u32 height |
//! | 16 | 4 × width × height | f32 °C, row-major from the top-left, unrounded |
//!
//! The values start at a 4-byte-aligned offset, so a browser can view them directly as
//! `new Float32Array(buffer, 16, width * height)`.

use super::auth::Principal;
use super::error::{ApiError, ErrorBody, ErrorCode};
use super::{ApiQuery, ApiState};
use crate::evidence::{validate_sha256, EvidenceError, EvidenceKind, PutOutcome};
use crate::store::{parse_gateway_username, EvidenceRecord, Role};
use crate::store::{EvidenceIndex, FleetStore, IngestStore};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::{Bytes, BytesMut};
use chitti_common::finding::{Finding, Measurement};
use chitti_common::image::TemperatureImage;
use chitti_common::radiometry::{frame_to_celsius, ParamOverrides, RadiometricParams};
use chitti_common::render::{Overlay, Palette, RenderError, RenderOptions, TemperatureSpan};
use chitti_common::signing::{verify_evidence, GATEWAY_HEADER, SIGNATURE_HEADER};
use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    let (schemas, paths, put) = routes!(put_evidence);
    // The global 1 MiB limit is for JSON; evidence is bounded by the evidence store's
    // own (configured) limit, which [`EvidenceBody`] applies while reading.
    let put = put.layer(DefaultBodyLimit::disable());
    OpenApiRouter::new()
        .routes((schemas, paths, put))
        .routes(routes!(get_evidence))
        .routes(routes!(thermogram))
        .routes(routes!(temperatures))
}

/// Version of the binary temperature grid (see the module documentation).
pub const GRID_VERSION: u32 = 1;
/// Magic number of the binary temperature grid.
pub const GRID_MAGIC: &[u8; 4] = b"CHTG";
/// Bytes before the values in the binary temperature grid.
pub const GRID_HEADER_LEN: usize = 16;
/// Media type of the binary temperature grid.
pub const GRID_CONTENT_TYPE: &str = "application/octet-stream";

// ----------------------------------------------------------------------------------
// Temperatures from evidence

/// Temperatures recomputed from an evidence blob.
#[derive(Debug, Clone)]
pub struct EvidenceTemperatures {
    /// What the blob is.
    pub kind: EvidenceKind,
    /// The °C grid.
    pub image: TemperatureImage,
    /// The parameters the grid was computed with (the evidence's, with the overrides).
    pub params: RadiometricParams,
}

/// Evidence that no temperatures can be read from.
pub type TemperatureError = chitti_common::evidence::ReadEvidenceError;

/// The temperatures of an evidence blob, recomputed with `chitti_common`: the agent's
/// 16-bit PNG (raw counts and the parameters in its `chitti-radiometry` chunk) or a
/// FLIR file (R-JPEG, FFF; the first frame), with `overrides` applied to the
/// evidence's own parameters (`ParamOverrides::default()` keeps them). For
/// temperature-linear PNG evidence (`kelvin_per_count`) the camera already applied
/// its object parameters, so `overrides` do not change the values. The evidence is
/// read by [`chitti_common::evidence::read_evidence`], as `chitti-agent inspect` reads it.
///
/// CPU-bound (decoding and a per-pixel conversion): call it from a blocking thread.
pub fn temperature_image(
    bytes: &[u8],
    overrides: &ParamOverrides,
) -> Result<EvidenceTemperatures, TemperatureError> {
    let (kind, frame) = chitti_common::evidence::read_evidence(bytes)?;
    let converter = frame.converter(overrides)?;
    let (image, _) = frame_to_celsius(&converter, &frame.raw);
    Ok(EvidenceTemperatures {
        kind,
        image,
        params: *converter.params(),
    })
}

/// A finding's measurement conditions as overrides of its evidence's parameters.
pub fn measurement_overrides(m: &Measurement) -> ParamOverrides {
    ParamOverrides {
        emissivity: Some(m.emissivity),
        object_distance_m: Some(m.distance_m),
        reflected_c: Some(m.reflected_c),
        atmosphere_c: Some(m.atmosphere_c),
        relative_humidity: Some(m.relative_humidity),
    }
}

/// The binary temperature grid (layout in the module documentation).
pub fn encode_grid(image: &TemperatureImage) -> Vec<u8> {
    let mut out = Vec::with_capacity(GRID_HEADER_LEN + image.celsius().len() * 4);
    out.extend_from_slice(GRID_MAGIC);
    for v in [GRID_VERSION, image.width(), image.height()] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for c in image.celsius() {
        out.extend_from_slice(&c.to_le_bytes());
    }
    out
}

/// Rounds to 0.01 (what the JSON grid carries).
fn centi(c: f32) -> f32 {
    (c * 100.0).round() / 100.0
}

// ----------------------------------------------------------------------------------
// Gateway authentication and the upload body

/// A gateway whose signature over the path's hash verified (see the module docs).
#[derive(Debug, Clone)]
pub struct SignedUpload {
    /// Site of the gateway.
    pub site: String,
    /// Gateway id.
    pub gateway: String,
    /// The blob's name, validated.
    pub sha256: String,
}

fn gateway_refused() -> ApiError {
    // One message for an unknown gateway and a bad signature: nothing to enumerate.
    ApiError::new(
        ErrorCode::Unauthorized,
        "evidence uploads need X-Chitti-Gateway and a valid X-Chitti-Signature of an enrolled gateway",
    )
}

impl FromRequestParts<ApiState> for SignedUpload {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &ApiState) -> Result<Self, ApiError> {
        let Path(sha256) = Path::<String>::from_request_parts(parts, s)
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        validate_sha256(&sha256).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(claimed), Some(signature)) = (header(GATEWAY_HEADER), header(SIGNATURE_HEADER))
        else {
            return Err(gateway_refused());
        };
        let (site, gateway) = parse_gateway_username(claimed.trim()).ok_or_else(gateway_refused)?;
        let record = s
            .store
            .gateway(site, gateway)
            .await?
            .ok_or_else(gateway_refused)?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&record.public_key)
            .map_err(|_| gateway_refused())?;
        if let Err(err) = verify_evidence(site, gateway, &sha256, signature, &key) {
            tracing::warn!(site, gateway, sha256 = %sha256, %err, "evidence upload refused");
            return Err(gateway_refused());
        }
        // Only the key holder learns that the gateway is revoked.
        if record.is_revoked() {
            tracing::warn!(site, gateway, "evidence upload from a revoked gateway");
            return Err(ApiError::forbidden(format!(
                "gateway {site}/{gateway} is revoked"
            )));
        }
        Ok(Self {
            site: record.site,
            gateway: record.gateway,
            sha256,
        })
    }
}

/// A request body of at most the evidence store's `max_bytes`, read frame by frame so
/// that a larger one is refused (413) without being buffered; a `Content-Length`
/// over the limit is refused before any of it is read.
pub struct EvidenceBody(pub Bytes);

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("evidence is larger than the {limit} bytes accepted"),
    )
}

impl FromRequest<ApiState> for EvidenceBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, s: &ApiState) -> Result<Self, ApiError> {
        use axum::body::HttpBody;
        let limit = s.evidence.max_bytes();
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(too_large(limit));
        }
        let mut body = req.into_body();
        let mut buf = BytesMut::with_capacity(declared.unwrap_or(0).min(limit) as usize);
        while let Some(frame) =
            std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
        {
            let frame =
                frame.map_err(|e| ApiError::bad_request(format!("cannot read the body: {e}")))?;
            if let Ok(data) = frame.into_data() {
                if (buf.len() + data.len()) as u64 > limit {
                    return Err(too_large(limit));
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(Self(buf.freeze()))
    }
}

/// The API error of an evidence-store failure (a backend failure is logged, and the
/// client told to retry).
pub(super) fn evidence_error(err: EvidenceError) -> ApiError {
    match err {
        EvidenceError::BadName(_) | EvidenceError::HashMismatch { .. } => {
            ApiError::bad_request(err.to_string())
        }
        EvidenceError::TooLarge { .. } => {
            ApiError::new(ErrorCode::PayloadTooLarge, err.to_string())
        }
        EvidenceError::UnknownContent(_) => {
            ApiError::new(ErrorCode::UnsupportedMediaType, err.to_string())
        }
        EvidenceError::Backend(detail) => {
            tracing::error!(err = %detail, "evidence storage failed");
            ApiError::new(
                ErrorCode::Unavailable,
                "evidence storage is unavailable; try again",
            )
        }
    }
}

fn internal() -> ApiError {
    ApiError::new(ErrorCode::Internal, "internal error")
}

// ----------------------------------------------------------------------------------
// Handlers

/// Bytes (the schema of binary bodies; only for the API description).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct BinaryBody(pub Vec<u8>);

/// An evidence blob's metadata.
#[derive(Debug, Serialize, ToSchema)]
pub struct EvidenceView {
    /// Lowercase hex SHA-256 of the bytes: its name.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Media type (`image/png`, `image/jpeg`, `application/x-flir-fff`).
    pub content_type: String,
    /// When the hub first recorded it.
    pub created_at: DateTime<Utc>,
}

impl From<EvidenceRecord> for EvidenceView {
    fn from(r: EvidenceRecord) -> Self {
        Self {
            sha256: r.sha256,
            size: r.size,
            content_type: r.content_type,
            created_at: r.created_at,
        }
    }
}

/// Stores an evidence blob uploaded by a gateway.
#[utoipa::path(
    put,
    path = "/api/v1/evidence/{sha256}",
    tag = "evidence",
    description = "For gateways. Authenticated by `X-Chitti-Gateway: {site}/{gateway}` and `X-Chitti-Signature`: the hex Ed25519 signature, with the gateway's enrolled key, of `\"chitti/v1/evidence\" 0x00 site 0x00 gateway 0x00 sha256`. Idempotent (content-addressed): a replayed signature can only upload the same bytes again.",
    params(
        ("sha256" = String, Path, pattern = "^[0-9a-f]{64}$", description = "Lowercase hex SHA-256 of the body"),
        ("X-Chitti-Gateway" = String, Header, description = "`{site}/{gateway}` of the uploading gateway"),
        ("X-Chitti-Signature" = String, Header, description = "Hex Ed25519 signature of the evidence message"),
    ),
    request_body(content = BinaryBody, content_type = "application/octet-stream", description = "The evidence: a FLIR R-JPEG, FFF/SEQ/CSQ, or the agent's 16-bit radiometric PNG"),
    responses(
        (status = 201, description = "Stored now", body = EvidenceView),
        (status = 200, description = "Already stored", body = EvidenceView),
        (status = 400, description = "Malformed hash, or the body does not hash to it", body = ErrorBody),
        (status = 401, description = "Missing headers, unknown gateway or bad signature", body = ErrorBody),
        (status = 403, description = "The gateway is revoked", body = ErrorBody),
        (status = 413, description = "Larger than the evidence limit", body = ErrorBody),
        (status = 415, description = "Not a radiometric file (magic number)", body = ErrorBody),
        (status = 503, description = "Storage or database unavailable", body = ErrorBody),
    )
)]
async fn put_evidence(
    State(s): State<ApiState>,
    upload: SignedUpload,
    EvidenceBody(bytes): EvidenceBody,
) -> Result<Response, ApiError> {
    let size = bytes.len() as u64;
    let sha = upload.sha256.clone();
    let (outcome, kind) = s.evidence.put(&sha, bytes).await.map_err(evidence_error)?;
    let ours = EvidenceRecord {
        sha256: sha.clone(),
        size,
        content_type: kind.content_type().to_string(),
        location: s.evidence.location_of(&sha).map_err(evidence_error)?,
        // The store keeps microseconds: answer what a later read gives.
        created_at: Utc::now().trunc_subsecs(6),
    };
    let newly_recorded = s.store.record_evidence(&ours).await?;
    let record = if newly_recorded {
        ours
    } else {
        s.store.evidence(&sha).await?.unwrap_or(ours)
    };
    let status = if outcome == PutOutcome::Stored || newly_recorded {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    tracing::debug!(
        site = %upload.site,
        gateway = %upload.gateway,
        sha256 = %sha,
        bytes = size,
        status = status.as_u16(),
        "evidence upload"
    );
    let location =
        HeaderValue::from_str(&format!("/api/v1/evidence/{sha}")).map_err(|_| internal())?;
    Ok((
        status,
        [(header::LOCATION, location)],
        Json(EvidenceView::from(record)),
    )
        .into_response())
}

/// The original bytes of an evidence blob.
#[utoipa::path(
    get,
    path = "/api/v1/evidence/{sha256}",
    tag = "evidence",
    params(("sha256" = String, Path, pattern = "^[0-9a-f]{64}$", description = "Lowercase hex SHA-256 of the blob")),
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "The bytes as uploaded", content(
            (BinaryBody = "image/jpeg"),
            (BinaryBody = "image/png"),
            (BinaryBody = "application/x-flir-fff"),
        )),
        (status = 400, description = "Malformed hash", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "Unknown evidence", body = ErrorBody),
    )
)]
async fn get_evidence(
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
    let kind = EvidenceKind::sniff(&bytes);
    let content_type = match s.store.evidence(&sha).await? {
        Some(r) => r.content_type,
        None => kind
            .map_or("application/octet-stream", EvidenceKind::content_type)
            .to_string(),
    };
    let (disposition, ext) = match kind {
        Some(EvidenceKind::Jpeg) => ("inline", "jpg"),
        Some(EvidenceKind::Png) => ("inline", "png"),
        Some(EvidenceKind::Fff) => ("attachment", "fff"),
        None => ("attachment", "bin"),
    };
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_str(&content_type).map_err(|_| internal())?,
        ),
        (
            header::CONTENT_DISPOSITION,
            HeaderValue::from_str(&format!("{disposition}; filename=\"{sha}.{ext}\""))
                .map_err(|_| internal())?,
        ),
        (
            header::ETAG,
            HeaderValue::from_str(&format!("\"{sha}\"")).map_err(|_| internal())?,
        ),
    ];
    Ok((headers, bytes).into_response())
}

fn palette_schema() -> utoipa::openapi::schema::Object {
    super::enum_schema(&["iron", "rainbow", "grey", "gray"], false, "The palette")
}

/// How to draw a thermogram.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ThermogramParams {
    /// `iron` (default), `rainbow` or `grey` (also `gray`).
    #[param(schema_with = palette_schema)]
    pub palette: Option<String>,
    /// °C drawn in the palette's cold end (default: the image's coldest pixel).
    pub min_c: Option<f32>,
    /// °C drawn in the palette's hot end (default: the image's hottest pixel).
    pub max_c: Option<f32>,
    /// Draw the hotspot box, the peak marker and the component box (default `true`).
    pub overlays: Option<bool>,
    /// Integer upscale factor 1..=8; 0 or absent chooses one (at least 480 px wide).
    #[param(maximum = 8)]
    pub scale: Option<u32>,
    /// Append the °C scale bar on the right (default `true`).
    pub scale_bar: Option<bool>,
}

/// A finding and the bytes of its evidence.
async fn finding_evidence(s: &ApiState, id: &str) -> Result<(Finding, Bytes), ApiError> {
    let id: Uuid = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("{id:?} is not a finding id (a UUID)")))?;
    let finding = s
        .store
        .finding(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("finding {id}")))?
        .finding;
    let sha = finding
        .evidence
        .as_ref()
        .map(|e| e.sha256.clone())
        .ok_or_else(|| ApiError::not_found(format!("evidence of finding {id} (it has none)")))?;
    let bytes = match s.evidence.get(&sha).await {
        Ok(Some(b)) => b,
        Ok(None) | Err(EvidenceError::BadName(_)) => {
            return Err(ApiError::not_found(format!(
                "evidence {sha} of finding {id} (not uploaded yet)"
            )))
        }
        Err(e) => return Err(evidence_error(e)),
    };
    Ok((finding, bytes))
}

fn temperature_error(finding: &Finding, err: TemperatureError) -> ApiError {
    ApiError::new(
        ErrorCode::UnsupportedMediaType,
        format!(
            "no temperatures in the evidence of finding {}: {err}",
            finding.id
        ),
    )
}

/// The boxes drawn on a finding's thermogram, those starting outside the image left out.
pub(crate) fn finding_overlays(f: &Finding, width: u32, height: u32) -> Vec<Overlay> {
    let mut overlays = Vec::new();
    if let Some(c) = &f.component {
        overlays.push(Overlay {
            rect: c.bbox,
            label: format!("{} {:.0}%", c.class, c.confidence * 100.0),
            level: 0,
        });
    }
    let level = f.severity.level;
    overlays.push(Overlay {
        rect: f.hotspot.bbox,
        label: format!("{:.1} °C L{level}", f.hotspot.max_c),
        level,
    });
    // The peak: a box around its one pixel.
    overlays.push(Overlay {
        rect: chitti_common::geometry::PixelRect {
            x: f.hotspot.max_at.x,
            y: f.hotspot.max_at.y,
            w: 1,
            h: 1,
        },
        label: String::new(),
        level,
    });
    let inside = |o: &Overlay| o.rect.x < width && o.rect.y < height;
    if !overlays.iter().all(inside) {
        tracing::warn!(finding = %f.id, width, height, "finding boxes lie outside its evidence; not drawn");
    }
    overlays.retain(inside);
    overlays
}

fn render_error(err: RenderError) -> ApiError {
    match err {
        RenderError::UnknownPalette { .. }
        | RenderError::InvalidSpan { .. }
        | RenderError::InvalidScale { .. }
        | RenderError::OutputTooLarge { .. } => ApiError::bad_request(err.to_string()),
        other => {
            tracing::error!(err = %other, "thermogram rendering failed");
            internal()
        }
    }
}

/// A finding's evidence as a false-colour PNG, with its boxes and a °C scale bar.
#[utoipa::path(
    get,
    path = "/api/v1/findings/{id}/thermogram.png",
    tag = "evidence",
    params(("id" = Uuid, Path, description = "Finding id"), ThermogramParams),
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "The thermogram (8-bit RGB PNG; the image is width × scale by height × scale, plus the scale bar on the right)", body = BinaryBody, content_type = "image/png"),
        (status = 400, description = "Invalid palette, span or scale", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "Unknown finding, or its evidence is missing", body = ErrorBody),
        (status = 415, description = "The evidence holds no temperatures", body = ErrorBody),
    )
)]
async fn thermogram(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ThermogramParams>,
) -> Result<Response, ApiError> {
    p.require(Role::Viewer)?;
    let palette: Palette = q
        .palette
        .as_deref()
        .unwrap_or("iron")
        .parse()
        .map_err(render_error)?;
    let (finding, bytes) = finding_evidence(&s, &id).await?;
    let _slot = s.analysis_slot()?;
    let png = tokio::task::spawn_blocking(move || {
        let t = temperature_image(&bytes, &measurement_overrides(&finding.measurement))
            .map_err(|e| temperature_error(&finding, e))?;
        let span = match (q.min_c, q.max_c) {
            (None, None) => None,
            (low, high) => {
                let auto = TemperatureSpan::auto(&t.image);
                Some(
                    TemperatureSpan::new(low.unwrap_or(auto.low_c), high.unwrap_or(auto.high_c))
                        .map_err(render_error)?,
                )
            }
        };
        let overlays = if q.overlays.unwrap_or(true) {
            finding_overlays(&finding, t.image.width(), t.image.height())
        } else {
            Vec::new()
        };
        let options = RenderOptions {
            palette,
            span,
            scale: q.scale.unwrap_or(chitti_common::render::AUTO_SCALE),
            scale_bar: q.scale_bar.unwrap_or(true),
        };
        let rgb =
            chitti_common::render::render(&t.image, &overlays, &options).map_err(render_error)?;
        chitti_common::render::encode_png(&rgb).map_err(render_error)
    })
    .await
    .map_err(|_| internal())??;
    Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
}

/// A finding's temperature grid.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TemperatureGrid {
    /// Columns.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// Always `celsius`.
    pub unit: String,
    /// Coldest value, °C (0.01).
    pub min_c: f32,
    /// Hottest value, °C (0.01).
    pub max_c: f32,
    /// The evidence the grid was computed from.
    pub evidence_sha256: String,
    /// `width × height` values in °C rounded to 0.01, row-major from the top-left.
    pub values: Vec<f32>,
}

/// True when the client asked for the binary grid.
fn wants_binary(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            range
                .split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case(GRID_CONTENT_TYPE))
        })
}

/// A finding's temperatures, recomputed on the hub from its evidence.
#[utoipa::path(
    get,
    path = "/api/v1/findings/{id}/temperatures",
    tag = "evidence",
    description = "Recomputed from the evidence with the finding's measurement conditions. JSON by default; with `Accept: application/octet-stream` a binary grid: `CHTG`, u32 LE version (1), u32 LE width, u32 LE height, then width × height f32 LE °C, row-major.",
    params(("id" = Uuid, Path, description = "Finding id")),
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "The grid", content(
            (TemperatureGrid = "application/json"),
            (BinaryBody = "application/octet-stream"),
        )),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the viewer role", body = ErrorBody),
        (status = 404, description = "Unknown finding, or its evidence is missing", body = ErrorBody),
        (status = 415, description = "The evidence holds no temperatures", body = ErrorBody),
    )
)]
async fn temperatures(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    p.require(Role::Viewer)?;
    let binary = wants_binary(&headers);
    let (finding, bytes) = finding_evidence(&s, &id).await?;
    let _slot = s.analysis_slot()?;
    let (content_type, body) = tokio::task::spawn_blocking(move || {
        let t = temperature_image(&bytes, &measurement_overrides(&finding.measurement))
            .map_err(|e| temperature_error(&finding, e))?;
        if binary {
            return Ok((GRID_CONTENT_TYPE, encode_grid(&t.image)));
        }
        let stats = t.image.stats();
        let grid = TemperatureGrid {
            width: t.image.width(),
            height: t.image.height(),
            unit: "celsius".to_string(),
            min_c: centi(stats.min_c as f32),
            max_c: centi(stats.max_c as f32),
            evidence_sha256: finding.evidence.map(|e| e.sha256).unwrap_or_default(),
            values: t.image.celsius().iter().copied().map(centi).collect(),
        };
        serde_json::to_vec(&grid)
            .map(|json| ("application/json", json))
            .map_err(|_| internal())
    })
    .await
    .map_err(|_| internal())??;
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::VARY, "accept"),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binary_grid_has_the_documented_layout() {
        let image = TemperatureImage::new(3, 2, vec![1.0, 2.5, -3.25, 4.0, 5.0, 6.125]).unwrap();
        let bytes = encode_grid(&image);
        assert_eq!(bytes.len(), GRID_HEADER_LEN + 6 * 4);
        assert_eq!(&bytes[..4], b"CHTG");
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap());
        assert_eq!((u32_at(4), u32_at(8), u32_at(12)), (1, 3, 2));
        let values: Vec<f32> = bytes[GRID_HEADER_LEN..]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(values, image.celsius());
    }

    #[test]
    fn accept_picks_the_binary_grid_only_when_asked() {
        let mut h = HeaderMap::new();
        assert!(!wants_binary(&h));
        h.insert(header::ACCEPT, "application/json".parse().unwrap());
        assert!(!wants_binary(&h));
        h.insert(
            header::ACCEPT,
            "text/html, Application/Octet-Stream;q=0.9".parse().unwrap(),
        );
        assert!(wants_binary(&h));
    }

    #[test]
    fn unknown_bytes_hold_no_temperatures() {
        let err = temperature_image(b"hello world", &ParamOverrides::default()).unwrap_err();
        assert!(matches!(err, TemperatureError::UnknownContent(_)), "{err}");
        let err = temperature_image(b"\x89PNG\r\n\x1a\nnot really", &ParamOverrides::default())
            .unwrap_err();
        assert!(matches!(err, TemperatureError::Png(_)), "{err}");
        assert_eq!(centi(21.456), 21.46);
    }
}
