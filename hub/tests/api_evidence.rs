//! The evidence endpoints at router level, on SQLite and Postgres: signed gateway
//! uploads (accepted once, idempotent, refused for bad, foreign or revoked signatures,
//! wrong hashes, foreign content and oversize bodies through the real HTTP router),
//! reading the original back, and thermograms and temperature grids recomputed from
//! real FLIR evidence — an agent-style radiometric PNG and an R-JPEG as it is. And the
//! evidence store on S3 shared by two replicas, against a real S3 server (moto).

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chitti_common::analysis::PreparedRadiometry;
use chitti_common::analysis::{analyze_frame, analyze_prepared, AnalysisOptions, FrameAnalysis};
use chitti_common::evidence::{encode_radiometric_png, RadiometricPngMeta};
use chitti_common::finding::{EvidenceRef, Finding, Measurement};
use chitti_common::inspection::sha256_hex;
use chitti_common::radiometry::ParamOverrides;
use chitti_common::severity::SeverityCatalog;
use chitti_common::signing::{
    sign_evidence, signing_key_from_seed, GATEWAY_HEADER, SIGNATURE_HEADER,
};
use chitti_hub::evidence::EvidenceStore;
use chitti_hub::store::prelude::*;
use chitti_hub::store::AnyStore;
use chitti_test_support::{read_fixture, S3Server};
use ed25519_dalek::SigningKey;
use std::sync::Arc;
use support::{assert_error, enrol, ingested, Api, Reply, TestDb, Users};

/// The bucket of the S3 test.
const BUCKET: &str = "chitti-evidence";
use uuid::Uuid;

const SITE: &str = "north-yard";
const GATEWAY: &str = "gw-07";
const OTHER_GATEWAY: &str = "gw-08";
const REVOKED_GATEWAY: &str = "gw-09";

fn key(gateway: &str) -> SigningKey {
    let seed = match gateway {
        GATEWAY => [7; 32],
        OTHER_GATEWAY => [8; 32],
        _ => [9; 32],
    };
    signing_key_from_seed(&seed)
}

/// Three gateways of `SITE` enrolled with their keys, one of them revoked.
async fn enrol_gateways(store: &AnyStore) {
    for gateway in [GATEWAY, OTHER_GATEWAY, REVOKED_GATEWAY] {
        enrol(
            store,
            SITE,
            gateway,
            key(gateway).verifying_key().to_bytes(),
        )
        .await;
    }
    assert!(store.revoke_gateway(SITE, REVOKED_GATEWAY).await.unwrap());
}

impl Api {
    /// The API with its users' sessions made directly (no argon2 in these tests) and
    /// the gateways enrolled.
    async fn with_gateways(backend: &str) -> (Self, TestDb) {
        let (api, db) = Api::with(backend, Users::Sessions, |state| {
            state.with_evidence(Arc::new(EvidenceStore::in_memory(64 << 20)))
        })
        .await;
        enrol_gateways(&api.store).await;
        (api, db)
    }

    /// Uploads as `GATEWAY`, signed for the body's own hash.
    async fn upload(&self, bytes: &[u8]) -> Reply {
        let name = sha256_hex(bytes);
        self.send(signed_put(&name, GATEWAY, GATEWAY, bytes.to_vec()))
            .await
    }
}

/// `PUT /api/v1/evidence/{name}` claiming `claimed`, signed with `signer`'s key over
/// the message for `claimed`.
fn signed_put(name: &str, claimed: &str, signer: &str, body: Vec<u8>) -> Request<Body> {
    let signature = sign_evidence(SITE, claimed, name, &key(signer));
    Request::put(format!("/api/v1/evidence/{name}"))
        .header("content-type", "application/octet-stream")
        .header("content-length", body.len().to_string())
        .header(GATEWAY_HEADER, format!("{SITE}/{claimed}"))
        .header(SIGNATURE_HEADER, signature)
        .body(Body::from(body))
        .unwrap()
}

