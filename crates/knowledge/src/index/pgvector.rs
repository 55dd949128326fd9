//! The pgvector backend: PostgreSQL with the `vector` extension answers nearest-neighbour queries
//! through an HNSW index, and PostgreSQL full-text search answers lexical ones.
//!
//! # Schema
//!
//! An HNSW index needs a fixed dimension and a generated `tsvector` column a fixed text search
//! configuration, so chunks live in one table per (configuration, dimension) pair, named
//! `knowledge_chunks_<config>_<dimensions>` (`knowledge_chunks_english_384`) and shared by every
//! scope with that pair. Each such table has:
//!
//! - `chunk_id`, `tenant_id`, `collection_id`, `document_id`, `text`, keyed by
//!   `(tenant_id, collection_id, chunk_id)`: chunk ids come from one operational store, and
//!   several installations (or test databases) may share one pgvector database;
//! - `embedding vector(<dimensions>)` with an HNSW index (`vector_cosine_ops`, with `m` and
//!   `ef_construction` taken from [`PgVectorSettings`] when the table is created);
//! - `tsv tsvector GENERATED ALWAYS AS (to_tsvector('<config>', text)) STORED` with a GIN index;
//! - a btree on `(tenant_id, collection_id, document_id)` for the scope and document filters.
//!
//! `knowledge_scopes (tenant_id, collection_id, dimensions, text_search_config)` records which
//! table holds a scope. A change of the configured text search configuration therefore applies to
//! new scopes only and never stems one scope's queries differently from its stored text.
//!
//! One table per scope was the alternative. It would keep small scopes from competing with large
//! ones inside one HNSW graph, but it turns every new collection into DDL and grows the catalogue
//! without bound; the starvation it would avoid is handled at query time instead (below).
//!
//! There are no migration files: everything is created by idempotent statements
//! (`CREATE … IF NOT EXISTS`) on connect and in `create_scope`, under a transaction-scoped
//! advisory lock so that several processes may start against one database at once. HNSW
//! parameters are fixed when a table's index is built; changing them affects new tables only.
//!
//! # Queries
//!
//! A vector search sets `hnsw.ef_search` to the query's candidate pool inside its transaction. On
//! pgvector 0.8 or newer it also sets `hnsw.iterative_scan = relaxed_order`, so that the index
//! keeps scanning until the scope and document filters have let `top_k` rows through, and
//! re-sorts the (slightly unordered) result by distance in an outer query over a materialized CTE.
//! Older pgvector (pgserver ships 0.6.2) filters only the `ef_search` rows the graph returns, and
//! rows deleted but not yet vacuumed (replaced documents) use up candidates too; when fewer than
//! `top_k` survive, the scope is searched exactly instead. That costs a scan of the scope's rows
//! through the btree, but a query never returns fewer hits than the scope holds.
//!
//! A lexical search treats the query as a bag of words, as BM25 does: the query is normalised with
//! the scope's text search configuration (`to_tsvector`, so stemming and stop words match the
//! indexed text), its lexemes are OR-ed into a `tsquery`, and matching rows (found through the
//! GIN index) are ranked by `ts_rank_cd`. Query syntax is never interpreted, so quotes, operators
//! and punctuation cannot make a query fail, and a query without lexemes finds nothing.
//! `websearch_to_tsquery` was not used because it ANDs the words: a question whose words do not
//! all occur in one chunk would find nothing, which is the wrong behaviour for retrieval.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection as _, Executor as _, PgConnection, PgPool, Postgres, Transaction};

use super::{Hit, IndexError, IndexedChunk, KnowledgeIndex, Restriction, Scope, VectorQuery};

/// How the backend builds its indexes and connects.
#[derive(Debug, Clone)]
pub struct PgVectorSettings {
    /// HNSW's `m`: the links per node (2 to 100). Applies to tables created after a change.
    pub m: usize,
    /// HNSW's `ef_construction`: the candidate pool while building (at least `2 * m`, at most
    /// 1,000). Applies to tables created after a change.
    pub ef_construction: usize,
    /// The PostgreSQL text search configuration (`english`, `simple`, …) of new scopes.
    pub text_search_config: String,
    /// The size of the connection pool.
    pub max_connections: u32,
}

/// An index in PostgreSQL with the pgvector extension.
#[derive(Debug, Clone)]
pub struct PgVectorIndex {
    pool: PgPool,
    settings: PgVectorSettings,
    pgvector_version: String,
    iterative_scan: bool,
}

impl Default for PgVectorSettings {
    fn default() -> Self {
        PgVectorSettings {
            m: 16,
            ef_construction: 64,
            text_search_config: "english".to_owned(),
            max_connections: 8,
        }
    }
}

