//! The tokenizer of a GGUF chat model, built from the file's own metadata: a byte-level BPE
//! (`tokenizer.ggml.model = gpt2`) with the pre-tokenizer named by `tokenizer.ggml.pre`, the
//! control tokens as special tokens, and a byte table for streaming decoding.
//!
//! candle's `TokenizerFromGguf` is not used because it gets SmolLM2 wrong: it applies GPT-2's
//! default `add_prefix_space = true` (llama.cpp and Hugging Face never add a prefix space for
//! byte-level BPE models) and does not split digits for the `smollm` pre-tokenizer.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use crate::LocalError;

/// Tokens that end an assistant turn in common chat templates, besides the GGUF's EOS token.
const END_OF_TURN_TOKENS: &[&str] = &[
    "<|im_end|>",
    "<|eot_id|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
];

/// `llama_token_type` values in `tokenizer.ggml.token_type`.
const TOKEN_TYPE_NORMAL: i64 = 1;
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// Llama 3's split regex (also used by llama.cpp for `llama-bpe` and `smaug-bpe`).
const REGEX_LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split regex: like Llama 3's, with single digits.
const REGEX_QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Encoding with the `tokenizers` crate, decoding with a per-token byte table.
pub(crate) struct GgufTokenizer {
    tokenizer: Tokenizer,
    /// The bytes each token id decodes to; empty for control tokens, which are never shown.
    token_bytes: Vec<Box<[u8]>>,
    /// The token ids that end generation.
    end_ids: Vec<u32>,
    bos: Option<(u32, String)>,
    eos_token: Option<String>,
    add_bos: bool,
}

impl std::fmt::Debug for GgufTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufTokenizer")
            .field("vocab_size", &self.token_bytes.len())
            .field("end_ids", &self.end_ids)
            .finish_non_exhaustive()
    }
}

