//! Persistence of identities, credentials, delegations and API keys.
//!
//! One [`Storage`] trait, two implementations: SQLite (the embedded default) and
//! PostgreSQL (many server instances sharing one database). Documents are kept as
//! the exact JSON text the server signed and returned, never re-serialised by the
//! database (PostgreSQL's JSONB would reorder keys), so a GET returns the same
//! bytes as the POST did.
//!
//! A resource created under an `Idempotency-Key` stores its (scope, key) beside it:
//! the *recovery point*. If the process dies after the resource committed but before
//! the idempotency layer stored the response, the retry inserts again and gets the
//! resource already made. The resource's id is derived from the recovery point
//! ([`crate::recovery`]), so the retry carries the same id; SQLite finds the original
//! through its unique id alone, PostgreSQL also through a unique constraint on
//! (scope, key).

use async_trait::async_trait;

use crate::audit::AuditDraft;
pub use records::Job;

mod batch_queue;
mod delegations;
mod dids;
mod insert_batch;
mod job_batch;
mod new_row;
pub mod postgres;
pub mod records;
pub mod sqlite;
mod sqlite_checkpoint;
pub mod sqlite_connections;
mod sqlite_turn;

pub use postgres::PostgresStorage;
pub use sqlite::SqliteStorage;

/// The (scope, key) of the idempotent request that created a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryPoint {
    /// The idempotency scope (principal and tenant).
    pub scope: String,
    /// The Idempotency-Key.
    pub key: String,
    /// Resources created under the same (scope, key) before this instant (unix
    /// milliseconds) belong to an idempotency record that has expired: the key was
    /// legitimately reused, so they are not recovered, and a new resource is created.
    pub valid_after_ms: i64,
    /// The idempotency fingerprint of the request (method, path, query, body): a row
    /// with this (scope, key) is that request's resource only if it was made by a
    /// request with the same fingerprint.
    pub fingerprint: [u8; 32],
}

/// What a row already holding a recovery point's (scope, key) is to a new insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holder {
    /// Made by an earlier execution of this very request: its resource.
    SameRequest,
    /// Made under the same key, within the retention, by another request (or by one
    /// whose fingerprint was not kept): the key is being reused, not retried.
    OtherRequest,
    /// Made under an idempotency record that has expired: the key may be used again.
    Expired,
}

impl RecoveryPoint {
    /// Judges a row with this point's (scope, key), created at `created_at_ms`, made
    /// by a request with `fingerprint` (`None` for rows written before fingerprints
    /// were kept, which cannot be told apart from another request).
    pub(crate) fn judge(&self, created_at_ms: i64, fingerprint: Option<&[u8]>) -> Holder {
        if created_at_ms < self.valid_after_ms {
            Holder::Expired
        } else if fingerprint == Some(self.fingerprint.as_slice()) {
            Holder::SameRequest
        } else {
            Holder::OtherRequest
        }
    }
}

/// An identity to insert.
#[derive(Debug, Clone)]
pub struct NewIdentity {
    /// `attestix:` + 16 hex digits.
    pub agent_id: String,
    /// The owning scope (principal and tenant); reads by other owners see nothing.
    pub owner: String,
    /// The `source_protocol` field, kept as a column for filtering.
    pub source_protocol: String,
    /// Creation time, unix milliseconds.
    pub created_at_ms: i64,
    /// Expiry, unix milliseconds.
    pub expires_at_ms: i64,
    /// The signed UAIT, serialised exactly as returned to the client.
    pub document: String,
    /// Set when the request carried an Idempotency-Key.
    pub recovery: Option<RecoveryPoint>,
    /// The audit event to append, in the same transaction, when the row is created.
    pub audit: Option<AuditDraft>,
}

/// A credential to insert.
#[derive(Debug, Clone)]
pub struct NewCredential {
    /// `urn:uuid:…`
    pub credential_id: String,
    /// The owning scope.
    pub owner: String,
    /// `credentialSubject.id`, kept as a column for filtering.
    pub subject_id: String,
    /// The specific type (the last entry of `type`), kept for filtering.
    pub credential_type: String,
    /// Issuance time, unix milliseconds.
    pub issued_at_ms: i64,
    /// Expiry, unix milliseconds.
    pub expires_at_ms: i64,
    /// The signed VC, serialised exactly as returned to the client.
    pub document: String,
    /// Set when the request carried an Idempotency-Key.
    pub recovery: Option<RecoveryPoint>,
    /// The audit event to append, in the same transaction, when the row is created.
    pub audit: Option<AuditDraft>,
}