/// pgvector's HNSW index accepts `vector` columns of at most this many dimensions.
const MAX_HNSW_DIMENSIONS: usize = 2000;

/// pgvector rejects a larger `hnsw.ef_search`.
const MAX_EF_SEARCH: usize = 1000;

/// Rows per `INSERT … SELECT FROM UNNEST` statement: large enough to amortise round trips, small
/// enough that one statement's arrays stay a few megabytes for 1,000-dimensional vectors.
const INSERT_BATCH_ROWS: usize = 500;

/// A text search configuration name becomes part of a table name and of DDL, so it is limited to
/// a plain identifier short enough that `knowledge_chunks_<config>_<dims>_embedding` fits in
/// PostgreSQL's 63-byte identifiers.
const MAX_CONFIG_NAME_LEN: usize = 30;

/// The advisory lock that serialises schema changes (ASCII "flywknow"); any fixed key works as
/// long as nothing else in the database uses it.
const SCHEMA_LOCK_KEY: i64 = 0x666c_7977_6b6e_6f77;

/// How long connecting may take before the error names the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

const SCOPES_DDL: &str = "CREATE TABLE IF NOT EXISTS knowledge_scopes (
    tenant_id TEXT NOT NULL,
    collection_id TEXT NOT NULL,
    dimensions INTEGER NOT NULL,
    text_search_config TEXT NOT NULL,
    PRIMARY KEY (tenant_id, collection_id)
)";

const HINT: &str = "knowledge.pgvector_url must point at a PostgreSQL with the vector extension \
                    (`python3 scripts/pgvector_server.py` starts one)";

impl PgVectorSettings {
    fn check(&self) -> Result<(), IndexError> {
        let invalid = |message: String| IndexError::Backend {
            action: "check the pgvector settings".to_owned(),
            message,
        };
        if !(2..=100).contains(&self.m) {
            return Err(invalid(format!("m must be 2 to 100, got {}", self.m)));
        }
        if self.ef_construction < 2 * self.m || self.ef_construction > 1000 {
            return Err(invalid(format!(
                "ef_construction must be at least 2 * m ({}) and at most 1000, got {}",
                2 * self.m,
                self.ef_construction
            )));
        }
        if !is_plain_identifier(&self.text_search_config) {
            return Err(invalid(format!(
                "text_search_config must be a lowercase identifier of at most \
                 {MAX_CONFIG_NAME_LEN} characters, got {:?}",
                self.text_search_config
            )));
        }
        if self.max_connections == 0 {
            return Err(invalid("max_connections must be at least 1".to_owned()));
        }
        Ok(())
    }
}

impl PgVectorIndex {
    /// Connects to the PostgreSQL at `url`, enables the vector extension and creates the schema's
    /// shared table.
    pub async fn connect(url: &str, settings: PgVectorSettings) -> Result<Self, IndexError> {
        // The URL may carry a password, so neither it nor the parse error's context repeats it.
        let options = PgConnectOptions::from_str(url).map_err(|source| IndexError::Database {
            action: "parse knowledge.pgvector_url".to_owned(),
            source,
        })?;
        Self::connect_with(options, settings).await
    }

    /// Like [`PgVectorIndex::connect`], for callers that build the options themselves (to add a
    /// password held as a secret, for example).
    pub async fn connect_with(
        options: PgConnectOptions,
        settings: PgVectorSettings,
    ) -> Result<Self, IndexError> {
        settings.check()?;
        let server = describe_server(&options);
        // The first connection is made directly rather than through the pool, which would retry
        // a refused connection until its timeout: a wrong URL should fail at once, with the
        // server's name.
        let mut connection =
            match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await
            {
                Ok(connection) => connection.map_err(database(format!(
                    "connect to PostgreSQL at {server} ({HINT})"
                )))?,
                Err(_elapsed) => {
                    return Err(IndexError::Backend {
                        action: format!("connect to PostgreSQL at {server}"),
                        message: format!(
                            "no answer within {} seconds; {HINT}",
                            CONNECT_TIMEOUT.as_secs()
                        ),
                    })
                }
            };
        let pgvector_version = set_up_schema(&mut connection, &settings, &server).await?;
        // The connection has done its job; an error while saying goodbye changes nothing.
        let _ = connection.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_lazy_with(options);

        let iterative_scan = version_at_least(&pgvector_version, (0, 8));
        tracing::info!(
            server = %server,
            pgvector_version = %pgvector_version,
            iterative_scan,
            "connected to the pgvector knowledge index"
        );
        Ok(PgVectorIndex {
            pool,
            settings,
            pgvector_version,
            iterative_scan,
        })
    }

    /// The version of the vector extension in the connected database (`0.6.2`).
    pub fn pgvector_version(&self) -> &str {
        &self.pgvector_version
    }

