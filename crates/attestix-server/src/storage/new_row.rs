//! The rows a create inserts into the resource tables (identities, credentials,
//! delegations, DIDs), with their columns and values written once for both dialects
//! and for the single-row and the multi-row insert alike.

use super::records::{Stmt, Value};
use super::{NewCredential, NewDelegation, NewDid, NewIdentity, RecoveryPoint};
use crate::audit::AuditDraft;

/// The columns of an identity insert, in the order [`NewRow::values`] gives them.
const IDENTITY_COLUMNS: [&str; 9] = [
    "agent_id",
    "owner",
    "source_protocol",
    "created_at_ms",
    "expires_at_ms",
    "document",
    "idempotency_scope",
    "idempotency_key",
    "idempotency_fingerprint",
];

/// The columns of a credential insert, in the order [`NewRow::values`] gives them.
const CREDENTIAL_COLUMNS: [&str; 10] = [
    "credential_id",
    "owner",
    "subject_id",
    "credential_type",
    "created_at_ms",
    "expires_at_ms",
    "document",
    "idempotency_scope",
    "idempotency_key",
    "idempotency_fingerprint",
];

/// The columns of a delegation insert, in the order [`NewRow::values`] gives them.
const DELEGATION_COLUMNS: [&str; 10] = [
    "jti",
    "owner",
    "issuer",
    "audience",
    "created_at_ms",
    "expires_at_ms",
    "document",
    "idempotency_scope",
    "idempotency_key",
    "idempotency_fingerprint",
];

/// The columns of a DID insert, in the order [`NewRow::values`] gives them.
const DID_COLUMNS: [&str; 10] = [
    "did",
    "owner",
    "method",
    "keypair_id",
    "created_at_ms",
    "document",
    "sealed_private_key",
    "idempotency_scope",
    "idempotency_key",
    "idempotency_fingerprint",
];

/// A row to insert into one of the resource tables.
#[derive(Clone, Copy)]
pub(super) enum NewRow<'a> {
    Identity(&'a NewIdentity),
    Credential(&'a NewCredential),
    Delegation(&'a NewDelegation),
    Did(&'a NewDid),
}

impl<'a> NewRow<'a> {
    /// The recovery point the row carries, when its request had an idempotency key.
    pub(super) fn recovery(self) -> Option<&'a RecoveryPoint> {
        match self {
            Self::Identity(identity) => identity.recovery.as_ref(),
            Self::Credential(credential) => credential.recovery.as_ref(),
            Self::Delegation(delegation) => delegation.recovery.as_ref(),
            Self::Did(did) => did.recovery.as_ref(),
        }
    }

    /// The audit event the row's creation appends.
    pub(super) fn audit(self) -> Option<&'a AuditDraft> {
        match self {
            Self::Identity(identity) => identity.audit.as_ref(),
            Self::Credential(credential) => credential.audit.as_ref(),
            Self::Delegation(delegation) => delegation.audit.as_ref(),
            Self::Did(did) => did.audit.as_ref(),
        }
    }

    /// The row's table.
    pub(super) fn table(self) -> &'static str {
        match self {
            Self::Identity(_) => "identities",
            Self::Credential(_) => "credentials",
            Self::Delegation(_) => "delegations",
            Self::Did(_) => "did_keys",
        }
    }

    /// The column of the row's id, which its insert returns.
    fn id_column(self) -> &'static str {
        match self {
            Self::Identity(_) => "agent_id",
            Self::Credential(_) => "credential_id",
            Self::Delegation(_) => "jti",
            Self::Did(_) => "keypair_id",
        }
    }

    /// The row's id (`agent_id`, `credential_id`, `jti` or `keypair_id`; a DID's
    /// keypair id is fresh per execution, so it names the row that went in).
    pub(super) fn id(self) -> &'a str {
        match self {
            Self::Identity(identity) => &identity.agent_id,
            Self::Credential(credential) => &credential.credential_id,
            Self::Delegation(delegation) => &delegation.jti,
            Self::Did(did) => &did.keypair_id,
        }
    }

    fn columns(self) -> &'static [&'static str] {
        match self {
            Self::Identity(_) => &IDENTITY_COLUMNS,
            Self::Credential(_) => &CREDENTIAL_COLUMNS,
            Self::Delegation(_) => &DELEGATION_COLUMNS,
            Self::Did(_) => &DID_COLUMNS,
        }
    }

    /// The row's values, in the order of its table's columns: its own, then its
    /// recovery point's (scope, key, fingerprint).
    fn values(self) -> Vec<Value> {
        let mut values: Vec<Value> = match self {
            Self::Identity(identity) => vec![
                identity.agent_id.as_str().into(),
                identity.owner.as_str().into(),
                identity.source_protocol.as_str().into(),
                identity.created_at_ms.into(),
                identity.expires_at_ms.into(),
                identity.document.as_str().into(),
            ],
            Self::Credential(credential) => vec![
                credential.credential_id.as_str().into(),
                credential.owner.as_str().into(),
                credential.subject_id.as_str().into(),
                credential.credential_type.as_str().into(),
                credential.issued_at_ms.into(),
                credential.expires_at_ms.into(),
                credential.document.as_str().into(),
            ],
            Self::Delegation(delegation) => vec![
                delegation.jti.as_str().into(),
                delegation.owner.as_str().into(),
                delegation.issuer.as_str().into(),
                delegation.audience.as_str().into(),
                delegation.created_at_ms.into(),
                delegation.expires_at_ms.into(),
                delegation.document.as_str().into(),
            ],
            Self::Did(did) => vec![
                did.did.as_str().into(),
                did.owner.as_str().into(),
                did.method.as_str().into(),
                did.keypair_id.as_str().into(),
                did.created_at_ms.into(),
                did.document.as_str().into(),
                did.sealed_private_key.as_slice().into(),
            ],
        };
        let recovery = self.recovery();
        values.extend([
            recovery.map(|point| point.scope.as_str()).into(),
            recovery.map(|point| point.key.as_str()).into(),
            recovery.map(|point| point.fingerprint.as_slice()).into(),
        ]);
        values
    }
}

/// The insert of `rows` (at least one, all of one table) that returns the ids of the
/// rows it inserted. A row that meets a uniqueness constraint named by `conflict`
/// (`ON CONFLICT` followed by it: `""` for any, or a column list and a space) stays
/// out, and its caller reads the row in its way to tell a recovery from a collision.
pub(super) fn insert(rows: &[NewRow<'_>], conflict: &str) -> Stmt {
    let first = rows[0];
    let mut stmt = Stmt::new(format!(
        "INSERT INTO {} ({}) VALUES (",
        first.table(),
        first.columns().join(", ")
    ));
    for (index, row) in rows.iter().enumerate() {
        if index > 0 {
            stmt = stmt.sql("), (");
        }
        stmt = stmt.bind_list(row.values());
    }
    stmt.sql(format!(
        ") ON CONFLICT {conflict}DO NOTHING RETURNING {}",
        first.id_column()
    ))
}
