//! The operations dashboard: server-rendered HTML pages on the hub's own port, for the
//! people who watch alerts during a shift, thermographers who upload inspections and
//! the admins who keep the site hierarchy.
//!
//! | page | path | role |
//! |---|---|---|
//! | sign in | `/login` | anyone |
//! | overview | `/` | viewer |
//! | alert queue | `/alerts` (the API's alert filters, sort and cursor as query parameters) | viewer (actions: operator) |
//! | alert detail and thermal viewer | `/alerts/{id}` (`?finding=` picks the finding shown) | viewer (actions: operator) |
//! | fleet | `/fleet` | viewer |
//! | a gateway's configuration | `/fleet/{site}/{gateway}` | viewer (editing: admin) |
//! | models and rollouts | `/models`, `/models/rollouts/{id}` | viewer (pause, resume, abort: admin) |
//! | sites and assets | `/sites` | viewer (editing: admin) |
//! | upload | `/upload` | operator |
//! | reports | `/reports` (the queue's filter as query parameters) | viewer |
//!
//! **No second business logic.** Every page calls the API's own handler functions
//! (`crate::api::alerts::list_alerts` and friends) with the signed-in [`Principal`],
//! so a page shows exactly what the API answers and the API's role checks apply. Every
//! state change is made by the browser through `/api/v1` (the cookie session and its
//! `X-CSRF-Token`, given to the page in a `<meta>`), so the API is the only writer.
//! Only what the API has no endpoint for is read from the store directly, with the same
//! `Store` methods: the asset and component-class choices of the filters, and the fleet
//! page's device temperature (the latest telemetry minute). Buttons a role may not use
//! are not rendered; the API refuses them anyway.
//!
//! **Assets are compiled in** (`assets.rs`): one stylesheet and three small scripts of
//! our own, no CDN, no build step. The hub's strict CSP (`default-src 'self'`) holds:
//! no inline script or style; data for scripts travels in `<script
//! type="application/json">` blocks and `data-` attributes.
//!
//! **What the JavaScript does** (and only that): the live-stream indicator and live
//! refresh of the queue, alert, fleet and overview sections (`/api/v1/stream`; a
//! changed section is fetched again as server-rendered HTML and swapped in, new rows
//! highlighted and announced through an `aria-live` region); the API calls of the
//! action forms; keyboard shortcuts and bulk acknowledge in the queue; the thermal
//! viewer (`viewer.js`, drawing the °C grid of `/api/v1/findings/{id}/temperatures`
//! in the server's own palette tables); per-file upload progress (`upload.js`).
//!
//! **Element ids the browser tests rely on** (`tests/tests/dashboard.rs`): sign-in
//! `#login-form #username #password #login-submit`; header `#user-name #user-role
//! #live-status[data-state=live|connecting|offline] #logout`; queue `#queue-filters
//! #alert-queue #alert-rows tr.alert-row[data-id][data-status][data-updated]`,
//! `.live-new`/`.live-changed`, `.row-check #bulk-ack #bulk-result #queue-export-csv
//! #next-page`; alert `#alert-summary #viewer[data-finding-id] #thermal-canvas[data-ready]
//! #cursor-temp #palette #span-min #span-max #zoom-in #provenance #history #actions
//! #trail-list li[data-kind]`; upload `#upload-site #upload-files
//! #upload-list li[data-name][data-result=ok|error] li.finding`; reports `#export-csv
//! #report-form #report-site #report-from #report-to`. Renaming one breaks those tests.

mod account;
mod alerts;
mod asset;
mod assets;
mod audit;
mod chart;
mod dead_letters;
mod gateway_config;
pub(crate) mod layout;
mod models;
mod overview;
mod pages;

use crate::api::auth::Principal;
use crate::api::error::{ApiError, ErrorCode};
use crate::api::ApiState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use maud::Markup;

