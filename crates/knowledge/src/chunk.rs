//! Structure-aware chunking: cuts extracted text into passages that fit an embedding model's
//! token budget.
//!
//! The text is read as Markdown (which is what `extract` produces for every format): ATX headings
//! (`#` … `######`, outside fenced code) open sections, and each chunk carries the path of headings
//! above it instead of repeating them in its text. Within a section, paragraphs are packed whole
//! while they fit; a paragraph over the budget is cut at sentence boundaries, and a sentence over
//! the budget at word boundaries (then grapheme, then character boundaries, for text without
//! spaces). When a section continues into a new chunk, the new chunk repeats the previous chunk's
//! trailing whole sentences up to the overlap budget, so a passage cut in two can still be found
//! by either half.
//!
//! Invariants the rest of the system relies on:
//! - `Chunk::start..Chunk::end` are *character* offsets into the input and `Chunk::text` is
//!   exactly those characters, so a citation can point into the extracted text.
//! - A chunk never spans two sections, and overlap never crosses a section boundary.
//! - `Chunk::token_count` is the counter's count of `Chunk::text` and is at most `max_tokens`
//!   (the only exception is a single character the counter alone rates above the budget, which
//!   no real tokenizer does for `max_tokens >= 16`).
//! - The output is a pure function of the input: the same text and options give the same chunks.

use unicode_segmentation::UnicodeSegmentation;

/// The smallest `max_tokens` a chunk budget may have: below it, the heading path and a sentence
/// cannot share a model's context in any useful way.
pub const MIN_MAX_TOKENS: usize = 16;

/// Counts tokens the way the embedding model will, so chunks fit its context.
///
/// Callers plug in the model's real tokenizer; [`EstimatedTokens`] is the fallback when none is
/// available. The chunker assumes the count of a text is roughly the sum of the counts of its
/// parts; it checks every chunk with one real count and shrinks chunks when a counter is not.
pub trait TokenCounter: Send + Sync {
    /// The number of tokens `text` takes.
    fn count(&self, text: &str) -> usize;
}

/// A tokenizer-free estimate of WordPiece/BPE token counts for English text.
///
/// The heuristic, chosen to over- rather than underestimate (a chunk the model truncates loses
/// text silently, a chunk that is a little short costs nothing):
/// - each maximal run of letters and digits costs one token per started 4 ASCII characters, where
///   a non-ASCII letter or digit weighs as 2 ASCII ones (vocabularies hold few non-English words,
///   so such words split into more pieces);
/// - each CJK ideograph, kana or Hangul character costs one token (BERT's tokenizer splits
///   ideographs one by one, and kana and Hangul rarely merge in English vocabularies);
/// - every other non-whitespace character (punctuation, symbols, emoji) costs one token, as
///   WordPiece splits punctuation off words;
/// - whitespace costs nothing.
///
/// For English prose this gives at least one token per word and per punctuation mark (a lower
/// bound for WordPiece and BPE alike); on everyday prose it comes out about a third above
/// `bert-base-uncased`'s count (about 1.6 tokens per word against 1.2), more on text with long
/// words or many symbols, so chunks come out somewhat smaller than the model allows; only text
/// made mostly of rare long words (which WordPiece cuts into many short pieces) can be
/// underestimated. The count is subadditive: the count of a text is at
/// most the sum of the counts of any split of it, which the chunker's packing relies on.
#[derive(Debug, Clone, Copy, Default)]
pub struct EstimatedTokens;

/// The chunk budget.
#[derive(Debug, Clone)]
pub struct ChunkOptions {
    /// The most tokens a chunk's text may have.
    pub max_tokens: usize,
    /// The most tokens of the previous chunk's trailing sentences a chunk may repeat.
    pub overlap_tokens: usize,
}

/// Why a [`ChunkOptions`] is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkOptionsError {
    #[error(
        "the chunk size of {max_tokens} tokens is too small; use at least {MIN_MAX_TOKENS} tokens"
    )]
    MaxTokensTooSmall { max_tokens: usize },
    #[error(
        "the chunk overlap of {overlap_tokens} tokens must be smaller than the chunk size of \
         {max_tokens} tokens; lower the overlap or raise the size"
    )]
    OverlapTooLarge {
        max_tokens: usize,
        overlap_tokens: usize,
    },
}

/// A passage of the input text.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// Exactly the input's characters `start..end`.
    pub text: String,
    /// The texts of the headings enclosing the chunk, outermost first.
    pub heading_path: Vec<String>,
    /// The character (not byte) offset of the chunk's first character in the input.
    pub start: usize,
    /// The character offset just past the chunk's last character in the input.
    pub end: usize,
    /// The counter's count of `text`.
    pub token_count: usize,
}

