//! `GET /dead-letters`: messages ingest could not use — counted by reason and gateway,
//! then listed newest first with their reason and an escaped, truncated payload (an
//! admin may download the bytes). Operators and admins.

use super::layout::{self, Live, Nav};
use super::{api, PageResult, PageUser};
use crate::api::dead_letters::{dead_letter_groups, list_dead_letters, DeadLetterParams};
use crate::api::{ApiQuery, ApiState};
use crate::store::Role;
use axum::extract::{Query, State};
use maud::html;
use serde::{Deserialize, Serialize};

/// The page's filters (empty fields are no filter).
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub(crate) struct DeadLetterFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    class: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    site: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    after: Option<String>,
}

impl DeadLetterFilter {
    fn params(&self, after: bool) -> DeadLetterParams {
        let given = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
        DeadLetterParams {
            class: given(&self.class),
            site: given(&self.site),
            gateway: given(&self.gateway),
            limit: Some(100),
            after: if after { given(&self.after) } else { None },
            ..DeadLetterParams::default()
        }
    }

    /// The filters (and `after`), URL-encoded.
    fn query_string(&self, after: Option<&str>) -> String {
        let mut f = self.clone();
        f.after = after.map(str::to_owned);
        serde_urlencoded::to_string(&f).unwrap_or_default()
    }
}

/// `GET /dead-letters`.
pub(crate) async fn page(
    State(s): State<ApiState>,
    PageUser(p): PageUser,
    Query(f): Query<DeadLetterFilter>,
) -> PageResult {
    let groups = api(
        &p,
        dead_letter_groups(State(s.clone()), p.clone(), ApiQuery(f.params(false))).await,
    )?
    .items;
    let letters = api(
        &p,
        list_dead_letters(State(s.clone()), p.clone(), ApiQuery(f.params(true))).await,
    )?;
    let admin = p.user.role >= Role::Admin;
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    let body = html! {
        form.filters method="get" action="/dead-letters" {
            div.field { label for="dl-class" { "Reason" } input #dl-class name="class" value=(value(&f.class)) placeholder="signature, schema, json…"; }
            div.field { label for="dl-site" { "Site" } input #dl-site name="site" value=(value(&f.site)); }
            div.field { label for="dl-gateway" { "Gateway" } input #dl-gateway name="gateway" value=(value(&f.gateway)); }
            div.field.buttons {
                button type="submit" { "Apply" }
                a.button.secondary href="/dead-letters" { "Clear" }
            }
        }
        section.card #dead-letter-groups aria-labelledby="groups-h" {
            h2 #groups-h { "By reason and gateway" }
            @if groups.is_empty() {
                p.muted { "No dead letters: every message the hub received was usable." }
            } @else {
                div.scroll {
                    table #group-table {
                        thead { tr { th scope="col" { "Reason" } th scope="col" { "Gateway" } th scope="col" { "Letters" } th scope="col" { "Newest" } } }
                        tbody {
                            @for g in &groups {
                                tr {
                                    th scope="row" { (g.class) }
                                    td {
                                        @match (&g.site, &g.gateway) {
                                            (Some(site), Some(gw)) => { a href=(format!("/fleet/{site}/{gw}")) { (site) "/" (gw) } }
                                            _ => { span.muted { "not a gateway topic" } }
                                        }
                                    }
                                    td.num { (g.count) }
                                    td { (layout::time(g.last_at)) }
                                }
                            }
                        }
                    }
                }
            }
        }
        section.card #dead-letters aria-labelledby="letters-h" {
            h2 #letters-h { "Newest first" }
            @if !letters.items.is_empty() {
                div.scroll {
                    table #dead-letter-table {
                        thead { tr { th scope="col" { "Received" } th scope="col" { "Topic" } th scope="col" { "Reason" } th scope="col" { "Payload" } } }
                        tbody {
                            @for d in &letters.items {
                                tr data-id=(d.id) {
                                    td { (layout::time(d.received_at)) }
                                    td { code { (d.topic) } }
                                    td { (d.reason) }
                                    td {
                                        code.payload { (d.payload_preview) @if d.payload_truncated { "…" } }
                                        " " span.muted { "(" (d.payload_bytes) " bytes)" }
                                        @if admin {
                                            " " a href=(format!("/api/v1/dead-letters/{}/payload", d.id)) download { "Download" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            nav.paging aria-label="Pages" {
                @if f.after.as_deref().is_some_and(|a| !a.is_empty()) {
                    a #first-page.button.secondary href=(format!("/dead-letters?{}", f.query_string(None))) { "First page" }
                }
                @if let Some(next) = &letters.next_cursor {
                    a #next-page.button.secondary href=(format!("/dead-letters?{}", f.query_string(Some(next)))) { "Next page" }
                }
            }
        }
    };
    Ok(layout::page(
        &p,
        Nav::DeadLetters,
        "Dead letters",
        &[],
        Live::Indicator,
        body,
    ))
}
