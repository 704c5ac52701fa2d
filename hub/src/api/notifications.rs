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
//! | `GET /api/v1/notification-settings` (`ETag`) | admin |
//! | `PUT /api/v1/notification-settings` (`If-Match`; a stale one is 409) | admin |
//!
//! Channels and rules come from the hub's file (`[notifications]`, read here, never
//! written) and from the settings admins edit here (`notify::settings`), both in force
//! together. A channel's secret, routing key and the path of its URL (where Slack and
//! Teams keep their secret) are never returned; a webhook secret the hub draws is shown
//! once, in the answer of the edit that made it. Sending a test message, turning a
//! channel back on and every edit are audited (`notification.test`,
//! `notification.enable`, `notification.settings`).

use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::{audit, ApiQuery, ApiState, ListPage};
use crate::notify::config::{redact_url, NotificationsConfig};
use crate::notify::settings::{self, SettingsDocument};
use crate::store::{AlertStore, NotificationRecord, NotificationStore, Role, StoredSettings};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
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
        .routes(routes!(get_settings, put_settings))
}

/// The configuration in force: the file's and the admins' settings, with the settings
/// as stored and what keeps them from applying (an id the file defines too).
async fn effective(
    s: &ApiState,
) -> Result<
    (
        NotificationsConfig,
        Option<StoredSettings>,
        Vec<chitti_common::config::ConfigError>,
    ),
    ApiError,
> {
    let stored = s.store.notification_settings().await?;
    let (config, problems) = settings::effective(&s.notifications, stored.as_ref());
    Ok((config, stored, problems))
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
    /// Where it is defined: `file` (the hub's configuration) or `settings` (edited
    /// through the API or the dashboard).
    #[schema(schema_with = source_schema)]
    pub source: &'static str,
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
    let (config, ..) = effective(&s).await?;
    let items = config
        .channels
        .iter()
        .map(|c| channel_view(&config, &s.notifications, c, &disabled))
        .collect();
    Ok(Json(ListPage::whole(items)))
}

/// A channel as the API shows it, with the rules that use it and whether it is off.
fn channel_view(
    config: &NotificationsConfig,
    file: &NotificationsConfig,
    c: &crate::notify::config::ChannelConfig,
    disabled: &[(String, DateTime<Utc>, String)],
) -> ChannelView {
    let off = disabled.iter().find(|(id, ..)| *id == c.id);
    ChannelView {
        id: c.id.clone(),
        source: if file.channels.iter().any(|f| f.id == c.id) {
            "file"
        } else {
            "settings"
        },
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

fn source_schema() -> utoipa::openapi::schema::Object {
    super::enum_schema(&["file", "settings"], false, "Where the channel is defined")
}

fn existing_channel<'a>(
    config: &'a NotificationsConfig,
    id: &str,
) -> Result<&'a crate::notify::config::ChannelConfig, ApiError> {
    config
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
    let (config, ..) = effective(&s).await?;
    existing_channel(&config, &id)?;
    let result = crate::notify::send_test(&config, &id, s.dashboard_url.clone()).await;
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
    let (config, ..) = effective(&s).await?;
    let channel = existing_channel(&config, &id)?;
    if !s.store.enable_channel(&id).await? {
        return Err(ApiError::new(
            super::error::ErrorCode::Conflict,
            format!("notification channel {id} is not disabled"),
        ));
    }
    audit(&s, &p, "notification.enable", &id, json!({})).await?;
    tracing::info!(channel = %id, actor = %p.actor(), "notification channel enabled");
    let disabled = s.store.disabled_channels().await?;
    Ok(Json(channel_view(
        &config,
        &s.notifications,
        channel,
        &disabled,
    )))
}

