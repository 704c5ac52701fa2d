//! `GET /audit`: the audit trail — who did what, to what, when and from where —
//! filtered by user, action, object and time, newest first, with the CSV of the same
//! filter. Admins only (it shows sign-in failures and addresses).

use super::layout::{self, Live, Nav};
use super::{api, PageResult, PageUser};
use crate::api::audit::{list_audit, AuditParams};
use crate::api::{ApiQuery, ApiState};
use axum::extract::{Query, State};
use chrono::{DateTime, NaiveDate, Utc};
use maud::html;
use serde::{Deserialize, Serialize};

/// The page's filters (empty fields are no filter; dates are whole UTC days).
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub(crate) struct AuditFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    after: Option<String>,
}

impl AuditFilter {
    fn params(&self, after: bool) -> AuditParams {
        let given = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
        AuditParams {
            actor: given(&self.actor),
            action: given(&self.action),
            target: given(&self.target),
            since: day(&self.from, 0),
            until: day(&self.to, 1),
            limit: Some(100),
            after: if after { given(&self.after) } else { None },
        }
    }

    /// The filters (and `after`), URL-encoded.
    fn query_string(&self, after: Option<&str>) -> String {
        let mut f = self.clone();
        f.after = after.map(str::to_owned);
        serde_urlencoded::to_string(&f).unwrap_or_default()
    }

    /// The same filters as the API's parameters, for the CSV link.
    fn export_query(&self) -> String {
        let p = self.params(false);
        let pairs: Vec<(&str, String)> = [
            ("actor", p.actor),
            ("action", p.action),
            ("target", p.target),
            ("since", p.since.map(|t| t.to_rfc3339())),
            ("until", p.until.map(|t| t.to_rfc3339())),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }
}

/// Midnight UTC of the `YYYY-MM-DD` in `v`, plus `plus_days` (an unreadable date is no
/// filter).
fn day(v: &Option<String>, plus_days: i64) -> Option<DateTime<Utc>> {
    let d = NaiveDate::parse_from_str(v.as_deref()?.trim(), "%Y-%m-%d").ok()?;
    let d = d.checked_add_signed(chrono::Duration::days(plus_days))?;
    Some(d.and_hms_opt(0, 0, 0)?.and_utc())
}

/// `GET /audit`.
pub(crate) async fn page(
    State(s): State<ApiState>,
    PageUser(p): PageUser,
    Query(f): Query<AuditFilter>,
) -> PageResult {
    let entries = api(
        &p,
        list_audit(State(s.clone()), p.clone(), ApiQuery(f.params(true))).await,
    )?;
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    let body = html! {
        form.filters method="get" action="/audit" {
            div.field { label for="audit-actor" { "User" } input #audit-actor name="actor" value=(value(&f.actor)); }
            div.field { label for="audit-action" { "Action" } input #audit-action name="action" value=(value(&f.action)) placeholder="user.*, auth.login_failed…"; }
            div.field { label for="audit-target" { "Object" } input #audit-target name="target" value=(value(&f.target)); }
            div.field { label for="audit-from" { "From" } input #audit-from type="date" name="from" value=(value(&f.from)); }
            div.field { label for="audit-to" { "To" } input #audit-to type="date" name="to" value=(value(&f.to)); }
            div.field.buttons {
                button type="submit" { "Apply" }
                a.button.secondary href="/audit" { "Clear" }
                a #audit-csv.button.secondary href=(format!("/api/v1/audit/export.csv?{}", f.export_query())) download { "CSV" }
            }
        }
        section.card #audit aria-labelledby="audit-h" {
            h2 #audit-h { "Newest first" }
            p.muted {
                "Each entry is chained to the one before it by its hash; "
                code { "chitti-hub audit verify" } " detects an edited, inserted or deleted entry."
            }
            @if entries.items.is_empty() {
                p.muted { "No entries match." }
            } @else {
                div.scroll {
                    table #audit-table {
                        thead { tr {
                            th scope="col" { "#" } th scope="col" { "When" } th scope="col" { "Who" }
                            th scope="col" { "Action" } th scope="col" { "Object" } th scope="col" { "From" }
                            th scope="col" { "Detail" }
                        } }
                        tbody {
                            @for e in &entries.items {
                                tr data-seq=(e.seq) data-action=(e.action) {
                                    td.num { (e.seq) }
                                    td { (layout::time(e.at)) }
                                    td { (e.actor) @if e.pseudonymised { " " span.muted { "(pseudonymised)" } } }
                                    td { code { (e.action) } }
                                    td { (e.target) }
                                    td { (e.from_address.as_deref().unwrap_or("")) }
                                    td { @if !e.detail.is_null() { code.payload { (e.detail.to_string()) } } }
                                }
                            }
                        }
                    }
                }
            }
            nav.paging aria-label="Pages" {
                @if f.after.as_deref().is_some_and(|a| !a.is_empty()) {
                    a #first-page.button.secondary href=(format!("/audit?{}", f.query_string(None))) { "First page" }
                }
                @if let Some(next) = &entries.next_cursor {
                    a #next-page.button.secondary href=(format!("/audit?{}", f.query_string(Some(next)))) { "Next page" }
                }
            }
        }
    };
    Ok(layout::page(
        &p,
        Nav::Audit,
        "Audit trail",
        &[],
        Live::Indicator,
        body,
    ))
}
