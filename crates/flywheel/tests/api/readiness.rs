//! PostgreSQL outages: the server starts anyway, reports 503, and recovers by itself.

use std::time::{Duration, Instant};

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};

use flywheel::Application;
use flywheel_config::Config;

use crate::helpers::{spawn_app_on, TestDatabase, TEST_POSTGRES_ENV};

/// Starts with the database unreachable (a port nobody listens on), then opens a proxy on that
/// port to the real server and waits for `/readyz` to turn 200. Needs PostgreSQL.
#[tokio::test]
async fn readyz_recovers_when_postgres_comes_back() {
    let admin_url = match std::env::var(TEST_POSTGRES_ENV) {
        Ok(url) if !url.is_empty() => url,
        _ => return sqlite_that_cannot_open_fails_at_start().await,
    };
    let database = TestDatabase::create_postgres(&admin_url).await;
    let upstream = host_port(&database.url);

    // Reserve a port, then free it so connections are refused until the proxy binds it.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_port = reserved.local_addr().unwrap().port();
    drop(reserved);
    let proxied_url = database
        .url
        .replacen(&upstream, &format!("127.0.0.1:{proxy_port}"), 1);

    let data_dir = tempfile::tempdir().unwrap();
    let app = spawn_app_on(data_dir, database, |config| {
        config.database.url = Some(proxied_url);
        config.database.connect_timeout = Duration::from_millis(500);
    })
    .await;

    let down = app.get("/readyz", None).await;
    assert_eq!(down.status, 503, "{}", down.text);
    assert_eq!(down.error_code(), "not_ready");
    assert!(down.header("retry-after").is_some());
    let me = app.get("/v1/me", Some(&app.admin_key)).await;
    assert_eq!(
        me.status, 503,
        "requests needing the database answer 503: {}",
        me.text
    );

    let listener = TcpListener::bind(("127.0.0.1", proxy_port)).await.unwrap();
    let proxy = tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                    let _ = copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = app.get("/readyz", None).await;
        if ready.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never became ready: {}",
            ready.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Bootstrap ran after recovery: the admin key works.
    assert_eq!(app.get("/v1/me", Some(&app.admin_key)).await.status, 200);
    drop(app);
    proxy.abort();
}

fn host_port(url: &str) -> String {
    let after_scheme = &url[url.find("://").unwrap() + 3..];
    let authority = &after_scheme[..after_scheme.find('/').unwrap_or(after_scheme.len())];
    let host_port = authority.rsplit('@').next().unwrap();
    if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    }
}

/// Without PostgreSQL the same test checks the SQLite rule: a database that cannot be opened
/// is an error at start that names the database.
async fn sqlite_that_cannot_open_fails_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-directory");
    std::fs::write(&blocker, "a file where a directory should be").unwrap();
    let mut config = Config {
        data_dir: dir.path().to_owned(),
        ..Config::default()
    };
    config.server.bind = "127.0.0.1:0".parse().unwrap();
    config.database.url = Some(format!("sqlite://{}/flywheel.db", blocker.display()));
    let err = Application::build(config, None).await.unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("opening the database"), "{message}");
    assert!(message.contains("not-a-directory"), "{message}");
}
