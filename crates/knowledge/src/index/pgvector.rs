//! The pgvector backend (to be written).
