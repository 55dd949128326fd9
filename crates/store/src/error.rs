//! The store's error type: what callers can act on, with the driver error kept as the source.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique or foreign-key constraint refused the write; the name says which.
    #[error("conflict on {constraint}")]
    Conflict { constraint: String },
    /// The database could not be reached or refused the connection.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// The schema has not been migrated yet (PostgreSQL still starting up).
    #[error("database not ready: migrations have not been applied yet")]
    NotReady,
    /// A stored value could not be read back as a domain value.
    #[error("corrupt row in {table}: {problem}")]
    Corrupt {
        table: &'static str,
        problem: String,
    },
    #[error("database error: {0}")]
    Other(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> StoreError {
        match &err {
            sqlx::Error::Database(db)
                if db.is_unique_violation() || db.is_foreign_key_violation() =>
            {
                StoreError::Conflict {
                    constraint: db.constraint().unwrap_or("unique").to_owned(),
                }
            }
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err),
            _ => StoreError::Other(err),
        }
    }
}
