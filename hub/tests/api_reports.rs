//! The report endpoints at router level, on SQLite and Postgres: the alert and finding
//! CSV exports (parsed back with the `csv` crate: columns, filters, every row past one
//! store page, quoting of commas and quotes), the PDF inspection report (parsed with
//! `lopdf`: a cover and one page per track, the site name, each track's max °C and
//! severity name in the text, the thermograms and visual images embedded as image
//! XObjects, the period and the cap respected) and the visual JPEG inside FLIR evidence.

mod support;

use axum::http::StatusCode;
use chitti_common::evidence::{encode_radiometric_png, RadiometricPngMeta};
use chitti_common::finding::{EvidenceRef, Finding};
use chitti_common::geometry::{PixelPoint, PixelRect};
use chitti_common::inspection::sha256_hex;
use chitti_hub::api::reports::{jpeg_geometry, ALERT_COLUMNS, FINDING_COLUMNS, MAX_REPORT_TRACKS};
use chitti_hub::evidence::EvidenceStore;
use chitti_hub::store::prelude::*;
use chitti_hub::store::{
    AlertEventKind, NewAlertEvent, NewAsset, NewSite, NewStructure, SiteKind, StructureKind,
};
use chitti_test_support::read_fixture;
use std::sync::Arc;
use support::{at, ingested, Api, Reply, TestDb, Users};
use uuid::Uuid;

const SITE: &str = "north-yard";
const SITE_NAME: &str = "North Yard, \"Bay\" 3";
/// The registered asset (on structure `bay-3`) that the sample findings name.
const ASSET: &str = "bay3-breaker-b";
/// A component class with the characters CSV must quote.
const ODD_CLASS: &str = "bushing, \"HV\" side";

impl Api {
    /// The API with the viewer's session made directly (no argon2 in these tests), an
    /// evidence store, and `SITE` with a bay and its `ASSET`.
    async fn with_site(backend: &str) -> (Self, TestDb) {
        let (api, db) = Api::with(backend, Users::Sessions, |state| {
            state.with_evidence(Arc::new(EvidenceStore::in_memory(64 << 20)))
        })
        .await;
        let store = &api.store;
        store
            .add_site(&NewSite {
                id: SITE.into(),
                name: SITE_NAME.into(),
                kind: SiteKind::Substation,
            })
            .await
            .unwrap();
        store
            .add_structure(&NewStructure {
                site: SITE.into(),
                id: "bay-3".into(),
                name: "Bay 3".into(),
                kind: StructureKind::Bay,
            })
            .await
            .unwrap();
        store
            .add_asset(&NewAsset {
                site: SITE.into(),
                structure: Some("bay-3".into()),
                id: ASSET.into(),
                name: "Breaker B".into(),
                phase: None,
                component_class: Some("bushing".into()),
            })
            .await
            .unwrap();
        (api, db)
    }

    /// `GET uri` as the viewer, or signed out.
    async fn get_as_viewer(&self, uri: &str, signed_in: bool) -> Reply {
        let auth = signed_in.then_some(self.viewer.as_str());
        self.get(uri, auth, None).await
    }

    async fn put_evidence(&self, bytes: &[u8]) -> String {
        let name = sha256_hex(bytes);
        self.evidence
            .put(&name, bytes::Bytes::from(bytes.to_vec()))
            .await
            .unwrap();
        name
    }
}

/// The rows of a CSV answer, with its header checked.
fn csv_rows(r: &Reply, columns: &[&str]) -> Vec<Vec<String>> {
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.headers["content-type"], "text/csv; charset=utf-8");
    assert!(r.headers["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment; filename="));
    let mut reader = csv::Reader::from_reader(&r.bytes[..]);
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    assert_eq!(header, columns);
    reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

fn col(columns: &[&str], name: &str) -> usize {
    columns.iter().position(|c| *c == name).unwrap()
}

