//! The one error shape of the API: `{"error": {"code": "...", "message": "..."}}`, with
//! a closed set of codes. Messages name what was wrong and never echo secrets, SQL or
//! stack traces.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Every error code the API returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed or a value is invalid (400).
    BadRequest,
    /// No valid credentials (401).
    Unauthorized,
    /// Authenticated, but the role does not allow it, or the CSRF token is missing (403).
    Forbidden,
    /// No such resource (404).
    NotFound,
    /// The resource's state does not allow it, or it already exists (409).
    Conflict,
    /// The body is larger than accepted (413).
    PayloadTooLarge,
    /// The body's content is not an accepted kind (415).
    UnsupportedMediaType,
    /// The `Range` of a download lies outside the file (416).
    RangeNotSatisfiable,
    /// A versioned document was written without `If-Match` (428).
    PreconditionRequired,
    /// A document is well-formed but invalid: `problems` lists every problem (422).
    InvalidDocument,
    /// The request names a host this hub does not serve (`http.public_origins`, 421).
    MisdirectedRequest,
    /// Too many requests (429).
    RateLimited,
    /// The database is unreachable (503).
    Unavailable,
    /// A bug (500).
    Internal,
}

impl ErrorCode {
    /// The HTTP status of the code.
    pub fn status(self) -> StatusCode {
        match self {
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
            Self::PreconditionRequired => StatusCode::PRECONDITION_REQUIRED,
            Self::InvalidDocument => StatusCode::UNPROCESSABLE_ENTITY,
            Self::MisdirectedRequest => StatusCode::MISDIRECTED_REQUEST,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An API error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The code.
    pub code: ErrorCode,
    /// What was wrong, for people.
    pub message: String,
    /// Every problem of an invalid document, `path: problem` each (422 only).
    pub problems: Vec<String>,
}

impl ApiError {
    /// An error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            problems: Vec::new(),
        }
    }

    /// 422: `what` is invalid, for each of `problems`.
    pub fn invalid_document(what: &str, problems: Vec<String>) -> Self {
        Self {
            code: ErrorCode::InvalidDocument,
            message: format!(
                "{} problem(s) in the {what}: {}",
                problems.len(),
                problems.join("; ")
            ),
            problems,
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// 401.
    pub fn unauthorized() -> Self {
        Self::new(ErrorCode::Unauthorized, "sign in, or send a bearer token")
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    /// 404.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, format!("{} not found", what.into()))
    }
}

/// The body of every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// One of a closed set of codes.
    pub code: ErrorCode,
    /// What was wrong, for people.
    pub message: String,
    /// Every problem of an invalid document, `path: problem` each (with
    /// `invalid_document`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                problems: self.problems,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // Busy or the database away: a client may come back soon.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("2"),
            );
        }
        response
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(err: crate::store::StoreError) -> Self {
        use crate::store::StoreError as E;
        match err {
            E::Unavailable(_) => Self::new(
                ErrorCode::Unavailable,
                "the database is unavailable; try again",
            ),
            E::AlertNotFound(id) => Self::not_found(format!("alert {id}")),
            E::InvalidTransition { .. } | E::VersionConflict { .. } => {
                Self::new(ErrorCode::Conflict, err.to_string())
            }
            E::InvalidCursor => Self::bad_request("invalid pagination cursor"),
            E::InvalidId(e) => Self::bad_request(e.to_string()),
            E::GatewayExists { .. } | E::UserExists { .. } | E::AlreadyExists { .. } => {
                Self::new(ErrorCode::Conflict, err.to_string())
            }
            // "site north-yard not found", "structure north-yard/bay-3 not found".
            E::NotFound { .. } => Self::new(ErrorCode::NotFound, err.to_string()),
            // Names what still refers to it: "site north-yard (structures, gateways) is in use".
            E::InUse { .. } => Self::new(ErrorCode::Conflict, err.to_string()),
            // The reasons are fixed texts of the store's, never the value itself.
            E::InvalidInput { .. } => Self::bad_request(err.to_string()),
            other => {
                // Details (SQL, constraint names) go to the log, not to the client.
                tracing::error!(err = %other, "store error");
                Self::new(ErrorCode::Internal, "internal error")
            }
        }
    }
}
