//! The storage suite: every backend must pass the same assertions.

use chrono::{DateTime, Utc};
use flywheel_core::{ApiKeyPrefix, Role, Subject, Tenant, TenantId};
use flywheel_store::{NewApiKey, ProviderKeyRecord, RewrappedDataKey, StoreError};

use crate::helpers::storage_backends;

fn at(millis: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(millis).expect("valid timestamp")
}

fn tenant(id: &str, created: i64) -> Tenant {
    Tenant {
        id: TenantId::parse(id).expect("slug"),
        name: format!("Tenant {id}"),
        operator: id == "ops",
        created_at: at(created),
    }
}

fn key(id: &str, tenant_id: &str, prefix: &str, created: i64) -> NewApiKey {
    NewApiKey {
        id: id.to_owned(),
        tenant_id: TenantId::parse(tenant_id).expect("slug"),
        prefix: ApiKeyPrefix::parse(prefix).expect("prefix"),
        secret_hash: format!("hash-of-{id}"),
        name: format!("key {id}"),
        role: Role::Service,
        subject: Subject::parse("svc").expect("subject"),
        created_by: "tester".to_owned(),
        created_at: at(created),
    }
}

#[tokio::test]
async fn tenants_round_trip_and_conflict() {
    for backend in storage_backends().await {
        let tenants = backend.store.tenants();
        assert_eq!(
            tenants.count_tenants().await.unwrap(),
            0,
            "{}",
            backend.name
        );
        tenants.insert_tenant(&tenant("ops", 1_000)).await.unwrap();
        tenants.insert_tenant(&tenant("acme", 2_000)).await.unwrap();
        let duplicate = tenants.insert_tenant(&tenant("acme", 3_000)).await;
        assert!(
            matches!(duplicate, Err(StoreError::Conflict { .. })),
            "{}: {duplicate:?}",
            backend.name
        );
        let acme = tenants
            .get_tenant(&TenantId::parse("acme").unwrap())
            .await
            .unwrap()
            .expect("acme exists");
        assert_eq!(acme, tenant("acme", 2_000), "{}", backend.name);
        let missing = tenants
            .get_tenant(&TenantId::parse("nobody").unwrap())
            .await
            .unwrap();
        assert!(missing.is_none(), "{}", backend.name);
        let listed: Vec<String> = tenants
            .list_tenants()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.id.to_string())
            .collect();
        assert_eq!(listed, vec!["ops", "acme"], "{}", backend.name);
        assert_eq!(
            tenants.count_tenants().await.unwrap(),
            2,
            "{}",
            backend.name
        );
    }
}

#[tokio::test]
async fn api_keys_are_tenant_scoped() {
    for backend in storage_backends().await {
        let tenants = backend.store.tenants();
        let keys = backend.store.api_keys();
        tenants.insert_tenant(&tenant("ops", 1)).await.unwrap();
        tenants.insert_tenant(&tenant("acme", 2)).await.unwrap();
        keys.insert_api_key(&key("k1", "ops", "aaaaaaaaaaaa", 10))
            .await
            .unwrap();
        keys.insert_api_key(&key("k2", "acme", "bbbbbbbbbbbb", 20))
            .await
            .unwrap();
        keys.insert_api_key(&key("k3", "acme", "cccccccccccc", 30))
            .await
            .unwrap();

        let duplicate_prefix = keys
            .insert_api_key(&key("k4", "acme", "cccccccccccc", 40))
            .await;
        assert!(
            matches!(duplicate_prefix, Err(StoreError::Conflict { .. })),
            "{}: {duplicate_prefix:?}",
            backend.name
        );
        let unknown_tenant = keys
            .insert_api_key(&key("k5", "ghost", "dddddddddddd", 50))
            .await;
        assert!(
            unknown_tenant.is_err(),
            "{}: key for a missing tenant",
            backend.name
        );

        let acme = TenantId::parse("acme").unwrap();
        let ops = TenantId::parse("ops").unwrap();
        let acme_ids: Vec<String> = keys
            .list_api_keys(&acme)
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.id)
            .collect();
        assert_eq!(acme_ids, vec!["k3", "k2"], "{}: newest first", backend.name);

        let found = keys
            .find_api_key_by_prefix(&ApiKeyPrefix::parse("aaaaaaaaaaaa").unwrap())
            .await
            .unwrap()
            .expect("k1 by prefix");
        assert_eq!(found.id, "k1");
        assert!(
            found.tenant_operator,
            "{}: operator flag joined",
            backend.name
        );
        assert_eq!(found.secret_hash, "hash-of-k1");

        // Another tenant's key cannot be revoked through this tenant.
        let cross = keys.revoke_api_key(&ops, "k2", at(100)).await.unwrap();
        assert!(cross.is_none(), "{}", backend.name);
        let still_active = keys
            .find_api_key_by_prefix(&ApiKeyPrefix::parse("bbbbbbbbbbbb").unwrap())
            .await
            .unwrap()
            .unwrap();
        assert!(still_active.revoked_at.is_none(), "{}", backend.name);

        let revoked = keys
            .revoke_api_key(&acme, "k2", at(100))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(revoked.revoked_at, Some(at(100)), "{}", backend.name);
        let again = keys
            .revoke_api_key(&acme, "k2", at(200))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            again.revoked_at,
            Some(at(100)),
            "{}: first revocation kept",
            backend.name
        );
    }
}

