//! `GET /fleet/{site}/{gateway}`: one gateway's configuration — what the hub wants it
//! to run and what it reported doing (applied, rejected with its errors, rolled back),
//! the difference between the two documents, every saved version with who and why,
//! and, for admins, the editor that saves a new version (`PUT …/config`, `If-Match`).

use super::layout::{self, Live, Nav};
use super::{error_page, PageResult, PageUser};
use crate::api::error::ApiError;
use crate::api::ApiState;
use crate::store::Role;
use axum::extract::{Path, State};
use maud::{html, Markup};

/// Longest document (in lines, each side) the page diffs line by line.
const MAX_DIFF_LINES: usize = 2_000;

/// One line of a diff: kept, only in the desired document, or only in the running one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DiffLine<'a> {
    /// In both.
    Same(&'a str),
    /// Only in the desired document.
    Desired(&'a str),
    /// Only in the running one.
    Running(&'a str),
}

/// The lines of `running` and `desired`, aligned on their longest common subsequence;
/// `None` when either is longer than [`MAX_DIFF_LINES`].
pub(crate) fn line_diff<'a>(running: &'a str, desired: &'a str) -> Option<Vec<DiffLine<'a>>> {
    let a: Vec<&str> = running.lines().collect();
    let b: Vec<&str> = desired.lines().collect();
    if a.len() > MAX_DIFF_LINES || b.len() > MAX_DIFF_LINES {
        return None;
    }
    // lcs[i][j]: the common subsequence's length of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            out.push(DiffLine::Same(a[i]));
            i += 1;
            j += 1;
        } else if lcs[i + 1][j] >= lcs[i][j + 1] {
            out.push(DiffLine::Running(a[i]));
            i += 1;
        } else {
            out.push(DiffLine::Desired(b[j]));
            j += 1;
        }
    }
    out.extend(a[i..].iter().map(|l| DiffLine::Running(l)));
    out.extend(b[j..].iter().map(|l| DiffLine::Desired(l)));
    Some(out)
}

fn diff_view(running: &str, desired: &str) -> Markup {
    match line_diff(running, desired) {
        None => html! { p.muted { "The documents are too long to compare line by line." } },
        Some(lines) if lines.iter().all(|l| matches!(l, DiffLine::Same(_))) => {
            html! { p.ok-text #config-same { "The gateway runs exactly the desired document." } }
        }
        Some(lines) => html! {
            pre.code #config-diff aria-label="Running (−) against desired (+)" {
                @for line in lines {
                    @match line {
                        DiffLine::Same(l) => { span.diff-same { "  " (l) "\n" } }
                        DiffLine::Running(l) => { del.diff-running { "- " (l) "\n" } }
                        DiffLine::Desired(l) => { ins.diff-desired { "+ " (l) "\n" } }
                    }
                }
            }
        },
    }
}

