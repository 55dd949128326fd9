//! Loading a GGUF chat model: reading and checking the file (so a missing, foreign, truncated
//! or inconsistent file is a clear error, never a panic), requantising the tensor types that
//! have no fast CPU kernel in candle, and building the model, tokenizer and chat template.

use std::io::Cursor;
use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::Device;
use candle_transformers::models::quantized_llama::MAX_SEQ_LEN;

use super::llama::Llama;
use super::template::ChatTemplate;
use super::tokenizer::{metadata_string, value_to_i64, GgufTokenizer};
use crate::LocalError;

/// Architectures this runtime can run (through candle's `quantized_llama`).
pub(crate) const SUPPORTED_ARCHITECTURES: &[&str] = &["llama"];

/// Block types candle multiplies with its generic, unvectorised kernel. Converting them to
/// Q8_0 (which has AVX2/AVX-512 kernels) at load makes SmolLM2 about 5x faster on prompts
/// and 2.4x on generation; from 4- and 5-bit blocks the conversion is nearly lossless.
const REQUANTIZED_TYPES: &[GgmlDType] = &[GgmlDType::Q4_1, GgmlDType::Q5_0, GgmlDType::Q5_1];
const REQUANTIZED_TO: GgmlDType = GgmlDType::Q8_0;

/// Everything a chat model's worker and handle need, read from one GGUF file.
pub(crate) struct LoadedGguf {
    pub(crate) weights: Llama,
    pub(crate) tokenizer: GgufTokenizer,
    pub(crate) template: ChatTemplate,
    pub(crate) architecture: String,
    /// The context window the model was trained with (`<arch>.context_length`).
    pub(crate) trained_context_length: usize,
    pub(crate) requantized_tensors: usize,
    pub(crate) load_duration: Duration,
}

/// Reads and prepares the model at `path` (blocking; takes about a second for SmolLM2).
pub(crate) fn load(path: &Path) -> Result<LoadedGguf, LocalError> {
    let started = Instant::now();
    let bytes = read_file(path)?;
    if bytes.len() < 8 || &bytes[..4] != b"GGUF" {
        let start = bytes
            .iter()
            .take(4)
            .map(|byte| format!("{byte:02x}"))
            .collect::<Vec<_>>()
            .join(" ");
        return Err(LocalError::model_file(
            path,
            format!(
                "not a GGUF file (it is {} bytes and starts with [{start}], a GGUF file starts \
                 with `GGUF`); point the model's path at a .gguf file",
                bytes.len()
            ),
        ));
    }
    let file_len = bytes.len() as u64;
    let mut reader = Cursor::new(bytes);
    let content = gguf_file::Content::read(&mut reader).map_err(|err| {
        LocalError::model_file(
            path,
            format!("the GGUF header is corrupt or truncated ({err}); download the file again"),
        )
    })?;

    let architecture = metadata_string(&content, "general.architecture")
        .ok_or_else(|| {
            LocalError::model_file(path, "no `general.architecture` in the GGUF metadata")
        })?
        .to_owned();
    if !SUPPORTED_ARCHITECTURES.contains(&architecture.as_str()) {
        return Err(LocalError::UnsupportedArchitecture {
            path: path.to_path_buf(),
            architecture,
            supported: SUPPORTED_ARCHITECTURES.join(", "),
        });
    }
    let hyper = check_llama_metadata(path, &content)?;
    check_tensors(path, &content, &hyper, file_len)?;

    let tokenizer = GgufTokenizer::from_gguf(path, &content)?;
    let template = ChatTemplate::new(
        path,
        metadata_string(&content, "tokenizer.chat_template"),
        tokenizer.bos_token(),
        tokenizer.eos_token(),
    );
    let output_rows = content
        .tensor_infos
        .get("output.weight")
        .or_else(|| content.tensor_infos.get("token_embd.weight"))
        .and_then(|info| info.shape.dims().first().copied());
    if output_rows != Some(tokenizer.vocab_size()) {
        return Err(LocalError::model_file(
            path,
            format!(
                "the output layer has {} rows but the tokenizer has {} tokens",
                output_rows.unwrap_or(0),
                tokenizer.vocab_size()
            ),
        ));
    }

    let (content, mut reader, requantized_tensors) =
        requantize(path, content, reader).map_err(|err| {
            LocalError::model_file(path, format!("the tensor data is corrupt: {err}"))
        })?;
    // The builder indexes and divides by values checked above; the catch is a last line of
    // defence so that a file we failed to anticipate is an error, not a crashed server.
    let max_positions = effective_context_length(hyper.context_length, None);
    let weights = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Llama::from_gguf(&content, &mut reader, max_positions)
    }))
    .map_err(|_| LocalError::model_file(path, "the model cannot be built from this file"))?
    .map_err(|err| {
        LocalError::model_file(
            path,
            format!("the model cannot be built from this file: {err}"),
        )
    })?;

    Ok(LoadedGguf {
        weights,
        tokenizer,
        template,
        architecture,
        trained_context_length: hyper.context_length,
        requantized_tensors,
        load_duration: started.elapsed(),
    })
}