/// Cuts `text` into chunks of at most `options.max_tokens` tokens as counted by `counter`.
///
/// Options that fail [`ChunkOptions::validate`] are clamped (the budget to [`MIN_MAX_TOKENS`],
/// the overlap to one less than the budget) rather than refused, because this function cannot
/// fail; callers validate options where they are configured.
pub fn chunk_text(text: &str, options: &ChunkOptions, counter: &dyn TokenCounter) -> Vec<Chunk> {
    let max_tokens = options.max_tokens.max(MIN_MAX_TOKENS);
    let budget = Budget {
        max_tokens,
        overlap_tokens: options.overlap_tokens.min(max_tokens - 1),
    };

    let mut chunker = Chunker {
        text,
        budget,
        counter,
        raw_chunks: Vec::new(),
        heading_paths: Vec::new(),
    };
    let mut heading_stack: Vec<(usize, &str)> = Vec::new();
    let mut blocks: Vec<(usize, usize)> = Vec::new();
    let mut open_block: Option<(usize, usize)> = None;

    for line in markdown_lines(text) {
        match line.kind {
            LineKind::Heading { level, text: title } => {
                blocks.extend(open_block.take());
                chunker.chunk_section(&heading_stack, &blocks);
                blocks.clear();
                while heading_stack
                    .last()
                    .is_some_and(|&(open_level, _)| open_level >= level)
                {
                    heading_stack.pop();
                }
                heading_stack.push((level, title));
            }
            LineKind::Blank => blocks.extend(open_block.take()),
            LineKind::Content => {
                open_block = Some(match open_block {
                    Some((start, _)) => (start, line.end),
                    None => (line.start, line.end),
                });
            }
        }
    }
    blocks.extend(open_block.take());
    chunker.chunk_section(&heading_stack, &blocks);

    chunker.into_chunks()
}

impl TokenCounter for EstimatedTokens {
    fn count(&self, text: &str) -> usize {
        // Letters and digits are weighed in quarter tokens so a run of them can be rounded up
        // once, as a whole word, rather than per character.
        let mut n_tokens = 0;
        let mut run_quarters: usize = 0;
        for ch in text.chars() {
            if is_wide_script(ch) {
                n_tokens += run_quarters.div_ceil(4) + 1;
                run_quarters = 0;
            } else if ch.is_alphanumeric() {
                run_quarters += if ch.is_ascii() { 1 } else { 2 };
            } else {
                n_tokens += run_quarters.div_ceil(4);
                run_quarters = 0;
                if !ch.is_whitespace() {
                    n_tokens += 1;
                }
            }
        }
        n_tokens + run_quarters.div_ceil(4)
    }
}

impl ChunkOptions {
    /// Options with the given budget, checked.
    pub fn new(max_tokens: usize, overlap_tokens: usize) -> Result<Self, ChunkOptionsError> {
        let options = Self {
            max_tokens,
            overlap_tokens,
        };
        options.validate()?;
        Ok(options)
    }

    /// Checks that the budget leaves room for text: at least [`MIN_MAX_TOKENS`] tokens, and an
    /// overlap smaller than the budget (otherwise a chunk could hold nothing new).
    pub fn validate(&self) -> Result<(), ChunkOptionsError> {
        if self.max_tokens < MIN_MAX_TOKENS {
            return Err(ChunkOptionsError::MaxTokensTooSmall {
                max_tokens: self.max_tokens,
            });
        }
        if self.overlap_tokens >= self.max_tokens {
            return Err(ChunkOptionsError::OverlapTooLarge {
                max_tokens: self.max_tokens,
                overlap_tokens: self.overlap_tokens,
            });
        }
        Ok(())
    }
}

impl Default for ChunkOptions {
    /// 200 tokens with 40 of overlap: all-MiniLM-L6-v2 truncates at 256 word pieces, and the
    /// budget leaves room for the heading path the caller prefixes to each chunk before embedding.
    fn default() -> Self {
        Self {
            max_tokens: 200,
            overlap_tokens: 40,
        }
    }
}

/// How one line of Markdown matters to the chunker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineKind<'a> {
    /// An ATX heading outside fenced code, with its text (closing `#`s removed).
    Heading { level: usize, text: &'a str },
    /// A whitespace-only line outside fenced code: it separates paragraphs.
    Blank,
    /// Anything else, including every line of fenced code (fence lines and blank lines too).
    Content,
}

/// One line of the input; `start..end` are byte offsets and exclude the line terminator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Line<'a> {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) kind: LineKind<'a>,
}

/// The lines of `text`, classified as Markdown headings, blank lines or content, tracking fenced
/// code blocks so that a `# comment` inside code is not taken for a heading.
pub(crate) fn markdown_lines(text: &str) -> MarkdownLines<'_> {
    MarkdownLines {
        text,
        position: 0,
        open_fence: None,
    }
}

/// The iterator behind [`markdown_lines`].
#[derive(Debug)]
pub(crate) struct MarkdownLines<'a> {
    text: &'a str,
    position: usize,
    open_fence: Option<Fence>,
}

/// An opening code fence: the character and how many of it, which a closing fence must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fence {
    marker: char,
    length: usize,
}

/// The effective budget, after clamping.
#[derive(Debug, Clone, Copy)]
struct Budget {
    max_tokens: usize,
    overlap_tokens: usize,
}

/// The state of one `chunk_text` call: chunks are collected with byte offsets and converted to
/// character offsets once at the end, in one pass over the text.
struct Chunker<'a> {
    text: &'a str,
    budget: Budget,
    counter: &'a dyn TokenCounter,
    raw_chunks: Vec<RawChunk>,
    heading_paths: Vec<Vec<String>>,
}

/// A chunk with byte offsets and the index of its heading path in `Chunker::heading_paths`.
#[derive(Debug, Clone, Copy)]
struct RawChunk {
    start: usize,
    end: usize,
    token_count: usize,
    heading_path_idx: usize,
}

