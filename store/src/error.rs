//! Storage errors, and the one table that turns constraint violations of either
//! engine into them.

use serde::Serialize;

/// A problem with one input field, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Absent, or outside the caller's scope: the two are indistinguishable on purpose.
    #[error("not found")]
    NotFound,
    /// Visible to the caller but not theirs to change.
    #[error("not permitted: {0}")]
    Forbidden(&'static str),
    #[error("invalid input: {}", summary(.0))]
    Invalid(Vec<FieldError>),
    /// A uniqueness rule: the message says which.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Removal refused because other rows still refer to the object.
    #[error("still in use: {0}")]
    InUse(String),
    /// The caller's copy is older than the stored one (If-Match failed).
    #[error("the object was changed by someone else")]
    VersionMismatch,
    #[error("a stored secret could not be decrypted (wrong secret key?)")]
    Crypto,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

fn summary(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl StoreError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        StoreError::Invalid(vec![FieldError::new(field, message)])
    }

    /// True when the database itself could not be reached or failed, as opposed
    /// to a rule of the model refusing the operation.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Database(_) | StoreError::Migrate(_))
    }

    /// True when the database refused the data itself (a constraint or a
    /// value it cannot hold), so that retrying the same write cannot help.
    pub fn is_refused_data(&self) -> bool {
        let StoreError::Database(sqlx::Error::Database(db)) = self else {
            return false;
        };
        let Some(code) = db.code() else {
            return false;
        };
        if code.len() == 5 {
            // PostgreSQL's SQLSTATE: classes 22 (data exception) and 23
            // (integrity constraint).
            code.starts_with("22") || code.starts_with("23")
        } else {
            // SQLite's (extended) result code: primary codes 19 (constraint)
            // and 20 (mismatch).
            code.parse::<i64>()
                .is_ok_and(|c| matches!(c & 0xff, 19 | 20))
        }
    }
}

/// What a write means when the database refuses it; each operation names the
/// rules it can break so that the error says which one.
pub(crate) struct OnViolation<'a> {
    /// Message for a uniqueness violation.
    pub unique: &'a str,
    /// Message for a foreign-key violation (a referenced row missing, or of
    /// another tenant; or, on delete, rows still referring).
    pub foreign_key: &'a str,
}

impl OnViolation<'_> {
    pub fn map(&self, err: sqlx::Error) -> StoreError {
        use sqlx::error::ErrorKind;
        let kind = match &err {
            // SQLite reports ON DELETE RESTRICT as a trigger failure
            // (SQLITE_CONSTRAINT_TRIGGER), which sqlx does not classify.
            sqlx::Error::Database(db)
                if db.message().starts_with("FOREIGN KEY constraint failed") =>
            {
                ErrorKind::ForeignKeyViolation
            }
            sqlx::Error::Database(db) => db.kind(),
            _ => return StoreError::Database(err),
        };
        match kind {
            ErrorKind::UniqueViolation => StoreError::Conflict(self.unique.to_owned()),
            ErrorKind::ForeignKeyViolation => StoreError::InUse(self.foreign_key.to_owned()),
            ErrorKind::CheckViolation | ErrorKind::NotNullViolation => {
                // Inputs are validated before they reach SQL; a CHECK that still
                // fires means a rule the validator does not know yet.
                tracing::warn!(error = %err, "schema check refused a write");
                StoreError::invalid("", "the value breaks a rule of the data model")
            }
            _ => StoreError::Database(err),
        }
    }
}
