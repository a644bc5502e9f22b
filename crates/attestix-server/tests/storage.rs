//! The `Storage` contract, run against SQLite and PostgreSQL alike.
//!
//! Each behaviour is an async function of a fresh storage; `on_both_backends!` turns it
//! into `sqlite::<name>` and `postgres::<name>` tests. Backend-specific behaviour
//! (files, pools, migrations) is tested at the bottom.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use attestix_core::uait::agent_id_from_uuid;
use attestix_core::SigningKey;
use attestix_server::recovery::{RecoveryIds, ResourceKind};
use attestix_server::storage::{
    ApiKeyRecord, CredentialFilter, DelegationFilter, DelegationRole, IdentityFilter, Inserted,
    NewCredential, NewDelegation, NewDid, NewIdentity, PageRequest, RecordState, RecoveryPoint,
    Storage, StorageError,
};
use common::SharedStorage;
use uuid::Uuid;

/// A fixed "now", Unix milliseconds.
const NOW: i64 = 1_800_000_000_000;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

fn identity(owner: &str, n: u64, protocol: &str) -> NewIdentity {
    let agent_id = format!("attestix:{n:016x}");
    NewIdentity {
        document: format!(
            r#"{{"version":"0.1.0","agent_id":"{agent_id}","source_protocol":"{protocol}","n":{n}}}"#
        ),
        agent_id,
        owner: owner.to_owned(),
        source_protocol: protocol.to_owned(),
        created_at_ms: NOW,
        expires_at_ms: NOW + 365 * DAY_MS,
        recovery: None,
        audit: None,
    }
}

fn credential(owner: &str, n: u64, subject: &str, credential_type: &str) -> NewCredential {
    let credential_id = format!("urn:uuid:00000000-0000-4000-8000-{n:012x}");
    NewCredential {
        document: format!(
            r#"{{"id":"{credential_id}","type":["VerifiableCredential","{credential_type}"],"credentialSubject":{{"id":"{subject}"}}}}"#
        ),
        credential_id,
        owner: owner.to_owned(),
        subject_id: subject.to_owned(),
        credential_type: credential_type.to_owned(),
        issued_at_ms: NOW,
        expires_at_ms: NOW + 365 * DAY_MS,
        recovery: None,
        audit: None,
    }
}

/// The fingerprint of the request every keyed helper below models: its retries
/// carry the same one.
const SAME_REQUEST: [u8; 32] = [1; 32];

/// The server's derivation of keyed resources' ids (a fixed signing key).
fn recovery_ids() -> RecoveryIds {
    RecoveryIds::from_signing_key(&SigningKey::from_seed([42; 32]))
}

/// The derived id of use `use_of_key` of (scope, key) for a resource of `kind` made at
/// `at_ms`, and its recovery point, as the routes build them (retention: one day).
fn derived(
    kind: ResourceKind,
    scope: &str,
    key: &str,
    at_ms: i64,
    use_of_key: u32,
) -> (Uuid, RecoveryPoint) {
    let id = recovery_ids().derive(kind, scope, key, use_of_key);
    let point = RecoveryPoint {
        scope: scope.to_owned(),
        key: key.to_owned(),
        valid_after_ms: at_ms - DAY_MS,
        fingerprint: SAME_REQUEST,
    };
    (id, point)
}

/// An identity created at `at_ms` under (scope, key) with the id of use `use_of_key`;
/// `n` tells one execution's document from another's.
fn keyed_identity_at_use(
    scope: &str,
    key: &str,
    at_ms: i64,
    n: u64,
    use_of_key: u32,
) -> NewIdentity {
    let (id, recovery) = derived(ResourceKind::Identity, scope, key, at_ms, use_of_key);
    let agent_id = agent_id_from_uuid(id);
    NewIdentity {
        document: format!(r#"{{"version":"0.1.0","agent_id":"{agent_id}","n":{n}}}"#),
        agent_id,
        owner: "alice".to_owned(),
        source_protocol: "mcp".to_owned(),
        created_at_ms: at_ms,
        expires_at_ms: at_ms + 365 * DAY_MS,
        recovery: Some(recovery),
        audit: None,
    }
}

/// An identity created at `at_ms` under (scope, key), with the id of the key's first use.
fn keyed_identity(scope: &str, key: &str, at_ms: i64, n: u64) -> NewIdentity {
    keyed_identity_at_use(scope, key, at_ms, n, 0)
}

/// A credential created at `at_ms` under (scope, key) with the id of use `use_of_key`.
fn keyed_credential_at_use(
    scope: &str,
    key: &str,
    at_ms: i64,
    n: u64,
    use_of_key: u32,
) -> NewCredential {
    let (id, recovery) = derived(ResourceKind::Credential, scope, key, at_ms, use_of_key);
    let credential_id = format!("urn:uuid:{}", id.hyphenated());
    NewCredential {
        document: format!(r#"{{"id":"{credential_id}","n":{n}}}"#),
        credential_id,
        owner: "alice".to_owned(),
        subject_id: "attestix:0000000000000001".to_owned(),
        credential_type: "T".to_owned(),
        issued_at_ms: at_ms,
        expires_at_ms: at_ms + 365 * DAY_MS,
        recovery: Some(recovery),
        audit: None,
    }
}

/// A credential created at `at_ms` under (scope, key), with the id of the key's first use.
fn keyed_credential(scope: &str, key: &str, at_ms: i64, n: u64) -> NewCredential {
    keyed_credential_at_use(scope, key, at_ms, n, 0)
}

/// Inserts a keyed identity as the create route does: from the key's first id along
/// its chain, past ids held by other resources. Returns what was stored (or would
/// have been) and the outcome.
async fn insert_identity_like_the_route(
    storage: &dyn Storage,
    scope: &str,
    key: &str,
    at_ms: i64,
    n: u64,
) -> (NewIdentity, Inserted) {
    for use_of_key in 0..8 {
        let new = keyed_identity_at_use(scope, key, at_ms, n, use_of_key);
        match storage.insert_identity(&new).await {
            Ok(inserted) => return (new, inserted),
            Err(StorageError::Duplicate) => continue,
            Err(error) => panic!("insert failed: {error}"),
        }
    }
    panic!("eight ids of one key taken");
}

/// As [`insert_identity_like_the_route`], for credentials.
async fn insert_credential_like_the_route(
    storage: &dyn Storage,
    scope: &str,
    key: &str,
    at_ms: i64,
    n: u64,
) -> (NewCredential, Inserted) {
    for use_of_key in 0..8 {
        let new = keyed_credential_at_use(scope, key, at_ms, n, use_of_key);
        match storage.insert_credential(&new).await {
            Ok(inserted) => return (new, inserted),
            Err(StorageError::Duplicate) => continue,
            Err(error) => panic!("insert failed: {error}"),
        }
    }
    panic!("eight ids of one key taken");
}

fn first_page(limit: u32) -> PageRequest {
    PageRequest { after: None, limit }
}

fn all_identities() -> IdentityFilter {
    IdentityFilter {
        source_protocol: None,
        include_revoked: true,
    }
}

/// Every page of `owner`'s identities under `filter`, `limit` at a time.
async fn identity_pages(
    storage: &dyn Storage,
    owner: &str,
    filter: &IdentityFilter,
    limit: u32,
) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page = storage
            .list_identities(owner, filter, PageRequest { after, limit })
            .await
            .expect("listing succeeds");
        pages.push(page.documents);
        match page.next {
            Some(next) => after = Some(next),
            None => return pages,
        }
    }
}

/// Every page of `owner`'s credentials under `filter`, `limit` at a time.
async fn credential_pages(
    storage: &dyn Storage,
    owner: &str,
    filter: &CredentialFilter,
    limit: u32,
) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page = storage
            .list_credentials(owner, filter, PageRequest { after, limit })
            .await
            .expect("listing succeeds");
        pages.push(page.documents);
        match page.next {
            Some(next) => after = Some(next),
            None => return pages,
        }
    }
}

async fn all_identity_documents(storage: &dyn Storage, owner: &str) -> Vec<String> {
    identity_pages(storage, owner, &all_identities(), 1000)
        .await
        .concat()
}

async fn all_credential_documents(storage: &dyn Storage, owner: &str) -> Vec<String> {
    credential_pages(storage, owner, &CredentialFilter::default(), 1000)
        .await
        .concat()
}

fn page_sizes(pages: &[Vec<String>]) -> Vec<usize> {
    pages.iter().map(Vec::len).collect()
}

// ---------------------------------------------------------------------------------
// Identities and credentials
// ---------------------------------------------------------------------------------

async fn an_identity_reads_back_byte_for_byte(storage: SharedStorage) {
    let mut new = identity("alice", 1, "mcp");
    // Key order, spacing, escapes and non-ASCII text must all survive the database.
    new.document = "{\"z\":1, \"a\" : {\"y\":[1.0,2.50,-0.0]},\"\u{e9}\":\"e\u{301} \u{1F600}\",\"esc\":\"\\u0001\\n\"}".to_owned();
    assert_eq!(
        storage
            .insert_identity(&new)
            .await
            .expect("insert succeeds"),
        Inserted::Created
    );
    assert_eq!(
        storage
            .get_identity("alice", &new.agent_id)
            .await
            .expect("get succeeds"),
        Some(new.document.clone())
    );
    assert_eq!(
        storage
            .get_identity("alice", "attestix:ffffffffffffffff")
            .await
            .expect("get succeeds"),
        None
    );
}

