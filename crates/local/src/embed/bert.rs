//! A BERT encoder for inference on the CPU, laid out for throughput on batches of short
//! sentences:
//!
//! - no padding: the real tokens of all sequences are packed one after another, and every step
//!   but attention works on them token by token; attention runs per sequence over its own
//!   tokens (so a batch costs what its tokens cost, not sequences × longest);
//! - the query, key and value projections fused into one matrix product, with the attention
//!   scale folded into the query weights;
//! - bias, residual and layer norm fused into one pass, and bias and the exact (erf) GELU into
//!   another, with a vectorisable erf instead of libm's scalar one;
//! - the passes that candle would run on one thread (attention, activation, norms) split
//!   across the CPU's cores.
//!
//! candle-transformers' `BertModel` computes the same function; on a 2-core CPU it spent more
//! time in padding, its generic softmax and scalar GELU than in the matrix products, and ran at
//! a third of sentence-transformers' speed. The weights are the Hugging Face layout
//! (`embeddings.*`, `encoder.layer.N.*`, optionally under `bert.`).

use std::sync::OnceLock;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Module, Result, Shape, Tensor};
use candle_nn::{LayerNorm, VarBuilder};
use candle_transformers::models::bert::{Config, HiddenAct};

use crate::chat::forward_turn;

/// Below this many output values a pass runs on the calling thread alone (a thread costs
/// tens of microseconds to start).
const PARALLEL_MIN_VALUES: usize = 32 * 1024;

/// The encoder's weights.
pub(super) struct BertEncoder {
    word_embeddings: Tensor,
    /// Position embeddings with the (only used) token type 0 embedding already added.
    position_embeddings: Tensor,
    embeddings_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    head_dimensions: usize,
    activation: Activation,
}

struct Layer {
    /// `(hidden, 3 × hidden)`: query (pre-scaled by 1/√head_dim), key and value side by side.
    qkv_weight: Tensor,
    qkv_bias: Vec<f32>,
    output_weight: Tensor,
    attention_norm: BiasResidualNorm,
    up_weight: Tensor,
    up_bias: Vec<f32>,
    down_weight: Tensor,
    output_norm: BiasResidualNorm,
}

#[derive(Debug, Clone, Copy)]
enum Activation {
    GeluErf,
    GeluTanh,
    Relu,
}

impl BertEncoder {
    pub(super) fn load(weights: VarBuilder, config: &Config) -> Result<BertEncoder> {
        let weights = if weights.contains_tensor("bert.embeddings.word_embeddings.weight") {
            weights.pp("bert")
        } else {
            weights
        };
        let hidden = config.hidden_size;
        let heads = config.num_attention_heads;
        let head_dimensions = hidden / heads;
        let embeddings = weights.pp("embeddings");
        let word_embeddings =
            embeddings.get((config.vocab_size, hidden), "word_embeddings.weight")?;
        let token_type = embeddings
            .get(
                (config.type_vocab_size, hidden),
                "token_type_embeddings.weight",
            )?
            .narrow(0, 0, 1)?;
        let position_embeddings = embeddings
            .get(
                (config.max_position_embeddings, hidden),
                "position_embeddings.weight",
            )?
            .broadcast_add(&token_type)?;
        let embeddings_norm = {
            let vb = embeddings.pp("LayerNorm");
            LayerNorm::new(
                vb.get(hidden, "weight")?,
                vb.get(hidden, "bias")?,
                config.layer_norm_eps,
            )
        };

        let scale = 1.0 / (head_dimensions as f64).sqrt();
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for index in 0..config.num_hidden_layers {
            let layer = weights.pp(format!("encoder.layer.{index}"));
            let attention = layer.pp("attention");
            let projection = |name: &str| -> Result<(Tensor, Tensor)> {
                let vb = attention.pp("self").pp(name);
                Ok((vb.get((hidden, hidden), "weight")?, vb.get(hidden, "bias")?))
            };
            let (query_weight, query_bias) = projection("query")?;
            let (key_weight, key_bias) = projection("key")?;
            let (value_weight, value_bias) = projection("value")?;
            let qkv_weight = Tensor::cat(&[(query_weight * scale)?, key_weight, value_weight], 0)?
                .t()?
                .contiguous()?;
            let qkv_bias =
                Tensor::cat(&[(query_bias * scale)?, key_bias, value_bias], 0)?.to_vec1()?;
            let (output_weight, output_bias) =
                dense(attention.pp("output").pp("dense"), hidden, hidden)?;
            let attention_norm = BiasResidualNorm::load(
                attention.pp("output").pp("LayerNorm"),
                output_bias,
                config,
            )?;
            let (up_weight, up_bias) = dense(
                layer.pp("intermediate").pp("dense"),
                hidden,
                config.intermediate_size,
            )?;
            let (down_weight, down_bias) = dense(
                layer.pp("output").pp("dense"),
                config.intermediate_size,
                hidden,
            )?;
            let output_norm =
                BiasResidualNorm::load(layer.pp("output").pp("LayerNorm"), down_bias, config)?;
            layers.push(Layer {
                qkv_weight,
                qkv_bias,
                output_weight,
                attention_norm,
                up_weight,
                up_bias,
                down_weight,
                output_norm,
            });
        }
        Ok(BertEncoder {
            word_embeddings,
            position_embeddings,
            embeddings_norm,
            layers,
            heads,
            head_dimensions,
            activation: match config.hidden_act {
                HiddenAct::Gelu => Activation::GeluErf,
                HiddenAct::GeluApproximate => Activation::GeluTanh,
                HiddenAct::Relu => Activation::Relu,
            },
        })
    }

