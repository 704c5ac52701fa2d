//! `GET /api/v1/stream`: Server-Sent Events of new and changed alerts and of gateway
//! state, filterable by site and severity, resumable with `Last-Event-ID`.
//!
//! | event | data |
//! |---|---|
//! | `alert` | the alert as `GET /api/v1/alerts` lists it |
//! | `gateway` | the gateway as `GET /api/v1/gateways` lists it |
//! | `resync` | `{"reason": …}`: changes were lost, or the client resumes from an id this hub start no longer holds — reload the lists, then carry on |
//!
//! Every event has an id (`{epoch}-{seq}`). Browsers resend the last one as
//! `Last-Event-ID` when they reconnect; `?last_event_id=` does the same for a first
//! connection. See [`crate::live`] for how events are produced.

use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::{AlertView, ApiQuery, ApiState};
use crate::live::{Change, EventKind, LiveEvent, LiveEvents, Resume};
use crate::store::{AlertStore, FleetStore};
use crate::store::{AnyStore, Role};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(stream))
}

/// Which events a client wants.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct StreamParams {
    /// Only events of this site (resyncs always come).
    site: Option<String>,
    /// Only alerts whose worst severity level is at least this (gateway events always
    /// come).
    min_level: Option<u8>,
    /// Resume after this event id (the `Last-Event-ID` header wins when both are sent).
    last_event_id: Option<String>,
}

struct Filter {
    site: Option<String>,
    min_level: Option<u8>,
}

impl Filter {
    fn wants(&self, e: &LiveEvent) -> bool {
        if e.kind == EventKind::Resync {
            return true;
        }
        if let (Some(want), Some(site)) = (&self.site, &e.site) {
            if want != site {
                return false;
            }
        }
        match (self.min_level, e.kind, e.level) {
            (Some(min), EventKind::Alert, Some(level)) => level >= min,
            _ => true,
        }
    }
}

/// Live alerts and gateway state as Server-Sent Events.
#[utoipa::path(
    get,
    path = "/api/v1/stream",
    tag = "live",
    params(
        StreamParams,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id")
    ),
    responses(
        (status = 200, description = "An endless `text/event-stream` of `alert`, `gateway` and `resync` events", content_type = "text/event-stream", body = String),
        (status = 400, description = "A parameter is invalid", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn stream(
    State(s): State<ApiState>,
    p: Principal,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StreamParams>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    p.require(Role::Viewer)?;
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or(q.last_event_id);
    let (resume, rx) = s.live.subscribe(last.as_deref());
    let mut pending: VecDeque<Event> = VecDeque::new();
    let filter = Filter {
        site: q.site,
        min_level: q.min_level,
    };
    match resume {
        Resume::From(events) => pending.extend(
            events
                .iter()
                .filter(|e| filter.wants(e))
                .map(|e| sse_event(&s.live, e)),
        ),
        Resume::Gap => pending.push_back(resync("resumed from an event this hub no longer holds")),
    }
    let state = StreamState {
        live: Arc::clone(&s.live),
        rx,
        pending,
        filter,
    };
    let events = stream::unfold(state, |mut st| async move {
        loop {
            if let Some(e) = st.pending.pop_front() {
                return Some((Ok(e), st));
            }
            match st.rx.recv().await {
                Ok(e) if st.filter.wants(&e) => return Some((Ok(sse_event(&st.live, &e)), st)),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    return Some((
                        Ok(resync(&format!("this client fell {n} events behind"))),
                        st,
                    ))
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

struct StreamState {
    live: Arc<LiveEvents>,
    rx: broadcast::Receiver<Arc<LiveEvent>>,
    pending: VecDeque<Event>,
    filter: Filter,
}

fn sse_event(live: &LiveEvents, e: &LiveEvent) -> Event {
    Event::default()
        .id(live.event_id(e))
        .event(e.kind.as_str())
        .data(e.data.clone())
}

/// A resync only for this client (not numbered: it is not part of the history).
fn resync(reason: &str) -> Event {
    Event::default()
        .event(EventKind::Resync.as_str())
        .data(serde_json::json!({ "reason": reason }).to_string())
}

/// Publishes the changes producers name as live events, reading the current records
/// from the store. Runs until the change queue closes (or the task is aborted).
pub async fn run_publisher(live: Arc<LiveEvents>, store: Arc<AnyStore>) {
    let Some(mut changes) = live.take_changes() else {
        return;
    };
    while let Some(first) = changes.recv().await {
        // Everything queued now goes in one round, each alert or gateway once.
        let mut alerts: Vec<Uuid> = Vec::new();
        let mut gateways: Vec<(String, String)> = Vec::new();
        let mut seen_alerts = HashSet::new();
        let mut resync: Option<String> = None;
        let mut take = |c: Change| match c {
            Change::Alerts(ids) => {
                alerts.extend(ids.into_iter().filter(|i| seen_alerts.insert(*i)))
            }
            Change::Gateway { site, gateway } => {
                if !gateways.contains(&(site.clone(), gateway.clone())) {
                    gateways.push((site, gateway));
                }
            }
            Change::Resync(reason) => resync = Some(reason),
        };
        take(first);
        while let Ok(c) = changes.try_recv() {
            take(c);
        }
        if live.take_lost() {
            resync = Some("the hub dropped changes under load".to_owned());
        }
        if let Some(reason) = resync {
            live.publish(
                EventKind::Resync,
                None,
                None,
                serde_json::json!({ "reason": reason }).to_string(),
            );
        }
        for id in alerts {
            match store.alert(id).await {
                Ok(Some(a)) => {
                    let (site, level) = (a.site.clone(), a.worst_level);
                    let data = serde_json::to_string(&AlertView::from(a)).unwrap_or_default();
                    live.publish(EventKind::Alert, Some(site), Some(level), data);
                }
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(%err, alert = %id, "live: alert not read; clients resync");
                    live.publish(
                        EventKind::Resync,
                        None,
                        None,
                        serde_json::json!({ "reason": "the database did not answer" }).to_string(),
                    );
                }
            }
        }
        for (site, gateway) in gateways {
            match store.gateway(&site, &gateway).await {
                Ok(Some(g)) => {
                    let data = serde_json::to_string(&super::fleet::GatewayView::new(
                        g,
                        chrono::Utc::now(),
                    ))
                    .unwrap_or_default();
                    live.publish(EventKind::Gateway, Some(site), None, data);
                }
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(%err, %site, %gateway, "live: gateway not read; clients resync");
                    live.publish(
                        EventKind::Resync,
                        None,
                        None,
                        serde_json::json!({ "reason": "the database did not answer" }).to_string(),
                    );
                }
            }
        }
    }
}
