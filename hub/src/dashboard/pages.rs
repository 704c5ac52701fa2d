//! The smaller pages: sign-in, fleet, sites and assets, upload, reports and
//! notifications.

use super::alerts::{api_query_string, choices, filter_form, QueueParams};
use super::layout::{self, Live, Nav};
use super::{all_gateways, api, error_page, PageResult, PageUser};
use crate::api::error::ApiError;
use crate::api::fleet::{list_cameras, CameraParams, GatewayView};
use crate::api::sites::{list_sites, site, SiteDetail};
use crate::api::{ApiQuery, ApiState};
use crate::store::Role;
use crate::store::{FleetStore, RetentionStore};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use chrono::{Duration, SecondsFormat, Utc};
use maud::{html, Markup};
use serde::Deserialize;

/// `?next=` of the sign-in page.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct LoginParams {
    next: Option<String>,
}

/// Where to go after signing in: a path on this hub only. Never `//elsewhere`, nor a
/// backslash, whitespace or control character anywhere: browsers drop a tab or newline
/// from a URL, so `/\t/evil.example/` would become `//evil.example/`.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(|c| c.is_control() || c.is_whitespace()) =>
        {
            n
        }
        _ => "/",
    }
}

/// `GET /login`: the form is sent to `POST /api/v1/auth/login` by `dashboard.js`,
/// which sets the session cookie.
pub(crate) async fn login(Query(q): Query<LoginParams>) -> Response {
    let next = safe_next(q.next.as_deref());
    layout::bare(
        "Sign in",
        html! {
            section.card.login {
                h1 { "Chitti" }
                p.muted { "Thermal inspection operations" }
                form #login-form data-next=(next) {
                    div.field {
                        label for="username" { "User name" }
                        input #username name="username" autocomplete="username" required autofocus;
                    }
                    div.field {
                        label for="password" { "Password" }
                        input #password type="password" name="password" autocomplete="current-password" required;
                    }
                    button #login-submit type="submit" { "Sign in" }
                    p #login-error.form-error role="alert" {}
                }
            }
        },
    )
    .into_response()
}

fn gateway_row(g: &GatewayView, temps: Option<(Option<f64>, Option<f64>)>) -> Markup {
    let now = Utc::now();
    let state = if g.revoked {
        "revoked"
    } else if g.online {
        "online"
    } else {
        "offline"
    };
    html! {
        tr data-gateway=(g.username) data-state=(state) class=(if state == "offline" { "gateway-row flagged" } else { "gateway-row" }) {
            th scope="row" { a href=(format!("/fleet/{}/{}", g.site, g.gateway)) { (g.site) " / " (g.gateway) } }
            td {
                span class=(format!("status status-{state}")) { (state) }
                @if let (false, Some(s)) = (g.revoked, g.offline_for_s) { " for " strong.offline-for { (layout::duration(s)) } }
            }
            td { (layout::time_opt(g.last_seen_at)) }
            td.num { @if let Some(d) = g.buffer_depth { (d) } @else { "—" } }
            td {
                @match g.buffer_oldest_at {
                    Some(t) => { (layout::duration(u64::try_from((now - t).num_seconds()).unwrap_or(0))) }
                    None => { span.muted { "—" } }
                }
            }
            td.num {
                @match (g.evicted_evidence, g.evicted_findings) {
                    (Some(e), Some(f)) => { span class=[(e + f > 0).then_some("warn-text")] { (e) " evidence, " (f) " findings" } }
                    _ => { "—" }
                }
            }
            td {
                (g.agent_version.as_deref().unwrap_or("—"))
                @if let Some(c) = g.config_version { " · config v" (c) }
                @if let Some(m) = &g.model { " · " (m.name) " " (m.version) }
            }
            td.detector {
                @match g.detector.as_deref() {
                    Some(d) if d.starts_with("degraded") => { span.warn-text { (d) } }
                    Some(d) => { (d) }
                    None => { span.muted { "—" } }
                }
            }
            td.num {
                @if let Some((cpu, gpu)) = temps.filter(|(c, g)| c.is_some() || g.is_some()) {
                    @if let Some(c) = cpu { "CPU " (layout::celsius(c)) }
                    @if let Some(c) = gpu { " GPU " (layout::celsius(c)) }
                } @else {
                    span.muted { "—" }
                }
            }
        }
    }
}