async fn another_owners_identity_is_invisible_and_cannot_be_updated(storage: SharedStorage) {
    let new = identity("alice", 1, "mcp");
    storage
        .insert_identity(&new)
        .await
        .expect("insert succeeds");

    assert_eq!(
        storage
            .get_identity("bob", &new.agent_id)
            .await
            .expect("get succeeds"),
        None
    );
    assert!(storage
        .list_identities("bob", &all_identities(), first_page(50))
        .await
        .expect("listing succeeds")
        .documents
        .is_empty());
    assert!(!storage
        .revoke_identity("bob", &new.agent_id, "{\"hijacked\":true}", None)
        .await
        .expect("revocation succeeds"));
    assert_eq!(
        storage
            .get_identity("alice", &new.agent_id)
            .await
            .expect("get succeeds"),
        Some(new.document)
    );
}

async fn a_revoked_identity_is_listed_only_when_revoked_ones_are_asked_for(storage: SharedStorage) {
    let kept = identity("alice", 1, "mcp");
    let revoked = identity("alice", 2, "mcp");
    storage
        .insert_identity(&kept)
        .await
        .expect("insert succeeds");
    storage
        .insert_identity(&revoked)
        .await
        .expect("insert succeeds");

    let revoked_document = "{\"agent_id\":\"attestix:0000000000000002\",\"revoked\":true}";
    assert!(storage
        .revoke_identity("alice", &revoked.agent_id, revoked_document, None)
        .await
        .expect("revocation succeeds"));
    assert!(!storage
        .revoke_identity("alice", "attestix:ffffffffffffffff", revoked_document, None)
        .await
        .expect("revocation succeeds"));

    assert_eq!(
        storage
            .get_identity("alice", &revoked.agent_id)
            .await
            .expect("get succeeds"),
        Some(revoked_document.to_owned())
    );
    let unrevoked = storage
        .list_identities("alice", &IdentityFilter::default(), first_page(50))
        .await
        .expect("listing succeeds");
    assert_eq!(unrevoked.documents, vec![kept.document.clone()]);
    assert_eq!(unrevoked.next, None);
    let everything = storage
        .list_identities("alice", &all_identities(), first_page(50))
        .await
        .expect("listing succeeds");
    assert_eq!(
        everything.documents,
        vec![kept.document, revoked_document.to_owned()]
    );
}

async fn identities_page_by_cursor_without_gaps_or_repeats(storage: SharedStorage) {
    let mut expected = Vec::new();
    let mut expected_mcp = Vec::new();
    for n in 0..120 {
        let protocol = if n % 3 == 0 { "mcp" } else { "a2a" };
        let mine = identity("alice", n, protocol);
        storage
            .insert_identity(&mine)
            .await
            .expect("insert succeeds");
        // Another owner's rows interleaved: they must not show nor shift the pages.
        storage
            .insert_identity(&identity("bob", 1000 + n, protocol))
            .await
            .expect("insert succeeds");
        if protocol == "mcp" {
            expected_mcp.push(mine.document.clone());
        }
        expected.push(mine.document);
    }

    let pages = identity_pages(&*storage, "alice", &all_identities(), 50).await;
    assert_eq!(page_sizes(&pages), vec![50, 50, 20]);
    assert_eq!(pages.concat(), expected);

    let mcp = IdentityFilter {
        source_protocol: Some("mcp".to_owned()),
        include_revoked: false,
    };
    let pages = identity_pages(&*storage, "alice", &mcp, 15).await;
    assert_eq!(page_sizes(&pages), vec![15, 15, 10]);
    assert_eq!(pages.concat(), expected_mcp);

    // An exact multiple of the limit ends without an empty extra page.
    let pages = identity_pages(&*storage, "alice", &mcp, 20).await;
    assert_eq!(page_sizes(&pages), vec![20, 20]);
}

async fn a_credential_reads_back_and_is_replaced_by_its_owner_only(storage: SharedStorage) {
    let new = credential(
        "alice",
        1,
        "attestix:0000000000000001",
        "AgentIdentityCredential",
    );
    assert_eq!(
        storage
            .insert_credential(&new)
            .await
            .expect("insert succeeds"),
        Inserted::Created
    );
    assert_eq!(
        storage
            .get_credential("alice", &new.credential_id)
            .await
            .expect("get succeeds"),
        Some(new.document.clone())
    );
    assert_eq!(
        storage
            .get_credential("bob", &new.credential_id)
            .await
            .expect("get succeeds"),
        None
    );
    assert!(!storage
        .revoke_credential("bob", &new.credential_id, "{}", None)
        .await
        .expect("revocation succeeds"));
    assert!(!storage
        .revoke_credential("alice", "urn:uuid:unknown", "{}", None)
        .await
        .expect("revocation succeeds"));

    let revoked_document = "{\"credentialStatus\":{\"revoked\":true}}";
    assert!(storage
        .revoke_credential("alice", &new.credential_id, revoked_document, None)
        .await
        .expect("revocation succeeds"));
    assert_eq!(
        storage
            .get_credential("alice", &new.credential_id)
            .await
            .expect("get succeeds"),
        Some(revoked_document.to_owned())
    );
}

async fn credentials_page_by_cursor_and_filter_by_subject_type_and_validity(
    storage: SharedStorage,
) {
    let subjects = ["attestix:000000000000000a", "attestix:000000000000000b"];
    let types = ["AgentIdentityCredential", "ComplianceCredential"];
    let mut expected = Vec::new();
    let mut of_subject_a = Vec::new();
    let mut of_type_compliance = Vec::new();
    let mut valid = Vec::new();
    for n in 0..120_u64 {
        let subject = subjects[usize::from(n % 2 == 1)];
        let credential_type = types[usize::from(n % 5 == 0)];
        let mut mine = credential("alice", n, subject, credential_type);
        let expired = n % 7 == 3;
        if expired {
            mine.expires_at_ms = NOW - 1;
        }
        storage
            .insert_credential(&mine)
            .await
            .expect("insert succeeds");
        storage
            .insert_credential(&credential("bob", 1000 + n, subject, credential_type))
            .await
            .expect("insert succeeds");
        let revoked = n % 11 == 4;
        if revoked {
            assert!(storage
                .revoke_credential("alice", &mine.credential_id, &mine.document, None)
                .await
                .expect("revocation succeeds"));
        }
        if subject == subjects[0] {
            of_subject_a.push(mine.document.clone());
        }
        if credential_type == types[1] {
            of_type_compliance.push(mine.document.clone());
        }
        if !expired && !revoked {
            valid.push(mine.document.clone());
        }
        expected.push(mine.document);
    }

    let pages = credential_pages(&*storage, "alice", &CredentialFilter::default(), 50).await;
    assert_eq!(page_sizes(&pages), vec![50, 50, 20]);
    assert_eq!(pages.concat(), expected);

    let by_subject = CredentialFilter {
        subject_id: Some(subjects[0].to_owned()),
        ..CredentialFilter::default()
    };
    let pages = credential_pages(&*storage, "alice", &by_subject, 25).await;
    assert_eq!(page_sizes(&pages), vec![25, 25, 10]);
    assert_eq!(pages.concat(), of_subject_a);

    let by_type = CredentialFilter {
        credential_type: Some(types[1].to_owned()),
        ..CredentialFilter::default()
    };
    assert_eq!(
        credential_pages(&*storage, "alice", &by_type, 7)
            .await
            .concat(),
        of_type_compliance
    );

    let valid_only = CredentialFilter {
        valid_only: true,
        now_ms: NOW,
        ..CredentialFilter::default()
    };
    let pages = credential_pages(&*storage, "alice", &valid_only, 40).await;
    assert_eq!(pages.concat(), valid);
    assert!(
        valid.len() < 120 && valid.len() > 80,
        "the fixture revokes and expires some"
    );

    let combined = CredentialFilter {
        subject_id: Some(subjects[0].to_owned()),
        credential_type: Some(types[1].to_owned()),
        valid_only: true,
        now_ms: NOW,
    };
    let expected_combined: Vec<String> = valid
        .iter()
        .filter(|document| of_subject_a.contains(document) && of_type_compliance.contains(document))
        .cloned()
        .collect();
    assert!(!expected_combined.is_empty());
    assert_eq!(
        credential_pages(&*storage, "alice", &combined, 3)
            .await
            .concat(),
        expected_combined
    );
}

async fn a_page_limit_of_zero_returns_nothing(storage: SharedStorage) {
    storage
        .insert_identity(&identity("alice", 1, "mcp"))
        .await
        .expect("insert succeeds");
    let page = storage
        .list_identities("alice", &all_identities(), first_page(0))
        .await
        .expect("listing succeeds");
    assert!(page.documents.is_empty());
}

async fn a_duplicate_id_is_reported_as_duplicate(storage: SharedStorage) {
    let first = identity("alice", 1, "mcp");
    storage
        .insert_identity(&first)
        .await
        .expect("insert succeeds");
    let mut again = identity("bob", 1, "a2a");
    assert!(matches!(
        storage.insert_identity(&again).await,
        Err(StorageError::Duplicate)
    ));
    // With a recovery point the id collision is still a duplicate.
    again.recovery = keyed_identity("bob", "key-1", NOW, 0).recovery;
    assert!(matches!(
        storage.insert_identity(&again).await,
        Err(StorageError::Duplicate)
    ));

    let credential_first = credential("alice", 1, "attestix:0000000000000001", "T");
    storage
        .insert_credential(&credential_first)
        .await
        .expect("insert succeeds");
    assert!(matches!(
        storage.insert_credential(&credential_first).await,
        Err(StorageError::Duplicate)
    ));
    assert_eq!(all_identity_documents(&*storage, "alice").await.len(), 1);
    assert_eq!(all_identity_documents(&*storage, "bob").await.len(), 0);
}