/// The smallest unit packing moves around: a whole paragraph that fits the budget, a sentence of
/// a paragraph that does not, or a fragment of a sentence that does not. Offsets are bytes and
/// the range has no surrounding whitespace.
#[derive(Debug, Clone, Copy)]
struct Piece {
    start: usize,
    end: usize,
    token_count: usize,
    /// Whether the piece begins a sentence (false for a fragment other than a sentence's first).
    starts_sentence: bool,
    /// Whether the piece ends a sentence (false for a fragment other than a sentence's last).
    ends_sentence: bool,
}

/// Repeated trailing sentences of the previous chunk that the next chunk starts with.
#[derive(Debug, Clone, Copy)]
struct Overlap {
    start: usize,
    token_count: usize,
}

/// The boundaries a too-long text is cut at, from the most to the least natural.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CutLevel {
    Word,
    Grapheme,
    Char,
}

impl<'a> Iterator for MarkdownLines<'a> {
    type Item = Line<'a>;

    fn next(&mut self) -> Option<Line<'a>> {
        let rest = self
            .text
            .get(self.position..)
            .filter(|rest| !rest.is_empty())?;
        let start = self.position;
        let (raw_line, consumed) = match rest.find('\n') {
            Some(newline_idx) => (&rest[..newline_idx], newline_idx + 1),
            None => (rest, rest.len()),
        };
        self.position += consumed;
        // A CR before the LF belongs to the terminator, so headings of CRLF text parse too.
        let line = raw_line.strip_suffix('\r').unwrap_or(raw_line);
        let end = start + line.len();

        let kind = if let Some(fence) = self.open_fence {
            if closes_fence(line, fence) {
                self.open_fence = None;
            }
            LineKind::Content
        } else if let Some(fence) = opening_fence(line) {
            self.open_fence = Some(fence);
            LineKind::Content
        } else if line.trim().is_empty() {
            LineKind::Blank
        } else if let Some((level, text)) = atx_heading(line) {
            LineKind::Heading { level, text }
        } else {
            LineKind::Content
        };
        Some(Line { start, end, kind })
    }
}

