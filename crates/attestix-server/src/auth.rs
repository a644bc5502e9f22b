//! API-key authentication and the caller's identity.
//!
//! Keys are random 256-bit values, stored only as their SHA-256 digest: a lookup
//! by digest needs no slow password hash (the keys have full entropy, so a hash
//! that resists guessing protects nothing more) and the key itself never sits in
//! the database. The legacy `ATTESTIX_API_KEY` is compared in constant time.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;
use crate::storage::{ApiKeyRecord, Storage, StorageError};

/// The header naming the tenant inside a principal's account.
pub const TENANT_HEADER: &str = "x-attestix-tenant";

/// The tenant used when the request names none.
pub const DEFAULT_TENANT: &str = "default";

/// The principal of `ATTESTIX_API_KEY`.
pub const LEGACY_PRINCIPAL: &str = "default";

/// The principal of every caller when authentication is off.
pub const ANONYMOUS_PRINCIPAL: &str = "anonymous";

/// Who is calling: set by the authentication middleware on every request that
/// reaches a protected route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The authenticated principal.
    pub principal: String,
    /// The tenant within the principal's account.
    pub tenant: String,
}

impl Caller {
    /// The idempotency scope and resource owner: principal and tenant. Neither
    /// may contain `/` (principal names are checked on creation, tenants on
    /// every request), so the pair is unambiguous.
    pub fn scope(&self) -> String {
        format!("{}/{}", self.principal, self.tenant)
    }
}

/// The scope hook of the idempotency layer: the caller set by authentication.
pub fn idempotency_scope(parts: &Parts) -> Option<String> {
    parts.extensions.get::<Caller>().map(Caller::scope)
}

/// A newly created API key: the secret is shown once and never stored.
#[derive(Debug)]
pub struct IssuedApiKey {
    /// The key to give to the client.
    pub secret: String,
    /// What is stored.
    pub record: ApiKeyRecord,
}

/// Creates and stores a key for `principal`.
pub async fn issue_api_key(
    storage: &dyn Storage,
    principal: &str,
    now_ms: i64,
) -> Result<IssuedApiKey, ApiKeyError> {
    validate_principal(principal)?;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret = format!(
        "atx_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let mut id_bytes = [0u8; 6];
    rand::rngs::OsRng.fill_bytes(&mut id_bytes);
    let record = ApiKeyRecord {
        id: format!("key_{}", hex::encode(id_bytes)),
        principal: principal.to_owned(),
        digest: digest(&secret),
        created_at_ms: now_ms,
        revoked_at_ms: None,
    };
    storage.insert_api_key(&record).await?;
    Ok(IssuedApiKey { secret, record })
}

/// Why an API key could not be created.
#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    /// The principal name breaks the naming rule.
    #[error(
        "principal names are 1 to 64 characters of a-z, 0-9, '-', '_' and '.'; `{0}` is not one"
    )]
    InvalidPrincipal(String),
    /// The principal name is one the server gives callers itself; a key for it
    /// would share that principal's identities and idempotency records.
    #[error(
        "the principal `{0}` is reserved: `default` is the principal of ATTESTIX_API_KEY and `anonymous` that of every caller when authentication is off; choose another name"
    )]
    ReservedPrincipal(String),
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Principals the server assigns itself, which no stored key may name.
const RESERVED_PRINCIPALS: [&str; 2] = [LEGACY_PRINCIPAL, ANONYMOUS_PRINCIPAL];

fn validate_principal(principal: &str) -> Result<(), ApiKeyError> {
    if RESERVED_PRINCIPALS.contains(&principal) {
        return Err(ApiKeyError::ReservedPrincipal(principal.to_owned()));
    }
    let valid = (1..=64).contains(&principal.len())
        && principal
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(ApiKeyError::InvalidPrincipal(principal.to_owned()))
    }
}

/// SHA-256 of an API key, its stored form.
pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Settings of the authentication middleware.
#[derive(Clone)]
pub struct AuthSettings {
    /// SHA-256 of `ATTESTIX_API_KEY`, if set.
    pub legacy_key_digest: Option<[u8; 32]>,
    /// Everyone is `anonymous` when true.
    pub allow_no_auth: bool,
    /// `/metrics` is open when true.
    pub public_metrics: bool,
}