    /// Closes the connections (the pool also closes them when the last clone is dropped).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn connection(&self, action: &str) -> Result<PoolConnection<Postgres>, IndexError> {
        self.pool.acquire().await.map_err(database(action))
    }
}

#[async_trait]
impl KnowledgeIndex for PgVectorIndex {
    fn backend(&self) -> &'static str {
        "pgvector"
    }

    async fn create_scope(&self, scope: &Scope, dimensions: usize) -> Result<(), IndexError> {
        let action = format!("create the index of {scope} for {dimensions}-dimensional vectors");
        if dimensions == 0 || dimensions > MAX_HNSW_DIMENSIONS {
            return Err(IndexError::Backend {
                action,
                message: format!(
                    "pgvector's HNSW index takes 1 to {MAX_HNSW_DIMENSIONS} dimensions"
                ),
            });
        }
        let mut tx = self.pool.begin().await.map_err(database(&action))?;
        lock_schema(&mut tx, &action).await?;
        if let Some(existing) = find_scope_table(&mut tx, scope, RowLock::Update, &action).await? {
            if existing.dimensions != dimensions {
                return Err(IndexError::Dimensions {
                    scope: scope.to_string(),
                    expected: existing.dimensions,
                    actual: dimensions,
                });
            }
            return tx.commit().await.map_err(database(&action));
        }
        let table = ScopeTable {
            dimensions,
            text_search_config: self.settings.text_search_config.clone(),
        };
        tx.execute(table.ddl(&self.settings).as_str())
            .await
            .map_err(database(&action))?;
        sqlx::query(
            "INSERT INTO knowledge_scopes (tenant_id, collection_id, dimensions, text_search_config)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&scope.tenant_id)
        .bind(&scope.collection_id)
        .bind(table.dimensions_column()?)
        .bind(&table.text_search_config)
        .execute(&mut *tx)
        .await
        .map_err(database(&action))?;
        tx.commit().await.map_err(database(&action))
    }

    async fn upsert_document(
        &self,
        scope: &Scope,
        document_id: &str,
        chunks: Vec<IndexedChunk>,
    ) -> Result<(), IndexError> {
        let action = format!("insert chunks of document {document_id} in {scope}");
        let mut rows = Vec::with_capacity(chunks.len());
        for chunk in &chunks {
            let chunk_id = chunk_id_column(chunk.chunk_id, &action)?;
            let embedding =
                vector_literal(&chunk.embedding).ok_or_else(|| IndexError::Backend {
                    action: action.clone(),
                    message: format!(
                        "the embedding of chunk {} holds a NaN or infinite value",
                        chunk.chunk_id
                    ),
                })?;
            rows.push((
                chunk_id,
                embedding,
                without_nul(&chunk.text),
                chunk.embedding.len(),
            ));
        }

        let mut tx = self.pool.begin().await.map_err(database(&action))?;
        // The shared row lock keeps `drop_scope` from removing the scope while chunks go in.
        let table = require_scope_table(&mut tx, scope, RowLock::Share, &action).await?;
        if let Some(&(_, _, _, actual)) = rows.iter().find(|row| row.3 != table.dimensions) {
            return Err(IndexError::Dimensions {
                scope: scope.to_string(),
                expected: table.dimensions,
                actual,
            });
        }
        lock_document(&mut tx, scope, document_id, &action).await?;
        let name = table.name();
        sqlx::query(&format!(
            "DELETE FROM {name} WHERE tenant_id = $1 AND collection_id = $2 AND document_id = $3"
        ))
        .bind(&scope.tenant_id)
        .bind(&scope.collection_id)
        .bind(document_id)
        .execute(&mut *tx)
        .await
        .map_err(database(&action))?;
        let insert = format!(
            "INSERT INTO {name} (tenant_id, collection_id, document_id, chunk_id, embedding, text)
             SELECT $1, $2, $3, rows.chunk_id, rows.embedding::vector, rows.text
             FROM UNNEST($4::BIGINT[], $5::TEXT[], $6::TEXT[]) AS rows (chunk_id, embedding, text)"
        );
        for batch in rows.chunks(INSERT_BATCH_ROWS) {
            let chunk_ids: Vec<i64> = batch.iter().map(|row| row.0).collect();
            let embeddings: Vec<&str> = batch.iter().map(|row| row.1.as_str()).collect();
            let texts: Vec<&str> = batch.iter().map(|row| row.2.as_ref()).collect();
            sqlx::query(&insert)
                .bind(&scope.tenant_id)
                .bind(&scope.collection_id)
                .bind(document_id)
                .bind(chunk_ids)
                .bind(embeddings)
                .bind(texts)
                .execute(&mut *tx)
                .await
                .map_err(database(&action))?;
        }
        tx.commit().await.map_err(database(&action))
    }

    async fn delete_document(&self, scope: &Scope, document_id: &str) -> Result<(), IndexError> {
        let action = format!("delete the chunks of document {document_id} in {scope}");
        let mut tx = self.pool.begin().await.map_err(database(&action))?;
        let Some(table) = find_scope_table(&mut tx, scope, RowLock::Share, &action).await? else {
            return Ok(());
        };
        // The document lock orders this delete after (or before) a concurrent upsert of the same
        // document, which would otherwise leave that upsert's new rows behind.
        lock_document(&mut tx, scope, document_id, &action).await?;
        sqlx::query(&format!(
            "DELETE FROM {} WHERE tenant_id = $1 AND collection_id = $2 AND document_id = $3",
            table.name()
        ))
        .bind(&scope.tenant_id)
        .bind(&scope.collection_id)
        .bind(document_id)
        .execute(&mut *tx)
        .await
        .map_err(database(&action))?;
        tx.commit().await.map_err(database(&action))
    }

    async fn drop_scope(&self, scope: &Scope) -> Result<(), IndexError> {
        let action = format!("drop the index of {scope}");
        let mut tx = self.pool.begin().await.map_err(database(&action))?;
        let Some(table) = find_scope_table(&mut tx, scope, RowLock::Update, &action).await? else {
            return Ok(());
        };
        sqlx::query(&format!(
            "DELETE FROM {} WHERE tenant_id = $1 AND collection_id = $2",
            table.name()
        ))
        .bind(&scope.tenant_id)
        .bind(&scope.collection_id)
        .execute(&mut *tx)
        .await
        .map_err(database(&action))?;
        sqlx::query("DELETE FROM knowledge_scopes WHERE tenant_id = $1 AND collection_id = $2")
            .bind(&scope.tenant_id)
            .bind(&scope.collection_id)
            .execute(&mut *tx)
            .await
            .map_err(database(&action))?;
        tx.commit().await.map_err(database(&action))
    }

    async fn vector_search(
        &self,
        scope: &Scope,
        query: VectorQuery<'_>,
        restriction: &Restriction,
    ) -> Result<Vec<Hit>, IndexError> {
        let action = format!("search the vectors of {scope}");
        let documents = restricted_documents(restriction);
        if query.top_k == 0 || documents.as_ref().is_some_and(Vec::is_empty) {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await.map_err(database(&action))?;
        let table = require_scope_table(&mut tx, scope, RowLock::None, &action).await?;
        if query.embedding.len() != table.dimensions {
            return Err(IndexError::Dimensions {
                scope: scope.to_string(),
                expected: table.dimensions,
                actual: query.embedding.len(),
            });
        }
        let embedding = vector_literal(query.embedding).ok_or_else(|| IndexError::Backend {
            action: action.clone(),
            message: "the query embedding holds a NaN or infinite value".to_owned(),
        })?;
        let limit = i64::try_from(query.top_k).unwrap_or(i64::MAX);

        // `SET LOCAL` takes no parameters; `set_config(…, true)` is its parameterised form and
        // likewise ends with the transaction.
        let ef_search = query
            .num_candidates
            .max(query.top_k)
            .clamp(1, MAX_EF_SEARCH);
        sqlx::query("SELECT set_config('hnsw.ef_search', $1, true)")
            .bind(ef_search.to_string())
            .execute(&mut *tx)
            .await
            .map_err(database(&action))?;
        if self.iterative_scan {
            sqlx::query("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
                .execute(&mut *tx)
                .await
                .map_err(database(&action))?;
        }

        let name = table.name();
        let filter = document_filter(documents.is_some());
        // The inner query is the one the HNSW index can answer (`ORDER BY` distance, `LIMIT`);
        // materializing it keeps the planner from merging the outer re-sort into it, which
        // relaxed-order iterative scans need.
        let approximate = format!(
            "WITH nearest AS MATERIALIZED (
                 SELECT chunk_id, document_id, embedding <=> $1::vector AS distance
                 FROM {name}
                 WHERE tenant_id = $2 AND collection_id = $3{filter}
                 ORDER BY embedding <=> $1::vector
                 LIMIT $4
             )
             SELECT chunk_id, document_id, distance FROM nearest ORDER BY distance, chunk_id"
        );
        let mut hits = fetch_vector_hits(
            &mut tx,
            &approximate,
            (&embedding, scope, limit, documents.as_deref()),
            &action,
        )
        .await?;
        if hits.len() < query.top_k {
            // The graph's candidates ran out (filtered out, or dead rows awaiting vacuum) before
            // `top_k` rows came through, or the scope holds fewer rows. The materialized CTE has no `ORDER BY`, so the HNSW index
            // cannot serve it: every row of the scope is compared, found through the btree.
            let exact = format!(
                "WITH scoped AS MATERIALIZED (
                     SELECT chunk_id, document_id, embedding <=> $1::vector AS distance
                     FROM {name}
                     WHERE tenant_id = $2 AND collection_id = $3{filter}
                 )
                 SELECT chunk_id, document_id, distance FROM scoped
                 ORDER BY distance, chunk_id
                 LIMIT $4"
            );
            hits = fetch_vector_hits(
                &mut tx,
                &exact,
                (&embedding, scope, limit, documents.as_deref()),
                &action,
            )
            .await?;
        }
        tx.commit().await.map_err(database(&action))?;
        Ok(hits)
    }

    async fn lexical_search(
        &self,
        scope: &Scope,
        query: &str,
        top_k: usize,
        restriction: &Restriction,
    ) -> Result<Vec<Hit>, IndexError> {
        let action = format!("search the text of {scope}");
        let documents = restricted_documents(restriction);
        if top_k == 0 || documents.as_ref().is_some_and(Vec::is_empty) {
            return Ok(Vec::new());
        }
        let mut connection = self.connection(&action).await?;
        let table = require_scope_table(&mut connection, scope, RowLock::None, &action).await?;
        let lexemes: Vec<String> = sqlx::query_scalar(
            "SELECT lexeme FROM unnest(to_tsvector($1::regconfig, $2)) ORDER BY lexeme",
        )
        .bind(&table.text_search_config)
        .bind(without_nul(query).as_ref())
        .fetch_all(&mut *connection)
        .await
        .map_err(database(&action))?;
        if lexemes.is_empty() {
            return Ok(Vec::new());
        }
        let filter = document_filter(documents.is_some());
        // Normalisation 1 divides the rank by 1 + log(length), so long chunks do not win merely
        // by repeating a word, as BM25's length normalisation intends.
        let sql = format!(
            "SELECT chunk_id, document_id, ts_rank_cd(tsv, $1::tsquery, 1) AS score
             FROM {}
             WHERE tenant_id = $2 AND collection_id = $3 AND tsv @@ $1::tsquery{filter}
             ORDER BY score DESC, chunk_id
             LIMIT $4",
            table.name()
        );
        let mut statement = sqlx::query_as::<_, (i64, String, f32)>(&sql)
            .bind(or_tsquery(&lexemes))
            .bind(&scope.tenant_id)
            .bind(&scope.collection_id)
            .bind(i64::try_from(top_k).unwrap_or(i64::MAX));
        if let Some(documents) = &documents {
            statement = statement.bind(documents);
        }
        let rows = statement
            .fetch_all(&mut *connection)
            .await
            .map_err(database(&action))?;
        rows.into_iter()
            .map(|(chunk_id, document_id, score)| {
                Ok(Hit {
                    chunk_id: chunk_id_from_column(chunk_id, &action)?,
                    document_id,
                    score,
                })
            })
            .collect()
    }

    async fn chunk_ids(&self, scope: &Scope) -> Result<Vec<(String, u64)>, IndexError> {
        let action = format!("list the chunks of {scope}");
        let mut connection = self.connection(&action).await?;
        let Some(table) = find_scope_table(&mut connection, scope, RowLock::None, &action).await?
        else {
            return Ok(Vec::new());
        };
        let rows: Vec<(String, i64)> = sqlx::query_as(&format!(
            "SELECT document_id, chunk_id FROM {}
             WHERE tenant_id = $1 AND collection_id = $2
             ORDER BY document_id, chunk_id",
            table.name()
        ))
        .bind(&scope.tenant_id)
        .bind(&scope.collection_id)
        .fetch_all(&mut *connection)
        .await
        .map_err(database(&action))?;
        rows.into_iter()
            .map(|(document_id, chunk_id)| {
                Ok((document_id, chunk_id_from_column(chunk_id, &action)?))
            })
            .collect()
    }

    async fn flush(&self) -> Result<(), IndexError> {
        // PostgreSQL made every write durable when its transaction committed.
        Ok(())
    }
}