    /// The last hidden states of the tokens of `batch`, `(tokens, hidden)`, in the order of
    /// its sequences.
    ///
    /// Takes the process's forward turn ([`crate::chat::forward_turn`]) per layer, so a chat
    /// model generating at the same time gets a token in between.
    pub(super) fn forward(&self, batch: &PackedBatch) -> Result<Tensor> {
        let turn = forward_turn();
        let mut x = self
            .word_embeddings
            .index_select(&batch.ids, 0)?
            .add(&self.position_embeddings.index_select(&batch.positions, 0)?)?;
        x = self.embeddings_norm.forward(&x)?;
        drop(turn);
        let attention = PackedAttention {
            lengths: &batch.lengths,
            heads: self.heads,
            head_dimensions: self.head_dimensions,
        };
        for layer in &self.layers {
            let _turn = forward_turn();
            let qkv = x.matmul(&layer.qkv_weight)?;
            let context = qkv.apply_op1_no_bwd(&WithBias {
                bias: &layer.qkv_bias,
                op: &attention,
            })?;
            let output = context.matmul(&layer.output_weight)?;
            x = output.apply_op2_no_bwd(&x, &layer.attention_norm)?;
            let up = x
                .matmul(&layer.up_weight)?
                .apply_op1_no_bwd(&BiasActivation {
                    bias: &layer.up_bias,
                    activation: self.activation,
                })?;
            let down = up.matmul(&layer.down_weight)?;
            x = down.apply_op2_no_bwd(&x, &layer.output_norm)?;
        }
        Ok(x)
    }
}

/// A batch of token sequences, packed: the tokens of all sequences one after another.
pub(super) struct PackedBatch {
    ids: Tensor,
    /// Each token's position in its sequence.
    positions: Tensor,
    lengths: Vec<usize>,
}

/// Buffers kept between batches so a busy model does not reallocate them.
#[derive(Debug, Default)]
pub(super) struct PackingBuffers {
    ids: Vec<u32>,
    positions: Vec<u32>,
}

impl PackedBatch {
    pub(super) fn new(sequences: &[&[u32]], buffers: &mut PackingBuffers) -> Result<PackedBatch> {
        buffers.ids.clear();
        buffers.positions.clear();
        for tokens in sequences {
            buffers.ids.extend_from_slice(tokens);
            buffers.positions.extend(0..tokens.len() as u32);
        }
        let device = &candle_core::Device::Cpu;
        Ok(PackedBatch {
            ids: Tensor::from_slice(&buffers.ids, buffers.ids.len(), device)?,
            positions: Tensor::from_slice(&buffers.positions, buffers.positions.len(), device)?,
            lengths: sequences.iter().map(|tokens| tokens.len()).collect(),
        })
    }
}