fn is_open_path(path: &str, settings: &AuthSettings) -> bool {
    matches!(path, "/health" | "/openapi.json")
        || path == "/docs"
        || path.starts_with("/docs/")
        || (settings.public_metrics && path == "/metrics")
}

fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get("x-api-key") {
        return value.to_str().ok();
    }
    let authorization = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = authorization.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn tenant(headers: &HeaderMap) -> Result<String, ApiError> {
    let Some(value) = headers.get(TENANT_HEADER) else {
        return Ok(DEFAULT_TENANT.to_owned());
    };
    let valid = value.len() <= 64
        && !value.is_empty()
        && value
            .as_bytes()
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b));
    match value.to_str() {
        Ok(text) if valid => Ok(text.to_owned()),
        _ => Err(ApiError::BadRequest(format!(
            "the {TENANT_HEADER} header must be 1 to 64 characters of A-Z, a-z, 0-9, '-', '_' and '.'"
        ))),
    }
}

/// Axum middleware: authenticates the request and sets [`Caller`], or answers
/// 401 (no key) / 403 (wrong key). Runs before the idempotency layer, so nothing
/// unauthenticated reaches the idempotency store.
pub async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let settings = &state.auth;
    if is_open_path(request.uri().path(), settings) {
        return next.run(request).await;
    }
    let caller = match identify(&state, request.headers()).await {
        Ok(caller) => caller,
        Err(error) => return error.into_response(),
    };
    request.extensions_mut().insert(caller);
    next.run(request).await
}

async fn identify(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let settings = &state.auth;
    let tenant = tenant(headers)?;
    let Some(key) = presented_key(headers) else {
        if settings.allow_no_auth {
            return Ok(Caller {
                principal: ANONYMOUS_PRINCIPAL.to_owned(),
                tenant,
            });
        }
        return Err(ApiError::Unauthorized(
            "send an API key in the X-API-Key header or as Authorization: Bearer <key>".into(),
        ));
    };
    let presented = digest(key);
    if let Some(legacy) = &settings.legacy_key_digest {
        if bool::from(legacy.ct_eq(&presented)) {
            return Ok(Caller {
                principal: LEGACY_PRINCIPAL.to_owned(),
                tenant,
            });
        }
    }
    match state.storage.find_api_key(&presented).await? {
        Some(record) => Ok(Caller {
            principal: record.principal,
            tenant,
        }),
        None => Err(ApiError::Forbidden(
            "the API key is not valid (unknown or revoked)".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_x_api_key_are_both_read() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer abc".parse().unwrap());
        assert_eq!(presented_key(&headers), Some("abc"));
        headers.insert("x-api-key", "xyz".parse().unwrap());
        assert_eq!(presented_key(&headers), Some("xyz"));
        let mut basic = HeaderMap::new();
        basic.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(presented_key(&basic), None);
    }

    #[test]
    fn tenants_are_checked() {
        let mut headers = HeaderMap::new();
        assert_eq!(tenant(&headers).unwrap(), "default");
        headers.insert(TENANT_HEADER, "acme-eu".parse().unwrap());
        assert_eq!(tenant(&headers).unwrap(), "acme-eu");
        headers.insert(TENANT_HEADER, "a/b".parse().unwrap());
        assert!(tenant(&headers).is_err());
    }

    #[test]
    fn principal_names_exclude_the_scope_separator() {
        assert!(validate_principal("ci-bot_2").is_ok());
        assert!(validate_principal("a/b").is_err());
        assert!(validate_principal("").is_err());
        assert!(validate_principal("Upper").is_err());
    }

    #[test]
    fn the_built_in_principals_are_reserved() {
        for reserved in [LEGACY_PRINCIPAL, ANONYMOUS_PRINCIPAL] {
            assert!(matches!(
                validate_principal(reserved),
                Err(ApiKeyError::ReservedPrincipal(name)) if name == reserved
            ));
        }
        assert!(validate_principal("default-2").is_ok());
    }
}
