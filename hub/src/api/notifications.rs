//! Notifications: the delivery log of an alert, the outbox with failures first, and the
//! configured channels with their state, a test message and re-enabling.
//!
//! | endpoint | role |
//! |---|---|
//! | `GET /api/v1/alerts/{id}/notifications` | viewer |
//! | `GET /api/v1/notifications` (`?failures_first=&limit=`) | viewer |
//! | `GET /api/v1/notification-channels` | admin |
//! | `POST /api/v1/notification-channels/{id}/test` | admin |
//! | `POST /api/v1/notification-channels/{id}/enable` | admin |
//!
//! Channels come from the hub's configuration (`[notifications]`), so they are read
//! here, never written. A channel's secret, routing key and the path of its URL (where
//! Slack and Teams keep their secret) are never returned. Sending a test message and
//! turning a channel back on are audited (`notification.test`, `notification.enable`).

use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::{audit, ApiQuery, ApiState, ListPage};
use crate::notify::config::redact_url;
use crate::store::{AlertStore, NotificationRecord, NotificationStore, Role};
use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(alert_notifications))
        .routes(routes!(list_notifications))
        .routes(routes!(list_channels))
        .routes(routes!(test_channel))
        .routes(routes!(enable_channel))
}

/// The delivery log of one alert: every message its transitions caused, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/alerts/{id}/notifications",
    tag = "notifications",
    params(("id" = Uuid, Path, description = "Alert id")),
    responses(
        (status = 200, description = "The alert's messages and what became of each", body = ListPage<NotificationRecord>),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the viewer role", body = ErrorBody),
        (status = 404, description = "No such alert", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn alert_notifications(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<ListPage<NotificationRecord>>, ApiError> {
    p.require(Role::Viewer)?;
    // A malformed id is the API's own 400, never the framework's plain-text one.
    let id = super::accounts::parse_uuid("alert", &id)?;
    if s.store.alert(id).await?.is_none() {
        return Err(ApiError::not_found("alert"));
    }
    let items = s.store.list_notifications(Some(id), false, 1000).await?;
    Ok(Json(ListPage::whole(items)))
}

/// Filters of the outbox list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NotificationParams {
    /// Failed messages first, then those being retried, then the rest (default true).
    pub failures_first: Option<bool>,
    /// How many (1–1000, default 200).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// The newest messages of every alert, failures first: what the notifications page shows.
#[utoipa::path(
    get,
    path = "/api/v1/notifications",
    tag = "notifications",
    params(NotificationParams),
    responses(
        (status = 200, description = "Messages, failed and retrying ones first", body = ListPage<NotificationRecord>),
        (status = 400, description = "An invalid filter", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the viewer role", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn list_notifications(
    State(s): State<ApiState>,
    p: Principal,
    ApiQuery(q): ApiQuery<NotificationParams>,
) -> Result<Json<ListPage<NotificationRecord>>, ApiError> {
    p.require(Role::Viewer)?;
    let limit = q.limit.unwrap_or(200);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be 1–1000"));
    }
    let items = s
        .store
        .list_notifications(None, q.failures_first.unwrap_or(true), limit)
        .await?;
    Ok(Json(ListPage::whole(items)))
}

/// A configured channel, without its secrets.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChannelView {
    /// Its id, as rules name it.
    pub id: String,
    /// `email`, `webhook`, `slack`, `teams` or `pagerduty`.
    pub kind: String,
    /// Where it posts: scheme and host only (the path may hold a secret).
    pub endpoint: Option<String>,
    /// E-mail recipients.
    pub to: Vec<String>,
    /// The rules that send to it (directly or as escalation).
    pub rules: Vec<String>,
    /// When it was turned off (a webhook answered 410 Gone); `null`: on.
    pub disabled_at: Option<DateTime<Utc>>,
    /// Why it was turned off.
    pub disabled_reason: Option<String>,
}

/// The configured channels and whether each is on.
#[utoipa::path(
    get,
    path = "/api/v1/notification-channels",
    tag = "notifications",
    responses(
        (status = 200, description = "Every configured channel, by id", body = ListPage<ChannelView>),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn list_channels(
    State(s): State<ApiState>,
    p: Principal,
) -> Result<Json<ListPage<ChannelView>>, ApiError> {
    p.require(Role::Admin)?;
    let disabled = s.store.disabled_channels().await?;
    let config = &s.notifications;
    let items = config
        .channels
        .iter()
        .map(|c| channel_view(config, c, &disabled))
        .collect();
    Ok(Json(ListPage::whole(items)))
}

/// A channel as the API shows it, with the rules that use it and whether it is off.
fn channel_view(
    config: &crate::notify::config::NotificationsConfig,
    c: &crate::notify::config::ChannelConfig,
    disabled: &[(String, DateTime<Utc>, String)],
) -> ChannelView {
    let off = disabled.iter().find(|(id, ..)| *id == c.id);
    ChannelView {
        id: c.id.clone(),
        kind: c.kind.as_str().to_string(),
        endpoint: c.endpoint().map(redact_url),
        to: c.to.clone(),
        rules: config
            .rules
            .iter()
            .filter(|r| r.channels.contains(&c.id) || r.escalate_to.contains(&c.id))
            .map(|r| r.id.clone())
            .collect(),
        disabled_at: off.map(|(_, at, _)| *at),
        disabled_reason: off.map(|(.., why)| why.clone()),
    }
}

/// What a test message met.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TestResult {
    /// The channel.
    pub channel: String,
    /// Whether the receiver took it.
    pub delivered: bool,
    /// The receiver's answer, or why it was not delivered.
    pub answer: String,
}

fn existing_channel<'a>(
    s: &'a ApiState,
    id: &str,
) -> Result<&'a crate::notify::config::ChannelConfig, ApiError> {
    s.notifications
        .channels
        .iter()
        .find(|c| c.id == id)
        .ok_or_else(|| ApiError::not_found("notification channel"))
}

