//! The finding history chart of an alert, drawn on the server as SVG: max °C and ΔT
//! of every finding of the track over time, over the severity table's bands.

use crate::api::alerts::HistoryPoint;
use chitti_common::severity::{SeverityBasis, SeverityTable};
use maud::{html, Markup};

const W: f64 = 640.0;
const H: f64 = 240.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

/// The chart; `table` (when known) gives the bands, on the axis its basis compares.
pub(crate) fn history_chart(points: &[HistoryPoint], table: Option<&SeverityTable>) -> Markup {
    if points.is_empty() {
        return html! { p.muted { "No findings in this alert's history." } };
    }
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for p in points {
        for v in std::iter::once(p.max_c).chain(p.delta_c) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    if let Some(t) = table {
        // Show the band the worst point is in and the next one up.
        if let Some(next) = t.levels.iter().find(|l| l.from_c > hi) {
            hi = hi.max(next.from_c);
        }
    }
    lo = lo.min(0.0);
    let pad = ((hi - lo) * 0.08).max(1.0);
    let (lo, hi) = (lo - pad * 0.25, hi + pad);
    let t0 = points[0].observed_at;
    let t1 = points[points.len() - 1].observed_at;
    let span_ms = (t1 - t0).num_milliseconds().max(1) as f64;
    let x = |t: chrono::DateTime<chrono::Utc>| {
        if t0 == t1 {
            LEFT + (W - LEFT - RIGHT) / 2.0
        } else {
            LEFT + (t - t0).num_milliseconds() as f64 / span_ms * (W - LEFT - RIGHT)
        }
    };
    let y = |v: f64| TOP + (hi - v) / (hi - lo) * (H - TOP - BOTTOM);
    let line = |values: &[(f64, f64)]| {
        values
            .iter()
            .map(|(a, b)| format!("{a:.1},{b:.1}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let max_points: Vec<(f64, f64)> = points
        .iter()
        .map(|p| (x(p.observed_at), y(p.max_c)))
        .collect();
    let delta_points: Vec<(f64, f64)> = points
        .iter()
        .filter_map(|p| p.delta_c.map(|d| (x(p.observed_at), y(d))))
        .collect();
    let ticks: Vec<f64> = (0..=4)
        .map(|i| lo + (hi - lo) * f64::from(i) / 4.0)
        .collect();
    let band_axis = match table.map(|t| t.basis) {
        Some(SeverityBasis::Absolute) => "max °C",
        Some(_) => "ΔT",
        None => "",
    };
    html! {
        figure.chart {
            svg viewBox=(format!("0 0 {W} {H}")) role="img" aria-labelledby="history-caption" {
                @if let Some(t) = table {
                    @for (i, l) in t.levels.iter().enumerate() {
                        @let top = t.levels.get(i + 1).map(|n| n.from_c).unwrap_or(hi).min(hi);
                        @let bottom = l.from_c.max(lo);
                        @if top > bottom {
                            rect class=(format!("band sev-fill-{}", l.rank.min(4))) x=(LEFT) y=(format!("{:.1}", y(top)))
                                width=(W - LEFT - RIGHT) height=(format!("{:.1}", y(bottom) - y(top))) {
                                title { "L" (l.rank) " " (l.name) ": " (band_axis) (if l.inclusive { " ≥ " } else { " > " }) (l.from_c) }
                            }
                            text.band-label x=(W - RIGHT - 4.0) y=(format!("{:.1}", y(top) + 12.0)) text-anchor="end" { "L" (l.rank) " " (l.name) }
                        }
                    }
                }
                @for v in &ticks {
                    line.grid x1=(LEFT) x2=(W - RIGHT) y1=(format!("{:.1}", y(*v))) y2=(format!("{:.1}", y(*v))) {}
                    text.axis x=(LEFT - 6.0) y=(format!("{:.1}", y(*v) + 4.0)) text-anchor="end" { (format!("{v:.0}")) }
                }
                text.axis x=(LEFT) y=(H - 8.0) { (t0.format("%m-%d %H:%M:%S")) }
                @if t0 != t1 {
                    text.axis x=(W - RIGHT) y=(H - 8.0) text-anchor="end" { (t1.format("%m-%d %H:%M:%S")) }
                }
                polyline.line-max points=(line(&max_points)) {}
                @if !delta_points.is_empty() {
                    polyline.line-delta points=(line(&delta_points)) {}
                }
                @for (p, (px, py)) in points.iter().zip(&max_points) {
                    circle class=(format!("pt sev-fill-{}", p.level.min(4))) cx=(format!("{px:.1}")) cy=(format!("{py:.1}")) r="4" {
                        title { (p.observed_at.format("%Y-%m-%d %H:%M:%S")) "Z: " (format!("{:.1}", p.max_c)) " °C, L" (p.level) }
                    }
                }
            }
            figcaption #history-caption {
                span.key-max { "— max °C" } " "
                span.key-delta { "- - ΔT (K)" } " "
                @if table.is_some() { "over the severity bands (" (band_axis) ")" }
            }
        }
    }
}