/// A finding of `track` whose boxes lie inside an 80 × 60 frame.
fn small_finding(track: Uuid, level: u8, name: &str, max_c: f64, ms: i64) -> Finding {
    let mut f = support::finding(track, level, max_c, ms);
    f.site = SITE.into();
    f.component = None;
    f.hotspot.bbox = PixelRect {
        x: 10,
        y: 10,
        w: 6,
        h: 5,
    };
    f.hotspot.max_at = PixelPoint { x: 12, y: 12 };
    f.severity.level_name = name.into();
    f.severity.action = format!("{name}: act on it");
    f
}

async fn csv_exports_respect_filters_and_quote(backend: &str) {
    let (api, _db) = Api::with_site(backend).await;
    let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let mut fa = small_finding(a, 3, "serious", 87.25, 0);
    fa.component = Some(chitti_common::finding::DetectedComponent {
        class: ODD_CLASS.into(),
        confidence: 0.9,
        bbox: fa.hotspot.bbox,
    });
    fa.severity.inputs.reference_c = Some(40.0);
    fa.severity.inputs.delta_c = Some(47.25);
    let fb = small_finding(b, 1, "minor", 45.5, 10);
    let mut fc = small_finding(c, 2, "intermediate", 61.0, 20);
    fc.site = "south-yard".into();
    api.store
        .insert_findings(&ingested(&[fa.clone(), fb, fc], at(0)))
        .await
        .unwrap();
    let alert_a = api
        .store
        .list_alerts(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|x| x.track_id == a)
        .unwrap();
    api.store
        .record_alert_event(&NewAlertEvent {
            alert_id: alert_a.id,
            kind: AlertEventKind::Assign,
            actor: "olga".into(),
            at: chrono::Utc::now(),
            from_address: None,
            note: None,
            detail: Some(serde_json::json!({ "assignee": "crew \"north\", 2" })),
        })
        .await
        .unwrap();

    let rows = csv_rows(
        &api.get_as_viewer("/api/v1/alerts/export.csv", true).await,
        ALERT_COLUMNS,
    );
    assert_eq!(rows.len(), 3);
    let c_ = |n| col(ALERT_COLUMNS, n);
    let row = rows
        .iter()
        .find(|r| r[c_("id")] == alert_a.id.to_string())
        .unwrap();
    assert_eq!(row[c_("site")], SITE);
    assert_eq!(row[c_("asset")], ASSET);
    assert_eq!(row[c_("component_class")], ODD_CLASS);
    assert_eq!(row[c_("structure")], "bay-3");
    assert_eq!(row[c_("level")], "3");
    assert_eq!(row[c_("status")], "open");
    assert_eq!(row[c_("max_c")], "87.25");
    assert_eq!(row[c_("reference_c")], "40");
    assert_eq!(row[c_("delta_c")], "47.25");
    assert_eq!(row[c_("severity_table")], "utility-absolute");
    assert_eq!(row[c_("assignee")], "crew \"north\", 2");
    assert_eq!(row[c_("gateway")], "gw-07");
    assert_eq!(row[c_("camera")], "cam-1");
    assert_eq!(row[c_("finding_count")], "1");
    assert_eq!(row[c_("link")], format!("/api/v1/alerts/{}", alert_a.id));
    assert_eq!(row[c_("cool_exception")], "false");
    // The raw text quotes the fields with commas and quotes, RFC 4180 style.
    let text = String::from_utf8(
        api.get_as_viewer("/api/v1/alerts/export.csv", true)
            .await
            .bytes,
    )
    .unwrap();
    assert!(text.contains("\"bushing, \"\"HV\"\" side\""), "{text}");

    // The list's filters apply.
    let rows = csv_rows(
        &api.get_as_viewer("/api/v1/alerts/export.csv?site=north-yard", true)
            .await,
        ALERT_COLUMNS,
    );
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r[c_("site")] == SITE));
    let rows = csv_rows(
        &api.get_as_viewer(
            "/api/v1/alerts/export.csv?min_level=2&sort=worst_level_desc",
            true,
        )
        .await,
        ALERT_COLUMNS,
    );
    let levels: Vec<&str> = rows.iter().map(|r| r[c_("level")].as_str()).collect();
    assert_eq!(levels, ["3", "2"]);
    let rows = csv_rows(
        &api.get_as_viewer("/api/v1/alerts/export.csv?status=resolved", true)
            .await,
        ALERT_COLUMNS,
    );
    assert!(rows.is_empty());
    // Invalid filters are the list's 400s; nobody signed in is 401.
    for bad in ["status=bogus", "sort=hot", "colour=red", "after=zzz"] {
        let r = api
            .get_as_viewer(&format!("/api/v1/alerts/export.csv?{bad}"), true)
            .await;
        r.error(StatusCode::BAD_REQUEST, "bad_request");
    }
    api.get_as_viewer("/api/v1/alerts/export.csv", false)
        .await
        .error(StatusCode::UNAUTHORIZED, "unauthorized");

    // Findings: the list's filters, the same quoting.
    let rows = csv_rows(
        &api.get_as_viewer("/api/v1/findings/export.csv?min_level=3", true)
            .await,
        FINDING_COLUMNS,
    );
    assert_eq!(rows.len(), 1);
    let f_ = |n| col(FINDING_COLUMNS, n);
    assert_eq!(rows[0][f_("id")], fa.id.to_string());
    assert_eq!(rows[0][f_("asset")], ASSET);
    assert_eq!(rows[0][f_("component_class")], ODD_CLASS);
    assert_eq!(rows[0][f_("structure")], "bay-3");
    assert_eq!(rows[0][f_("level_name")], "serious");
    assert_eq!(rows[0][f_("action")], "serious: act on it");
    assert_eq!(rows[0][f_("max_c")], "87.25");
    assert_eq!(rows[0][f_("track_state")], "raised");
    api.get_as_viewer("/api/v1/findings/export.csv?track=nope", true)
        .await
        .error(StatusCode::BAD_REQUEST, "bad_request");
    api.get_as_viewer("/api/v1/findings/export.csv", false)
        .await
        .error(StatusCode::UNAUTHORIZED, "unauthorized");
}