/// The channels and rules admins edit, as the dashboard's editor and the API show them.
#[derive(Debug, Serialize, ToSchema)]
pub struct SettingsView {
    /// The version (also the `ETag`); 0 before the first edit.
    pub version: i64,
    /// The document as TOML (`[[channels]]`, `[[rules]]`, the keys of the file's
    /// `[[notifications.channels]]` and `[[notifications.rules]]`), every secret shown
    /// as `(kept)`.
    pub toml: String,
    /// The same document as JSON, secrets as `(kept)`.
    #[schema(value_type = Object)]
    pub document: serde_json::Value,
    /// Who saved it last.
    pub updated_by: Option<String>,
    /// When.
    pub updated_at: Option<DateTime<Utc>>,
    /// Channel ids the hub's file defines (read-only here).
    pub file_channels: Vec<String>,
    /// Rule ids the hub's file defines (read-only here).
    pub file_rules: Vec<String>,
    /// Why the settings are not in force, if they are not (the file came to define one
    /// of their ids since they were saved): the file's channels and rules run alone.
    pub problems: Vec<String>,
    /// Webhook secrets the hub drew for channels written without one, by channel id:
    /// shown in the answer to that edit only, never again.
    pub new_secrets: std::collections::BTreeMap<String, String>,
}

/// An edit: the whole document, as TOML text or as JSON (exactly one of the two).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsRequest {
    /// The document as TOML (`[[channels]]`, `[[rules]]`).
    #[schema(max_length = 65536)]
    pub toml: Option<String>,
    /// The channels, as JSON objects with the file's keys.
    #[schema(value_type = Option<Vec<Object>>, max_items = 256)]
    pub channels: Option<Vec<serde_json::Value>>,
    /// The rules, as JSON objects with the file's keys.
    #[schema(value_type = Option<Vec<Object>>, max_items = 256)]
    pub rules: Option<Vec<serde_json::Value>>,
}

fn settings_view(
    s: &ApiState,
    stored: Option<&StoredSettings>,
    problems: &[chitti_common::config::ConfigError],
) -> Result<SettingsView, ApiError> {
    let doc = match stored {
        Some(st) => {
            serde_json::from_value::<SettingsDocument>(st.document.clone()).map_err(|e| {
                ApiError::new(
                    super::error::ErrorCode::Internal,
                    format!("stored notification settings do not decode: {e}"),
                )
            })?
        }
        None => SettingsDocument::default(),
    };
    Ok(SettingsView {
        version: stored.map_or(0, |st| st.version),
        toml: doc.to_toml_redacted(),
        document: serde_json::to_value(doc.redacted()).unwrap_or_default(),
        updated_by: stored.map(|st| st.updated_by.clone()),
        updated_at: stored.map(|st| st.updated_at),
        file_channels: s
            .notifications
            .channels
            .iter()
            .map(|c| c.id.clone())
            .collect(),
        file_rules: s.notifications.rules.iter().map(|r| r.id.clone()).collect(),
        problems: problems.iter().map(|p| p.to_string()).collect(),
        new_secrets: Default::default(),
    })
}

fn with_etag(view: SettingsView) -> axum::response::Response {
    super::with_etag(view.version, Json(view))
}

/// The settings as [`get_settings`] shows them (the dashboard's editor).
pub(crate) async fn current_settings(s: &ApiState) -> Result<SettingsView, ApiError> {
    let (_, stored, problems) = effective(s).await?;
    settings_view(s, stored.as_ref(), &problems)
}