/// Where a scope's chunks live, as recorded in `knowledge_scopes`.
#[derive(Debug, Clone)]
struct ScopeTable {
    dimensions: usize,
    text_search_config: String,
}

impl ScopeTable {
    /// The table's name. Both parts are checked before a `ScopeTable` exists (the configuration
    /// is a plain identifier, the dimensions a number), so the name is safe to splice into SQL.
    fn name(&self) -> String {
        format!(
            "knowledge_chunks_{}_{}",
            self.text_search_config, self.dimensions
        )
    }

    fn dimensions_column(&self) -> Result<i32, IndexError> {
        i32::try_from(self.dimensions).map_err(|_| IndexError::Backend {
            action: "record a scope's dimensions".to_owned(),
            message: format!("{} dimensions do not fit a column", self.dimensions),
        })
    }

    fn ddl(&self, settings: &PgVectorSettings) -> String {
        let name = self.name();
        let dimensions = self.dimensions;
        let config = &self.text_search_config;
        let (m, ef_construction) = (settings.m, settings.ef_construction);
        format!(
            "CREATE TABLE IF NOT EXISTS {name} (
                 chunk_id BIGINT NOT NULL,
                 tenant_id TEXT NOT NULL,
                 collection_id TEXT NOT NULL,
                 document_id TEXT NOT NULL,
                 embedding vector({dimensions}) NOT NULL,
                 text TEXT NOT NULL,
                 tsv tsvector GENERATED ALWAYS AS (to_tsvector('{config}'::regconfig, text)) STORED,
                 PRIMARY KEY (tenant_id, collection_id, chunk_id)
             );
             CREATE INDEX IF NOT EXISTS {name}_scope
                 ON {name} (tenant_id, collection_id, document_id);
             CREATE INDEX IF NOT EXISTS {name}_embedding
                 ON {name} USING hnsw (embedding vector_cosine_ops)
                 WITH (m = {m}, ef_construction = {ef_construction});
             CREATE INDEX IF NOT EXISTS {name}_tsv ON {name} USING gin (tsv);"
        )
    }
}