// ---------------------------------------------------------------------------------
// Recovery points
// ---------------------------------------------------------------------------------

async fn a_retry_with_the_same_recovery_point_returns_the_original_identity(
    storage: SharedStorage,
) {
    let original = keyed_identity("alice|default", "key-1", NOW, 1);
    assert_eq!(
        storage
            .insert_identity(&original)
            .await
            .expect("insert succeeds"),
        Inserted::Created
    );

    // The retry, five seconds later, signed a new document; the stored one wins.
    let retry = keyed_identity("alice|default", "key-1", NOW + 5_000, 2);
    assert_eq!(retry.agent_id, original.agent_id, "the same id is derived");
    assert_eq!(
        storage
            .insert_identity(&retry)
            .await
            .expect("insert succeeds"),
        Inserted::Recovered(original.document.clone())
    );
    assert_eq!(
        all_identity_documents(&*storage, "alice").await,
        vec![original.document]
    );
}

async fn a_retry_just_within_the_retention_returns_the_original(storage: SharedStorage) {
    // The retry comes one millisecond short of a day (the retention) later: the same
    // derived id, and the original still counts as its own.
    let original = keyed_identity("alice|default", "key-1", NOW, 1);
    storage
        .insert_identity(&original)
        .await
        .expect("insert succeeds");
    let retry = keyed_identity("alice|default", "key-1", NOW + DAY_MS, 2);
    assert_eq!(retry.agent_id, original.agent_id);
    assert_eq!(
        storage
            .insert_identity(&retry)
            .await
            .expect("insert succeeds"),
        Inserted::Recovered(original.document.clone())
    );
    // The same for a credential.
    let original = keyed_credential("alice|default", "key-1", NOW, 1);
    storage
        .insert_credential(&original)
        .await
        .expect("insert succeeds");
    let retry = keyed_credential("alice|default", "key-1", NOW + DAY_MS, 2);
    assert_eq!(
        storage
            .insert_credential(&retry)
            .await
            .expect("insert succeeds"),
        Inserted::Recovered(original.document.clone())
    );
    assert_eq!(all_identity_documents(&*storage, "alice").await.len(), 1);
    assert_eq!(all_credential_documents(&*storage, "alice").await.len(), 1);
}

async fn a_retry_with_the_same_recovery_point_returns_the_original_credential(
    storage: SharedStorage,
) {
    let original = keyed_credential("alice|default", "key-1", NOW, 1);
    assert_eq!(
        storage
            .insert_credential(&original)
            .await
            .expect("insert succeeds"),
        Inserted::Created
    );
    let retry = keyed_credential("alice|default", "key-1", NOW + 1, 2);
    assert_eq!(
        storage
            .insert_credential(&retry)
            .await
            .expect("insert succeeds"),
        Inserted::Recovered(original.document.clone())
    );
    assert_eq!(
        all_credential_documents(&*storage, "alice").await,
        vec![original.document]
    );
}

async fn another_request_under_a_used_key_is_a_reuse_not_a_recovery(storage: SharedStorage) {
    let original = keyed_identity("alice|default", "key-1", NOW, 1);
    storage
        .insert_identity(&original)
        .await
        .expect("insert succeeds");
    // The same key a minute later with another body: the idempotency record is gone
    // (a memory store restarted), but the recovery point knows the request.
    let mut other = keyed_identity("alice|default", "key-1", NOW + 60_000, 2);
    other.recovery.as_mut().unwrap().fingerprint = [2; 32];
    assert_eq!(
        storage
            .insert_identity(&other)
            .await
            .expect("insert answers"),
        Inserted::KeyReused
    );
    let original_credential = keyed_credential("alice|default", "key-1", NOW, 1);
    storage
        .insert_credential(&original_credential)
        .await
        .expect("insert succeeds");
    let mut other = keyed_credential("alice|default", "key-1", NOW + 60_000, 2);
    other.recovery.as_mut().unwrap().fingerprint = [2; 32];
    assert_eq!(
        storage
            .insert_credential(&other)
            .await
            .expect("insert answers"),
        Inserted::KeyReused
    );
    // Nothing was written for the other request; the originals are intact.
    assert_eq!(
        all_identity_documents(&*storage, "alice").await,
        vec![original.document]
    );
    assert_eq!(
        all_credential_documents(&*storage, "alice").await,
        vec![original_credential.document]
    );
}

async fn recovery_points_are_distinct_per_scope_key_and_resource(storage: SharedStorage) {
    let inserts = [
        ("alice|default", "key-1"),
        ("alice|tenant-2", "key-1"),
        ("alice|default", "key-2"),
    ];
    for (n, (scope, key)) in (1..).zip(inserts) {
        let new = keyed_identity(scope, key, NOW, n);
        assert_eq!(
            storage
                .insert_identity(&new)
                .await
                .expect("insert succeeds"),
            Inserted::Created
        );
    }
    // The same (scope, key) on a credential is a different resource's.
    let new = keyed_credential("alice|default", "key-1", NOW, 1);
    assert_eq!(
        storage
            .insert_credential(&new)
            .await
            .expect("insert succeeds"),
        Inserted::Created
    );
    assert_eq!(all_identity_documents(&*storage, "alice").await.len(), 3);
}

async fn an_unrelated_row_at_a_derived_id_is_a_duplicate_not_a_recovery(storage: SharedStorage) {
    // An identity without a key happens to hold the id a keyed create derives (the
    // 1 in 2^60 collision the routes answer by choosing a random id).
    let keyed = keyed_identity("alice|default", "key-1", NOW, 1);
    let mut unrelated = identity("alice", 7, "mcp");
    unrelated.agent_id = keyed.agent_id.clone();
    storage
        .insert_identity(&unrelated)
        .await
        .expect("insert succeeds");
    assert!(matches!(
        storage.insert_identity(&keyed).await,
        Err(StorageError::Duplicate)
    ));
    // The same row under a random id, keeping its recovery point, is created.
    let mut fallback = keyed.clone();
    fallback.agent_id = "attestix:00000000000000ff".to_owned();
    assert_eq!(
        storage
            .insert_identity(&fallback)
            .await
            .expect("insert succeeds"),
        Inserted::Created
    );
}

async fn concurrent_inserts_with_one_recovery_point_make_exactly_one_row(storage: SharedStorage) {
    let tasks: Vec<_> = (0..16_u64)
        .map(|n| {
            let storage = Arc::clone(&storage);
            tokio::spawn(async move {
                let new = keyed_identity("alice|default", "contended", NOW + n as i64, n);
                let outcome = storage
                    .insert_identity(&new)
                    .await
                    .expect("insert succeeds");
                (new.document, outcome)
            })
        })
        .collect();
    let mut created = Vec::new();
    let mut recovered = Vec::new();
    for task in tasks {
        match task.await.expect("the task does not panic") {
            (document, Inserted::Created) => created.push(document),
            (_, Inserted::Recovered(document)) => recovered.push(document),
            (_, Inserted::KeyReused) => panic!("executions of one request are not a reuse"),
        }
    }
    assert_eq!(created.len(), 1, "exactly one caller creates the identity");
    assert_eq!(recovered.len(), 15);
    assert!(recovered.iter().all(|document| *document == created[0]));
    assert_eq!(all_identity_documents(&*storage, "alice").await, created);
}

