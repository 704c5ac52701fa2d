//! The served OpenAPI document against the router: OpenAPI 3.1, exactly the routes the
//! router answers (no more, no less), every authenticated operation documenting 401,
//! every error answer the one error schema, and the wire JSON of a finding matching
//! its schema's property names. The document does not depend on the backend: SQLite
//! only.

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chitti_hub::api::{router, ApiState};
use chitti_hub::store::prelude::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;
use support::TestDb;
use tower::ServiceExt;

/// Every operation of the API, as `METHOD path`. Adding a route means adding it here.
const OPERATIONS: &[&str] = &[
    "POST /api/v1/auth/login",
    "POST /api/v1/auth/logout",
    "GET /api/v1/me",
    "GET /api/v1/users",
    "POST /api/v1/users",
    "PATCH /api/v1/users/{id}",
    "POST /api/v1/users/{id}/pseudonymise",
    "GET /api/v1/users/{id}/sessions",
    "DELETE /api/v1/users/{id}/sessions",
    "POST /api/v1/users/{id}/reset-link",
    "GET /api/v1/users/{id}/export",
    "POST /api/v1/me/password",
    "GET /api/v1/me/sessions",
    "DELETE /api/v1/me/sessions/{id}",
    "GET /api/v1/tokens",
    "POST /api/v1/tokens",
    "DELETE /api/v1/tokens/{id}",
    "GET /api/v1/findings",
    "GET /api/v1/findings/{id}",
    "GET /api/v1/findings/{id}/thermogram.png",
    "GET /api/v1/findings/{id}/temperatures",
    "GET /api/v1/alerts",
    "GET /api/v1/alerts/{id}",
    "POST /api/v1/alerts/{id}/acknowledge",
    "POST /api/v1/alerts/{id}/resolve",
    "POST /api/v1/alerts/{id}/reopen",
    "POST /api/v1/alerts/{id}/comment",
    "POST /api/v1/alerts/{id}/assign",
    "GET /api/v1/sites",
    "POST /api/v1/sites",
    "GET /api/v1/sites/{site}",
    "PATCH /api/v1/sites/{site}",
    "DELETE /api/v1/sites/{site}",
    "GET /api/v1/sites/{site}/structures",
    "POST /api/v1/sites/{site}/structures",
    "GET /api/v1/sites/{site}/structures/{structure}",
    "PATCH /api/v1/sites/{site}/structures/{structure}",
    "DELETE /api/v1/sites/{site}/structures/{structure}",
    "GET /api/v1/sites/{site}/assets",
    "POST /api/v1/sites/{site}/assets",
    "GET /api/v1/sites/{site}/assets/{asset}",
    "PATCH /api/v1/sites/{site}/assets/{asset}",
    "DELETE /api/v1/sites/{site}/assets/{asset}",
    "GET /api/v1/sites/{site}/assets/{asset}/trend",
    "GET /api/v1/sites/{site}/assets/{asset}/trend.csv",
    "POST /api/v1/auth/reset",
    "GET /api/v1/audit",
    "GET /api/v1/retention",
    "GET /api/v1/retention/holds",
    "POST /api/v1/retention/holds",
    "POST /api/v1/retention/holds/{id}/release",
    "GET /api/v1/audit/export.csv",
    "GET /api/v1/dead-letters",
    "GET /api/v1/dead-letters/groups",
    "GET /api/v1/dead-letters/{id}/payload",
    "GET /api/v1/gateways",
    "GET /api/v1/gateways/{site}/{gateway}",
    "POST /api/v1/gateways/{site}/{gateway}/revoke",
    "GET /api/v1/gateways/{site}/{gateway}/config",
    "PUT /api/v1/gateways/{site}/{gateway}/config",
    "POST /api/v1/gateways/config-changes",
    "GET /api/v1/cameras",
    "PUT /api/v1/evidence/{sha256}",
    "GET /api/v1/evidence/{sha256}",
    "POST /api/v1/uploads",
    "GET /api/v1/stream",
    "GET /api/v1/alerts/export.csv",
    "GET /api/v1/findings/export.csv",
    "GET /api/v1/reports/inspection.pdf",
    "GET /api/v1/evidence/{sha256}/visual.jpg",
    "GET /api/v1/alerts/{id}/notifications",
    "GET /api/v1/notifications",
    "GET /api/v1/notification-channels",
    "POST /api/v1/notification-channels/{id}/test",
    "POST /api/v1/notification-channels/{id}/enable",
    "GET /api/v1/notification-settings",
    "PUT /api/v1/notification-settings",
    "POST /api/v1/models",
    "GET /api/v1/models",
    "GET /api/v1/models/{id}",
    "GET /api/v1/models/{id}/file",
    "GET /api/v1/model-distribution",
    "POST /api/v1/rollouts",
    "GET /api/v1/rollouts",
    "GET /api/v1/rollouts/{id}",
    "POST /api/v1/rollouts/{id}/pause",
    "POST /api/v1/rollouts/{id}/resume",
    "POST /api/v1/rollouts/{id}/abort",
];

