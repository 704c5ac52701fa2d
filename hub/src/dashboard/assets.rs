//! The dashboard's stylesheet and scripts, compiled into the binary: an ops room
//! without internet gets the same page as anyone.

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

/// Every asset: name, media type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "dashboard.css",
        "text/css; charset=utf-8",
        include_str!("../../assets/dashboard/dashboard.css"),
    ),
    (
        "dashboard.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/dashboard/dashboard.js"),
    ),
    (
        "viewer.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/dashboard/viewer.js"),
    ),
    (
        "upload.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/dashboard/upload.js"),
    ),
];

/// `GET /assets/{file}`.
pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, media_type, body)) => {
            ([(header::CONTENT_TYPE, *media_type)], *body).into_response()
        }
        None => super::not_found(None, &format!("asset {file}")),
    }
}
