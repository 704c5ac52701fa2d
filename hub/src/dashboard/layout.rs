//! The frame of every page (head, header with the user, role and live-stream state,
//! navigation) and the small pieces pages share: severity badges, times, durations.

use crate::api::auth::{AuthVia, Principal};
use crate::store::Role;
use axum::response::Html;
use chitti_common::severity::SeverityCatalog;
use chrono::{DateTime, Utc};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use std::sync::OnceLock;

/// Which navigation entry is the current page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Overview,
    Alerts,
    Fleet,
    Models,
    Sites,
    Upload,
    Reports,
    Notifications,
    DeadLetters,
    Audit,
    Account,
    None,
}

/// What the page does with the live stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Live {
    /// Only the header's connection indicator.
    Indicator,
    /// Fetch the page again on changes and swap its `[data-live-section]` elements.
    Sections,
    /// The alert queue: merge rows, highlight new and changed ones.
    Queue,
}

impl Live {
    fn as_str(self) -> &'static str {
        match self {
            Self::Indicator => "indicator",
            Self::Sections => "sections",
            Self::Queue => "queue",
        }
    }
}

fn head(title: &str, scripts: &[&str]) -> Markup {
    html! {
        meta charset="utf-8";
        meta name="viewport" content="width=device-width, initial-scale=1";
        meta name="color-scheme" content="dark";
        title { (title) " · Chitti" }
        link rel="stylesheet" href="/assets/dashboard.css";
        script src="/assets/dashboard.js" defer {}
        @for s in scripts {
            script src=(format!("/assets/{s}")) defer {}
        }
    }
}

/// A page without the header (sign-in, errors before sign-in).
pub(crate) fn bare(title: &str, body: Markup) -> Html<String> {
    super::html(html! {
        (DOCTYPE)
        html lang="en" {
            head { (head(title, &[])) }
            body.bare data-live="none" {
                main #main { (body) }
            }
        }
    })
}

/// A signed-in page.
pub(crate) fn page(
    user: &Principal,
    nav: Nav,
    title: &str,
    scripts: &[&str],
    live: Live,
    body: Markup,
) -> Html<String> {
    let csrf = match &user.via {
        AuthVia::SessionCookie { csrf, .. } => csrf.as_str(),
        _ => "",
    };
    let role = user.user.role;
    let link = |n: Nav, href: &str, label: &str| {
        html! {
            li { a href=(href) aria-current=[(nav == n).then_some("page")] { (label) } }
        }
    };
    super::html(html! {
        (DOCTYPE)
        html lang="en" {
            head {
                (head(title, scripts))
                meta name="csrf-token" content=(csrf);
                meta name="user-role" content=(role.as_str());
            }
            body data-live=(live.as_str()) {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "Chitti" }
                    nav aria-label="Main" {
                        ul {
                            (link(Nav::Overview, "/", "Overview"))
                            (link(Nav::Alerts, "/alerts", "Alerts"))
                            (link(Nav::Fleet, "/fleet", "Fleet"))
                            (link(Nav::Models, "/models", "Models"))
                            (link(Nav::Sites, "/sites", "Sites"))
                            @if role >= Role::Operator {
                                (link(Nav::Upload, "/upload", "Upload"))
                            }
                            (link(Nav::Reports, "/reports", "Reports"))
                            (link(Nav::Notifications, "/notifications", "Notifications"))
                            @if role >= Role::Operator {
                                (link(Nav::DeadLetters, "/dead-letters", "Dead letters"))
                            }
                            @if role >= Role::Admin {
                                (link(Nav::Audit, "/audit", "Audit"))
                            }
                        }
                    }
                    div.who {
                        span #live-status.live data-state="connecting" role="status" title="Live stream" {
                            span.dot aria-hidden="true" {}
                            span.live-text { "connecting" }
                        }
                        a #user-name href="/account" title="Your account" { (user.user.username) }
                        span #user-role.role { (role.as_str()) }
                        button #logout.secondary type="button" { "Sign out" }
                    }
                }
                div #live-announcer.visually-hidden aria-live="polite" aria-atomic="true" {}
                main #main tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    })
}

fn catalog() -> &'static SeverityCatalog {
    static CATALOG: OnceLock<SeverityCatalog> = OnceLock::new();
    CATALOG.get_or_init(SeverityCatalog::builtin)
}

/// The built-in severity table with this id, if it is one.
pub(crate) fn table(id: &str) -> Option<&'static chitti_common::severity::SeverityTable> {
    catalog().get(id)
}

/// A level's name in a table ("none" at 0; the rank when the table is not known).
pub(crate) fn level_name(table_id: &str, level: u8) -> String {
    if level == 0 {
        return chitti_common::severity::NO_LEVEL_NAME.to_string();
    }
    table(table_id)
        .and_then(|t| t.level(level))
        .map(|l| l.name.clone())
        .unwrap_or_else(|| format!("level {level}"))
}

