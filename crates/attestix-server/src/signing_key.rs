//! The server's signing key file, `<data dir>/.signing_key.json`.
//!
//! The format is the Python reference's, so an existing Attestix data directory
//! keeps its identity. An existing file is used as it is; one that cannot be read
//! or parsed is an error, never silently replaced (that would orphan every
//! document signed so far).

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use attestix_core::{SigningKey, SigningKeyFile, SIGNING_KEY_FILE_NAME};

/// Whether the key was loaded or made now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrigin {
    /// Read from an existing file.
    Loaded,
    /// Generated and written on this start.
    Created,
}

/// Loads the signing key from `data_dir`, or creates it (mode 0600) if absent.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<(SigningKey, KeyOrigin)> {
    let path = data_dir.join(SIGNING_KEY_FILE_NAME);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let key = SigningKeyFile::parse_key(&text)
                .with_context(|| format!("the signing key file {} is unusable", path.display()))?;
            Ok((key, KeyOrigin::Loaded))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(data_dir).with_context(|| {
                format!("cannot create the data directory {}", data_dir.display())
            })?;
            let key = SigningKey::generate();
            let mut options = fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(&path).with_context(|| {
                format!("cannot create the signing key file {}", path.display())
            })?;
            file.write_all(key.to_key_file().to_json_pretty().as_bytes())?;
            file.sync_all()?;
            Ok((key, KeyOrigin::Created))
        }
        Err(error) => Err(error)
            .with_context(|| format!("cannot read the signing key file {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_once_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (first, origin) = load_or_create(dir.path()).unwrap();
        assert_eq!(origin, KeyOrigin::Created);
        let (second, origin) = load_or_create(dir.path()).unwrap();
        assert_eq!(origin, KeyOrigin::Loaded);
        assert_eq!(first.did(), second.did());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(SIGNING_KEY_FILE_NAME))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_corrupt_key_file_is_an_error_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(SIGNING_KEY_FILE_NAME), "{not json").unwrap();
        assert!(load_or_create(dir.path()).is_err());
        assert_eq!(
            fs::read_to_string(dir.path().join(SIGNING_KEY_FILE_NAME)).unwrap(),
            "{not json"
        );
    }
}