/// A linear layer's weight, transposed to `(inputs, outputs)` for `x.matmul(weight)`, and bias.
fn dense(vb: VarBuilder, inputs: usize, outputs: usize) -> Result<(Tensor, Vec<f32>)> {
    let weight = vb.get((outputs, inputs), "weight")?.t()?.contiguous()?;
    let bias = vb.get(outputs, "bias")?.to_vec1()?;
    Ok((weight, bias))
}

/// The contiguous f32 values of a CPU tensor.
fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op}: expected f32 values");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op}: expected a contiguous tensor");
    };
    Ok(&data[start..end])
}

/// The last dimension of a 2-D layout, checked against `expected`.
fn row_length(layout: &Layout, expected: usize, op: &str) -> Result<usize> {
    let (_, columns) = layout.shape().dims2()?;
    if columns != expected {
        candle_core::bail!("{op}: rows of {columns} values, expected {expected}");
    }
    Ok(columns)
}

/// Self-attention over packed sequences: `(tokens, 3 × hidden)` query, key and value rows (the
/// query already scaled) become `(tokens, hidden)` context rows, each sequence attending only
/// to its own tokens. The bias of the projection is added on the way in.
struct PackedAttention<'a> {
    lengths: &'a [usize],
    heads: usize,
    head_dimensions: usize,
}

struct WithBias<'a, Op> {
    bias: &'a [f32],
    op: &'a Op,
}

impl CustomOp1 for WithBias<'_, PackedAttention<'_>> {
    fn name(&self) -> &'static str {
        "packed-attention"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let op = self.name();
        let attention = self.op;
        let hidden = attention.heads * attention.head_dimensions;
        let qkv = contiguous_f32(storage, layout, op)?;
        row_length(layout, 3 * hidden, op)?;
        let tokens = qkv.len() / (3 * hidden);
        if attention.lengths.iter().sum::<usize>() != tokens || self.bias.len() != 3 * hidden {
            candle_core::bail!("{op}: the sequence lengths or the bias do not match the input");
        }
        // Split at sequence boundaries into parts of similar cost (quadratic in length).
        let total_cost: usize = attention.lengths.iter().map(|n| n * n).sum();
        let parts = parallel_parts(tokens * hidden * 4);
        let mut starts = vec![0];
        let (mut row, mut cost) = (0, 0);
        for &length in attention.lengths {
            if cost * parts >= total_cost * starts.len() && row > *starts.last().unwrap_or(&0) {
                starts.push(row);
            }
            row += length;
            cost += length * length;
        }
        let mut context = vec![0f32; tokens * hidden];
        run_parts(&mut context, hidden, &starts, |first_row, output| {
            attention.run(qkv, self.bias, first_row, output);
        });
        Ok((CpuStorage::F32(context), Shape::from((tokens, hidden))))
    }
}

impl PackedAttention<'_> {
    /// Computes the context rows in `output`, which starts at token `first_row` on a sequence
    /// boundary.
    fn run(&self, qkv: &[f32], bias: &[f32], first_row: usize, output: &mut [f32]) {
        let (heads, dimensions) = (self.heads, self.head_dimensions);
        let hidden = heads * dimensions;
        let (mut queries, mut keys, mut values, mut scores) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut sequence_start = 0;
        for &length in self.lengths {
            let start = sequence_start;
            sequence_start += length;
            if start < first_row {
                continue;
            }
            let local = start - first_row;
            if (local + length) * hidden > output.len() {
                break;
            }
            for head in 0..heads {
                // Gather this head's vectors (with their biases) for the sequence.
                for (buffer, part) in [(&mut queries, 0), (&mut keys, 1), (&mut values, 2)] {
                    let column = part * hidden + head * dimensions;
                    let bias = &bias[column..column + dimensions];
                    buffer.clear();
                    for token in start..start + length {
                        let row = &qkv[token * 3 * hidden + column..][..dimensions];
                        buffer.extend(row.iter().zip(bias).map(|(value, bias)| value + bias));
                    }
                }
                scores.resize(length, 0f32);
                for (position, query) in queries.chunks_exact(dimensions).enumerate() {
                    let mut max = f32::NEG_INFINITY;
                    for (score, key) in scores.iter_mut().zip(keys.chunks_exact(dimensions)) {
                        *score = dot(query, key);
                        max = max.max(*score);
                    }
                    let mut sum = 0f32;
                    for score in scores.iter_mut() {
                        *score = (*score - max).exp();
                        sum += *score;
                    }
                    let row = (local + position) * hidden + head * dimensions;
                    let out = &mut output[row..row + dimensions];
                    out.fill(0.0);
                    for (&weight, value) in scores.iter().zip(values.chunks_exact(dimensions)) {
                        let weight = weight / sum;
                        for (out, value) in out.iter_mut().zip(value) {
                            *out += weight * value;
                        }
                    }
                }
            }
        }
    }
}

