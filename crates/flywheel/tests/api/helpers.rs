//! `spawn_app()` and typed request helpers shared by every test module.

use std::net::SocketAddr;
use std::time::Duration;

use flywheel::{Application, Components};
use flywheel_config::Config;
use flywheel_services::local_cli_principal;
use flywheel_store::{ConnectOptions, Store};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use sqlx::Connection;
use tempfile::TempDir;

pub const TEST_POSTGRES_ENV: &str = "FLYWHEEL_TEST_POSTGRES_URL";

/// A database that exists for one test. PostgreSQL ones are dropped when this is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    pub url: String,
    postgres: Option<(String, String)>,
}

impl TestDatabase {
    /// SQLite in `dir`, or a fresh PostgreSQL database when the environment names a server.
    pub async fn create(dir: &std::path::Path) -> TestDatabase {
        match std::env::var(TEST_POSTGRES_ENV) {
            Ok(admin_url) if !admin_url.is_empty() => {
                TestDatabase::create_postgres(&admin_url).await
            }
            _ => TestDatabase::sqlite(dir),
        }
    }

    pub fn sqlite(dir: &std::path::Path) -> TestDatabase {
        TestDatabase {
            url: format!("sqlite://{}", dir.join("flywheel.db").display()),
            postgres: None,
        }
    }

    pub async fn create_postgres(admin_url: &str) -> TestDatabase {
        let name = format!("flywheel_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(admin_url)
            .await
            .expect("connect to FLYWHEEL_TEST_POSTGRES_URL");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create a throwaway test database");
        admin.close().await.ok();
        TestDatabase {
            url: replace_database(admin_url, &name),
            postgres: Some((admin_url.to_owned(), name)),
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((admin_url, name)) = self.postgres.take() else {
            return;
        };
        // Drop runs inside the test's runtime, which cannot block; use a helper thread.
        let handle = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime for dropping the test database");
            runtime.block_on(async move {
                if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await;
                }
            });
        });
        let _ = handle.join();
    }
}

pub use flywheel::bench::{random_api_key, replace_database};

/// A running server on a random port with its own data directory and database.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub admin_key: String,
    pub components: Components,
    pub config: Config,
    _data_dir: TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _database: TestDatabase,
}

/// A response, read completely.
#[derive(Debug)]
pub struct TestResponse {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl TestResponse {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|err| panic!("response is not JSON ({err}): {}", self.text))
    }

    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Spawns an app after letting the test adjust the configuration.
pub async fn spawn_app_with(customize: impl FnOnce(&mut Config)) -> TestApp {
    let data_dir = tempfile::tempdir().expect("temporary data directory");
    let database = TestDatabase::create(data_dir.path()).await;
    spawn_app_on(data_dir, database, customize).await
}

pub async fn spawn_app_on(
    data_dir: TempDir,
    database: TestDatabase,
    customize: impl FnOnce(&mut Config),
) -> TestApp {
    let mut config = Config {
        data_dir: data_dir.path().to_owned(),
        ..Config::default()
    };
    config.server.bind = SocketAddr::from(([127, 0, 0, 1], 0));
    config.server.shutdown_grace = Duration::from_secs(5);
    config.database.url = Some(database.url.clone());
    config.database.max_connections = 5;
    // Local models load only where a test asks for them (loading costs seconds).
    config.models.chat.clear();
    config.models.embeddings.clear();
    config.models.auto_fetch = false;
    customize(&mut config);
    start_app(data_dir, database, config, random_api_key()).await
}

