//! Why a document could not be issued.

use crate::canonical::CanonicalError;

/// Why a UAIT, credential or presentation could not be built and signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssueError {
    /// `now` plus the validity lies beyond the year 9999, which the documents' time
    /// format (Python's `datetime`) cannot write.
    #[error("the expiry date lies beyond the year 9999")]
    ExpiryOutOfRange,
    /// Part of the document has no canonical bytes, so it cannot be signed (an embedded
    /// credential with keys equal after Unicode normalisation, for example).
    #[error("the document cannot be signed: {0}")]
    NotCanonical(#[from] CanonicalError),
    /// A credential whose type is `VerifiablePresentation`: with its unsigned status
    /// removed it would carry a valid signature over a presentation-typed document.
    #[error("a credential's type must not be VerifiablePresentation")]
    PresentationTypedCredential,
}