/// `GET /fleet`.
pub(crate) async fn fleet(State(s): State<ApiState>, PageUser(p): PageUser) -> PageResult {
    let gateways = all_gateways(&s, &p).await?;
    let cameras = api(
        &p,
        list_cameras(
            State(s.clone()),
            p.clone(),
            ApiQuery(CameraParams::default()),
        )
        .await,
    )?
    .items;
    // Device temperature: the latest telemetry minute of the last quarter hour.
    let now = Utc::now();
    let mut temps = Vec::with_capacity(gateways.len());
    for g in &gateways {
        let minutes = s
            .store
            .telemetry(
                &g.site,
                &g.gateway,
                now - Duration::minutes(15),
                now + Duration::minutes(1),
            )
            .await
            .map_err(|e| error_page(Some(&p), ApiError::from(e)))?;
        temps.push(minutes.last().map(|m| (m.cpu_temp_max_c, m.gpu_temp_max_c)));
    }
    let offline = gateways.iter().filter(|g| !g.online && !g.revoked).count();
    // Measured by the retention job (on SQLite it reads every page: not per request).
    let last_run = s
        .store
        .retention_runs(1)
        .await
        .map_err(|e| error_page(Some(&p), ApiError::from(e)))?
        .into_iter()
        .next();
    let body = html! {
        section.card #gateways data-live-section aria-labelledby="gw-h" {
            h2 #gw-h { "Gateways" }
            p {
                (gateways.iter().filter(|g| g.online).count()) " online, "
                span class=[(offline > 0).then_some("bad-text")] { (offline) " offline" }
                ", " (gateways.iter().filter(|g| g.revoked).count()) " revoked"
            }
            div.scroll {
                table #gateway-table {
                    thead {
                        tr {
                            th scope="col" { "Gateway" } th scope="col" { "State" } th scope="col" { "Last seen" }
                            th scope="col" { "Outbox" } th scope="col" { "Oldest" } th scope="col" { "Evicted" }
                            th scope="col" { "Versions" } th scope="col" { "Detector" } th scope="col" { "Device temp." }
                        }
                    }
                    tbody {
                        @for (g, t) in gateways.iter().zip(temps) { (gateway_row(g, t)) }
                    }
                }
            }
        }
        section.card #storage aria-labelledby="storage-h" {
            h2 #storage-h { "Storage" }
            @match &last_run {
                None => { p.muted { "Measured by the first retention run (an hour after the hub starts)." } }
                Some(run) => {
                    p.muted {
                        "As of the retention run of " (layout::time(run.finished_at))
                        @if let Some(err) = &run.error { " — " span.bad-text { "it failed: " (err) } }
                        @else { ": removed " (run.removed.findings) " findings, " (run.removed.evidence) " evidence files, "
                            (run.removed.telemetry_minutes) " telemetry minutes rolled into hours; kept "
                            (run.removed.findings_kept) " expired findings (open alert, hold or kept report)." }
                    }
                    div.scroll {
                        table #storage-table {
                            thead { tr { th scope="col" { "Kind" } th scope="col" { "Rows" } th scope="col" { "Size" } } }
                            tbody {
                                @for u in &run.usage {
                                    tr data-kind=(u.kind) {
                                        th scope="row" { (u.kind.replace('_', " ")) }
                                        td.num { (u.rows) }
                                        td.num { (human_bytes(u.bytes)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section.card #cameras data-live-section aria-labelledby="cam-h" {
            h2 #cam-h { "Cameras" }
            div.scroll {
                table #camera-table {
                    thead { tr { th scope="col" { "Camera" } th scope="col" { "State" } th scope="col" { "fps" } th scope="col" { "Last frame" } th scope="col" { "Reported" } } }
                    tbody {
                        @for c in &cameras {
                            tr {
                                th scope="row" { (c.site) " / " (c.gateway) " / " (c.camera) }
                                td {
                                    span class=(format!("status status-{}", if c.gateway_online { c.state.as_str() } else { "offline" })) { (c.state) }
                                    @if !c.gateway_online { " " span.muted { "(gateway offline: stale)" } }
                                    @if !c.listed { " " span.muted { "(no longer configured)" } }
                                }
                                td.num { (format!("{:.1}", c.fps)) }
                                td { (layout::time_opt(c.last_frame_at)) }
                                td { (layout::time(c.updated_at)) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(
        &p,
        Nav::Fleet,
        "Fleet",
        &[],
        Live::Sections,
        body,
    ))
}

/// `GET /sites`: the hierarchy; admins edit it through the API.
pub(crate) async fn sites(State(s): State<ApiState>, PageUser(p): PageUser) -> PageResult {
    let admin = p.user.role >= Role::Admin;
    let list = api(&p, list_sites(State(s.clone()), p.clone()).await)?.items;
    let mut details: Vec<SiteDetail> = Vec::with_capacity(list.len());
    for x in &list {
        details.push(api(
            &p,
            site(State(s.clone()), p.clone(), Path(x.id.clone())).await,
        )?);
    }
    let asset_li = |a: &crate::api::sites::AssetView| {
        let base = format!("/api/v1/sites/{}/assets/{}", a.site, a.id);
        html! {
            li.asset {
                span.node { a href=(format!("/sites/{}/assets/{}", a.site, a.id)) { (a.name) } " " code { (a.id) } }
                @if let Some(ph) = &a.phase { " · phase " (format!("{ph:?}")) }
                @if let Some(c) = &a.component_class { " · " (c) }
                @if admin {
                    " "
                    form.api-form.inline data-method="DELETE" data-url=(base) data-confirm=(format!("Delete asset {}?", a.id)) {
                        button.link.danger type="submit" aria-label=(format!("Delete asset {}", a.id)) { "delete" }
                        span.form-error role="alert" {}
                    }
                }
            }
        }
    };
    let body = html! {
        @if details.is_empty() { p.muted { "No sites yet." } }
        @for d in &details {
            section.card.site aria-labelledby=(format!("site-{}", d.site.id)) {
                h2 id=(format!("site-{}", d.site.id)) {
                    (d.site.name) " " code { (d.site.id) } " " span.muted { (format!("{:?}", d.site.kind).to_lowercase()) }
                }
                ul.tree {
                    @for st in &d.structures {
                        li {
                            span.node { (st.structure.name) " " code { (st.structure.id) } " " span.muted { (format!("{:?}", st.structure.kind).to_lowercase()) } }
                            @if admin {
                                " "
                                form.api-form.inline data-method="DELETE" data-url=(format!("/api/v1/sites/{}/structures/{}", d.site.id, st.structure.id)) data-confirm=(format!("Delete {}?", st.structure.id)) {
                                    button.link.danger type="submit" aria-label=(format!("Delete structure {}", st.structure.id)) { "delete" }
                                    span.form-error role="alert" {}
                                }
                            }
                            ul { @for a in &st.assets { (asset_li(a)) } }
                        }
                    }
                    @if !d.assets_without_structure.is_empty() {
                        li { span.node.muted { "(on no structure)" } ul { @for a in &d.assets_without_structure { (asset_li(a)) } } }
                    }
                }
                @if admin {
                    details.editor {
                        summary { "Add to " (d.site.id) }
                        div.grid {
                            form.api-form data-method="POST" data-url=(format!("/api/v1/sites/{}/structures", d.site.id)) aria-label="Add a structure" {
                                h3 { "Structure" }
                                div.field { label for=(format!("st-id-{}", d.site.id)) { "Id" } input id=(format!("st-id-{}", d.site.id)) name="id" required pattern="[a-z0-9-]{1,64}"; }
                                div.field { label for=(format!("st-name-{}", d.site.id)) { "Name" } input id=(format!("st-name-{}", d.site.id)) name="name" required; }
                                div.field { label for=(format!("st-kind-{}", d.site.id)) { "Kind" } select id=(format!("st-kind-{}", d.site.id)) name="kind" { option { "bay" } option { "tower" } } }
                                button type="submit" { "Add structure" }
                                p.form-error role="alert" {}
                            }
                            form.api-form data-method="POST" data-url=(format!("/api/v1/sites/{}/assets", d.site.id)) aria-label="Add an asset" {
                                h3 { "Asset" }
                                div.field { label for=(format!("as-id-{}", d.site.id)) { "Id" } input id=(format!("as-id-{}", d.site.id)) name="id" required pattern="[a-z0-9-]{1,64}"; }
                                div.field { label for=(format!("as-name-{}", d.site.id)) { "Name" } input id=(format!("as-name-{}", d.site.id)) name="name" required; }
                                div.field {
                                    label for=(format!("as-st-{}", d.site.id)) { "Structure" }
                                    select id=(format!("as-st-{}", d.site.id)) name="structure" {
                                        option value="" { "none" }
                                        @for st in &d.structures { option value=(st.structure.id) { (st.structure.name) } }
                                    }
                                }
                                div.field {
                                    label for=(format!("as-ph-{}", d.site.id)) { "Phase" }
                                    select id=(format!("as-ph-{}", d.site.id)) name="phase" { option value="" { "none" } option { "A" } option { "B" } option { "C" } }
                                }
                                div.field { label for=(format!("as-cl-{}", d.site.id)) { "Component class" } input id=(format!("as-cl-{}", d.site.id)) name="component_class" placeholder="bushing, clamp…"; }
                                button type="submit" { "Add asset" }
                                p.form-error role="alert" {}
                            }
                            form.api-form data-method="PATCH" data-url=(format!("/api/v1/sites/{}", d.site.id)) aria-label="Rename the site" {
                                h3 { "Rename site" }
                                div.field { label for=(format!("site-name-{}", d.site.id)) { "Name" } input id=(format!("site-name-{}", d.site.id)) name="name" required value=(d.site.name); }
                                button.secondary type="submit" { "Rename" }
                                p.form-error role="alert" {}
                            }
                        }
                    }
                }
            }
        }
        @if admin {
            section.card aria-labelledby="new-site-h" {
                h2 #new-site-h { "New site" }
                form.api-form #new-site-form data-method="POST" data-url="/api/v1/sites" {
                    div.field { label for="new-site-id" { "Id" } input #new-site-id name="id" required pattern="[a-z0-9-]{1,64}"; }
                    div.field { label for="new-site-name" { "Name" } input #new-site-name name="name" required; }
                    div.field { label for="new-site-kind" { "Kind" } select #new-site-kind name="kind" { option { "substation" } option { "line" } } }
                    button type="submit" { "Create site" }
                    p.form-error role="alert" {}
                }
            }
        }
    };
    Ok(layout::page(
        &p,
        Nav::Sites,
        "Sites and assets",
        &[],
        Live::Indicator,
        body,
    ))
}

/// `GET /upload` (operators): `upload.js` sends each file to `POST /api/v1/uploads`.
pub(crate) async fn upload(State(s): State<ApiState>, PageUser(p): PageUser) -> PageResult {
    if p.user.role < Role::Operator {
        return Err(error_page(
            Some(&p),
            ApiError::forbidden("uploading needs the operator role"),
        )
        .into());
    }
    let c = choices(&s, &p).await?;
    let body = html! {
        section.card aria-labelledby="up-h" {
            h2 #up-h.visually-hidden { "Upload FLIR files" }
            form #upload-form {
                div.grid.fields {
                    div.field {
                        label for="upload-site" { "Site" }
                        select #upload-site name="site" required {
                            @for x in &c.sites { option value=(x.id) { (x.name) " (" (x.id) ")" } }
                        }
                    }
                    div.field {
                        label for="upload-asset" { "Asset (optional)" }
                        select #upload-asset name="asset" {
                            option value="" { "none" }
                            @for a in &c.assets { option value=(a.id) data-site=(a.site) { (a.name) " (" (a.id) ")" } }
                        }
                    }
                    div.field {
                        label for="upload-table" { "Severity table" }
                        select #upload-table name="severity_table" {
                            @for id in chitti_common::severity::BUILTIN_TABLE_IDS { option value=(id) { (id) } }
                        }
                    }
                    div.field {
                        label for="upload-reference" { "Reference °C (optional)" }
                        input #upload-reference name="reference_c" type="number" step="0.1";
                    }
                    div.field {
                        label for="upload-reference-kind" { "Reference kind" }
                        select #upload-reference-kind name="reference_kind" { option { "ambient" } option { "similar" } }
                    }
                }
                div #drop-zone.drop-zone {
                    p { "Drop FLIR files here (R-JPEG, .fff, .seq, .csq), or " }
                    label.button for="upload-files" { "choose files" }
                    input #upload-files.visually-hidden type="file" name="file" multiple accept=".jpg,.jpeg,.fff,.seq,.csq";
                }
                @if c.sites.is_empty() { p.warn { "Create a site first (Sites page)." } }
            }
        }
        section.card aria-labelledby="results-h" {
            h2 #results-h { "Files" }
            p #upload-summary role="status" { "No files yet." }
            ol #upload-list.upload-list aria-live="polite" {}
        }
    };
    Ok(layout::page(
        &p,
        Nav::Upload,
        "Upload inspections",
        &["upload.js"],
        Live::Indicator,
        body,
    ))
}

/// `GET /reports`: the CSV of the queue's current filter, and the PDF inspection
/// report of a site over a period (both served by the API).
pub(crate) async fn reports(
    State(s): State<ApiState>,
    PageUser(p): PageUser,
    Query(f): Query<QueueParams>,
) -> PageResult {
    let c = choices(&s, &p).await?;
    let params = f.to_api(Utc::now()).map_err(|e| error_page(Some(&p), e))?;
    let csv = format!("/api/v1/alerts/export.csv?{}", api_query_string(&params));
    let now = Utc::now();
    let from = (now - Duration::days(30)).to_rfc3339_opts(SecondsFormat::Secs, true);
    // Whole seconds, rounded up: the period ends after everything received so far (the
    // report's `to` is exclusive; rounded down, a file uploaded in the last second
    // would be left out of "the last 30 days").
    let to = (now + Duration::seconds(1)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let body = html! {
        section.card aria-labelledby="csv-h" {
            h2 #csv-h { "Alerts as CSV" }
            p { "Every alert matching the filter below (the queue's filter when you came from the queue), one row each." }
            (filter_form("/reports", &f, &c))
            p { a #export-csv.button href=(csv) download { "Download CSV" } }
        }
        section.card aria-labelledby="pdf-h" {
            h2 #pdf-h { "Inspection report (PDF)" }
            p { "Per finding: thermogram with overlays, visual image, max °C, reference and ΔT, severity and action, status." }
            form #report-form method="get" action="/api/v1/reports/inspection.pdf" {
                div.field {
                    label for="report-site" { "Site" }
                    select #report-site name="site" required {
                        @for x in &c.sites { option value=(x.id) { (x.name) " (" (x.id) ")" } }
                    }
                }
                div.field {
                    label for="report-from" { "From (RFC 3339)" }
                    input #report-from name="from" required value=(from) pattern="\\d{4}-\\d{2}-\\d{2}T.+" spellcheck="false";
                }
                div.field {
                    label for="report-to" { "To (RFC 3339)" }
                    input #report-to name="to" required value=(to) pattern="\\d{4}-\\d{2}-\\d{2}T.+" spellcheck="false";
                }
                button #report-submit type="submit" { "Make the PDF" }
            }
        }
    };
    Ok(layout::page(
        &p,
        Nav::Reports,
        "Reports",
        &[],
        Live::Indicator,
        body,
    ))
}

/// A message's state in words, with its receiver's last answer.
pub(crate) fn delivery_state(n: &crate::store::NotificationRecord) -> Markup {
    use crate::store::NotificationStatus::*;
    let answer = n.last_status.map(|s| format!(" ({s})")).unwrap_or_default();
    html! {
        @match n.status {
            Sent => { span.ok-text { "sent" (answer) } " " (layout::time_opt(n.sent_at)) }
            Failed => { span.bad-text { "failed" (answer) } }
            Cancelled => { span.muted { "cancelled" } }
            Pending if n.last_error.is_some() => {
                span.warn-text { "retrying" (answer) } " at " (layout::time(n.next_attempt_at))
            }
            Pending if n.next_attempt_at > chrono::Utc::now() => {
                span { "held until " } (layout::time(n.next_attempt_at))
            }
            Pending => { span { "queued" } }
        }
        @if let Some(e) = &n.last_error { " " span.muted.error-text { (e) } }
    }
}

/// What a transition is called in a delivery log.
pub(crate) fn transition_name(n: &crate::store::NotificationRecord) -> String {
    match n.step {
        0 => n.transition.as_str().replace('_', " "),
        1 => "escalated".to_string(),
        s => format!("reminder {}", s - 1),
    }
}

/// `GET /notifications`: the outbox with failures first, and for admins the channels
/// with a test message and re-enabling.
pub(crate) async fn notifications(State(s): State<ApiState>, PageUser(p): PageUser) -> PageResult {
    use crate::api::notifications::{list_channels, list_notifications, NotificationParams};
    let outbox = api(
        &p,
        list_notifications(
            State(s.clone()),
            p.clone(),
            ApiQuery(NotificationParams {
                failures_first: Some(true),
                limit: Some(200),
            }),
        )
        .await,
    )?
    .items;
    let (channels, settings) = if p.user.role >= Role::Admin {
        (
            Some(api(&p, list_channels(State(s.clone()), p.clone()).await)?.items),
            Some(api(
                &p,
                crate::api::notifications::current_settings(&s)
                    .await
                    .map(axum::Json),
            )?),
        )
    } else {
        (None, None)
    };
    let body = html! {
        @if let Some(channels) = &channels {
            section.card #channels aria-labelledby="channels-h" {
                h2 #channels-h { "Channels" }
                @if channels.is_empty() {
                    p.muted { "No channels yet: add them below, or in the hub's [notifications] section." }
                } @else {
                    div.scroll {
                        table #channel-table {
                            thead { tr { th scope="col" { "Channel" } th scope="col" { "Kind" } th scope="col" { "Where" } th scope="col" { "Rules" } th scope="col" { "State" } th scope="col" { "Actions" } } }
                            tbody {
                                @for c in channels {
                                    tr data-channel=(c.id) {
                                        th scope="row" { (c.id) }
                                        td { (c.kind) }
                                        td { @if c.to.is_empty() { (c.endpoint.as_deref().unwrap_or("")) } @else { (c.to.join(", ")) } }
                                        td { (c.rules.join(", ")) }
                                        td {
                                            @match &c.disabled_at {
                                                Some(at) => { span.bad-text { "off since " (layout::time(*at)) } " " span.muted { (c.disabled_reason.as_deref().unwrap_or("")) } }
                                                None => { span.ok-text { "on" } }
                                            }
                                        }
                                        td {
                                            form.api-form data-method="POST" data-result="" data-url=(format!("/api/v1/notification-channels/{}/test", c.id)) {
                                                button.secondary type="submit" { "Send test message" }
                                                output.form-result {}
                                                p.form-error role="alert" {}
                                            }
                                            @if c.disabled_at.is_some() {
                                                form.api-form data-method="POST" data-url=(format!("/api/v1/notification-channels/{}/enable", c.id)) {
                                                    button type="submit" { "Turn back on" }
                                                    p.form-error role="alert" {}
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(settings) = &settings { (settings_editor(settings)) }
        section.card #outbox aria-labelledby="outbox-h" {
            h2 #outbox-h { "Messages" }
            p.muted { "Failed and retrying first, then the newest." }
            @if outbox.is_empty() {
                p.muted { "Nothing has been sent yet." }
            } @else {
                div.scroll {
                    table #outbox-table {
                        thead { tr { th scope="col" { "Queued" } th scope="col" { "Alert" } th scope="col" { "Event" } th scope="col" { "Channel" } th scope="col" { "Attempts" } th scope="col" { "State" } } }
                        tbody {
                            @for n in &outbox {
                                tr data-status=(n.status.as_str()) {
                                    td { (layout::time(n.created_at)) }
                                    td { a href=(format!("/alerts/{}", n.alert_id)) { code { (n.alert_id.to_string()[..8]) "…" } } }
                                    td { (transition_name(n)) }
                                    td { (n.channel) span.muted { " · " (n.rule) } }
                                    td { (n.attempts) }
                                    td { (delivery_state(n)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(
        &p,
        Nav::Notifications,
        "Notifications",
        &[],
        Live::Indicator,
        body,
    ))
}

/// The admins' editor of the channels and rules kept in the store (the file's are
/// listed, not editable): TOML with the file's keys, secrets shown as `(kept)`, saved
/// with the version it was read at (a stale save is refused, nothing overwritten).
fn settings_editor(settings: &crate::api::notifications::SettingsView) -> Markup {
    let listed = |what: &str, ids: &[String]| {
        if ids.is_empty() {
            format!("no {what}")
        } else {
            format!("{what} {}", ids.join(", "))
        }
    };
    html! {
        section.card #settings-editor aria-labelledby="settings-h" {
            h2 #settings-h { "Edit channels and rules" }
            p.muted {
                "The hub's configuration file defines " (listed("channels", &settings.file_channels))
                " and " (listed("rules", &settings.file_rules)) "; change those in the file. "
                "Here: more channels and rules, in TOML with the file's keys ("
                code { "[[channels]]" } ", " code { "[[rules]]" } "). Secrets read "
                code { "(kept)" } ": leave them so to keep them. A webhook without a "
                code { "secret" } " gets one, shown once after saving."
            }
            @for problem in &settings.problems {
                p.bad-text role="alert" { "Not in force: " (problem) }
            }
            form.api-form #settings-form data-method="PUT" data-url="/api/v1/notification-settings" data-if-match=(format!("\"{}\"", settings.version)) {
                div.field {
                    label for="settings-toml" { "Channels and rules (version " (settings.version) ")" }
                    textarea #settings-toml.code name="toml" rows="16" spellcheck="false" { (settings.toml) }
                }
                div.field.buttons { button type="submit" { "Save" } }
                output.form-result {}
                p.form-error role="alert" {}
            }
            @if let (Some(by), Some(at)) = (&settings.updated_by, settings.updated_at) {
                p.muted { "Saved by " (by) " at " (layout::time(at)) "." }
            }
        }
    }
}

/// `bytes` in B, KiB, MiB, GiB or TiB, one decimal.
fn human_bytes(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
        assert_eq!(human_bytes(u64::MAX), "16777216.0 TiB");
    }

    fn gateway(detector: Option<&str>) -> GatewayView {
        GatewayView {
            site: "north-yard".into(),
            gateway: "gw-07".into(),
            username: "north-yard/gw-07".into(),
            created_at: Utc::now(),
            revoked: false,
            revoked_at: None,
            online: true,
            last_seen_at: Some(Utc::now()),
            status_at: Some(Utc::now()),
            offline_for_s: None,
            agent_version: Some("0.4.2".into()),
            config_version: Some(7),
            model: None,
            detector: detector.map(Into::into),
            buffer_depth: Some(0),
            buffer_bytes: Some(0),
            buffer_oldest_at: None,
            evicted_evidence: Some(0),
            evicted_findings: Some(0),
            cameras: Vec::new(),
        }
    }

    #[test]
    fn the_fleet_row_shows_the_detector_and_flags_a_degraded_one() {
        let degraded = "degraded (model /opt/chitti/model.onnx: not found)";
        let row = gateway_row(&gateway(Some(degraded)), None).into_string();
        assert!(
            row.contains(&format!(r#"<span class="warn-text">{degraded}</span>"#)),
            "{row}"
        );
        let row = gateway_row(&gateway(Some("ok (chitti-components 1)")), None).into_string();
        assert!(
            row.contains("<td class=\"detector\">ok (chitti-components 1)</td>"),
            "{row}"
        );
        assert!(!row.contains("warn-text"), "{row}");
        let row = gateway_row(&gateway(None), None).into_string();
        assert!(
            row.contains(r#"<td class="detector"><span class="muted">—</span></td>"#),
            "{row}"
        );
    }

    #[test]
    fn after_sign_in_only_paths_on_this_hub() {
        assert_eq!(
            safe_next(Some("/alerts?status=open")),
            "/alerts?status=open"
        );
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil")), "/");
        assert_eq!(safe_next(None), "/");
        // A tab, newline or space that a browser would drop or fold (found by probing:
        // `/login?next=/%09/evil.example/` landed on evil.example).
        for sneaky in [
            "/\t/evil.example/",
            "/\n/evil.example",
            "/\r//evil",
            "/ /evil",
            "/\u{0}x",
        ] {
            assert_eq!(safe_next(Some(sneaky)), "/", "{sneaky:?}");
        }
    }
}