/// A delegation record to insert (the token itself is never stored).
#[derive(Debug, Clone)]
pub struct NewDelegation {
    /// The token's `jti`.
    pub jti: String,
    /// The owning scope.
    pub owner: String,
    /// The delegating agent (`issuer` of the record, `delegator` of the token).
    pub issuer: String,
    /// The agent receiving the capabilities.
    pub audience: String,
    /// Creation time, unix milliseconds.
    pub created_at_ms: i64,
    /// Expiry, unix milliseconds.
    pub expires_at_ms: i64,
    /// The delegation record, serialised exactly as returned to the client.
    pub document: String,
    /// Set when the request carried an Idempotency-Key.
    pub recovery: Option<RecoveryPoint>,
    /// The audit event to append, in the same transaction, when the row is created.
    pub audit: Option<AuditDraft>,
}

/// A DID the server created, with its private key sealed under the data key.
#[derive(Debug, Clone)]
pub struct NewDid {
    /// The DID.
    pub did: String,
    /// The owning scope.
    pub owner: String,
    /// `key` or `web`.
    pub method: String,
    /// How the private key is referred to (unique).
    pub keypair_id: String,
    /// Creation time, unix milliseconds.
    pub created_at_ms: i64,
    /// The create response, exactly as returned (public material only).
    pub document: String,
    /// The private key, sealed by [`crate::data_key::DataKey::seal`] with the DID
    /// as context.
    pub sealed_private_key: Vec<u8>,
    /// Set when the request carried an Idempotency-Key.
    pub recovery: Option<RecoveryPoint>,
    /// The audit event to append, in the same transaction, when the row is created.
    pub audit: Option<AuditDraft>,
}

/// Which side of a delegation [`DelegationFilter::agent_id`] must be on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DelegationRole {
    /// The agent granted the delegation.
    Issuer,
    /// The agent received it.
    Audience,
    /// Either.
    #[default]
    Any,
}

/// Filters for listing delegations.
#[derive(Debug, Clone, Default)]
pub struct DelegationFilter {
    /// Only delegations with this agent on the side `role` names.
    pub agent_id: Option<String>,
    /// Which side `agent_id` is on.
    pub role: DelegationRole,
    /// Include delegations whose expiry is at or before `now_ms`.
    pub include_expired: bool,
    /// Include revoked delegations.
    pub include_revoked: bool,
    /// The current time for `include_expired`, unix milliseconds.
    pub now_ms: i64,
}

/// What a row holding the id a keyed insert wanted is to that insert: `None` when the
/// row was made under another (scope, key), or none (then the id is merely taken).
pub(crate) fn judge_holder(
    recovery: &RecoveryPoint,
    scope: Option<&str>,
    key: Option<&str>,
    created_at_ms: i64,
    fingerprint: Option<&[u8]>,
) -> Option<Holder> {
    let same_key = scope == Some(recovery.scope.as_str()) && key == Some(recovery.key.as_str());
    same_key.then(|| recovery.judge(created_at_ms, fingerprint))
}

/// The result of an insert that may have been answered by a recovery point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// A new row; the document given was stored.
    Created,
    /// A resource already existed for the recovery point; its document is returned.
    Recovered(String),
    /// The recovery point's key made another resource, within the retention, for a
    /// different request: nothing was inserted, and the request is a key reuse.
    KeyReused,
}

/// Filters for listing identities.
#[derive(Debug, Clone, Default)]
pub struct IdentityFilter {
    /// Only this `source_protocol`.
    pub source_protocol: Option<String>,
    /// Include revoked identities.
    pub include_revoked: bool,
}

/// Filters for listing credentials.
#[derive(Debug, Clone, Default)]
pub struct CredentialFilter {
    /// Only credentials whose subject is this agent.
    pub subject_id: Option<String>,
    /// Only this credential type.
    pub credential_type: Option<String>,
    /// Only credentials neither revoked nor expired at `now_ms`.
    pub valid_only: bool,
    /// The current time for `valid_only`, unix milliseconds.
    pub now_ms: i64,
}

/// Where a page starts and how long it is. The cursor is the opaque position of
/// the last row of the previous page (its insertion sequence number), so every
/// page is one index range scan, page 1 or page 1,000 alike.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    /// Rows after this position; `None` for the first page.
    pub after: Option<i64>,
    /// At most this many rows.
    pub limit: u32,
}

