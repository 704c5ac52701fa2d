//! (being written)

use super::ApiState;
use utoipa_axum::router::OpenApiRouter;

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
}