/// The dashboard's routes (pages and their compiled-in assets), over the API's state.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/", get(overview::overview))
        .route("/login", get(pages::login))
        .route("/reset", get(account::reset))
        .route("/account", get(account::page))
        .route("/alerts", get(alerts::queue))
        .route("/alerts/{id}", get(alerts::detail))
        .route("/fleet", get(pages::fleet))
        .route("/dead-letters", get(dead_letters::page))
        .route("/audit", get(audit::page))
        .route("/fleet/{site}/{gateway}", get(gateway_config::page))
        .route("/models", get(models::page))
        .route("/models/rollouts/{id}", get(models::rollout))
        .route("/sites", get(pages::sites))
        .route("/sites/{site}/assets/{asset}", get(asset::page))
        .route("/upload", get(pages::upload))
        .route("/reports", get(pages::reports))
        .route("/notifications", get(pages::notifications))
        .route("/assets/{file}", get(assets::asset))
        .with_state(state)
}

/// The signed-in user of a page: a session (cookie) or bearer, as the API reads it.
/// Without one the browser is sent to `/login` and back here afterwards.
pub(crate) struct PageUser(pub Principal);

impl FromRequestParts<ApiState> for PageUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Response> {
        match Principal::from_request_parts(parts, state).await {
            Ok(p) => Ok(Self(p)),
            Err(e) if e.code == ErrorCode::Unauthorized => {
                let here = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                let next = serde_urlencoded::to_string([("next", here)]).unwrap_or_default();
                Err(Redirect::to(&format!("/login?{next}")).into_response())
            }
            Err(e) => Err(error_page(None, e)),
        }
    }
}

/// A page's answer: its HTML, or the API's error rendered as a page.
pub(crate) type PageResult = Result<Html<String>, PageError>;

/// An error page, boxed (a `Response` is large to carry in every `Result`).
pub(crate) struct PageError(Box<Response>);

impl From<Response> for PageError {
    fn from(r: Response) -> Self {
        Self(Box::new(r))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        *self.0
    }
}

/// An API error as a page (with the header when the user is known).
pub(crate) fn error_page(user: Option<&Principal>, err: ApiError) -> Response {
    let status = err.code.status();
    let body = maud::html! {
        section.card.error-card role="alert" {
            h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("error")) }
            p #error-message { (err.message) }
            p { a href="/" { "Back to the overview" } }
        }
    };
    let html = match user {
        Some(u) => layout::page(
            u,
            layout::Nav::None,
            "Error",
            &[],
            layout::Live::Indicator,
            body,
        ),
        None => layout::bare("Error", body),
    };
    (status, html).into_response()
}

/// The API's answer to a page: its value, or an error page.
pub(crate) fn api<T>(user: &Principal, r: Result<axum::Json<T>, ApiError>) -> Result<T, PageError> {
    r.map(|j| j.0).map_err(|e| error_page(Some(user), e).into())
}

/// Every gateway the user may see, through the API's own list (Overview and Fleet).
pub(crate) async fn all_gateways(
    s: &ApiState,
    user: &Principal,
) -> Result<Vec<crate::api::fleet::GatewayView>, PageError> {
    use crate::api::fleet::{list_gateways, GatewayParams};
    let gateways = list_gateways(
        axum::extract::State(s.clone()),
        user.clone(),
        crate::api::ApiQuery(GatewayParams::default()),
    )
    .await;
    Ok(api(user, gateways)?.items)
}

/// Turns markup into the HTML answer.
pub(crate) fn html(m: Markup) -> Html<String> {
    Html(m.into_string())
}

