//! The server's data key, `<data dir>/.data_key.json`: it encrypts the private keys
//! of the DIDs the server creates (XChaCha20-Poly1305), so that they are never
//! written in clear (**fix**: the reference writes them in plaintext to
//! `.keypairs.json`).
//!
//! It is kept like the signing key: created once (mode 0600), then used as it is; a
//! file that cannot be read is an error, never replaced (that would make every
//! stored private key unreadable). Instances sharing a database must share it too.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

/// The file's name in the data directory.
pub const DATA_KEY_FILE_NAME: &str = ".data_key.json";

/// The first byte of every sealed value: the format's version.
const SEALED_VERSION: u8 = 1;
const NONCE_BYTES: usize = 24;

/// The key that seals stored secrets.
#[derive(Clone)]
pub struct DataKey {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

#[derive(Serialize, Deserialize)]
struct DataKeyFile {
    algorithm: String,
    note: String,
    key_b64: String,
}

const ALGORITHM: &str = "XChaCha20-Poly1305";

impl DataKey {
    /// The key with these 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(&bytes.into()),
        }
    }

    /// Encrypts `secret`, bound to `context` (for example the DID the secret belongs
    /// to): version ‖ random 24-byte nonce ‖ ciphertext and tag.
    pub fn seal(&self, secret: &[u8], context: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: secret,
                    aad: context,
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any message of this size");
        let mut sealed = Vec::with_capacity(1 + NONCE_BYTES + ciphertext.len());
        sealed.push(SEALED_VERSION);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    /// Decrypts what [`DataKey::seal`] made with the same `context`; `None` when it
    /// was sealed by another key, for another context, or altered.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Option<Vec<u8>> {
        let (&version, rest) = sealed.split_first()?;
        if version != SEALED_VERSION || rest.len() < NONCE_BYTES {
            return None;
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_BYTES);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context,
                },
            )
            .ok()
    }
}

/// Loads the data key from `data_dir`, or creates it (mode 0600) if absent.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<DataKey> {
    let path = data_dir.join(DATA_KEY_FILE_NAME);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let file: DataKeyFile = serde_json::from_str(&text)
                .with_context(|| format!("the data key file {} is not valid", path.display()))?;
            anyhow::ensure!(
                file.algorithm == ALGORITHM,
                "the data key file {} is for {}, not {ALGORITHM}",
                path.display(),
                file.algorithm
            );
            let bytes: [u8; 32] = STANDARD
                .decode(file.key_b64.as_bytes())
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .with_context(|| {
                    format!(
                        "the data key file {} does not hold 32 bytes",
                        path.display()
                    )
                })?;
            Ok(DataKey::from_bytes(bytes))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(data_dir).with_context(|| {
                format!("cannot create the data directory {}", data_dir.display())
            })?;
            let mut bytes = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            let file = DataKeyFile {
                algorithm: ALGORITHM.to_owned(),
                note: "Encrypts the private keys of the DIDs this server creates. Keep it \
                       with .signing_key.json: without it they cannot be read."
                    .to_owned(),
                key_b64: STANDARD.encode(bytes),
            };
            let mut options = fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut handle = options
                .open(&path)
                .with_context(|| format!("cannot create the data key file {}", path.display()))?;
            handle.write_all(serde_json::to_string_pretty(&file)?.as_bytes())?;
            handle.sync_all()?;
            Ok(DataKey::from_bytes(bytes))
        }
        Err(error) => {
            Err(error).with_context(|| format!("cannot read the data key file {}", path.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_the_same_key_and_context() {
        let key = DataKey::from_bytes([1; 32]);
        let sealed = key.seal(b"seed", b"did:key:z1");
        assert!(!sealed.windows(4).any(|w| w == b"seed"));
        assert_eq!(
            key.open(&sealed, b"did:key:z1").as_deref(),
            Some(&b"seed"[..])
        );
        assert_eq!(key.open(&sealed, b"did:key:z2"), None);
        assert_eq!(
            DataKey::from_bytes([2; 32]).open(&sealed, b"did:key:z1"),
            None
        );
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(key.open(&altered, b"did:key:z1"), None);
        assert_ne!(
            key.seal(b"seed", b"c"),
            key.seal(b"seed", b"c"),
            "random nonces"
        );
    }

    #[test]
    fn the_key_file_is_made_once_private_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).unwrap();
        let sealed = first.seal(b"x", b"c");
        let second = load_or_create(dir.path()).unwrap();
        assert_eq!(second.open(&sealed, b"c").as_deref(), Some(&b"x"[..]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(DATA_KEY_FILE_NAME))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        fs::write(dir.path().join(DATA_KEY_FILE_NAME), "{broken").unwrap();
        assert!(load_or_create(dir.path()).is_err());
    }
}