fn read_file(path: &Path) -> Result<Vec<u8>, LocalError> {
    std::fs::read(path).map_err(|err| {
        let problem = match err.kind() {
            std::io::ErrorKind::NotFound => {
                "the file does not exist; run `flywheel models fetch`, or set the model's path \
                 to a GGUF file"
                    .to_owned()
            }
            std::io::ErrorKind::IsADirectory => {
                "this is a directory; the path must name a .gguf file".to_owned()
            }
            _ => format!("the file cannot be read: {err}"),
        };
        LocalError::model_file(path, problem)
    })
}

/// The Llama hyperparameters candle reads, checked so it cannot divide by zero or index out
/// of range.
struct LlamaHyper {
    block_count: usize,
    expert_count: usize,
    context_length: usize,
}

fn check_llama_metadata(
    path: &Path,
    content: &gguf_file::Content,
) -> Result<LlamaHyper, LocalError> {
    let number = |key: &str| -> Result<usize, LocalError> {
        let value = content.metadata.get(key).ok_or_else(|| {
            LocalError::model_file(path, format!("no `{key}` in the GGUF metadata"))
        })?;
        value_to_i64(value)
            .and_then(|value| usize::try_from(value).ok())
            .ok_or_else(|| {
                LocalError::model_file(path, format!("`{key}` is not a non-negative integer"))
            })
    };
    let optional = |key: &str| -> Result<usize, LocalError> {
        if content.metadata.contains_key(key) {
            number(key)
        } else {
            Ok(0)
        }
    };
    let invalid = |problem: String| Err(LocalError::model_file(path, problem));
    let head_count = number("llama.attention.head_count")?;
    let head_count_kv = number("llama.attention.head_count_kv")?;
    let embedding_length = number("llama.embedding_length")?;
    let rope_dimensions = number("llama.rope.dimension_count")?;
    let block_count = number("llama.block_count")?;
    let context_length = number("llama.context_length")?;
    let expert_count = optional("llama.expert_count")?;
    if content
        .metadata
        .get("llama.attention.layer_norm_rms_epsilon")
        .and_then(|value| value.to_f32().ok())
        .is_none()
    {
        return invalid("no float `llama.attention.layer_norm_rms_epsilon`".to_owned());
    }
    if head_count == 0 || head_count_kv == 0 || !head_count.is_multiple_of(head_count_kv) {
        return invalid(format!(
            "inconsistent attention heads: {head_count} heads, {head_count_kv} key/value heads"
        ));
    }
    if embedding_length == 0 || !embedding_length.is_multiple_of(head_count) {
        return invalid(format!(
            "the embedding length {embedding_length} is not a multiple of the {head_count} heads"
        ));
    }
    let head_dimensions = embedding_length / head_count;
    if rope_dimensions == 0
        || !rope_dimensions.is_multiple_of(2)
        || rope_dimensions > head_dimensions
    {
        return invalid(format!(
            "the rotary dimension count {rope_dimensions} does not fit heads of \
             {head_dimensions} dimensions"
        ));
    }
    if block_count == 0 || context_length < 2 {
        return invalid(format!(
            "{block_count} blocks and a context of {context_length} tokens cannot make a model"
        ));
    }
    Ok(LlamaHyper {
        block_count,
        expert_count,
        context_length,
    })
}

