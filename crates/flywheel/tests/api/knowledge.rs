//! The knowledge base end to end: collections, uploads of Markdown, HTML and PDF, chunks with
//! citations' offsets, the three search modes, filters, versions, idempotency, background jobs,
//! bad files, roles, tenant isolation, grounded answers and the index surviving a restart.
//!
//! Embeddings are real: the local all-MiniLM-L6-v2 (fetched once into the workspace's
//! `models/`, as for the local-model tests). Runs against the embedded backend, and against
//! pgvector too when `FLYWHEEL_TEST_PGVECTOR_URL` is set (CI starts one with pgserver).

use std::io::Write;
use std::time::Duration;

use base64::Engine;
use flywheel_config::{
    Config, KnowledgeBackend, ModelsConfig, PriceOverride, ProviderConfig, ProviderKindConfig,
    SecretRef, DEFAULT_EMBEDDING_MODEL,
};
use flywheel_mock_provider::MockServer;
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, TestApp, TestResponse};
use crate::local_models::models_dir;

const ROOFING: &str = "# Roofing guide\n\nIntro about roofs.\n\n## Metal roofs\n\nStanding seam metal roofs last fifty years and reflect solar heat, which lowers cooling bills.\n\n## Asphalt shingles\n\nArchitectural asphalt shingles are the cheapest option and are installed in a single day.\n";

const LEADS: &str = "<html><head><title>Lead flow playbook</title><script>var x = 1;</script></head><body><h1>Lead flow</h1><p>Contractors control lead flow with referral programs and follow-up cadences.</p><h2>Follow-up</h2><p>Call every inbound lead within five minutes; speed to lead doubles the closing rate.</p></body></html>";

/// Which index backends to run against.
fn backends() -> Vec<KnowledgeBackend> {
    let mut backends = vec![KnowledgeBackend::Embedded];
    match std::env::var("FLYWHEEL_TEST_PGVECTOR_URL") {
        Ok(url) if !url.is_empty() => backends.push(KnowledgeBackend::Pgvector),
        _ => eprintln!(
            "notice: FLYWHEEL_TEST_PGVECTOR_URL is not set; the knowledge tests run against the embedded backend only"
        ),
    }
    backends
}

struct Knowledge {
    app: TestApp,
    _mock: MockServer,
    _key_file: tempfile::NamedTempFile,
}

async fn knowledge_app(backend: KnowledgeBackend) -> Knowledge {
    let dir = models_dir();
    let mock = MockServer::start().await.unwrap();
    let base_url = mock.base_url();
    let mut key_file = tempfile::NamedTempFile::new().unwrap();
    key_file.write_all(b"sk-knowledge-test-key").unwrap();
    let key = Some(SecretRef::File {
        file: key_file.path().to_owned(),
    });
    let app = spawn_app_with(move |config: &mut Config| {
        config.models = ModelsConfig {
            dir,
            auto_fetch: false,
            ..ModelsConfig::default()
        };
        // Only the embedding model: the answers come from the mock upstream.
        config.models.chat.clear();
        config.gateway.providers.insert(
            "mock".to_owned(),
            ProviderConfig {
                kind: ProviderKindConfig::OpenaiCompatible,
                base_url: Some(format!("{base_url}/v1")),
                timeout: Duration::from_secs(5),
                api_key: key,
                ..ProviderConfig::default()
            },
        );
        config.gateway.prices.push(PriceOverride {
            provider: "mock".to_owned(),
            model: "gpt-mock".to_owned(),
            input: 1.0,
            cached_input: None,
            output: 2.0,
        });
        config.knowledge.answer_model = "mock/gpt-mock".to_owned();
        config.knowledge.backend = backend;
        if backend == KnowledgeBackend::Pgvector {
            config.knowledge.pgvector_url = std::env::var("FLYWHEEL_TEST_PGVECTOR_URL").ok();
        }
        // Small chunks so the test documents have several.
        config.knowledge.chunk_max_tokens = 48;
        config.knowledge.chunk_overlap_tokens = 8;
        config.knowledge.sync_max_chars = 2_000;
    })
    .await;
    wait_for_embeddings(&app).await;
    Knowledge {
        app,
        _mock: mock,
        _key_file: key_file,
    }
}

