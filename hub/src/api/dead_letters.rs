//! Messages ingest could not use, so that "why did my gateway's findings not arrive"
//! has an answer without a shell.
//!
//! | endpoint | role |
//! |---|---|
//! | `GET /api/v1/dead-letters` (filters below; keyset pages) | operator |
//! | `GET /api/v1/dead-letters/groups` (the same filters): counts by class and gateway | operator |
//! | `GET /api/v1/dead-letters/{id}/payload`: the payload byte for byte | admin |
//!
//! Payloads are whatever arrived — unverified, possibly hostile — so lists show them
//! escaped (control characters and invalid UTF-8 as `\u{…}` / `\x..`) and cut to
//! [`PREVIEW_CHARS`]; the raw bytes are an admin's download, never inline HTML.

use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::{parse_cursor, ApiQuery, ApiState, ListPage};
use crate::store::{DeadLetterGroup, DeadLetterQuery, DeadLetterRecord, IngestStore, Role};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Characters of a payload shown in lists.
pub const PREVIEW_CHARS: usize = 500;

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_dead_letters))
        .routes(routes!(dead_letter_groups))
        .routes(routes!(dead_letter_payload))
}

/// Filters of the dead-letter list; they combine.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterParams {
    /// Only this class: the reason's first word (`signature`, `schema`, `json`,
    /// `store`, …).
    pub class: Option<String>,
    /// Only this site.
    pub site: Option<String>,
    /// Only this gateway id (in every site, unless `site` is set too).
    pub gateway: Option<String>,
    /// Only letters received at or after this (hub clock, RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Only letters received before this (hub clock, RFC 3339).
    pub until: Option<DateTime<Utc>>,
    /// Page size, 1 to 1000 (default 100; 0 is read as 1, larger values as 1000).
    #[param(maximum = 4294967295u32)]
    pub limit: Option<u32>,
    /// The previous page's `next_cursor`.
    pub after: Option<String>,
}

impl DeadLetterParams {
    /// The store query, or a 400 naming what is wrong.
    pub(crate) fn into_query(self) -> Result<DeadLetterQuery, ApiError> {
        Ok(DeadLetterQuery {
            class: self.class.filter(|c| !c.is_empty()),
            site: self.site.filter(|c| !c.is_empty()),
            gateway: self.gateway.filter(|c| !c.is_empty()),
            since: self.since,
            until: self.until,
            limit: self.limit.unwrap_or(crate::store::DEFAULT_PAGE_LIMIT),
            after: parse_cursor(&self.after)?,
        })
    }
}

/// A dead letter as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterView {
    /// Sequence number (for the payload download).
    pub id: i64,
    /// When it arrived (hub clock).
    pub received_at: DateTime<Utc>,
    /// Its MQTT topic (or what refused it, for rows the database refused).
    pub topic: String,
    /// The reason's first word.
    pub class: String,
    /// Why it was not used.
    pub reason: String,
    /// The site its topic names.
    pub site: Option<String>,
    /// The gateway its topic names.
    pub gateway: Option<String>,
    /// Payload size in bytes.
    pub payload_bytes: usize,
    /// The payload as text, escaped and cut to [`PREVIEW_CHARS`] characters.
    pub payload_preview: String,
    /// Whether the preview is cut.
    pub payload_truncated: bool,
}

impl From<DeadLetterRecord> for DeadLetterView {
    fn from(d: DeadLetterRecord) -> Self {
        let (payload_preview, payload_truncated) = preview(&d.letter.payload);
        Self {
            id: d.id,
            received_at: d.letter.received_at,
            topic: d.letter.topic,
            class: d.class,
            reason: d.letter.reason,
            site: d.site,
            gateway: d.gateway,
            payload_bytes: d.letter.payload.len(),
            payload_preview,
            payload_truncated,
        }
    }
}

/// `payload` as printable text: valid UTF-8 with control characters escaped
/// (`\n` and `\t` kept as escapes too), other bytes as `\xNN`; at most
/// [`PREVIEW_CHARS`] characters, and whether it was cut.
pub fn preview(payload: &[u8]) -> (String, bool) {
    let mut out = String::new();
    let mut shown = 0;
    let mut push = |out: &mut String, piece: &str| -> bool {
        let n = piece.chars().count();
        if shown + n > PREVIEW_CHARS {
            return false;
        }
        out.push_str(piece);
        shown += n;
        true
    };
    for chunk in payload.utf8_chunks() {
        for c in chunk.valid().chars() {
            let piece = if c.is_control() || c == '\u{FFFD}' {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            };
            if !push(&mut out, &piece) {
                return (out, true);
            }
        }
        for b in chunk.invalid() {
            if !push(&mut out, &format!("\\x{b:02x}")) {
                return (out, true);
            }
        }
    }
    (out, false)
}