/// An agent-style stream evidence PNG from a real FLIR file: its raw counts and its
/// camera parameters, as `encode_radiometric_png` writes them on a gateway.
fn agent_png(fixture_name: &str) -> (Vec<u8>, chitti_common::flir::FlirFrame) {
    let frame = chitti_common::flir::parse_bytes(&read_fixture(fixture_name)).unwrap();
    let meta = RadiometricPngMeta {
        version: 1,
        camera: "cam-1".into(),
        captured_at: chrono::DateTime::parse_from_rfc3339("2026-11-30T03:12:45.120+05:30").unwrap(),
        params: frame.camera.params,
        saturated_max_c: frame.camera.limits.saturated_max_c,
        kelvin_per_count: None,
    };
    (encode_radiometric_png(&frame.raw, &meta).unwrap(), frame)
}

async fn signed_uploads_are_stored_once_and_checked(backend: &str) {
    let (api, _db) = Api::with_gateways(backend).await;
    let (png, _) = agent_png("flir_ax8_png_80x60.jpg");
    let name = sha256_hex(&png);

    let first = api.upload(&png).await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    assert_eq!(
        first.headers["location"],
        format!("/api/v1/evidence/{name}").as_str()
    );
    let view = first.body.clone();
    assert_eq!(view["sha256"], name.as_str());
    assert_eq!(view["size"], png.len());
    assert_eq!(view["content_type"], "image/png");
    // A repeat is 200 with the first record; the blob and its record exist once.
    let again = api.upload(&png).await;
    assert_eq!(again.status, StatusCode::OK, "{:?}", again.body);
    assert_eq!(again.body, view);
    let record = api.store.evidence(&name).await.unwrap().unwrap();
    assert_eq!(
        (record.size, record.content_type.as_str()),
        (png.len() as u64, "image/png")
    );
    assert!(record.location.ends_with(&name), "{}", record.location);
    assert_eq!(api.evidence.get(&name).await.unwrap().unwrap(), png);

    // Bad signatures: garbage, another key for this gateway's message, another
    // gateway's own valid signature presented for this gateway.
    let mut garbage = signed_put(&name, GATEWAY, GATEWAY, png.clone());
    garbage
        .headers_mut()
        .insert(SIGNATURE_HEADER, "ab".repeat(64).parse().unwrap());
    for req in [
        garbage,
        signed_put(&name, GATEWAY, OTHER_GATEWAY, png.clone()),
        {
            let mut r = signed_put(&name, OTHER_GATEWAY, OTHER_GATEWAY, png.clone());
            r.headers_mut()
                .insert(GATEWAY_HEADER, format!("{SITE}/{GATEWAY}").parse().unwrap());
            r
        },
        signed_put(&name, "gw-unknown", GATEWAY, png.clone()),
    ] {
        assert_error(
            &api.send(req).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        );
    }
    // No headers at all, or a bearer token instead: 401 too.
    let plain = Request::put(format!("/api/v1/evidence/{name}"))
        .header("authorization", format!("Bearer {}", api.viewer))
        .body(Body::from(png.clone()))
        .unwrap();
    assert_error(
        &api.send(plain).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    // A revoked gateway with its valid signature.
    let m = assert_error(
        &api.send(signed_put(
            &name,
            REVOKED_GATEWAY,
            REVOKED_GATEWAY,
            png.clone(),
        ))
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert!(m.contains("revoked"), "{m}");

    // The body must hash to the (signed) name.
    let other = sha256_hex(b"some other bytes");
    let m = assert_error(
        &api.send(signed_put(&other, GATEWAY, GATEWAY, png.clone()))
            .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert!(m.contains(&other) && m.contains(&name), "{m}");
    assert!(api.evidence.get(&other).await.unwrap().is_none());
    // Not a radiometric file, even when correctly named and signed.
    let text = b"<html>not a thermogram</html>".to_vec();
    assert_error(
        &api.upload(&text).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    // Malformed names.
    for bad in ["ABC", &name.to_uppercase(), &"g".repeat(64)] {
        assert_error(
            &api.send(signed_put(bad, GATEWAY, GATEWAY, png.clone()))
                .await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        );
    }

    // Read back as a viewer: the same bytes and type; an R-JPEG as image/jpeg.
    let r = api
        .get(&format!("/api/v1/evidence/{name}"), Some(&api.viewer), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.bytes, png);
    assert_eq!(r.headers["content-type"], "image/png");
    let jpeg = read_fixture("flir_ex320_png_bigendian.jpg");
    assert_eq!(api.upload(&jpeg).await.status, StatusCode::CREATED);
    let r = api
        .get(
            &format!("/api/v1/evidence/{}", sha256_hex(&jpeg)),
            Some(&api.viewer),
            None,
        )
        .await;
    assert_eq!(r.bytes, jpeg);
    assert_eq!(r.headers["content-type"], "image/jpeg");
    assert_error(
        &api.get(&format!("/api/v1/evidence/{name}"), None, None)
            .await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert_error(
        &api.get(
            &format!("/api/v1/evidence/{other}"),
            Some(&api.viewer),
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &api.get("/api/v1/evidence/nope", Some(&api.viewer), None)
            .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
}

async fn evidence_limits_apply_through_the_http_router(backend: &str) {
    let (mut api, _db) = Api::with_gateways(backend).await;
    let limit = 2 << 20;
    let bus = chitti_hub::broker::ExternalBus::connect(chitti_hub::broker::ExternalSettings::new(
        "mqtt://127.0.0.1:1",
        "api-evidence-test",
    ))
    .unwrap();
    api.app = chitti_hub::http::router(chitti_hub::http::HttpState {
        store: api.store.clone(),
        ingest: Arc::new(chitti_hub::ingest::IngestMetrics::default()),
        notify: Default::default(),
        notifications: Default::default(),
        dashboard_url: None,
        bus: Arc::new(chitti_hub::broker::HubBus::External(bus)),
        started: std::time::Instant::now(),
        evidence: Arc::new(EvidenceStore::in_memory(limit)),
        live: Arc::new(chitti_hub::live::LiveEvents::new(16)),
        settings: Default::default(),
        metrics_token: None,
        models: Default::default(),
        retention: Default::default(),
    });
    let png_of = |len: usize| {
        let mut b = b"\x89PNG\r\n\x1a\n".to_vec();
        b.resize(len, 0x5a);
        b
    };
    // Over the global 1 MiB, under the evidence limit: the route's limit wins.
    let global = chitti_hub::http::MAX_BODY_BYTES;
    let medium = png_of(global + global / 2);
    let r = api
        .send(signed_put(
            &sha256_hex(&medium),
            GATEWAY,
            GATEWAY,
            medium.clone(),
        ))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    // Over the evidence limit: 413 in the API's error shape, declared or streamed.
    let big = png_of(limit as usize + 1);
    let r = api
        .send(signed_put(&sha256_hex(&big), GATEWAY, GATEWAY, big.clone()))
        .await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let mut undeclared = signed_put(&sha256_hex(&big), GATEWAY, GATEWAY, big.clone());
    undeclared.headers_mut().remove("content-length");
    let r = api.send(undeclared).await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // The global limit still holds everywhere else, and a JSON body over it is a 413
    // in the error shape too.
    let login = Request::post("/api/v1/auth/login")
        .header("content-type", "application/json")
        .body(Body::from(format!(
            "{{\"username\":\"vera\",\"password\":\"{}\"}}",
            "x".repeat(global)
        )))
        .unwrap();
    let r = api.send(login).await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
}

/// A finding for the hottest hotspot of an analysis, as an agent reports it.
fn finding_from(analysis: &FrameAnalysis, evidence_sha: &str) -> Finding {
    let hottest = analysis
        .hotspots
        .first()
        .expect("the fixture has a hotspot at the threshold");
    let h = &hottest.hotspot;
    let mut f = support::finding(Uuid::now_v7(), hottest.severity.level, 0.0, 0);
    f.site = SITE.into();
    f.gateway = GATEWAY.into();
    f.component = None;
    f.hotspot.bbox = h.bbox;
    f.hotspot.max_c = (h.max_c * 1000.0).round() / 1000.0;
    f.hotspot.mean_c = h.mean_c;
    f.hotspot.max_at = h.max_at;
    f.hotspot.area_px = h.area_px;
    f.severity = hottest.severity.clone();
    let p = analysis.params;
    f.measurement = Measurement {
        emissivity: p.emissivity,
        distance_m: p.object_distance_m,
        reflected_c: p.reflected_c,
        atmosphere_c: p.atmosphere_c,
        relative_humidity: p.relative_humidity,
        qualitative: false,
    };
    f.evidence = Some(EvidenceRef {
        sha256: evidence_sha.into(),
    });
    f
}

/// Searches just below the frame's peak, so the hottest hotspot holds it.
fn near_peak(analysis_max_c: f64, overrides: ParamOverrides) -> AnalysisOptions {
    AnalysisOptions {
        overrides,
        threshold_c: Some(analysis_max_c - 1.0),
        min_area_px: 1,
        ..AnalysisOptions::default()
    }
}

fn png_size(bytes: &[u8]) -> (u32, u32) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().expect("a png");
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut buf).expect("png pixels decode");
    (frame.width, frame.height)
}

/// The grid's answers for a finding agree with the finding, JSON and binary.
async fn check_grid(api: &Api, f: &Finding, width: u32, height: u32) {
    let uri = format!("/api/v1/findings/{}/temperatures", f.id);
    let r = api.get(&uri, Some(&api.viewer), None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.headers["content-type"], "application/json");
    let grid = r.body.clone();
    assert_eq!(
        (grid["width"].as_u64(), grid["height"].as_u64()),
        (Some(width.into()), Some(height.into()))
    );
    assert_eq!(grid["unit"], "celsius");
    let values: Vec<f64> = grid["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(values.len(), (width * height) as usize);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let close = |a: f64, what: &str| {
        assert!(
            (a - f.hotspot.max_c).abs() <= 0.01,
            "{what} {a} vs the finding's {}",
            f.hotspot.max_c
        )
    };
    close(max, "grid max");
    close(grid["max_c"].as_f64().unwrap(), "max_c");
    let at = (f.hotspot.max_at.y * width + f.hotspot.max_at.x) as usize;
    close(values[at], "value at max_at");
    assert!(grid["min_c"].as_f64().unwrap() <= max);

    let r = api
        .get(&uri, Some(&api.viewer), Some("application/octet-stream"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "application/octet-stream");
    let b = &r.bytes;
    assert_eq!(&b[..4], b"CHTG");
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    assert_eq!((u32_at(4), u32_at(8), u32_at(12)), (1, width, height));
    let floats: Vec<f32> = b[16..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(floats.len(), values.len());
    let max = floats.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    close(f64::from(max), "binary max");
}

async fn thermograms_and_grids_are_recomputed_from_evidence(backend: &str) {
    let (api, _db) = Api::with_gateways(backend).await;
    let catalog = SeverityCatalog::builtin();
    let table = catalog.get("utility-absolute").unwrap();

    // (a) Stream evidence: an agent-style PNG of a real AX8 frame, analysed by the
    // agent's path with a thermographer's corrections, which the finding records.
    let (png, frame) = agent_png("flir_ax8_png_80x60.jpg");
    let overrides = ParamOverrides {
        emissivity: Some(0.9),
        object_distance_m: Some(5.0),
        ..ParamOverrides::default()
    };
    let prepared = PreparedRadiometry::new(
        frame.camera.params,
        &overrides,
        frame.camera.limits.saturated_max_c,
    )
    .unwrap();
    let probe =
        analyze_prepared(&frame.raw, &prepared, table, &AnalysisOptions::default()).unwrap();
    let analysis = analyze_prepared(
        &frame.raw,
        &prepared,
        table,
        &near_peak(probe.stats.max_c, overrides),
    )
    .unwrap();
    let stream = finding_from(&analysis, &sha256_hex(&png));
    // (b) File evidence: an R-JPEG as it is, with the file's own parameters.
    let jpeg = read_fixture("flir_ex320_png_bigendian.jpg");
    let jframe = chitti_common::flir::parse_bytes(&jpeg).unwrap();
    let probe = analyze_frame(&jframe, table, &AnalysisOptions::default()).unwrap();
    let janalysis = analyze_frame(
        &jframe,
        table,
        &near_peak(probe.stats.max_c, ParamOverrides::default()),
    )
    .unwrap();
    let mut file = finding_from(&janalysis, &sha256_hex(&jpeg));
    file.source = chitti_common::finding::FindingSource::Rjpeg;
    // Two more: evidence never uploaded, and none at all.
    let mut not_uploaded = finding_from(&analysis, &sha256_hex(b"never uploaded"));
    not_uploaded.id = Uuid::now_v7();
    let mut without = finding_from(&analysis, &sha256_hex(&png));
    without.id = Uuid::now_v7();
    without.evidence = None;
    api.store
        .insert_findings(&ingested(
            &[
                stream.clone(),
                file.clone(),
                not_uploaded.clone(),
                without.clone(),
            ],
            chrono::Utc::now(),
        ))
        .await
        .unwrap();
    assert_eq!(api.upload(&png).await.status, StatusCode::CREATED);
    assert_eq!(api.upload(&jpeg).await.status, StatusCode::CREATED);

    check_grid(&api, &stream, frame.raw.width(), frame.raw.height()).await;
    check_grid(&api, &file, jframe.raw.width(), jframe.raw.height()).await;

    // Thermograms: a valid PNG of the evidence's size at scale 1 without the bar; by
    // default upscaled, with the bar on the right.
    for (f, w, h) in [
        (&stream, frame.raw.width(), frame.raw.height()),
        (&file, jframe.raw.width(), jframe.raw.height()),
    ] {
        let base = format!("/api/v1/findings/{}/thermogram.png", f.id);
        let exact = api
            .get(
                &format!("{base}?scale=1&scale_bar=false"),
                Some(&api.viewer),
                None,
            )
            .await;
        assert_eq!(exact.status, StatusCode::OK, "{:?}", exact.body);
        assert_eq!(exact.headers["content-type"], "image/png");
        assert_eq!(png_size(&exact.bytes), (w, h));
        let plain = api
            .get(
                &format!("{base}?scale=1&scale_bar=false&overlays=false"),
                Some(&api.viewer),
                None,
            )
            .await;
        assert_eq!(png_size(&plain.bytes), (w, h));
        assert_ne!(plain.bytes, exact.bytes, "the overlays are drawn");
        let r = api.get(&base, Some(&api.viewer), None).await;
        let (rw, rh) = png_size(&r.bytes);
        let scale = rh / h;
        assert!(scale >= 1 && rh == h * scale && rw > w * scale, "{rw}x{rh}");
        for query in ["palette=rainbow&min_c=0&max_c=60", "palette=gray&max_c=100"] {
            let r = api
                .get(&format!("{base}?{query}"), Some(&api.viewer), None)
                .await;
            assert_eq!(r.status, StatusCode::OK, "{query}: {:?}", r.body);
            png_size(&r.bytes);
        }
        for query in [
            "palette=purple",
            "min_c=50&max_c=10",
            "scale=99",
            "colour=red",
        ] {
            let r = api
                .get(&format!("{base}?{query}"), Some(&api.viewer), None)
                .await;
            assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
        }
    }

    // Missing things say which; nobody signed in gets 401.
    for (id, what) in [
        (Uuid::now_v7(), "finding"),
        (not_uploaded.id, "not uploaded"),
        (without.id, "has none"),
    ] {
        for end in ["thermogram.png", "temperatures"] {
            let r = api
                .get(
                    &format!("/api/v1/findings/{id}/{end}"),
                    Some(&api.viewer),
                    None,
                )
                .await;
            let m = assert_error(&r, StatusCode::NOT_FOUND, "not_found");
            assert!(m.contains(what), "{m}");
        }
    }
    for end in ["thermogram.png", "temperatures"] {
        assert_error(
            &api.get(&format!("/api/v1/findings/{}/{end}", stream.id), None, None)
                .await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        );
        assert_error(
            &api.get(
                &format!("/api/v1/findings/not-a-uuid/{end}"),
                Some(&api.viewer),
                None,
            )
            .await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        );
    }
}

async fn the_endpoints_are_described_in_openapi(backend: &str) {
    let (api, _db) = Api::with_gateways(backend).await;
    let doc = api.get("/api/openapi.json", None, None).await.body;
    let paths = &doc["paths"];
    let put = &paths["/api/v1/evidence/{sha256}"]["put"];
    assert_eq!(put["tags"][0], "evidence");
    assert!(put["requestBody"]["content"]["application/octet-stream"].is_object());
    let headers: Vec<&str> = put["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["in"] == "header")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(headers, ["X-Chitti-Gateway", "X-Chitti-Signature"]);
    assert!(paths["/api/v1/evidence/{sha256}"]["get"].is_object());
    let png = &paths["/api/v1/findings/{id}/thermogram.png"]["get"];
    assert!(png["responses"]["200"]["content"]["image/png"].is_object());
    let grid = &paths["/api/v1/findings/{id}/temperatures"]["get"]["responses"]["200"]["content"];
    assert!(grid["application/json"].is_object() && grid["application/octet-stream"].is_object());
}

/// The evidence store on S3 for every replica, against moto's S3 server started here:
/// evidence a gateway uploaded through replica A is read back through replica B, which
/// has an S3 client of its own; a repeat upload through B answers with A's record (one
/// blob, one record, whichever replica); with the S3 server gone an upload and a read
/// answer 503 `unavailable` — the process goes on, and the record of what was stored
/// stays.
#[test]
fn replicas_share_the_evidence_store_on_s3() {
    // object_store takes its credentials from the environment; moto accepts any. Set
    // before the runtime starts (nextest runs each test in a process of its own).
    std::env::set_var("AWS_ACCESS_KEY_ID", "chitti-test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "chitti-test-secret");
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let mut s3 = S3Server::start(dir.path());
            s3.create_bucket(BUCKET);
            let endpoint = s3.endpoint();
            let client = || {
                let store = EvidenceStore::s3(BUCKET, Some("us-east-1"), Some(&endpoint), 64 << 20)
                    .unwrap();
                assert_eq!(store.backend(), "s3");
                Arc::new(store)
            };
            let (a, _db) = Api::with("postgres", Users::Sessions, |state| {
                state.with_evidence(client())
            })
            .await;
            enrol_gateways(&a.store).await;
            let b = a.replica(|state| state.with_evidence(client()));
            let (png, _) = agent_png("flir_ax8_png_80x60.jpg");
            let name = sha256_hex(&png);

            let first = a.upload(&png).await;
            assert_eq!(
                first.status,
                StatusCode::CREATED,
                "{:?}\n{}",
                first.body,
                s3.log_text()
            );
            assert_eq!(
                b.evidence.get(&name).await.unwrap().unwrap(),
                png,
                "in the bucket"
            );
            let read = b
                .get(&format!("/api/v1/evidence/{name}"), Some(&b.viewer), None)
                .await;
            assert_eq!(read.status, StatusCode::OK);
            assert_eq!(read.bytes, png, "B serves what A stored");
            let again = b.upload(&png).await;
            assert_eq!(again.status, StatusCode::OK, "{:?}", again.body);
            assert_eq!(again.body, first.body, "one record, whichever replica");
            assert!(
                s3.log_text().contains(&format!("PUT /{BUCKET}/")),
                "the blob went to the S3 server:\n{}",
                s3.log_text()
            );

            // The S3 server goes away: clear answers, nothing lost from the database.
            s3.kill();
            let other = read_fixture("flir_t640_png.jpg");
            let m = assert_error(
                &b.send(signed_put(
                    &sha256_hex(&other),
                    GATEWAY,
                    GATEWAY,
                    other.clone(),
                ))
                .await,
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
            );
            assert!(m.contains("evidence storage"), "{m}");
            let m = assert_error(
                &a.get(&format!("/api/v1/evidence/{name}"), Some(&a.viewer), None)
                    .await,
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
            );
            assert!(m.contains("evidence storage"), "{m}");
            assert!(a.store.evidence(&name).await.unwrap().is_some());
            assert!(a
                .store
                .evidence(&sha256_hex(&other))
                .await
                .unwrap()
                .is_none());
        });
}

support::on_both!(
    signed_uploads_are_stored_once_and_checked,
    evidence_limits_apply_through_the_http_router,
    thermograms_and_grids_are_recomputed_from_evidence,
    the_endpoints_are_described_in_openapi
);
