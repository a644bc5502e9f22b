//! `/v1/dids`: `did:key` and `did:web` creation, and resolution.
//!
//! A created DID's private key never leaves the server and is never written in
//! clear: it is sealed under the data key ([`crate::data_key`]) with the DID as
//! context, and stored beside the DID. Responses (and so idempotency records) carry
//! only public material.

use std::sync::Arc;

use attestix_core::did::{did_document, ed25519_multibase, DidWeb};
use attestix_core::{DidKey, SigningKey};
use axum::extract::State;
use axum::Extension;
use idempotency::IdempotencyContext;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::{
    audit_draft_by, created, new_resource_id, no_errors, refuse_nul, unix_ms, ApiJson, JsonText,
};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::recovery::ResourceKind;
use crate::state::AppState;
use crate::storage::{NewDid, RecoveryPoint, StorageError};

/// The longest DID `resolve` accepts, in bytes.
pub const MAX_DID_BYTES: usize = 2048;

/// What the answers say about the private key.
const KEY_NOTE: &str =
    "The private key is stored encrypted on the server and never returned. Use keypair_id to reference it.";

/// The body of `POST /v1/dids/web`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateDidWebRequest {
    /// The host that will serve the document: lowercase, at least two labels, a
    /// port as `%3A8443` or `:8443`; at most 253 characters.
    #[schema(min_length = 1, max_length = 253, example = "example.com")]
    pub domain: String,
    /// An optional path (`agents/bot`): lowercase segments of a-z, 0-9, `.`, `_`,
    /// `-`, none starting with `.`; at most 256 characters.
    #[serde(default)]
    #[schema(max_length = 256, example = "agents/bot")]
    pub path: String,
}

/// The answer of `POST /v1/dids/key`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DidKeyCreated {
    /// `did:key:z6Mk…`.
    pub did: String,
    /// Its DID document.
    #[schema(value_type = Object)]
    pub did_document: serde_json::Value,
    /// How the stored private key is referred to.
    pub keypair_id: String,
    /// The public key's multibase (`z6Mk…`, with the Ed25519 multicodec prefix).
    pub public_key_multibase: String,
    /// Where the private key is.
    pub note: String,
}

/// The answer of `POST /v1/dids/web`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DidWebCreated {
    /// `did:web:…`.
    pub did: String,
    /// The DID document to host.
    #[schema(value_type = Object)]
    pub did_document: serde_json::Value,
    /// Where to host it.
    pub hosting_url: String,
    /// How the stored private key is referred to.
    pub keypair_id: String,
    /// The public key's multibase.
    pub public_key_multibase: String,
    /// Where the private key is.
    pub note: String,
    /// What to do with the document.
    pub instructions: String,
}

/// A new DID's key, public answer and sealed private key.
struct Minted {
    keypair_id: String,
    multibase: String,
    sealed: Vec<u8>,
}

fn mint(state: &AppState, did_for: impl Fn(&SigningKey) -> String) -> (SigningKey, String, Minted) {
    let key = SigningKey::generate();
    let did = did_for(&key);
    let multibase = ed25519_multibase(&key.verifying_key());
    let minted = Minted {
        keypair_id: format!("keypair:{}", &multibase[..16]),
        sealed: state.data_key.seal(&key.seed(), did.as_bytes()),
        multibase,
    };
    (key, did, minted)
}

/// Stores a new DID, made again by `make` while its DID or keypair id is taken
/// (`make` is called at most three times), and answers 201 with its document.
async fn store(
    state: &AppState,
    caller: &Caller,
    method: &str,
    domain: Option<&str>,
    recovery: Option<RecoveryPoint>,
    make: impl Fn() -> Result<(String, Minted, String), ApiError>,
    taken: impl Fn(&str) -> ApiError,
) -> Result<JsonText, ApiError> {
    let now = OffsetDateTime::now_utc();
    let mut last_did = String::new();
    for _ in 0..3 {
        let (did, minted, document) = make()?;
        // The reference's `did.create_did_key` / `did.create_did_web` payloads.
        let mut after = serde_json::json!({"did": did, "keypair_id": minted.keypair_id});
        if let Some(domain) = domain {
            after["domain"] = domain.into();
        }
        let action = format!("did.create_did_{method}");
        let target = (did.as_str(), "did");
        let audit = audit_draft_by(
            caller,
            crate::audit::actor::DID,
            &action,
            target,
            after,
            now,
        )?;
        let row = NewDid {
            did: did.clone(),
            owner: caller.scope(),
            method: method.to_owned(),
            keypair_id: minted.keypair_id,
            created_at_ms: unix_ms(now),
            document: document.clone(),
            sealed_private_key: minted.sealed,
            recovery: recovery.clone(),
            audit: Some(audit),
        };
        match state.storage.insert_did(&row).await {
            Ok(inserted) => return created(state, inserted, document, "did.after_commit"),
            // A keypair id taken by chance (a new key gets a new one), or this
            // caller's did:web made before (the same again).
            Err(StorageError::Duplicate) => last_did = did,
            Err(error) => return Err(error.into()),
        }
    }
    Err(taken(&last_did))
}

