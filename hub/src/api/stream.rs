//! `GET /api/v1/stream`: Server-Sent Events of new and changed alerts and gateway
//! state (being written).

use super::ApiState;
use crate::live::LiveEvents;
use crate::store::AnyStore;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
}

/// Publishes the changes producers name as live events, reading the records from the
/// store. Runs until the change queue closes.
pub async fn run_publisher(live: Arc<LiveEvents>, store: Arc<AnyStore>) {
    let Some(mut changes) = live.take_changes() else {
        return;
    };
    let _ = &store;
    while let Some(_change) = changes.recv().await {}
}
