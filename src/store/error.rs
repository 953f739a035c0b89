//! The store's error type: what a caller did wrong (not found, conflict, invalid field) versus
//! what the disk did (storage, corrupt data).

use crate::log::LogError;

/// Result of a store operation.
pub(crate) type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The conversation or message does not exist, or the caller is not a participant of the
    /// conversation (existence is not leaked: both answer the same).
    #[error("{0} not found")]
    NotFound(String),
    /// The caller is a participant but its role does not allow the change (only owners
    /// rename, delete, add, remove others and change roles).
    #[error("{0}")]
    Forbidden(String),
    /// The resource exists already (for example a conversation id that is taken).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The change would take a resource past a configured limit (a full conversation).
    #[error("{0}")]
    LimitReached(String),
    /// An input field is out of its allowed shape or range; the message names the field.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// The field's name as the public API spells it (camelCase).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Stored data could not be decoded.
    #[error("corrupt data in {location}: {reason}")]
    Corrupt {
        /// The tree or key involved.
        location: String,
        /// What was wrong.
        reason: String,
    },
    /// The storage engine failed (disk full, I/O error, internal error).
    #[error("storage error: {0}")]
    Storage(String),
    /// A log error: the store's position refused to move back (`CommitRegression`), or a log
    /// call made on the store's behalf failed.
    #[error(transparent)]
    Log(#[from] LogError),
}

impl StoreError {
    /// True for failures of the disk or storage engine (answered "try again later", HTTP 503)
    /// as opposed to bad input.
    pub fn is_storage_failure(&self) -> bool {
        match self {
            StoreError::Storage(_) => true,
            StoreError::Log(e) => e.is_storage_failure(),
            _ => false,
        }
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        StoreError::InvalidField {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn corrupt(location: impl Into<String>, reason: impl ToString) -> Self {
        StoreError::Corrupt {
            location: location.into(),
            reason: reason.to_string(),
        }
    }
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Storage(e.to_string())
    }
}
