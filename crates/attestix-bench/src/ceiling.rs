//! The ceiling: a minimal axum server answering every request with a fixed JSON
//! body the size of a UAIT. No store, no signing, no database: the fastest any
//! replay path on this machine can be.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Router;

/// The size of the UAIT the server answers to the bench's create request
/// ([`crate::scenario::CREATE_IDENTITY_BODY`]), measured: `attestix-bench run
/// --scenario create-nokey` prints the mean body.
pub const UAIT_BODY_BYTES: usize = 665;

/// A JSON object of exactly `size` bytes (at least 16).
pub fn fixed_body(size: usize) -> String {
    let prefix = r#"{"agent_id":"attestix:0000000000000000","padding":""#;
    let suffix = r#""}"#;
    let fill = size.saturating_sub(prefix.len() + suffix.len());
    format!("{prefix}{}{suffix}", "x".repeat(fill))
}

/// Serves the ceiling on `bind` until the process ends; prints
/// `listening on http://ADDR` like `attestix serve`.
pub async fn serve(bind: SocketAddr, body_bytes: usize) -> anyhow::Result<()> {
    let body = Bytes::from(fixed_body(body_bytes));
    let app = Router::new().fallback(move |method: axum::http::Method, request: Bytes| {
        let body = body.clone();
        async move {
            // The request body is read, like a real handler would.
            drop(request);
            let status = if method == axum::http::Method::POST {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind(bind).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixed_body_is_json_of_the_asked_size() {
        let body = fixed_body(UAIT_BODY_BYTES);
        assert_eq!(body.len(), UAIT_BODY_BYTES);
        let value: serde_json::Value = serde_json::from_str(&body).expect("valid JSON");
        assert!(value.is_object());
    }
}
