//! `GET /models`: which model each gateway runs, the updates in progress, every
//! rollout and the registry; `GET /models/rollouts/{id}`: one rollout — its waves,
//! each gateway's state and reason, and for admins pause, resume and abort.

use super::layout::{self, Live, Nav};
use super::{error_page, PageResult, PageUser};
use crate::api::error::ApiError;
use crate::api::models::{distribution, load_rollout, RolloutView};
use crate::api::ApiState;
use crate::store::{GatewayRolloutState, Role, RolloutState, RolloutStore};
use axum::extract::{Path, State};
use maud::{html, Markup};

/// Rollouts shown on the models page.
const ROLLOUTS_SHOWN: u32 = 50;

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

fn progress(r: &RolloutView) -> Markup {
    let count = |s: GatewayRolloutState| r.gateways.iter().filter(|g| g.state == s).count();
    html! {
        (count(GatewayRolloutState::Succeeded)) " succeeded"
        @let failed = count(GatewayRolloutState::Failed);
        @if failed > 0 { ", " span.bad-text { (failed) " failed" } }
        @let skipped = count(GatewayRolloutState::Skipped);
        @if skipped > 0 { ", " (skipped) " skipped" }
        " of " (r.gateways.len())
    }
}

fn state_badge(state: RolloutState) -> Markup {
    html! { span class=(format!("status status-rollout-{}", state.as_str())) { (state.as_str()) } }
}

