//! Cost of issuing a UAIT (canonical JSON + Ed25519 signature) and of verifying one.
//!
//! Run with `cargo bench -p attestix-core --bench sign_uait`.

#![allow(missing_docs)]

use attestix_core::{
    canonical_bytes, verify_uait_signature, DisplayName, NewIdentity, SigningKey, Uait,
};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use time::macros::datetime;
use uuid::Uuid;

fn request() -> NewIdentity {
    let mut request = NewIdentity::new(
        DisplayName::parse("Report Bot").expect("a valid display name"),
        "api_key",
    );
    request.capabilities = vec!["summarize".to_owned(), "translate".to_owned()];
    request.description = "Writes the daily report.".to_owned();
    request.identity_token = "sk-live-ABCDEFGHIJKLMNOPQRSTUVWXYZ012345".to_owned();
    request
}

fn bench(c: &mut Criterion) {
    let key = SigningKey::from_seed([42; 32]);
    let now = datetime!(2026-11-28 06:42:10.097345 UTC);
    let uait = Uait::issue(request(), &key, now, Uuid::from_u128(1)).expect("issues");
    let uait_json = serde_json::to_value(&uait).expect("serialises");
    let verifying_key = key.verifying_key();

    c.bench_function("uait/canonical_bytes", |b| {
        b.iter(|| canonical_bytes(black_box(&uait_json)))
    });
    c.bench_function("uait/issue (canonical + sign)", |b| {
        b.iter(|| Uait::issue(black_box(request()), &key, now, Uuid::from_u128(1)))
    });
    c.bench_function("uait/verify struct", |b| {
        b.iter(|| black_box(&uait).signature_is_valid(&verifying_key))
    });
    c.bench_function("uait/verify json", |b| {
        b.iter(|| verify_uait_signature(black_box(&uait_json), &verifying_key))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