impl GgufTokenizer {
    /// Builds the tokenizer from the GGUF metadata; `path` only names the file in errors.
    pub(crate) fn from_gguf(
        path: &Path,
        content: &gguf_file::Content,
    ) -> Result<GgufTokenizer, LocalError> {
        let bad = |problem: String| LocalError::model_file(path, problem);
        let model_kind = metadata_string(content, "tokenizer.ggml.model")
            .ok_or_else(|| bad("no `tokenizer.ggml.model` in the GGUF metadata".to_owned()))?;
        if model_kind != "gpt2" {
            return Err(bad(format!(
                "tokenizer `{model_kind}` is not supported by the local runtime (supported: gpt2, \
                 byte-level BPE); use a GGUF model with a byte-level BPE tokenizer"
            )));
        }
        let tokens = metadata_strings(content, "tokenizer.ggml.tokens").map_err(&bad)?;
        if tokens.is_empty() {
            return Err(bad("`tokenizer.ggml.tokens` is empty".to_owned()));
        }
        let merges = metadata_strings(content, "tokenizer.ggml.merges")
            .map_err(&bad)?
            .into_iter()
            .map(|merge| match merge.split_once(' ') {
                Some((left, right)) => Ok((left.to_owned(), right.to_owned())),
                None => Err(bad(format!(
                    "`tokenizer.ggml.merges` holds `{merge}`, which is not two tokens"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let token_types = match content.metadata.get("tokenizer.ggml.token_type") {
            None => vec![TOKEN_TYPE_NORMAL; tokens.len()],
            Some(value) => {
                let types = value
                    .to_vec()
                    .map_err(|_| bad("`tokenizer.ggml.token_type` is not an array".to_owned()))?
                    .iter()
                    .map(value_to_i64)
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        bad("`tokenizer.ggml.token_type` holds a non-integer".to_owned())
                    })?;
                if types.len() != tokens.len() {
                    return Err(bad(format!(
                        "`tokenizer.ggml.token_type` has {} entries for {} tokens",
                        types.len(),
                        tokens.len()
                    )));
                }
                types
            }
        };

        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(id, token)| (token.clone(), id as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|err| bad(format!("the BPE vocabulary is inconsistent: {err}")))?;
        let mut tokenizer = Tokenizer::new(bpe);
        let pre = metadata_string(content, "tokenizer.ggml.pre").unwrap_or("default");
        configure_pre_tokenizer(&mut tokenizer, pre)
            .map_err(|err| bad(format!("pre-tokenizer `{pre}`: {err}")))?;

        let added: Vec<AddedToken> = tokens
            .iter()
            .zip(&token_types)
            .filter(|(_, &kind)| kind == TOKEN_TYPE_CONTROL || kind == TOKEN_TYPE_USER_DEFINED)
            .map(|(token, &kind)| AddedToken::from(token.clone(), kind == TOKEN_TYPE_CONTROL))
            .collect();
        tokenizer
            .add_special_tokens(added)
            .map_err(|err| bad(format!("the special tokens cannot be added: {err}")))?;

        let byte_decoder = byte_decoder();
        let token_bytes = tokens
            .iter()
            .zip(&token_types)
            .map(|(token, &kind)| match kind {
                TOKEN_TYPE_NORMAL => byte_level_bytes(&byte_decoder, token),
                TOKEN_TYPE_USER_DEFINED => token.as_bytes().into(),
                // Control, unknown, unused and byte tokens do not appear in byte-level text.
                _ => Box::default(),
            })
            .collect::<Vec<_>>();

        let token_id = |key: &str| {
            content
                .metadata
                .get(key)
                .and_then(value_to_i64)
                .and_then(|id| u32::try_from(id).ok())
                .filter(|&id| (id as usize) < tokens.len())
        };
        let eos_id = token_id("tokenizer.ggml.eos_token_id");
        let bos_id = token_id("tokenizer.ggml.bos_token_id");
        let mut end_ids: Vec<u32> = eos_id.into_iter().collect();
        end_ids.extend(
            END_OF_TURN_TOKENS
                .iter()
                .filter_map(|token| tokenizer.token_to_id(token)),
        );
        end_ids.sort_unstable();
        end_ids.dedup();
        if end_ids.is_empty() {
            return Err(bad(
                "no end-of-sequence token (`tokenizer.ggml.eos_token_id`) and no known \
                 end-of-turn token in the vocabulary"
                    .to_owned(),
            ));
        }
        let add_bos = content
            .metadata
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|value| value.to_bool().ok())
            .unwrap_or(false);

        Ok(GgufTokenizer {
            bos: bos_id.map(|id| (id, tokens[id as usize].clone())),
            eos_token: eos_id.map(|id| tokens[id as usize].clone()),
            tokenizer,
            token_bytes,
            end_ids,
            add_bos,
        })
    }

    /// Token ids of `text`; special tokens written in the text are recognised.
    pub(crate) fn encode(&self, text: &str) -> Result<Vec<u32>, LocalError> {
        let encoding = self
            .tokenizer
            .encode_fast(text, false)
            .map_err(|err| LocalError::Inference(format!("tokenization failed: {err}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Token ids of a rendered chat prompt: like [`GgufTokenizer::encode`], with the BOS token
    /// prepended when the model wants one and the template did not write it.
    pub(crate) fn encode_prompt(&self, prompt: &str) -> Result<Vec<u32>, LocalError> {
        let mut ids = self.encode(prompt)?;
        if let Some((bos_id, _)) = &self.bos {
            if self.add_bos && ids.first() != Some(bos_id) {
                ids.insert(0, *bos_id);
            }
        }
        Ok(ids)
    }

    /// The bytes `id` stands for in generated text (empty for control tokens and unknown ids).
    pub(crate) fn token_bytes(&self, id: u32) -> &[u8] {
        self.token_bytes
            .get(id as usize)
            .map(|bytes| &bytes[..])
            .unwrap_or_default()
    }

    pub(crate) fn is_end(&self, id: u32) -> bool {
        self.end_ids.contains(&id)
    }

    pub(crate) fn end_ids(&self) -> &[u32] {
        &self.end_ids
    }

    pub(crate) fn vocab_size(&self) -> usize {
        self.token_bytes.len()
    }

    pub(crate) fn bos_token(&self) -> Option<&str> {
        self.bos.as_ref().map(|(_, token)| token.as_str())
    }

    pub(crate) fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }
}

/// Turns a stream of bytes into text, holding back an incomplete UTF-8 sequence until the
/// token that completes it arrives, so every piece of streamed text is valid UTF-8.
#[derive(Debug, Default)]
pub(crate) struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Appends `bytes` and moves every complete character to `out`. Invalid bytes (which a
    /// model can produce) become U+FFFD.
    pub(crate) fn push(&mut self, bytes: &[u8], out: &mut String) {
        if self.pending.is_empty() {
            // The common case: a token that is whole characters, converted without copying.
            match std::str::from_utf8(bytes) {
                Ok(text) => {
                    out.push_str(text);
                    return;
                }
                Err(_) => self.pending.extend_from_slice(bytes),
            }
        } else {
            self.pending.extend_from_slice(bytes);
        }
        let mut start = 0;
        loop {
            match std::str::from_utf8(&self.pending[start..]) {
                Ok(text) => {
                    out.push_str(text);
                    start = self.pending.len();
                    break;
                }
                Err(err) => {
                    let valid_end = start + err.valid_up_to();
                    // `valid_up_to` marks the end of a valid prefix, so this cannot fail.
                    out.push_str(
                        std::str::from_utf8(&self.pending[start..valid_end]).unwrap_or_default(),
                    );
                    match err.error_len() {
                        Some(invalid) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            start = valid_end + invalid;
                        }
                        None => {
                            // An incomplete character at the end: wait for more bytes.
                            start = valid_end;
                            break;
                        }
                    }
                }
            }
        }
        self.pending.drain(..start);
    }

    /// Ends the stream: a character left incomplete becomes U+FFFD.
    pub(crate) fn finish(&mut self, out: &mut String) {
        if !self.pending.is_empty() {
            out.push_str(&String::from_utf8_lossy(&self.pending));
            self.pending.clear();
        }
    }
}

fn configure_pre_tokenizer(tokenizer: &mut Tokenizer, pre: &str) -> Result<(), String> {
    let split = |regex: &str| -> Result<PreTokenizerWrapper, String> {
        Split::new(
            SplitPattern::Regex(regex.to_owned()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map(PreTokenizerWrapper::from)
        .map_err(|err| err.to_string())
    };
    // Byte-level BPE never adds a prefix space in llama.cpp or in the Hugging Face tokenizers
    // these GGUF files were converted from.
    let byte_level_with_regex = ByteLevel::new(false, true, true);
    let byte_level_only = ByteLevel::new(false, true, false);
    let pre_tokenizer: PreTokenizerWrapper = match pre {
        // Hugging Face's SmolLM and StarCoder tokenizers: single digits, then GPT-2's split.
        "smollm" | "starcoder" | "refact" => {
            Sequence::new(vec![Digits::new(true).into(), byte_level_with_regex.into()]).into()
        }
        "llama3" | "llama-bpe" | "smaug-bpe" => {
            Sequence::new(vec![split(REGEX_LLAMA3)?, byte_level_only.into()]).into()
        }
        "qwen2" => {
            tokenizer
                .with_normalizer(Some(NFC))
                .map_err(|err| err.to_string())?;
            Sequence::new(vec![split(REGEX_QWEN2)?, byte_level_only.into()]).into()
        }
        "gpt2" | "default" | "gpt-2" => byte_level_with_regex.into(),
        other => {
            tracing::warn!(
                pre_tokenizer = other,
                "unknown GGUF pre-tokenizer; using GPT-2's, tokenization may differ slightly from the model's own"
            );
            byte_level_with_regex.into()
        }
    };
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
    Ok(())
}

/// The inverse of GPT-2's `bytes_to_unicode`: byte-level BPE writes every byte as a printable
/// character; bytes that are printable Latin-1 stand for themselves, the others are shifted to
/// U+0100 and up in byte order.
fn byte_decoder() -> HashMap<char, u8> {
    let mut decoder = HashMap::with_capacity(256);
    let mut shifted = 0u32;
    for byte in 0..=255u8 {
        let printable = matches!(byte, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let ch = if printable {
            char::from(byte)
        } else {
            shifted += 1;
            // 256 + at most 68 shifted bytes stays far below the surrogate range.
            char::from_u32(255 + shifted).unwrap_or(char::REPLACEMENT_CHARACTER)
        };
        decoder.insert(ch, byte);
    }
    decoder
}

fn byte_level_bytes(decoder: &HashMap<char, u8>, token: &str) -> Box<[u8]> {
    let mut bytes = Vec::with_capacity(token.len());
    for ch in token.chars() {
        match decoder.get(&ch) {
            Some(&byte) => bytes.push(byte),
            // Not byte-level text (a hand-added token): its own UTF-8.
            None => {
                let mut buffer = [0u8; 4];
                bytes.extend_from_slice(ch.encode_utf8(&mut buffer).as_bytes());
            }
        }
    }
    bytes.into_boxed_slice()
}

pub(crate) fn metadata_string<'a>(content: &'a gguf_file::Content, key: &str) -> Option<&'a str> {
    content
        .metadata
        .get(key)
        .and_then(|value| value.to_string().ok())
        .map(String::as_str)
}

fn metadata_strings(content: &gguf_file::Content, key: &str) -> Result<Vec<String>, String> {
    let values = content
        .metadata
        .get(key)
        .ok_or_else(|| format!("no `{key}` in the GGUF metadata"))?
        .to_vec()
        .map_err(|_| format!("`{key}` is not an array"))?;
    values
        .iter()
        .map(|value| {
            value
                .to_string()
                .cloned()
                .map_err(|_| format!("`{key}` holds a non-string"))
        })
        .collect()
}

pub(crate) fn value_to_i64(value: &gguf_file::Value) -> Option<i64> {
    use gguf_file::Value;
    Some(match value {
        Value::U8(v) => i64::from(*v),
        Value::I8(v) => i64::from(*v),
        Value::U16(v) => i64::from(*v),
        Value::I16(v) => i64::from(*v),
        Value::U32(v) => i64::from(*v),
        Value::I32(v) => i64::from(*v),
        Value::U64(v) => i64::try_from(*v).ok()?,
        Value::I64(v) => *v,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_stream_holds_back_a_character_split_across_tokens() {
        let mut stream = Utf8Stream::default();
        let mut out = String::new();
        let euro = "€".as_bytes(); // three bytes
        stream.push(b"a", &mut out);
        stream.push(&euro[..1], &mut out);
        assert_eq!(out, "a");
        stream.push(&euro[1..2], &mut out);
        assert_eq!(out, "a");
        stream.push(&[euro[2], b'b'], &mut out);
        assert_eq!(out, "a€b");
    }

    #[test]
    fn utf8_stream_replaces_invalid_bytes_and_an_unfinished_character() {
        let mut stream = Utf8Stream::default();
        let mut out = String::new();
        stream.push(&[b'x', 0xFF, b'y', 0xE2, 0x82], &mut out);
        assert_eq!(out, "x\u{FFFD}y");
        stream.finish(&mut out);
        assert_eq!(out, "x\u{FFFD}y\u{FFFD}");
    }

    #[test]
    fn byte_decoder_covers_every_byte_once() {
        let decoder = byte_decoder();
        assert_eq!(decoder.len(), 256);
        assert_eq!(decoder[&'Ġ'], b' ');
        assert_eq!(decoder[&'Ċ'], b'\n');
        assert_eq!(decoder[&'A'], b'A');
    }
}