impl Chunker<'_> {
    /// Chunks the paragraphs (`blocks`, byte ranges) of one section.
    fn chunk_section(&mut self, heading_stack: &[(usize, &str)], blocks: &[(usize, usize)]) {
        let mut pieces = Vec::new();
        for &(start, end) in blocks {
            self.push_block_pieces(start, end, &mut pieces);
        }
        if pieces.is_empty() {
            return;
        }
        let heading_path_idx = self.heading_paths.len();
        self.heading_paths.push(
            heading_stack
                .iter()
                .map(|&(_, title)| title.to_owned())
                .collect(),
        );
        self.pack(&pieces, heading_path_idx);
    }

    /// Splits one paragraph into pieces that each fit the budget, counting each paragraph and
    /// each sentence of an oversized paragraph once.
    fn push_block_pieces(&self, start: usize, end: usize, pieces: &mut Vec<Piece>) {
        let Some((start, end)) = trim_range(self.text, start, end) else {
            return;
        };
        let max_tokens = self.budget.max_tokens;
        let token_count = self.counter.count(&self.text[start..end]);
        if token_count <= max_tokens {
            pieces.push(Piece {
                start,
                end,
                token_count,
                starts_sentence: true,
                ends_sentence: true,
            });
            return;
        }
        for (offset, sentence) in self.text[start..end].split_sentence_bound_indices() {
            let Some((sentence_start, sentence_end)) =
                trim_range(self.text, start + offset, start + offset + sentence.len())
            else {
                continue;
            };
            let token_count = self.counter.count(&self.text[sentence_start..sentence_end]);
            if token_count <= max_tokens {
                pieces.push(Piece {
                    start: sentence_start,
                    end: sentence_end,
                    token_count,
                    starts_sentence: true,
                    ends_sentence: true,
                });
                continue;
            }
            let first_fragment_idx = pieces.len();
            self.push_cut_pieces(sentence_start, sentence_end, CutLevel::Word, pieces);
            if let Some(first) = pieces.get_mut(first_fragment_idx) {
                first.starts_sentence = true;
            }
            if let Some(last) = pieces.last_mut() {
                last.ends_sentence = true;
            }
        }
    }

    /// Cuts `start..end` at boundaries of `level` into the longest pieces that fit, falling back
    /// to a finer level for a single unit that does not fit on its own.
    fn push_cut_pieces(&self, start: usize, end: usize, level: CutLevel, pieces: &mut Vec<Piece>) {
        let span = &self.text[start..end];
        let units: Vec<(usize, usize)> = match level {
            // Whitespace segments are left out so that no piece starts or ends with whitespace.
            CutLevel::Word => span
                .split_word_bound_indices()
                .filter(|(_, word)| !word.trim().is_empty())
                .map(|(offset, word)| (start + offset, start + offset + word.len()))
                .collect(),
            CutLevel::Grapheme => span
                .grapheme_indices(true)
                .map(|(offset, grapheme)| (start + offset, start + offset + grapheme.len()))
                .collect(),
            CutLevel::Char => span
                .char_indices()
                .map(|(offset, ch)| (start + offset, start + offset + ch.len_utf8()))
                .collect(),
        };
        let max_tokens = self.budget.max_tokens;
        let mut unit_idx = 0;
        while let Some(&(piece_start, _)) = units.get(unit_idx) {
            let remaining = &units[unit_idx..];
            let n_fitting = largest_fitting_prefix(remaining.len(), |n_units| {
                self.counter
                    .count(&self.text[piece_start..remaining[n_units - 1].1])
                    <= max_tokens
            });
            if n_fitting == 0 {
                let (unit_start, unit_end) = remaining[0];
                match level {
                    CutLevel::Word => {
                        self.push_cut_pieces(unit_start, unit_end, CutLevel::Grapheme, pieces)
                    }
                    CutLevel::Grapheme => {
                        self.push_cut_pieces(unit_start, unit_end, CutLevel::Char, pieces)
                    }
                    // Only a counter that rates one character above the whole budget gets here;
                    // the character is kept, over budget, rather than silently dropped.
                    CutLevel::Char => pieces.push(self.fragment(unit_start, unit_end)),
                }
                unit_idx += 1;
            } else {
                let piece_end = remaining[n_fitting - 1].1;
                pieces.push(self.fragment(piece_start, piece_end));
                unit_idx += n_fitting;
            }
        }
    }

    /// A piece cut out of a sentence; the caller marks the sentence's first and last.
    fn fragment(&self, start: usize, end: usize) -> Piece {
        Piece {
            start,
            end,
            token_count: self.counter.count(&self.text[start..end]),
            starts_sentence: false,
            ends_sentence: false,
        }
    }

    /// Packs a section's pieces greedily into chunks, each new chunk after the first starting
    /// with the previous chunk's trailing sentences.
    fn pack(&mut self, pieces: &[Piece], heading_path_idx: usize) {
        let max_tokens = self.budget.max_tokens;
        let mut overlap: Option<Overlap> = None;
        let mut first_idx = 0;
        while first_idx < pieces.len() {
            // Sums of piece counts decide the packing, so no text is counted twice here.
            let mut token_sum = overlap.map_or(0, |overlap| overlap.token_count);
            let mut end_idx = first_idx;
            while let Some(piece) = pieces.get(end_idx) {
                if end_idx > first_idx && token_sum + piece.token_count > max_tokens {
                    break;
                }
                token_sum += piece.token_count;
                end_idx += 1;
            }

            // One real count per chunk confirms the sum; a counter whose count of a text exceeds
            // the sum of its parts' counts makes the chunk give up its overlap, then pieces.
            let (start, end, token_count) = loop {
                let start = overlap.map_or(pieces[first_idx].start, |overlap| overlap.start);
                let end = pieces[end_idx - 1].end;
                let token_count = self.counter.count(&self.text[start..end]);
                if token_count <= max_tokens || (overlap.is_none() && end_idx == first_idx + 1) {
                    break (start, end, token_count);
                }
                if overlap.is_some() {
                    overlap = None;
                } else {
                    end_idx -= 1;
                }
            };
            if let Some((start, end)) = trim_range(self.text, start, end) {
                self.raw_chunks.push(RawChunk {
                    start,
                    end,
                    token_count,
                    heading_path_idx,
                });
            }

            let starts_sentence = overlap.is_some() || pieces[first_idx].starts_sentence;
            overlap = match pieces.get(end_idx) {
                Some(next) if pieces[end_idx - 1].ends_sentence => {
                    let overlap_budget = self
                        .budget
                        .overlap_tokens
                        .min(max_tokens.saturating_sub(next.token_count));
                    self.trailing_sentences(start, end, starts_sentence, overlap_budget)
                }
                _ => None,
            };
            first_idx = end_idx;
        }
    }

    /// The longest run of whole sentences ending at `end` and starting at or after `start` whose
    /// counts sum to at most `budget`. The sentence at `start` counts as whole only if
    /// `starts_sentence` (the chunk may begin with the tail of a cut sentence).
    fn trailing_sentences(
        &self,
        start: usize,
        end: usize,
        starts_sentence: bool,
        budget: usize,
    ) -> Option<Overlap> {
        if budget == 0 {
            return None;
        }
        let sentences: Vec<(usize, &str)> = self.text[start..end]
            .split_sentence_bound_indices()
            .collect();
        let mut overlap: Option<Overlap> = None;
        let mut token_sum = 0;
        for &(offset, sentence) in sentences.iter().rev() {
            let Some((sentence_start, sentence_end)) =
                trim_range(self.text, start + offset, start + offset + sentence.len())
            else {
                continue;
            };
            if sentence_start == start && !starts_sentence {
                break;
            }
            let token_count = self.counter.count(&self.text[sentence_start..sentence_end]);
            if token_sum + token_count > budget {
                break;
            }
            token_sum += token_count;
            overlap = Some(Overlap {
                start: sentence_start,
                token_count: token_sum,
            });
        }
        overlap
    }

    /// Converts byte offsets to character offsets in one pass over the text.
    fn into_chunks(self) -> Vec<Chunk> {
        let mut byte_offsets: Vec<usize> = self
            .raw_chunks
            .iter()
            .flat_map(|chunk| [chunk.start, chunk.end])
            .collect();
        byte_offsets.sort_unstable();
        byte_offsets.dedup();
        let mut char_offsets = Vec::with_capacity(byte_offsets.len());
        let mut n_chars = 0;
        let mut previous_byte = 0;
        for &byte_offset in &byte_offsets {
            n_chars += self.text[previous_byte..byte_offset].chars().count();
            char_offsets.push(n_chars);
            previous_byte = byte_offset;
        }
        let char_offset =
            |byte_offset: usize| char_offsets[byte_offsets.partition_point(|&b| b < byte_offset)];

        self.raw_chunks
            .iter()
            .map(|raw| Chunk {
                text: self.text[raw.start..raw.end].to_owned(),
                heading_path: self.heading_paths[raw.heading_path_idx].clone(),
                start: char_offset(raw.start),
                end: char_offset(raw.end),
                token_count: raw.token_count,
            })
            .collect()
    }
}