/// Create a `did:key` with a new Ed25519 key pair (the private key stays on the
/// server, encrypted).
#[utoipa::path(
    post,
    path = "/v1/dids/key",
    tag = "dids",
    responses(
        (status = 201, description = "The new DID and its document", body = DidKeyCreated, content_type = "application/json"),
    )
)]
pub async fn create_did_key(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    context: Option<Extension<IdempotencyContext>>,
) -> Result<JsonText, ApiError> {
    let now = OffsetDateTime::now_utc();
    let (_, recovery) = new_resource_id(&state, ResourceKind::Did, context.as_deref(), now);
    let make = || {
        let (key, did, minted) = mint(&state, |key| key.did().to_owned());
        let answer = DidKeyCreated {
            did_document: did_document(&did, &key.verifying_key()),
            did: did.clone(),
            keypair_id: minted.keypair_id.clone(),
            public_key_multibase: minted.multibase.clone(),
            note: KEY_NOTE.to_owned(),
        };
        let document = serde_json::to_string(&answer).map_err(ApiError::internal)?;
        Ok((did, minted, document))
    };
    store(&state, &caller, "key", None, recovery, make, |did| {
        ApiError::internal(format!("new did:key {did} collided three times"))
    })
    .await
}

/// Create a `did:web` document to host, with a new Ed25519 key pair (the private
/// key stays on the server, encrypted).
#[utoipa::path(
    post,
    path = "/v1/dids/web",
    tag = "dids",
    request_body = CreateDidWebRequest,
    responses(
        (status = 201, description = "The new DID, its document and where to host it", body = DidWebCreated, content_type = "application/json"),
        (status = 409, description = "The caller already created this did:web", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "The domain or path is not what did:web allows", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_did_web(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    context: Option<Extension<IdempotencyContext>>,
    ApiJson(body): ApiJson<CreateDidWebRequest>,
) -> Result<JsonText, ApiError> {
    let mut errors = Vec::new();
    refuse_nul(&mut errors, "domain", &body.domain);
    refuse_nul(&mut errors, "path", &body.path);
    no_errors(errors)?;
    let web = DidWeb::parse(&body.domain, &body.path)
        .map_err(|error| ApiError::invalid(error.field, error.message))?;
    let now = OffsetDateTime::now_utc();
    let (_, recovery) = new_resource_id(&state, ResourceKind::Did, context.as_deref(), now);
    let make = || {
        let (key, did, minted) = mint(&state, |_| web.did());
        let hosting_url = web.hosting_url();
        let answer = DidWebCreated {
            did_document: did_document(&did, &key.verifying_key()),
            did: did.clone(),
            instructions: format!(
                "Host the did_document JSON at {hosting_url} to make this DID resolvable."
            ),
            hosting_url,
            keypair_id: minted.keypair_id.clone(),
            public_key_multibase: minted.multibase.clone(),
            note: KEY_NOTE.to_owned(),
        };
        let document = serde_json::to_string(&answer).map_err(ApiError::internal)?;
        Ok((did, minted, document))
    };
    store(
        &state,
        &caller,
        "web",
        Some(&body.domain),
        recovery,
        make,
        |did| ApiError::Conflict(format!("{did} was already created in your scope")),
    )
    .await
}

/// The DID in a request path: percent-decoded, except that `%3A` stays as it is
/// (did:web writes a port that way, and a client that sends it bare must not have it
/// turned into a `:`; `%253A` means the same).
fn decode_did(raw: &str) -> Result<String, ApiError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = raw
                .get(index + 1..index + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| ApiError::invalid("did", "a malformed percent-escape"))?;
            if hex == b':' {
                out.extend_from_slice(b"%3A");
            } else {
                out.push(hex);
            }
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ApiError::invalid("did", "not UTF-8"))
}