/// The colour class of a level (4 and above share the top colour).
pub(crate) fn level_class(level: u8) -> String {
    format!("sev sev-{}", level.min(4))
}

/// A severity shown by colour **and** text: `L3 critical`.
pub(crate) fn severity(table_id: &str, level: u8) -> Markup {
    html! {
        span class=(level_class(level)) data-level=(level) {
            "L" (level) " " (level_name(table_id, level))
        }
    }
}

/// What a level-0 assessment that is a cool exception is called: the component is far
/// colder than its reference (an open phase, a lost load), so it is not "none".
pub(crate) const COOL_EXCEPTION_NAME: &str = "cool exception";

/// The colour class of a cool exception (its own colour, beside the level colours).
pub(crate) const COOL_EXCEPTION_CLASS: &str = "sev sev-cool";

/// An assessed severity by colour and text: [`severity`], or `cool exception` where
/// the level is 0 and the assessment (or, for an alert, any finding of its track) is
/// a cool exception. `data-level` stays the level.
pub(crate) fn assessed_severity(table_id: &str, level: u8, cool_exception: bool) -> Markup {
    if level == 0 && cool_exception {
        html! {
            span class=(COOL_EXCEPTION_CLASS) data-level=(level) data-cool-exception="true" {
                (COOL_EXCEPTION_NAME)
            }
        }
    } else {
        severity(table_id, level)
    }
}

/// An alert's severity: its worst level, or a cool exception; a fleet alarm (no
/// severity table) by its level's colour and its kind: `L3 gateway offline`.
pub(crate) fn alert_severity(a: &crate::api::AlertView) -> Markup {
    match a.severity_table.as_deref() {
        Some(table) => assessed_severity(table, a.worst_level, a.cool_exception),
        None => html! {
            span class=(level_class(a.worst_level)) data-level=(a.worst_level) data-kind=(a.kind) {
                "L" (a.worst_level) " " (a.kind.replace('_', " "))
            }
        },
    }
}

/// An alert status as a labelled badge.
pub(crate) fn status(status: &str) -> Markup {
    html! { span class=(format!("status status-{status}")) { (status) } }
}

/// A time in UTC, machine-readable too.
pub(crate) fn time(t: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(t.to_rfc3339()) { (t.format("%Y-%m-%d %H:%M:%S")) "Z" }
    }
}

/// An optional time, or a dash.
pub(crate) fn time_opt(t: Option<DateTime<Utc>>) -> Markup {
    match t {
        Some(t) => time(t),
        None => html! { span.muted { "—" } },
    }
}

/// A duration in words: `3 d 4 h`, `5 h 12 min`, `4 min 2 s`, `12 s`.
pub(crate) fn duration(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else if m > 0 {
        format!("{m} min {s} s")
    } else {
        format!("{s} s")
    }
}

/// °C with one decimal.
pub(crate) fn celsius(c: f64) -> String {
    format!("{c:.1} °C")
}

/// °C with one decimal, or a dash where there is no temperature (a fleet alarm).
pub(crate) fn celsius_opt(c: Option<f64>) -> String {
    c.map_or_else(|| "—".to_string(), celsius)
}

/// JSON for a `<script type="application/json">` block: `<` escaped so the text can
/// never close the element.
pub(crate) fn json_block(id: &str, value: &serde_json::Value) -> Markup {
    let text = value.to_string().replace('<', "\\u003c");
    html! { script type="application/json" id=(id) { (PreEscaped(text)) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_words() {
        assert_eq!(duration(12), "12 s");
        assert_eq!(duration(242), "4 min 2 s");
        assert_eq!(duration(5 * 3600 + 12 * 60), "5 h 12 min");
        assert_eq!(duration(3 * 86_400 + 4 * 3600 + 5), "3 d 4 h");
    }

    #[test]
    fn levels_have_their_tables_names_and_json_cannot_close_its_block() {
        assert_eq!(level_name("utility-absolute", 0), "none");
        assert_eq!(level_name("no-such-table", 2), "level 2");
        assert!(!level_name("utility-absolute", 3).is_empty());
        assert_eq!(level_class(7), "sev sev-4");
        let block = json_block("x", &serde_json::json!({"s": "</script>"})).into_string();
        assert!(!block.contains("</script>\""), "{block}");
        assert!(block.contains("\\u003c/script>"));
    }

    #[test]
    fn a_level_0_cool_exception_is_named_not_none() {
        let cool = assessed_severity("neta-similar", 0, true).into_string();
        assert!(cool.contains("class=\"sev sev-cool\""), "{cool}");
        assert!(cool.contains(">cool exception<"), "{cool}");
        assert!(!cool.contains("none") && !cool.contains("L0"), "{cool}");
        let none = assessed_severity("neta-similar", 0, false).into_string();
        assert!(none.contains("L0 none"), "{none}");
        // A hot finding later in the track outranks the cool exception.
        let hot = assessed_severity("neta-similar", 2, true).into_string();
        assert!(hot.contains("sev-2") && !hot.contains("cool"), "{hot}");
    }
}