/// Whether `ch` belongs to a script tokenizers split one character at a time: CJK ideographs
/// (the ranges BERT's tokenizer isolates), kana and Hangul.
fn is_wide_script(ch: char) -> bool {
    matches!(
        ch,
        '\u{3040}'..='\u{30FF}'
            | '\u{3400}'..='\u{4DBF}'
            | '\u{4E00}'..='\u{9FFF}'
            | '\u{AC00}'..='\u{D7AF}'
            | '\u{F900}'..='\u{FAFF}'
            | '\u{20000}'..='\u{2FA1F}'
    )
}

/// The largest `n` in `0..=n_units` with `fits(n)`, assuming `fits` holds up to some `n` and not
/// after. The search doubles before it bisects, so its cost follows the answer rather than
/// `n_units`: cutting a megabyte-long word must not count the whole word at every step.
fn largest_fitting_prefix(n_units: usize, mut fits: impl FnMut(usize) -> bool) -> usize {
    let mut fitting = 0;
    let mut probe = 1;
    let mut not_fitting = loop {
        if probe >= n_units {
            if n_units > fitting && fits(n_units) {
                return n_units;
            }
            break n_units;
        }
        if !fits(probe) {
            break probe;
        }
        fitting = probe;
        probe *= 2;
    };
    while not_fitting - fitting > 1 {
        let middle = fitting + (not_fitting - fitting) / 2;
        if fits(middle) {
            fitting = middle;
        } else {
            not_fitting = middle;
        }
    }
    fitting
}

/// `start..end` without surrounding whitespace, or `None` when nothing else is left.
fn trim_range(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let span = &text[start..end];
    let trimmed_start = span.trim_start();
    if trimmed_start.is_empty() {
        return None;
    }
    let start = start + (span.len() - trimmed_start.len());
    Some((start, start + trimmed_start.trim_end().len()))
}

/// The fence a line opens: up to three spaces, then at least three backticks or tildes (a
/// backtick fence's info string may not contain backticks, as in CommonMark).
fn opening_fence(line: &str) -> Option<Fence> {
    let rest = strip_indent(line)?;
    let marker = rest.chars().next().filter(|&ch| ch == '`' || ch == '~')?;
    let length = rest.chars().take_while(|&ch| ch == marker).count();
    if length < 3 {
        return None;
    }
    let info = &rest[length..];
    if marker == '`' && info.contains('`') {
        return None;
    }
    Some(Fence { marker, length })
}

/// Whether a line closes `fence`: the same character at least as many times, then only spaces.
fn closes_fence(line: &str, fence: Fence) -> bool {
    let Some(rest) = strip_indent(line) else {
        return false;
    };
    let length = rest.chars().take_while(|&ch| ch == fence.marker).count();
    length >= fence.length && rest[length..].trim().is_empty()
}