async fn csv_exports_every_row_past_a_store_page(backend: &str) {
    let (api, _db) = Api::with_site(backend).await;
    // 1 000 rows is one store page: 1 234 findings need two.
    let findings: Vec<Finding> = (0..1234i32)
        .map(|i| {
            let max_c = 40.0 + f64::from(i) / 100.0;
            small_finding(Uuid::now_v7(), 1, "minor", max_c, i64::from(i))
        })
        .collect();
    for chunk in findings.chunks(500) {
        api.store
            .insert_findings(&ingested(chunk, at(0)))
            .await
            .unwrap();
    }
    let rows = csv_rows(
        &api.get_as_viewer("/api/v1/findings/export.csv?limit=5", true)
            .await,
        FINDING_COLUMNS,
    );
    assert_eq!(rows.len(), 1234);
    let ids: std::collections::HashSet<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(ids.len(), 1234, "no row twice");
    let rows = csv_rows(
        &api.get_as_viewer("/api/v1/alerts/export.csv?limit=5", true)
            .await,
        ALERT_COLUMNS,
    );
    assert_eq!(rows.len(), 1234);
}

async fn the_alert_csv_marks_cool_exceptions(backend: &str) {
    let (api, _db) = Api::with_site(backend).await;
    let (cool, hot) = (Uuid::now_v7(), Uuid::now_v7());
    api.store
        .insert_findings(&ingested(
            &[
                support::cool_finding(cool, 21.0, 14.0, 0),
                small_finding(hot, 2, "intermediate", 61.0, 0),
            ],
            at(0),
        ))
        .await
        .unwrap();
    let rows = csv_rows(
        &api.get_as_viewer("/api/v1/alerts/export.csv", true).await,
        ALERT_COLUMNS,
    );
    let c_ = |n| col(ALERT_COLUMNS, n);
    let mut marks: Vec<(&str, &str, &str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r[c_("level")].as_str(),
                r[c_("cool_exception")].as_str(),
                r[c_("kind")].as_str(),
                r[c_("level_name")].as_str(),
            )
        })
        .collect();
    marks.sort_unstable();
    assert_eq!(
        marks,
        [
            ("0", "true", "cool_exception", "cool exception"),
            ("2", "false", "hotspot", "serious")
        ]
    );
    // Columns are only ever added at the end.
    assert_eq!(
        &ALERT_COLUMNS[ALERT_COLUMNS.len() - 3..],
        &["cool_exception", "kind", "detail"]
    );
}

