//! What a request can fail with, as callers decide on it (retry, explain, exit code).

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach {endpoint}: {message}")]
    Unreachable { endpoint: String, message: String },
    #[error("{status} from {endpoint}: {message}")]
    Forbidden {
        status: u16,
        endpoint: String,
        message: String,
        /// The access key the request was signed with, if it was.
        signed_as: Option<String>,
    },
    #[error("invalid request{}: {message}", parameter.as_ref().map(|p| format!(" (parameter '{p}')")).unwrap_or_default())]
    BadRequest {
        parameter: Option<String>,
        message: String,
    },
    #[error("not found: {0}")]
    NotFound(String),
    /// The snapshot or revision asked for was compacted (410).
    #[error("expired: {0}")]
    Expired(String),
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error("server error {status}: {message}")]
    Server { status: u16, message: String },
    #[error("AWS credentials: {0}")]
    Credentials(String),
    #[error("unexpected answer: {0}")]
    Decode(String),
}

impl Error {
    /// Worth retrying as is (the same request may succeed later).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unreachable { .. } | Error::Unavailable(_))
    }
}
