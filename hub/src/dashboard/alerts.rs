//! `/alerts`, the queue, and `/alerts/{id}`, one alert with the thermal viewer, its
//! history, severity provenance, actions and audit trail.

use super::layout::{self, Live, Nav};
use super::{api, error_page, PageError, PageResult, PageUser};
use crate::api::alerts::{alert, list_alerts, AlertDetail, AlertParams};
use crate::api::auth::Principal;
use crate::api::error::ApiError;
use crate::api::findings::{finding, FindingView};
use crate::api::sites::list_sites;
use crate::api::{AlertView, ApiQuery, ApiState};
use crate::store::SiteStore;
use crate::store::{AlertStatus, Role};
use axum::extract::{Path, Query, State};
use chitti_common::render::Palette;
use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use maud::{html, Markup};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Rows per queue page.
const QUEUE_PAGE: u32 = 50;

/// The queue's filter as the page's query string: the API's alert filters, with empty
/// fields meaning "any" (what an HTML form sends), times as `datetime-local` (UTC) or
/// RFC 3339, and `within` (`1h`, `24h`, `7d`, `30d`) as a relative `since`.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub(crate) struct QueueParams {
    #[serde(default, skip_serializing_if = "is_blank")]
    site: Option<String>,
    #[serde(default, skip_serializing_if = "is_blank")]
    gateway: Option<String>,
    #[serde(default, skip_serializing_if = "is_blank")]
    asset: Option<String>,
    #[serde(default, skip_serializing_if = "is_blank")]
    status: Option<String>,
    #[serde(default, skip_serializing_if = "is_blank")]
    min_level: Option<String>,
    #[serde(default, skip_serializing_if = "is_blank")]
    component_class: Option<String>,
    #[serde(default, skip_serializing_if = "is_blank")]
    kind: Option<String>,
    #[serde(default, skip_serializing_if = "is_blank")]
    within: Option<String>,
    #[serde(default, skip_serializing_if = "is_blank")]
    since: Option<String>,
    #[serde(default, skip_serializing_if = "is_blank")]
    until: Option<String>,
    #[serde(default, skip_serializing_if = "is_blank")]
    q: Option<String>,
    #[serde(default, skip_serializing_if = "is_blank")]
    sort: Option<String>,
    #[serde(default, skip_serializing_if = "is_blank")]
    after: Option<String>,
}

fn is_blank(v: &Option<String>) -> bool {
    v.as_deref().is_none_or(|s| s.trim().is_empty())
}

fn given(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// A time from a form: RFC 3339, or `datetime-local` read as UTC.
fn parse_time(what: &str, text: &str) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc());
        }
    }
    Err(ApiError::bad_request(format!(
        "{what} {text:?}: expected a time like 2026-01-31T14:00 (UTC) or RFC 3339"
    )))
}

const WITHIN: [(&str, &str, i64); 4] = [
    ("1h", "last hour", 1),
    ("24h", "last 24 hours", 24),
    ("7d", "last 7 days", 24 * 7),
    ("30d", "last 30 days", 24 * 30),
];

impl QueueParams {
    /// The API's parameters for this filter at `now`.
    pub(crate) fn to_api(&self, now: DateTime<Utc>) -> Result<AlertParams, ApiError> {
        let min_level = given(&self.min_level)
            .map(|l| {
                l.parse::<u8>()
                    .map_err(|_| ApiError::bad_request(format!("severity {l:?}: expected 0 to 4")))
            })
            .transpose()?;
        let mut since = given(&self.since)
            .map(|t| parse_time("from", &t))
            .transpose()?;
        if let Some(w) = given(&self.within) {
            let hours = WITHIN
                .iter()
                .find(|(k, _, _)| *k == w)
                .map(|(_, _, h)| *h)
                .ok_or_else(|| {
                    ApiError::bad_request(format!("time range {w:?}: expected 1h, 24h, 7d or 30d"))
                })?;
            since = Some(now - Duration::hours(hours));
        }
        Ok(AlertParams {
            site: given(&self.site),
            gateway: given(&self.gateway),
            asset: given(&self.asset),
            status: given(&self.status),
            min_level,
            component_class: given(&self.component_class),
            kind: given(&self.kind),
            since,
            until: given(&self.until)
                .map(|t| parse_time("to", &t))
                .transpose()?,
            q: given(&self.q),
            sort: given(&self.sort),
            limit: Some(QUEUE_PAGE),
            after: given(&self.after),
        })
    }