/// A dot product in eight independent lanes, which the compiler turns into vector code.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a_chunks, b_chunks) = (a.chunks_exact(8), b.chunks_exact(8));
    let (a_rest, b_rest) = (a_chunks.remainder(), b_chunks.remainder());
    for (a, b) in a_chunks.zip(b_chunks) {
        for lane in 0..8 {
            lanes[lane] += a[lane] * b[lane];
        }
    }
    let rest: f32 = a_rest.iter().zip(b_rest).map(|(a, b)| a * b).sum();
    lanes.iter().sum::<f32>() + rest
}

/// `LayerNorm(x + bias + residual)` over rows, the step that closes each half of a layer.
struct BiasResidualNorm {
    bias: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    epsilon: f32,
}

impl BiasResidualNorm {
    fn load(vb: VarBuilder, bias: Vec<f32>, config: &Config) -> Result<BiasResidualNorm> {
        let hidden = bias.len();
        Ok(BiasResidualNorm {
            gamma: vb.get(hidden, "weight")?.to_vec1()?,
            beta: vb.get(hidden, "bias")?.to_vec1()?,
            bias,
            epsilon: config.layer_norm_eps as f32,
        })
    }
}

impl CustomOp2 for BiasResidualNorm {
    fn name(&self) -> &'static str {
        "bias-residual-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let op = self.name();
        let width = row_length(l1, self.bias.len(), op)?;
        let input = contiguous_f32(s1, l1, op)?;
        let residual = contiguous_f32(s2, l2, op)?;
        if l1.shape() != l2.shape() {
            candle_core::bail!("{op}: input and residual differ in shape");
        }
        let mut output = vec![0f32; input.len()];
        let starts = even_parts(input.len() / width, width);
        run_parts(&mut output, width, &starts, |first_row, part| {
            let offset = first_row * width;
            let rows = part.chunks_exact_mut(width);
            let inputs = input[offset..].chunks_exact(width);
            let residuals = residual[offset..].chunks_exact(width);
            for ((out, input), residual) in rows.zip(inputs).zip(residuals) {
                let mut sum = 0f32;
                for (((out, input), residual), bias) in
                    out.iter_mut().zip(input).zip(residual).zip(&self.bias)
                {
                    *out = input + residual + bias;
                    sum += *out;
                }
                let mean = sum / width as f32;
                let mut squares = 0f32;
                for value in out.iter_mut() {
                    *value -= mean;
                    squares += *value * *value;
                }
                let scale = 1.0 / (squares / width as f32 + self.epsilon).sqrt();
                for ((value, gamma), beta) in out.iter_mut().zip(&self.gamma).zip(&self.beta) {
                    *value = *value * scale * gamma + beta;
                }
            }
        });
        Ok((CpuStorage::F32(output), l1.shape().clone()))
    }
}

/// `activation(x + bias)` over rows.
struct BiasActivation<'a> {
    bias: &'a [f32],
    activation: Activation,
}