/// `GET /models`.
pub(crate) async fn page(State(s): State<ApiState>, PageUser(p): PageUser) -> PageResult {
    let failed = |e: ApiError| error_page(Some(&p), e);
    let dist = distribution(&s).await.map_err(failed)?;
    let registry = s.store.models().await.map_err(|e| failed(e.into()))?;
    let mut rollouts = Vec::new();
    for r in s
        .store
        .rollouts(ROLLOUTS_SHOWN)
        .await
        .map_err(|e| failed(e.into()))?
    {
        rollouts.push(load_rollout(&s, &r.id).await.map_err(failed)?);
    }
    let updating: Vec<_> = dist
        .updates
        .iter()
        .filter(|(_, u)| !u.phase.is_final())
        .collect();
    let body = html! {
        section.card #model-distribution data-live-section aria-labelledby="dist-h" {
            h2 #dist-h { "Running models" }
            div.scroll {
                table #distribution-table {
                    thead { tr { th scope="col" { "Model" } th scope="col" { "SHA-256" } th scope="col" { "Gateways" } } }
                    tbody {
                        @for m in &dist.models {
                            tr {
                                th scope="row" {
                                    @match (&m.name, &m.version) {
                                        (Some(n), Some(v)) => { (n) " " (v) }
                                        _ => { span.muted { "none (thresholds alone)" } }
                                    }
                                }
                                td { code { (m.sha256.as_deref().map(short).unwrap_or("—")) } }
                                td {
                                    (m.gateways.len()) ": "
                                    @for (i, g) in m.gateways.iter().enumerate() {
                                        @if i > 0 { ", " }
                                        a href=(format!("/fleet/{g}")) { (g) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if !updating.is_empty() {
                h3 { "Updates in progress" }
                ul #model-updates {
                    @for (g, u) in &updating {
                        li { (g) ": " (u.phase.as_str()) " (seq " (u.seq) ")" }
                    }
                }
            }
        }
        section.card #rollouts data-live-section aria-labelledby="rollouts-h" {
            h2 #rollouts-h { "Rollouts" }
            @if rollouts.is_empty() {
                p.muted { "None yet: upload a model (" code { "POST /api/v1/models" } "), then start one (" code { "POST /api/v1/rollouts" } ")." }
            } @else {
                div.scroll {
                    table #rollout-table {
                        thead { tr { th scope="col" { "Model" } th scope="col" { "State" } th scope="col" { "Progress" } th scope="col" { "Started" } th scope="col" { "By" } } }
                        tbody {
                            @for r in &rollouts {
                                tr {
                                    th scope="row" { a href=(format!("/models/rollouts/{}", r.id)) { (r.model_name) " " (r.model_version) } }
                                    td { (state_badge(r.state)) }
                                    td { (progress(r)) }
                                    td { (layout::time(r.created_at)) }
                                    td { (r.created_by) }
                                }
                            }
                        }
                    }
                }
            }
        }
        section.card #registry aria-labelledby="registry-h" {
            h2 #registry-h { "Registry" }
            @if registry.is_empty() {
                p.muted { "No model uploaded." }
            } @else {
                div.scroll {
                    table #registry-table {
                        thead { tr { th scope="col" { "Model" } th scope="col" { "SHA-256" } th scope="col" { "Size" } th scope="col" { "Self-test" } th scope="col" { "Uploaded" } } }
                        tbody {
                            @for m in &registry {
                                tr {
                                    th scope="row" { (m.name) " " (m.version) }
                                    td { code { (short(&m.sha256)) } }
                                    td { (m.bytes / 1024) " KiB" }
                                    td {
                                        (m.check_results.iter().map(|f| f.matched).sum::<usize>()) " of "
                                        (m.check_results.iter().map(|f| f.expected).sum::<usize>()) " expected, "
                                        (m.check_results.len()) " frames"
                                    }
                                    td { (layout::time(m.created_at)) " by " (m.uploaded_by) }
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
        Nav::Models,
        "Models",
        &[],
        Live::Sections,
        body,
    ))
}

fn action(id: &str, verb: &str, label: &str, confirm: Option<&str>) -> Markup {
    html! {
        form.api-form.inline id=(format!("rollout-{verb}")) data-method="POST"
            data-url=(format!("/api/v1/rollouts/{id}/{verb}"))
            data-confirm=[confirm] {
            input name="reason" type="text" maxlength="1024" placeholder="Why" aria-label=(format!("Why {verb}"));
            button type="submit" { (label) }
            p.form-error role="alert" {}
        }
    }
}

/// `GET /models/rollouts/{id}`.
pub(crate) async fn rollout(
    State(s): State<ApiState>,
    PageUser(p): PageUser,
    Path(id): Path<String>,
) -> PageResult {
    let r = load_rollout(&s, &id)
        .await
        .map_err(|e| error_page(Some(&p), e))?;
    let title = format!("Rollout of {} {}", r.model_name, r.model_version);
    let body = html! {
        section.card #rollout-state data-live-section aria-labelledby="state-h" {
            h2 #state-h { "Rollout" }
            dl.facts {
                dt { "State" }
                dd #rollout-state-value { (state_badge(r.state)) @if let Some(why) = &r.reason { " — " (why) } }
                dt { "Progress" } dd { (progress(&r)) }
                dt { "Waves" }
                dd {
                    @for (i, n) in r.waves.iter().enumerate() {
                        @if i > 0 { ", " }
                        @if i as i32 == r.current_wave && r.state.is_open() { strong { (n) } } @else { (n) }
                    }
                    " gateways (the first is the canary)"
                }
                dt { "Probation" } dd { (r.probation_s) " s per gateway; a gateway silent for " (r.step_timeout_s) " s fails" }
                dt { "Abort" } dd { "when more than " (format!("{:.0}", r.abort_failure_ratio * 100.0)) " % of at least " (r.min_gateways) " decided gateways failed" }
                dt { "Started" } dd { (layout::time(r.created_at)) " by " (r.created_by) }
            }
            @if p.user.role >= Role::Admin && r.state.is_open() {
                div.actions #rollout-actions {
                    @if r.state == RolloutState::Running { (action(&r.id, "pause", "Pause", None)) }
                    @if r.state == RolloutState::Paused { (action(&r.id, "resume", "Resume", None)) }
                    (action(&r.id, "abort", "Abort and roll back", Some("Abort this rollout and send every gateway it reached back to its previous model?")))
                }
            }
        }
        section.card #rollout-gateways data-live-section aria-labelledby="gateways-h" {
            h2 #gateways-h { "Gateways" }
            div.scroll {
                table #rollout-gateway-table {
                    thead { tr { th scope="col" { "Gateway" } th scope="col" { "Wave" } th scope="col" { "State" } th scope="col" { "Why" } th scope="col" { "Sent" } th scope="col" { "Changed" } } }
                    tbody {
                        @for g in &r.gateways {
                            tr data-gateway=(g.gateway) {
                                th scope="row" { a href=(format!("/fleet/{}", g.gateway)) { (g.gateway) } }
                                td { @if g.wave == 0 && r.waves.len() > 1 { "canary" } @else { (g.wave + 1) } }
                                td { span class=(format!("status status-update-{}", g.state.as_str())) { (g.state.as_str().replace('_', " ")) } }
                                td { (g.reason.as_deref().unwrap_or("")) }
                                td { @if let Some(at) = g.assigned_at { (layout::time(at)) } }
                                td { (layout::time(g.updated_at)) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(
        &p,
        Nav::Models,
        &title,
        &[],
        Live::Sections,
        body,
    ))
}
