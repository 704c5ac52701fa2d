//! An asset's trend through the API and the dashboard, on both stores: the asset and its
//! sibling phases bucketed, its alerts, the CSV, the page; bad periods refused.

mod support;

use axum::http::StatusCode;
use chitti_hub::store::prelude::*;
use serde_json::json;
use support::{assert_error, finding, ingested, Api};
use uuid::Uuid;

async fn three_phases(api: &Api, ada: &str) {
    api.enrol("north-yard", "gw-07").await;
    api.ok(
        StatusCode::CREATED,
        "POST",
        "/api/v1/sites/north-yard/structures",
        ada,
        Some(json!({"id": "bay-3", "name": "Bay 3", "kind": "bay"})),
    )
    .await;
    for (id, phase) in [
        ("bay3-breaker-a", "A"),
        ("bay3-breaker-b", "B"),
        ("bay3-breaker-c", "C"),
    ] {
        api.ok(
            StatusCode::CREATED,
            "POST",
            "/api/v1/sites/north-yard/assets",
            ada,
            Some(
                json!({"id": id, "name": format!("Breaker {phase}"), "structure": "bay-3",
                "phase": phase, "component_class": "bushing"}),
            ),
        )
        .await;
    }
    // Another class on the same bay is no sibling.
    api.ok(
        StatusCode::CREATED,
        "POST",
        "/api/v1/sites/north-yard/assets",
        ada,
        Some(json!({"id": "bay3-ct", "name": "CT", "structure": "bay-3", "component_class": "ct"})),
    )
    .await;
}

async fn an_asset_trend_shows_its_phases_alerts_and_csv(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    let (vera, ada) = (api.bearer("vera").await, api.bearer("ada").await);
    three_phases(&api, &ada).await;
    let now = chrono::Utc::now();
    let mut findings = Vec::new();
    for (asset, level, max_c) in [
        ("bay3-breaker-b", 3, 81.5),
        ("bay3-breaker-a", 1, 44.0),
        ("bay3-ct", 4, 99.0),
    ] {
        let mut f = finding(Uuid::now_v7(), level, max_c, 0);
        f.asset = Some(asset.into());
        f.observed_at = now - chrono::Duration::days(2);
        findings.push(f);
    }
    api.store
        .insert_findings(&ingested(&findings, now))
        .await
        .unwrap();

    let uri = "/api/v1/sites/north-yard/assets/bay3-breaker-b/trend";
    let t = api.ok(StatusCode::OK, "GET", uri, &vera, None).await;
    let series: Vec<&str> = t["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["asset"].as_str().unwrap())
        .collect();
    assert_eq!(
        series,
        ["bay3-breaker-b", "bay3-breaker-a", "bay3-breaker-c"]
    );
    assert_eq!(t["series"][0]["points"][0]["max_c"], 81.5);
    assert_eq!(t["series"][0]["points"][0]["worst_level"], 3);
    assert_eq!(t["series"][1]["points"][0]["max_c"], 44.0);
    assert!(t["series"][2]["points"].as_array().unwrap().is_empty());
    // A year in at most 500 buckets, none shorter than a minute.
    assert!(t["bucket_s"].as_i64().unwrap() >= 365 * 86_400 / 500);
    let alerts: Vec<&str> = t["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["asset"].as_str().unwrap())
        .collect();
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert!(!alerts.contains(&"bay3-ct"));
    let fine = api
        .ok(
            StatusCode::OK,
            "GET",
            &format!("{uri}?points=100000&since=2026-01-01T00:00:00Z"),
            &vera,
            None,
        )
        .await;
    assert!(fine["bucket_s"].as_i64().unwrap() >= 60);

    for bad in [
        format!("{uri}?since=2030-01-01T00:00:00Z&until=2029-01-01T00:00:00Z"),
        format!("{uri}?days=3"),
        "/api/v1/sites/north-yard/assets/Bad_Id/trend".to_string(),
    ] {
        assert_error(
            &api.get(&bad, Some(&vera), None).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        );
    }
    assert_error(
        &api.get(
            "/api/v1/sites/north-yard/assets/nope/trend",
            Some(&vera),
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    let csv = api.get(&format!("{uri}.csv"), Some(&vera), None).await;
    assert_eq!(csv.status, StatusCode::OK);
    let mut reader = ::csv::Reader::from_reader(csv.bytes.as_slice());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        chitti_hub::api::trends::TREND_COLUMNS
    );
    let rows: Vec<::csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (&rows[0][0], &rows[0][1], &rows[0][4]),
        ("bay3-breaker-b", "B", "81.5")
    );

    let (_, _, cookie) = api.login("vera").await;
    let html = api
        .page("/sites/north-yard/assets/bay3-breaker-b", &cookie)
        .await;
    assert!(html.contains("data-asset=\"bay3-breaker-c\""), "{html}");
    assert!(html.contains("<svg"), "the chart");
    assert!(html.contains("id=\"trend-csv\""));
    let sites = api.page("/sites", &cookie).await;
    assert!(sites.contains("href=\"/sites/north-yard/assets/bay3-breaker-b\""));
}

support::on_both!(an_asset_trend_shows_its_phases_alerts_and_csv);