/// Checks that every tensor the model needs is present and lies inside the file, so a
/// truncated download is reported as such before anything is built.
fn check_tensors(
    path: &Path,
    content: &gguf_file::Content,
    hyper: &LlamaHyper,
    file_len: u64,
) -> Result<(), LocalError> {
    let mut required = vec![
        "token_embd.weight".to_owned(),
        "output_norm.weight".to_owned(),
    ];
    let per_block: &[&str] = if hyper.expert_count <= 1 {
        &[
            "attn_q",
            "attn_k",
            "attn_v",
            "attn_output",
            "attn_norm",
            "ffn_norm",
            "ffn_gate",
            "ffn_down",
            "ffn_up",
        ]
    } else {
        &[
            "attn_q",
            "attn_k",
            "attn_v",
            "attn_output",
            "attn_norm",
            "ffn_norm",
            "ffn_gate_inp",
        ]
    };
    for block in 0..hyper.block_count {
        for name in per_block {
            required.push(format!("blk.{block}.{name}.weight"));
        }
    }
    if let Some(missing) = required
        .iter()
        .find(|name| !content.tensor_infos.contains_key(name.as_str()))
    {
        return Err(LocalError::model_file(
            path,
            format!("tensor `{missing}` is missing; the file is incomplete or not a Llama model"),
        ));
    }

    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    for name in names {
        let info = &content.tensor_infos[name];
        let elements = info.shape.elem_count();
        let block_size = info.ggml_dtype.block_size();
        if block_size == 0 || !elements.is_multiple_of(block_size) {
            return Err(LocalError::model_file(
                path,
                format!(
                    "tensor `{name}` has {elements} elements, not a multiple of its {:?} block \
                     size {block_size}",
                    info.ggml_dtype
                ),
            ));
        }
        let size = (elements / block_size) as u64 * info.ggml_dtype.type_size() as u64;
        let start = content.tensor_data_offset.saturating_add(info.offset);
        let end = start.saturating_add(size);
        if end > file_len {
            return Err(LocalError::model_file(
                path,
                format!(
                    "truncated or corrupt: tensor `{name}` needs bytes {start}..{end} but the \
                     file has {file_len} bytes; the download was probably interrupted, run \
                     `flywheel models fetch` again"
                ),
            ));
        }
    }
    Ok(())
}

/// Rewrites the tensors in [`REQUANTIZED_TYPES`] as Q8_0 into an in-memory GGUF (metadata
/// kept), and returns that file's content and reader. A file with nothing to convert is
/// returned as it is.
fn requantize(
    path: &Path,
    content: gguf_file::Content,
    mut reader: Cursor<Vec<u8>>,
) -> candle_core::Result<(gguf_file::Content, Cursor<Vec<u8>>, usize)> {
    let convert = |info: &gguf_file::TensorInfo| {
        REQUANTIZED_TYPES.contains(&info.ggml_dtype)
            && info
                .shape
                .dims()
                .last()
                .is_some_and(|&columns| columns.is_multiple_of(REQUANTIZED_TO.block_size()))
    };
    let count = content.tensor_infos.values().filter(|i| convert(i)).count();
    if count == 0 {
        return Ok((content, reader, 0));
    }
    let started = Instant::now();
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut tensors: Vec<(&str, QTensor)> = Vec::with_capacity(names.len());
    for name in names {
        let tensor = content.tensor(&mut reader, name, &Device::Cpu)?;
        let tensor = if convert(&content.tensor_infos[name]) {
            QTensor::quantize(&tensor.dequantize(&Device::Cpu)?, REQUANTIZED_TO)?
        } else {
            tensor
        };
        tensors.push((name.as_str(), tensor));
    }
    // The writer aligns tensor data to 32 bytes, the GGUF default: a different alignment
    // recorded in the metadata would misplace every tensor on reading.
    let metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .filter(|(key, _)| key.as_str() != "general.alignment")
        .map(|(key, value)| (key.as_str(), value))
        .collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors
        .iter()
        .map(|(name, tensor)| (*name, tensor))
        .collect();
    let capacity = tensors
        .iter()
        .map(|(_, tensor)| tensor.storage_size_in_bytes() + 32)
        .sum::<usize>()
        + 4 * 1024 * 1024;
    let mut output = Cursor::new(Vec::with_capacity(capacity));
    gguf_file::write(&mut output, &metadata, &tensor_refs)?;
    drop(tensor_refs);
    drop(tensors);
    drop(reader);
    output.set_position(0);
    let content = gguf_file::Content::read(&mut output)?;
    tracing::debug!(
        file = %path.display(),
        tensors = count,
        to = ?REQUANTIZED_TO,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "requantized tensors without fast CPU kernels"
    );
    Ok((content, output, count))
}

/// The context window actually used: the trained one, capped at candle's `MAX_SEQ_LEN` (the
/// runtime's rotary table; 4096) and by the configured override.
pub(crate) fn effective_context_length(trained: usize, configured: Option<usize>) -> usize {
    let mut context = trained.min(MAX_SEQ_LEN);
    if let Some(configured) = configured {
        context = context.min(configured);
    }
    context
}