/// The row lock a scope lookup takes on its `knowledge_scopes` row.
#[derive(Debug, Clone, Copy)]
enum RowLock {
    /// Reads, which tolerate a concurrent drop.
    None,
    /// Writes of chunks, which must not interleave with a drop of their scope.
    Share,
    /// Dropping or (re)creating the scope.
    Update,
}

/// Enables the vector extension and creates the scopes table; returns pgvector's version.
async fn set_up_schema(
    connection: &mut PgConnection,
    settings: &PgVectorSettings,
    server: &str,
) -> Result<String, IndexError> {
    let available: Option<String> = sqlx::query_scalar(
        "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'",
    )
    .fetch_optional(&mut *connection)
    .await
    .map_err(database(format!(
        "look for the vector extension on PostgreSQL at {server}"
    )))?;
    if available.is_none() {
        return Err(IndexError::Backend {
            action: format!("enable the vector extension on PostgreSQL at {server}"),
            message: format!("pgvector is not installed on that server; {HINT}"),
        });
    }

    let action = format!("create the knowledge schema on PostgreSQL at {server}");
    let mut tx = connection.begin().await.map_err(database(&action))?;
    lock_schema(&mut tx, &action).await?;
    sqlx::query("CREATE EXTENSION IF NOT EXISTS vector")
        .execute(&mut *tx)
        .await
        .map_err(database(format!(
            "create the vector extension on PostgreSQL at {server} (pgvector is installed \
             there, but this user may not be allowed to create extensions)"
        )))?;
    // A statement without parameters goes over the simple query protocol, which takes several
    // statements at once; `Executor::execute` is used rather than `sqlx::raw_sql` because its
    // boxed future keeps the trait methods' futures `Send`.
    tx.execute(SCOPES_DDL).await.map_err(database(&action))?;
    let pgvector_version: String =
        sqlx::query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            .fetch_one(&mut *tx)
            .await
            .map_err(database(&action))?;
    let config_exists: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM pg_ts_config WHERE cfgname = $1")
            .bind(&settings.text_search_config)
            .fetch_optional(&mut *tx)
            .await
            .map_err(database(&action))?;
    if config_exists.is_none() {
        return Err(IndexError::Backend {
            action,
            message: format!(
                "the text search configuration {:?} does not exist on that server",
                settings.text_search_config
            ),
        });
    }
    tx.commit().await.map_err(database(&action))?;
    Ok(pgvector_version)
}

