//! `/`: the shift's first look — open alerts by severity, gateways online and offline,
//! the last 24 hours of findings by site, and the five hottest open alerts.

use super::layout::{self, Live, Nav};
use super::{all_gateways, api, PageResult, PageUser};
use crate::api::alerts::{list_alerts, AlertParams};
use crate::api::findings::{list_findings, FindingParams};
use crate::api::{AlertView, ApiQuery, ApiState};
use axum::extract::State;
use chrono::{Duration, Utc};
use maud::{html, Markup};
use std::collections::BTreeMap;

/// At most this many pages (of 1000) are counted; beyond, the count says "at least".
const MAX_PAGES: usize = 20;

/// `GET /`.
pub(crate) async fn overview(State(s): State<ApiState>, PageUser(p): PageUser) -> PageResult {
    // Open alerts, every page (bounded).
    let mut open: Vec<AlertView> = Vec::new();
    let mut after = None;
    let mut open_capped = false;
    for i in 0..MAX_PAGES {
        let page = api(
            &p,
            list_alerts(
                State(s.clone()),
                p.clone(),
                ApiQuery(AlertParams {
                    status: Some("open".into()),
                    limit: Some(1000),
                    after: after.take(),
                    ..AlertParams::default()
                }),
            )
            .await,
        )?;
        open.extend(page.items);
        match page.next_cursor {
            Some(c) if i + 1 < MAX_PAGES => after = Some(c),
            Some(_) => open_capped = true,
            None => break,
        }
    }
    let mut by_level: BTreeMap<u8, usize> = BTreeMap::new();
    let mut cool = 0;
    // Fleet alarms are counted on their own: they are about the watch, not the
    // equipment.
    let (fleet, mut open): (Vec<AlertView>, Vec<AlertView>) =
        open.into_iter().partition(|a| a.severity_table.is_none());
    for a in &open {
        if a.worst_level == 0 && a.cool_exception {
            cool += 1;
        } else {
            *by_level.entry(a.worst_level.min(4)).or_default() += 1;
        }
    }
    open.sort_by(|a, b| {
        let max = |a: &AlertView| a.worst_max_c.unwrap_or(f64::NEG_INFINITY);
        max(b).total_cmp(&max(a))
    });
    let hottest: Vec<&AlertView> = open.iter().take(5).collect();

    let gateways = all_gateways(&s, &p).await?;
    let active: Vec<_> = gateways.iter().filter(|g| !g.revoked).collect();
    let online = active.iter().filter(|g| g.online).count();
    let offline: Vec<_> = active.iter().filter(|g| !g.online).collect();
    // Online gateways running on thresholds alone because their detector failed: still
    // finding hotspots, but no longer naming components or comparing phases.
    let degraded: Vec<_> = active
        .iter()
        .filter(|g| g.online)
        .filter_map(|g| {
            let d = g.detector.as_deref()?;
            d.starts_with("degraded").then_some((g, d))
        })
        .collect();

    // Findings of the last 24 h by site, with the worst level seen.
    let since = Utc::now() - Duration::hours(24);
    let mut by_site: BTreeMap<String, (usize, u8)> = BTreeMap::new();
    let mut after = None;
    let mut findings_capped = false;
    for i in 0..MAX_PAGES {
        let page = api(
            &p,
            list_findings(
                State(s.clone()),
                p.clone(),
                ApiQuery(FindingParams {
                    since: Some(since),
                    limit: Some(1000),
                    after: after.take(),
                    ..FindingParams::default()
                }),
            )
            .await,
        )?;
        for f in &page.items {
            let e = by_site.entry(f.finding.site.clone()).or_default();
            e.0 += 1;
            e.1 = e.1.max(f.finding.severity.level);
        }
        match page.next_cursor {
            Some(c) if i + 1 < MAX_PAGES => after = Some(c),
            Some(_) => findings_capped = true,
            None => break,
        }
    }

    let at_least = |capped: bool| if capped { "at least " } else { "" };
    let body = html! {
        div.grid {
            section.card #open-by-severity data-live-section aria-labelledby="open-h" {
                h2 #open-h { "Open alerts by severity" }
                p.big { (at_least(open_capped)) (open.len()) " open" }
                (level_bars(&by_level, cool))
                p { a href="/alerts?status=open&sort=worst_level_desc" { "Open the queue, worst first" } }
                p #fleet-alarms class=(if fleet.is_empty() { "muted" } else { "bad-text" }) {
                    a href="/alerts?status=open&kind=fleet" { (fleet.len()) " fleet alarms open" }
                    @for a in fleet.iter().take(5) {
                        br; (layout::alert_severity(a)) " " (a.site) "/" (a.gateway)
                        @if !a.camera.is_empty() { " " (a.camera) }
                    }
                }
            }
            section.card #gateway-health data-live-section aria-labelledby="gw-h" {
                h2 #gw-h { "Gateways" }
                p.big {
                    span.ok-text { (online) " online" } " · "
                    span class=(if offline.is_empty() { "muted" } else { "bad-text" }) { (offline.len()) " offline" }
                }
                @if !offline.is_empty() {
                    ul.plain {
                        @for g in &offline {
                            li {
                                span.status.status-offline { "offline" } " "
                                (g.site) "/" (g.gateway)
                                @if let Some(s) = g.offline_for_s { " for " (layout::duration(s)) }
                            }
                        }
                    }
                }
                @if !degraded.is_empty() {
                    p.warn-text { (degraded.len()) " on thresholds alone (component detector degraded)" }
                    ul.plain {
                        @for (g, d) in &degraded {
                            li { (g.site) "/" (g.gateway) ": " (d) }
                        }
                    }
                }
                p { a href="/fleet" { "Fleet health" } }
            }
            section.card #findings-by-site data-live-section aria-labelledby="fs-h" {
                h2 #fs-h { "Findings in the last 24 h, by site" }
                @if by_site.is_empty() {
                    p.muted { "No findings in the last 24 hours." }
                } @else {
                    (site_bars(&by_site))
                    @if findings_capped { p.muted { "Counted the newest " (MAX_PAGES * 1000) " findings." } }
                }
            }
            section.card.wide #hottest data-live-section aria-labelledby="hot-h" {
                h2 #hot-h { "Hottest open alerts" }
                @if hottest.is_empty() {
                    p.muted { "No open alerts." }
                } @else {
                    table {
                        thead { tr { th scope="col" { "Severity" } th scope="col" { "Max" } th scope="col" { "Where" } th scope="col" { "Last finding" } } }
                        tbody {
                            @for a in &hottest {
                                tr {
                                    td { (layout::alert_severity(a)) }
                                    td.num { (layout::celsius_opt(a.worst_max_c)) }
                                    td { a href=(format!("/alerts/{}", a.id)) { (place(a)) } }
                                    td { (layout::time(a.last_finding_at)) }
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
        Nav::Overview,
        "Overview",
        &[],
        Live::Sections,
        body,
    ))
}

/// Where an alert is: site, asset (or camera), component.
pub(crate) fn place(a: &AlertView) -> String {
    if a.severity_table.is_none() {
        let camera = if a.camera.is_empty() {
            String::new()
        } else {
            format!(" {}", a.camera)
        };
        return format!(
            "{} · {}{camera} · {}",
            a.site,
            a.gateway,
            a.kind.replace('_', " ")
        );
    }
    let mut s = format!("{} · {}", a.site, a.asset.as_deref().unwrap_or(&a.camera));
    if let Some(c) = &a.component_class {
        s.push_str(&format!(" · {c}"));
    }
    s
}

/// One row of the severity bars: a level, or the cool exceptions (level 0, but not
/// "none": they need investigating).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BarRow {
    Level(u8),
    Cool,
}

/// Horizontal bars of open alerts per level, with cool exceptions as their own row
/// between L1 and L0 (colour and text), as SVG.
fn level_bars(by_level: &BTreeMap<u8, usize>, cool: usize) -> Markup {
    let mut rows: Vec<(BarRow, usize)> = (1..=4)
        .rev()
        .map(|l| (BarRow::Level(l), by_level.get(&l).copied().unwrap_or(0)))
        .collect();
    rows.push((BarRow::Cool, cool));
    rows.push((BarRow::Level(0), by_level.get(&0).copied().unwrap_or(0)));
    let max = rows.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let row_h = 26;
    let height = row_h * rows.len();
    let label = |row: BarRow| match row {
        BarRow::Level(l) => format!("L{l}"),
        BarRow::Cool => "cool".to_string(),
    };
    html! {
        svg.bars viewBox=(format!("0 0 320 {height}")) role="img" aria-label="Open alerts by severity level" {
            @for (i, (row, n)) in rows.iter().enumerate() {
                @let y = i * row_h;
                @let w = (*n as f64 / max as f64 * 200.0).round();
                @let fill = match row {
                    BarRow::Level(l) => format!("bar sev-fill-{l}"),
                    BarRow::Cool => "bar sev-fill-cool".to_string(),
                };
                text x="0" y=(y + 17) class="bar-label" { (label(*row)) }
                rect x="40" y=(y + 4) width=(w.max(if *n > 0 { 2.0 } else { 0.0 })) height="18" class=(fill) {}
                text x=(48.0 + w) y=(y + 17) class="bar-value" { (n) }
            }
        }
        ul.legend {
            @for (row, n) in &rows {
                @match row {
                    BarRow::Level(l) => { li { span class=(layout::level_class(*l)) { "L" (l) } ": " (n) } }
                    BarRow::Cool => { li { span class=(layout::COOL_EXCEPTION_CLASS) { (layout::COOL_EXCEPTION_NAME) } ": " (n) } }
                }
            }
        }
    }
}

/// Bars of findings per site, as SVG, with a table of the same numbers.
fn site_bars(by_site: &BTreeMap<String, (usize, u8)>) -> Markup {
    let max = by_site.values().map(|v| v.0).max().unwrap_or(1).max(1);
    let row_h = 26;
    let height = row_h * by_site.len();
    html! {
        svg.bars viewBox=(format!("0 0 320 {height}")) role="img" aria-label="Findings in the last 24 hours by site" {
            @for (i, (site, (n, worst))) in by_site.iter().enumerate() {
                @let y = i * row_h;
                @let w = (*n as f64 / max as f64 * 160.0).round().max(2.0);
                text x="0" y=(y + 17) class="bar-label" { (site) }
                rect x="120" y=(y + 4) width=(w) height="18" class=(format!("bar sev-fill-{}", worst.min(&4))) {}
                text x=(128.0 + w) y=(y + 17) class="bar-value" { (n) }
            }
        }
        table.compact {
            thead { tr { th scope="col" { "Site" } th scope="col" { "Findings" } th scope="col" { "Worst" } } }
            tbody {
                @for (site, (n, worst)) in by_site {
                    tr { td { a href=(format!("/alerts?site={site}")) { (site) } } td.num { (n) } td { "L" (worst) } }
                }
            }
        }
    }
}