    /// This filter as a query string (without the cursor when `cursor` is false).
    pub(crate) fn query_string(&self, cursor: bool) -> String {
        let mut p = self.clone();
        if !cursor {
            p.after = None;
        }
        serde_urlencoded::to_string(&p).unwrap_or_default()
    }
}

/// The API's alert filter as a query string (for `/api/v1/alerts/export.csv`).
pub(crate) fn api_query_string(a: &AlertParams) -> String {
    let mut pairs: Vec<(&str, String)> = Vec::new();
    let mut push = |k: &'static str, v: &Option<String>| {
        if let Some(v) = v {
            pairs.push((k, v.clone()));
        }
    };
    push("site", &a.site);
    push("gateway", &a.gateway);
    push("asset", &a.asset);
    push("status", &a.status);
    push("component_class", &a.component_class);
    push("kind", &a.kind);
    push("q", &a.q);
    push("sort", &a.sort);
    if let Some(l) = a.min_level {
        pairs.push(("min_level", l.to_string()));
    }
    if let Some(t) = a.since {
        pairs.push((
            "since",
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ));
    }
    if let Some(t) = a.until {
        pairs.push((
            "until",
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ));
    }
    serde_urlencoded::to_string(&pairs).unwrap_or_default()
}

/// Sites and the assets and component classes known, for the filter's choices.
pub(crate) struct Choices {
    pub sites: Vec<crate::api::sites::SiteView>,
    pub assets: Vec<crate::store::AssetRecord>,
    pub classes: Vec<String>,
}

pub(crate) async fn choices(s: &ApiState, p: &Principal) -> Result<Choices, PageError> {
    let sites = api(p, list_sites(State(s.clone()), p.clone()).await)?.items;
    let assets = s
        .store
        .list_assets(None)
        .await
        .map_err(|e| error_page(Some(p), ApiError::from(e)))?;
    let mut classes: Vec<String> = assets
        .iter()
        .filter_map(|a| a.component_class.clone())
        .collect();
    classes.sort();
    classes.dedup();
    Ok(Choices {
        sites,
        assets,
        classes,
    })
}

fn select(
    id: &str,
    name: &str,
    label: &str,
    current: &Option<String>,
    options: &[(String, String)],
) -> Markup {
    let current = given(current).unwrap_or_default();
    html! {
        div.field {
            label for=(id) { (label) }
            select id=(id) name=(name) {
                @for (value, text) in options {
                    option value=(value) selected[*value == current] { (text) }
                }
            }
        }
    }
}

