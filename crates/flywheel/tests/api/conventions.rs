//! HTTP conventions every endpoint follows: error bodies, status codes, request ids, CORS.

use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with, TestResponse};

fn assert_error_body(response: &TestResponse, status: u16, code: &str) {
    assert_eq!(response.status, status, "{}", response.text);
    let body = response.json();
    assert_eq!(body["error"]["code"], code, "{}", response.text);
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    assert!(response
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
}

#[tokio::test]
async fn malformed_bodies_get_4xx_never_500() {
    let app = spawn_app().await;
    let post = |body: Vec<u8>, content_type: &'static str| {
        app.client
            .post(app.url("/v1/tenants"))
            .bearer_auth(&app.admin_key)
            .header("content-type", content_type)
            .body(body)
    };
    let syntax = app
        .send(post(b"{\"id\": ".to_vec(), "application/json"))
        .await;
    assert_error_body(&syntax, 400, "malformed_json");

    let invalid_utf8 = app
        .send(post(
            b"{\"id\": \"ab\xff\xfe\", \"name\": \"x\"}".to_vec(),
            "application/json",
        ))
        .await;
    assert_error_body(&invalid_utf8, 400, "malformed_json");

    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let nested = app.send(post(deep.into_bytes(), "application/json")).await;
    assert!(
        nested.status == 400 || nested.status == 422,
        "{}",
        nested.text
    );

    let deep_value = format!(
        "{{\"id\": {}1{}, \"name\": \"x\"}}",
        "[".repeat(5_000),
        "]".repeat(5_000)
    );
    let nested = app
        .send(post(deep_value.into_bytes(), "application/json"))
        .await;
    assert!(
        nested.status == 400 || nested.status == 422,
        "{}",
        nested.text
    );

    let wrong_type = app
        .send(post(
            b"id=acme".to_vec(),
            "application/x-www-form-urlencoded",
        ))
        .await;
    assert_error_body(&wrong_type, 415, "unsupported_media_type");

    let no_type = app
        .send(
            app.client
                .post(app.url("/v1/tenants"))
                .bearer_auth(&app.admin_key)
                .body("{}"),
        )
        .await;
    assert_error_body(&no_type, 415, "unsupported_media_type");

    let trailing = app
        .send(post(
            b"{\"id\": \"acme\", \"name\": \"A\"} {}".to_vec(),
            "application/json",
        ))
        .await;
    assert_error_body(&trailing, 400, "malformed_json");

    let not_object = app.send(post(b"[1,2]".to_vec(), "application/json")).await;
    assert_error_body(&not_object, 422, "validation_failed");
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let app = spawn_app_with(|config| config.server.max_body_bytes = 1024).await;
    let big_name = "x".repeat(4096);
    let response = app
        .post_json(
            "/v1/tenants",
            Some(&app.admin_key),
            &json!({"id": "big", "name": big_name}),
        )
        .await;
    assert_error_body(&response, 413, "payload_too_large");
    // Within the limit still works.
    let response = app
        .post_json(
            "/v1/tenants",
            Some(&app.admin_key),
            &json!({"id": "small", "name": "S"}),
        )
        .await;
    assert_eq!(response.status, 201, "{}", response.text);
}

#[tokio::test]
async fn unknown_routes_and_methods_use_the_error_body() {
    let app = spawn_app().await;
    assert_error_body(
        &app.get("/v1/nothing-here", Some(&app.admin_key)).await,
        404,
        "not_found",
    );
    assert_error_body(&app.get("/nothing", None).await, 404, "not_found");
    let put = app
        .send(
            app.client
                .put(app.url("/v1/tenants"))
                .bearer_auth(&app.admin_key),
        )
        .await;
    assert_error_body(&put, 405, "method_not_allowed");
    let bad_query = app.get("/v1/api-keys?bogus=1", Some(&app.admin_key)).await;
    assert_eq!(bad_query.status, 400, "{}", bad_query.text);
    assert!(bad_query.json()["error"]["code"].is_string());
    let missing_key = app
        .delete("/v1/api-keys/not-a-key-id", Some(&app.admin_key))
        .await;
    assert_error_body(&missing_key, 404, "not_found");
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let app = spawn_app().await;
    let given = app
        .send(
            app.client
                .get(app.url("/healthz"))
                .header("x-request-id", "trace-abc-123"),
        )
        .await;
    assert_eq!(
        given.header("x-request-id").as_deref(),
        Some("trace-abc-123")
    );

    let generated = app.get("/healthz", None).await;
    let id = generated.header("x-request-id").expect("generated id");
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");

    let hostile = app
        .send(
            app.client
                .get(app.url("/healthz"))
                .header("x-request-id", "a b\"<script>"),
        )
        .await;
    let replaced = hostile.header("x-request-id").unwrap();
    assert_ne!(replaced, "a b\"<script>");
    assert!(uuid::Uuid::parse_str(&replaced).is_ok());

    let error = app.get("/v1/me", None).await;
    assert!(
        error.header("x-request-id").is_some(),
        "errors carry the id too"
    );
}

#[tokio::test]
async fn cors_follows_the_allow_list() {
    let app = spawn_app_with(|config| {
        config.server.cors_allowed_origins = vec!["https://app.example.com".to_owned()];
    })
    .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/v1/me"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
    };
    let allowed = app.send(preflight("https://app.example.com")).await;
    assert_eq!(
        allowed.header("access-control-allow-origin").as_deref(),
        Some("https://app.example.com")
    );
    let denied = app.send(preflight("https://evil.example.net")).await;
    assert!(denied.header("access-control-allow-origin").is_none());

    let default_app = spawn_app().await;
    let response = default_app
        .send(
            default_app
                .client
                .get(default_app.url("/healthz"))
                .header("origin", "https://app.example.com"),
        )
        .await;
    assert!(
        response.header("access-control-allow-origin").is_none(),
        "CORS is off unless configured"
    );
}
