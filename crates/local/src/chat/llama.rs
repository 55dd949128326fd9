//! The Llama forward pass over GGUF weights, written for this runtime's two phases:
//!
//! - prompt processing, where a weight whose input width is not a multiple of 256 (all but one
//!   of SmolLM2's, 576 wide) is dequantised to f32 for the chunk and multiplied with gemm: candle
//!   multiplies such quantised weights with many rows through its generic kernel, four to five
//!   times slower;
//! - generation, one token at a time through the quantised kernels, with a KV cache allocated
//!   once per request (no growing concatenation per token) and grouped-query attention done by
//!   stacking the query heads that share a key/value head instead of copying the cache for
//!   each of them.
//!
//! It computes what candle-transformers' `quantized_llama` computes (the tests compare them).

use std::sync::Arc;

use candle_core::quantized::{gguf_file, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Result, Tensor};

use super::tokenizer::value_to_i64;

/// Prompt chunks with at least this many tokens use dequantised weights (see the module doc).
const DEQUANTIZE_FROM_ROWS: usize = 16;
/// candle's fast multi-row quantised kernels need the input width to be a multiple of this.
const FAST_KERNEL_WIDTH: usize = 256;

/// The weights of a Llama model.
pub(crate) struct Llama {
    embeddings: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    output: Weight,
    cos: Tensor,
    sin: Tensor,
    heads: usize,
    kv_heads: usize,
    head_dimensions: usize,
    epsilon: f32,
    max_positions: usize,
}

struct Layer {
    attention_norm: Tensor,
    query: Weight,
    key: Weight,
    value: Weight,
    attention_output: Weight,
    ffn_norm: Tensor,
    gate: Weight,
    up: Weight,
    down: Weight,
}

/// A quantised weight and its matrix product.
struct Weight {
    tensor: Arc<QTensor>,
    matmul: QMatMul,
    dequantize_for_prompts: bool,
}

/// The keys and values of one request, allocated for its whole length.
pub(crate) struct KvCache {
    layers: Vec<(Tensor, Tensor)>,
    length: usize,
    capacity: usize,
}

impl Weight {
    fn new(tensor: QTensor) -> Result<Weight> {
        let tensor = Arc::new(tensor);
        let inputs = tensor.shape().dims().last().copied().unwrap_or(0);
        Ok(Weight {
            matmul: QMatMul::from_arc(Arc::clone(&tensor))?,
            dequantize_for_prompts: !inputs.is_multiple_of(FAST_KERNEL_WIDTH),
            tensor,
        })
    }

    /// `x · Wᵀ` for `x` of shape `(rows, inputs)`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let rows = x.dim(0)?;
        if rows >= DEQUANTIZE_FROM_ROWS && self.dequantize_for_prompts {
            let weight = self.tensor.dequantize(x.device())?;
            x.matmul(&weight.t()?)
        } else {
            self.matmul.forward(x)
        }
    }
}