#[tokio::test]
async fn readiness_requires_migrations() {
    for backend in storage_backends().await {
        assert!(backend.store.ready().await.is_ok(), "{}", backend.name);
        let stats = backend.store.pool_stats();
        assert_eq!(stats.max, 4, "{}", backend.name);
        assert!(stats.size >= 1, "{}", backend.name);
        // Migrating twice is a no-op.
        backend.store.migrate().await.unwrap();
        backend.store.close().await;
        assert!(
            backend.store.ready().await.is_err(),
            "{}: closed pool",
            backend.name
        );
    }
}

fn provider_key(
    id: &str,
    tenant_id: &str,
    owner: &str,
    provider: &str,
    name: &str,
    created: i64,
) -> ProviderKeyRecord {
    ProviderKeyRecord {
        id: id.to_owned(),
        tenant_id: TenantId::parse(tenant_id).expect("slug"),
        owner: Subject::parse(owner).expect("subject"),
        provider: provider.to_owned(),
        name: name.to_owned(),
        last_four: "wxyz".to_owned(),
        // Bytes that text columns would mangle: NUL, invalid UTF-8.
        ciphertext: vec![0, 159, 146, 150, 255, 0, id.len() as u8],
        nonce: vec![7; 12],
        wrapped_data_key: vec![0xff; 48],
        wrap_nonce: vec![0; 12],
        master_key_id: "0011223344556677".to_owned(),
        allowed_models: vec!["gpt-4o".to_owned(), "o3".to_owned()],
        monthly_token_limit: Some(1_000_000),
        monthly_usd_micros: None,
        created_at: at(created),
        updated_at: at(created),
    }
}

#[tokio::test]
async fn provider_keys_are_tenant_and_owner_scoped() {
    for backend in storage_backends().await {
        let tenants = backend.store.tenants();
        let keys = backend.store.provider_keys();
        tenants.insert_tenant(&tenant("ops", 1)).await.unwrap();
        tenants.insert_tenant(&tenant("acme", 2)).await.unwrap();
        let pk1 = provider_key("pk1", "acme", "alice", "openai", "work", 10);
        let mut pk2 = provider_key("pk2", "acme", "alice", "openai", "home", 20);
        pk2.allowed_models = Vec::new();
        pk2.monthly_token_limit = None;
        pk2.monthly_usd_micros = Some(12_500_000);
        let pk3 = provider_key("pk3", "acme", "bob", "openai", "work", 30);
        let pk4 = provider_key("pk4", "ops", "alice", "anthropic", "work", 40);
        for key in [&pk1, &pk2, &pk3, &pk4] {
            keys.insert_provider_key(key).await.unwrap();
        }
        let duplicate = keys
            .insert_provider_key(&provider_key("pk5", "acme", "alice", "openai", "work", 50))
            .await;
        assert!(
            matches!(duplicate, Err(StoreError::Conflict { .. })),
            "{}: {duplicate:?}",
            backend.name
        );

        let acme = TenantId::parse("acme").unwrap();
        let ops = TenantId::parse("ops").unwrap();
        let alice = Subject::parse("alice").unwrap();
        let ids = |records: Vec<ProviderKeyRecord>| -> Vec<String> {
            records.into_iter().map(|record| record.id).collect()
        };
        let read_back = keys.get_provider_key(&acme, "pk1").await.unwrap();
        assert_eq!(
            read_back.as_ref(),
            Some(&pk1),
            "{}: bytes intact",
            backend.name
        );
        let read_back = keys.get_provider_key(&acme, "pk2").await.unwrap();
        assert_eq!(read_back.as_ref(), Some(&pk2), "{}", backend.name);
        assert!(
            keys.get_provider_key(&ops, "pk1").await.unwrap().is_none(),
            "{}: another tenant's key",
            backend.name
        );
        assert_eq!(
            ids(keys.list_provider_keys(&acme, None).await.unwrap()),
            vec!["pk3", "pk2", "pk1"],
            "{}: newest first",
            backend.name
        );
        assert_eq!(
            ids(keys.list_provider_keys(&acme, Some(&alice)).await.unwrap()),
            vec!["pk2", "pk1"],
            "{}",
            backend.name
        );
        assert_eq!(
            ids(keys
                .find_provider_keys(&acme, &alice, "openai")
                .await
                .unwrap()),
            vec!["pk2", "pk1"],
            "{}",
            backend.name
        );
        assert!(
            keys.find_provider_keys(&acme, &alice, "anthropic")
                .await
                .unwrap()
                .is_empty(),
            "{}",
            backend.name
        );

        assert!(
            !keys.delete_provider_key(&ops, "pk1").await.unwrap(),
            "{}: not through another tenant",
            backend.name
        );
        assert!(
            keys.delete_provider_key(&acme, "pk1").await.unwrap(),
            "{}",
            backend.name
        );
        assert!(
            !keys.delete_provider_key(&acme, "pk1").await.unwrap(),
            "{}: already gone",
            backend.name
        );
    }
}