/// An agent-style stream evidence PNG from a real FLIR file.
fn agent_png(fixture_name: &str) -> Vec<u8> {
    let frame = chitti_common::flir::parse_bytes(&read_fixture(fixture_name)).unwrap();
    let meta = RadiometricPngMeta {
        version: 1,
        camera: "cam-1".into(),
        captured_at: chrono::DateTime::parse_from_rfc3339("2026-11-30T03:12:45.120+05:30").unwrap(),
        params: frame.camera.params,
        saturated_max_c: frame.camera.limits.saturated_max_c,
        kelvin_per_count: None,
    };
    encode_radiometric_png(&frame.raw, &meta).unwrap()
}

fn image_xobjects(doc: &lopdf::Document) -> usize {
    doc.objects
        .values()
        .filter(|o| {
            o.as_stream()
                .ok()
                .and_then(|s| s.dict.get(b"Subtype").ok())
                .and_then(|v| v.as_name().ok())
                == Some(&b"Image"[..])
        })
        .count()
}

fn page_text(doc: &lopdf::Document, page: u32) -> String {
    doc.extract_text(&[page]).unwrap()
}

async fn the_inspection_report_has_a_page_per_track(backend: &str) {
    let (api, _db) = Api::with_site(backend).await;
    let rjpeg = read_fixture("flir_ax8_png_80x60.jpg");
    let rjpeg_sha = api.put_evidence(&rjpeg).await;
    let png = agent_png("flir_ax8_png_80x60.jpg");
    let png_sha = api.put_evidence(&png).await;
    let (a, b, c, old) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    let evidence = |sha: &str| Some(EvidenceRef { sha256: sha.into() });
    // Track a: two findings in the period, the second its worst (an R-JPEG with a
    // visual image); track b: one (agent PNG); track old: before the period.
    let mut a1 = small_finding(a, 2, "intermediate", 61.5, 0);
    a1.evidence = evidence(&rjpeg_sha);
    let mut a2 = small_finding(a, 3, "serious", 87.3, 10);
    a2.evidence = evidence(&rjpeg_sha);
    a2.severity.inputs.reference_c = Some(35.0);
    a2.severity.inputs.delta_c = Some(52.3);
    let mut b1 = small_finding(b, 1, "minor", 45.2, 20);
    b1.evidence = evidence(&png_sha);
    b1.asset = Some("bay4-ct-a".into());
    // Track c: another hotspot of the same R-JPEG, whose visual image is embedded once.
    let mut c1 = small_finding(c, 2, "intermediate", 70.1, 15);
    c1.evidence = evidence(&rjpeg_sha);
    let mut o1 = small_finding(old, 4, "critical", 120.0, 30);
    o1.evidence = evidence(&png_sha);
    let minute = chrono::Duration::minutes(1);
    api.store
        .insert_findings(&ingested(&[a1, a2.clone(), b1.clone(), c1], at(0)))
        .await
        .unwrap();
    api.store
        .insert_findings(&ingested(&[o1], at(0) - minute * 60))
        .await
        .unwrap();

    let from = (at(0) - minute).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let to = (at(0) + minute).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let uri = format!("/api/v1/reports/inspection.pdf?site={SITE}&from={from}&to={to}");
    let r = api.get_as_viewer(&uri, true).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.headers["content-type"], "application/pdf");
    assert!(r.bytes.starts_with(b"%PDF-"));
    let doc = lopdf::Document::load_mem(&r.bytes).expect("a PDF lopdf reads");
    let pages = doc.get_pages();
    assert_eq!(
        pages.len(),
        4,
        "a cover and one page per track in the period"
    );
    let cover = page_text(&doc, 1);
    for expected in [
        SITE_NAME,
        SITE,
        "vera",
        "Level 3",
        "Level 1",
        "serious: 1",
        "intermediate: 1",
        "minor: 1",
    ] {
        assert!(
            cover.contains(expected),
            "{expected:?} not on the cover: {cover}"
        );
    }
    assert!(!cover.contains("critical"), "{cover}");
    // Worst first: track a's worst finding, then track b.
    let first = page_text(&doc, 2);
    for expected in [
        "87.3 °C",
        "35.0 °C",
        "52.3",
        "serious",
        "serious: act on it",
        "utility-absolute",
        "open",
        "Thermogram",
        "Visual image",
        &a2.id.to_string(),
    ] {
        assert!(
            first.contains(expected),
            "{expected:?} not on page 2: {first}"
        );
    }
    assert!(first.contains("breaker"), "{first}");
    let third = page_text(&doc, 3);
    for expected in ["70.1 °C", "intermediate", "Visual image"] {
        assert!(
            third.contains(expected),
            "{expected:?} not on page 3: {third}"
        );
    }
    let second = page_text(&doc, 4);
    for expected in [
        "45.2 °C",
        "minor",
        "bay4-ct-a",
        "Thermogram",
        &b1.id.to_string(),
    ] {
        assert!(
            second.contains(expected),
            "{expected:?} not on page 4: {second}"
        );
    }
    assert!(!second.contains("Visual image"), "{second}");
    // Three thermograms and the R-JPEG's visual image, once for both its pages.
    assert_eq!(image_xobjects(&doc), 4);

    // An empty period: the cover alone.
    let r = api
        .get_as_viewer(
            &format!("/api/v1/reports/inspection.pdf?site={SITE}&from={to}&to={to}"),
            true,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let doc = lopdf::Document::load_mem(&r.bytes).unwrap();
    assert_eq!(doc.get_pages().len(), 1);
    assert!(page_text(&doc, 1).contains("No findings"));

    // Errors.
    let m = api
        .get_as_viewer(
            &format!("/api/v1/reports/inspection.pdf?site={SITE}&from={to}&to={from}"),
            true,
        )
        .await
        .error(StatusCode::BAD_REQUEST, "bad_request");
    assert!(m.contains("after"), "{m}");
    let m = api
        .get_as_viewer(
            &format!("/api/v1/reports/inspection.pdf?site=nowhere&from={from}&to={to}"),
            true,
        )
        .await
        .error(StatusCode::NOT_FOUND, "not_found");
    assert!(m.contains("nowhere"), "{m}");
    for bad in [
        format!("site={SITE}&from={from}"),
        format!("site={SITE}&from=yesterday&to={to}"),
        format!("site={SITE}&from={from}&to={to}&pages=9"),
    ] {
        api.get_as_viewer(&format!("/api/v1/reports/inspection.pdf?{bad}"), true)
            .await
            .error(StatusCode::BAD_REQUEST, "bad_request");
    }
    api.get_as_viewer(&uri, false)
        .await
        .error(StatusCode::UNAUTHORIZED, "unauthorized");
}

