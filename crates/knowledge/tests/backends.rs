//! The shared suite every `KnowledgeIndex` backend passes.
//!
//! Each test is an async function over `&dyn KnowledgeIndex`; `backend_suite!` runs it once per
//! backend, in a module named after the backend. The embedded backend runs in a temporary
//! directory per test. The pgvector backend runs when `FLYWHEEL_TEST_PGVECTOR_URL` is set (`.ci/run` sets
//! it from `scripts/pgvector_server.py`); without it a developer machine skips those tests with
//! a notice, while CI fails. Tests share that database, so each uses scopes and chunk ids drawn
//! at random and drops its scopes at the end.

// Helpers outside `#[test]` functions fail the test loudly, as the tests themselves do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;

use flywheel_knowledge::index::embedded::{EmbeddedIndex, EmbeddedSettings};
use flywheel_knowledge::index::pgvector::{PgVectorIndex, PgVectorSettings};
use flywheel_knowledge::index::{
    Hit, IndexError, IndexedChunk, KnowledgeIndex, Restriction, Scope, VectorQuery,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Runs each named test against every backend.
macro_rules! backend_suite {
    ($($test:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test]
                async fn $test() {
                    let backend = super::embedded_backend();
                    super::$test(backend.index.as_ref()).await;
                }
            )*
        }

        mod pgvector {
            $(
                #[tokio::test]
                async fn $test() {
                    if let Some(backend) = super::pgvector_backend().await {
                        super::$test(backend.index.as_ref()).await;
                    }
                }
            )*
        }
    };
}

backend_suite!(
    vector_search_finds_the_nearest_with_cosine_scores,
    lexical_search_ranks_chunks_with_more_query_words_first,
    lexical_search_stems_words,
    lexical_queries_with_punctuation_never_fail,
    lexical_queries_without_words_find_nothing,
    restriction_by_document_ids_applies_to_both_modes,
    replacing_a_document_removes_its_old_chunks_from_both_modes,
    deleting_a_document_removes_its_chunks,
    dropping_a_scope_removes_everything_in_it,
    tenants_never_mix,
    dimension_mismatches_are_errors,
    chunk_ids_lists_exactly_what_is_live,
    a_small_scope_is_not_starved_by_a_large_one,
    recall_at_10_is_at_least_0_9,
);

/// A backend under test, with whatever must live as long as it does.
struct Backend {
    index: Box<dyn KnowledgeIndex>,
    /// The embedded backend's directory, removed when the test ends.
    _directory: Option<tempfile::TempDir>,
}

/// The embedded backend in a fresh temporary directory.
fn embedded_backend() -> Backend {
    let directory = tempfile::tempdir().expect("temporary directory");
    let index = EmbeddedIndex::open(directory.path().to_owned(), EmbeddedSettings::default())
        .expect("open the embedded index");
    Backend {
        index: Box::new(index),
        _directory: Some(directory),
    }
}

/// The pgvector backend at `FLYWHEEL_TEST_PGVECTOR_URL`, or `None` (with a notice) on a machine
/// without one. CI must have it, so there its absence fails the test.
async fn pgvector_backend() -> Option<Backend> {
    let url = std::env::var("FLYWHEEL_TEST_PGVECTOR_URL")
        .ok()
        .filter(|url| !url.is_empty());
    let Some(url) = url else {
        assert!(
            std::env::var_os("CI").is_none(),
            "FLYWHEEL_TEST_PGVECTOR_URL is required in CI (see .ci/run)"
        );
        eprintln!(
            "skipping: FLYWHEEL_TEST_PGVECTOR_URL is not set \
             (pip install pgserver; export FLYWHEEL_TEST_PGVECTOR_URL=\"$(python3 scripts/pgvector_server.py)\")"
        );
        return None;
    };
    // Tests run in parallel, each with its own pool; two connections each keep the total low.
    let settings = PgVectorSettings {
        max_connections: 2,
        ..PgVectorSettings::default()
    };
    match PgVectorIndex::connect(&url, settings).await {
        Ok(index) => Some(Backend {
            index: Box::new(index),
            _directory: None,
        }),
        Err(err) => panic!("connect to FLYWHEEL_TEST_PGVECTOR_URL: {err}"),
    }
}