/// The filter form (GET to `action`).
pub(crate) fn filter_form(action: &str, f: &QueueParams, c: &Choices) -> Markup {
    let any = || vec![(String::new(), "any".to_string())];
    let mut sites = any();
    sites.extend(
        c.sites
            .iter()
            .map(|s| (s.id.clone(), format!("{} ({})", s.name, s.id))),
    );
    let mut statuses = any();
    statuses.extend(
        AlertStatus::NAMES
            .iter()
            .map(|s| (s.to_string(), s.to_string())),
    );
    let mut levels = any();
    levels.extend((1..=4).map(|l| (l.to_string(), format!("L{l} and worse"))));
    let mut kinds = any();
    kinds.extend([
        (
            "thermal".to_string(),
            "thermal (hot spots, cool exceptions)".to_string(),
        ),
        ("hotspot".to_string(), "hot spots".to_string()),
        ("cool_exception".to_string(), "cool exceptions".to_string()),
        ("fleet".to_string(), "fleet alarms (all)".to_string()),
    ]);
    kinds.extend(
        crate::store::AlertKind::FLEET
            .iter()
            .map(|k| (k.as_str().to_string(), k.title().to_string())),
    );
    let mut within = vec![(String::new(), "any time".to_string())];
    within.extend(
        WITHIN
            .iter()
            .map(|(k, t, _)| (k.to_string(), t.to_string())),
    );
    let sorts = vec![
        ("created_desc".to_string(), "newest first".to_string()),
        ("worst_level_desc".to_string(), "worst first".to_string()),
        (
            "updated_desc".to_string(),
            "recently changed first".to_string(),
        ),
    ];
    html! {
        form #queue-filters.filters method="get" action=(action) aria-label="Filter alerts" {
            (select("f-site", "site", "Site", &f.site, &sites))
            div.field {
                label for="f-asset" { "Asset" }
                input #f-asset name="asset" list="asset-ids" value=[given(&f.asset)] autocomplete="off";
                datalist #asset-ids {
                    @for a in &c.assets { option value=(a.id) { (a.site) ": " (a.name) } }
                }
            }
            (select("f-level", "min_level", "Severity", &f.min_level, &levels))
            (select("f-status", "status", "Status", &f.status, &statuses))
            (select("f-kind", "kind", "Kind", &f.kind, &kinds))
            div.field {
                label for="f-class" { "Component" }
                input #f-class name="component_class" list="class-ids" value=[given(&f.component_class)] autocomplete="off";
                datalist #class-ids { @for k in &c.classes { option value=(k) {} } }
            }
            (select("f-within", "within", "Time range", &f.within, &within))
            div.field {
                label for="f-since" { "From (UTC)" }
                input #f-since type="datetime-local" name="since" value=[given(&f.since)];
            }
            div.field {
                label for="f-until" { "To (UTC)" }
                input #f-until type="datetime-local" name="until" value=[given(&f.until)];
            }
            div.field {
                label for="f-q" { "Search" }
                input #f-q type="search" name="q" value=[given(&f.q)] placeholder="site, camera, asset…";
            }
            (select("f-sort", "sort", "Sort", &f.sort, &sorts))
            div.field.buttons {
                button type="submit" { "Apply" }
                a.button.secondary href=(action) { "Clear" }
            }
        }
    }
}

/// One row of the queue (the live refresh compares rows by `data-updated` and
/// `data-status`: an action changes the status without moving `updated_at`).
fn alert_row(a: &AlertView, operator: bool) -> Markup {
    let href = format!("/alerts/{}", a.id);
    html! {
        tr.alert-row data-id=(a.id) data-updated=(a.updated_at.to_rfc3339()) data-status=(a.status) data-href=(href) tabindex="-1" {
            @if operator {
                td.check {
                    input.row-check type="checkbox" value=(a.id) aria-label=(format!("Select alert {}", super::overview::place(a)));
                }
            }
            td { (layout::alert_severity(a)) }
            td { (layout::status(a.status)) }
            td.num { (layout::celsius_opt(a.worst_max_c)) }
            td.num { (layout::celsius_opt(a.last_max_c)) }
            td { a.open-link href=(href) { (super::overview::place(a)) } }
            td { (a.gateway) " / " (a.camera) }
            td.num { (a.finding_count) }
            td { (layout::time(a.last_finding_at)) }
            td { (layout::time(a.updated_at)) }
        }
    }
}