/// One page of documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The documents, oldest first, as stored.
    pub documents: Vec<String>,
    /// The cursor for the next page, if there may be one.
    pub next: Option<i64>,
}

/// What the database records about an identity or credential, whoever owns it: the
/// authority on revocation when a document this server signed is verified (the
/// revocation fields inside a document are outside its signature).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordState {
    /// Revoked.
    pub revoked: bool,
    /// Expiry, unix milliseconds.
    pub expires_at_ms: i64,
}

impl RecordState {
    /// The record as `attestix-core` weighs it, at `now_ms`.
    pub fn at(self, now_ms: i64) -> attestix_core::IssuerRecord {
        attestix_core::IssuerRecord {
            revoked: self.revoked,
            expired: now_ms >= self.expires_at_ms,
        }
    }
}

/// An API key as stored: never the key itself, only its SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// A short public identifier for listing and revoking (not secret).
    pub id: String,
    /// The principal the key authenticates as.
    pub principal: String,
    /// SHA-256 of the key.
    pub digest: [u8; 32],
    /// Creation time, unix milliseconds.
    pub created_at_ms: i64,
    /// Revocation time, if revoked.
    pub revoked_at_ms: Option<i64>,
}

/// Why a storage call failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An insert collided with an existing unique id (not a recovery point).
    #[error("a record with this id already exists")]
    Duplicate,
    /// The database failed or could not be reached.
    #[error("database error")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StorageError {
    /// Wraps a database driver error (or a description of what failed).
    pub fn database(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Database(error.into())
    }
}

