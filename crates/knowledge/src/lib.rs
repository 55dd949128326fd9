//! The knowledge base engine: what happens to a document between its bytes and a ranked passage.
//!
//! `extract` turns Markdown, plain text, HTML and PDF into text whose structure (headings,
//! paragraphs) survives; `chunk` cuts that text into passages to a token budget with overlap,
//! each carrying its heading path and character offsets; `index` holds the two backends behind
//! one trait (`embedded`: an HNSW graph from usearch plus a tantivy BM25 index per collection on
//! local disk; `pgvector`: PostgreSQL with the vector extension and full-text search); `fusion`
//! merges rankings by reciprocal rank; `eval` computes retrieval metrics.
//!
//! This crate knows nothing of tenants' rights, HTTP or the operational store: the services layer
//! decides what is visible to whom and passes scopes and document sets down.

pub mod chunk;
pub mod eval;
pub mod extract;
pub mod fusion;
pub mod index;
