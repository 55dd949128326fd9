//! Authentication, roles and tenant isolation over HTTP.

use std::time::Duration;

use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn endpoints_require_credentials() {
    let app = spawn_app().await;
    for path in ["/v1/me", "/v1/tenants", "/v1/api-keys", "/metrics"] {
        let response = app.get(path, None).await;
        assert_eq!(response.status, 401, "{path}");
        assert_eq!(response.error_code(), "unauthenticated", "{path}");
        assert_eq!(
            response.header("www-authenticate").as_deref(),
            Some("Bearer")
        );
        let response = app
            .get(
                path,
                Some("fw_aaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"),
            )
            .await;
        assert_eq!(response.status, 401, "{path} with an unknown key");
        let response = app.get(path, Some("not-a-key")).await;
        assert_eq!(response.status, 401, "{path} with garbage");
    }
    let basic = app
        .send(
            app.client
                .get(app.url("/v1/me"))
                .header("authorization", format!("Basic {}", app.admin_key)),
        )
        .await;
    assert_eq!(basic.status, 401, "only the Bearer scheme is accepted");
    for path in ["/healthz", "/readyz", "/openapi.json"] {
        assert_eq!(app.get(path, None).await.status, 200, "{path} is public");
    }
}

#[tokio::test]
async fn bootstrap_admin_key_works_and_is_operator() {
    let app = spawn_app().await;
    let me = app.get("/v1/me", Some(&app.admin_key)).await;
    assert_eq!(me.status, 200, "{}", me.text);
    let me = me.json();
    assert_eq!(me["tenant_id"], "default");
    assert_eq!(me["role"], "admin");
    assert_eq!(me["operator"], true);
    assert_eq!(me["auth"], "api_key");
}

#[tokio::test]
async fn api_keys_are_shown_once_and_can_be_revoked() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    let (key, key_id) = app.create_key("acme", "service", Some("ingest-bot")).await;
    assert!(key.starts_with("fw_"));

    let me = app.get("/v1/me", Some(&key)).await.json();
    assert_eq!(me["tenant_id"], "acme");
    assert_eq!(me["subject"], "ingest-bot");
    assert_eq!(me["role"], "service");

    let listing = app
        .get("/v1/api-keys?tenant_id=acme", Some(&app.admin_key))
        .await;
    assert_eq!(listing.status, 200, "{}", listing.text);
    assert!(
        !listing.text.contains(&key),
        "a listing never contains a secret"
    );
    let keys = listing.json()["api_keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["id"], key_id.as_str());
    assert!(key.contains(keys[0]["prefix"].as_str().unwrap()));
    assert!(keys[0]["revoked_at"].is_null());

    let revoked = app
        .delete(
            &format!("/v1/api-keys/{key_id}?tenant_id=acme"),
            Some(&app.admin_key),
        )
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.text);
    assert!(!revoked.json()["revoked_at"].is_null());
    assert_eq!(
        app.get("/v1/me", Some(&key)).await.status,
        401,
        "revoked keys stop working"
    );

    // A key whose secret differs from the stored hash is rejected even with a known prefix.
    let mut forged = key.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'a' { 'b' } else { 'a' });
    assert_eq!(app.get("/v1/me", Some(&forged)).await.status, 401);
}