impl Llama {
    /// Builds the model from a GGUF whose metadata was checked by the loader.
    pub(crate) fn from_gguf<R: std::io::Read + std::io::Seek>(
        content: &gguf_file::Content,
        reader: &mut R,
        max_positions: usize,
    ) -> Result<Llama> {
        let device = &Device::Cpu;
        let number = |key: &str| -> Result<usize> {
            content
                .metadata
                .get(key)
                .and_then(value_to_i64)
                .and_then(|value| usize::try_from(value).ok())
                .ok_or_else(|| candle_core::Error::Msg(format!("no integer `{key}`")))
        };
        let heads = number("llama.attention.head_count")?;
        let kv_heads = number("llama.attention.head_count_kv")?;
        let hidden = number("llama.embedding_length")?;
        let blocks = number("llama.block_count")?;
        let rope_dimensions = number("llama.rope.dimension_count")?;
        let head_dimensions = hidden / heads.max(1);
        if rope_dimensions != head_dimensions {
            candle_core::bail!(
                "rotary embeddings over {rope_dimensions} of {head_dimensions} head dimensions \
                 are not supported"
            );
        }
        let epsilon = content
            .metadata
            .get("llama.attention.layer_norm_rms_epsilon")
            .and_then(|value| value.to_f32().ok())
            .unwrap_or(1e-5);
        let rope_base = content
            .metadata
            .get("llama.rope.freq_base")
            .and_then(|value| value.to_f32().ok())
            .unwrap_or(10_000.0);

        let mut tensor = |name: &str| content.tensor(reader, name, device);
        let embeddings_q = tensor("token_embd.weight")?;
        let embeddings = embeddings_q.dequantize(device)?;
        let norm = tensor("output_norm.weight")?.dequantize(device)?;
        let output = match tensor("output.weight") {
            Ok(output) => Weight::new(output)?,
            Err(_) => Weight::new(embeddings_q)?,
        };
        let mut layers = Vec::with_capacity(blocks);
        for block in 0..blocks {
            let mut weight = |name: &str| tensor(&format!("blk.{block}.{name}.weight"));
            layers.push(Layer {
                attention_norm: weight("attn_norm")?.dequantize(device)?,
                query: Weight::new(weight("attn_q")?)?,
                key: Weight::new(weight("attn_k")?)?,
                value: Weight::new(weight("attn_v")?)?,
                attention_output: Weight::new(weight("attn_output")?)?,
                ffn_norm: weight("ffn_norm")?.dequantize(device)?,
                gate: Weight::new(weight("ffn_gate")?)?,
                up: Weight::new(weight("ffn_up")?)?,
                down: Weight::new(weight("ffn_down")?)?,
            });
        }

        let frequencies: Vec<f32> = (0..head_dimensions)
            .step_by(2)
            .map(|i| 1.0 / rope_base.powf(i as f32 / head_dimensions as f32))
            .collect();
        let frequencies = Tensor::new(frequencies.as_slice(), device)?;
        let angles = Tensor::arange(0, max_positions as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((max_positions, 1))?
            .matmul(&frequencies.reshape((1, head_dimensions / 2))?)?;
        Ok(Llama {
            embeddings,
            layers,
            norm,
            output,
            cos: angles.cos()?,
            sin: angles.sin()?,
            heads,
            kv_heads,
            head_dimensions,
            epsilon,
            max_positions,
        })
    }

    /// An empty cache for a request of at most `capacity` tokens (prompt and answer).
    pub(crate) fn cache(&self, capacity: usize) -> Result<KvCache> {
        let capacity = capacity.min(self.max_positions);
        let shape = (1, self.kv_heads, capacity, self.head_dimensions);
        let layers = (0..self.layers.len())
            .map(|_| {
                Ok((
                    Tensor::zeros(shape, DType::F32, &Device::Cpu)?,
                    Tensor::zeros(shape, DType::F32, &Device::Cpu)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(KvCache {
            layers,
            length: 0,
            capacity,
        })
    }

    /// Runs `tokens` (which follow the cache's tokens) through the model, appends them to the
    /// cache, and returns the logits for the token after the last one, shape `(vocab)`.
    pub(crate) fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor> {
        let rows = tokens.len();
        let start = cache.length;
        if rows == 0 || start + rows > cache.capacity {
            candle_core::bail!(
                "{rows} tokens after {start} do not fit a cache of {}",
                cache.capacity
            );
        }
        let (heads, kv_heads, head_dimensions) = (self.heads, self.kv_heads, self.head_dimensions);
        let group = heads / kv_heads;
        let hidden = heads * head_dimensions;
        let end = start + rows;
        let device = &Device::Cpu;
        let ids = Tensor::new(tokens, device)?;
        let mut x = self.embeddings.index_select(&ids, 0)?;
        let cos = self.cos.narrow(0, start, rows)?;
        let sin = self.sin.narrow(0, start, rows)?;
        let mask = if rows > 1 {
            Some(causal_mask(rows, start, device)?)
        } else {
            None
        };
        let scale = 1.0 / (head_dimensions as f64).sqrt();
        for (layer, (key_cache, value_cache)) in self.layers.iter().zip(&cache.layers) {
            let h = candle_nn::ops::rms_norm(&x, &layer.attention_norm, self.epsilon)?;
            let split_heads = |x: Tensor, count: usize| -> Result<Tensor> {
                x.reshape((1, rows, count, head_dimensions))?
                    .transpose(1, 2)?
                    .contiguous()
            };
            let query = split_heads((layer.query.forward(&h)? * scale)?, heads)?;
            let key = split_heads(layer.key.forward(&h)?, kv_heads)?;
            let value = split_heads(layer.value.forward(&h)?, kv_heads)?;
            let query = candle_nn::rotary_emb::rope_i(&query, &cos, &sin)?;
            let key = candle_nn::rotary_emb::rope_i(&key, &cos, &sin)?;
            key_cache.slice_set(&key, 2, start)?;
            value_cache.slice_set(&value, 2, start)?;
            let keys = key_cache.narrow(2, 0, end)?;
            let values = value_cache.narrow(2, 0, end)?;
            // The query heads that share a key/value head are consecutive: stacked as rows,
            // they attend to that head's cache without copying it for each of them.
            let query = query.reshape((1, kv_heads, group * rows, head_dimensions))?;
            let scores = query.matmul(&keys.t()?)?;
            let scores = match &mask {
                Some(mask) => scores
                    .reshape((1, kv_heads, group, rows, end))?
                    .broadcast_add(mask)?
                    .reshape((1, kv_heads, group * rows, end))?,
                None => scores,
            };
            let probabilities = candle_nn::ops::softmax_last_dim(&scores)?;
            let context = probabilities
                .matmul(&values)?
                .reshape((1, heads, rows, head_dimensions))?
                .transpose(1, 2)?
                .reshape((rows, hidden))?;
            x = (x + layer.attention_output.forward(&context)?)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, self.epsilon)?;
            let gate = candle_nn::ops::silu(&layer.gate.forward(&h)?)?;
            let up = layer.up.forward(&h)?;
            x = (x + layer.down.forward(&(gate * up)?)?)?;
        }
        cache.length = end;
        let last = x.narrow(0, rows - 1, 1)?;
        let last = candle_nn::ops::rms_norm(&last, &self.norm, self.epsilon)?;
        self.output.forward(&last)?.squeeze(0)
    }
}

/// The additive causal mask `(rows, start + rows)` for `rows` new tokens after `start` cached
/// ones: 0 where a token may attend, −∞ where the key comes after it.
fn causal_mask(rows: usize, start: usize, device: &Device) -> Result<Tensor> {
    let width = start + rows;
    let mask: Vec<f32> = (0..rows)
        .flat_map(|row| {
            (0..width).map(move |column| {
                if column > start + row {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Tensor::from_vec(mask, (rows, width), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_causal_mask_hides_later_keys_only() -> Result<()> {
        let mask = causal_mask(2, 3, &Device::Cpu)?.to_vec2::<f32>()?;
        let inf = f32::NEG_INFINITY;
        assert_eq!(mask, [[0.0, 0.0, 0.0, 0.0, inf], [0.0; 5]]);
        Ok(())
    }

    /// The shipped SmolLM2 file, as the integration tests find it.
    fn smollm2() -> std::path::PathBuf {
        let dir = std::env::var_os("FLYWHEEL_MODELS_DIR").map_or_else(
            || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models"),
            std::path::PathBuf::from,
        );
        let path = dir.join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
        assert!(
            path.exists(),
            "test model {} is missing: run `cargo run -p flywheel -- models fetch`",
            path.display()
        );
        path
    }

    fn reader_for_f32(path: &std::path::Path) -> Result<std::io::Cursor<Vec<u8>>> {
        Ok(std::io::Cursor::new(std::fs::read(path)?))
    }

    /// The model with every tensor converted to f32.
    fn f32_copy(reader: &mut std::io::Cursor<Vec<u8>>) -> Result<Llama> {
        let content = gguf_file::Content::read(reader)?;
        let mut tensors = Vec::new();
        for name in content.tensor_infos.keys() {
            let tensor = content.tensor(reader, name, &Device::Cpu)?;
            let tensor = QTensor::quantize(
                &tensor.dequantize(&Device::Cpu)?,
                candle_core::quantized::GgmlDType::F32,
            )?;
            tensors.push((name.as_str(), tensor));
        }
        let metadata: Vec<_> = content
            .metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        let tensors: Vec<_> = tensors
            .iter()
            .map(|(name, tensor)| (*name, tensor))
            .collect();
        let mut file = std::io::Cursor::new(Vec::new());
        gguf_file::write(&mut file, &metadata, &tensors)?;
        file.set_position(0);
        let content = gguf_file::Content::read(&mut file)?;
        Llama::from_gguf(&content, &mut file, 4096)
    }

    fn max_difference(a: &Tensor, b: &Tensor) -> Result<f32> {
        (a - b)?.abs()?.max_all()?.to_scalar::<f32>()
    }

    #[test]
    fn logits_match_candles_quantized_llama() -> Result<()> {
        use candle_transformers::models::quantized_llama::ModelWeights;
        let bytes = std::fs::read(smollm2())?;
        let mut reader = std::io::Cursor::new(bytes);
        let content = gguf_file::Content::read(&mut reader)?;
        let ours = Llama::from_gguf(&content, &mut reader, 4096)?;
        let mut theirs = ModelWeights::from_gguf(content, &mut reader, &Device::Cpu)?;
        // "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
        // followed by 24 tokens of a long prompt, so the chunk uses dequantised weights.
        let mut prompt = vec![1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1];
        prompt.extend([
            520, 9531, 198, 504, 3575, 282, 4649, 314, 7042, 30, 378, 260, 1128,
        ]);

        // Token by token, both take the same quantised kernels.
        let mut cache = ours.cache(64)?;
        for (position, &token) in prompt.iter().enumerate() {
            let ours = ours.forward(&[token], &mut cache)?;
            let input = Tensor::new(&[token], &Device::Cpu)?.unsqueeze(0)?;
            let theirs = theirs.forward(&input, position)?.squeeze(0)?;
            let difference = max_difference(&ours, &theirs)?;
            assert!(
                difference < 1e-3,
                "position {position}: difference {difference}"
            );
        }
        // The whole prompt at once: with f32 weights (so both paths compute exactly the same
        // products) it must give what token by token gives, then continue the same way.
        let exact = f32_copy(&mut reader_for_f32(&smollm2())?)?;
        let mut chunked = exact.cache(64)?;
        let at_once = exact.forward(&prompt, &mut chunked)?;
        let mut stepwise = exact.cache(64)?;
        let mut last = None;
        for &token in &prompt {
            last = Some(exact.forward(&[token], &mut stepwise)?);
        }
        let last = last.ok_or_else(|| candle_core::Error::Msg("no prompt".into()))?;
        let difference = max_difference(&at_once, &last)?;
        assert!(
            difference < 1e-3,
            "chunked vs stepwise: difference {difference}"
        );
        let next = exact.forward(&[42], &mut chunked)?;
        let difference = max_difference(&next, &exact.forward(&[42], &mut stepwise)?)?;
        assert!(
            difference < 1e-3,
            "after the chunk: difference {difference}"
        );
        assert!(exact.forward(&[], &mut chunked).is_err());
        Ok(())
    }
}