#[tokio::test]
async fn provider_keys_scan_in_pages_and_rewrap() {
    for backend in storage_backends().await {
        let tenants = backend.store.tenants();
        let keys = backend.store.provider_keys();
        tenants.insert_tenant(&tenant("ops", 1)).await.unwrap();
        tenants.insert_tenant(&tenant("acme", 2)).await.unwrap();
        for (id, tenant_id) in [("k3", "ops"), ("k1", "acme"), ("k4", "acme"), ("k2", "ops")] {
            keys.insert_provider_key(&provider_key(id, tenant_id, "alice", "openai", id, 10))
                .await
                .unwrap();
        }
        assert_eq!(
            keys.count_all_provider_keys().await.unwrap(),
            4,
            "{}",
            backend.name
        );
        let mut pages = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = keys.scan_provider_keys(after.as_deref(), 3).await.unwrap();
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            pages.push(page.into_iter().map(|record| record.id).collect::<Vec<_>>());
        }
        assert_eq!(
            pages,
            vec![vec!["k1", "k2", "k3"], vec!["k4"]],
            "{}: every tenant, in id order",
            backend.name
        );

        let rewrapped = RewrappedDataKey {
            wrapped_data_key: vec![1, 0, 2],
            wrap_nonce: vec![9; 12],
            master_key_id: "8899aabbccddeeff".to_owned(),
            updated_at: at(99),
        };
        assert!(
            !keys
                .update_provider_key_wrap("k1", "not-the-current-id", &rewrapped)
                .await
                .unwrap(),
            "{}: guarded by the previous key id",
            backend.name
        );
        assert!(
            keys.update_provider_key_wrap("k1", "0011223344556677", &rewrapped)
                .await
                .unwrap(),
            "{}",
            backend.name
        );
        let acme = TenantId::parse("acme").unwrap();
        let k1 = keys.get_provider_key(&acme, "k1").await.unwrap().unwrap();
        let original = provider_key("k1", "acme", "alice", "openai", "k1", 10);
        assert_eq!(k1.wrapped_data_key, vec![1, 0, 2], "{}", backend.name);
        assert_eq!(k1.wrap_nonce, vec![9; 12], "{}", backend.name);
        assert_eq!(k1.master_key_id, "8899aabbccddeeff", "{}", backend.name);
        assert_eq!(k1.updated_at, at(99), "{}", backend.name);
        assert_eq!(k1.ciphertext, original.ciphertext, "{}", backend.name);
        assert_eq!(k1.created_at, original.created_at, "{}", backend.name);
        assert!(
            !keys
                .update_provider_key_wrap("ghost", "0011223344556677", &rewrapped)
                .await
                .unwrap(),
            "{}",
            backend.name
        );
    }
}