/// One (class, site, gateway) with its count.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterGroupView {
    /// The reason's first word.
    pub class: String,
    /// Site (`null` for messages not on a gateway topic).
    pub site: Option<String>,
    /// Gateway.
    pub gateway: Option<String>,
    /// How many letters.
    pub count: u64,
    /// When the newest arrived.
    pub last_at: DateTime<Utc>,
}

impl From<DeadLetterGroup> for DeadLetterGroupView {
    fn from(g: DeadLetterGroup) -> Self {
        Self {
            class: g.class,
            site: g.site,
            gateway: g.gateway,
            count: g.count,
            last_at: g.last_at,
        }
    }
}

/// A page of dead letters, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/dead-letters",
    tag = "fleet",
    params(DeadLetterParams),
    responses(
        (status = 200, description = "A page of dead letters, newest first", body = ListPage<DeadLetterView>),
        (status = 400, description = "An invalid filter or cursor, or an unknown parameter", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the operator role", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn list_dead_letters(
    State(s): State<ApiState>,
    p: Principal,
    ApiQuery(q): ApiQuery<DeadLetterParams>,
) -> Result<Json<ListPage<DeadLetterView>>, ApiError> {
    p.require(Role::Operator)?;
    let page = s.store.dead_letters(&q.into_query()?).await?;
    Ok(Json(ListPage::of(page, DeadLetterView::from)))
}

/// Dead letters counted by class, site and gateway (the list's filters; `limit` and
/// `after` are ignored), most first.
#[utoipa::path(
    get,
    path = "/api/v1/dead-letters/groups",
    tag = "fleet",
    params(DeadLetterParams),
    responses(
        (status = 200, description = "Counts by class, site and gateway, most first", body = ListPage<DeadLetterGroupView>),
        (status = 400, description = "An invalid filter, or an unknown parameter", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the operator role", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn dead_letter_groups(
    State(s): State<ApiState>,
    p: Principal,
    ApiQuery(q): ApiQuery<DeadLetterParams>,
) -> Result<Json<ListPage<DeadLetterGroupView>>, ApiError> {
    p.require(Role::Operator)?;
    let groups = s.store.dead_letter_groups(&q.into_query()?).await?;
    Ok(Json(ListPage::whole(
        groups.into_iter().map(DeadLetterGroupView::from).collect(),
    )))
}

/// A dead letter's payload, byte for byte, as a download.
#[utoipa::path(
    get,
    path = "/api/v1/dead-letters/{id}/payload",
    tag = "fleet",
    params(("id" = i64, Path, description = "Dead letter id")),
    responses(
        (status = 200, description = "The payload as received", body = super::evidence::BinaryBody, content_type = "application/octet-stream"),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
        (status = 404, description = "No such dead letter", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn dead_letter_payload(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    p.require(Role::Admin)?;
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("dead letter id {id:?} is not a number")))?;
    let letter = s
        .store
        .dead_letter(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("dead letter {id}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"dead-letter-{id}.bin\""),
            ),
        ],
        letter.letter.payload,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_escape_control_and_invalid_bytes_and_cut_long_payloads() {
        assert_eq!(
            preview(b"{\"a\":1}\n\x00\xff<b>"),
            (r#"{"a":1}\u{a}\u{0}\xff<b>"#.to_owned(), false)
        );
        let long = vec![b'x'; PREVIEW_CHARS + 1];
        let (text, cut) = preview(&long);
        assert!(cut);
        assert_eq!(text.len(), PREVIEW_CHARS);
        assert!(!preview(&long[..PREVIEW_CHARS]).1);
        // An escape is never cut in half.
        let mut edge = vec![b'x'; PREVIEW_CHARS - 2];
        edge.push(0xff);
        let (text, cut) = preview(&edge);
        assert!(cut && text.ends_with('x'), "{text}");
    }
}
