//! Health, readiness and Prometheus metrics.

use crate::helpers::spawn_app;

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    let health = app.get("/healthz", None).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    assert_eq!(ready.json()["status"], "ready");
    let expected = if app.config.database_url().starts_with("sqlite") {
        "sqlite"
    } else {
        "postgres"
    };
    assert_eq!(ready.json()["database"], expected);
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let app = spawn_app().await;
    for _ in 0..3 {
        assert_eq!(app.get("/v1/me", Some(&app.admin_key)).await.status, 200);
    }
    assert_eq!(app.get("/v1/me", None).await.status, 401);
    let metrics = app.get("/metrics", Some(&app.admin_key)).await;
    assert_eq!(metrics.status, 200, "{}", metrics.text);
    let text = metrics.text;
    assert!(
        text.contains(
            r#"flywheel_http_requests_total{method="GET",route="/v1/me",status="200"} 3"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"flywheel_http_requests_total{method="GET",route="/v1/me",status="401"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains("flywheel_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("flywheel_db_pool_connections "), "{text}");
    assert!(
        text.contains("flywheel_db_pool_max_connections 5"),
        "{text}"
    );
    assert!(text.contains("flywheel_build_info{"), "{text}");
    assert!(!text.contains(&app.admin_key));
}

#[tokio::test]
async fn graceful_stop_closes_the_store() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz", None).await.status, 200);
    let store = app.components.store.clone();
    app.stop().await.expect("clean stop");
    assert!(
        store.ready().await.is_err(),
        "the pool is closed after shutdown"
    );
}
