//! The library's error type: every message names the problem and, where there is one, what to do.

use std::io;

/// Everything that can go wrong while building, inspecting or flashing an image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation failed; `context` says on what.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the file.
        context: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The user's input (an option, a file given) cannot be used; the message says why and what to do.
    #[error("{0}")]
    Invalid(String),
    /// An external tool (debugfs, ...) failed or is missing.
    #[error("{tool}: {message}")]
    Tool {
        /// The tool's name.
        tool: String,
        /// What went wrong.
        message: String,
    },
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Adds context to I/O results.
pub trait IoContext<T> {
    /// Wraps an I/O error with a message built by `f`.
    fn ctx<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: f().into(),
            source,
        })
    }
}

/// Shorthand for an [`Error::Invalid`].
pub fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::Invalid(msg.into()))
}