/// The PostgreSQL that Flywheel's store tests use has no pgvector; pointing the pgvector backend
/// at it must say so rather than fail somewhere later.
#[tokio::test]
async fn a_postgres_without_pgvector_is_reported_as_such() {
    let Some(url) = std::env::var("FLYWHEEL_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.is_empty())
    else {
        eprintln!("skipping: FLYWHEEL_TEST_POSTGRES_URL is not set");
        return;
    };
    let mut connection = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .expect("connect to FLYWHEEL_TEST_POSTGRES_URL");
    let available: Option<String> =
        sqlx::query_scalar("SELECT name::TEXT FROM pg_available_extensions WHERE name = 'vector'")
            .fetch_optional(&mut connection)
            .await
            .expect("list extensions");
    if available.is_some() {
        eprintln!("skipping: the PostgreSQL at FLYWHEEL_TEST_POSTGRES_URL has pgvector");
        return;
    }
    let result = PgVectorIndex::connect(&url, PgVectorSettings::default()).await;
    let Err(err) = result else {
        panic!("connecting to a PostgreSQL without pgvector succeeded");
    };
    let message = err.to_string();
    assert!(message.contains("pgvector is not installed"), "{message}");
    assert!(message.contains("knowledge.pgvector_url"), "{message}");
}

async fn vector_search_finds_the_nearest_with_cosine_scores(index: &dyn KnowledgeIndex) {
    let scope = fresh_scope("vectors");
    let ids = ChunkIds::fresh();
    index.create_scope(&scope, 8).await.expect("create scope");
    // A second call with the same dimensions changes nothing.
    index
        .create_scope(&scope, 8)
        .await
        .expect("create scope again");
    let chunks = [
        (
            "a",
            ids.at(0),
            unit(&[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
        ),
        (
            "a",
            ids.at(1),
            unit(&[0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
        ),
        (
            "b",
            ids.at(2),
            unit(&[0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
        ),
        (
            "b",
            ids.at(3),
            unit(&[1.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
        ),
        (
            "c",
            ids.at(4),
            unit(&[1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]),
        ),
        (
            "c",
            ids.at(5),
            unit(&[-1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
        ),
    ];
    for document_id in ["a", "b", "c"] {
        let document_chunks = chunks
            .iter()
            .filter(|chunk| chunk.0 == document_id)
            .map(|(_, chunk_id, embedding)| IndexedChunk {
                chunk_id: *chunk_id,
                text: format!("chunk {chunk_id}"),
                embedding: embedding.clone(),
            })
            .collect();
        index
            .upsert_document(&scope, document_id, document_chunks)
            .await
            .expect("upsert");
    }

    let query = unit(&[1.0, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    let hits = index
        .vector_search(&scope, vector_query(&query, 3), &Restriction::default())
        .await
        .expect("vector search");
    // The nearest is the first axis, then the chunk between the first two axes, then the one
    // between the first and fourth: cosines of about 0.995, 0.934 and 0.704.
    assert_eq!(chunk_ids_of(&hits), vec![ids.at(0), ids.at(3), ids.at(4)]);
    for hit in &hits {
        let (document_id, _, embedding) = chunks
            .iter()
            .find(|chunk| chunk.1 == hit.chunk_id)
            .expect("a hit is an indexed chunk");
        assert_eq!(&hit.document_id, document_id);
        let cosine = dot(&query, embedding);
        assert!(
            (hit.score - cosine).abs() < 1e-4,
            "score {} of chunk {} is not its cosine {cosine}",
            hit.score,
            hit.chunk_id
        );
    }

    // Asking for more than the scope holds returns everything, the opposite vector last.
    let hits = index
        .vector_search(&scope, vector_query(&query, 50), &Restriction::default())
        .await
        .expect("vector search");
    assert_eq!(hits.len(), chunks.len());
    assert_eq!(hits.last().map(|hit| hit.chunk_id), Some(ids.at(5)));
    assert!(hits.windows(2).all(|pair| pair[0].score >= pair[1].score));
    index.drop_scope(&scope).await.expect("drop scope");
}

async fn lexical_search_ranks_chunks_with_more_query_words_first(index: &dyn KnowledgeIndex) {
    let scope = fresh_scope("lexical");
    let ids = ChunkIds::fresh();
    index.create_scope(&scope, 8).await.expect("create scope");
    upsert_texts(
        index,
        &scope,
        "animals",
        &[
            (ids.at(0), "A brown bear sleeps in the forest all winter."),
            (ids.at(1), "The quick brown fox jumps over the lazy dog."),
            (ids.at(2), "Quarterly revenue grew by ten percent."),
        ],
    )
    .await;

    let hits = index
        .lexical_search(&scope, "brown fox", 10, &Restriction::default())
        .await
        .expect("lexical search");
    // Words are matched as a bag, as BM25 does: a chunk with one of the words is still found,
    // below the chunk with both.
    assert_eq!(chunk_ids_of(&hits), vec![ids.at(1), ids.at(0)]);
    assert!(hits.iter().all(|hit| hit.document_id == "animals"));
    assert!(hits[0].score > hits[1].score && hits[1].score > 0.0);

    let hits = index
        .lexical_search(&scope, "revenue", 10, &Restriction::default())
        .await
        .expect("lexical search");
    assert_eq!(chunk_ids_of(&hits), vec![ids.at(2)]);
    let hits = index
        .lexical_search(&scope, "brown fox", 1, &Restriction::default())
        .await
        .expect("lexical search");
    assert_eq!(chunk_ids_of(&hits), vec![ids.at(1)]);
    index.drop_scope(&scope).await.expect("drop scope");
}

async fn lexical_search_stems_words(index: &dyn KnowledgeIndex) {
    let scope = fresh_scope("stemming");
    let ids = ChunkIds::fresh();
    index.create_scope(&scope, 8).await.expect("create scope");
    upsert_texts(
        index,
        &scope,
        "habits",
        &[
            (ids.at(0), "She runs every morning before work."),
            (ids.at(1), "Cats sleep most of the day."),
        ],
    )
    .await;
    for query in ["running", "run", "RUNS"] {
        let hits = index
            .lexical_search(&scope, query, 10, &Restriction::default())
            .await
            .expect("lexical search");
        assert_eq!(chunk_ids_of(&hits), vec![ids.at(0)], "query {query:?}");
    }
    let hits = index
        .lexical_search(&scope, "sleeping cat", 10, &Restriction::default())
        .await
        .expect("lexical search");
    assert_eq!(chunk_ids_of(&hits), vec![ids.at(1)]);
    index.drop_scope(&scope).await.expect("drop scope");
}

async fn lexical_queries_with_punctuation_never_fail(index: &dyn KnowledgeIndex) {
    let scope = fresh_scope("punctuation");
    let ids = ChunkIds::fresh();
    index.create_scope(&scope, 8).await.expect("create scope");
    upsert_texts(
        index,
        &scope,
        "fables",
        &[
            (ids.at(0), "The quick brown fox jumps over the lazy dog."),
            (ids.at(1), "Slow and steady wins the race."),
            // Extraction of binary formats can leave NUL characters behind.
            (ids.at(2), "binary\u{0}residue"),
        ],
    )
    .await;
    let hostile = [
        "\"fox",
        "fox\"",
        "'fox'",
        "fox & dog",
        "fox | dog",
        "!fox",
        "-fox",
        "+fox",
        "fox:*",
        "title:fox",
        "(fox",
        "fox)",
        "[fox]",
        "{fox}",
        "fox <-> dog",
        "fox^2",
        "fox~",
        "\\fox",
        "fox; DROP TABLE knowledge_scopes; --",
        "AND OR NOT",
        "*",
        "?",
        ":",
        "''",
        "\"\"",
        "fox/dog",
        "ünïcödé fox 🦊",
        "fox\u{0}dog",
    ];
    for query in hostile {
        let result = index
            .lexical_search(&scope, query, 10, &Restriction::default())
            .await;
        assert!(result.is_ok(), "query {query:?} failed: {result:?}");
    }
    for query in ["fox!", "\"fox", "(fox)", "fox?", "fox...", "'fox'"] {
        let hits = index
            .lexical_search(&scope, query, 10, &Restriction::default())
            .await
            .expect("lexical search");
        assert_eq!(chunk_ids_of(&hits), vec![ids.at(0)], "query {query:?}");
    }
    let hits = index
        .lexical_search(&scope, "residue", 10, &Restriction::default())
        .await
        .expect("lexical search");
    assert_eq!(chunk_ids_of(&hits), vec![ids.at(2)]);
    index.drop_scope(&scope).await.expect("drop scope");
}

async fn lexical_queries_without_words_find_nothing(index: &dyn KnowledgeIndex) {
    let scope = fresh_scope("empty-query");
    let ids = ChunkIds::fresh();
    index.create_scope(&scope, 8).await.expect("create scope");
    upsert_texts(
        index,
        &scope,
        "fables",
        &[(ids.at(0), "The quick brown fox jumps over the lazy dog.")],
    )
    .await;
    for query in ["", "   ", "\n\t", "!!! ???", "...", ",;"] {
        let hits = index
            .lexical_search(&scope, query, 10, &Restriction::default())
            .await
            .expect("lexical search");
        assert!(hits.is_empty(), "query {query:?} found {hits:?}");
    }
    index.drop_scope(&scope).await.expect("drop scope");
}

async fn restriction_by_document_ids_applies_to_both_modes(index: &dyn KnowledgeIndex) {
    let scope = fresh_scope("restriction");
    let ids = ChunkIds::fresh();
    index.create_scope(&scope, 8).await.expect("create scope");
    let near = unit(&[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    let nearish = unit(&[1.0, 0.3, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    let far = unit(&[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
    let documents = [
        ("a", ids.at(0), "apple pie recipe", &near),
        ("b", ids.at(1), "apple cider vinegar", &nearish),
        ("c", ids.at(2), "banana bread", &far),
    ];
    for (document_id, chunk_id, text, embedding) in documents {
        index
            .upsert_document(
                &scope,
                document_id,
                vec![IndexedChunk {
                    chunk_id,
                    text: text.to_owned(),
                    embedding: embedding.clone(),
                }],
            )
            .await
            .expect("upsert");
    }

    let only_b_and_c = restriction(&["b", "c"]);
    let hits = index
        .vector_search(&scope, vector_query(&near, 10), &only_b_and_c)
        .await
        .expect("vector search");
    assert_eq!(chunk_ids_of(&hits), vec![ids.at(1), ids.at(2)]);
    let hits = index
        .lexical_search(&scope, "apple", 10, &only_b_and_c)
        .await
        .expect("lexical search");
    assert_eq!(chunk_ids_of(&hits), vec![ids.at(1)]);
    assert_eq!(hits[0].document_id, "b");

    // Without a restriction both apple chunks are found.
    let hits = index
        .lexical_search(&scope, "apple", 10, &Restriction::default())
        .await
        .expect("lexical search");
    assert_eq!(
        chunk_ids_of(&hits).into_iter().collect::<HashSet<_>>(),
        HashSet::from([ids.at(0), ids.at(1)])
    );

    // An empty set, or only unknown documents, allows nothing.
    for allowed in [restriction(&[]), restriction(&["missing"])] {
        let hits = index
            .vector_search(&scope, vector_query(&near, 10), &allowed)
            .await
            .expect("vector search");
        assert!(hits.is_empty(), "{allowed:?} allowed {hits:?}");
        let hits = index
            .lexical_search(&scope, "apple banana", 10, &allowed)
            .await
            .expect("lexical search");
        assert!(hits.is_empty(), "{allowed:?} allowed {hits:?}");
    }
    index.drop_scope(&scope).await.expect("drop scope");
}

async fn replacing_a_document_removes_its_old_chunks_from_both_modes(index: &dyn KnowledgeIndex) {
    let scope = fresh_scope("replace");
    let ids = ChunkIds::fresh();
    index.create_scope(&scope, 8).await.expect("create scope");
    let first_axis = unit(&[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    let second_axis = unit(&[0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    let fourth_axis = unit(&[0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
    let old_version = vec![
        chunk(ids.at(0), "the old zebra", &first_axis),
        chunk(ids.at(1), "another zebra", &first_axis),
    ];
    index
        .upsert_document(&scope, "a", old_version)
        .await
        .expect("upsert");
    index
        .upsert_document(
            &scope,
            "b",
            vec![chunk(ids.at(9), "unrelated", &fourth_axis)],
        )
        .await
        .expect("upsert");
    let new_version = vec![
        chunk(ids.at(2), "the new giraffe", &second_axis),
        chunk(ids.at(3), "another giraffe", &second_axis),
    ];
    index
        .upsert_document(&scope, "a", new_version)
        .await
        .expect("replace");

    let hits = index
        .lexical_search(&scope, "zebra", 10, &Restriction::default())
        .await
        .expect("lexical search");
    assert!(hits.is_empty(), "old chunks are still found: {hits:?}");
    let hits = index
        .lexical_search(&scope, "giraffe", 10, &Restriction::default())
        .await
        .expect("lexical search");
    assert_eq!(
        sorted(chunk_ids_of(&hits)),
        vec![ids.at(2), ids.at(3)],
        "new chunks are not found"
    );
    let hits = index
        .vector_search(
            &scope,
            vector_query(&first_axis, 10),
            &Restriction::default(),
        )
        .await
        .expect("vector search");
    assert_eq!(
        sorted(chunk_ids_of(&hits)),
        vec![ids.at(2), ids.at(3), ids.at(9)]
    );
    assert_eq!(
        index.chunk_ids(&scope).await.expect("chunk ids"),
        vec![
            ("a".to_owned(), ids.at(2)),
            ("a".to_owned(), ids.at(3)),
            ("b".to_owned(), ids.at(9)),
        ]
    );

    // Replacing a document by no chunks empties it.
    index
        .upsert_document(&scope, "a", Vec::new())
        .await
        .expect("replace by nothing");
    assert_eq!(
        index.chunk_ids(&scope).await.expect("chunk ids"),
        vec![("b".to_owned(), ids.at(9))]
    );
    let hits = index
        .lexical_search(&scope, "giraffe", 10, &Restriction::default())
        .await
        .expect("lexical search");
    assert!(hits.is_empty());
    index.drop_scope(&scope).await.expect("drop scope");
}

async fn deleting_a_document_removes_its_chunks(index: &dyn KnowledgeIndex) {
    let scope = fresh_scope("delete");
    let ids = ChunkIds::fresh();
    index.create_scope(&scope, 8).await.expect("create scope");
    let embedding = unit(&[1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    index
        .upsert_document(
            &scope,
            "a",
            vec![
                chunk(ids.at(0), "alpha document", &embedding),
                chunk(ids.at(1), "alpha again", &embedding),
            ],
        )
        .await
        .expect("upsert");
    index
        .upsert_document(
            &scope,
            "b",
            vec![chunk(ids.at(2), "beta document", &embedding)],
        )
        .await
        .expect("upsert");

    index.delete_document(&scope, "a").await.expect("delete");
    assert_eq!(
        index.chunk_ids(&scope).await.expect("chunk ids"),
        vec![("b".to_owned(), ids.at(2))]
    );
    let hits = index
        .vector_search(
            &scope,
            vector_query(&embedding, 10),
            &Restriction::default(),
        )
        .await
        .expect("vector search");
    assert_eq!(chunk_ids_of(&hits), vec![ids.at(2)]);
    let hits = index
        .lexical_search(&scope, "alpha document", 10, &Restriction::default())
        .await
        .expect("lexical search");
    assert_eq!(chunk_ids_of(&hits), vec![ids.at(2)]);

    // Deleting again, or a document that never existed, is not an error.
    index
        .delete_document(&scope, "a")
        .await
        .expect("delete again");
    index
        .delete_document(&scope, "never-indexed")
        .await
        .expect("delete unknown");
    index.drop_scope(&scope).await.expect("drop scope");
}

async fn dropping_a_scope_removes_everything_in_it(index: &dyn KnowledgeIndex) {
    let scope = fresh_scope("drop");
    let ids = ChunkIds::fresh();
    index.create_scope(&scope, 8).await.expect("create scope");
    let embedding = unit(&[0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    index
        .upsert_document(
            &scope,
            "a",
            vec![chunk(ids.at(0), "doomed words", &embedding)],
        )
        .await
        .expect("upsert");
    index.drop_scope(&scope).await.expect("drop scope");
    assert!(index.chunk_ids(&scope).await.expect("chunk ids").is_empty());
    index.drop_scope(&scope).await.expect("drop scope again");

    // The scope can be created again, even for another dimension, and starts empty.
    index
        .create_scope(&scope, 4)
        .await
        .expect("create scope again");
    assert!(index.chunk_ids(&scope).await.expect("chunk ids").is_empty());
    let hits = index
        .vector_search(
            &scope,
            vector_query(&unit(&[0.0, 0.0, 1.0, 0.0]), 10),
            &Restriction::default(),
        )
        .await
        .expect("vector search");
    assert!(hits.is_empty());
    let hits = index
        .lexical_search(&scope, "doomed", 10, &Restriction::default())
        .await
        .expect("lexical search");
    assert!(hits.is_empty());
    // Chunk ids of a dropped scope are free for reuse.
    index
        .upsert_document(
            &scope,
            "a",
            vec![chunk(ids.at(0), "reborn", &unit(&[1.0, 0.0, 0.0, 0.0]))],
        )
        .await
        .expect("upsert after re-creating");
    assert_eq!(
        index.chunk_ids(&scope).await.expect("chunk ids"),
        vec![("a".to_owned(), ids.at(0))]
    );
    index.drop_scope(&scope).await.expect("drop scope");
}

async fn tenants_never_mix(index: &dyn KnowledgeIndex) {
    let collection_id = format!("shared-{:016x}", rand::random::<u64>());
    let first = Scope {
        tenant_id: format!("tenant-{:016x}", rand::random::<u64>()),
        collection_id: collection_id.clone(),
    };
    let second = Scope {
        tenant_id: format!("tenant-{:016x}", rand::random::<u64>()),
        collection_id,
    };
    let ids = ChunkIds::fresh();
    let embedding = unit(&[1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    for (scope, chunk_id) in [(&first, ids.at(0)), (&second, ids.at(1))] {
        index.create_scope(scope, 8).await.expect("create scope");
        // The same document id and text in both tenants.
        index
            .upsert_document(
                scope,
                "handbook",
                vec![chunk(chunk_id, "the secret handbook", &embedding)],
            )
            .await
            .expect("upsert");
    }

    for (scope, own) in [(&first, ids.at(0)), (&second, ids.at(1))] {
        let hits = index
            .vector_search(scope, vector_query(&embedding, 10), &Restriction::default())
            .await
            .expect("vector search");
        assert_eq!(chunk_ids_of(&hits), vec![own]);
        let hits = index
            .lexical_search(scope, "secret handbook", 10, &Restriction::default())
            .await
            .expect("lexical search");
        assert_eq!(chunk_ids_of(&hits), vec![own]);
        assert_eq!(
            index.chunk_ids(scope).await.expect("chunk ids"),
            vec![("handbook".to_owned(), own)]
        );
    }

    // Deleting or dropping in one tenant leaves the other alone.
    index
        .delete_document(&first, "handbook")
        .await
        .expect("delete");
    assert_eq!(
        index.chunk_ids(&second).await.expect("chunk ids"),
        vec![("handbook".to_owned(), ids.at(1))]
    );
    index.drop_scope(&first).await.expect("drop scope");
    let hits = index
        .lexical_search(&second, "secret", 10, &Restriction::default())
        .await
        .expect("lexical search");
    assert_eq!(chunk_ids_of(&hits), vec![ids.at(1)]);
    index.drop_scope(&second).await.expect("drop scope");
}

async fn dimension_mismatches_are_errors(index: &dyn KnowledgeIndex) {
    let scope = fresh_scope("dimensions");
    let ids = ChunkIds::fresh();
    index.create_scope(&scope, 8).await.expect("create scope");
    let right = unit(&[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    let short = unit(&[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    let result = index
        .upsert_document(
            &scope,
            "a",
            vec![
                chunk(ids.at(0), "fine", &right),
                chunk(ids.at(1), "too short", &short),
            ],
        )
        .await;
    assert!(
        matches!(
            result,
            Err(IndexError::Dimensions {
                expected: 8,
                actual: 7,
                ..
            })
        ),
        "{result:?}"
    );
    // Nothing of the rejected document went in.
    assert!(index.chunk_ids(&scope).await.expect("chunk ids").is_empty());

    let long = unit(&[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    let result = index
        .vector_search(&scope, vector_query(&long, 3), &Restriction::default())
        .await;
    assert!(
        matches!(
            result,
            Err(IndexError::Dimensions {
                expected: 8,
                actual: 9,
                ..
            })
        ),
        "{result:?}"
    );

    // A scope keeps its dimension until it is dropped.
    let result = index.create_scope(&scope, 16).await;
    assert!(
        result.is_err(),
        "re-creating with 16 dimensions: {result:?}"
    );
    index.drop_scope(&scope).await.expect("drop scope");
}

async fn chunk_ids_lists_exactly_what_is_live(index: &dyn KnowledgeIndex) {
    let scope = fresh_scope("chunk-ids");
    let ids = ChunkIds::fresh();
    index.create_scope(&scope, 8).await.expect("create scope");
    assert!(index.chunk_ids(&scope).await.expect("chunk ids").is_empty());
    let mut rng = StdRng::seed_from_u64(7);
    let mut live: Vec<(String, u64)> = Vec::new();
    let mut next_offset = 0;
    // Documents are written, rewritten and deleted in a fixed pseudo-random order; a model of
    // what should be live is kept alongside.
    for step in 0..30 {
        let document_id = format!("doc-{}", rng.gen_range(0..6));
        live.retain(|(live_document, _)| *live_document != document_id);
        if step % 7 == 6 {
            index
                .delete_document(&scope, &document_id)
                .await
                .expect("delete");
        } else {
            let n_chunks = rng.gen_range(0..4);
            let mut chunks = Vec::new();
            for _ in 0..n_chunks {
                let chunk_id = ids.at(next_offset);
                next_offset += 1;
                chunks.push(chunk(chunk_id, "words", &random_unit(&mut rng, 8)));
                live.push((document_id.clone(), chunk_id));
            }
            index
                .upsert_document(&scope, &document_id, chunks)
                .await
                .expect("upsert");
        }
        live.sort();
        assert_eq!(
            index.chunk_ids(&scope).await.expect("chunk ids"),
            live,
            "after step {step}"
        );
    }
    index.drop_scope(&scope).await.expect("drop scope");
}

async fn a_small_scope_is_not_starved_by_a_large_one(index: &dyn KnowledgeIndex) {
    let small = fresh_scope("small");
    let large = fresh_scope("large");
    let ids = ChunkIds::fresh();
    let mut rng = StdRng::seed_from_u64(11);
    let query = unit(&[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    index.create_scope(&small, 8).await.expect("create scope");
    index.create_scope(&large, 8).await.expect("create scope");
    // The small scope's chunks are far from the query; the large scope's are all close to it,
    // so an index shared by both finds only the large scope's chunks among its first candidates.
    let far = unit(&[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
    index
        .upsert_document(
            &small,
            "only",
            vec![
                chunk(ids.at(0), "small one", &far),
                chunk(ids.at(1), "small two", &far),
            ],
        )
        .await
        .expect("upsert");
    for document_idx in 0..10 {
        let chunks = (0..30)
            .map(|chunk_idx| {
                let mut embedding = query.clone();
                for value in embedding.iter_mut() {
                    *value += rng.gen_range(-0.05..0.05);
                }
                chunk(
                    ids.at(100 + document_idx * 30 + chunk_idx),
                    "large",
                    &unit(&embedding),
                )
            })
            .collect();
        index
            .upsert_document(&large, &format!("doc-{document_idx}"), chunks)
            .await
            .expect("upsert");
    }
    index
        .upsert_document(&large, "far", vec![chunk(ids.at(99), "far", &far)])
        .await
        .expect("upsert");

    let few_candidates = VectorQuery {
        embedding: &query,
        top_k: 2,
        num_candidates: 10,
    };
    let hits = index
        .vector_search(&small, few_candidates, &Restriction::default())
        .await
        .expect("vector search");
    assert_eq!(sorted(chunk_ids_of(&hits)), vec![ids.at(0), ids.at(1)]);
    // Likewise a restriction to one far document of the large scope.
    let hits = index
        .vector_search(&large, few_candidates, &restriction(&["far"]))
        .await
        .expect("vector search");
    assert_eq!(chunk_ids_of(&hits), vec![ids.at(99)]);
    index.drop_scope(&small).await.expect("drop scope");
    index.drop_scope(&large).await.expect("drop scope");
}

async fn recall_at_10_is_at_least_0_9(index: &dyn KnowledgeIndex) {
    const DIMENSIONS: usize = 64;
    const N_DOCUMENTS: usize = 20;
    const CHUNKS_PER_DOCUMENT: usize = 100;
    const N_QUERIES: usize = 50;
    const TOP_K: usize = 10;
    let scope = fresh_scope("recall");
    let ids = ChunkIds::fresh();
    let mut rng = StdRng::seed_from_u64(42);
    index
        .create_scope(&scope, DIMENSIONS)
        .await
        .expect("create scope");
    let mut corpus: Vec<(u64, Vec<f32>)> = Vec::new();
    for document_idx in 0..N_DOCUMENTS {
        let mut chunks = Vec::new();
        for chunk_idx in 0..CHUNKS_PER_DOCUMENT {
            let chunk_id = ids.at(document_idx * CHUNKS_PER_DOCUMENT + chunk_idx);
            let embedding = random_unit(&mut rng, DIMENSIONS);
            chunks.push(chunk(chunk_id, "vector", &embedding));
            corpus.push((chunk_id, embedding));
        }
        index
            .upsert_document(&scope, &format!("doc-{document_idx}"), chunks)
            .await
            .expect("upsert");
    }

    let mut n_found = 0;
    for _ in 0..N_QUERIES {
        let query = random_unit(&mut rng, DIMENSIONS);
        let mut exact: Vec<(f32, u64)> = corpus
            .iter()
            .map(|(chunk_id, embedding)| (dot(&query, embedding), *chunk_id))
            .collect();
        exact.sort_by(|left, right| right.0.total_cmp(&left.0));
        let exact: HashSet<u64> = exact.iter().take(TOP_K).map(|pair| pair.1).collect();
        let hits = index
            .vector_search(
                &scope,
                VectorQuery {
                    embedding: &query,
                    top_k: TOP_K,
                    num_candidates: 100,
                },
                &Restriction::default(),
            )
            .await
            .expect("vector search");
        assert_eq!(hits.len(), TOP_K);
        n_found += hits
            .iter()
            .filter(|hit| exact.contains(&hit.chunk_id))
            .count();
    }
    let recall = n_found as f64 / (N_QUERIES * TOP_K) as f64;
    eprintln!("{}: recall@10 = {recall:.3}", index.backend());
    assert!(recall >= 0.9, "recall@10 is {recall:.3}");
    index.drop_scope(&scope).await.expect("drop scope");
}

/// A scope no other test, and no earlier run against the same database, uses.
fn fresh_scope(purpose: &str) -> Scope {
    Scope {
        tenant_id: format!("tenant-{:016x}", rand::random::<u64>()),
        collection_id: format!("{purpose}-{:016x}", rand::random::<u64>()),
    }
}

/// Chunk ids are unique across scopes (the pgvector backend keys its tables by them), so each
/// test draws a random base and numbers its chunks from there.
#[derive(Debug, Clone, Copy)]
struct ChunkIds {
    base: u64,
}

impl ChunkIds {
    fn fresh() -> Self {
        // Below 2^62 so that every id fits PostgreSQL's BIGINT, and with room for 2^20 chunks.
        ChunkIds {
            base: (rand::random::<u64>() >> 2) & !((1 << 20) - 1),
        }
    }

    fn at(self, offset: usize) -> u64 {
        self.base + offset as u64
    }
}

fn chunk(chunk_id: u64, text: &str, embedding: &[f32]) -> IndexedChunk {
    IndexedChunk {
        chunk_id,
        text: text.to_owned(),
        embedding: embedding.to_vec(),
    }
}

/// Indexes one document whose chunks all have the same embedding: for tests of lexical search.
async fn upsert_texts(
    index: &dyn KnowledgeIndex,
    scope: &Scope,
    document_id: &str,
    texts: &[(u64, &str)],
) {
    let embedding = unit(&[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
    let chunks = texts
        .iter()
        .map(|(chunk_id, text)| chunk(*chunk_id, text, &embedding))
        .collect();
    index
        .upsert_document(scope, document_id, chunks)
        .await
        .expect("upsert");
}

fn vector_query(embedding: &[f32], top_k: usize) -> VectorQuery<'_> {
    VectorQuery {
        embedding,
        top_k,
        num_candidates: 40.max(top_k),
    }
}

fn restriction(document_ids: &[&str]) -> Restriction {
    Restriction {
        document_ids: Some(document_ids.iter().map(|id| (*id).to_owned()).collect()),
    }
}

fn chunk_ids_of(hits: &[Hit]) -> Vec<u64> {
    hits.iter().map(|hit| hit.chunk_id).collect()
}

fn sorted(mut values: Vec<u64>) -> Vec<u64> {
    values.sort_unstable();
    values
}

fn unit(values: &[f32]) -> Vec<f32> {
    let norm = dot(values, values).sqrt();
    values.iter().map(|value| value / norm).collect()
}

fn random_unit(rng: &mut StdRng, dimensions: usize) -> Vec<f32> {
    // Uniform coordinates are not uniform on the sphere, but the recall test needs only a
    // reproducible spread of directions, not a particular distribution.
    let values: Vec<f32> = (0..dimensions).map(|_| rng.gen_range(-1.0..1.0)).collect();
    unit(&values)
}

fn dot(left: &[f32], right: &[f32]) -> f32 {
    left.iter().zip(right).map(|(l, r)| l * r).sum()
}