async fn find_scope_table(
    connection: &mut PgConnection,
    scope: &Scope,
    lock: RowLock,
    action: &str,
) -> Result<Option<ScopeTable>, IndexError> {
    let sql = match lock {
        RowLock::None => {
            "SELECT dimensions, text_search_config FROM knowledge_scopes
             WHERE tenant_id = $1 AND collection_id = $2"
        }
        RowLock::Share => {
            "SELECT dimensions, text_search_config FROM knowledge_scopes
             WHERE tenant_id = $1 AND collection_id = $2 FOR SHARE"
        }
        RowLock::Update => {
            "SELECT dimensions, text_search_config FROM knowledge_scopes
             WHERE tenant_id = $1 AND collection_id = $2 FOR UPDATE"
        }
    };
    let row: Option<(i32, String)> = sqlx::query_as(sql)
        .bind(&scope.tenant_id)
        .bind(&scope.collection_id)
        .fetch_optional(connection)
        .await
        .map_err(database(action))?;
    let Some((dimensions, text_search_config)) = row else {
        return Ok(None);
    };
    // The row was written by this module, but it is spliced into SQL, so it is checked again.
    let dimensions = usize::try_from(dimensions)
        .ok()
        .filter(|dimensions| (1..=MAX_HNSW_DIMENSIONS).contains(dimensions));
    match dimensions {
        Some(dimensions) if is_plain_identifier(&text_search_config) => Ok(Some(ScopeTable {
            dimensions,
            text_search_config,
        })),
        _ => Err(IndexError::Backend {
            action: action.to_owned(),
            message: format!("the knowledge_scopes row of {scope} is corrupt"),
        }),
    }
}

