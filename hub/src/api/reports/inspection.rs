//! The PDF inspection report of a site and a period: which tracks, which finding
//! shows each, and the handler; the layout is `pdf`, the images come from `visual`.
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

use crate::api::auth::Principal;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::evidence::BinaryBody;
use crate::api::{ApiQuery, ApiState};
use crate::store::{AlertQuery, FindingQuery, Role, MAX_PAGE_LIMIT};
use crate::store::{AlertStore, IngestStore, SiteStore};
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use chitti_common::finding::Finding;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use utoipa::IntoParams;
use uuid::Uuid;

use super::pdf::{write_pdf, Cover};
use super::visual::evidence_images;
use super::{internal, rfc3339};

/// Most track pages in one inspection report.
pub const MAX_REPORT_TRACKS: usize = 200;
/// Most findings one inspection report reads.
pub const MAX_REPORT_SCANNED_FINDINGS: usize = 50_000;
/// Most alerts one inspection report reads to find its tracks' status.
pub const MAX_REPORT_SCANNED_ALERTS: usize = 50_000;
/// Most bytes of images embedded in one inspection report.
pub const MAX_REPORT_IMAGE_BYTES: usize = 256 << 20;

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
pub(super) struct TrackPage {
    pub(super) worst: Finding,
    pub(super) findings_in_period: u64,
    pub(super) status: Option<String>,
    pub(super) alert_id: Option<Uuid>,
}

/// A visual JPEG, ready to embed: the bytes, width, height, colour components.
pub(super) type Visual = (Vec<u8>, u32, u32, u8);

/// Images of one track page, ready to embed.
#[derive(Default)]
pub(super) struct PageImages {
    /// Flate-compressed 8-bit RGB, width, height.
    pub(super) thermogram: Option<(Vec<u8>, u32, u32)>,
    /// The visual image (an index into the report's visual images, one per evidence
    /// file, embedded once however many pages show it).
    pub(super) visual: Option<usize>,
    /// What could not be shown, and why.
    pub(super) notes: Vec<String>,
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
pub(super) async fn inspection_pdf(
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
        let e = by_level.entry(t.worst.severity.level).or_insert_with(|| {
            let sev = &t.worst.severity;
            let name = if sev.level == 0 && sev.cool_exception {
                crate::dashboard::layout::COOL_EXCEPTION_NAME.to_string()
            } else {
                sev.level_name.clone()
            };
            (name, 0)
        });
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
