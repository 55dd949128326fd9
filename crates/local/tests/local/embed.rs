//! The embedding model against sentence-transformers' own vectors
//! (`tests/fixtures/minilm_reference.json`, written by `scripts/reference_embeddings.py`).

use std::time::Duration;

use flywheel_local::{EmbeddingModel, EmbeddingModelOptions, LocalError};
use serde_json::Value;

use crate::helpers::{embedding_model_dir, shared_embedding_model, EMBEDDING_MODEL_NAME};

struct Reference {
    text: String,
    vector: Vec<f32>,
}

fn references() -> Vec<Reference> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/minilm_reference.json"
    );
    let document: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    document["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|sentence| Reference {
            text: sentence["text"].as_str().unwrap().to_owned(),
            vector: sentence["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect(),
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

fn assert_close(a: &[f32], b: &[f32], tolerance: f32) {
    assert_eq!(a.len(), b.len());
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(worst <= tolerance, "vectors differ by {worst}");
}

#[tokio::test]
async fn vectors_match_sentence_transformers_and_batching_changes_nothing() {
    let model = shared_embedding_model();
    assert_eq!(model.dimensions(), 384);
    let references = references();
    assert_eq!(references.len(), 5);
    let texts: Vec<String> = references.iter().map(|r| r.text.clone()).collect();
    let batched = model.embed(texts.clone()).await.unwrap();
    assert_eq!(batched.vectors.len(), texts.len());
    let expected_tokens: usize = texts.iter().map(|text| model.count_tokens(text)).sum();
    assert_eq!(batched.tokens, expected_tokens as u64);
    for (reference, vector) in references.iter().zip(&batched.vectors) {
        let similarity = cosine(&reference.vector, vector);
        assert!(
            similarity >= 0.999,
            "{:?}: cosine {similarity}",
            reference.text
        );
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
        let single = model.embed(vec![reference.text.clone()]).await.unwrap();
        assert_close(&single.vectors[0], vector, 1e-5);
    }
}

#[tokio::test]
async fn more_inputs_than_a_batch_come_back_in_input_order() {
    let model = shared_embedding_model();
    let references = references();
    // 43 inputs: two batches of 32 and 11, lengths mixed so sorting reorders them.
    let inputs: Vec<String> = (0..43)
        .map(|i| references[(i * 3) % references.len()].text.clone())
        .collect();
    let embeddings = model.embed(inputs.clone()).await.unwrap();
    assert_eq!(embeddings.vectors.len(), inputs.len());
    for (i, vector) in embeddings.vectors.iter().enumerate() {
        let reference = &references[(i * 3) % references.len()];
        assert!(cosine(&reference.vector, vector) >= 0.999, "input {i}");
    }
    assert!(model.embed(Vec::new()).await.unwrap().vectors.is_empty());
}

#[test]
fn long_inputs_are_truncated_to_the_sequence_limit() {
    let model = shared_embedding_model();
    assert_eq!(model.count_tokens("hello"), 3); // [CLS] hello [SEP]
    assert_eq!(model.count_tokens(&"word ".repeat(1000)), 256);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_at_once_with_busy() {
    let model = EmbeddingModel::load(
        EMBEDDING_MODEL_NAME,
        &embedding_model_dir(),
        EmbeddingModelOptions {
            max_queue: 1,
            ..EmbeddingModelOptions::default()
        },
    )
    .unwrap();
    // Seconds of work: 64 inputs of 256 tokens.
    let heavy: Vec<String> = vec!["the cat sat on the mat ".repeat(60); 64];
    let spawn = |inputs: Vec<String>| {
        let model = model.clone();
        tokio::spawn(async move { model.embed(inputs).await })
    };
    let running = spawn(heavy.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waiting = spawn(vec!["short".to_owned()]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(model.queue_depth(), 1);
    let err = model.embed(vec!["refused".to_owned()]).await.unwrap_err();
    assert!(matches!(err, LocalError::Busy { queue: 1, .. }), "{err:?}");
    assert!(err.to_string().contains(EMBEDDING_MODEL_NAME), "{err}");
    assert_eq!(running.await.unwrap().unwrap().vectors.len(), heavy.len());
    assert_eq!(waiting.await.unwrap().unwrap().vectors.len(), 1);
}
