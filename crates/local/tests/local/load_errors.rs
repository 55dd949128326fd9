//! Missing, foreign, truncated and corrupt model files are clear errors naming the file,
//! never panics.

use std::path::Path;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use flywheel_local::{
    ChatModel, ChatModelOptions, EmbeddingModel, EmbeddingModelOptions, LocalError,
};

use crate::helpers::{chat_model_path, embedding_model_dir};

fn load_chat(path: &Path) -> LocalError {
    ChatModel::load("broken", path, ChatModelOptions::default())
        .expect_err("a broken file must not load")
}

fn assert_names_file(err: &LocalError, path: &Path, words: &[&str]) {
    let message = err.to_string();
    assert!(
        message.contains(&path.display().to_string()),
        "{message} does not name {}",
        path.display()
    );
    for word in words {
        assert!(message.contains(word), "{message} does not say {word:?}");
    }
}

#[test]
fn a_missing_gguf_says_how_to_fetch_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.gguf");
    let err = load_chat(&path);
    assert!(matches!(err, LocalError::ModelFile { .. }), "{err:?}");
    assert_names_file(&err, &path, &["does not exist", "flywheel models fetch"]);
}

#[test]
fn random_bytes_are_not_a_gguf() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("random.gguf");
    // A fixed pseudo-random pattern (no rand dependency needed).
    let bytes: Vec<u8> = (0u32..100_000)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, bytes).unwrap();
    let err = load_chat(&path);
    assert_names_file(&err, &path, &["not a GGUF file"]);

    // A directory is not a file either.
    let err = load_chat(dir.path());
    assert_names_file(&err, dir.path(), &["directory"]);
}

#[test]
fn a_truncated_download_is_reported_as_truncated() {
    let original = std::fs::read(chat_model_path()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("truncated.gguf");
    std::fs::write(&path, &original[..original.len() * 3 / 5]).unwrap();
    let err = load_chat(&path);
    assert!(matches!(err, LocalError::ModelFile { .. }), "{err:?}");
    assert_names_file(&err, &path, &["truncated", "flywheel models fetch"]);

    // Cut inside the header (in the middle of the vocabulary).
    std::fs::write(&path, &original[..200_000]).unwrap();
    let err = load_chat(&path);
    assert_names_file(&err, &path, &["header is corrupt or truncated"]);
}

#[test]
fn a_corrupt_header_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.gguf");
    let mut bytes = b"GGUF".to_vec();
    bytes.extend_from_slice(&3u32.to_le_bytes());
    bytes.extend_from_slice(&u64::MAX.to_le_bytes()); // tensor count
    bytes.extend_from_slice(&u64::MAX.to_le_bytes()); // metadata count
    bytes.extend_from_slice(&[0xAB; 64]);
    std::fs::write(&path, bytes).unwrap();
    let err = load_chat(&path);
    assert_names_file(&err, &path, &["corrupt"]);
}

fn write_gguf(path: &Path, metadata: &[(&str, gguf_file::Value)]) {
    let tensor = QTensor::quantize(
        &Tensor::zeros((4, 32), candle_core::DType::F32, &Device::Cpu).unwrap(),
        GgmlDType::F32,
    )
    .unwrap();
    let metadata: Vec<(&str, &gguf_file::Value)> =
        metadata.iter().map(|(key, value)| (*key, value)).collect();
    let mut file = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut file, &metadata, &[("token_embd.weight", &tensor)]).unwrap();
}

#[test]
fn an_unsupported_architecture_names_the_supported_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gpt2.gguf");
    write_gguf(
        &path,
        &[(
            "general.architecture",
            gguf_file::Value::String("gpt2".to_owned()),
        )],
    );
    let err = load_chat(&path);
    let LocalError::UnsupportedArchitecture {
        ref architecture,
        ref supported,
        ..
    } = err
    else {
        panic!("expected UnsupportedArchitecture, got {err:?}");
    };
    assert_eq!(architecture, "gpt2");
    assert_eq!(supported, "llama");
    assert_names_file(&err, &path, &["`gpt2` is not supported", "llama"]);
}

#[test]
fn a_llama_gguf_with_impossible_hyperparameters_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zero-heads.gguf");
    let number = gguf_file::Value::U32;
    write_gguf(
        &path,
        &[
            (
                "general.architecture",
                gguf_file::Value::String("llama".to_owned()),
            ),
            ("llama.attention.head_count", number(0)),
            ("llama.attention.head_count_kv", number(0)),
            ("llama.embedding_length", number(32)),
            ("llama.rope.dimension_count", number(8)),
            ("llama.block_count", number(1)),
            ("llama.context_length", number(128)),
            (
                "llama.attention.layer_norm_rms_epsilon",
                gguf_file::Value::F32(1e-5),
            ),
        ],
    );
    let err = load_chat(&path);
    assert_names_file(&err, &path, &["attention heads"]);
}

#[test]
fn a_missing_embedding_model_says_how_to_fetch_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent");
    let err = EmbeddingModel::load("broken", &missing, EmbeddingModelOptions::default())
        .expect_err("a missing directory must not load");
    assert_names_file(&err, &missing, &["does not exist", "flywheel models fetch"]);
}

#[test]
fn a_broken_embedding_model_names_the_file_at_fault() {
    let source = embedding_model_dir();
    let dir = tempfile::tempdir().unwrap();
    for file in ["tokenizer.json", "config.json"] {
        std::fs::copy(source.join(file), dir.path().join(file)).unwrap();
    }
    let load = || {
        EmbeddingModel::load("broken", dir.path(), EmbeddingModelOptions::default())
            .expect_err("a broken model must not load")
    };
    let weights = dir.path().join("model.safetensors");
    let err = load();
    assert_names_file(&err, &weights, &["does not exist"]);

    std::fs::write(&weights, b"not safetensors at all").unwrap();
    let err = load();
    assert_names_file(&err, &weights, &["not a readable safetensors file"]);

    let original = std::fs::read(source.join("model.safetensors")).unwrap();
    std::fs::write(&weights, &original[..original.len() / 2]).unwrap();
    let err = load();
    assert_names_file(&err, &weights, &["safetensors"]);

    let config = dir.path().join("config.json");
    std::fs::write(&config, r#"{"model_type": "t5"}"#).unwrap();
    let err = load();
    assert!(
        matches!(err, LocalError::UnsupportedArchitecture { .. }),
        "{err:?}"
    );
    assert_names_file(&err, &config, &["`t5` is not supported", "bert"]);

    std::fs::write(&config, "{").unwrap();
    let err = load();
    assert_names_file(&err, &config, &["not valid JSON"]);
}