/// `GET /alerts`.
pub(crate) async fn queue(
    State(s): State<ApiState>,
    PageUser(p): PageUser,
    Query(f): Query<QueueParams>,
) -> PageResult {
    let operator = p.user.role >= Role::Operator;
    let c = choices(&s, &p).await?;
    let params = f.to_api(Utc::now());
    let csv = params.as_ref().map(api_query_string).unwrap_or_default();
    let page = match params {
        Ok(params) => list_alerts(State(s.clone()), p.clone(), ApiQuery(params))
            .await
            .map(|j| j.0),
        Err(e) => Err(e),
    };
    let first_page = given(&f.after).is_none();
    let next_href = page
        .as_ref()
        .ok()
        .and_then(|p| p.next_cursor.clone())
        .map(|c| {
            let mut n = f.clone();
            n.after = Some(c);
            format!("/alerts?{}", n.query_string(true))
        });
    let body = html! {
        (filter_form("/alerts", &f, &c))
        div.toolbar {
            @if operator {
                label.check-all { input #select-all type="checkbox"; " all" }
                button #bulk-ack type="button" disabled { "Acknowledge selected" }
            }
            a #queue-export-csv.button.secondary href=(format!("/api/v1/alerts/export.csv?{csv}")) download { "Export CSV" }
            a #queue-reports.button.secondary href=(format!("/reports?{}", f.query_string(false))) { "Reports" }
            p.hint { kbd { "j" } "/" kbd { "k" } " move · " kbd { "o" } " open" @if operator { " · " kbd { "a" } " acknowledge · " kbd { "x" } " select" } }
        }
        p #bulk-result role="status" {}
        @match &page {
            Err(e) => { p #queue-error.error role="alert" { (e.message) } }
            Ok(page) => {
                table #alert-queue.queue data-first-page=(first_page) {
                    caption.visually-hidden { "Alerts, " (page.items.len()) " shown" }
                    thead {
                        tr {
                            @if operator { th scope="col" { span.visually-hidden { "Select" } } }
                            th scope="col" { "Severity" }
                            th scope="col" { "Status" }
                            th scope="col" { "Worst" }
                            th scope="col" { "Latest" }
                            th scope="col" { "Where" }
                            th scope="col" { "Gateway / camera" }
                            th scope="col" { "Findings" }
                            th scope="col" { "Last finding" }
                            th scope="col" { "Changed" }
                        }
                    }
                    tbody #alert-rows {
                        @for a in &page.items { (alert_row(a, operator)) }
                    }
                }
                @if page.items.is_empty() { p #queue-empty.muted { "No alerts match this filter." } }
                nav.paging aria-label="Pages" {
                    @if !first_page {
                        a #first-page.button.secondary href=(format!("/alerts?{}", f.query_string(false))) { "First page" }
                    }
                    @if let Some(href) = &next_href {
                        a #next-page.button.secondary href=(href) { "Next page" }
                    }
                }
            }
        }
    };
    Ok(layout::page(
        &p,
        Nav::Alerts,
        "Alert queue",
        &[],
        Live::Queue,
        body,
    ))
}

/// `?finding=` of the alert page.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct DetailParams {
    finding: Option<String>,
}