/// Operations anyone may call: no `security`, no 401 for a missing sign-in.
const PUBLIC: &[&str] = &["POST /api/v1/auth/login", "POST /api/v1/auth/reset"];

/// Operations authenticated otherwise than by a user (a gateway's signature): they
/// document 401 but not the user security schemes.
const GATEWAY_SIGNED: &[&str] = &["PUT /api/v1/evidence/{sha256}"];

/// Operations a capability in the request authorises as well as a user (a model file
/// by the download token a gateway was sent): no security required, 401 without both.
const BY_CAPABILITY: &[&str] = &["GET /api/v1/models/{id}/file"];

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

async fn app() -> (axum::Router, TestDb) {
    let db = TestDb::migrated("sqlite").await;
    let store = Arc::new(db.store.clone());
    assert!(store.ping().await.is_ok());
    (router(ApiState::new(store, false)), db)
}

async fn call(app: &axum::Router, method: &str, uri: &str) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A concrete URI for a templated path.
fn concrete(path: &str) -> String {
    path.replace("{id}", "0190b9a8-0000-7000-8000-000000000001")
        .replace("{sha256}", &"ab".repeat(32))
        .replace("{site}", "north-yard")
        .replace("{structure}", "bay-3")
        .replace("{asset}", "bay3-breaker-b")
        .replace("{gateway}", "gw-07")
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.trim_start_matches("#/components/schemas/");
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// Every property name a schema allows, through `allOf` and references.
fn property_names(doc: &Value, schema: &Value, into: &mut BTreeSet<String>) {
    let schema = resolve(doc, schema);
    if let Some(props) = schema["properties"].as_object() {
        into.extend(props.keys().cloned());
    }
    for key in ["allOf", "oneOf", "anyOf"] {
        for part in schema[key].as_array().into_iter().flatten() {
            property_names(doc, part, into);
        }
    }
}

#[tokio::test]
async fn the_document_describes_exactly_the_routes_the_router_answers() {
    let (app, _db) = app().await;
    let (status, doc) = call(&app, "GET", "/api/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let version = doc["openapi"].as_str().unwrap();
    assert!(version.starts_with("3.1."), "openapi {version}");

    // The document has exactly the expected operations.
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            if item[m].is_object() {
                documented.insert(format!("{} {path}", m.to_uppercase()));
            }
        }
    }
    let expected: BTreeSet<String> = OPERATIONS.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        documented.difference(&expected).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "documented but not expected"
    );
    assert_eq!(
        expected.difference(&documented).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "expected but not documented"
    );

    // The router answers each of them (not its fallback), and no other method there.
    for op in OPERATIONS {
        let (method, path) = op.split_once(' ').unwrap();
        let uri = concrete(path);
        let (status, body) = call(&app, method, &uri).await;
        assert_ne!(
            body["error"]["message"], "endpoint not found",
            "{op}: the router does not answer"
        );
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{op}");
        if !PUBLIC.contains(op) {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{op} without credentials");
            assert_eq!(body["error"]["code"], "unauthorized", "{op}");
        }
        for m in METHODS {
            let other = format!("{} {path}", m.to_uppercase());
            if !expected.contains(&other) {
                let (status, _) = call(&app, &m.to_uppercase(), &uri).await;
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{other} is answered but not documented"
                );
            }
        }
    }
    // A path that is not in the document is the fallback's 404, in the error shape.
    let (status, body) = call(&app, "GET", "/api/v1/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");

    // Every operation: a tag, its security, 401 where it needs a caller, and every
    // error answer in the one error shape.
    let tags: BTreeSet<&str> = doc["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for op in OPERATIONS {
        let (method, path) = op.split_once(' ').unwrap();
        let o = &doc["paths"][path][method.to_lowercase()];
        let tag = o["tags"][0].as_str().unwrap_or_default();
        assert!(tags.contains(tag), "{op}: tag {tag:?}");
        let responses = o["responses"].as_object().unwrap();
        if PUBLIC.contains(op) {
            assert!(
                o["security"].as_array().is_none_or(|s| s
                    .iter()
                    .all(|r| r.as_object().is_some_and(|m| m.is_empty()))),
                "{op} is public: {:?}",
                o["security"]
            );
        } else {
            assert!(responses.contains_key("401"), "{op}: no 401");
            if BY_CAPABILITY.contains(op) {
                assert_eq!(
                    o["security"],
                    serde_json::json!([{}, {"bearer": []}, {"session": []}]),
                    "{op}"
                );
            } else if !GATEWAY_SIGNED.contains(op) {
                assert_eq!(
                    o["security"],
                    serde_json::json!([{"bearer": []}, {"session": []}]),
                    "{op}"
                );
            }
        }
        for (code, r) in responses {
            let status: u16 = code.parse().unwrap();
            if status >= 400 {
                assert_eq!(
                    r["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{op} {code}"
                );
            }
        }
    }

    // The error codes are the closed set.
    assert_eq!(
        doc["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .unwrap()
            .len(),
        14
    );
}

#[tokio::test]
async fn the_finding_schema_matches_its_wire_json() {
    let (app, _db) = app().await;
    let (_, doc) = call(&app, "GET", "/api/openapi.json").await;
    let finding = &doc["components"]["schemas"]["Finding"];
    assert!(finding.is_object(), "Finding has a schema of its own");
    // Every field the wire has is a property, and every required property is always on
    // the wire (optional ones are skipped when absent).
    let f = support::finding(uuid::Uuid::now_v7(), 2, 61.5, 0);
    let wire = serde_json::to_value(&f).unwrap();
    let mut props = BTreeSet::new();
    property_names(&doc, finding, &mut props);
    let keys: BTreeSet<String> = wire.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys.difference(&props).collect::<Vec<_>>(),
        Vec::<&String>::new()
    );
    for r in finding["required"].as_array().unwrap() {
        assert!(
            keys.contains(r.as_str().unwrap()),
            "required {r} is on the wire"
        );
    }
    // The pixel geometry is the wire's arrays, not objects.
    let hotspot = resolve(&doc, &finding["properties"]["hotspot"]);
    assert_eq!(hotspot["properties"]["bbox"]["type"], "array");
    assert_eq!(hotspot["properties"]["bbox"]["maxItems"], 4);
    assert_eq!(hotspot["properties"]["max_at"]["maxItems"], 2);
    assert!(wire["hotspot"]["bbox"].is_array());
    // Snake-case enums as serde writes them.
    assert_eq!(
        doc["components"]["schemas"]["FindingSource"]["enum"],
        serde_json::json!(["stream", "rjpeg", "upload"])
    );
    assert_eq!(wire["source"], "stream");
    // A listed finding is the finding with `received_at` beside its fields.
    let view = &doc["components"]["schemas"]["FindingView"];
    let mut view_props = BTreeSet::new();
    property_names(&doc, view, &mut view_props);
    assert!(view_props.contains("received_at") && view_props.contains("hotspot"));
}