/// The channels and rules edited through the API and the dashboard, secrets shown as
/// `(kept)`, with their version as `ETag`.
#[utoipa::path(
    get,
    path = "/api/v1/notification-settings",
    tag = "notifications",
    responses(
        (status = 200, description = "The settings document and its version", body = SettingsView,
         headers(("ETag" = String, description = "The version, quoted: send it back as If-Match"))),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn get_settings(
    State(s): State<ApiState>,
    p: Principal,
) -> Result<axum::response::Response, ApiError> {
    p.require(Role::Admin)?;
    let (_, stored, problems) = effective(&s).await?;
    Ok(with_etag(settings_view(&s, stored.as_ref(), &problems)?))
}

/// Replaces the channels and rules edited here (the file's stay as they are). The whole
/// document is validated with the file's, every problem at once; `(kept)` keeps a
/// stored secret; a webhook without a secret gets one, shown in this answer only.
#[utoipa::path(
    put,
    path = "/api/v1/notification-settings",
    tag = "notifications",
    params(("If-Match" = Option<String>, Header, pattern = r#"^(W/)?"[0-9]{1,18}"$"#, description = "The ETag of the version edited (\"0\" before the first edit)")),
    request_body = SettingsRequest,
    responses(
        (status = 200, description = "Saved and in force: the new version", body = SettingsView,
         headers(("ETag" = String, description = "The new version, quoted"))),
        (status = 400, description = "The document is invalid: every problem, by path", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
        (status = 409, description = "Changed since the version edited: the message names the current one", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 428, description = "No If-Match", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn put_settings(
    State(s): State<ApiState>,
    p: Principal,
    headers: HeaderMap,
    super::ApiJson(body): super::ApiJson<SettingsRequest>,
) -> Result<axum::response::Response, ApiError> {
    p.require(Role::Admin)?;
    let expected = super::if_match(&headers, "GET /api/v1/notification-settings")?;
    let invalid = |problems: Vec<chitti_common::config::ConfigError>| {
        let list: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        ApiError::bad_request(format!(
            "{} problem(s) in the notification settings: {}",
            list.len(),
            list.join("; ")
        ))
    };
    // The schema's bounds, kept here too: well inside the body limit.
    if body
        .toml
        .as_ref()
        .is_some_and(|t| t.chars().count() > MAX_SETTINGS_CHARS)
    {
        return Err(ApiError::bad_request(format!(
            "toml: longer than {MAX_SETTINGS_CHARS} characters"
        )));
    }
    for (name, items) in [("channels", &body.channels), ("rules", &body.rules)] {
        if items.as_ref().is_some_and(|v| v.len() > MAX_SETTINGS_ITEMS) {
            return Err(ApiError::bad_request(format!(
                "{name}: more than {MAX_SETTINGS_ITEMS}"
            )));
        }
    }
    let mut doc = match body {
        SettingsRequest {
            toml: Some(text),
            channels: None,
            rules: None,
        } => SettingsDocument::from_toml(&text).map_err(invalid)?,
        SettingsRequest {
            toml: None,
            channels,
            rules,
        } => {
            let value = json!({
                "channels": channels.unwrap_or_default(),
                "rules": rules.unwrap_or_default(),
            });
            serde_path_to_error::deserialize::<_, SettingsDocument>(value).map_err(|e| {
                let path = e.path().to_string();
                ApiError::bad_request(format!("{path}: {}", e.into_inner()))
            })?
        }
        _ => {
            return Err(ApiError::bad_request(
                "send the document either as `toml` or as `channels` and `rules`, not both",
            ))
        }
    };
    let stored = s.store.notification_settings().await?;
    let before = match &stored {
        Some(st) => {
            serde_json::from_value::<SettingsDocument>(st.document.clone()).unwrap_or_default()
        }
        None => SettingsDocument::default(),
    };
    let new_secrets = doc.resolve_secrets(&before).map_err(invalid)?;
    settings::merge(&s.notifications, &doc).map_err(invalid)?;
    let document = serde_json::to_value(&doc)
        .map_err(|e| ApiError::new(super::error::ErrorCode::Internal, e.to_string()))?;
    let at = Utc::now();
    let version = s
        .store
        .save_notification_settings(expected, &document, &p.actor(), at)
        .await?;
    let ids = |d: &SettingsDocument| -> (Vec<String>, Vec<String>) {
        (
            d.channels.iter().map(|c| c.id.clone()).collect(),
            d.rules.iter().map(|r| r.id.clone()).collect(),
        )
    };
    let ((old_channels, old_rules), (channels, rules)) = (ids(&before), ids(&doc));
    audit(
        &s,
        &p,
        "notification.settings",
        &format!("version {version}"),
        json!({
            "from_version": expected,
            "channels": channels, "rules": rules,
            "removed_channels": old_channels.iter().filter(|c| !channels.contains(c)).collect::<Vec<_>>(),
            "removed_rules": old_rules.iter().filter(|r| !rules.contains(r)).collect::<Vec<_>>(),
            "new_secrets_for": new_secrets.keys().collect::<Vec<_>>(),
        }),
    )
    .await?;
    tracing::info!(version, actor = %p.actor(), "notification settings saved");
    // The notifiers reload by version at their next pass; wake this hub's now.
    s.live.alert_signal().notify_one();
    let saved = StoredSettings {
        document,
        version,
        updated_by: p.actor(),
        updated_at: at,
    };
    let mut view = settings_view(&s, Some(&saved), &[])?;
    view.new_secrets = new_secrets;
    Ok(with_etag(view))
}

/// Longest settings document accepted as TOML, in characters.
const MAX_SETTINGS_CHARS: usize = 65_536;
/// Most channels, and most rules, in one settings document.
const MAX_SETTINGS_ITEMS: usize = 256;