async fn concurrent_credential_inserts_with_one_recovery_point_make_exactly_one_row(
    storage: SharedStorage,
) {
    let tasks: Vec<_> = (0..16_u64)
        .map(|n| {
            let storage = Arc::clone(&storage);
            tokio::spawn(async move {
                let new = keyed_credential("alice|default", "contended", NOW, n);
                storage
                    .insert_credential(&new)
                    .await
                    .expect("insert succeeds")
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("the task does not panic"));
    }
    let documents = all_credential_documents(&*storage, "alice").await;
    assert_eq!(documents.len(), 1);
    assert_eq!(
        outcomes.iter().filter(|o| **o == Inserted::Created).count(),
        1
    );
    assert!(outcomes
        .iter()
        .all(|o| *o == Inserted::Created || *o == Inserted::Recovered(documents[0].clone())));
}

async fn a_key_reused_after_the_retention_makes_a_new_row_at_its_next_id(storage: SharedStorage) {
    let (old, inserted) =
        insert_identity_like_the_route(&*storage, "alice|default", "reused", NOW, 1).await;
    assert_eq!(inserted, Inserted::Created);

    // Its record expired, and the key is used anew: a day and an hour later, then two
    // days after that. Each use walks past the earlier uses' ids to a new one.
    let mut ids = vec![old.agent_id.clone()];
    for (n, later) in [
        (2, NOW + DAY_MS + 3_600_000),
        (3, NOW + 3 * DAY_MS + 3_600_000),
    ] {
        let (new, inserted) =
            insert_identity_like_the_route(&*storage, "alice|default", "reused", later, n).await;
        assert_eq!(inserted, Inserted::Created, "use {n}");
        assert!(!ids.contains(&new.agent_id), "use {n} has an id of its own");
        ids.push(new.agent_id.clone());
        // A retry of the new request recovers the new identity, not an older one.
        let (_, retried) =
            insert_identity_like_the_route(&*storage, "alice|default", "reused", later + 1, 10 + n)
                .await;
        assert_eq!(retried, Inserted::Recovered(new.document.clone()));
    }
    assert_eq!(all_identity_documents(&*storage, "alice").await.len(), 3);

    // A stale recovery point on a credential behaves the same.
    let (_, inserted) =
        insert_credential_like_the_route(&*storage, "alice|default", "reused", NOW, 1).await;
    assert_eq!(inserted, Inserted::Created);
    let (new, inserted) =
        insert_credential_like_the_route(&*storage, "alice|default", "reused", NOW + DAY_MS + 1, 2)
            .await;
    assert_eq!(inserted, Inserted::Created);
    let (_, retried) =
        insert_credential_like_the_route(&*storage, "alice|default", "reused", NOW + DAY_MS + 2, 3)
            .await;
    assert_eq!(retried, Inserted::Recovered(new.document));
    assert_eq!(all_credential_documents(&*storage, "alice").await.len(), 2);
}

async fn concurrent_reuses_of_an_expired_recovery_point_make_exactly_one_new_row(
    storage: SharedStorage,
) {
    let old = keyed_identity("alice|default", "reused", NOW, 100);
    storage
        .insert_identity(&old)
        .await
        .expect("insert succeeds");

    let later = NOW + DAY_MS + 1;
    let tasks: Vec<_> = (0..16_u64)
        .map(|n| {
            let storage = Arc::clone(&storage);
            tokio::spawn(async move {
                insert_identity_like_the_route(&*storage, "alice|default", "reused", later, n)
                    .await
                    .1
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("the task does not panic"));
    }
    let documents = all_identity_documents(&*storage, "alice").await;
    assert_eq!(
        documents.len(),
        2,
        "the expired row and exactly one new row"
    );
    assert_eq!(documents[0], old.document);
    assert_eq!(
        outcomes.iter().filter(|o| **o == Inserted::Created).count(),
        1
    );
    assert!(outcomes
        .iter()
        .all(|o| *o == Inserted::Created || *o == Inserted::Recovered(documents[1].clone())));
}

// ---------------------------------------------------------------------------------
// API keys, concurrency, health
// ---------------------------------------------------------------------------------

fn api_key(id: &str, principal: &str, byte: u8, created_at_ms: i64) -> ApiKeyRecord {
    ApiKeyRecord {
        id: id.to_owned(),
        principal: principal.to_owned(),
        digest: [byte; 32],
        created_at_ms,
        revoked_at_ms: None,
    }
}

async fn api_keys_are_found_by_digest_until_revoked(storage: SharedStorage) {
    let admin = api_key("key_admin", "admin", 1, NOW);
    let ci = api_key("key_ci", "ci", 2, NOW + 1);
    storage
        .insert_api_key(&admin)
        .await
        .expect("insert succeeds");
    storage.insert_api_key(&ci).await.expect("insert succeeds");

    assert_eq!(
        storage.find_api_key(&[1; 32]).await.expect("find succeeds"),
        Some(admin.clone())
    );
    assert_eq!(
        storage.find_api_key(&[9; 32]).await.expect("find succeeds"),
        None
    );
    assert!(matches!(
        storage
            .insert_api_key(&api_key("key_other", "other", 1, NOW))
            .await,
        Err(StorageError::Duplicate)
    ));

    assert!(storage
        .revoke_api_key("key_admin", NOW + 10)
        .await
        .expect("revoke succeeds"));
    assert!(!storage
        .revoke_api_key("key_admin", NOW + 20)
        .await
        .expect("revoke succeeds"));
    assert!(!storage
        .revoke_api_key("key_unknown", NOW + 20)
        .await
        .expect("revoke succeeds"));
    assert_eq!(
        storage.find_api_key(&[1; 32]).await.expect("find succeeds"),
        None
    );
    assert_eq!(
        storage.find_api_key(&[2; 32]).await.expect("find succeeds"),
        Some(ci.clone())
    );

    let revoked_admin = ApiKeyRecord {
        revoked_at_ms: Some(NOW + 10),
        ..admin
    };
    assert_eq!(
        storage.list_api_keys().await.expect("listing succeeds"),
        vec![revoked_admin, ci]
    );
}

async fn many_tasks_writing_at_once_all_succeed(storage: SharedStorage) {
    // 200 inserts from 32 tasks, some with recovery points, with reads in between.
    let tasks: Vec<_> = (0..32_u64)
        .map(|task| {
            let storage = Arc::clone(&storage);
            tokio::spawn(async move {
                let mut n = task;
                while n < 200 {
                    let new = if n % 2 == 0 {
                        keyed_identity("alice|default", &format!("key-{n}"), NOW, n)
                    } else {
                        identity("alice", n, "mcp")
                    };
                    let outcome = storage.insert_identity(&new).await;
                    assert_eq!(
                        outcome.expect("no write fails under contention"),
                        Inserted::Created
                    );
                    let read = storage.get_identity("alice", &new.agent_id).await;
                    assert_eq!(read.expect("reads succeed"), Some(new.document));
                    n += 32;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("the task does not panic");
    }
    let documents = all_identity_documents(&*storage, "alice").await;
    assert_eq!(documents.len(), 200);
    assert_eq!(documents.iter().collect::<HashSet<_>>().len(), 200);
}

/// Issue 16: a second revocation used to replace the first one's document, losing
/// its reason and time. Only the first is recorded, also when they race.
async fn a_revocation_is_recorded_once_and_never_overwritten(storage: SharedStorage) {
    let identity = identity("alice", 7, "mcp");
    storage
        .insert_identity(&identity)
        .await
        .expect("insert succeeds");
    let first = "{\"revoked\":true,\"revocation_reason\":\"first\"}";
    assert!(storage
        .revoke_identity("alice", &identity.agent_id, first, None)
        .await
        .expect("revocation succeeds"));
    assert!(!storage
        .revoke_identity(
            "alice",
            &identity.agent_id,
            "{\"revocation_reason\":\"second\"}",
            None
        )
        .await
        .expect("revocation succeeds"));
    assert_eq!(
        storage
            .get_identity("alice", &identity.agent_id)
            .await
            .expect("get succeeds")
            .as_deref(),
        Some(first)
    );

    let credential = credential("alice", 7, &identity.agent_id, "T");
    storage
        .insert_credential(&credential)
        .await
        .expect("insert succeeds");
    let attempts = (0..8).map(|n| {
        let storage = storage.clone();
        let id = credential.credential_id.clone();
        tokio::spawn(async move {
            let document = format!("{{\"attempt\":{n}}}");
            let recorded = storage
                .revoke_credential("alice", &id, &document, None)
                .await
                .expect("revocation succeeds");
            recorded.then_some(document)
        })
    });
    let mut recorded = Vec::new();
    for attempt in attempts {
        recorded.extend(attempt.await.expect("the task finishes"));
    }
    assert_eq!(
        recorded.len(),
        1,
        "exactly one revocation is recorded: {recorded:?}"
    );
    assert_eq!(
        storage
            .get_credential("alice", &credential.credential_id)
            .await
            .expect("get succeeds"),
        recorded.pop()
    );
}

async fn a_ping_succeeds(storage: SharedStorage) {
    storage.ping().await.expect("the database answers");
}

async fn record_states_are_read_across_owners_and_follow_revocation(storage: SharedStorage) {
    let identity = identity("alice", 7, "api_key");
    let credential = credential("alice", 7, &identity.agent_id, "AgentIdentityCredential");
    storage
        .insert_identity(&identity)
        .await
        .expect("insert succeeds");
    storage
        .insert_credential(&credential)
        .await
        .expect("insert succeeds");
    let active = Some(RecordState {
        revoked: false,
        expires_at_ms: NOW + 365 * DAY_MS,
    });
    let revoked = Some(RecordState {
        revoked: true,
        expires_at_ms: NOW + 365 * DAY_MS,
    });
    // Verification reads them without an owner: the verifier is not the issuer's caller.
    assert_eq!(
        storage
            .identity_state(&identity.agent_id)
            .await
            .expect("read"),
        active
    );
    assert_eq!(
        storage
            .credential_state(&credential.credential_id)
            .await
            .expect("read"),
        active
    );
    assert!(storage
        .revoke_identity("alice", &identity.agent_id, "{}", None)
        .await
        .expect("update succeeds"));
    assert!(storage
        .revoke_credential("alice", &credential.credential_id, "{}", None)
        .await
        .expect("update succeeds"));
    assert_eq!(
        storage
            .identity_state(&identity.agent_id)
            .await
            .expect("read"),
        revoked
    );
    assert_eq!(
        storage
            .credential_state(&credential.credential_id)
            .await
            .expect("read"),
        revoked
    );
    assert_eq!(
        storage
            .identity_state("attestix:unknown")
            .await
            .expect("read"),
        None
    );
    assert_eq!(
        storage
            .credential_state("urn:uuid:unknown")
            .await
            .expect("read"),
        None
    );
}

// ---------------------------------------------------------------------------------
// Delegations
// ---------------------------------------------------------------------------------

fn delegation(
    owner: &str,
    jti: &str,
    issuer: &str,
    audience: &str,
    expires_at_ms: i64,
) -> NewDelegation {
    NewDelegation {
        jti: jti.to_owned(),
        owner: owner.to_owned(),
        issuer: issuer.to_owned(),
        audience: audience.to_owned(),
        created_at_ms: NOW,
        expires_at_ms,
        document: format!(
            r#"{{"jti":"{jti}","issuer":"{issuer}","audience":"{audience}","revoked":false}}"#
        ),
        recovery: None,
        audit: None,
    }
}

/// A delegation created at `at_ms` under (scope, key), at the jti of the key's use
/// `use_of_key`; `n` tells one execution's document from another's.
fn keyed_delegation(scope: &str, key: &str, at_ms: i64, n: u64, use_of_key: u32) -> NewDelegation {
    let (id, recovery) = derived(ResourceKind::Delegation, scope, key, at_ms, use_of_key);
    let jti = attestix_core::delegation::jti_from_bytes(id.into_bytes());
    NewDelegation {
        document: format!(r#"{{"jti":"{jti}","n":{n}}}"#),
        created_at_ms: at_ms,
        recovery: Some(recovery),
        audit: None,
        ..delegation("alice", &jti, "attestix:a", "did:key:zB", at_ms + DAY_MS)
    }
}

async fn delegation_jtis(
    storage: &dyn Storage,
    owner: &str,
    filter: &DelegationFilter,
) -> Vec<String> {
    let page = storage
        .list_delegations(owner, filter, first_page(1000))
        .await
        .expect("list succeeds");
    page.documents
        .iter()
        .map(|document| {
            let value: serde_json::Value = serde_json::from_str(document).unwrap();
            value["jti"].as_str().unwrap().to_owned()
        })
        .collect()
}

fn every_delegation() -> DelegationFilter {
    DelegationFilter {
        include_expired: true,
        include_revoked: true,
        now_ms: NOW,
        ..DelegationFilter::default()
    }
}

async fn a_delegation_reads_back_and_is_revoked_by_its_owner_only(storage: SharedStorage) {
    let new = delegation("alice", "jti-1", "attestix:a", "did:key:zB", NOW + DAY_MS);
    assert_eq!(
        storage.insert_delegation(&new).await.unwrap(),
        Inserted::Created
    );
    assert_eq!(
        storage.get_delegation("alice", "jti-1").await.unwrap(),
        Some(new.document.clone())
    );
    assert_eq!(storage.get_delegation("bob", "jti-1").await.unwrap(), None);
    assert!(delegation_jtis(&*storage, "bob", &every_delegation())
        .await
        .is_empty());
    // Bob can neither revoke it nor take its jti.
    assert!(!storage
        .revoke_delegation("bob", "jti-1", "{}", None)
        .await
        .unwrap());
    assert!(matches!(
        storage
            .insert_delegation(&delegation("bob", "jti-1", "x", "y", NOW))
            .await,
        Err(StorageError::Duplicate)
    ));
    assert!(storage
        .revoked_delegations(&["jti-1".into()])
        .await
        .unwrap()
        .is_empty());
    assert!(storage
        .revoke_delegation("alice", "jti-1", r#"{"revoked":true}"#, None)
        .await
        .unwrap());
    assert!(!storage
        .revoke_delegation("alice", "jti-1", r#"{"again":true}"#, None)
        .await
        .unwrap());
    assert_eq!(
        storage
            .get_delegation("alice", "jti-1")
            .await
            .unwrap()
            .as_deref(),
        Some(r#"{"revoked":true}"#),
        "the first revocation is never overwritten"
    );
    // Revocation is read in any scope (a token is checked wherever it is shown).
    assert_eq!(
        storage
            .revoked_delegations(&["jti-1".into(), "unknown".into()])
            .await
            .unwrap(),
        ["jti-1"]
    );
    assert!(storage.revoked_delegations(&[]).await.unwrap().is_empty());
}

async fn delegations_filter_by_agent_role_expiry_and_revocation_and_page(storage: SharedStorage) {
    for (jti, issuer, audience, expires) in [
        ("d1", "a", "b", NOW + DAY_MS),
        ("d2", "b", "a", NOW + DAY_MS),
        ("d3", "a", "c", NOW),
        ("d4", "c", "b", NOW + DAY_MS),
    ] {
        storage
            .insert_delegation(&delegation("alice", jti, issuer, audience, expires))
            .await
            .unwrap();
    }
    storage
        .revoke_delegation("alice", "d4", r#"{"jti":"d4"}"#, None)
        .await
        .unwrap();
    let filter = |agent: Option<&str>, role, expired, revoked| DelegationFilter {
        agent_id: agent.map(str::to_owned),
        role,
        include_expired: expired,
        include_revoked: revoked,
        now_ms: NOW,
    };
    let cases = [
        (
            filter(None, DelegationRole::Any, false, false),
            vec!["d1", "d2"],
        ),
        (
            filter(None, DelegationRole::Any, true, false),
            vec!["d1", "d2", "d3"],
        ),
        (
            filter(None, DelegationRole::Any, false, true),
            vec!["d1", "d2", "d4"],
        ),
        (
            filter(Some("a"), DelegationRole::Issuer, true, true),
            vec!["d1", "d3"],
        ),
        (
            filter(Some("a"), DelegationRole::Audience, true, true),
            vec!["d2"],
        ),
        (
            filter(Some("b"), DelegationRole::Any, true, true),
            vec!["d1", "d2", "d4"],
        ),
        (filter(Some("zz"), DelegationRole::Any, true, true), vec![]),
    ];
    for (filter, expected) in cases {
        assert_eq!(
            delegation_jtis(&*storage, "alice", &filter).await,
            expected,
            "{filter:?}"
        );
    }
    // Pages of one follow the cursor without gaps or repeats.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = storage
            .list_delegations(
                "alice",
                &every_delegation(),
                PageRequest { after, limit: 1 },
            )
            .await
            .unwrap();
        seen.extend(page.documents);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 4);
}

async fn a_retry_with_the_same_recovery_point_returns_the_original_delegation(
    storage: SharedStorage,
) {
    let original = keyed_delegation("alice|default", "key-1", NOW, 1, 0);
    assert_eq!(
        storage.insert_delegation(&original).await.unwrap(),
        Inserted::Created
    );
    let retry = keyed_delegation("alice|default", "key-1", NOW + 5_000, 2, 0);
    assert_eq!(retry.jti, original.jti, "the same jti is derived");
    assert_eq!(
        storage.insert_delegation(&retry).await.unwrap(),
        Inserted::Recovered(original.document.clone())
    );
    // Another request under the key, within the retention: a reuse.
    let mut other = keyed_delegation("alice|default", "key-1", NOW + 5_000, 3, 0);
    other.recovery.as_mut().unwrap().fingerprint = [2; 32];
    assert_eq!(
        storage.insert_delegation(&other).await.unwrap(),
        Inserted::KeyReused
    );
    // After the retention, the key's first jti is taken by an older resource: the
    // caller moves to the next one.
    let later = keyed_delegation("alice|default", "key-1", NOW + 2 * DAY_MS, 4, 0);
    assert!(matches!(
        storage.insert_delegation(&later).await,
        Err(StorageError::Duplicate)
    ));
    let next = keyed_delegation("alice|default", "key-1", NOW + 2 * DAY_MS, 4, 1);
    assert_eq!(
        storage.insert_delegation(&next).await.unwrap(),
        Inserted::Created
    );
    assert_eq!(
        delegation_jtis(&*storage, "alice", &every_delegation())
            .await
            .len(),
        2
    );
}

async fn concurrent_delegation_inserts_with_one_recovery_point_make_exactly_one_row(
    storage: SharedStorage,
) {
    let tasks: Vec<_> = (0..16)
        .map(|n| {
            let storage = storage.clone();
            tokio::spawn(async move {
                let new = keyed_delegation("alice|default", "race", NOW, n, 0);
                storage.insert_delegation(&new).await.unwrap()
            })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        match task.await.unwrap() {
            Inserted::Created => created += 1,
            Inserted::Recovered(_) => {}
            Inserted::KeyReused => panic!("the same request is no reuse"),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(
        delegation_jtis(&*storage, "alice", &every_delegation())
            .await
            .len(),
        1
    );
}

// ---------------------------------------------------------------------------------
// DIDs
// ---------------------------------------------------------------------------------

fn new_did(
    owner: &str,
    did: &str,
    keypair_id: &str,
    at_ms: i64,
    recovery: Option<RecoveryPoint>,
) -> NewDid {
    NewDid {
        did: did.to_owned(),
        owner: owner.to_owned(),
        method: "web".to_owned(),
        keypair_id: keypair_id.to_owned(),
        created_at_ms: at_ms,
        document: format!(r#"{{"did":"{did}","keypair_id":"{keypair_id}"}}"#),
        sealed_private_key: vec![1, 2, 3],
        recovery,
        audit: None,
    }
}

fn point(key: &str, at_ms: i64, fingerprint: [u8; 32]) -> RecoveryPoint {
    RecoveryPoint {
        scope: "alice/default".to_owned(),
        key: key.to_owned(),
        valid_after_ms: at_ms - DAY_MS,
        fingerprint,
    }
}

async fn a_did_is_stored_once_per_owner_and_recovered_by_its_key(storage: SharedStorage) {
    let first = new_did(
        "alice",
        "did:web:a.com",
        "kp-1",
        NOW,
        Some(point("k", NOW, SAME_REQUEST)),
    );
    assert_eq!(storage.insert_did(&first).await.unwrap(), Inserted::Created);
    // The retry made a new key pair; the stored answer wins.
    let retry = new_did(
        "alice",
        "did:web:a.com",
        "kp-2",
        NOW + 5_000,
        Some(point("k", NOW + 5_000, SAME_REQUEST)),
    );
    assert_eq!(
        storage.insert_did(&retry).await.unwrap(),
        Inserted::Recovered(first.document.clone())
    );
    let other = new_did(
        "alice",
        "did:web:b.com",
        "kp-3",
        NOW,
        Some(point("k", NOW, [9; 32])),
    );
    assert_eq!(
        storage.insert_did(&other).await.unwrap(),
        Inserted::KeyReused
    );
    // Once the key's record has expired, the key makes a new DID.
    let later = new_did(
        "alice",
        "did:web:c.com",
        "kp-4",
        NOW + 2 * DAY_MS,
        Some(point("k", NOW + 2 * DAY_MS, SAME_REQUEST)),
    );
    assert_eq!(storage.insert_did(&later).await.unwrap(), Inserted::Created);
    // The same did:web again for its owner is a duplicate; for another owner it is not.
    assert!(matches!(
        storage
            .insert_did(&new_did("alice", "did:web:a.com", "kp-5", NOW, None))
            .await,
        Err(StorageError::Duplicate)
    ));
    assert_eq!(
        storage
            .insert_did(&new_did("bob", "did:web:a.com", "kp-6", NOW, None))
            .await
            .unwrap(),
        Inserted::Created
    );
    assert_eq!(
        storage.did_private_key("alice", "kp-1").await.unwrap(),
        Some(("did:web:a.com".to_owned(), vec![1, 2, 3]))
    );
    assert_eq!(storage.did_private_key("bob", "kp-1").await.unwrap(), None);
    assert_eq!(
        storage.did_private_key("alice", "kp-2").await.unwrap(),
        None,
        "the retry stored nothing"
    );
}

async fn concurrent_did_inserts_with_one_recovery_point_make_exactly_one_did(
    storage: SharedStorage,
) {
    // Each execution generates its own key pair, so the rows differ in everything but
    // their recovery point, and may share one multi-row insert.
    let tasks: Vec<_> = (0..16)
        .map(|n| {
            let storage = storage.clone();
            tokio::spawn(async move {
                let new = new_did(
                    "alice",
                    &format!("did:key:z{n}"),
                    &format!("kp-{n}"),
                    NOW,
                    Some(point("race", NOW, SAME_REQUEST)),
                );
                (n, storage.insert_did(&new).await.unwrap())
            })
        })
        .collect();
    let mut created = Vec::new();
    let mut recovered = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            (n, Inserted::Created) => created.push(n),
            (_, Inserted::Recovered(document)) => recovered.push(document),
            (_, Inserted::KeyReused) => panic!("the same request is no reuse"),
        }
    }
    assert_eq!(created.len(), 1, "exactly one execution stores its DID");
    let winner = created[0];
    let document = format!(r#"{{"did":"did:key:z{winner}","keypair_id":"kp-{winner}"}}"#);
    assert!(recovered.iter().all(|answer| *answer == document));
    for n in 0..16 {
        let stored = storage
            .did_private_key("alice", &format!("kp-{n}"))
            .await
            .unwrap();
        assert_eq!(stored.is_some(), n == winner, "key pair {n}");
    }
    // Concurrent DIDs without a recovery point all go in.
    let tasks: Vec<_> = (0..16)
        .map(|n| {
            let storage = storage.clone();
            tokio::spawn(async move {
                let new = new_did(
                    "bob",
                    &format!("did:key:y{n}"),
                    &format!("b-{n}"),
                    NOW,
                    None,
                );
                storage.insert_did(&new).await.unwrap()
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), Inserted::Created);
    }
}

/// `records::update_document` is a compare-and-swap: a writer holding a stale copy
/// changes nothing and learns it, so a read-modify-write can start again instead of
/// overwriting a concurrent change (two instances on one PostgreSQL database).
async fn a_record_document_is_swapped_only_while_it_holds_the_expected_one(storage: SharedStorage) {
    use attestix_server::storage::records::{self, kind, NewRecord};

    let record = NewRecord {
        scope: "alice|default".into(),
        kind: kind::COMPLIANCE_PROFILE,
        id: "attestix:0000000000000001".into(),
        subject: Some("attestix:0000000000000001".into()),
        label: Some("high".into()),
        created_at_ms: NOW,
        document: r#"{"v":1}"#.into(),
        refs: vec!["attestix:0000000000000001".into()],
    };
    let swaps = records::write_with(&*storage, move |tx| {
        Box::pin(async move {
            records::insert(tx, &record).await?;
            let key = (
                "alice|default",
                kind::COMPLIANCE_PROFILE,
                record.id.as_str(),
            );
            let first =
                records::update_document(tx, key, r#"{"v":1}"#, r#"{"v":2}"#, Some("limited"))
                    .await?;
            // A writer that read version 1 before the first swap.
            let stale = records::update_document(tx, key, r#"{"v":1}"#, r#"{"v":3}"#, None).await?;
            // Another scope's record of the same id is not this one.
            let other = records::update_document(
                tx,
                ("bob|default", kind::COMPLIANCE_PROFILE, record.id.as_str()),
                r#"{"v":2}"#,
                r#"{"v":4}"#,
                None,
            )
            .await?;
            Ok((first, stale, other))
        })
    })
    .await
    .unwrap();
    assert_eq!(swaps, (true, false, false));
    let (stored, limited) = records::read_with(&*storage, |tx| {
        Box::pin(async move {
            let stored = records::get(
                tx,
                "alice|default",
                kind::COMPLIANCE_PROFILE,
                "attestix:0000000000000001",
            )
            .await?;
            let filter = records::RecordFilter {
                label: Some("limited".into()),
                ..records::RecordFilter::default()
            };
            let page = PageRequest {
                after: None,
                limit: 10,
            };
            let limited =
                records::list(tx, "alice|default", kind::COMPLIANCE_PROFILE, &filter, page).await?;
            Ok((stored, limited.documents))
        })
    })
    .await
    .unwrap();
    assert_eq!(stored.as_deref(), Some(r#"{"v":2}"#));
    assert_eq!(limited, [r#"{"v":2}"#], "the label moved with the document");
}

/// A credential issued inside a larger change (a declaration of conformity) is the
/// row `insert_credential` writes: read, listed, revoked like one; a second with the
/// same id is a duplicate.
async fn a_credential_written_inside_a_job_is_a_credential_like_any_other(storage: SharedStorage) {
    use attestix_server::storage::records;

    let issued = credential(
        "alice",
        1,
        "attestix:0000000000000001",
        "EUAIActComplianceCredential",
    );
    let id = issued.credential_id.clone();
    let again = issued.clone();
    records::write_with(&*storage, move |tx| {
        Box::pin(async move { records::insert_credential(tx, &issued).await })
    })
    .await
    .unwrap();
    let duplicate = records::write_with(&*storage, move |tx| {
        Box::pin(async move { records::insert_credential(tx, &again).await })
    })
    .await;
    assert!(
        matches!(duplicate, Err(StorageError::Duplicate)),
        "{duplicate:?}"
    );
    assert!(storage
        .get_credential("alice", &id)
        .await
        .unwrap()
        .is_some());
    assert_eq!(storage.get_credential("bob", &id).await.unwrap(), None);
    let filter = CredentialFilter {
        subject_id: None,
        credential_type: Some("EUAIActComplianceCredential".into()),
        valid_only: true,
        now_ms: NOW,
    };
    let page = PageRequest {
        after: None,
        limit: 10,
    };
    let listed = storage
        .list_credentials("alice", &filter, page)
        .await
        .unwrap();
    assert_eq!(listed.documents.len(), 1);
    let state = storage
        .credential_state(&id)
        .await
        .unwrap()
        .expect("a state");
    assert!(!state.revoked);
}

/// Concurrent write jobs share a transaction (group commit); one that fails, after it
/// wrote or before any statement, is undone alone: its record and its audit event are
/// gone, every other job's are kept, and the scope's event chain still verifies.
async fn a_failing_job_in_a_shared_write_turn_is_undone_alone(storage: SharedStorage) {
    use attestix_server::audit::{self, AuditDraft};
    use attestix_server::storage::records::{self, kind, NewRecord};

    const JOBS: u64 = 48;
    let tasks: Vec<_> = (0..JOBS)
        .map(|n| {
            let storage = Arc::clone(&storage);
            tokio::spawn(async move {
                let now = time::OffsetDateTime::now_utc();
                let record = NewRecord {
                    scope: "alice|default".into(),
                    kind: kind::INTERACTION,
                    id: format!("job-{n}"),
                    subject: Some(format!("attestix:{n:016x}")),
                    label: None,
                    created_at_ms: NOW,
                    document: format!(r#"{{"n":{n}}}"#),
                    refs: vec![format!("attestix:{n:016x}")],
                };
                let draft = AuditDraft::new(
                    "alice|default".into(),
                    "default",
                    "test",
                    "job.run",
                    &record.id,
                    "jobs",
                    serde_json::json!({ "n": n }),
                    now,
                )
                .expect("a draft");
                records::write_with(&*storage, move |tx| {
                    Box::pin(async move {
                        // Every other failing job fails before its first statement
                        // (its savepoint never opened), having only appended a link.
                        if n % 10 != 8 {
                            records::insert(tx, &record).await?;
                        }
                        tx.audit(&draft).await?;
                        if n == 0 {
                            // Hold the first turn so that the others queue behind it
                            // and share the next ones.
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        }
                        if n % 5 == 3 {
                            return Err(StorageError::database("this job fails"));
                        }
                        Ok(())
                    })
                })
                .await
            })
        })
        .collect();
    for (n, task) in (0..JOBS).zip(tasks) {
        let outcome = task.await.expect("the task does not panic");
        assert_eq!(outcome.is_err(), n % 5 == 3, "job {n}: {outcome:?}");
    }
    let (kept, events) = records::read_with(&*storage, |tx| {
        Box::pin(async move {
            let kept = records::all(tx, "alice|default", kind::INTERACTION, None).await?;
            let events = records::all(tx, "alice|default", kind::AUDIT_EVENT, None).await?;
            Ok((kept, events))
        })
    })
    .await
    .expect("the records read back");
    let mut kept: Vec<u64> = kept
        .iter()
        .map(|document| {
            serde_json::from_str::<serde_json::Value>(document).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    kept.sort_unstable();
    let expected: Vec<u64> = (0..JOBS).filter(|n| n % 5 != 3).collect();
    assert_eq!(kept, expected);
    assert_eq!(events.len(), expected.len());
    let report = audit::verify(&events);
    assert!(report.valid, "{report:?}");
    let mut targets: Vec<String> = events
        .iter()
        .map(|document| {
            serde_json::from_str::<serde_json::Value>(document).unwrap()["target_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    targets.sort_unstable();
    let mut wanted: Vec<String> = expected.iter().map(|n| format!("job-{n}")).collect();
    wanted.sort_unstable();
    assert_eq!(targets, wanted);
}

macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        /// The contract on a SQLite database file.
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    crate::common::with_sqlite(crate::$test).await;
                }
            )*
        }

        /// The contract on a PostgreSQL database.
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    crate::common::with_postgres(crate::$test).await;
                }
            )*
        }
    };
}

on_both_backends!(
    an_identity_reads_back_byte_for_byte,
    another_owners_identity_is_invisible_and_cannot_be_updated,
    a_revoked_identity_is_listed_only_when_revoked_ones_are_asked_for,
    identities_page_by_cursor_without_gaps_or_repeats,
    a_credential_reads_back_and_is_replaced_by_its_owner_only,
    credentials_page_by_cursor_and_filter_by_subject_type_and_validity,
    a_page_limit_of_zero_returns_nothing,
    a_duplicate_id_is_reported_as_duplicate,
    a_retry_with_the_same_recovery_point_returns_the_original_identity,
    a_retry_just_within_the_retention_returns_the_original,
    a_retry_with_the_same_recovery_point_returns_the_original_credential,
    another_request_under_a_used_key_is_a_reuse_not_a_recovery,
    recovery_points_are_distinct_per_scope_key_and_resource,
    an_unrelated_row_at_a_derived_id_is_a_duplicate_not_a_recovery,
    concurrent_inserts_with_one_recovery_point_make_exactly_one_row,
    concurrent_credential_inserts_with_one_recovery_point_make_exactly_one_row,
    a_key_reused_after_the_retention_makes_a_new_row_at_its_next_id,
    concurrent_reuses_of_an_expired_recovery_point_make_exactly_one_new_row,
    api_keys_are_found_by_digest_until_revoked,
    record_states_are_read_across_owners_and_follow_revocation,
    many_tasks_writing_at_once_all_succeed,
    a_revocation_is_recorded_once_and_never_overwritten,
    a_ping_succeeds,
    a_delegation_reads_back_and_is_revoked_by_its_owner_only,
    delegations_filter_by_agent_role_expiry_and_revocation_and_page,
    a_retry_with_the_same_recovery_point_returns_the_original_delegation,
    concurrent_delegation_inserts_with_one_recovery_point_make_exactly_one_row,
    a_did_is_stored_once_per_owner_and_recovered_by_its_key,
    concurrent_did_inserts_with_one_recovery_point_make_exactly_one_did,
    a_failing_job_in_a_shared_write_turn_is_undone_alone,
    a_record_document_is_swapped_only_while_it_holds_the_expected_one,
    a_credential_written_inside_a_job_is_a_credential_like_any_other,
);

// ---------------------------------------------------------------------------------
// Backend specifics
// ---------------------------------------------------------------------------------

/// A row in sqlx's migration ledger written by some other component.
const FOREIGN_LEDGER_VERSION: i64 = 1;

mod sqlite_specifics {
    use super::*;
    use attestix_server::storage::SqliteStorage;
    use sqlx::Connection;

    /// Concurrent inserts share statements (group commit), and every caller still gets
    /// its own answer: of the 4 rows racing for each of 10 recovery points exactly one
    /// is created and the other 3 get its document back, 140 other identities are
    /// created, 10 ids that already exist fail alone as `Duplicate` without failing the
    /// rows batched with them, and credentials batched beside identities land too.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_inserts_are_batched_and_each_gets_its_own_answer() {
        let (storage, _directory) = common::sqlite_storage().await;
        for n in 0..10 {
            storage
                .insert_identity(&identity("alice", 1_000_000 + n, "mcp"))
                .await
                .expect("the rows to collide with are stored first");
        }
        let storage = Arc::new(storage);
        let mut tasks = Vec::new();
        for n in 0..200_u64 {
            let storage = Arc::clone(&storage);
            tasks.push(tokio::spawn(async move {
                match n {
                    // Distinct identities, 10 of them holding recovery points.
                    0..150 => {
                        let new = if n < 10 {
                            keyed_identity("alice|default", &format!("key-{n}"), NOW, n)
                        } else {
                            identity("alice", n, "mcp")
                        };
                        let answer = storage.insert_identity(&new).await;
                        (n, answer.map(|inserted| (inserted, new.document)))
                    }
                    // Retries under those 10 recovery points, with new documents.
                    150..180 => {
                        let key = format!("key-{}", n % 10);
                        let retry = keyed_identity("alice|default", &key, NOW + 1, 10_000 + n);
                        let answer = storage.insert_identity(&retry).await;
                        (n, answer.map(|inserted| (inserted, retry.document)))
                    }
                    // Ids that already exist.
                    180..190 => {
                        let duplicate = identity("alice", 1_000_000 + n - 180, "mcp");
                        let answer = storage.insert_identity(&duplicate).await;
                        (n, answer.map(|inserted| (inserted, duplicate.document)))
                    }
                    _ => {
                        let new = credential("alice", n, "attestix:subject", "AgentCredential");
                        let answer = storage.insert_credential(&new).await;
                        (n, answer.map(|inserted| (inserted, new.document)))
                    }
                }
            }));
        }
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.expect("no task panics"));
        }
        let mut duplicates = 0;
        // Per recovery point: the document created, and the documents handed back.
        let mut created_under: Vec<Vec<String>> = vec![Vec::new(); 10];
        let mut recovered_under: Vec<Vec<String>> = vec![Vec::new(); 10];
        for (n, answer) in answers {
            let contends = n < 10 || (150..180).contains(&n);
            match (n, answer) {
                (n, Ok((Inserted::Created, document))) if contends => {
                    created_under[(n % 10) as usize].push(document);
                }
                (n, Ok((Inserted::Recovered(document), _))) if contends => {
                    recovered_under[(n % 10) as usize].push(document);
                }
                (10..150 | 190.., Ok((inserted, _))) => {
                    assert_eq!(inserted, Inserted::Created, "row {n}");
                }
                (180..190, Err(StorageError::Duplicate)) => duplicates += 1,
                (n, other) => panic!("row {n}: unexpected answer {other:?}"),
            }
        }
        for key in 0..10 {
            assert_eq!(created_under[key].len(), 1, "one row per recovery point");
            assert_eq!(recovered_under[key], vec![created_under[key][0].clone(); 3]);
        }
        assert_eq!(duplicates, 10);
        assert_eq!(all_identity_documents(&*storage, "alice").await.len(), 160);
        assert_eq!(all_credential_documents(&*storage, "alice").await.len(), 10);
    }

    /// The write-ahead log reaches the database file without a checkpoint in the
    /// writer's commits: a few hundred rows are far under the writer's own threshold
    /// (and SQLite's default one), yet the file grows within seconds, because the
    /// checkpointer copies the log into it.
    #[tokio::test]
    async fn the_log_is_checkpointed_in_the_background() {
        let directory = tempfile::tempdir().expect("a temporary directory can be made");
        let path = directory.path().join("attestix.db");
        let storage = SqliteStorage::open(&path).await.expect("the file opens");
        storage.migrate().await.expect("migrations apply");
        let before = std::fs::metadata(&path).expect("the file exists").len();
        for n in 0..400 {
            storage
                .insert_identity(&identity("alice", n, "mcp"))
                .await
                .expect("insert succeeds");
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let now = std::fs::metadata(&path).expect("the file exists").len();
            if now > before {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the database file stayed at {before} bytes: the log was not checkpointed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        storage.close().await;
    }

    /// Emptying the log (a purge's last step) succeeds while another connection to
    /// the file checkpoints over and over, as another process or a command's own
    /// storage does: SQLite refuses a checkpoint at once while another one runs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_is_emptied_while_another_connection_checkpoints() {
        let directory = tempfile::tempdir().expect("a temporary directory can be made");
        let path = directory.path().join("attestix.db");
        let storage = SqliteStorage::open(&path).await.expect("the file opens");
        storage.migrate().await.expect("migrations apply");
        let mut other =
            sqlx::SqliteConnection::connect_with(&SqliteStorage::connect_options(&path))
                .await
                .expect("a second connection opens");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let checkpoints = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut count = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                        .execute(&mut other)
                        .await
                        .expect("a passive checkpoint runs");
                    count += 1;
                }
                count
            }
        });
        for n in 0..40 {
            for m in 0..20 {
                storage
                    .insert_identity(&identity("alice", n * 20 + m, "mcp"))
                    .await
                    .expect("insert succeeds");
            }
            storage
                .erase_residue()
                .await
                .unwrap_or_else(|error| panic!("round {n}: the log is not emptied: {error:?}"));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(checkpoints.await.expect("the checkpoints ran") > 0);
        storage.close().await;
    }

    #[tokio::test]
    async fn data_survives_closing_and_reopening_the_file() {
        let directory = tempfile::tempdir().expect("a temporary directory can be made");
        let path = directory.path().join("attestix.db");
        let new = identity("alice", 1, "mcp");
        {
            let storage = SqliteStorage::open(&path).await.expect("the file opens");
            storage.migrate().await.expect("migrations apply");
            storage
                .insert_identity(&new)
                .await
                .expect("insert succeeds");
            storage
                .insert_api_key(&api_key("key_admin", "admin", 1, NOW))
                .await
                .expect("insert succeeds");
            storage.close().await;
        }
        let storage = SqliteStorage::open(&path).await.expect("the file reopens");
        storage.migrate().await.expect("migrating again is a no-op");
        assert_eq!(
            storage
                .get_identity("alice", &new.agent_id)
                .await
                .expect("get succeeds"),
            Some(new.document)
        );
        assert!(storage
            .find_api_key(&[1; 32])
            .await
            .expect("find succeeds")
            .is_some());
        storage.close().await;
    }

    /// The migration that drops the recovery-point constraint rebuilds both tables:
    /// every row, its sequence number and so every cursor survive, and new rows
    /// continue the sequence.
    #[tokio::test]
    async fn the_recovery_point_rebuild_keeps_every_row_and_cursor() {
        let directory = tempfile::tempdir().expect("a temporary directory can be made");
        let path = directory.path().join("attestix.db");
        {
            // A database as the previous release left it, holding keyed and unkeyed rows.
            let pool = sqlx::SqlitePool::connect_with(SqliteStorage::connect_options(&path))
                .await
                .expect("the file opens");
            let mut before = sqlx::migrate!("./migrations/sqlite");
            before.migrations = before
                .migrations
                .iter()
                .filter(|migration| migration.version < 2026120101)
                .cloned()
                .collect::<Vec<_>>()
                .into();
            before.run(&pool).await.expect("the old migrations apply");
            for n in 1..=5_i64 {
                let keyed = n % 2 == 0;
                sqlx::query(
                    "INSERT INTO identities (agent_id, owner, source_protocol, created_at_ms, \
                     expires_at_ms, document, idempotency_scope, idempotency_key) \
                     VALUES (?1, 'alice', 'mcp', ?2, ?2, ?3, ?4, ?5)",
                )
                .bind(format!("attestix:old{n:013}"))
                .bind(NOW + n)
                .bind(format!("old identity {n}"))
                .bind(keyed.then_some("alice|default"))
                .bind(keyed.then(|| format!("key-{n}")))
                .execute(&pool)
                .await
                .expect("an old row inserts");
                sqlx::query(
                    "INSERT INTO credentials (credential_id, owner, subject_id, credential_type, \
                     created_at_ms, expires_at_ms, document) \
                     VALUES (?1, 'alice', 's', 'T', ?2, ?2, ?3)",
                )
                .bind(format!("urn:uuid:old-{n}"))
                .bind(NOW + n)
                .bind(format!("old credential {n}"))
                .execute(&pool)
                .await
                .expect("an old row inserts");
            }
            pool.close().await;
        }
        let storage = SqliteStorage::open(&path).await.expect("the file reopens");
        storage.migrate().await.expect("the rebuild applies");
        let pages = identity_pages(&storage, "alice", &all_identities(), 2).await;
        assert_eq!(
            page_sizes(&pages),
            vec![2, 2, 1],
            "the cursor pages as before"
        );
        assert_eq!(
            pages.concat(),
            (1..=5)
                .map(|n| format!("old identity {n}"))
                .collect::<Vec<_>>()
        );
        // New rows come after the old ones, keyed or not.
        storage
            .insert_identity(&identity("alice", 6, "mcp"))
            .await
            .expect("insert succeeds");
        storage
            .insert_identity(&keyed_identity("alice|default", "key-2", NOW, 7))
            .await
            .expect("insert succeeds");
        storage
            .insert_credential(&credential("alice", 6, "s", "T"))
            .await
            .expect("insert succeeds");
        let documents = all_identity_documents(&storage, "alice").await;
        assert_eq!(documents.len(), 7);
        assert_eq!(&documents[..5], &pages.concat()[..]);
        let credentials = all_credential_documents(&storage, "alice").await;
        assert_eq!(credentials.len(), 6);
        assert_eq!(credentials[0], "old credential 1");
        // The constraint and its index are gone; the id's unique index is not.
        let indexes: Vec<String> = sqlx::query_scalar(
            "SELECT group_concat(ii.name) FROM sqlite_master AS m, \
             pragma_index_list(m.name) AS il, pragma_index_info(il.name) AS ii \
             WHERE m.name IN ('identities', 'credentials') AND il.\"unique\" = 1 \
             GROUP BY m.name, il.name ORDER BY m.name, il.name",
        )
        .fetch_all(&mut *storage.readers().acquire().await.expect("a reader"))
        .await
        .expect("the index list reads");
        assert_eq!(indexes, vec!["credential_id", "agent_id"]);
        storage.close().await;
    }

    #[tokio::test]
    async fn the_file_is_in_wal_mode_with_normal_sync_and_foreign_keys() {
        let (storage, _directory) = common::sqlite_storage().await;
        let mut writer = storage.writer().acquire().await.expect("the writer");
        let mut reader = storage.readers().acquire().await.expect("a reader");
        for connection in [&mut *writer, &mut *reader] {
            let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(&mut *connection)
                .await
                .expect("pragma reads");
            assert_eq!(journal, "wal");
            // NORMAL is 1.
            let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&mut *connection)
                .await
                .expect("pragma reads");
            assert_eq!(synchronous, 1);
            let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
                .fetch_one(&mut *connection)
                .await
                .expect("pragma reads");
            assert_eq!(foreign_keys, 1);
            let busy_timeout: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
                .fetch_one(&mut *connection)
                .await
                .expect("pragma reads");
            assert!(busy_timeout >= 1000);
        }
        drop((writer, reader));
        storage.close().await;
    }

    #[tokio::test]
    async fn migrations_tolerate_other_components_in_the_same_database() {
        let (storage, _directory) = common::sqlite_storage().await;
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (?1, 'another component', TRUE, ?2, 0)",
        )
        .bind(FOREIGN_LEDGER_VERSION)
        .bind(vec![0_u8; 48])
        .execute(&mut *storage.writer().acquire().await.expect("the writer"))
        .await
        .expect("the ledger takes a foreign row");
        storage
            .migrate()
            .await
            .expect("unknown applied versions are ignored");
        storage.close().await;
    }

    #[tokio::test]
    async fn the_in_memory_database_is_migrated_and_usable() {
        let storage = SqliteStorage::in_memory()
            .await
            .expect("an in-memory database opens");
        let new = identity("alice", 1, "mcp");
        storage
            .insert_identity(&new)
            .await
            .expect("insert succeeds");
        assert_eq!(
            storage
                .get_identity("alice", &new.agent_id)
                .await
                .expect("get succeeds"),
            Some(new.document)
        );
    }
}

mod postgres_specifics {
    use super::*;
    use attestix_server::storage::PostgresStorage;

    #[tokio::test]
    async fn connect_opens_a_pool_and_migrations_tolerate_other_components() {
        let Some(database) = common::postgres_database().await else {
            return;
        };
        let storage = PostgresStorage::connect(database.url(), 3)
            .await
            .expect("the test database accepts connections");
        storage.migrate().await.expect("migrations apply");
        idempotency_sql::PostgresStore::from_pool(storage.pool().clone())
            .migrate()
            .await
            .expect("the idempotency store migrates the same database");
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES ($1, 'another component', TRUE, $2, 0)",
        )
        .bind(FOREIGN_LEDGER_VERSION)
        .bind(vec![0_u8; 48])
        .execute(storage.pool())
        .await
        .expect("the ledger takes a foreign row");
        storage
            .migrate()
            .await
            .expect("migrating again ignores unknown applied versions");
        storage.ping().await.expect("the database answers");
        storage.close().await;
        database
            .drop_database()
            .await
            .expect("the test database is dropped");
    }

    #[tokio::test]
    async fn documents_are_stored_as_text_not_jsonb() {
        let Some(database) = common::postgres_database().await else {
            return;
        };
        let storage = PostgresStorage::from_pool(database.pool().clone());
        storage.migrate().await.expect("migrations apply");
        for table in ["identities", "credentials"] {
            let data_type: String = sqlx::query_scalar(
                "SELECT data_type FROM information_schema.columns \
                 WHERE table_name = $1 AND column_name = 'document'",
            )
            .bind(table)
            .fetch_one(storage.pool())
            .await
            .expect("the column exists");
            assert_eq!(data_type, "text");
        }
        database
            .drop_database()
            .await
            .expect("the test database is dropped");
    }
}