/// `GET /fleet/{site}/{gateway}`.
pub(crate) async fn page(
    State(s): State<ApiState>,
    PageUser(p): PageUser,
    Path((site, gateway)): Path<(String, String)>,
) -> PageResult {
    let failed = |e: ApiError| error_page(Some(&p), e);
    let g = crate::api::fleet::existing_gateway(&s, &site, &gateway)
        .await
        .map_err(failed)?;
    let v = crate::api::gateway_config::gateway_config(&s, &site, &gateway)
        .await
        .map_err(failed)?;
    let (desired, reported) = (&v.desired, &v.reported);
    let running = reported.as_ref().and_then(|r| r.config.as_deref());
    let title = format!("{site} / {gateway}");
    let body = html! {
        section.card #config-state data-live-section aria-labelledby="state-h" {
            h2 #state-h { "Configuration" }
            dl.facts {
                dt { "Desired" }
                dd {
                    @match (&desired.author, desired.created_at) {
                        (Some(author), Some(at)) => { "version " (desired.version) ", saved by " (author) " at " (layout::time(at))
                            @if let Some(reason) = desired.reason.as_deref().filter(|r| !r.is_empty()) { " — " (reason) } }
                        _ => { span.muted { "none saved: the gateway runs its local file" } }
                    }
                }
                dt { "Reported" }
                dd #config-reported {
                    @match reported {
                        Some(r) => {
                            span class=(format!("status status-config-{}", r.status)) { (r.status.replace('_', " ")) }
                            " (version " (r.version) "), running "
                            @match r.applied_version { Some(v) => { "version " (v) } None => { "its local file" } }
                            ", reported " (layout::time(r.received_at))
                        }
                        None => { span.muted { "nothing yet" } }
                    }
                }
                dt { "In sync" }
                dd #config-sync {
                    @if g.revoked_at.is_some() { span.muted { "revoked" } }
                    @else if v.in_sync { span.ok-text { "yes" } }
                    @else { span.warn-text { "no: waiting for version " (desired.version) } }
                }
            }
            @if let Some(r) = reported {
                @if !r.errors.is_empty() {
                    ul.bad-text #config-errors role="alert" {
                        @for e in &r.errors { li { (e) } }
                    }
                }
            }
            @if let (Some(wanted), Some(running)) = (desired.config.as_deref(), running) {
                h3 { "Running (−) against desired (+)" }
                (diff_view(running, wanted))
            }
        }
        @if p.user.role >= Role::Admin && g.revoked_at.is_none() {
            section.card #config-editor aria-labelledby="editor-h" {
                h2 #editor-h { "Save a new version" }
                p.muted {
                    "The agent's whole file, checked with the agent's own validation before anything is saved. "
                    "Its identity, keys, broker and outbox stay the gateway's own; secrets read " code { "(kept)" } "."
                }
                form.api-form #config-form data-method="PUT"
                    data-url=(format!("/api/v1/gateways/{site}/{gateway}/config"))
                    data-if-match=(format!("\"{}\"", desired.version)) {
                    div.field {
                        label for="config-toml" { "Configuration (editing version " (desired.version) ")" }
                        textarea #config-toml.code name="config" rows="24" spellcheck="false" {
                            (desired.config.as_deref().or(running).unwrap_or(""))
                        }
                    }
                    div.field {
                        label for="config-reason" { "Why" }
                        input #config-reason name="reason" type="text" maxlength="1024";
                    }
                    div.field.buttons { button type="submit" { "Save and publish" } }
                    p.form-error role="alert" {}
                }
            }
        }
        section.card #config-history aria-labelledby="history-h" {
            h2 #history-h { "History" }
            @if v.history.is_empty() {
                p.muted { "No version saved yet." }
            } @else {
                div.scroll {
                    table #config-history-table {
                        thead { tr { th scope="col" { "Version" } th scope="col" { "Saved" } th scope="col" { "By" } th scope="col" { "Why" } } }
                        tbody {
                            @for d in &v.history {
                                tr { th scope="row" { (d.version) } td { (layout::time(d.created_at)) } td { (d.author) } td { (d.reason) } }
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
        &title,
        &[],
        Live::Sections,
        body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diff_keeps_common_lines_and_marks_each_side() {
        let running = "version = 1\n[analysis]\nmax_hotspots = 8\ntable = \"tuv\"\n";
        let desired = "version = 1\n[analysis]\nmax_hotspots = 4\ntable = \"tuv\"\n[remote]\n";
        assert_eq!(
            line_diff(running, desired).unwrap(),
            vec![
                DiffLine::Same("version = 1"),
                DiffLine::Same("[analysis]"),
                DiffLine::Running("max_hotspots = 8"),
                DiffLine::Desired("max_hotspots = 4"),
                DiffLine::Same("table = \"tuv\""),
                DiffLine::Desired("[remote]"),
            ]
        );
        let long = "x\n".repeat(MAX_DIFF_LINES + 1);
        assert!(line_diff(&long, "x").is_none());
    }
}