/// Resolve a DID to its DID document: `did:key` locally, `did:web` through the
/// outbound HTTPS fetcher, other methods through the operator's universal resolver
/// (`--universal-resolver-url`; 503 without one). The document's `id` must be the DID.
#[utoipa::path(
    get,
    path = "/v1/dids/resolve/{did}",
    tag = "dids",
    params(("did" = String, Path, description = "The DID, e.g. did:key:z6Mk…")),
    responses(
        (status = 200, description = "The DID document", body = Object, content_type = "application/json"),
        (status = 422, description = "Not a DID, a malformed did:key or did:web, or a did:web whose host is blocked", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 502, description = "The did:web host or the universal resolver failed, or served a document of another DID", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The DID's method needs a resolver that is not configured", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 504, description = "The did:web host or the universal resolver did not answer in time", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn resolve_did(
    State(state): State<Arc<AppState>>,
    uri: axum::http::Uri,
) -> Result<JsonText, ApiError> {
    let raw = uri
        .path()
        .split_once("/resolve/")
        .map(|(_, did)| did)
        .unwrap_or_default();
    let did = decode_did(raw)?;
    if did.len() > MAX_DID_BYTES {
        return Err(ApiError::invalid(
            "did",
            format!("must be at most {MAX_DID_BYTES} bytes"),
        ));
    }
    if did.starts_with("did:key:") {
        let key =
            DidKey::parse(&did).map_err(|error| ApiError::invalid("did", error.to_string()))?;
        return JsonText::ok(&did_document(&did, &key.verifying_key()));
    }
    if let Some(rest) = did.strip_prefix("did:web:") {
        let mut parts = rest.split(':');
        let domain = parts.next().unwrap_or_default();
        let path: Vec<&str> = parts.collect();
        let web = DidWeb::parse(&domain.replace("%3a", "%3A"), &path.join("/"))
            .map_err(|error| ApiError::invalid("did", error.to_string()))?;
        let document = fetch_document(&state, &did, &web.hosting_url()).await?;
        return JsonText::ok(&document);
    }
    // The reference's syntax rule for what it sends a universal resolver.
    let method_ok = did
        .strip_prefix("did:")
        .and_then(|rest| rest.split_once(':'))
        .is_some_and(|(method, id)| {
            !method.is_empty()
                && method
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && !id.is_empty()
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".:%-_".contains(&b))
        });
    if !method_ok {
        return Err(ApiError::invalid(
            "did",
            "not a DID (did:<method>:<method-specific id>)",
        ));
    }
    let Some(resolver) = &state.universal_resolver else {
        return Err(ApiError::NotConfigured(
            "no universal resolver is configured for this DID method (--universal-resolver-url)"
                .into(),
        ));
    };
    // Every character the syntax rule lets through is valid in a URL path.
    let answer = fetch_document(&state, &did, &format!("{resolver}{did}")).await?;
    // A universal resolver wraps the document in a resolution result.
    let document = match answer {
        serde_json::Value::Object(mut result) if result.contains_key("didDocument") => {
            result.remove("didDocument").unwrap_or_default()
        }
        other => other,
    };
    check_document_id(&did, &document, resolver.as_str())?;
    JsonText::ok(&document)
}

/// GETs the DID document of `did` from `url` through the outbound fetcher; a
/// did:web document must name its own DID.
async fn fetch_document(
    state: &AppState,
    did: &str,
    url: &str,
) -> Result<serde_json::Value, ApiError> {
    let document = state
        .fetcher
        .get_json(
            url,
            crate::fetch::DID_DOCUMENT_MAX_BYTES,
            crate::fetch::DID_DOCUMENT_TIMEOUT,
        )
        .await
        .map_err(|error| {
            if error.is_refusal() {
                ApiError::invalid("did", error.to_string())
            } else if error.is_timeout() {
                ApiError::GatewayTimeout(format!("resolving {did}: {error}"))
            } else {
                ApiError::BadGateway(format!("resolving {did}: {error}"))
            }
        })?;
    if did.starts_with("did:web:") {
        check_document_id(did, &document, url)?;
    }
    Ok(document)
}

/// **Fix**: the reference returns whatever the host serves; a document of
/// another DID is an upstream failure.
fn check_document_id(
    did: &str,
    document: &serde_json::Value,
    source: &str,
) -> Result<(), ApiError> {
    if document.get("id").and_then(|id| id.as_str()) == Some(did) {
        return Ok(());
    }
    Err(ApiError::BadGateway(format!(
        "the document at {source} is not the document of {did} (its id is {})",
        document.get("id").unwrap_or(&serde_json::Value::Null)
    )))
}