async fn the_inspection_report_is_capped_with_a_note(backend: &str) {
    let (api, _db) = Api::with_site(backend).await;
    let tracks = MAX_REPORT_TRACKS + 3;
    // Evidence named but never uploaded: each page says so instead of an image.
    let findings: Vec<Finding> = (0..tracks)
        .map(|i| {
            let level = if i == 0 { 4 } else { 1 };
            small_finding(Uuid::now_v7(), level, "minor", 40.0, i as i64)
        })
        .collect();
    api.store
        .insert_findings(&ingested(&findings, at(0)))
        .await
        .unwrap();
    let (from, to) = (
        at(-1000).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        at(60_000).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    let r = api
        .get_as_viewer(
            &format!("/api/v1/reports/inspection.pdf?site={SITE}&from={from}&to={to}"),
            true,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let doc = lopdf::Document::load_mem(&r.bytes).unwrap();
    assert_eq!(doc.get_pages().len(), 1 + MAX_REPORT_TRACKS);
    let cover = page_text(&doc, 1);
    assert!(
        cover.contains(&format!("of {tracks} tracks (3 left out")),
        "{cover}"
    );
    // The worst track comes first; pages without evidence say why.
    let first = page_text(&doc, 2);
    assert!(first.contains("level 4"), "{first}");
    assert!(first.contains("not been uploaded"), "{first}");
    assert_eq!(image_xobjects(&doc), 0);
}

async fn visual_images_come_from_flir_evidence(backend: &str) {
    let (api, _db) = Api::with_site(backend).await;
    let rjpeg = read_fixture("flir_ax8_png_80x60.jpg");
    let rjpeg_sha = api.put_evidence(&rjpeg).await;
    let r = api
        .get_as_viewer(&format!("/api/v1/evidence/{rjpeg_sha}/visual.jpg"), true)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.headers["content-type"], "image/jpeg");
    assert!(r.bytes.starts_with(&[0xFF, 0xD8]) && r.bytes.ends_with(&[0xFF, 0xD9]));
    // The AX8's visual camera is 640 × 480 (MANIFEST), and the bytes are the file's.
    assert_eq!(jpeg_geometry(&r.bytes), Some((640, 480, 3)));
    let frame = chitti_common::flir::parse_bytes(&rjpeg).unwrap();
    assert_eq!(r.bytes, frame.visual.unwrap().bytes);

    // Agent PNG evidence and a FLIR file whose visual image is a PNG: 404, saying why.
    let png_sha = api.put_evidence(&agent_png("flir_ax8_png_80x60.jpg")).await;
    let b60_sha = api
        .put_evidence(&read_fixture("flir_b60_png_embedded_png.jpg"))
        .await;
    for (name, why) in [(&png_sha, "radiometric PNG"), (&b60_sha, "is a PNG")] {
        let m = api
            .get_as_viewer(&format!("/api/v1/evidence/{name}/visual.jpg"), true)
            .await
            .error(StatusCode::NOT_FOUND, "not_found");
        assert!(m.contains(why), "{m}");
    }
    let unknown = sha256_hex(b"never uploaded");
    let m = api
        .get_as_viewer(&format!("/api/v1/evidence/{unknown}/visual.jpg"), true)
        .await
        .error(StatusCode::NOT_FOUND, "not_found");
    assert!(m.contains(&unknown), "{m}");
    api.get_as_viewer("/api/v1/evidence/NOPE/visual.jpg", true)
        .await
        .error(StatusCode::BAD_REQUEST, "bad_request");
    api.get_as_viewer(&format!("/api/v1/evidence/{rjpeg_sha}/visual.jpg"), false)
        .await
        .error(StatusCode::UNAUTHORIZED, "unauthorized");
}

/// A cool exception reads as one on the report's cover and its page, never "level 0
/// (none)".
async fn the_inspection_report_names_cool_exceptions(backend: &str) {
    let (api, _db) = Api::with_site(backend).await;
    api.store
        .insert_findings(&ingested(
            &[support::cool_finding(Uuid::now_v7(), 21.0, 14.0, 0)],
            at(0),
        ))
        .await
        .unwrap();
    let minute = chrono::Duration::minutes(1);
    let from = (at(0) - minute).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let to = (at(0) + minute).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let uri = format!("/api/v1/reports/inspection.pdf?site={SITE}&from={from}&to={to}");
    let r = api.get_as_viewer(&uri, true).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let doc = lopdf::Document::load_mem(&r.bytes).unwrap();
    assert_eq!(doc.get_pages().len(), 2);
    let cover = page_text(&doc, 1);
    assert!(cover.contains("cool exception: 1"), "{cover}");
    let page = page_text(&doc, 2);
    assert!(page.contains("cool exception"), "{page}");
    assert!(
        !page.contains("(none)") && !cover.contains("none:"),
        "{cover}\n{page}"
    );
}

support::on_both!(
    the_inspection_report_names_cool_exceptions,
    csv_exports_respect_filters_and_quote,
    csv_exports_every_row_past_a_store_page,
    the_alert_csv_marks_cool_exceptions,
    the_inspection_report_has_a_page_per_track,
    the_inspection_report_is_capped_with_a_note,
    visual_images_come_from_flir_evidence
);
