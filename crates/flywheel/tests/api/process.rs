//! The real binary: startup line, configuration errors, secrets kept out of output, and
//! graceful shutdown on SIGTERM with exit code 0.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::helpers::{random_api_key, TestDatabase};

const BIN: &str = env!("CARGO_BIN_EXE_flywheel");

fn flywheel(data_dir: &std::path::Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .arg("--data-dir")
        .arg(data_dir)
        .current_dir(data_dir)
        .env_remove("FLYWHEEL_BOOTSTRAP_ADMIN_KEY")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    command
}

/// A server child process whose standard output and error are collected line by line.
struct ServerProcess {
    child: Child,
    output: Arc<Mutex<Vec<String>>>,
    address: String,
}

impl ServerProcess {
    fn start(mut command: Command) -> ServerProcess {
        let mut child = command
            .args(["serve", "--bind", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("flywheel serve starts");
        let output = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    output.lock().unwrap().push(line);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let address = loop {
            let found = output.lock().unwrap().iter().find_map(|line| {
                let idx = line.find("listening on http://")?;
                let rest = &line[idx + "listening on ".len()..];
                Some(
                    rest.split(|c: char| c == '"' || c.is_whitespace())
                        .next()?
                        .to_owned(),
                )
            });
            if let Some(address) = found {
                break address;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "server exited early ({status}): {:?}",
                    output.lock().unwrap()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no 'listening on' line: {:?}",
                output.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        ServerProcess {
            child,
            output,
            address,
        }
    }

    fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        let exit = loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                break exit;
            }
            assert!(
                Instant::now() < deadline,
                "server did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        std::thread::sleep(Duration::from_millis(100));
        let text = self.output.lock().unwrap().join("\n");
        (exit, text)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

#[tokio::test]
async fn secrets_stay_out_of_logs_and_sigterm_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let bootstrap_key = random_api_key();
    let jwt_secret = "jwt-secret-for-the-log-test-0123456789abcdef";
    let db_password = "pg-password-for-the-log-test";
    let database = TestDatabase::create(dir.path()).await;
    let url = if database.is_postgres() {
        // Trust authentication ignores the password, so it can be checked for leaks safely.
        database
            .url
            .replacen("://postgres@", &format!("://postgres:{db_password}@"), 1)
    } else {
        database.url.clone()
    };

    let mut command = flywheel(dir.path());
    command
        .env("FLYWHEEL_BOOTSTRAP_ADMIN_KEY", &bootstrap_key)
        .env("FLYWHEEL_DATABASE__URL", &url)
        .env("FLYWHEEL_DATABASE__PASSWORD__ENV", "FW_TEST_DB_PASSWORD")
        .env("FW_TEST_DB_PASSWORD", db_password)
        .env("FLYWHEEL_AUTH__JWT_SECRET__ENV", "FW_TEST_JWT_SECRET")
        .env("FW_TEST_JWT_SECRET", jwt_secret)
        .env("FLYWHEEL_LOG__LEVEL", "trace,hyper=info,h2=info")
        .env("FLYWHEEL_LOG__FORMAT", "json");
    let server = ServerProcess::start(command);
    let client = reqwest::Client::new();

    let created: serde_json::Value = client
        .post(format!("{}/v1/api-keys", server.address))
        .bearer_auth(&bootstrap_key)
        .json(&serde_json::json!({"name": "log test", "role": "service"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let created_key = created["key"].as_str().expect("created key").to_owned();
    let me = client
        .get(format!("{}/v1/me", server.address))
        .bearer_auth(&created_key)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);

    // The CLI issues a token against the same database and secret; the server accepts it.
    let issued = flywheel(dir.path())
        .env("FLYWHEEL_DATABASE__URL", &url)
        .env("FLYWHEEL_AUTH__JWT_SECRET__ENV", "FW_TEST_JWT_SECRET")
        .env("FW_TEST_JWT_SECRET", jwt_secret)
        .args([
            "token", "issue", "--tenant", "default", "--user", "ops-1", "--role", "admin", "--ttl",
            "1h",
        ])
        .output()
        .unwrap();
    assert!(
        issued.status.success(),
        "{}",
        String::from_utf8_lossy(&issued.stderr)
    );
    let token = String::from_utf8(issued.stdout).unwrap().trim().to_owned();
    let me = client
        .get(format!("{}/v1/me", server.address))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let _ = client
        .get(format!("{}/v1/me", server.address))
        .bearer_auth(format!("{created_key}x"))
        .send()
        .await
        .unwrap();

    let (exit, logs) = server.terminate();
    assert!(exit.success(), "SIGTERM must exit 0, got {exit}: {logs}");
    assert!(logs.contains("stopped cleanly"), "{logs}");
    assert!(
        logs.contains("\"request_id\""),
        "JSON logs carry the request span: {logs}"
    );
    for (what, secret) in [
        ("bootstrap key", bootstrap_key.as_str()),
        ("created key", created_key.as_str()),
        ("JWT", token.as_str()),
        ("JWT secret", jwt_secret),
        ("database password", db_password),
    ] {
        assert!(!logs.contains(secret), "the {what} appeared in the output");
    }
    drop(database);
}

#[test]
fn first_start_prints_a_generated_bootstrap_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(flywheel(dir.path()));
    let (exit, output) = server.terminate();
    assert!(exit.success(), "{output}");
    let key_lines: Vec<&str> = output
        .lines()
        .filter(|line| line.trim().starts_with("fw_"))
        .collect();
    assert_eq!(key_lines.len(), 1, "{output}");
    assert!(dir.path().join("flywheel.db").exists());
    assert!(dir.path().join("master.key").exists());

    // Second start: the database has tenants, no new key is printed.
    let server = ServerProcess::start(flywheel(dir.path()));
    let (exit, output) = server.terminate();
    assert!(exit.success());
    assert!(
        !output.lines().any(|line| line.trim().starts_with("fw_")),
        "{output}"
    );
}

#[test]
fn configuration_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("conf")).unwrap();
    let config = dir.path().join("conf/flywheel.toml");
    std::fs::write(
        &config,
        "[server]\nbind = \"127.0.0.1:0\"\nmax_bodyy_bytes = 5\n",
    )
    .unwrap();
    let output = flywheel(dir.path())
        .arg("--config")
        .arg(&config)
        .args(["config", "show"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("flywheel.toml"), "{stderr}");
    assert!(stderr.contains("server.max_bodyy_bytes"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let output = flywheel(dir.path())
        .env("FLYWHEEL_SERVR__BIND", "1")
        .args(["config", "show"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("FLYWHEEL_SERVR"), "{stderr}");

    let output = flywheel(dir.path())
        .env("FLYWHEEL_DATABASE__URL", "mysql://nope")
        .args(["config", "show"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("database.url"));
}

#[test]
fn config_show_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let output = flywheel(dir.path())
        .env(
            "FLYWHEEL_DATABASE__URL",
            "postgres://app:hunter2-secret@db.internal:5432/flywheel",
        )
        .env("FLYWHEEL_AUTH__JWT_SECRET__ENV", "SOME_VAR")
        .env("SOME_VAR", "jwt-value-that-must-not-show")
        .env("FLYWHEEL_FEATURES__DATA_COLLECTION", "false")
        .args(["config", "show"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let shown = String::from_utf8(output.stdout).unwrap();
    assert!(!shown.contains("hunter2-secret"), "{shown}");
    assert!(!shown.contains("jwt-value-that-must-not-show"), "{shown}");
    assert!(
        shown.contains("postgres://app:***@db.internal:5432/flywheel"),
        "{shown}"
    );
    assert!(
        shown.contains("SOME_VAR"),
        "the reference is shown: {shown}"
    );
    assert!(shown.contains("data_collection = false"), "{shown}");
    let parsed: toml::Value = toml::from_str(&shown).expect("config show prints TOML");
    assert!(parsed.get("server").is_some());
}

#[test]
fn cli_manages_tenants_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let output = flywheel(dir.path()).args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    run(&["migrate"]);
    run(&[
        "tenants",
        "create",
        "--id",
        "acme",
        "--name",
        "Acme Roofing",
    ]);
    let tenants = run(&["tenants", "list"]);
    assert!(
        tenants.contains("acme") && tenants.contains("Acme Roofing"),
        "{tenants}"
    );
    let key = run(&[
        "keys", "create", "--tenant", "acme", "--role", "partner", "--name", "portal",
    ]);
    assert!(key.trim().starts_with("fw_"), "{key}");
    let listing = run(&["keys", "list", "--tenant", "acme"]);
    assert!(
        listing.contains("partner") && !listing.contains(key.trim()),
        "{listing}"
    );
    let id = listing
        .lines()
        .nth(1)
        .and_then(|line| line.split_whitespace().next())
        .unwrap()
        .to_owned();
    run(&["keys", "revoke", "--tenant", "acme", &id]);
    assert!(run(&["keys", "list", "--tenant", "acme"]).contains("true"));

    let bad = flywheel(dir.path())
        .args(["tenants", "create", "--id", "Not A Slug"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("id"));
    let ttl = flywheel(dir.path())
        .args([
            "token", "issue", "--tenant", "acme", "--user", "u", "--role", "admin", "--ttl", "400d",
        ])
        .output()
        .unwrap();
    assert!(!ttl.status.success());
    assert!(String::from_utf8_lossy(&ttl.stderr).contains("ttl"));
}

/// Ingests continuously, kills the server with SIGKILL at a random moment, restarts it, and
/// checks that every acknowledged interaction is in the store and in the lake exactly once.
#[tokio::test]
async fn kill_9_loses_no_acknowledged_interaction_and_duplicates_nothing() {
    use rand::Rng;

    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::create(dir.path()).await;
    let bootstrap_key = random_api_key();
    let configure = |command: &mut Command| {
        command
            .env("FLYWHEEL_BOOTSTRAP_ADMIN_KEY", &bootstrap_key)
            .env("FLYWHEEL_DATABASE__URL", &database.url)
            .env("FLYWHEEL_LAKE__FLUSH_INTERVAL", "100ms")
            .env("FLYWHEEL_LAKE__FLUSH_MAX_AGE", "100ms")
            .env("FLYWHEEL_LAKE__FLUSH_MAX_ROWS", "300");
    };
    let mut command = flywheel(dir.path());
    configure(&mut command);
    let mut server = ServerProcess::start(command);
    let address = server.address.clone();

    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for client_idx in 0..3 {
        let acked = acked.clone();
        let address = address.clone();
        let key = bootstrap_key.clone();
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(8);
            let mut seq = 0usize;
            while Instant::now() < deadline {
                seq += 1;
                let body = if seq.is_multiple_of(2) {
                    serde_json::Value::Array(
                        (0..20)
                            .map(|i| {
                                crate::helpers::sample_interaction(
                                    &format!("u{client_idx}"),
                                    seq * 100 + i,
                                )
                            })
                            .collect(),
                    )
                } else {
                    crate::helpers::sample_interaction(&format!("u{client_idx}"), seq)
                };
                let Ok(response) = client
                    .post(format!("{address}/v1/interactions"))
                    .bearer_auth(&key)
                    .json(&body)
                    .send()
                    .await
                else {
                    break; // the server is gone
                };
                if !response.status().is_success() {
                    continue;
                }
                let Ok(json) = response.json::<serde_json::Value>().await else {
                    break;
                };
                let mut ids = Vec::new();
                if let Some(results) = json["results"].as_array() {
                    ids.extend(
                        results
                            .iter()
                            .filter_map(|r| r["interaction_id"].as_str().map(str::to_owned)),
                    );
                } else if let Some(id) = json["interaction_id"].as_str() {
                    ids.push(id.to_owned());
                }
                acked.lock().unwrap().extend(ids);
            }
        }));
    }
    let delay = rand::thread_rng().gen_range(700..2_000);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    server.child.kill().unwrap(); // SIGKILL: no shutdown path runs
    server.child.wait().unwrap();
    for client in clients {
        client.await.unwrap();
    }
    let acked: Vec<String> = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 50,
        "the load ran before the kill ({} acknowledged)",
        acked.len()
    );

    // Restart and stop cleanly: the archiver ships whatever was committed.
    let mut command = flywheel(dir.path());
    configure(&mut command);
    let restarted = ServerProcess::start(command);
    let (exit, output) = restarted.terminate();
    assert!(exit.success(), "{output}");

    let mut verify = flywheel(dir.path());
    configure(&mut verify);
    let verify = verify.args(["lake", "verify"]).output().unwrap();
    let verify_text = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success(),
        "{verify_text}{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(verify_text.contains("consistent"), "{verify_text}");

    let lake = flywheel_lake::Lake::open(&flywheel_lake::LakeSettings {
        url: dir.path().join("lake").display().to_string(),
        s3: Default::default(),
    })
    .unwrap();
    let index = lake.read_raw_index().await.unwrap();
    let mut counts: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
    for entry in &index {
        *counts.entry(entry.interaction_id.as_str()).or_default() += 1;
    }
    for id in &acked {
        assert_eq!(
            counts.get(id.as_str()).copied(),
            Some(1),
            "acknowledged {id} must be in the lake exactly once"
        );
    }
    assert!(
        counts.values().all(|count| *count == 1),
        "no row is in the lake twice"
    );
    drop(database);
}

/// The archiver dies between uploading a batch and recording it; the restart re-uploads the
/// same batch to the same file names, so nothing is duplicated.
#[tokio::test]
async fn a_crash_between_upload_and_bookkeeping_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::create(dir.path()).await;
    let bootstrap_key = random_api_key();
    let configure = |command: &mut Command| {
        command
            .env("FLYWHEEL_BOOTSTRAP_ADMIN_KEY", &bootstrap_key)
            .env("FLYWHEEL_DATABASE__URL", &database.url)
            .env("FLYWHEEL_LAKE__FLUSH_INTERVAL", "100ms")
            .env("FLYWHEEL_LAKE__FLUSH_MAX_AGE", "1h")
            .env("FLYWHEEL_LAKE__FLUSH_MAX_ROWS", "40");
    };
    let mut command = flywheel(dir.path());
    configure(&mut command);
    command.env("FLYWHEEL_TEST_CRASH_AFTER_LAKE_UPLOAD", "1");
    let mut server = ServerProcess::start(command);
    let client = reqwest::Client::new();
    let batch: Vec<serde_json::Value> = (0..50)
        .map(|i| crate::helpers::sample_interaction("crash", i))
        .collect();
    let response = client
        .post(format!("{}/v1/interactions", server.address))
        .bearer_auth(&bootstrap_key)
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    let acked: Vec<String> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["interaction_id"].as_str().unwrap().to_owned())
        .collect();
    // 50 rows ≥ flush_max_rows: the archiver claims a batch of 40, uploads it and aborts.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the archiver never aborted");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "the process aborted");
    let lake_dir = dir.path().join("lake");
    let lake = flywheel_lake::Lake::open(&flywheel_lake::LakeSettings {
        url: lake_dir.display().to_string(),
        s3: Default::default(),
    })
    .unwrap();
    assert_eq!(
        lake.read_raw_index().await.unwrap().len(),
        40,
        "the batch was uploaded before the crash"
    );

    let mut command = flywheel(dir.path());
    configure(&mut command);
    let (exit, output) = ServerProcess::start(command).terminate();
    assert!(exit.success(), "{output}");
    let index = lake.read_raw_index().await.unwrap();
    assert_eq!(
        index.len(),
        50,
        "re-uploaded batch plus the rest, nothing twice"
    );
    let unique: std::collections::HashSet<&str> =
        index.iter().map(|e| e.interaction_id.as_str()).collect();
    assert_eq!(unique.len(), 50);
    for id in &acked {
        assert!(unique.contains(id.as_str()));
    }
    drop(database);
}