async fn wait_for_embeddings(app: &TestApp) {
    for _ in 0..600 {
        let ready = app.get("/readyz", None).await;
        let models = ready.json()["models"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if models.iter().any(|model| {
            model["id"] == format!("local/{DEFAULT_EMBEDDING_MODEL}") && model["state"] == "ready"
        }) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the local embedding model did not load within a minute");
}

impl Knowledge {
    fn key(&self) -> String {
        self.app.admin_key.clone()
    }

    async fn create_collection(&self, key: &str, name: &str) -> Value {
        let response = self
            .app
            .post_json(
                "/v1/knowledge/collections",
                Some(key),
                &json!({"name": name}),
            )
            .await;
        assert_eq!(response.status, 201, "{}", response.text);
        response.json()
    }

    async fn add_json(&self, key: &str, collection: &str, body: Value) -> TestResponse {
        self.app
            .post_json(
                &format!("/v1/knowledge/collections/{collection}/documents"),
                Some(key),
                &body,
            )
            .await
    }

    async fn upload(
        &self,
        key: &str,
        collection: &str,
        query: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> TestResponse {
        let request = self
            .app
            .client
            .post(self.app.url(&format!(
                "/v1/knowledge/collections/{collection}/documents?{query}"
            )))
            .bearer_auth(key)
            .header("content-type", content_type)
            .body(bytes);
        self.app.send(request).await
    }

    async fn search(&self, key: &str, body: Value) -> Value {
        let response = self
            .app
            .post_json("/v1/knowledge/search", Some(key), &body)
            .await;
        assert_eq!(response.status, 200, "{}", response.text);
        response.json()
    }

    async fn titles(&self, key: &str, collection: &str, query: &str, mode: &str) -> Vec<String> {
        let found = self
            .search(
                key,
                json!({"collection": collection, "query": query, "mode": mode, "top_k": 3}),
            )
            .await;
        found["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|hit| hit["title"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// A valid two-page PDF with the given page texts (Helvetica, one line per page), built by
/// hand so the test needs no PDF writer.
pub fn pdf_with_pages(pages: &[&str]) -> Vec<u8> {
    let mut objects: Vec<String> = Vec::new();
    let page_ids: Vec<usize> = (0..pages.len()).map(|idx| 4 + idx * 2).collect();
    objects.push("<< /Type /Catalog /Pages 2 0 R >>".to_owned());
    objects.push(format!(
        "<< /Type /Pages /Kids [{}] /Count {} >>",
        page_ids
            .iter()
            .map(|id| format!("{id} 0 R"))
            .collect::<Vec<_>>()
            .join(" "),
        pages.len()
    ));
    objects.push(
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
            .to_owned(),
    );
    for (idx, text) in pages.iter().enumerate() {
        let content_id = page_ids[idx] + 1;
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents {content_id} 0 R >>"
        ));
        let stream = format!("BT /F1 12 Tf 72 720 Td ({text}) Tj ET");
        objects.push(format!(
            "<< /Length {} >>\nstream\n{stream}\nendstream",
            stream.len()
        ));
    }
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (idx, object) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n{object}\nendobj\n", idx + 1).as_bytes());
    }
    let xref = pdf.len();
    pdf.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for offset in offsets {
        pdf.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    pdf
}

#[tokio::test]
async fn documents_in_three_formats_are_chunked_cited_and_found_in_every_mode() {
    for backend in backends() {
        let kb = knowledge_app(backend).await;
        let key = kb.key();
        let collection = kb.create_collection(&key, "guides").await;
        assert_eq!(collection["dimensions"], 384);
        assert_eq!(
            collection["embedding_model"],
            format!("local/{DEFAULT_EMBEDDING_MODEL}")
        );

        let markdown = kb
            .add_json(
                &key,
                "guides",
                json!({"text": ROOFING, "file_name": "roofing.md", "tags": ["roofing", "materials"], "metadata": {"region": "south"}}),
            )
            .await;
        assert_eq!(markdown.status, 201, "{}", markdown.text);
        let markdown = markdown.json();
        assert_eq!(markdown["outcome"], "created");
        assert_eq!(markdown["title"], "Roofing guide");
        assert!(markdown["searchable"].as_bool().unwrap());
        assert!(markdown["chunk_count"].as_i64().unwrap() >= 2, "{markdown}");

        let html = kb
            .upload(
                &key,
                "guides",
                "file_name=leads.html&tags=sales",
                "text/html",
                LEADS.as_bytes().to_vec(),
            )
            .await;
        assert_eq!(html.status, 201, "{}", html.text);
        assert_eq!(html.json()["title"], "Lead flow playbook");

        let pdf = pdf_with_pages(&[
            "Warranty claims must be filed within thirty days of installation.",
            "Gutter guards prevent clogging from pine needles.",
        ]);
        let pdf_doc = kb
            .add_json(
                &key,
                "guides",
                json!({"content_base64": base64::engine::general_purpose::STANDARD.encode(&pdf), "file_name": "warranty.pdf", "title": "Warranty terms"}),
            )
            .await;
        assert_eq!(pdf_doc.status, 201, "{}", pdf_doc.text);
        assert_eq!(pdf_doc.json()["pages"], 2);

        // The extracted text is inspectable and every chunk is an exact slice of it.
        let id = markdown["id"].as_str().unwrap();
        let detail = kb
            .app
            .get(
                &format!("/v1/knowledge/collections/guides/documents/{id}?include=text,chunks"),
                Some(&key),
            )
            .await;
        assert_eq!(detail.status, 200, "{}", detail.text);
        let detail = detail.json();
        let text: Vec<char> = detail["extracted_text"].as_str().unwrap().chars().collect();
        for chunk in detail["chunks"].as_array().unwrap() {
            let (start, end) = (
                chunk["start_offset"].as_u64().unwrap() as usize,
                chunk["end_offset"].as_u64().unwrap() as usize,
            );
            let slice: String = text[start..end].iter().collect();
            assert_eq!(slice, chunk["content"].as_str().unwrap());
        }
        let metal = detail["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|chunk| chunk["content"].as_str().unwrap().contains("Standing seam"))
            .expect("a chunk holds the metal-roof paragraph");
        assert_eq!(
            metal["heading_path"],
            json!(["Roofing guide", "Metal roofs"])
        );

        // Each mode finds the right document first.
        for mode in ["vector", "lexical", "hybrid"] {
            let titles = kb
                .titles(&key, "guides", "how long do metal roofs last", mode)
                .await;
            assert_eq!(
                titles.first().map(String::as_str),
                Some("Roofing guide"),
                "{mode}: {titles:?}"
            );
            let titles = kb
                .titles(&key, "guides", "speed to lead and follow-up calls", mode)
                .await;
            assert_eq!(
                titles.first().map(String::as_str),
                Some("Lead flow playbook"),
                "{mode}: {titles:?}"
            );
            let titles = kb
                .titles(&key, "guides", "warranty claim deadline", mode)
                .await;
            assert_eq!(
                titles.first().map(String::as_str),
                Some("Warranty terms"),
                "{mode}: {titles:?}"
            );
        }
        let found = kb
            .search(
                &key,
                json!({"collection": "guides", "query": "metal roofs", "top_k": 1}),
            )
            .await;
        let hit = &found["results"][0];
        assert_eq!(hit["document_id"], markdown["id"]);
        assert_eq!(found["num_candidates"], 10);
        assert!(hit["heading_path"].as_array().is_some());
        assert!(hit["end_offset"].as_i64() > hit["start_offset"].as_i64());

        // Filters: tags, metadata, document ids.
        let filtered = kb
            .search(
                &key,
                json!({"collection": "guides", "query": "metal roofs", "filter": {"tags": ["sales"]}}),
            )
            .await;
        for hit in filtered["results"].as_array().unwrap() {
            assert_eq!(hit["title"], "Lead flow playbook");
        }
        let filtered = kb
            .search(
                &key,
                json!({"collection": "guides", "query": "roofs", "mode": "lexical", "filter": {"metadata": {"region": "north"}}}),
            )
            .await;
        assert_eq!(filtered["results"], json!([]));

        // Validation of the search request.
        for (body, field) in [
            (
                json!({"collection": "guides", "query": "x", "top_k": 21}),
                "top_k",
            ),
            (json!({"collection": "guides", "query": "  "}), "query"),
            (
                json!({"collection": "guides", "query": "x", "mode": "fuzzy"}),
                "mode",
            ),
        ] {
            let response = kb
                .app
                .post_json("/v1/knowledge/search", Some(&key), &body)
                .await;
            assert_eq!(response.status, 422, "{}", response.text);
            assert!(response.text.contains(field), "{}", response.text);
        }
        let missing = kb
            .app
            .post_json(
                "/v1/knowledge/search",
                Some(&key),
                &json!({"collection": "nope", "query": "x"}),
            )
            .await;
        assert_eq!(missing.status, 404);
    }
}

#[tokio::test]
async fn versions_idempotency_deletion_jobs_and_bad_files() {
    for backend in backends() {
        let kb = knowledge_app(backend).await;
        let key = kb.key();
        kb.create_collection(&key, "docs").await;
        let first = kb
            .add_json(&key, "docs", json!({"text": "Solar panels need south-facing roofs.", "source": "solar.md", "format": "markdown"}))
            .await;
        assert_eq!(first.status, 201, "{}", first.text);
        let id = first.json()["id"].as_str().unwrap().to_owned();

        // The same content again does nothing.
        let again = kb
            .add_json(&key, "docs", json!({"text": "Solar panels need south-facing roofs.", "source": "solar.md", "format": "markdown"}))
            .await;
        assert_eq!(again.status, 200, "{}", again.text);
        assert_eq!(again.json()["outcome"], "unchanged");
        assert_eq!(again.json()["id"], id.as_str());

        // A new version by source replaces the old one in every mode.
        let updated = kb
            .add_json(&key, "docs", json!({"text": "Heat pumps replace furnaces in mild climates.", "source": "solar.md", "format": "markdown"}))
            .await;
        assert_eq!(updated.status, 201, "{}", updated.text);
        assert_eq!(updated.json()["id"], id.as_str());
        let lexical = kb
            .search(
                &key,
                json!({"collection": "docs", "query": "solar panels", "mode": "lexical"}),
            )
            .await;
        assert_eq!(lexical["results"], json!([]), "the old version is gone");
        let hybrid = kb
            .search(
                &key,
                json!({"collection": "docs", "query": "heat pumps", "mode": "hybrid"}),
            )
            .await;
        assert!(hybrid["results"][0]["content"]
            .as_str()
            .unwrap()
            .contains("Heat pumps"));
        for hit in hybrid["results"].as_array().unwrap() {
            assert!(!hit["content"].as_str().unwrap().contains("Solar"), "{hit}");
        }

        // A large document is ingested by a job.
        let long: String = (0..60)
            .map(|idx| format!("## Section {idx}\n\nParagraph {idx} about insulation batts and vapour barriers in attics.\n\n"))
            .collect();
        let queued = kb
            .add_json(
                &key,
                "docs",
                json!({"text": long, "file_name": "insulation.md"}),
            )
            .await;
        assert_eq!(queued.status, 202, "{}", queued.text);
        let queued = queued.json();
        assert_eq!(queued["outcome"], "queued");
        assert!(!queued["searchable"].as_bool().unwrap());
        let job_id = queued["job"]["id"].as_str().unwrap();
        let mut job = Value::Null;
        for _ in 0..600 {
            job = kb
                .app
                .get(&format!("/v1/knowledge/jobs/{job_id}"), Some(&key))
                .await
                .json();
            if job["status"] == "succeeded" || job["status"] == "failed" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["done"], job["total"]);
        assert!(job["total"].as_i64().unwrap() >= 10, "{job}");
        let found = kb
            .search(&key, json!({"collection": "docs", "query": "vapour barriers in attics", "mode": "lexical"}))
            .await;
        assert_eq!(found["results"][0]["title"], "insulation.md");

        // Deleting makes it unsearchable at once.
        let doc_id = queued["id"].as_str().unwrap();
        let deleted = kb
            .app
            .delete(
                &format!("/v1/knowledge/collections/docs/documents/{doc_id}"),
                Some(&key),
            )
            .await;
        assert_eq!(deleted.status, 204, "{}", deleted.text);
        let found = kb
            .search(&key, json!({"collection": "docs", "query": "vapour barriers in attics", "mode": "hybrid"}))
            .await;
        for hit in found["results"].as_array().unwrap() {
            assert_ne!(hit["document_id"], doc_id);
        }

        // Bad files: 422 naming the file and the reason; nothing half-stored.
        let corrupt = kb
            .upload(
                &key,
                "docs",
                "file_name=broken.pdf",
                "application/pdf",
                b"%PDF-1.4\n garbage \x00\x01".to_vec(),
            )
            .await;
        assert_eq!(corrupt.status, 422, "{}", corrupt.text);
        assert!(corrupt.text.contains("broken.pdf"), "{}", corrupt.text);
        let empty = kb
            .add_json(
                &key,
                "docs",
                json!({"text": "   \n\n  ", "file_name": "blank.md"}),
            )
            .await;
        assert_eq!(empty.status, 422, "{}", empty.text);
        assert!(empty.text.contains("blank.md"), "{}", empty.text);
        let unknown = kb
            .upload(
                &key,
                "docs",
                "file_name=data.bin",
                "application/octet-stream",
                vec![1, 2, 3, 4],
            )
            .await;
        assert_eq!(unknown.status, 422, "{}", unknown.text);
        assert!(unknown.text.contains("format"), "{}", unknown.text);
        let not_utf8 = kb
            .upload(
                &key,
                "docs",
                "file_name=latin1.txt",
                "text/plain",
                vec![b'c', b'a', b'f', 0xE9],
            )
            .await;
        assert_eq!(not_utf8.status, 422, "{}", not_utf8.text);
        assert!(not_utf8.text.contains("UTF-8"), "{}", not_utf8.text);
        let listed = kb
            .app
            .get("/v1/knowledge/collections/docs/documents", Some(&key))
            .await;
        assert_eq!(
            listed.json()["data"].as_array().unwrap().len(),
            1,
            "{}",
            listed.text
        );
    }
}

#[tokio::test]
async fn roles_and_tenants_are_kept_apart() {
    let kb = knowledge_app(KnowledgeBackend::Embedded).await;
    let key = kb.key();
    kb.create_collection(&key, "shared-name").await;
    let added = kb
        .add_json(&key, "shared-name", json!({"text": "Default tenant secret: the margin on metal roofs is 40 percent.", "format": "text"}))
        .await;
    assert_eq!(added.status, 201, "{}", added.text);

    kb.app.create_tenant("acme").await;
    let (acme_admin, _) = kb.app.create_key("acme", "admin", None).await;
    let (acme_service, _) = kb.app.create_key("acme", "service", Some("ingester")).await;
    let contractor = kb
        .app
        .issue_token(
            "acme",
            "contractor-1",
            "contractor",
            Duration::from_secs(600),
        )
        .await;

    // Another tenant does not see the collection, even by id.
    let collections = kb
        .app
        .get("/v1/knowledge/collections", Some(&acme_admin))
        .await;
    assert_eq!(collections.json()["data"], json!([]));
    let own_id = kb
        .app
        .get("/v1/knowledge/collections/shared-name", Some(&key))
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let by_id = kb
        .app
        .get(
            &format!("/v1/knowledge/collections/{own_id}"),
            Some(&acme_admin),
        )
        .await;
    assert_eq!(by_id.status, 404);

    // Same collection name in the other tenant: only its own chunks come back.
    let response = kb
        .app
        .post_json(
            "/v1/knowledge/collections",
            Some(&acme_service),
            &json!({"name": "x"}),
        )
        .await;
    assert_eq!(response.status, 403, "services do not manage collections");
    kb.create_collection(&acme_admin, "shared-name").await;
    let added = kb
        .add_json(
            &acme_service,
            "shared-name",
            json!({"text": "Acme notes on metal roofs and their margins.", "format": "text"}),
        )
        .await;
    assert_eq!(added.status, 201, "{}", added.text);
    let denied = kb
        .add_json(
            &contractor,
            "shared-name",
            json!({"text": "Contractor upload.", "format": "text"}),
        )
        .await;
    assert_eq!(denied.status, 403, "{}", denied.text);
    for mode in ["vector", "lexical", "hybrid"] {
        let found = kb
            .search(&contractor, json!({"collection": "shared-name", "query": "margin on metal roofs", "mode": mode}))
            .await;
        let results = found["results"].as_array().unwrap();
        assert!(!results.is_empty(), "{mode}");
        for hit in results {
            assert!(
                !hit["content"]
                    .as_str()
                    .unwrap()
                    .contains("Default tenant secret"),
                "{mode}: {hit}"
            );
        }
    }
}

#[tokio::test]
async fn answers_cite_their_passages_and_are_logged() {
    let kb = knowledge_app(KnowledgeBackend::Embedded).await;
    let key = kb.key();
    kb.create_collection(&key, "faq").await;
    let added = kb
        .add_json(
            &key,
            "faq",
            json!({"text": ROOFING, "file_name": "roofing.md"}),
        )
        .await;
    assert_eq!(added.status, 201, "{}", added.text);
    let answer = kb
        .app
        .post_json(
            "/v1/knowledge/answer",
            Some(&key),
            &json!({"collection": "faq", "question": "How long do metal roofs last?", "top_k": 2}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let answer = answer.json();
    // The mock model repeats its prompt, so the answer carries the numbered passages.
    assert!(
        answer["answer"].as_str().unwrap().contains("[1]"),
        "{answer}"
    );
    let citations = answer["citations"].as_array().unwrap();
    assert_eq!(citations.len(), 2);
    assert_eq!(citations[0]["number"], 1);
    assert_eq!(citations[0]["cited"], true);
    assert_eq!(citations[0]["document_id"], added.json()["id"]);
    assert!(
        citations[0]["content"].as_str().unwrap().contains("metal"),
        "{answer}"
    );

    // The question, answer and citations are one interaction.
    let interaction_id = answer["interaction_id"].as_str().unwrap();
    let mut stored = Value::Null;
    for _ in 0..50 {
        let response = kb
            .app
            .get(&format!("/v1/interactions/{interaction_id}"), Some(&key))
            .await;
        if response.status == 200 {
            stored = response.json();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stored["interaction_type"], "knowledge_answer", "{stored}");
    assert_eq!(
        stored["knowledge"]["citations"][0]["document_id"],
        added.json()["id"]
    );
}

#[tokio::test]
async fn the_index_survives_a_restart_and_is_rebuilt_when_lost() {
    let kb = knowledge_app(KnowledgeBackend::Embedded).await;
    let key = kb.key();
    kb.create_collection(&key, "kept").await;
    let added = kb
        .add_json(
            &key,
            "kept",
            json!({"text": ROOFING, "file_name": "roofing.md"}),
        )
        .await;
    assert_eq!(added.status, 201, "{}", added.text);
    let Knowledge {
        app,
        _mock,
        _key_file,
    } = kb;
    let app = app.restart().await;
    let kb = Knowledge {
        app,
        _mock,
        _key_file,
    };
    wait_for_embeddings(&kb.app).await;
    assert_eq!(
        kb.titles(&key, "kept", "metal roofs", "vector")
            .await
            .first()
            .map(String::as_str),
        Some("Roofing guide")
    );
    // Losing the index entirely (here: an empty index directory): the store rebuilds it.
    let Knowledge {
        app,
        _mock,
        _key_file,
    } = kb;
    let empty = tempfile::tempdir().unwrap();
    let index_dir = empty.path().join("index");
    let app = app
        .restart_with(move |config| config.knowledge.index_dir = Some(index_dir))
        .await;
    let kb = Knowledge {
        app,
        _mock,
        _key_file,
    };
    wait_for_embeddings(&kb.app).await;
    let mut titles = Vec::new();
    for _ in 0..100 {
        titles = kb.titles(&key, "kept", "metal roofs", "vector").await;
        if !titles.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(titles.first().map(String::as_str), Some("Roofing guide"));
    assert_eq!(
        kb.titles(&key, "kept", "asphalt shingles", "lexical")
            .await
            .first()
            .map(String::as_str),
        Some("Roofing guide")
    );
}

#[tokio::test]
async fn an_interrupted_ingestion_is_invisible_then_resumed_at_start() {
    let kb = knowledge_app(KnowledgeBackend::Embedded).await;
    let key = kb.key();
    let collection = kb.create_collection(&key, "resumed").await;
    // What a crash leaves: a document whose first version was submitted, and its job, queued
    // (or running) but never finished.
    let tenant = flywheel_core::TenantId::parse("default").unwrap();
    let now = chrono::Utc::now();
    let document = flywheel_store::KnowledgeDocumentRecord {
        id: uuid::Uuid::now_v7().to_string(),
        tenant_id: tenant.clone(),
        collection_id: collection["id"].as_str().unwrap().to_owned(),
        source: Some("skylights.md".to_owned()),
        title: "Skylights".to_owned(),
        format: "markdown".to_owned(),
        content_hash: "test".to_owned(),
        tags: "[]".to_owned(),
        metadata: "{}".to_owned(),
        extracted_text: "# Skylights\n\nStep flashing keeps skylights from leaking in heavy rain."
            .to_owned(),
        bytes: 70,
        pages: None,
        status: "pending".to_owned(),
        version: "v1".to_owned(),
        active_version: None,
        error: None,
        chunk_count: 0,
        token_count: 0,
        created_at: now,
        updated_at: now,
    };
    let job = flywheel_store::KnowledgeJobRecord {
        id: uuid::Uuid::now_v7().to_string(),
        tenant_id: tenant,
        collection_id: document.collection_id.clone(),
        document_id: document.id.clone(),
        version: "v1".to_owned(),
        status: "running".to_owned(),
        stage: "embedding".to_owned(),
        done: 0,
        total: 0,
        error: None,
        created_by: "local-cli|admin".to_owned(),
        created_at: now,
        started_at: Some(now),
        finished_at: None,
    };
    kb.app
        .components
        .store
        .knowledge()
        .submit_document(&document, &job)
        .await
        .unwrap();
    // Not searchable while unfinished.
    let found = kb
        .search(
            &key,
            json!({"collection": "resumed", "query": "skylight flashing", "mode": "lexical"}),
        )
        .await;
    assert_eq!(found["results"], json!([]));

    let Knowledge {
        app,
        _mock,
        _key_file,
    } = kb;
    let app = app.restart().await;
    let kb = Knowledge {
        app,
        _mock,
        _key_file,
    };
    wait_for_embeddings(&kb.app).await;
    let mut status = Value::Null;
    for _ in 0..300 {
        status = kb
            .app
            .get(&format!("/v1/knowledge/jobs/{}", job.id), Some(&key))
            .await
            .json();
        if status["status"] == "succeeded" || status["status"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status["status"], "succeeded", "{status}");
    let found = kb
        .search(
            &key,
            json!({"collection": "resumed", "query": "skylight flashing", "mode": "hybrid"}),
        )
        .await;
    assert_eq!(found["results"][0]["document_id"], document.id.as_str());
}