impl CustomOp1 for BiasActivation<'_> {
    fn name(&self) -> &'static str {
        "bias-activation"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let op = self.name();
        let width = row_length(layout, self.bias.len(), op)?;
        let input = contiguous_f32(storage, layout, op)?;
        let mut output = vec![0f32; input.len()];
        let starts = even_parts(input.len() / width, width);
        run_parts(&mut output, width, &starts, |first_row, part| {
            let input = &input[first_row * width..];
            for (out_row, in_row) in part.chunks_exact_mut(width).zip(input.chunks_exact(width)) {
                let values = out_row.iter_mut().zip(in_row).zip(self.bias);
                match self.activation {
                    Activation::GeluErf => {
                        for ((out, &value), &bias) in values {
                            *out = gelu_erf(value + bias);
                        }
                    }
                    Activation::GeluTanh => {
                        for ((out, &value), &bias) in values {
                            *out = gelu_tanh(value + bias);
                        }
                    }
                    Activation::Relu => {
                        for ((out, &value), &bias) in values {
                            *out = (value + bias).max(0.0);
                        }
                    }
                }
            }
        });
        Ok((CpuStorage::F32(output), layout.shape().clone()))
    }
}

/// How many threads a pass over `values` output values should use.
fn parallel_parts(values: usize) -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    let threads = *THREADS.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(8)
    });
    if values < PARALLEL_MIN_VALUES {
        1
    } else {
        threads
    }
}

/// The first rows of up to [`parallel_parts`] equal parts of `rows` rows of `width` values.
fn even_parts(rows: usize, width: usize) -> Vec<usize> {
    let parts = parallel_parts(rows * width).min(rows.max(1));
    (0..parts).map(|part| part * rows / parts).collect()
}

/// Runs `work(first_row, part)` on the parts of `output` (rows of `width` values) that begin
/// at the rows in `starts` (ascending, the first 0): the last part on the calling thread, the
/// others on scoped threads.
fn run_parts<F>(output: &mut [f32], width: usize, starts: &[usize], work: F)
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    let rows = output.len() / width.max(1);
    let work = &work;
    std::thread::scope(|scope| {
        let mut rest = output;
        for (index, &start) in starts.iter().enumerate() {
            let end = starts.get(index + 1).copied().unwrap_or(rows);
            let (part, tail) = std::mem::take(&mut rest).split_at_mut((end - start) * width);
            rest = tail;
            if index + 1 == starts.len() {
                work(start, part);
            } else {
                scope.spawn(move || work(start, part));
            }
        }
    });
}

/// The exact GELU, `x/2 · (1 + erf(x/√2))`.
#[inline(always)]
fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// GELU's tanh approximation (`gelu_new`), for models configured with it.
#[inline(always)]
fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)).tanh())
}

