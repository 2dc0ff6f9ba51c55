//! What the dataset readers share: their error, and downloading a file into a cache.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A data file that could not be used: which file, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataError {
    /// The file (or directory) concerned.
    pub path: PathBuf,
    /// What is wrong, in words.
    pub problem: String,
}

impl DataError {
    /// An error about `path`.
    pub fn new(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.problem)
    }
}

impl std::error::Error for DataError {}

/// Reads a whole file, with an error that names it.
pub fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|error| DataError::new(path, format!("cannot read: {error}")))
}

/// The directory where downloaded datasets are kept: `$XDG_CACHE_HOME/burn-novograd/NAME`,
/// else `~/.cache/burn-novograd/NAME`, else the system's temporary directory.
pub fn cache_dir(name: &str) -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("burn-novograd").join(name)
}

/// Downloads `url` to `path` unless a file with the expected SHA-256 is already there.
/// `offline_hint` tells the user how to run without a network when the download fails.
pub fn download(url: &str, path: &Path, sha256: &str, offline_hint: &str) -> Result<(), DataError> {
    if path.is_file() && sha256_hex(&read_file(path)?) == sha256 {
        return Ok(());
    }
    let fail = |problem: String| DataError::new(path, format!("{problem}. {offline_hint}"));
    eprintln!("downloading {url}");
    let mut bytes = Vec::new();
    ureq::get(url)
        .call()
        .map_err(|error| fail(format!("could not download {url}: {error}")))?
        .into_body()
        .into_reader()
        .read_to_end(&mut bytes)
        .map_err(|error| fail(format!("download of {url} broke off: {error}")))?;
    let digest = sha256_hex(&bytes);
    if digest != sha256 {
        return Err(fail(format!(
            "{url} has SHA-256 {digest}, expected {sha256}"
        )));
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|error| DataError::new(parent, format!("cannot create: {error}")))?;
    }
    std::fs::write(path, bytes)
        .map_err(|error| DataError::new(path, format!("cannot write: {error}")))
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