async fn require_scope_table(
    connection: &mut PgConnection,
    scope: &Scope,
    lock: RowLock,
    action: &str,
) -> Result<ScopeTable, IndexError> {
    find_scope_table(connection, scope, lock, action)
        .await?
        .ok_or_else(|| IndexError::Backend {
            action: action.to_owned(),
            message: "the collection has no index (create_scope was not called, or the scope \
                      was dropped)"
                .to_owned(),
        })
}

async fn lock_schema(tx: &mut Transaction<'_, Postgres>, action: &str) -> Result<(), IndexError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SCHEMA_LOCK_KEY)
        .execute(&mut **tx)
        .await
        .map_err(database(action))?;
    Ok(())
}

/// Serialises writers of one document so that two upserts (or an upsert and a delete) never
/// interleave their delete and insert steps. Unrelated documents whose keys collide in the hash
/// merely wait for each other.
async fn lock_document(
    tx: &mut Transaction<'_, Postgres>,
    scope: &Scope,
    document_id: &str,
    action: &str,
) -> Result<(), IndexError> {
    let key = format!(
        "flywheel-knowledge\u{1f}{}\u{1f}{}\u{1f}{document_id}",
        scope.tenant_id, scope.collection_id
    );
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(key)
        .execute(&mut **tx)
        .await
        .map_err(database(action))?;
    Ok(())
}

async fn fetch_vector_hits(
    tx: &mut Transaction<'_, Postgres>,
    sql: &str,
    (embedding, scope, limit, documents): (&str, &Scope, i64, Option<&[String]>),
    action: &str,
) -> Result<Vec<Hit>, IndexError> {
    let mut statement = sqlx::query_as::<_, (i64, String, f64)>(sql)
        .bind(embedding)
        .bind(&scope.tenant_id)
        .bind(&scope.collection_id)
        .bind(limit);
    if let Some(documents) = documents {
        statement = statement.bind(documents);
    }
    let rows = statement
        .fetch_all(&mut **tx)
        .await
        .map_err(database(action))?;
    rows.into_iter()
        .map(|(chunk_id, document_id, distance)| {
            Ok(Hit {
                chunk_id: chunk_id_from_column(chunk_id, action)?,
                document_id,
                // Cosine distance is 1 - cosine similarity.
                score: (1.0 - distance) as f32,
            })
        })
        .collect()
}

/// The documents a query may return, sorted so that equal restrictions give equal statements.
fn restricted_documents(restriction: &Restriction) -> Option<Vec<String>> {
    restriction.document_ids.as_ref().map(|ids| {
        let mut ids: Vec<String> = ids.iter().cloned().collect();
        ids.sort_unstable();
        ids
    })
}

fn document_filter(restricted: bool) -> &'static str {
    if restricted {
        " AND document_id = ANY($5)"
    } else {
        ""
    }
}

/// An embedding in pgvector's text form (`[0.1,-0.2]`), or `None` when a value is not finite
/// (pgvector rejects those, and the caller can say which chunk is at fault).
fn vector_literal(values: &[f32]) -> Option<String> {
    if !values.iter().all(|value| value.is_finite()) {
        return None;
    }
    let mut literal = String::with_capacity(values.len() * 12 + 2);
    literal.push('[');
    for (value_idx, value) in values.iter().enumerate() {
        if value_idx > 0 {
            literal.push(',');
        }
        // Writing to a String cannot fail. `Display` prints the shortest decimal that reads back
        // as the same f32, so the vector arrives exactly.
        let _ = write!(literal, "{value}");
    }
    literal.push(']');
    Some(literal)
}

/// Lexemes OR-ed into `tsquery` text. Each is quoted, with `'` doubled and `\` escaped as the
/// `tsquery` input syntax requires, so whatever the text search parser produced is matched
/// literally.
fn or_tsquery(lexemes: &[String]) -> String {
    let quoted: Vec<String> = lexemes
        .iter()
        .map(|lexeme| format!("'{}'", lexeme.replace('\\', "\\\\").replace('\'', "''")))
        .collect();
    quoted.join(" | ")
}