#[tokio::test]
async fn tenants_are_isolated() {
    let app = spawn_app().await;
    app.create_tenant("tenant-a").await;
    app.create_tenant("tenant-b").await;
    let (admin_a, _) = app.create_key("tenant-a", "admin", None).await;
    let (_, key_b_id) = app.create_key("tenant-b", "service", None).await;
    let (admin_b, _) = app.create_key("tenant-b", "admin", None).await;

    // A sees only its own tenant and its own keys.
    let tenants = app.get("/v1/tenants", Some(&admin_a)).await.json();
    let ids: Vec<&str> = tenants["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["tenant-a"]);
    let keys = app.get("/v1/api-keys", Some(&admin_a)).await.json();
    assert!(keys["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["tenant_id"] == "tenant-a"));

    // A cannot read, revoke or create in B, and learns nothing about B's existence.
    let read_b = app
        .get("/v1/api-keys?tenant_id=tenant-b", Some(&admin_a))
        .await;
    assert_eq!(read_b.status, 404, "{}", read_b.text);
    let revoke_b = app
        .delete(&format!("/v1/api-keys/{key_b_id}"), Some(&admin_a))
        .await;
    assert_eq!(revoke_b.status, 404, "{}", revoke_b.text);
    let revoke_b = app
        .delete(
            &format!("/v1/api-keys/{key_b_id}?tenant_id=tenant-b"),
            Some(&admin_a),
        )
        .await;
    assert_eq!(revoke_b.status, 404, "{}", revoke_b.text);
    let create_in_b = app
        .post_json(
            "/v1/api-keys",
            Some(&admin_a),
            &json!({"name": "sneaky", "role": "admin", "tenant_id": "tenant-b"}),
        )
        .await;
    assert_eq!(create_in_b.status, 404, "{}", create_in_b.text);

    // B's key still works; B sees it.
    let keys_b = app.get("/v1/api-keys", Some(&admin_b)).await.json();
    assert!(keys_b["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["id"] == key_b_id.as_str() && k["revoked_at"].is_null()));

    // Only operator admins create tenants.
    let create_tenant = app
        .post_json(
            "/v1/tenants",
            Some(&admin_a),
            &json!({"id": "tenant-c", "name": "C"}),
        )
        .await;
    assert_eq!(create_tenant.status, 403, "{}", create_tenant.text);
    assert_eq!(create_tenant.error_code(), "forbidden");
}

#[tokio::test]
async fn roles_are_enforced() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    for role in ["contractor", "partner"] {
        let (key, _) = app.create_key("acme", role, Some("someone")).await;
        assert_eq!(app.get("/v1/me", Some(&key)).await.status, 200, "{role}");
        for path in ["/v1/tenants", "/v1/api-keys", "/metrics"] {
            let response = app.get(path, Some(&key)).await;
            assert_eq!(response.status, 403, "{role} on {path}: {}", response.text);
            assert_eq!(response.error_code(), "forbidden");
        }
        let create = app
            .post_json(
                "/v1/api-keys",
                Some(&key),
                &json!({"name": "x", "role": "admin"}),
            )
            .await;
        assert_eq!(create.status, 403, "{role} cannot mint keys");
    }
    let (service, _) = app.create_key("acme", "service", None).await;
    assert_eq!(app.get("/metrics", Some(&service)).await.status, 200);
    assert_eq!(app.get("/v1/api-keys", Some(&service)).await.status, 403);
}

#[tokio::test]
async fn jwt_tokens_authenticate_and_expire() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    let token = app
        .issue_token(
            "acme",
            "contractor-7",
            "contractor",
            Duration::from_secs(3600),
        )
        .await;
    let me = app.get("/v1/me", Some(&token)).await;
    assert_eq!(me.status, 200, "{}", me.text);
    let me = me.json();
    assert_eq!(me["tenant_id"], "acme");
    assert_eq!(me["subject"], "contractor-7");
    assert_eq!(me["role"], "contractor");
    assert_eq!(me["auth"], "jwt");
    assert_eq!(app.get("/v1/api-keys", Some(&token)).await.status, 403);

    // A tampered payload breaks the signature.
    let parts: Vec<&str> = token.split('.').collect();
    let tampered = format!("{}.{}x.{}", parts[0], parts[1], parts[2]);
    assert_eq!(app.get("/v1/me", Some(&tampered)).await.status, 401);
    // An unsigned token is refused.
    let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]);
    assert_eq!(app.get("/v1/me", Some(&unsigned)).await.status, 401);
}

#[tokio::test]
async fn jwt_claims_are_validated() {
    use jsonwebtoken::{encode, EncodingKey, Header};

    let secret_file = tempfile::NamedTempFile::new().unwrap();
    let secret = "a-test-jwt-secret-that-is-long-enough-0123456789";
    std::fs::write(secret_file.path(), secret).unwrap();
    let path = secret_file.path().to_owned();
    let app = crate::helpers::spawn_app_with(move |config| {
        config.auth.jwt_secret = Some(flywheel_config::SecretRef::File { file: path });
    })
    .await;
    app.create_tenant("acme").await;
    let now = chrono::Utc::now().timestamp();
    let sign = |claims: serde_json::Value, key: &str| {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(key.as_bytes()),
        )
        .unwrap()
    };
    let good = json!({"iss": "flywheel", "sub": "u1", "tid": "acme", "role": "partner", "iat": now, "exp": now + 600, "jti": "1"});
    assert_eq!(
        app.get("/v1/me", Some(&sign(good.clone(), secret)))
            .await
            .status,
        200
    );

    let mut expired = good.clone();
    expired["exp"] = json!(now - 3600);
    let mut no_exp = good.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    let mut wrong_issuer = good.clone();
    wrong_issuer["iss"] = json!("someone-else");
    let mut unknown_tenant = good.clone();
    unknown_tenant["tid"] = json!("ghost");
    let mut unknown_role = good.clone();
    unknown_role["role"] = json!("root");
    for (what, claims) in [
        ("expired", expired),
        ("no exp", no_exp),
        ("wrong issuer", wrong_issuer),
        ("unknown tenant", unknown_tenant),
        ("unknown role", unknown_role),
    ] {
        let response = app.get("/v1/me", Some(&sign(claims, secret))).await;
        assert_eq!(response.status, 401, "{what}: {}", response.text);
    }
    let wrong_key = sign(good, "another-secret-that-is-also-long-enough-000");
    assert_eq!(app.get("/v1/me", Some(&wrong_key)).await.status, 401);
}

#[tokio::test]
async fn input_is_validated_field_by_field() {
    let app = spawn_app().await;
    let bad_tenant = app
        .post_json(
            "/v1/tenants",
            Some(&app.admin_key),
            &json!({"id": "Bad Id", "name": ""}),
        )
        .await;
    assert_eq!(bad_tenant.status, 422, "{}", bad_tenant.text);
    let details = bad_tenant.json()["error"]["details"].clone();
    let fields: Vec<&str> = details
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, vec!["id", "name"]);

    app.create_tenant("acme").await;
    let duplicate = app
        .post_json(
            "/v1/tenants",
            Some(&app.admin_key),
            &json!({"id": "acme", "name": "Again"}),
        )
        .await;
    assert_eq!(duplicate.status, 409, "{}", duplicate.text);
    assert_eq!(duplicate.error_code(), "conflict");

    let bad_role = app
        .post_json(
            "/v1/api-keys",
            Some(&app.admin_key),
            &json!({"name": "k", "role": "root"}),
        )
        .await;
    assert_eq!(bad_role.status, 422);
    assert_eq!(bad_role.json()["error"]["details"][0]["field"], "role");

    let wrong_type = app
        .post_json(
            "/v1/api-keys",
            Some(&app.admin_key),
            &json!({"name": 5, "role": "admin"}),
        )
        .await;
    assert_eq!(wrong_type.status, 422, "{}", wrong_type.text);
    assert_eq!(wrong_type.json()["error"]["details"][0]["field"], "name");

    let missing = app
        .post_json("/v1/api-keys", Some(&app.admin_key), &json!({"name": "k"}))
        .await;
    assert_eq!(missing.status, 422, "{}", missing.text);
}
