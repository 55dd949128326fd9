//! Chunking (to be written).