/// The server's persistence. Every method is one statement or one transaction.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Inserts an identity. With a recovery point that names a resource created at
    /// or after `valid_after_ms` (at the identity's own id; PostgreSQL also finds it by
    /// (scope, key)), inserts nothing and returns that resource's document instead.
    /// An id taken by any other row is [`StorageError::Duplicate`]: the caller tries
    /// the key's next derived id ([`crate::recovery`]).
    async fn insert_identity(&self, identity: &NewIdentity) -> Result<Inserted, StorageError>;
    /// The identity's document, if it exists and belongs to `owner`.
    async fn get_identity(
        &self,
        owner: &str,
        agent_id: &str,
    ) -> Result<Option<String>, StorageError>;
    /// A page of `owner`'s identities, oldest first.
    async fn list_identities(
        &self,
        owner: &str,
        filter: &IdentityFilter,
        page: PageRequest,
    ) -> Result<Page, StorageError>;
    /// Stores `document`, the revoked form of `owner`'s identity, and marks it
    /// revoked, unless it is absent or already revoked: then `false`, and nothing
    /// changes. The check is in the same statement as the write, so of two
    /// revocations at once exactly one is recorded, and a revocation's reason and
    /// time are never overwritten.
    async fn revoke_identity(
        &self,
        owner: &str,
        agent_id: &str,
        document: &str,
        audit: Option<&AuditDraft>,
    ) -> Result<bool, StorageError> {
        records::revoke(
            self,
            records::Revocable::Identity,
            owner,
            agent_id,
            document,
            audit,
        )
        .await
    }

    /// The recorded state of the identity `agent_id` in any scope. Unscoped on purpose:
    /// whoever holds a presentation this server signed may learn whether its holder
    /// was revoked, as a public revocation list would tell them; ids are unique
    /// across scopes.
    async fn identity_state(&self, agent_id: &str) -> Result<Option<RecordState>, StorageError>;

    /// Inserts a credential; recovery points as for identities.
    async fn insert_credential(&self, credential: &NewCredential)
        -> Result<Inserted, StorageError>;
    /// The credential's document, if it exists and belongs to `owner`.
    async fn get_credential(
        &self,
        owner: &str,
        credential_id: &str,
    ) -> Result<Option<String>, StorageError>;
    /// A page of `owner`'s credentials, oldest first.
    async fn list_credentials(
        &self,
        owner: &str,
        filter: &CredentialFilter,
        page: PageRequest,
    ) -> Result<Page, StorageError>;
    /// Stores `document`, the revoked form of `owner`'s credential, unless it is
    /// absent or already revoked; as [`Storage::revoke_identity`].
    async fn revoke_credential(
        &self,
        owner: &str,
        credential_id: &str,
        document: &str,
        audit: Option<&AuditDraft>,
    ) -> Result<bool, StorageError> {
        records::revoke(
            self,
            records::Revocable::Credential,
            owner,
            credential_id,
            document,
            audit,
        )
        .await
    }

    /// The recorded state of the credential `credential_id` in any scope (unscoped for
    /// the reason given at [`Storage::identity_state`]).
    async fn credential_state(
        &self,
        credential_id: &str,
    ) -> Result<Option<RecordState>, StorageError>;

    /// Inserts a delegation record. Its `jti` is its id: a keyed create derives it from
    /// the recovery point, so a row already at the `jti` made by the same request
    /// (same scope, key and fingerprint, within the retention) is
    /// [`Inserted::Recovered`], one made by another request under the key is
    /// [`Inserted::KeyReused`], and any other is [`StorageError::Duplicate`].
    async fn insert_delegation(&self, delegation: &NewDelegation)
        -> Result<Inserted, StorageError>;
    /// The delegation record, if it exists and belongs to `owner`.
    async fn get_delegation(&self, owner: &str, jti: &str) -> Result<Option<String>, StorageError>;
    /// A page of `owner`'s delegations, oldest first.
    async fn list_delegations(
        &self,
        owner: &str,
        filter: &DelegationFilter,
        page: PageRequest,
    ) -> Result<Page, StorageError>;
    /// Stores `document`, the revoked form of `owner`'s delegation, and marks it
    /// revoked, unless it is absent or already revoked (then `false`); as
    /// [`Storage::revoke_identity`].
    async fn revoke_delegation(
        &self,
        owner: &str,
        jti: &str,
        document: &str,
        audit: Option<&AuditDraft>,
    ) -> Result<bool, StorageError> {
        records::revoke(
            self,
            records::Revocable::Delegation,
            owner,
            jti,
            document,
            audit,
        )
        .await
    }
    /// Which of `jtis` name a revoked delegation, in any scope: a token's revocation
    /// holds wherever it is presented (unscoped for the reason given at
    /// [`Storage::identity_state`]).
    async fn revoked_delegations(&self, jtis: &[String]) -> Result<Vec<String>, StorageError>;

    /// Inserts a DID. With a recovery point held by a row made by the same request
    /// within the retention, inserts nothing and returns that row's document
    /// ([`Inserted::Recovered`]); held by another request, [`Inserted::KeyReused`].
    /// The DID already created in `owner`'s scope (or a taken keypair id) is
    /// [`StorageError::Duplicate`].
    async fn insert_did(&self, did: &NewDid) -> Result<Inserted, StorageError>;
    /// The DID and sealed private key of `owner`'s keypair `keypair_id`.
    async fn did_private_key(
        &self,
        owner: &str,
        keypair_id: &str,
    ) -> Result<Option<(String, Vec<u8>)>, StorageError>;

    /// Stores a new API key.
    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StorageError>;
    /// The unrevoked key with this digest, if any.
    async fn find_api_key(&self, digest: &[u8; 32]) -> Result<Option<ApiKeyRecord>, StorageError>;
    /// Every key, revoked ones included, oldest first.
    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StorageError>;
    /// Revokes the key with this id; `false` if there is no unrevoked key with it.
    async fn revoke_api_key(&self, id: &str, at_ms: i64) -> Result<bool, StorageError>;

    /// A cheap round trip, for health checks.
    async fn ping(&self) -> Result<(), StorageError>;

    /// Runs `job` in one write transaction (SQLite: on the writer, `BEGIN IMMEDIATE`;
    /// PostgreSQL: READ COMMITTED), committed when it returns `Ok`, rolled back
    /// otherwise. The record kinds of [`records`] are written through it, so each is
    /// implemented once for both backends.
    async fn write(&self, job: Job) -> Result<(), StorageError>;

    /// As [`Storage::write`], for a job that reads or rewrites chain links (purge of
    /// audit events and actions): every link appended before it, by jobs sharing its
    /// transaction included, is in the table when it runs.
    async fn write_after_events(&self, job: Job) -> Result<(), StorageError> {
        self.write(job).await
    }

    /// Removes what erased rows leave behind outside the live tables (SQLite: the
    /// write-ahead log's old page images), so that erased bytes are gone from disk.
    async fn erase_residue(&self) -> Result<(), StorageError> {
        Ok(())
    }

    /// Runs `job` on a read connection.
    async fn read(&self, job: Job) -> Result<(), StorageError>;
}