/// PostgreSQL text cannot hold NUL characters. The index keeps text only to match words, so a
/// NUL (which extraction of binary formats can leave behind) becomes a space, which separates
/// words just as well.
fn without_nul(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', " "))
    } else {
        Cow::Borrowed(text)
    }
}

fn is_plain_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    let starts_well = chars
        .next()
        .is_some_and(|first| first.is_ascii_lowercase() || first == '_');
    starts_well
        && name.len() <= MAX_CONFIG_NAME_LEN
        && chars.all(|rest| rest.is_ascii_lowercase() || rest.is_ascii_digit() || rest == '_')
}

/// Whether a version such as `0.6.2` is at least `(major, minor)`.
fn version_at_least(version: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = version
        .split('.')
        .map(|part| part.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    found >= (major, minor)
}

/// Where the pool connects, for error messages: host and port or socket, never the password.
fn describe_server(options: &PgConnectOptions) -> String {
    match options.get_socket() {
        Some(directory) => format!(
            "the unix socket in {} (port {})",
            directory.display(),
            options.get_port()
        ),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    }
}

fn chunk_id_column(chunk_id: u64, action: &str) -> Result<i64, IndexError> {
    i64::try_from(chunk_id).map_err(|_| IndexError::Backend {
        action: action.to_owned(),
        message: format!("chunk id {chunk_id} does not fit PostgreSQL's BIGINT"),
    })
}

fn chunk_id_from_column(chunk_id: i64, action: &str) -> Result<u64, IndexError> {
    u64::try_from(chunk_id).map_err(|_| IndexError::Backend {
        action: action.to_owned(),
        message: format!("the index holds a negative chunk id {chunk_id}"),
    })
}

fn database(action: impl Into<String>) -> impl FnOnce(sqlx::Error) -> IndexError {
    let action = action.into();
    move |source| IndexError::Database { action, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_settings_pass_their_own_checks() {
        assert!(PgVectorSettings::default().check().is_ok());
    }

    #[test]
    fn settings_that_would_be_spliced_into_sql_are_checked() {
        let settings = PgVectorSettings {
            text_search_config: "english'); DROP TABLE x; --".to_owned(),
            ..PgVectorSettings::default()
        };
        assert!(settings.check().is_err());
        let settings = PgVectorSettings {
            m: 16,
            ef_construction: 20,
            ..PgVectorSettings::default()
        };
        assert!(settings.check().is_err());
    }

    #[test]
    fn vectors_are_written_in_pgvector_text_form() {
        assert_eq!(
            vector_literal(&[0.5, -1.0, 0.1]).as_deref(),
            Some("[0.5,-1,0.1]")
        );
        assert_eq!(vector_literal(&[f32::NAN]), None);
        assert_eq!(vector_literal(&[f32::INFINITY]), None);
    }

    #[test]
    fn lexemes_are_quoted_for_tsquery() {
        let lexemes = vec!["run".to_owned(), "it's".to_owned(), "a\\b".to_owned()];
        assert_eq!(or_tsquery(&lexemes), r"'run' | 'it''s' | 'a\\b'");
    }

    #[test]
    fn versions_compare_by_major_and_minor() {
        assert!(!version_at_least("0.6.2", (0, 8)));
        assert!(version_at_least("0.8.0", (0, 8)));
        assert!(version_at_least("0.10.1", (0, 8)));
        assert!(version_at_least("1.0", (0, 8)));
    }

    #[tokio::test]
    async fn a_server_that_does_not_answer_is_named_with_a_hint() {
        // Port 1 on loopback refuses connections at once.
        let result = PgVectorIndex::connect(
            "postgres://flywheel:hunter2@127.0.0.1:1/knowledge",
            PgVectorSettings::default(),
        )
        .await;
        let Err(err) = result else {
            panic!("connecting to a closed port succeeded");
        };
        let message = err.to_string();
        assert!(message.contains("127.0.0.1:1"), "{message}");
        assert!(message.contains("knowledge.pgvector_url"), "{message}");
        assert!(message.contains("scripts/pgvector_server.py"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn connection_errors_name_the_server_but_not_the_password() {
        let options =
            PgConnectOptions::from_str("postgres://user:secret@db.example:6543/knowledge");
        let Ok(options) = options else {
            panic!("the URL parses");
        };
        let server = describe_server(&options);
        assert_eq!(server, "db.example:6543");
        let options =
            PgConnectOptions::from_str("postgres://postgres@localhost/postgres?host=/tmp/pg");
        let Ok(options) = options else {
            panic!("the URL parses");
        };
        assert_eq!(
            describe_server(&options),
            "the unix socket in /tmp/pg (port 5432)"
        );
    }
}