/// An ATX heading's level and text: up to three spaces, one to six `#`, a space or tab, the
/// text, and an optional closing run of `#`. A heading without text is not taken as one.
fn atx_heading(line: &str) -> Option<(usize, &str)> {
    let rest = strip_indent(line)?;
    let level = rest.bytes().take_while(|&byte| byte == b'#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let after_hashes = &rest[level..];
    if !after_hashes.starts_with([' ', '\t']) {
        return None;
    }
    let mut title = after_hashes.trim();
    let without_closing = title.trim_end_matches('#');
    if without_closing.is_empty() {
        title = without_closing;
    } else if without_closing.ends_with([' ', '\t']) {
        title = without_closing.trim_end();
    }
    (!title.is_empty()).then_some((level, title))
}

/// The line without its indentation if that is at most three spaces (four make code in
/// Markdown, which opens no heading or fence).
fn strip_indent(line: &str) -> Option<&str> {
    let indent = line.bytes().take_while(|&byte| byte == b' ').count();
    (indent <= 3).then(|| &line[indent..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(max_tokens: usize, overlap_tokens: usize) -> ChunkOptions {
        ChunkOptions::new(max_tokens, overlap_tokens).unwrap()
    }

    /// Counts whitespace-separated words: easy to reason about in tests.
    struct WordCounter;

    impl TokenCounter for WordCounter {
        fn count(&self, text: &str) -> usize {
            text.split_whitespace().count()
        }
    }

    /// A counter whose count of a text exceeds the sum of its parts' counts, as a tokenizer that
    /// adds a token per line break between parts might; it forces the chunker's re-checks.
    struct LineBreakCounter;

    impl TokenCounter for LineBreakCounter {
        fn count(&self, text: &str) -> usize {
            EstimatedTokens.count(text) + 3 * text.matches('\n').count()
        }
    }

    /// Checks the invariants every chunking must satisfy.
    fn assert_invariants(
        text: &str,
        chunks: &[Chunk],
        options: &ChunkOptions,
        counter: &dyn TokenCounter,
    ) {
        let chars: Vec<char> = text.chars().collect();
        for chunk in chunks {
            assert!(chunk.start < chunk.end, "{chunk:?}");
            let slice: String = chars[chunk.start..chunk.end].iter().collect();
            assert_eq!(chunk.text, slice, "text is not the input's characters");
            assert_eq!(chunk.text.trim(), chunk.text, "chunk is not trimmed");
            assert_eq!(chunk.token_count, counter.count(&chunk.text));
            assert!(
                chunk.token_count <= options.max_tokens,
                "{} tokens over {}: {:?}",
                chunk.token_count,
                options.max_tokens,
                chunk.text
            );
        }
    }

    fn sentence(seed: usize, n_words: usize) -> String {
        const WORDS: [&str; 12] = [
            "retrieval",
            "of",
            "passages",
            "needs",
            "chunks",
            "that",
            "fit",
            "the",
            "model",
            "context",
            "and",
            "overlap",
        ];
        let words: Vec<&str> = (0..n_words)
            .map(|word_idx| WORDS[(seed * 7 + word_idx * 5) % WORDS.len()])
            .collect();
        format!("S{seed} {}.", words.join(" "))
    }

    #[test]
    fn estimated_tokens_never_count_fewer_than_words_and_punctuation() {
        // WordPiece and BPE give every word at least one token and split punctuation off, so
        // words plus punctuation marks is a lower bound on the real count.
        let lower_bound = |text: &str| {
            text.split_whitespace().count()
                + text
                    .chars()
                    .filter(|ch| !ch.is_alphanumeric() && !ch.is_whitespace())
                    .count()
        };
        let everyday = "The quick brown fox jumps over the lazy dog, doesn't it? We walked \
                        to the station and took the early train home.";
        let technical = "Tokenization of internationalization-heavy text: 3.14159 and 2024!";
        for text in [everyday, technical] {
            let estimate = EstimatedTokens.count(text);
            assert!(estimate >= lower_bound(text), "{estimate} for {text:?}");
        }
        // Everyday words are single tokens in real vocabularies; the estimate stays within half
        // again of the lower bound on them, so chunks are not needlessly small.
        let estimate = EstimatedTokens.count(everyday);
        assert!(estimate <= lower_bound(everyday) * 3 / 2, "{estimate}");
    }

    #[test]
    fn estimated_tokens_follow_the_documented_heuristic() {
        assert_eq!(EstimatedTokens.count(""), 0);
        assert_eq!(EstimatedTokens.count("  \n\t "), 0);
        assert_eq!(EstimatedTokens.count("the"), 1);
        assert_eq!(EstimatedTokens.count("chunking"), 2);
        assert_eq!(EstimatedTokens.count("chunkings"), 3);
        assert_eq!(EstimatedTokens.count("a, b."), 4);
        assert_eq!(EstimatedTokens.count("日本語"), 3);
        assert_eq!(EstimatedTokens.count("café"), 2);
        assert_eq!(EstimatedTokens.count("👍"), 1);
    }

    #[test]
    fn estimated_tokens_are_subadditive() {
        let text = "Überprüfung of 日本語 text, with émoji 🎉 and long words like \
                    antidisestablishmentarianism.";
        let whole = EstimatedTokens.count(text);
        for (split_at, _) in text.char_indices() {
            let parts =
                EstimatedTokens.count(&text[..split_at]) + EstimatedTokens.count(&text[split_at..]);
            assert!(whole <= parts, "split at {split_at}: {whole} > {parts}");
        }
    }

    #[test]
    fn options_are_validated() {
        assert!(ChunkOptions::default().validate().is_ok());
        assert_eq!(
            ChunkOptions::new(8, 2).unwrap_err(),
            ChunkOptionsError::MaxTokensTooSmall { max_tokens: 8 }
        );
        assert_eq!(
            ChunkOptions::new(50, 50).unwrap_err(),
            ChunkOptionsError::OverlapTooLarge {
                max_tokens: 50,
                overlap_tokens: 50
            }
        );
        let error = ChunkOptions::new(50, 60).unwrap_err().to_string();
        assert!(error.contains("smaller than the chunk size"), "{error}");
    }

    #[test]
    fn invalid_options_are_clamped_rather_than_looping() {
        let invalid = ChunkOptions {
            max_tokens: 0,
            overlap_tokens: 100,
        };
        let text = "One two three four five six seven eight nine ten. ".repeat(20);
        let chunks = chunk_text(&text, &invalid, &WordCounter);
        assert!(!chunks.is_empty());
        for chunk in &chunks {
            assert!(chunk.token_count <= MIN_MAX_TOKENS);
        }
    }

    #[test]
    fn empty_and_blank_text_give_no_chunks() {
        let options = ChunkOptions::default();
        assert!(chunk_text("", &options, &EstimatedTokens).is_empty());
        assert!(chunk_text(" \n\n \t\n", &options, &EstimatedTokens).is_empty());
        assert!(chunk_text(
            "# Only a heading\n\n## And another\n",
            &options,
            &EstimatedTokens
        )
        .is_empty());
    }

    #[test]
    fn heading_paths_follow_nesting() {
        let text = "Preamble.\n\n# Title\n\nIntro.\n\n## Sub\n\nSub text.\n\n### Deep\n\nDeep \
                    text.\n\n## Sibling ##\n\nSibling text.\n\n# Second\n\nSecond text.\n";
        let chunks = chunk_text(text, &ChunkOptions::default(), &EstimatedTokens);
        let summary: Vec<(&str, Vec<&str>)> = chunks
            .iter()
            .map(|chunk| {
                (
                    chunk.text.as_str(),
                    chunk.heading_path.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("Preamble.", vec![]),
                ("Intro.", vec!["Title"]),
                ("Sub text.", vec!["Title", "Sub"]),
                ("Deep text.", vec!["Title", "Sub", "Deep"]),
                ("Sibling text.", vec!["Title", "Sibling"]),
                ("Second text.", vec!["Second"]),
            ]
        );
    }

    #[test]
    fn heading_syntax_follows_atx_rules() {
        assert_eq!(atx_heading("# Title"), Some((1, "Title")));
        assert_eq!(atx_heading("   ### Three #"), Some((3, "Three")));
        assert_eq!(atx_heading("## C# ##"), Some((2, "C#")));
        assert_eq!(atx_heading("###### Six"), Some((6, "Six")));
        assert_eq!(atx_heading("####### Seven"), None);
        assert_eq!(atx_heading("#hashtag"), None);
        assert_eq!(atx_heading("    # indented code"), None);
        assert_eq!(atx_heading("#   "), None);
    }

    #[test]
    fn paragraphs_are_packed_whole() {
        // Three paragraphs of 4 words each all fit in 16 tokens: one chunk, blank lines kept.
        let text = "a b c d.\n\ne f g h.\n\ni j k l.";
        let chunks = chunk_text(text, &options(16, 0), &WordCounter);
        let texts: Vec<&str> = chunks.iter().map(|chunk| chunk.text.as_str()).collect();
        assert_eq!(texts, vec![text]);

        // Paragraphs of 6 words: two fit in 16 tokens, the third starts a new chunk rather than
        // being cut, because it fits a chunk on its own.

        let text = "one two three four five six.\n\nseven eight nine ten eleven twelve.\n\n\
                    thirteen fourteen fifteen sixteen seventeen eighteen.";
        let chunks = chunk_text(text, &options(16, 0), &WordCounter);
        let texts: Vec<&str> = chunks.iter().map(|chunk| chunk.text.as_str()).collect();
        assert_eq!(
            texts,
            vec![
                "one two three four five six.\n\nseven eight nine ten eleven twelve.",
                "thirteen fourteen fifteen sixteen seventeen eighteen."
            ]
        );
    }

    #[test]
    fn long_paragraph_is_split_by_sentences_with_literal_overlap() {
        let paragraph: Vec<String> = (0..30).map(|seed| sentence(seed, 5)).collect();
        let text = format!("# Topic\n\n{}", paragraph.join(" "));
        let options = options(20, 7);
        let chunks = chunk_text(&text, &options, &WordCounter);
        assert!(chunks.len() > 3, "{chunks:#?}");
        assert_invariants(&text, &chunks, &options, &WordCounter);

        let chars: Vec<char> = text.chars().collect();
        for pair in chunks.windows(2) {
            let (previous, next) = (&pair[0], &pair[1]);
            // Sentences have 6 words, so one sentence (6 ≤ 7) overlaps, never two.
            assert!(
                next.start < previous.end,
                "no overlap: {previous:?} {next:?}"
            );
            assert!(next.start > previous.start);
            let overlap: String = chars[next.start..previous.end].iter().collect();
            assert!(previous.text.ends_with(&overlap));
            assert!(next.text.starts_with(&overlap));
            assert!(
                overlap.starts_with('S') && overlap.ends_with('.'),
                "{overlap:?}"
            );
            assert_eq!(WordCounter.count(&overlap), 6);
            // Every chunk boundary is a sentence boundary.
            assert!(next.text.starts_with('S') && next.text.ends_with('.'));
        }
    }

    #[test]
    fn overlap_is_skipped_when_a_sentence_is_over_the_overlap_budget() {
        let paragraph: Vec<String> = (0..20).map(|seed| sentence(seed, 9)).collect();
        let text = paragraph.join(" ");
        let chunks = chunk_text(&text, &options(30, 5), &WordCounter);
        assert!(chunks.len() > 2);
        for pair in chunks.windows(2) {
            assert_eq!(pair[0].end + 1, pair[1].start, "{pair:?}");
        }
    }

    #[test]
    fn no_chunk_crosses_a_heading_and_overlap_stays_in_its_section() {
        let long_section: Vec<String> = (0..12).map(|seed| sentence(seed, 6)).collect();
        let text = format!(
            "# One\n\n{}\n\n# Two\n\n{}\n\n## Two.A\n\nShort.",
            long_section.join(" "),
            long_section.join(" ")
        );
        let options = options(24, 8);
        let chunks = chunk_text(&text, &options, &WordCounter);
        assert_invariants(&text, &chunks, &options, &WordCounter);
        for chunk in &chunks {
            assert!(!chunk.text.contains('#'), "{chunk:?}");
        }
        let heading_offsets: Vec<usize> = ["# One", "# Two", "## Two.A"]
            .iter()
            .map(|heading| {
                let byte_offset = text.find(heading).unwrap();
                text[..byte_offset].chars().count()
            })
            .collect();
        for chunk in &chunks {
            for &heading_offset in &heading_offsets {
                assert!(
                    chunk.end <= heading_offset || chunk.start > heading_offset,
                    "{chunk:?} crosses the heading at {heading_offset}"
                );
            }
        }
        for pair in chunks.windows(2) {
            if pair[0].heading_path != pair[1].heading_path {
                assert!(
                    pair[1].start > pair[0].end,
                    "overlap across sections: {pair:?}"
                );
            }
        }
        assert_eq!(chunks.last().unwrap().heading_path, vec!["Two", "Two.A"]);
    }

    #[test]
    fn fenced_code_is_one_block_and_hides_headings() {
        let text = "# Setup\n\nRun this:\n\n```sh\n# not a heading\n\necho done\n```\n\n\
                    ~~~~\n## still code\n~~~\n~~~~\n\nAfter.";
        let chunks = chunk_text(text, &ChunkOptions::default(), &EstimatedTokens);
        assert_eq!(chunks.len(), 1, "{chunks:#?}");
        assert_eq!(chunks[0].heading_path, vec!["Setup"]);
        assert!(chunks[0].text.contains("# not a heading\n\necho done"));
        assert!(chunks[0].text.contains("## still code"));
        assert!(chunks[0].text.ends_with("After."));
    }

    #[test]
    fn an_unclosed_fence_runs_to_the_end() {
        let text = "Intro.\n\n```\ncode\n# comment\n";
        let chunks = chunk_text(text, &ChunkOptions::default(), &EstimatedTokens);
        assert_eq!(chunks.len(), 1);
        assert!(chunks[0].heading_path.is_empty());
    }

    #[test]
    fn crlf_text_has_headings_and_paragraphs() {
        let text = "# Title\r\n\r\nFirst.\r\n\r\nSecond.\r\n";
        let chunks = chunk_text(text, &options(16, 0), &EstimatedTokens);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].heading_path, vec!["Title"]);
        assert_eq!(chunks[0].text, "First.\r\n\r\nSecond.");
    }

    #[test]
    fn offsets_are_character_offsets_on_non_ascii_text() {
        let inputs = [
            "# Café\n\nÉté à Paris. Très chaud. 日本語のテキストです。絵文字 🎉🎉 も。\n\n\
             ## 日本\n\n東京は大きい。大阪も大きい。"
                .repeat(6),
            "👨‍👩‍👧‍👦 family emoji and é́ combining marks. ".repeat(40),
            "日本語".repeat(500),
            format!("# Ünïcödé\n\n{}", "naïve café résumé. ".repeat(60)),
        ];
        for max_tokens in [16, 40, 200] {
            let options = options(max_tokens, max_tokens / 3);
            for text in &inputs {
                let chunks = chunk_text(text, &options, &EstimatedTokens);
                assert!(!chunks.is_empty());
                assert_invariants(text, &chunks, &options, &EstimatedTokens);
            }
        }
    }

    #[test]
    fn every_chunk_fits_the_budget_on_a_hostile_document() {
        let mut text = String::from("# Hostile\n\n");
        for seed in 0..40 {
            text.push_str(&sentence(seed, 3 + seed % 7));
            text.push(' ');
        }
        text.push_str("\n\n");
        // A sentence far longer than the budget.
        text.push_str(&sentence(99, 700));
        text.push_str("\n\n## Words\n\n");
        // A word far longer than the budget, inside a sentence.
        text.push_str("Here comes ");
        text.push_str(&"abcdefghij".repeat(300));
        text.push_str(" and then the end. ");
        text.push_str(&"日本語".repeat(400));
        text.push_str("\n\nunpunctuated ");
        text.push_str(&"words without any end ".repeat(200));
        let options = options(50, 12);
        for counter in [
            &EstimatedTokens as &dyn TokenCounter,
            &WordCounter,
            &LineBreakCounter,
        ] {
            let chunks = chunk_text(&text, &options, counter);
            assert_invariants(&text, &chunks, &options, counter);
            // Nothing is lost: every non-whitespace character is in some chunk.
            let chars: Vec<char> = text.chars().collect();
            let mut covered = vec![false; chars.len()];
            for chunk in &chunks {
                covered[chunk.start..chunk.end].fill(true);
            }
            let headings: String = text
                .lines()
                .filter(|line| line.starts_with('#'))
                .collect::<Vec<_>>()
                .join("");
            let uncovered: String = chars
                .iter()
                .zip(&covered)
                .filter(|(ch, covered)| !**covered && !ch.is_whitespace())
                .map(|(ch, _)| *ch)
                .collect();
            assert_eq!(uncovered, headings.replace(' ', ""));
        }
    }

    #[test]
    fn a_counter_that_is_not_subadditive_still_gets_chunks_within_budget() {
        let text: String = (0..60)
            .map(|seed| format!("{}\n", sentence(seed, 4)))
            .collect();
        let options = options(30, 10);
        let chunks = chunk_text(&text, &options, &LineBreakCounter);
        assert!(chunks.len() > 1);
        assert_invariants(&text, &chunks, &options, &LineBreakCounter);
    }

    #[test]
    fn output_is_deterministic() {
        let text = format!(
            "# A\n\n{}\n\n## B\n\n{}",
            (0..50).map(|seed| sentence(seed, 8)).collect::<String>(),
            "x ".repeat(500)
        );
        let first = chunk_text(&text, &ChunkOptions::default(), &EstimatedTokens);
        let second = chunk_text(&text, &ChunkOptions::default(), &EstimatedTokens);
        assert_eq!(first, second);
    }

    #[test]
    fn largest_fitting_prefix_finds_the_boundary() {
        for n_units in 0..40 {
            for limit in 0..=n_units + 2 {
                let found = largest_fitting_prefix(n_units, |n| n <= limit);
                assert_eq!(
                    found,
                    limit.min(n_units),
                    "n_units {n_units}, limit {limit}"
                );
            }
        }
    }
}