/// erf for f32 as a rational function of x on [-4, 4] (beyond which erf is ±1 in f32): the
/// approximation Eigen and XLA use, accurate to a few ulps and free of branches and `exp`, so
/// the compiler vectorises the loop that calls it.
#[inline(always)]
fn erf(x: f32) -> f32 {
    // Plain products and sums rather than `mul_add`: without FMA enabled at compile time
    // `mul_add` is a call to libm's software `fmaf`, twenty times slower.
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
    p = x2 * p - 2.101_024e-6;
    p = x2 * p - 5.692_506_4e-5;
    p = x2 * p - 7.349_906_3e-4;
    p = x2 * p - 2.954_6e-3;
    p = x2 * p - 1.609_603_3e-2;
    let mut q = x2 * -1.456_607_2e-5 - 2.133_740_6e-4;
    q = x2 * q - 1.682_827e-3;
    q = x2 * q - 7.373_329e-3;
    q = x2 * q - 1.426_473_9e-2;
    x * p / q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_libm_within_a_few_ulps() {
        let mut worst = 0f64;
        for step in -60_000..=60_000 {
            let x = step as f32 / 10_000.0;
            let exact = candle_core::cpu::erf::erf_f64(f64::from(x));
            worst = worst.max((f64::from(erf(x)) - exact).abs());
        }
        assert!(worst < 5e-7, "worst error {worst}");
    }

    fn random(shape: (usize, usize), seed: u32) -> Result<Tensor> {
        let values: Vec<f32> = (0..shape.0 * shape.1)
            .map(|i| {
                let x = (i as u32 ^ seed).wrapping_mul(2_654_435_761);
                (x >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
            })
            .collect();
        Tensor::from_vec(values, shape, &candle_core::Device::Cpu)
    }

    fn max_difference(a: &Tensor, b: &Tensor) -> Result<f32> {
        (a - b)?.abs()?.max_all()?.to_scalar::<f32>()
    }

    #[test]
    fn bias_activation_matches_candle() -> Result<()> {
        // Enough rows to be split across threads.
        let input = random((300, 256), 1)?;
        let bias = random((1, 256), 2)?.squeeze(0)?;
        let bias_values = bias.to_vec1::<f32>()?;
        for (activation, reference) in [
            (Activation::GeluErf, input.broadcast_add(&bias)?.gelu_erf()?),
            (Activation::GeluTanh, input.broadcast_add(&bias)?.gelu()?),
            (Activation::Relu, input.broadcast_add(&bias)?.relu()?),
        ] {
            let fused = input.apply_op1_no_bwd(&BiasActivation {
                bias: &bias_values,
                activation,
            })?;
            let difference = max_difference(&fused, &reference)?;
            assert!(difference < 1e-5, "{activation:?}: difference {difference}");
        }
        Ok(())
    }

    #[test]
    fn bias_residual_norm_matches_candles_layer_norm() -> Result<()> {
        let (input, residual) = (random((300, 128), 3)?, random((300, 128), 4)?);
        let bias = random((1, 128), 5)?.squeeze(0)?;
        let gamma = random((1, 128), 6)?.squeeze(0)?;
        let beta = random((1, 128), 7)?.squeeze(0)?;
        let norm = BiasResidualNorm {
            bias: bias.to_vec1()?,
            gamma: gamma.to_vec1()?,
            beta: beta.to_vec1()?,
            epsilon: 1e-12,
        };
        let fused = input.apply_op2_no_bwd(&residual, &norm)?;
        let reference = LayerNorm::new(gamma, beta, 1e-12)
            .forward(&(input.broadcast_add(&bias)? + &residual)?)?;
        let difference = max_difference(&fused, &reference)?;
        assert!(difference < 1e-4, "difference {difference}");
        Ok(())
    }

    #[test]
    fn packed_attention_matches_padded_attention_per_sequence() -> Result<()> {
        // Enough tokens to be split across threads (at sequence boundaries).
        let (heads, dimensions) = (4, 20);
        let hidden = heads * dimensions;
        let lengths = [1, 5, 2, 7, 3, 120, 9, 60, 17];
        let tokens: usize = lengths.iter().sum();
        let qkv = random((tokens, 3 * hidden), 8)?;
        let bias = random((1, 3 * hidden), 9)?.squeeze(0)?;
        let bias_values = bias.to_vec1::<f32>()?;
        let attention = PackedAttention {
            lengths: &lengths,
            heads,
            head_dimensions: dimensions,
        };
        let packed = qkv.apply_op1_no_bwd(&WithBias {
            bias: &bias_values,
            op: &attention,
        })?;
        // Reference: each sequence on its own with candle's operations.
        let qkv = qkv.broadcast_add(&bias)?;
        let mut start = 0;
        for &length in &lengths {
            let rows = qkv.narrow(0, start, length)?;
            let split = |part: usize| -> Result<Tensor> {
                rows.narrow(1, part * hidden, hidden)?
                    .reshape((length, heads, dimensions))?
                    .transpose(0, 1)?
                    .contiguous()
            };
            let (query, key, value) = (split(0)?, split(1)?, split(2)?);
            let probabilities = candle_nn::ops::softmax_last_dim(&query.matmul(&key.t()?)?)?;
            let reference = probabilities
                .matmul(&value)?
                .transpose(0, 1)?
                .reshape((length, hidden))?;
            let difference = max_difference(&packed.narrow(0, start, length)?, &reference)?;
            assert!(
                difference < 1e-5,
                "length {length}: difference {difference}"
            );
            start += length;
        }
        Ok(())
    }
}