#[tokio::test]
async fn alerts_and_their_history_say_whether_they_are_cool_exceptions() {
    let (app, _db) = app().await;
    let (_, doc) = call(&app, "GET", "/api/openapi.json").await;
    for schema in ["AlertView", "AlertDetail", "HistoryPoint"] {
        let s = &doc["components"]["schemas"][schema];
        let mut props = BTreeSet::new();
        property_names(&doc, s, &mut props);
        assert!(props.contains("cool_exception"), "{schema}: {props:?}");
    }
    for schema in ["AlertView", "HistoryPoint"] {
        let s = &doc["components"]["schemas"][schema];
        assert_eq!(
            s["properties"]["cool_exception"]["type"], "boolean",
            "{schema}"
        );
        assert!(
            s["required"]
                .as_array()
                .unwrap()
                .contains(&Value::from("cool_exception")),
            "{schema}: always on the wire"
        );
    }
}

/// Every operation a user calls names the API token scope it needs, as the extractor
/// enforces it, with a 403 for a token without it.
#[tokio::test]
async fn every_user_operation_names_its_token_scope() {
    use chitti_hub::api::auth::Scope;
    let (app, _db) = app().await;
    let (_, doc) = call(&app, "GET", "/api/openapi.json").await;
    let mut seen = BTreeSet::new();
    for op in OPERATIONS {
        let (method, path) = op.split_once(' ').unwrap();
        let operation = &doc["paths"][path][method.to_ascii_lowercase()];
        let want = Scope::for_operation(&method.parse().unwrap(), path).map(Scope::as_str);
        if PUBLIC.contains(op) || GATEWAY_SIGNED.contains(op) {
            assert!(operation.get("x-chitti-scope").is_none(), "{op}");
            continue;
        }
        assert_eq!(operation["x-chitti-scope"].as_str(), want, "{op}");
        if let Some(scope) = want {
            seen.insert(scope);
            assert!(
                operation["responses"]["403"]["description"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("`{scope}` scope")),
                "{op}"
            );
        }
    }
    // Every scope guards something.
    assert_eq!(
        seen,
        Scope::ALL
            .iter()
            .map(|s| s.as_str())
            .collect::<BTreeSet<_>>()
    );
}
