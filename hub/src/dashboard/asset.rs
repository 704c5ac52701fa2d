//! `GET /sites/{site}/assets/{asset}`: an asset's history — max °C and ΔT over time for
//! it and its sibling phases, over the severity table's bands, inspections marked, the
//! alerts of the period — with the period's CSV. Everyone signed in.

use super::chart::history_chart;
use super::layout::{self, Live, Nav};
use super::{api, PageResult, PageUser};
use crate::api::alerts::HistoryPoint;
use crate::api::trends::{asset_trend, TrendParams};
use crate::api::{ApiQuery, ApiState};
use axum::extract::{Path, Query, State};
use chitti_common::finding::TrackState;
use chrono::{Duration, NaiveDate, Utc};
use maud::html;
use serde::Deserialize;

/// The page's period: the last `days` days (default 365).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct PeriodFilter {
    days: Option<String>,
    from: Option<String>,
}

/// `GET /sites/{site}/assets/{asset}`.
pub(crate) async fn page(
    State(s): State<ApiState>,
    PageUser(p): PageUser,
    Path((site, asset)): Path<(String, String)>,
    Query(f): Query<PeriodFilter>,
) -> PageResult {
    let days = f
        .days
        .as_deref()
        .and_then(|d| d.parse::<i64>().ok())
        .unwrap_or(365)
        .clamp(1, 3660);
    let until = Utc::now();
    let since = f
        .from
        .as_deref()
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
        .filter(|d| *d < until)
        .unwrap_or(until - Duration::days(days));
    let t = api(
        &p,
        asset_trend(
            State(s.clone()),
            p.clone(),
            Path((site.clone(), asset.clone())),
            ApiQuery(TrendParams {
                since: Some(since),
                until: Some(until),
                points: Some(400),
            }),
        )
        .await,
    )?;
    let table = t.severity_table.as_deref().and_then(layout::table);
    let csv = format!(
        "/api/v1/sites/{site}/assets/{asset}/trend.csv?since={}&until={}",
        since.format("%Y-%m-%dT%H:%M:%SZ"),
        until.format("%Y-%m-%dT%H:%M:%SZ")
    );
    let body = html! {
        form.filters method="get" action=(format!("/sites/{site}/assets/{asset}")) {
            div.field {
                label for="trend-days" { "Period" }
                select #trend-days name="days" {
                    @for (d, label) in [(30, "30 days"), (90, "90 days"), (365, "a year"), (1096, "three years")] {
                        option value=(d) selected[d == days] { (label) }
                    }
                }
            }
            div.field.buttons {
                button type="submit" { "Show" }
                a #trend-csv.button.secondary href=(csv) download { "CSV" }
            }
        }
        p.muted {
            "Buckets of " (layout::duration(t.bucket_s.max(0) as u64)) ": the hottest finding of each; "
            "ΔT against its reference. Inspections are handheld uploads."
        }
        @for series in &t.series {
            @let points: Vec<HistoryPoint> = series.points.iter().map(|pt| HistoryPoint {
                finding_id: uuid::Uuid::nil(),
                observed_at: pt.t,
                state: TrackState::Updated,
                level: pt.worst_level,
                cool_exception: false,
                max_c: pt.max_c,
                delta_c: pt.max_delta_c,
            }).collect();
            @let inspections: u64 = series.points.iter().map(|pt| pt.inspections).sum();
            section.card.trend data-asset=(series.asset) aria-labelledby=(format!("trend-{}", series.asset)) {
                h2 id=(format!("trend-{}", series.asset)) {
                    (series.name) " " code { (series.asset) }
                    @if let Some(ph) = series.phase { " · phase " (format!("{ph:?}")) }
                }
                (history_chart(&points, table))
                p.muted {
                    (series.points.iter().map(|pt| pt.findings).sum::<u64>()) " findings, "
                    (inspections) " from inspections"
                    @if let Some(worst) = series.points.iter().map(|pt| pt.max_c).reduce(f64::max) {
                        ", hottest " (format!("{worst:.1}")) " °C"
                    }
                }
            }
        }
        section.card #asset-alerts aria-labelledby="asset-alerts-h" {
            h2 #asset-alerts-h { "Alerts in the period" }
            @if t.alerts.is_empty() {
                p.muted { "None." }
            } @else {
                div.scroll {
                    table #asset-alert-table {
                        thead { tr { th scope="col" { "Raised" } th scope="col" { "Asset" } th scope="col" { "Worst" } th scope="col" { "Status" } } }
                        tbody {
                            @for a in &t.alerts {
                                tr {
                                    td { a href=(format!("/alerts/{}", a.id)) { (layout::time(a.created_at)) } }
                                    td { (a.asset.as_deref().unwrap_or("")) }
                                    td.num { @if let Some(c) = a.worst_max_c { (format!("{c:.1}")) " °C" } }
                                    td { (a.status) }
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
        Nav::Sites,
        &format!("Asset {asset}"),
        &[],
        Live::Indicator,
        body,
    ))
}
