//! The storage suite: every backend must pass the same assertions.

use chrono::{DateTime, Utc};
use flywheel_core::{ApiKeyPrefix, Role, Subject, Tenant, TenantId};
use flywheel_store::{NewApiKey, StoreError};

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
