//! Cost of minting a delegation token and of verifying a 3-deep chain (the token
//! and its two ancestors: three signatures, the revocation callback, attenuation).
//!
//! Run with `cargo bench -p attestix-core --bench delegation`.

#![allow(missing_docs)]

use attestix_core::delegation::{verify_chain, ChainVerdict, DelegationClaims};
use attestix_core::SigningKey;
use criterion::{black_box, criterion_group, criterion_main, Criterion};

const NOW: i64 = 1_800_000_000;

fn claims(key: &SigningKey, jti: &str, att: &[&str], proofs: Vec<String>) -> DelegationClaims {
    DelegationClaims {
        issuer_did: key.did().to_owned(),
        audience: "did:key:z6MkvjRfXEbX9mQfbrJ7bqSm1DLPrg6E7H1ztXmHbHBS4Z6V".into(),
        issued_at: NOW - 60,
        expires_at: NOW + 3600,
        jti: jti.into(),
        capabilities: att.iter().map(|c| (*c).to_owned()).collect(),
        delegator: "attestix:4556112f7bb94b91".into(),
        proofs,
    }
}

fn bench(c: &mut Criterion) {
    let key = SigningKey::from_seed([42; 32]);
    let root = claims(
        &key,
        "root-jti-0000000000001",
        &["read", "write", "delete"],
        vec![],
    );
    c.bench_function("mint root token", |b| {
        b.iter(|| black_box(&root).mint(&key))
    });
    let root = root.mint(&key);
    let child = claims(
        &key,
        "child-jti-000000000002",
        &["read", "write"],
        vec![root],
    )
    .mint(&key);
    let leaf = claims(&key, "leaf-jti-0000000000003", &["read"], vec![child]).mint(&key);
    let verifying = key.verifying_key();
    c.bench_function("verify 3-deep chain", |b| {
        b.iter(|| {
            let verdict = verify_chain(black_box(&leaf), &verifying, NOW, &|_| false);
            assert!(matches!(verdict, ChainVerdict::Valid(_)));
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
