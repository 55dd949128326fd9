//! The OpenAPI document covers every route.

use std::path::Path;

use crate::helpers::spawn_app;

/// Every (method, path) the API serves. A new route must be added here *and* be in the
/// document; `routes_are_registered_only_through_openapi` keeps routes from bypassing it.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/v1/me"),
    ("get", "/v1/tenants"),
    ("post", "/v1/tenants"),
    ("get", "/v1/api-keys"),
    ("post", "/v1/api-keys"),
    ("delete", "/v1/api-keys/{id}"),
    ("post", "/v1/interactions"),
    ("get", "/v1/interactions"),
    ("get", "/v1/interactions/rejected"),
    ("get", "/v1/interactions/{id}"),
    ("post", "/v1/interactions/{id}/outcomes"),
    ("post", "/v1/interactions/{id}/feedback"),
    ("post", "/v1/outcomes"),
    ("post", "/v1/chat/completions"),
    ("post", "/v1/embeddings"),
    ("get", "/v1/models"),
    ("post", "/v1/inferences/{id}/feedback"),
    ("post", "/v1/provider-keys"),
    ("get", "/v1/provider-keys"),
    ("delete", "/v1/provider-keys/{id}"),
    ("post", "/v1/concierge/sessions"),
    ("post", "/v1/concierge/sessions/{id}/messages"),
    ("get", "/v1/concierge/sessions/{id}"),
    ("post", "/v1/concierge/sessions/{id}/end"),
    ("get", "/v1/concierge/conversations"),
    ("delete", "/v1/concierge/conversations"),
    ("post", "/v1/concierge/messages/{id}/feedback"),
    ("post", "/v1/analytics/sql"),
    ("get", "/v1/reports/ai-usage"),
    ("get", "/v1/reports/funnel"),
    ("get", "/v1/reports/partners"),
    ("get", "/v1/reports/models"),
    ("get", "/v1/datasets"),
    ("post", "/v1/knowledge/collections"),
    ("get", "/v1/knowledge/collections"),
    ("get", "/v1/knowledge/collections/{collection}"),
    ("delete", "/v1/knowledge/collections/{collection}"),
    ("post", "/v1/knowledge/collections/{collection}/reembed"),
    ("post", "/v1/knowledge/collections/{collection}/documents"),
    ("get", "/v1/knowledge/collections/{collection}/documents"),
    (
        "get",
        "/v1/knowledge/collections/{collection}/documents/{id}",
    ),
    (
        "delete",
        "/v1/knowledge/collections/{collection}/documents/{id}",
    ),
    ("get", "/v1/knowledge/jobs/{id}"),
    ("post", "/v1/knowledge/search"),
    ("post", "/v1/knowledge/answer"),
    ("post", "/v1/contractors"),
    ("get", "/v1/contractors"),
    ("get", "/v1/contractors/{id}"),
    ("put", "/v1/contractors/{id}"),
    ("get", "/v1/contractors/{id}/matches"),
    ("post", "/v1/partners"),
    ("get", "/v1/partners"),
    ("get", "/v1/partners/{id}"),
    ("put", "/v1/partners/{id}"),
    ("post", "/v1/demo-bookings"),
    ("get", "/v1/demo-bookings/{id}"),
    ("patch", "/v1/demo-bookings/{id}"),
    ("post", "/v1/deals"),
    ("get", "/v1/deals/{id}"),
];

#[tokio::test]
async fn document_lists_every_route() {
    let app = spawn_app().await;
    let response = app.get("/openapi.json", None).await;
    assert_eq!(response.status, 200);
    let document = response.json();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = document["paths"].as_object().unwrap();
    for (method, path) in ROUTES {
        assert!(
            paths
                .get(*path)
                .and_then(|item| item.get(*method))
                .is_some(),
            "{method} {path} is missing from /openapi.json"
        );
    }
    let documented: usize = paths
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert_eq!(
        documented,
        ROUTES.len(),
        "the document lists routes this test does not know"
    );
    assert!(document["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn every_documented_route_is_served() {
    let app = spawn_app().await;
    let document = app.get("/openapi.json", None).await.json();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let url = app.url(&path.replace("{id}", "some-id"));
            let request = app
                .client
                .request(method.to_uppercase().parse().unwrap(), url)
                .bearer_auth(&app.admin_key)
                .header("content-type", "application/json")
                .body("{}");
            let response = app.send(request).await;
            let unrouted = response.status == 405
                || (response.status == 404 && response.text.contains("no such route"));
            assert!(
                !unrouted,
                "{method} {path} is documented but not served: {}",
                response.text
            );
        }
    }
}

/// A tidy check: routes are added only through `utoipa_axum::routes!` (which documents them).
#[test]
fn routes_are_registered_only_through_openapi() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../http/src");
    let mut offenders = Vec::new();
    visit(&src, &mut |path, text| {
        if path.ends_with("openapi.rs") {
            return; // serves the document itself
        }
        for (idx, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            if line.contains(".route(")
                || line.contains(".route_service(")
                || line.contains(".nest(")
            {
                offenders.push(format!("{}:{}", path.display(), idx + 1));
            }
        }
    });
    assert!(
        offenders.is_empty(),
        "register routes with routes!(…): {offenders:?}"
    );
}

/// Every module starts with a `//!` comment.
#[test]
fn every_module_has_a_doc_comment() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut missing = Vec::new();
    visit(&crates, &mut |path, text| {
        if !text.trim_start().starts_with("//!") {
            missing.push(path.display().to_string());
        }
    });
    assert!(
        missing.is_empty(),
        "modules without a //! comment: {missing:?}"
    );
}

fn visit(dir: &Path, on_file: &mut dyn FnMut(&Path, &str)) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if !path.ends_with("target") {
                visit(&path, on_file);
            }
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            on_file(&path, &text);
        }
    }
}