async fn start_app(
    data_dir: TempDir,
    database: TestDatabase,
    config: Config,
    admin_key: String,
) -> TestApp {
    let application =
        Application::build(config.clone(), Some(SecretString::from(admin_key.clone())))
            .await
            .expect("application builds");
    let address = format!(
        "http://{}",
        application.local_addr().expect("bound address")
    );
    let components = application.components().clone();
    let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(application.run_until(async move {
        let _ = shutdown_rx.await;
    }));
    TestApp {
        address,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("HTTP client"),
        admin_key,
        components,
        config,
        _data_dir: data_dir,
        shutdown: Some(shutdown_tx),
        server: Some(server),
        _database: database,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> TestResponse {
        let response = request.send().await.expect("request is sent");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("response body");
        TestResponse {
            status,
            headers,
            text,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> TestResponse {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }

    pub async fn post_json(&self, path: &str, token: Option<&str>, body: &Value) -> TestResponse {
        let mut request = self.client.post(self.url(path)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> TestResponse {
        let mut request = self.client.delete(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }

    /// Creates a tenant as the bootstrap (operator) admin.
    pub async fn create_tenant(&self, id: &str) -> Value {
        let response = self
            .post_json(
                "/v1/tenants",
                Some(&self.admin_key),
                &json!({"id": id, "name": format!("Tenant {id}")}),
            )
            .await;
        assert_eq!(response.status, 201, "{}", response.text);
        response.json()
    }

    /// Creates a key in `tenant` as the operator admin; returns (key, id).
    pub async fn create_key(
        &self,
        tenant: &str,
        role: &str,
        subject: Option<&str>,
    ) -> (String, String) {
        let mut body = json!({"name": format!("{role} key"), "role": role, "tenant_id": tenant});
        if let Some(subject) = subject {
            body["subject"] = json!(subject);
        }
        let response = self
            .post_json("/v1/api-keys", Some(&self.admin_key), &body)
            .await;
        assert_eq!(response.status, 201, "{}", response.text);
        let json = response.json();
        (
            json["key"].as_str().expect("key").to_owned(),
            json["api_key"]["id"].as_str().expect("id").to_owned(),
        )
    }

    /// Issues a JWT through the same service the CLI uses.
    pub async fn issue_token(&self, tenant: &str, user: &str, role: &str, ttl: Duration) -> String {
        let actor = local_cli_principal(flywheel_core::TenantId::parse("default").expect("slug"));
        self.components
            .identity
            .issue_token(&actor, tenant, user, role, ttl)
            .await
            .expect("token is issued")
            .token
            .expose_secret()
            .to_owned()
    }

    /// Stops the server the way SIGTERM would, then starts a new one on the same data
    /// directory, database and configuration.
    pub async fn restart(self) -> TestApp {
        self.restart_with(|_| {}).await
    }

    /// Like [`TestApp::restart`], adjusting the configuration first.
    pub async fn restart_with(mut self, customize: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = self.config.clone();
        customize(&mut config);
        let admin_key = self.admin_key.clone();
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task did not panic")
                .expect("server stopped cleanly");
        }
        let data_dir = std::mem::replace(
            &mut self._data_dir,
            tempfile::tempdir().expect("temporary data directory"),
        );
        let database = std::mem::replace(
            &mut self._database,
            TestDatabase {
                url: String::new(),
                postgres: None,
            },
        );
        drop(self);
        start_app(data_dir, database, config, admin_key).await
    }

    /// Stops the server the way SIGTERM would and waits for it to finish.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        match self.server.take() {
            Some(server) => server.await.expect("server task did not panic"),
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// A store for the storage suite: SQLite always, plus PostgreSQL when configured.
pub struct BackendUnderTest {
    pub name: &'static str,
    pub store: Store,
    _database: TestDatabase,
    _dir: TempDir,
}

pub async fn storage_backends() -> Vec<BackendUnderTest> {
    let options = ConnectOptions {
        max_connections: 4,
        connect_timeout: Duration::from_secs(10),
        password: None,
    };
    let mut backends = Vec::new();
    let dir = tempfile::tempdir().expect("temporary directory");
    let sqlite = TestDatabase::sqlite(dir.path());
    let store = Store::open(&sqlite.url, &options)
        .await
        .expect("open SQLite");
    store.migrate().await.expect("migrate SQLite");
    backends.push(BackendUnderTest {
        name: "sqlite",
        store,
        _database: sqlite,
        _dir: dir,
    });
    if let Ok(admin_url) = std::env::var(TEST_POSTGRES_ENV) {
        if !admin_url.is_empty() {
            let dir = tempfile::tempdir().expect("temporary directory");
            let database = TestDatabase::create_postgres(&admin_url).await;
            let store = Store::open(&database.url, &options)
                .await
                .expect("open PostgreSQL");
            store.migrate().await.expect("migrate PostgreSQL");
            backends.push(BackendUnderTest {
                name: "postgres",
                store,
                _database: database,
                _dir: dir,
            });
        }
    }
    backends
}

pub use flywheel::bench::sample_interaction;

impl TestApp {
    pub async fn post_interactions(&self, token: &str, body: &Value) -> TestResponse {
        self.post_json("/v1/interactions", Some(token), body).await
    }

    /// Compares the store with the lake, as `flywheel lake verify` does.
    pub async fn verify_lake(&self) -> flywheel_services::archive::VerifyReport {
        flywheel_services::archive::verify(
            self.components.store.interactions().as_ref(),
            self.components.archiver.lake(),
            |_| {},
        )
        .await
        .expect("verification reads store and lake")
    }

    /// Archives everything stored so far, as the background archiver would.
    pub async fn flush_lake(&self) -> flywheel_services::archive::ArchiveReport {
        self.components
            .archiver
            .archive(true)
            .await
            .expect("archiving succeeds")
    }
}
