//! The API token kept in the data dir: when no token is configured, `serve` reuses
//! `<data-dir>/api-token` or generates one there (file mode 0600, directory 0700 on Unix).
//!
//! This module reads and writes that one file; it does not print the token (the caller
//! prints a generated token once, to stdout) and never logs it.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::token::ApiToken;

/// The token file's name inside the data dir.
pub const FILE_NAME: &str = "api-token";

/// Where the API token came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// The configuration (flag, environment or config file).
    Configured,
    /// The data dir's token file, from an earlier start.
    Kept,
    /// Generated now and written to the data dir.
    Generated,
}

/// Why the token file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenFileError {
    /// The data dir or the file could not be created, read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The file exists but holds no usable token.
    #[error("{path} holds no token; delete it to generate a new one")]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// The API token to use: `configured` if given, else the one kept in `data_dir`, else a new
/// one written there.
pub fn resolve(
    configured: Option<ApiToken>,
    data_dir: &Path,
) -> Result<(ApiToken, TokenSource), TokenFileError> {
    if let Some(token) = configured {
        return Ok((token, TokenSource::Configured));
    }
    let path = data_dir.join(FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let token = text.trim();
            if token.is_empty() {
                return Err(TokenFileError::Empty { path });
            }
            return Ok((ApiToken::new(token), TokenSource::Kept));
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(TokenFileError::Io { action: "cannot read", path, source }),
    }
    create_private_dir(data_dir)?;
    let token = ApiToken::generate();
    write_private(&path, token.expose())?;
    Ok((token, TokenSource::Generated))
}

/// Creates `dir` (and its parents) if absent; a directory this creates is private (0700).
pub fn create_private_dir(dir: &Path) -> Result<(), TokenFileError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| TokenFileError::Io {
        action: "cannot create the data dir",
        path: dir.to_path_buf(),
        source,
    })
}

fn write_private(path: &Path, token: &str) -> Result<(), TokenFileError> {
    let io =
        |source| TokenFileError::Io { action: "cannot write", path: path.to_path_buf(), source };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    file.write_all(token.as_bytes()).map_err(io)?;
    file.write_all(b"\n").map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_is_kept_private_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("data");
        let (first, source) = resolve(None, &data_dir).expect("generated");
        assert_eq!(source, TokenSource::Generated);
        let (again, source) = resolve(None, &data_dir).expect("kept");
        assert_eq!(source, TokenSource::Kept);
        assert_eq!(again.expose(), first.expose());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777).ok();
            assert_eq!(mode(&data_dir.join(FILE_NAME)), Some(0o600));
            assert_eq!(mode(&data_dir), Some(0o700));
        }
    }

    #[test]
    fn a_configured_token_wins_and_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (token, source) = resolve(Some(ApiToken::new("given")), dir.path()).expect("ok");
        assert_eq!((token.expose(), source), ("given", TokenSource::Configured));
        assert!(!dir.path().join(FILE_NAME).exists());
    }

    #[test]
    fn an_empty_token_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(FILE_NAME), "\n").expect("write");
        assert!(matches!(resolve(None, dir.path()), Err(TokenFileError::Empty { .. })));
    }
}