/// `GET /alerts/{id}`.
pub(crate) async fn detail(
    State(s): State<ApiState>,
    PageUser(p): PageUser,
    Path(id): Path<String>,
    Query(q): Query<DetailParams>,
) -> PageResult {
    let d: AlertDetail = api(
        &p,
        alert(State(s.clone()), p.clone(), Path(id.clone())).await,
    )?;
    let chosen = match given(&q.finding) {
        Some(f) => match d.history.iter().find(|h| h.finding_id.to_string() == f) {
            Some(h) => Some(h.finding_id),
            None => {
                return Err(super::not_found(
                    Some(&p),
                    &format!("finding {f} in the history of alert {id}"),
                )
                .into())
            }
        },
        // The hottest finding: the one that shows the problem best.
        None => d
            .history
            .iter()
            .max_by(|a, b| a.max_c.total_cmp(&b.max_c))
            .map(|h| h.finding_id),
    };
    let shown: Option<FindingView> = match chosen {
        Some(fid) => Some(api(
            &p,
            finding(State(s.clone()), p.clone(), Path(fid.to_string())).await,
        )?),
        None => None,
    };
    let deliveries = api(
        &p,
        crate::api::notifications::alert_notifications(
            State(s.clone()),
            p.clone(),
            Path(d.alert.id.to_string()),
        )
        .await,
    )?
    .items;
    let a = &d.alert;
    let operator = p.user.role >= Role::Operator;
    let table = a.severity_table.as_deref().and_then(layout::table);
    let assignee = d
        .events
        .iter()
        .rev()
        .find(|e| e.kind == "assign")
        .and_then(|e| e.detail.as_ref())
        .and_then(|v| v["assignee"].as_str())
        .map(str::to_string);
    // Whether the latest finding (the history is oldest first) is a cool exception.
    let last_cool = a.last_level == 0 && d.history.last().is_some_and(|h| h.cool_exception);
    let title = format!("Alert · {}", super::overview::place(a));
    let body = html! {
        section.card #alert-summary data-live-section data-alert-id=(a.id) aria-label="Summary" {
            div.summary-line {
                (layout::alert_severity(a))
                " "
                span #alert-status { (layout::status(a.status)) }
                " "
                @if let (Some(worst), Some(last)) = (a.worst_max_c, a.last_max_c) {
                    span.big { (layout::celsius(worst)) } " worst, "
                    (layout::celsius(last)) " latest ("
                    @if last_cool { (layout::COOL_EXCEPTION_NAME) } @else { "L" (a.last_level) }
                    ")"
                }
            }
            @if a.severity_table.is_none() {
                (fleet_facts(a, assignee.as_deref()))
            } @else {
            dl.facts {
                dt { "Site" } dd { (a.site) }
                dt { "Asset" } dd { (a.asset.as_deref().unwrap_or("—")) }
                dt { "Component" } dd { (a.component_class.as_deref().unwrap_or("—")) }
                dt { "Gateway / camera" } dd { (a.gateway) " / " (a.camera) }
                dt { "Findings" } dd { (a.finding_count) }
                dt { "First / last finding" } dd { (layout::time(a.first_finding_at)) " → " (layout::time(a.last_finding_at)) }
                dt { "Cleared" } dd { (layout::time_opt(a.cleared_at)) }
                dt { "Opened / changed" } dd { (layout::time(a.created_at)) " / " (layout::time(a.updated_at)) }
                dt { "Assigned to" } dd #assignee { (assignee.as_deref().unwrap_or("nobody")) }
            }
            }
        }
        @if let Some(f) = &shown { (viewer(f)) }
        div.grid {
            @if let Some(f) = &shown { (provenance(f)) }
            @if a.severity_table.is_some() {
            section.card #history data-live-section aria-labelledby="history-h" {
                h2 #history-h { "Finding history" }
                (super::chart::history_chart(&d.history, table))
                details {
                    summary { (d.history.len()) " findings" }
                    table.compact {
                        thead { tr { th scope="col" { "Observed" } th scope="col" { "State" } th scope="col" { "Level" } th scope="col" { "Max" } th scope="col" { "ΔT" } } }
                        tbody {
                            @for h in d.history.iter().rev() {
                                tr aria-current=[(Some(h.finding_id) == chosen).then_some("true")] {
                                    td { a href=(format!("/alerts/{}?finding={}", a.id, h.finding_id)) { (layout::time(h.observed_at)) } }
                                    td { (format!("{:?}", h.state).to_lowercase()) }
                                    td { (layout::assessed_severity(a.severity_table.as_deref().unwrap_or(""), h.level, h.cool_exception)) }
                                    td.num { (layout::celsius(h.max_c)) }
                                    td.num { @if let Some(dt) = h.delta_c { (format!("{dt:.1} K")) } @else { "—" } }
                                }
                            }
                        }
                    }
                }
            }
            }
        }
        div.grid {
            @if operator { (actions(a)) }
            section.card #trail data-live-section aria-labelledby="trail-h" {
                h2 #trail-h { "Audit trail" }
                @if d.events.is_empty() {
                    p.muted { "No actions yet." }
                } @else {
                    ol #trail-list.trail {
                        @for e in &d.events {
                            li.trail-entry data-kind=(e.kind) {
                                strong { (e.kind) } " by " span.actor { (e.actor) } " at " (layout::time(e.at))
                                @if let Some(from) = &e.from_address { span.muted { " from " (from) } }
                                @if let Some(v) = e.detail.as_ref().and_then(|d| d["assignee"].as_str()) { " → " (v) }
                                @if let Some(v) = e.detail.as_ref().and_then(|d| d["verified_fixed_sha256"].as_str()) {
                                    " · verified fixed: " a href=(format!("/api/v1/evidence/{v}")) { code { (&v[..12.min(v.len())]) "…" } }
                                }
                                @if let Some(n) = &e.note { blockquote { (n) } }
                            }
                        }
                    }
                }
            }
            section.card #deliveries aria-labelledby="deliveries-h" {
                h2 #deliveries-h { "Notifications" }
                @if deliveries.is_empty() {
                    p.muted { "Nobody was notified of this alert (no rule matched it)." }
                } @else {
                    ol #delivery-list.trail {
                        @for n in deliveries.iter().rev() {
                            li.trail-entry data-channel=(n.channel) {
                                strong { (super::pages::transition_name(n)) } " → " (n.channel)
                                span.muted { " (" (n.rule) ")" } " · "
                                (super::pages::delivery_state(n))
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(
        &p,
        Nav::Alerts,
        &title,
        &["viewer.js"],
        Live::Sections,
        body,
    ))
}

/// A fleet alarm's facts: what the hub saw, when it began, ended and how long it
/// lasted (no findings, no temperatures).
fn fleet_facts(a: &AlertView, assignee: Option<&str>) -> Markup {
    html! {
        p #fleet-detail { (a.detail.as_deref().unwrap_or("")) }
        dl.facts {
            dt { "Kind" } dd { (a.kind.replace('_', " ")) " (a fleet alarm the hub raised)" }
            dt { "Site" } dd { (a.site) }
            dt { "Gateway" } dd { (a.gateway) }
            @if !a.camera.is_empty() { dt { "Camera" } dd { (a.camera) } }
            dt { "Began" } dd { (layout::time(a.first_finding_at)) }
            dt { "Ended" } dd { (layout::time_opt(a.cleared_at)) }
            dt { @if a.cleared_at.is_some() { "Lasted" } @else { "For" } }
            dd #fleet-duration { (layout::duration(a.duration_s.unwrap_or(0).max(0) as u64)) }
            dt { "Opened / changed" } dd { (layout::time(a.created_at)) " / " (layout::time(a.updated_at)) }
            dt { "Assigned to" } dd #assignee { (assignee.unwrap_or("nobody")) }
        }
    }
}

/// The thermal viewer: a canvas drawn by `viewer.js` from the finding's °C grid.
fn viewer(f: &FindingView) -> Markup {
    let fd = &f.finding;
    let palettes: serde_json::Map<String, serde_json::Value> = Palette::ALL
        .iter()
        .map(|p| (p.name().to_string(), json!(p.colour_table().to_vec())))
        .collect();
    let config = json!({
        "finding_id": fd.id,
        "grid_url": format!("/api/v1/findings/{}/temperatures", fd.id),
        "hotspot": {
            "bbox": [fd.hotspot.bbox.x, fd.hotspot.bbox.y, fd.hotspot.bbox.w, fd.hotspot.bbox.h],
            "max_at": [fd.hotspot.max_at.x, fd.hotspot.max_at.y],
            "max_c": fd.hotspot.max_c,
            "level": fd.severity.level,
            "label": format!("{:.1} °C L{}", fd.hotspot.max_c, fd.severity.level),
        },
        "component": fd.component.as_ref().map(|c| json!({
            "bbox": [c.bbox.x, c.bbox.y, c.bbox.w, c.bbox.h],
            "label": format!("{} {:.0}%", c.class, c.confidence * 100.0),
        })),
        "palettes": palettes,
    });
    let visual = fd
        .evidence
        .as_ref()
        .map(|e| format!("/api/v1/evidence/{}/visual.jpg", e.sha256));
    html! {
        section.card #viewer-section aria-labelledby="viewer-h" {
            h2 #viewer-h { "Thermogram" }
            @if fd.evidence.is_none() {
                p.muted { "This finding has no evidence to show." }
            } @else {
                div.viewer-controls {
                    div.field {
                        label for="palette" { "Palette" }
                        select #palette {
                            @for p in Palette::ALL { option value=(p.name()) { (p.name()) } }
                        }
                    }
                    div.field {
                        label for="span-min" { "From °C" }
                        input #span-min type="number" step="0.1" inputmode="decimal";
                    }
                    div.field {
                        label for="span-max" { "To °C" }
                        input #span-max type="number" step="0.1" inputmode="decimal";
                    }
                    div.field.buttons {
                        button #span-auto.secondary type="button" { "Auto span" }
                        button #zoom-in.secondary type="button" aria-label="Zoom in" { "+" }
                        button #zoom-out.secondary type="button" aria-label="Zoom out" { "−" }
                        button #zoom-reset.secondary type="button" { "Fit" }
                        label.inline { input #show-overlays type="checkbox" checked; " boxes" }
                    }
                }
                div.viewer-row {
                    div.viewer #viewer data-finding-id=(fd.id) {
                        canvas #thermal-canvas tabindex="0" aria-label="Thermogram: move the pointer or the arrow keys over it to read °C; wheel or +/− to zoom, drag to pan" {}
                        canvas #scale-bar aria-label="Temperature scale" {}
                    }
                    figure #visual-figure.visual hidden data-src=[visual] {
                        img #visual-image alt="The camera's visual image of the same scene";
                        figcaption { "Visual image" }
                    }
                }
                p.readout {
                    "°C at the cursor: "
                    output #cursor-temp for="thermal-canvas" aria-live="off" { "—" }
                    " " span #cursor-pos.muted {}
                    " " span #viewer-status.muted role="status" { "loading the temperature grid…" }
                }
                (layout::json_block("viewer-config", &config))
            }
        }
    }
}