/// A 404 page for what does not exist.
pub(crate) fn not_found(user: Option<&Principal>, what: &str) -> Response {
    error_page(user, ApiError::not_found(what.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AnyStore, Role};
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use std::sync::Arc;
    use tower::ServiceExt;

    async fn state(dir: &std::path::Path) -> ApiState {
        let url = format!("sqlite://{}?mode=rwc", dir.join("t.db").display());
        let store = AnyStore::connect(&url).await.unwrap();
        crate::store::Store::migrate(&store).await.unwrap();
        ApiState::new(Arc::new(store), false)
    }

    #[tokio::test]
    async fn pages_send_strangers_to_the_login_and_back() {
        let dir = tempfile::tempdir().unwrap();
        let app = router(state(dir.path()).await);
        let res = app
            .clone()
            .oneshot(
                Request::get("/alerts?status=open")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            res.headers()["location"],
            "/login?next=%2Falerts%3Fstatus%3Dopen"
        );
        let res = app
            .clone()
            .oneshot(Request::get("/login").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert!(res.status().is_success());
        let res = app
            .oneshot(
                Request::get("/assets/dashboard.css")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert!(res.status().is_success());
        assert_eq!(res.headers()["content-type"], "text/css; charset=utf-8");
    }

    /// The API and the dashboard over one store, and a signed-in cookie per role.
    async fn signed_in(dir: &std::path::Path) -> (Router, Vec<(Role, String)>) {
        let state = state(dir).await;
        let app = router(state.clone()).merge(crate::api::router(state.clone()));
        let mut cookies = Vec::new();
        for role in [Role::Viewer, Role::Operator, Role::Admin] {
            let name = role.as_str();
            let password = "a long enough password";
            crate::store::AccountStore::add_user(
                state.store.as_ref(),
                &crate::store::NewUser {
                    username: name.into(),
                    password_hash: crate::credentials::hash_password(password).unwrap(),
                    role,
                },
            )
            .await
            .unwrap();
            let res = app
                .clone()
                .oneshot(
                    Request::post("/api/v1/auth/login")
                        .header("content-type", "application/json")
                        .body(Body::from(
                            serde_json::json!({"username": name, "password": password}).to_string(),
                        ))
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            let cookie = res.headers()["set-cookie"].to_str().unwrap();
            cookies.push((role, cookie.split(';').next().unwrap().to_string()));
        }
        (app, cookies)
    }

    async fn get_page(app: &Router, cookie: &str, path: &str) -> (StatusCode, String) {
        let res = app
            .clone()
            .oneshot(
                Request::get(path)
                    .header("cookie", cookie)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = res.status();
        let body = http_body_util::BodyExt::collect(res.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn every_page_renders_and_shows_actions_only_to_the_roles_allowed_them() {
        let dir = tempfile::tempdir().unwrap();
        let (app, cookies) = signed_in(dir.path()).await;
        for (role, cookie) in &cookies {
            for path in ["/", "/alerts", "/fleet", "/sites", "/reports?status=open"] {
                let (status, body) = get_page(&app, cookie, path).await;
                assert_eq!(status, StatusCode::OK, "{role:?} {path}: {body}");
                assert!(
                    body.contains(&format!("id=\"user-role\">{}</span>", role.as_str())),
                    "{body}"
                );
                assert!(body.contains("name=\"csrf-token\" content=\""), "{body}");
                assert!(!body.contains(" style="), "no inline styles (CSP): {path}");
            }
            let (status, body) = get_page(&app, cookie, "/upload").await;
            let operator = *role >= Role::Operator;
            assert_eq!(status.is_success(), operator, "{role:?} /upload: {body}");
            assert_eq!(body.contains("href=\"/upload\""), operator);
            let (_, queue) = get_page(&app, cookie, "/alerts").await;
            assert_eq!(queue.contains("id=\"bulk-ack\""), operator);
            let (_, sites) = get_page(&app, cookie, "/sites").await;
            assert_eq!(sites.contains("id=\"new-site-form\""), *role == Role::Admin);
        }
        let rendered_at = chrono::Utc::now();
        let (_, reports) = get_page(&app, &cookies[0].1, "/reports?status=open&min_level=2").await;
        // The report period ends after the page was asked for (its `to` is exclusive):
        // what was received just before is in the report.
        let to = reports
            .split("id=\"report-to\"")
            .nth(1)
            .and_then(|rest| rest.split("value=\"").nth(1))
            .and_then(|rest| rest.split('"').next())
            .expect("the report form's to");
        let to = chrono::DateTime::parse_from_rfc3339(to).expect("RFC 3339");
        assert!(to > rendered_at, "to {to} is after {rendered_at}");
        assert!(
            reports.contains("href=\"/api/v1/alerts/export.csv?status=open&amp;min_level=2\""),
            "{reports}"
        );
        for id in [
            "report-form",
            "report-site",
            "report-from",
            "report-to",
            "export-csv",
        ] {
            assert!(reports.contains(&format!("id=\"{id}\"")), "{id}");
        }
        // A bad filter is the API's 400 message on the page, not a crash.
        let (status, body) = get_page(&app, &cookies[0].1, "/alerts?min_level=hot").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body.contains("id=\"queue-error\"") && body.contains("severity"),
            "{body}"
        );
        let (status, _) = get_page(&app, &cookies[0].1, "/alerts/not-a-uuid").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    /// A finding of `track` observed now on `neta-similar`: level `level`, or (level 0)
    /// a cool exception, 14 K below its sibling phase, when `cool` is set.
    fn finding(
        track: uuid::Uuid,
        level: u8,
        max_c: f64,
        cool: bool,
    ) -> chitti_common::finding::Finding {
        use chitti_common::finding::*;
        use chitti_common::geometry::{PixelPoint, PixelRect};
        use chitti_common::severity::{AssessedInputs, ReferenceKind, SeverityAssessment};
        let now = chrono::Utc::now();
        let sibling_c = max_c + 14.0;
        Finding {
            id: uuid::Uuid::now_v7(),
            site: "north-yard".into(),
            gateway: "gw-07".into(),
            camera: "cam-1".into(),
            asset: Some("bay3-disconnector-c".into()),
            preset: None,
            captured_at: now.fixed_offset(),
            observed_at: now,
            source: FindingSource::Stream,
            component: None,
            hotspot: HotspotSummary {
                bbox: PixelRect {
                    x: 10,
                    y: 10,
                    w: 6,
                    h: 5,
                },
                max_c,
                mean_c: max_c - 2.0,
                max_at: PixelPoint { x: 12, y: 12 },
                area_px: 30,
            },
            reference: ReferenceSummary {
                ambient_c: 20.0,
                ambient_source: "camera atmospheric temperature".into(),
                similar: cool.then(|| SimilarComponent {
                    label: "phase A".into(),
                    celsius: sibling_c,
                }),
            },
            severity: SeverityAssessment {
                table: "neta-similar".into(),
                table_version: 1,
                level,
                level_name: layout::level_name("neta-similar", level),
                action: "investigate".into(),
                inputs: AssessedInputs {
                    max_c,
                    reference_c: cool.then_some(sibling_c),
                    reference_kind: cool.then_some(ReferenceKind::SimilarComponent),
                    reference_source: cool.then(|| "phase A".into()),
                    delta_c: cool.then_some(-14.0),
                    compared_c: if cool { -14.0 } else { max_c },
                },
                cool_exception: cool,
                not_assessed: None,
                qualitative: false,
            },
            measurement: Measurement {
                emissivity: 0.95,
                distance_m: 10.0,
                reflected_c: 20.0,
                atmosphere_c: 20.0,
                relative_humidity: 0.5,
                qualitative: false,
            },
            track: TrackSummary {
                id: track,
                first_seen: now,
                last_seen: now,
                frames: 10,
                state: TrackState::Raised,
            },
            model: None,
            evidence: None,
            historical: false,
            quality: None,
        }
    }

    /// The HTML from the element whose opening tag contains `marker` up to `end`.
    fn section<'a>(body: &'a str, marker: &str, end: &str) -> &'a str {
        let from = body
            .find(marker)
            .unwrap_or_else(|| panic!("{marker} in {body}"));
        let rest = &body[from..];
        &rest[..rest.find(end).unwrap_or(rest.len())]
    }

    /// The table row holding `needle`.
    fn row_with<'a>(body: &'a str, needle: &str) -> &'a str {
        let at = body
            .find(needle)
            .unwrap_or_else(|| panic!("{needle} in {body}"));
        let start = body[..at].rfind("<tr").expect("a row");
        let end = at + body[at..].find("</tr>").expect("the row's end");
        &body[start..end]
    }

    #[tokio::test]
    async fn a_cool_exception_alert_shows_as_one_not_as_level_0_none() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path()).await;
        let (cool, hot, plain) = (
            uuid::Uuid::now_v7(),
            uuid::Uuid::now_v7(),
            uuid::Uuid::now_v7(),
        );
        let findings: Vec<_> = [
            finding(cool, 0, 21.0, true),
            finding(hot, 2, 70.0, false),
            finding(plain, 0, 24.0, false),
        ]
        .into_iter()
        .map(|finding| crate::store::IngestedFinding {
            finding,
            received_at: chrono::Utc::now(),
            batch_id: uuid::Uuid::now_v7(),
        })
        .collect();
        crate::store::IngestStore::insert_findings(state.store.as_ref(), &findings)
            .await
            .unwrap();
        let alerts =
            crate::store::AlertStore::list_alerts(state.store.as_ref(), &Default::default())
                .await
                .unwrap()
                .items;
        let id_of = |track| alerts.iter().find(|a| a.track_id == track).unwrap().id;
        let (cool_id, plain_id) = (id_of(cool), id_of(plain));
        drop(state);
        let (app, cookies) = signed_in(dir.path()).await;
        let cookie = &cookies[0].1;
        let badge = "<span class=\"sev sev-cool\" data-level=\"0\" data-cool-exception=\"true\">cool exception</span>";

        // The queue: the cool alert's row says so; a plain level-0 alert stays "L0 none".
        let (status, queue) = get_page(&app, cookie, "/alerts").await;
        assert_eq!(status, StatusCode::OK);
        let row = row_with(&queue, &format!("data-id=\"{cool_id}\""));
        assert!(row.contains(badge), "{row}");
        assert!(!row.contains("L0") && !row.contains("none"), "{row}");
        let row = row_with(&queue, &format!("data-id=\"{plain_id}\""));
        assert!(row.contains("L0 none") && !row.contains("cool"), "{row}");

        // The overview: its own bar and legend row, not counted in L0; the hottest list.
        let (_, overview) = get_page(&app, cookie, "/").await;
        let bars = section(&overview, "id=\"open-by-severity\"", "</section>");
        assert!(bars.contains("3 open"), "{bars}");
        assert!(bars.contains("class=\"bar sev-fill-cool\""), "{bars}");
        assert!(
            bars.contains("<span class=\"sev sev-cool\">cool exception</span>: 1"),
            "{bars}"
        );
        assert!(
            bars.contains("<span class=\"sev sev-0\">L0</span>: 1"),
            "{bars}"
        );
        assert!(
            bars.contains("<span class=\"sev sev-2\">L2</span>: 1"),
            "{bars}"
        );
        let hottest = section(&overview, "id=\"hottest\"", "</section>");
        let cool_row = row_with(hottest, &format!("/alerts/{cool_id}"));
        assert!(cool_row.contains(badge), "{cool_row}");

        // The alert page: header, latest finding, history and provenance.
        let (status, page) = get_page(&app, cookie, &format!("/alerts/{cool_id}")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let summary = section(&page, "id=\"alert-summary\"", "</section>");
        assert!(summary.contains(badge), "{summary}");
        assert!(summary.contains("latest (cool exception)"), "{summary}");
        assert!(!page.contains("L0 none"), "{page}");
        let history = section(&page, "id=\"history\"", "</section>");
        assert!(history.contains(badge), "{history}");
        let provenance = section(&page, "id=\"provenance\"", "</section>");
        assert!(provenance.contains(badge), "{provenance}");
    }
}
