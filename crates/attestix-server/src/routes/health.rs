//! `/health` and `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

/// The body of `GET /health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `healthy`, or `degraded` when the database does not answer.
    pub status: &'static str,
    /// Always `attestix-api`.
    pub service: &'static str,
    /// The server's version.
    pub version: &'static str,
}

/// Liveness and database reachability.
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    security(()),
    responses(
        (status = 200, description = "Healthy", body = Health),
        (status = 503, description = "The database does not answer", body = Health),
    )
)]
pub async fn health(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let (status, text) = match state.storage.ping().await {
        Ok(()) => (StatusCode::OK, "healthy"),
        Err(error) => {
            tracing::warn!(%error, "health check: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "degraded")
        }
    };
    (
        status,
        Json(Health {
            status: text,
            service: "attestix-api",
            version: env!("CARGO_PKG_VERSION"),
        }),
    )
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")),
)]
pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