/// Sends a test message to a channel now (not through the outbox) and answers what the
/// receiver said; a receiver that refuses it is a result, not an error.
#[utoipa::path(
    post,
    path = "/api/v1/notification-channels/{id}/test",
    tag = "notifications",
    params(("id" = String, Path, pattern = "^[a-z0-9_-]{1,64}$", description = "Channel id")),
    responses(
        (status = 200, description = "What the receiver answered", body = TestResult),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
        (status = 404, description = "No such channel", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn test_channel(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<TestResult>, ApiError> {
    p.require(Role::Admin)?;
    existing_channel(&s, &id)?;
    let result = crate::notify::send_test(&s.notifications, &id, s.dashboard_url.clone()).await;
    let (delivered, answer) = match result {
        Ok(answer) => (true, answer),
        Err(e) => (false, e.to_string()),
    };
    audit(
        &s,
        &p,
        "notification.test",
        &id,
        json!({ "delivered": delivered, "answer": answer }),
    )
    .await?;
    Ok(Json(TestResult {
        channel: id,
        delivered,
        answer,
    }))
}

/// Turns a channel that was turned off (410 Gone) back on.
#[utoipa::path(
    post,
    path = "/api/v1/notification-channels/{id}/enable",
    tag = "notifications",
    params(("id" = String, Path, pattern = "^[a-z0-9_-]{1,64}$", description = "Channel id")),
    responses(
        (status = 200, description = "The channel, on", body = ChannelView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
        (status = 404, description = "No such channel", body = ErrorBody),
        (status = 409, description = "The channel is not off", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn enable_channel(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<ChannelView>, ApiError> {
    p.require(Role::Admin)?;
    let channel = existing_channel(&s, &id)?;
    if !s.store.enable_channel(&id).await? {
        return Err(ApiError::new(
            super::error::ErrorCode::Conflict,
            format!("notification channel {id} is not disabled"),
        ));
    }
    audit(&s, &p, "notification.enable", &id, json!({})).await?;
    tracing::info!(channel = %id, actor = %p.actor(), "notification channel enabled");
    let disabled = s.store.disabled_channels().await?;
    Ok(Json(channel_view(&s.notifications, channel, &disabled)))
}