/// How the severity was decided: table, inputs, reference, recommended action.
fn provenance(f: &FindingView) -> Markup {
    let fd = &f.finding;
    let sv = &fd.severity;
    let table = layout::table(&sv.table);
    let i = &sv.inputs;
    html! {
        section.card #provenance aria-labelledby="prov-h" {
            h2 #prov-h { "Severity provenance" }
            p {
                (layout::assessed_severity(&sv.table, sv.level, sv.cool_exception)) " by table "
                strong { (sv.table) } " v" (sv.table_version)
                @if let Some(t) = table { " — " (t.title) }
            }
            p #recommended-action { "Recommended action: " strong { (sv.action) } }
            @if let Some(reason) = &sv.not_assessed { p.warn { "Not assessed: " (reason) } }
            @if sv.cool_exception { p.warn { "Cool exception: the component is far colder than its reference." } }
            dl.facts {
                dt { "Max" } dd { (layout::celsius(i.max_c)) " at (" (fd.hotspot.max_at.x) ", " (fd.hotspot.max_at.y) ")" }
                dt { "Reference" } dd {
                    @match i.reference_c {
                        Some(r) => {
                            (layout::celsius(r))
                            @if let Some(k) = &i.reference_kind { " (" (format!("{k:?}").to_lowercase()) ")" }
                            @if let Some(src) = &i.reference_source { " — " (src) }
                        }
                        None => { "none" }
                    }
                }
                dt { "ΔT" } dd { @if let Some(d) = i.delta_c { (format!("{d:.1} K")) } @else { "—" } }
                dt { "Compared value" } dd { (format!("{:.1}", i.compared_c)) }
                dt { "Ambient" } dd { (layout::celsius(fd.reference.ambient_c)) " (" (fd.reference.ambient_source) ")" }
                dt { "Measurement" } dd {
                    "ε " (format!("{:.2}", fd.measurement.emissivity))
                    ", " (format!("{:.1}", fd.measurement.distance_m)) " m"
                    ", reflected " (layout::celsius(fd.measurement.reflected_c))
                    ", air " (layout::celsius(fd.measurement.atmosphere_c))
                    ", RH " (format!("{:.0}", fd.measurement.relative_humidity * 100.0)) " %"
                }
                dt { "Hotspot" } dd { (fd.hotspot.area_px) " px, mean " (layout::celsius(fd.hotspot.mean_c)) }
            }
            @if let Some(t) = table {
                table.compact #severity-table {
                    caption { (t.title) @if !t.source.is_empty() { " — " (t.source) } }
                    thead { tr { th scope="col" { "Level" } th scope="col" { "From" } th scope="col" { "Action" } } }
                    tbody {
                        @for l in &t.levels {
                            tr class=[(l.rank == sv.level).then_some("current")] aria-current=[(l.rank == sv.level).then_some("true")] {
                                td { (layout::severity(&t.id, l.rank)) }
                                td.num { (if l.inclusive { "≥ " } else { "> " }) (l.from_c) }
                                td { (l.action) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The operator's actions: each form is sent to the API by `dashboard.js`.
fn actions(a: &AlertView) -> Markup {
    let base = format!("/api/v1/alerts/{}", a.id);
    let open = a.status == "open";
    let resolved = a.status == "resolved";
    html! {
        section.card #actions aria-labelledby="actions-h" {
            h2 #actions-h { "Actions" }
            @if open {
                form.api-form #ack-form data-method="POST" data-url=(format!("{base}/acknowledge")) {
                    div.field { label for="ack-note" { "Note (optional)" } input #ack-note name="note" maxlength="4000"; }
                    button #acknowledge type="submit" { "Acknowledge" }
                    p.form-error role="alert" {}
                }
            }
            @if !open {
                form.api-form #reopen-form data-method="POST" data-url=(format!("{base}/reopen")) {
                    div.field { label for="reopen-note" { "Note (optional)" } input #reopen-note name="note" maxlength="4000"; }
                    button #reopen.secondary type="submit" { "Reopen" }
                    p.form-error role="alert" {}
                }
            }
            form.api-form #assign-form data-method="POST" data-url=(format!("{base}/assign")) {
                div.field { label for="assignee-input" { "Assign to" } input #assignee-input name="assignee" required maxlength="200" placeholder="a user, a crew, a contractor"; }
                button #assign.secondary type="submit" { "Assign" }
                p.form-error role="alert" {}
            }
            form.api-form #comment-form data-method="POST" data-url=(format!("{base}/comment")) {
                div.field { label for="comment-note" { "Comment" } textarea #comment-note name="note" required maxlength="4000" rows="2" {} }
                button #comment.secondary type="submit" { "Add comment" }
                p.form-error role="alert" {}
            }
            @if !resolved {
                form.api-form #resolve-form data-method="POST" data-url=(format!("{base}/resolve")) data-site=(a.site) {
                    div.field { label for="resolve-note" { "Resolution note" } textarea #resolve-note name="note" maxlength="4000" rows="2" {} }
                    div.field {
                        label for="verified-file" { "Verified-fixed image (optional FLIR file)" }
                        input #verified-file type="file" name="verified_file" accept=".jpg,.jpeg,.fff,.seq,.csq";
                    }
                    button #resolve type="submit" { "Resolve" }
                    p.form-error role="alert" {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_filter_reads_forms_and_relative_ranges() {
        let now = Utc::now();
        let f: QueueParams = serde_urlencoded::from_str(
            "site=north&asset=&status=open&min_level=2&within=24h&until=2026-01-31T14:00&q=",
        )
        .unwrap();
        let a = f.to_api(now).unwrap();
        assert_eq!(a.site.as_deref(), Some("north"));
        assert_eq!(a.asset, None);
        assert_eq!(a.min_level, Some(2));
        assert_eq!(a.since, Some(now - Duration::hours(24)));
        assert_eq!(a.until.unwrap().to_rfc3339(), "2026-01-31T14:00:00+00:00");
        assert_eq!(a.q, None);
        let qs = api_query_string(&a);
        assert!(
            qs.contains("min_level=2") && qs.contains("status=open"),
            "{qs}"
        );
        assert!(qs.contains("until=2026-01-31T14%3A00%3A00Z"), "{qs}");
        assert_eq!(
            f.query_string(false),
            "site=north&status=open&min_level=2&within=24h&until=2026-01-31T14%3A00"
        );
        let bad: QueueParams = serde_urlencoded::from_str("min_level=high").unwrap();
        assert!(bad.to_api(now).unwrap_err().message.contains("severity"));
        let bad: QueueParams = serde_urlencoded::from_str("since=yesterday").unwrap();
        assert!(bad.to_api(now).unwrap_err().message.contains("from"));
    }
}
