//! Per-request overhead of the idempotency layer on an in-process axum service.
//!
//! Four cases on the same trivial POST handler:
//! - `bare`: the router without the layer (the baseline),
//! - `no_key`: with the layer, no `Idempotency-Key` (must cost < 1 µs over `bare`),
//! - `fresh_key`: a new key every request (reserve, execute, store),
//! - `replay`: one key repeated (lookup and replay; should beat `fresh_key`).
//!
//! Run: `cargo bench -p idempotency --bench layer_overhead`
#![allow(missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::routing::post;
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
use http::Request;
use idempotency::{IdempotencyLayer, MemoryStore};
use tower::ServiceExt;

const BODY: &str =
    r#"{"display_name":"Report Bot","source_protocol":"api_key","capabilities":["summarize"]}"#;

fn router() -> Router {
    Router::new().route(
        "/v1/identities",
        post(|| async {
            (
                http::StatusCode::CREATED,
                r#"{"agent_id":"attestix:0123456789abcdef"}"#,
            )
        }),
    )
}

fn request(key: Option<&str>) -> Request<Body> {
    let mut builder = Request::post("/v1/identities").header("content-type", "application/json");
    if let Some(key) = key {
        builder = builder.header("idempotency-key", key);
    }
    builder
        .body(Body::from(BODY))
        .expect("static request is valid")
}

fn layer_overhead(c: &mut Criterion) {
    // One thread drives the requests and the tasks the layer spawns, so the figures
    // are CPU cost, not cross-thread wake-ups between the bench and a worker.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime starts");
    let bare = router();
    // No authentication here, so one scope for every caller, asked for explicitly.
    let layered = router()
        .layer(IdempotencyLayer::new(MemoryStore::default()).scope(|_| Some(String::new())));

    let mut group = c.benchmark_group("layer_overhead");
    group.bench_function("bare", |b| {
        b.to_async(&runtime).iter(|| async {
            bare.clone()
                .oneshot(request(None))
                .await
                .expect("infallible")
        })
    });
    group.bench_function("no_key", |b| {
        b.to_async(&runtime).iter(|| async {
            layered
                .clone()
                .oneshot(request(None))
                .await
                .expect("infallible")
        })
    });
    let counter = AtomicU64::new(0);
    group.bench_function("fresh_key", |b| {
        b.to_async(&runtime).iter(|| async {
            let key = format!("bench-{}", counter.fetch_add(1, Ordering::Relaxed));
            layered
                .clone()
                .oneshot(request(Some(&key)))
                .await
                .expect("infallible")
        })
    });
    runtime.block_on(async {
        layered
            .clone()
            .oneshot(request(Some("replayed-key")))
            .await
            .expect("infallible")
    });
    group.bench_function("replay", |b| {
        b.to_async(&runtime).iter(|| async {
            let response = layered
                .clone()
                .oneshot(request(Some("replayed-key")))
                .await
                .expect("infallible");
            debug_assert!(response.headers().contains_key("idempotency-replayed"));
            response
        })
    });
    group.finish();
}

criterion_group!(benches, layer_overhead);
criterion_main!(benches);
