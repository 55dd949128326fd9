//! Message consistency: does what a partner's CEO says match what its employees, customers and
//! demos say? The in-process replacement for the plans' Comprehend step.
//!
//! For each source the analysis extracts RAKE key phrases and the mean VADER sentiment of its
//! sentences. From the CEO message it takes the *claims*: sentences that speak as the company
//! (we, our, us, …) and assert value (a value verb such as deliver, respond, guarantee, or a
//! value adjective such as best, fastest, exclusive); questions are not claims. Each claim is
//! checked against every sentence of the other sources:
//!
//! * **Mentions** — the sentence is about the claim when it contains at least 30 % of the
//!   claim's topic terms (content-word stems, generic claim words such as "deliver" or "best"
//!   left out), or, when the caller passes an embedder, when the cosine similarity of the two
//!   sentences' embeddings is at least 0.5.
//! * **Contradicts** — a mentioning sentence contradicts when it negates a shared topic term the
//!   claim does not negate (or the reverse: "we never miss" vs "they missed"), when its VADER
//!   polarity is opposite to the claim's (a claim counts as positive unless VADER scores it
//!   negative, because claims assert value), or, for a match found only by embeddings, when it
//!   contains a negation cue and the claim contains none.
//! * **Supports** — any other mentioning sentence.
//!
//! The 0–100 score combines claim alignment, phrase alignment and sentiment alignment (formulas
//! on [`ConsistencyConfig`] and in `docs/power100.md`); each contradiction and each claim no one
//! mentions becomes a discrepancy with quotes, and each discrepancy a recommendation.

use std::collections::BTreeSet;

use crate::text::{cosine, is_content_word, sentences, KeyPhrase, TextTools};

/// Turns texts into embedding vectors, one per text, all of one dimension (for example
/// all-MiniLM-L6-v2 through the knowledge crate). Passed in so this crate stays free of models.
pub type Embedder<'a> = dyn Fn(&[String]) -> Vec<Vec<f32>> + 'a;

/// Where a text came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceKind {
    Ceo,
    Employee,
    Customer,
    Demo,
}

/// Everything said about one partner, as plain text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsistencySources {
    pub ceo_message: String,
    pub employee_texts: Vec<String>,
    pub customer_texts: Vec<String>,
    pub demo_transcripts: Vec<String>,
}

/// The analysis constants.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsistencyConfig {
    /// Key phrases kept per source.
    pub max_key_phrases: usize,
    /// Longest key phrase, in words.
    pub max_phrase_words: usize,
    /// Lexical mention: the share of the claim's topic terms a sentence must contain.
    pub lexical_mention_threshold: f64,
    /// Semantic mention: the cosine similarity a sentence must reach.
    pub semantic_mention_threshold: f64,
    /// A CEO key phrase is echoed lexically when this share of its stems occurs in the other
    /// sources' text, or semantically when its cosine with one of their key phrases reaches
    /// `semantic_phrase_threshold`.
    pub lexical_phrase_threshold: f64,
    pub semantic_phrase_threshold: f64,
    /// VADER compound scores within ± this are neutral (VADER's own boundary is 0.05).
    pub neutral_sentiment: f64,
    /// A source whose mean sentiment is at least this far below the CEO's is a discrepancy.
    pub sentiment_gap_threshold: f64,
    /// Phrase alignment below this is a discrepancy.
    pub phrase_alignment_floor: f64,
    /// The score's weights for claim, phrase and sentiment alignment, renormalised over the
    /// parts that could be computed.
    pub claim_weight: f64,
    pub phrase_weight: f64,
    pub sentiment_weight: f64,
}

/// How sentences and phrases were compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlignmentMethod {
    /// Embedding cosine similarity, with stem overlap as well.
    Semantic,
    /// Stem overlap only: no embedder was given, or its output was unusable (see the notes).
    Lexical,
}

/// One source's key phrases and sentiment.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceAnalysis {
    pub source: SourceKind,
    pub n_texts: usize,
    pub n_sentences: usize,
    pub key_phrases: Vec<KeyPhrase>,
    /// Mean VADER compound score of the source's sentences, `None` without sentences.
    pub sentiment: Option<f64>,
}

/// Whether a sentence backs a claim or goes against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stance {
    Supports,
    Contradicts,
}

/// A sentence from another source that mentions a claim, quoted.
#[derive(Debug, Clone, PartialEq)]
pub struct EvidenceQuote {
    pub source: SourceKind,
    /// Which text of the source (0-based), so callers can link back to the response.
    pub text_index: usize,
    pub sentence: String,
    pub stance: Stance,
    /// The match strength: topic-term share, or embedding cosine when that was higher.
    pub similarity: f64,
    /// Why it supports or contradicts, in words.
    pub reason: String,
}

/// What one source (or all of them) say about a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimVerdict {
    Supported,
    Contradicted,
    /// Some sentences support it and some contradict it.
    Mixed,
    NotMentioned,
}

/// One CEO claim and what the other sources say about it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimAssessment {
    pub claim: String,
    /// The claim's topic terms as written (first spelling of each stem).
    pub topic_terms: Vec<String>,
    pub sentiment: f64,
    /// A verdict per other source that had text, in [`SourceKind`] order.
    pub verdicts: Vec<(SourceKind, ClaimVerdict)>,
    pub overall: ClaimVerdict,
    pub evidence: Vec<EvidenceQuote>,
}

/// The kinds of mismatch the analysis reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscrepancyKind {
    /// A source contradicts a claim (alone or mixed with support).
    ContradictedClaim,
    /// No source mentions a claim.
    UnverifiedClaim,
    /// A source is markedly less positive than the CEO message.
    SentimentGap,
    /// Few of the CEO's key phrases are echoed by anyone else.
    PhraseGap,
}

/// A mismatch with the words that show it.
#[derive(Debug, Clone, PartialEq)]
pub struct Discrepancy {
    pub kind: DiscrepancyKind,
    pub source: Option<SourceKind>,
    pub claim: Option<String>,
    pub description: String,
    pub quotes: Vec<String>,
}

/// The result of one analysis.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsistencyReport {
    /// 0–100.
    pub score: f64,
    /// Mean claim credit over (claim, source) pairs; `None` without claims.
    pub claim_alignment: Option<f64>,
    /// Share of the CEO's key phrases echoed by others; `None` without CEO key phrases.
    pub phrase_alignment: Option<f64>,
    /// `1 − mean |sentiment_CEO − sentiment_source| / 2`; `None` when no source has sentences.
    pub sentiment_alignment: Option<f64>,
    pub method: AlignmentMethod,
    /// The CEO first, then the other sources that had text.
    pub sources: Vec<SourceAnalysis>,
    pub claims: Vec<ClaimAssessment>,
    pub discrepancies: Vec<Discrepancy>,
    pub recommendations: Vec<String>,
    /// Remarks about the analysis itself (an unusable embedder, no claims found).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsistencyError {
    #[error("the CEO message is empty: there is nothing to check consistency against")]
    NoCeoMessage,
    #[error("there is no employee, customer or demo text to compare the CEO message with")]
    NoOtherSources,
}

/// First-person-plural words: a claim speaks as the company.
const FIRST_PERSON_PLURAL: &[&str] = &[
    "we",
    "our",
    "ours",
    "us",
    "ourselves",
    "we're",
    "we've",
    "we'll",
    "we'd",
];

/// Verbs that assert value in a company's voice, as Snowball stems (compared exactly, so
/// "delivers" and "delivered" count but "window" does not count as "win").
const VALUE_VERBS: &[&str] = &[
    "deliv",
    "provid",
    "help",
    "guarante",
    "respond",
    "answer",
    "increas",
    "reduc",
    "save",
    "grow",
    "improv",
    "ensur",
    "offer",
    "support",
    "boost",
    "close",
    "generat",
    "doubl",
    "tripl",
    "cut",
    "train",
    "build",
    "drive",
    "achiev",
    "outperform",
    "special",
    "specialis",
    "give",
    "bring",
    "beat",
    "win",
    "maxim",
    "elimin",
    "simplifi",
    "autom",
];

/// Adjectives and adverbs that assert value.
const VALUE_WORDS: &[&str] = &[
    "best",
    "fastest",
    "fast",
    "faster",
    "leading",
    "industry-leading",
    "proven",
    "reliable",
    "unique",
    "exclusive",
    "guaranteed",
    "trusted",
    "dedicated",
    "responsive",
    "expert",
    "top",
    "first",
    "quality",
    "award-winning",
    "transparent",
    "personal",
    "affordable",
    "better",
    "higher",
    "always",
    "every",
    "unmatched",
    "premier",
    "only",
];

/// Words that make a sentence a claim without saying what it is about; left out of the topic.
const GENERIC_CLAIM_STEMS: &[&str] = &[
    "deliv", "provid", "offer", "ensur", "help", "give", "bring", "best", "top", "industri",
    "alway", "guarante", "proven", "uniqu", "trust", "great", "world", "class", "premier",
    "unmatch", "first", "qualiti",
];

impl Default for ConsistencyConfig {
    fn default() -> ConsistencyConfig {
        ConsistencyConfig {
            max_key_phrases: 10,
            max_phrase_words: 4,
            lexical_mention_threshold: 0.3,
            semantic_mention_threshold: 0.5,
            lexical_phrase_threshold: 0.5,
            semantic_phrase_threshold: 0.6,
            neutral_sentiment: 0.05,
            sentiment_gap_threshold: 0.5,
            phrase_alignment_floor: 0.5,
            claim_weight: 0.6,
            phrase_weight: 0.25,
            sentiment_weight: 0.15,
        }
    }
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Ceo => "ceo",
            SourceKind::Employee => "employee",
            SourceKind::Customer => "customer",
            SourceKind::Demo => "demo",
        }
    }

    /// The source's people or documents, for sentences ("customers contradict …").
    pub fn plural_label(self) -> &'static str {
        match self {
            SourceKind::Ceo => "the CEO",
            SourceKind::Employee => "employees",
            SourceKind::Customer => "customers",
            SourceKind::Demo => "demos",
        }
    }
}

impl ClaimVerdict {
    /// The claim credit of one (claim, source) pair: supported 1, contradicted 0, mixed the
    /// share of supporting sentences, not mentioned 0.5 (unverified, neither for nor against).
    fn credit(self, n_support: usize, n_contradict: usize) -> f64 {
        match self {
            ClaimVerdict::Supported => 1.0,
            ClaimVerdict::Contradicted => 0.0,
            ClaimVerdict::Mixed => n_support as f64 / (n_support + n_contradict) as f64,
            ClaimVerdict::NotMentioned => 0.5,
        }
    }

    fn from_counts(n_support: usize, n_contradict: usize) -> ClaimVerdict {
        match (n_support, n_contradict) {
            (0, 0) => ClaimVerdict::NotMentioned,
            (_, 0) => ClaimVerdict::Supported,
            (0, _) => ClaimVerdict::Contradicted,
            _ => ClaimVerdict::Mixed,
        }
    }
}

/// A sentence of a non-CEO source with what the comparison needs precomputed.
struct EvidenceSentence {
    source: SourceKind,
    text_index: usize,
    sentence: String,
    stems: BTreeSet<String>,
    negated: BTreeSet<String>,
    has_negation: bool,
    sentiment: f64,
    embedding: Option<Vec<f32>>,
}

/// A CEO claim with what the comparison needs precomputed.
struct Claim {
    sentence: String,
    topic_stems: BTreeSet<String>,
    /// (stem, first spelling) of each topic term, in sentence order.
    topic: Vec<(String, String)>,
    negated: BTreeSet<String>,
    has_negation: bool,
    sentiment: f64,
    embedding: Option<Vec<f32>>,
}

/// Analyses a partner's sources. `embedder`, when given, is called once with every claim,
/// evidence sentence and key phrase; if it returns the wrong number of vectors or vectors of
/// mixed dimension, the analysis falls back to lexical comparison and says so in the notes.
pub fn analyse_consistency(
    sources: &ConsistencySources,
    embedder: Option<&Embedder<'_>>,
    config: &ConsistencyConfig,
) -> Result<ConsistencyReport, ConsistencyError> {
    let tools = TextTools::new();
    let ceo_sentences = sentences(&sources.ceo_message);
    if ceo_sentences.is_empty() {
        return Err(ConsistencyError::NoCeoMessage);
    }
    let other_sources: Vec<(SourceKind, &[String])> = [
        (SourceKind::Employee, sources.employee_texts.as_slice()),
        (SourceKind::Customer, sources.customer_texts.as_slice()),
        (SourceKind::Demo, sources.demo_transcripts.as_slice()),
    ]
    .into_iter()
    .filter(|(_, texts)| texts.iter().any(|text| !sentences(text).is_empty()))
    .collect();
    if other_sources.is_empty() {
        return Err(ConsistencyError::NoOtherSources);
    }

    let mut notes = Vec::new();
    let ceo_analysis = analyse_source(
        &tools,
        SourceKind::Ceo,
        std::slice::from_ref(&sources.ceo_message),
        config,
    );
    let other_analyses: Vec<SourceAnalysis> = other_sources
        .iter()
        .map(|(kind, texts)| analyse_source(&tools, *kind, texts, config))
        .collect();

    let mut claims: Vec<Claim> = ceo_sentences
        .iter()
        .filter(|sentence| is_claim(&tools, sentence))
        .map(|sentence| build_claim(&tools, sentence))
        .collect();
    if claims.is_empty() {
        notes.push("the CEO message makes no claim in the company's voice (we/our + a value word); only phrases and sentiment were compared".to_owned());
    }
    let mut evidence: Vec<EvidenceSentence> = Vec::new();
    for (kind, texts) in &other_sources {
        for (text_index, text) in texts.iter().enumerate() {
            for sentence in sentences(text) {
                evidence.push(EvidenceSentence {
                    source: *kind,
                    text_index,
                    stems: tools.content_stems(&sentence),
                    negated: tools.negated_stems(&sentence),
                    has_negation: tools.has_negation(&sentence),
                    sentiment: tools.sentiment(&sentence),
                    embedding: None,
                    sentence,
                });
            }
        }
    }

    let ceo_phrases: Vec<String> = ceo_analysis
        .key_phrases
        .iter()
        .map(|p| p.phrase.clone())
        .collect();
    let other_phrases: Vec<String> = other_analyses
        .iter()
        .flat_map(|analysis| analysis.key_phrases.iter().map(|p| p.phrase.clone()))
        .collect();
    let mut ceo_phrase_embeddings: Vec<Option<Vec<f32>>> = vec![None; ceo_phrases.len()];
    let mut other_phrase_embeddings: Vec<Vec<f32>> = Vec::new();
    let mut method = AlignmentMethod::Lexical;
    if let Some(embed) = embedder {
        let mut inputs: Vec<String> = claims.iter().map(|c| c.sentence.clone()).collect();
        inputs.extend(evidence.iter().map(|e| e.sentence.clone()));
        inputs.extend(ceo_phrases.iter().cloned());
        inputs.extend(other_phrases.iter().cloned());
        let vectors = embed(&inputs);
        match check_embeddings(&vectors, inputs.len()) {
            Ok(()) => {
                method = AlignmentMethod::Semantic;
                let mut vectors = vectors.into_iter();
                for claim in &mut claims {
                    claim.embedding = vectors.next();
                }
                for sentence in &mut evidence {
                    sentence.embedding = vectors.next();
                }
                for slot in &mut ceo_phrase_embeddings {
                    *slot = vectors.next();
                }
                other_phrase_embeddings = vectors.collect();
            }
            Err(problem) => notes.push(format!("{problem}: fell back to lexical comparison")),
        }
    }

    let assessments: Vec<ClaimAssessment> = claims
        .iter()
        .map(|claim| assess_claim(claim, &evidence, &other_sources, config))
        .collect();

    let claim_alignment = claim_alignment(&assessments);
    let other_text: BTreeSet<String> = evidence
        .iter()
        .flat_map(|e| e.stems.iter().cloned())
        .collect();
    let (phrase_alignment, unechoed) = phrase_alignment(
        &tools,
        &ceo_phrases,
        &ceo_phrase_embeddings,
        &other_text,
        &other_phrase_embeddings,
        config,
    );
    let sentiment_alignment = ceo_analysis.sentiment.and_then(|ceo| {
        let gaps: Vec<f64> = other_analyses
            .iter()
            .filter_map(|analysis| analysis.sentiment.map(|s| (ceo - s).abs()))
            .collect();
        (!gaps.is_empty()).then(|| 1.0 - gaps.iter().sum::<f64>() / gaps.len() as f64 / 2.0)
    });
    let parts = [
        (config.claim_weight, claim_alignment),
        (config.phrase_weight, phrase_alignment),
        (config.sentiment_weight, sentiment_alignment),
    ];
    let known_weight: f64 = parts
        .iter()
        .filter(|(_, part)| part.is_some())
        .map(|(w, _)| w)
        .sum();
    let score = if known_weight > 0.0 {
        100.0
            * parts
                .iter()
                .filter_map(|(weight, part)| part.map(|value| weight * value))
                .sum::<f64>()
            / known_weight
    } else {
        0.0
    };

    let mut discrepancies = claim_discrepancies(&assessments);
    if let Some(ceo_sentiment) = ceo_analysis.sentiment {
        for analysis in &other_analyses {
            if let Some(sentiment) = analysis.sentiment {
                if ceo_sentiment - sentiment >= config.sentiment_gap_threshold {
                    discrepancies.push(sentiment_gap(
                        &evidence,
                        analysis.source,
                        ceo_sentiment,
                        sentiment,
                    ));
                }
            }
        }
    }
    if let Some(alignment) = phrase_alignment {
        if alignment < config.phrase_alignment_floor {
            discrepancies.push(Discrepancy {
                kind: DiscrepancyKind::PhraseGap,
                source: None,
                claim: None,
                description: format!(
                    "only {} of the CEO's {} key phrases are echoed by employees, customers or demos",
                    ceo_phrases.len() - unechoed.len(),
                    ceo_phrases.len()
                ),
                quotes: unechoed,
            });
        }
    }
    let recommendations = discrepancies.iter().map(recommendation).collect();

    let mut analyses = vec![ceo_analysis];
    analyses.extend(other_analyses);
    Ok(ConsistencyReport {
        score: score.clamp(0.0, 100.0),
        claim_alignment,
        phrase_alignment,
        sentiment_alignment,
        method,
        sources: analyses,
        claims: assessments,
        discrepancies,
        recommendations,
        notes,
    })
}

/// Whether a CEO sentence is a claim: it speaks as the company and asserts value.
pub fn is_claim(tools: &TextTools, sentence: &str) -> bool {
    if sentence.trim_end().ends_with('?') {
        return false;
    }
    let tokens = tools.tokens(sentence);
    let speaks_as_company = tokens
        .iter()
        .any(|t| FIRST_PERSON_PLURAL.contains(&t.word.as_str()));
    let asserts_value = tokens
        .iter()
        .any(|t| VALUE_WORDS.contains(&t.word.as_str()) || VALUE_VERBS.contains(&t.stem.as_str()));
    speaks_as_company && asserts_value
}

fn analyse_source(
    tools: &TextTools,
    source: SourceKind,
    texts: &[String],
    config: &ConsistencyConfig,
) -> SourceAnalysis {
    let all_sentences: Vec<String> = texts.iter().flat_map(|text| sentences(text)).collect();
    let sentiment = (!all_sentences.is_empty()).then(|| {
        all_sentences
            .iter()
            .map(|s| tools.sentiment(s))
            .sum::<f64>()
            / all_sentences.len() as f64
    });
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    SourceAnalysis {
        source,
        n_texts: texts.iter().filter(|t| !t.trim().is_empty()).count(),
        n_sentences: all_sentences.len(),
        key_phrases: tools.key_phrases(&refs, config.max_phrase_words, config.max_key_phrases),
        sentiment,
    }
}

fn build_claim(tools: &TextTools, sentence: &str) -> Claim {
    let mut topic_stems = BTreeSet::new();
    let mut topic = Vec::new();
    for token in tools.tokens(sentence) {
        let generic = GENERIC_CLAIM_STEMS.contains(&token.stem.as_str());
        if is_content_word(&token.word) && !generic && topic_stems.insert(token.stem.clone()) {
            topic.push((token.stem, token.word));
        }
    }
    // A claim made only of generic words ("we deliver the best") is about those words.
    if topic_stems.is_empty() {
        for token in tools.tokens(sentence) {
            if is_content_word(&token.word) && topic_stems.insert(token.stem.clone()) {
                topic.push((token.stem, token.word));
            }
        }
    }
    Claim {
        sentence: sentence.to_owned(),
        topic_stems,
        topic,
        negated: tools.negated_stems(sentence),
        has_negation: tools.has_negation(sentence),
        sentiment: tools.sentiment(sentence),
        embedding: None,
    }
}

fn check_embeddings(vectors: &[Vec<f32>], expected: usize) -> Result<(), String> {
    if vectors.len() != expected {
        return Err(format!(
            "the embedder returned {} vectors for {expected} texts",
            vectors.len()
        ));
    }
    let dimension = vectors.first().map_or(0, Vec::len);
    if expected > 0 && dimension == 0 {
        return Err("the embedder returned empty vectors".to_owned());
    }
    if vectors
        .iter()
        .any(|v| v.len() != dimension || v.iter().any(|x| !x.is_finite()))
    {
        return Err(
            "the embedder returned vectors of mixed dimension or non-finite values".to_owned(),
        );
    }
    Ok(())
}

fn assess_claim(
    claim: &Claim,
    evidence: &[EvidenceSentence],
    other_sources: &[(SourceKind, &[String])],
    config: &ConsistencyConfig,
) -> ClaimAssessment {
    let claim_positive = claim.sentiment > -config.neutral_sentiment;
    let mut quotes = Vec::new();
    for sentence in evidence {
        let shared: Vec<&String> = claim.topic_stems.intersection(&sentence.stems).collect();
        let lexical = if claim.topic_stems.is_empty() {
            0.0
        } else {
            shared.len() as f64 / claim.topic_stems.len() as f64
        };
        let semantic = match (&claim.embedding, &sentence.embedding) {
            (Some(a), Some(b)) => cosine(a, b),
            _ => f64::NEG_INFINITY,
        };
        let lexical_match = !shared.is_empty() && lexical >= config.lexical_mention_threshold;
        let semantic_match = semantic >= config.semantic_mention_threshold;
        if !lexical_match && !semantic_match {
            continue;
        }
        let negated_term = shared
            .iter()
            .find(|stem| claim.negated.contains(**stem) != sentence.negated.contains(**stem));
        let opposite_sentiment = if claim_positive {
            sentence.sentiment <= -config.neutral_sentiment
        } else {
            sentence.sentiment >= config.neutral_sentiment
        };
        let semantic_negation = !lexical_match && sentence.has_negation && !claim.has_negation;
        let (stance, reason) = if let Some(stem) = negated_term {
            let term = term_for_stem(claim, stem);
            let reason = if sentence.negated.contains(*stem) {
                format!("negates '{term}'")
            } else {
                format!("states '{term}' where the claim negates it")
            };
            (Stance::Contradicts, reason)
        } else if opposite_sentiment {
            (
                Stance::Contradicts,
                format!(
                    "opposite sentiment ({:+.2} against the claim's {:+.2})",
                    sentence.sentiment, claim.sentiment
                ),
            )
        } else if semantic_negation {
            (
                Stance::Contradicts,
                format!("a negated statement on the claim's topic (similarity {semantic:.2})"),
            )
        } else if lexical_match {
            let terms: Vec<&str> = shared
                .iter()
                .map(|stem| term_for_stem(claim, stem))
                .collect();
            (Stance::Supports, format!("mentions {}", terms.join(", ")))
        } else {
            (
                Stance::Supports,
                format!("says the same in other words (similarity {semantic:.2})"),
            )
        };
        quotes.push(EvidenceQuote {
            source: sentence.source,
            text_index: sentence.text_index,
            sentence: sentence.sentence.clone(),
            stance,
            similarity: lexical.max(semantic),
            reason,
        });
    }
    let count = |source: Option<SourceKind>, stance: Stance| {
        quotes
            .iter()
            .filter(|q| source.is_none_or(|s| q.source == s) && q.stance == stance)
            .count()
    };
    let verdicts = other_sources
        .iter()
        .map(|(kind, _)| {
            (
                *kind,
                ClaimVerdict::from_counts(
                    count(Some(*kind), Stance::Supports),
                    count(Some(*kind), Stance::Contradicts),
                ),
            )
        })
        .collect();
    ClaimAssessment {
        claim: claim.sentence.clone(),
        topic_terms: claim.topic.iter().map(|(_, term)| term.clone()).collect(),
        sentiment: claim.sentiment,
        verdicts,
        overall: ClaimVerdict::from_counts(
            count(None, Stance::Supports),
            count(None, Stance::Contradicts),
        ),
        evidence: quotes,
    }
}

fn term_for_stem<'a>(claim: &'a Claim, stem: &'a str) -> &'a str {
    claim
        .topic
        .iter()
        .find(|(own_stem, _)| own_stem == stem)
        .map_or(stem, |(_, term)| term.as_str())
}

fn claim_alignment(assessments: &[ClaimAssessment]) -> Option<f64> {
    let credits: Vec<f64> = assessments
        .iter()
        .flat_map(|assessment| {
            assessment.verdicts.iter().map(|(source, verdict)| {
                let quotes = assessment.evidence.iter().filter(|q| q.source == *source);
                let n_support = quotes
                    .clone()
                    .filter(|q| q.stance == Stance::Supports)
                    .count();
                let n_contradict = quotes.filter(|q| q.stance == Stance::Contradicts).count();
                verdict.credit(n_support, n_contradict)
            })
        })
        .collect();
    (!credits.is_empty()).then(|| credits.iter().sum::<f64>() / credits.len() as f64)
}

/// The share of CEO key phrases echoed by the other sources, and the phrases that were not.
fn phrase_alignment(
    tools: &TextTools,
    ceo_phrases: &[String],
    ceo_embeddings: &[Option<Vec<f32>>],
    other_stems: &BTreeSet<String>,
    other_embeddings: &[Vec<f32>],
    config: &ConsistencyConfig,
) -> (Option<f64>, Vec<String>) {
    if ceo_phrases.is_empty() {
        return (None, Vec::new());
    }
    let mut unechoed = Vec::new();
    for (phrase, embedding) in ceo_phrases.iter().zip(ceo_embeddings) {
        let stems = tools.content_stems(phrase);
        let lexical = if stems.is_empty() {
            0.0
        } else {
            stems.intersection(other_stems).count() as f64 / stems.len() as f64
        };
        let semantic = embedding.as_ref().map_or(f64::NEG_INFINITY, |own| {
            other_embeddings
                .iter()
                .map(|other| cosine(own, other))
                .fold(f64::NEG_INFINITY, f64::max)
        });
        if lexical < config.lexical_phrase_threshold && semantic < config.semantic_phrase_threshold
        {
            unechoed.push(phrase.clone());
        }
    }
    let echoed = ceo_phrases.len() - unechoed.len();
    (Some(echoed as f64 / ceo_phrases.len() as f64), unechoed)
}

fn claim_discrepancies(assessments: &[ClaimAssessment]) -> Vec<Discrepancy> {
    let mut discrepancies = Vec::new();
    for assessment in assessments {
        for (source, verdict) in &assessment.verdicts {
            if !matches!(verdict, ClaimVerdict::Contradicted | ClaimVerdict::Mixed) {
                continue;
            }
            let quotes: Vec<String> = assessment
                .evidence
                .iter()
                .filter(|q| q.source == *source && q.stance == Stance::Contradicts)
                .map(|q| q.sentence.clone())
                .collect();
            let how = if *verdict == ClaimVerdict::Mixed {
                "partly contradict"
            } else {
                "contradict"
            };
            discrepancies.push(Discrepancy {
                kind: DiscrepancyKind::ContradictedClaim,
                source: Some(*source),
                claim: Some(assessment.claim.clone()),
                description: format!(
                    "{} {how} the claim \"{}\"",
                    source.plural_label(),
                    assessment.claim
                ),
                quotes,
            });
        }
        if assessment.overall == ClaimVerdict::NotMentioned {
            discrepancies.push(Discrepancy {
                kind: DiscrepancyKind::UnverifiedClaim,
                source: None,
                claim: Some(assessment.claim.clone()),
                description: format!(
                    "no employee, customer or demo mentions the claim \"{}\"",
                    assessment.claim
                ),
                quotes: Vec::new(),
            });
        }
    }
    discrepancies
}

fn sentiment_gap(
    evidence: &[EvidenceSentence],
    source: SourceKind,
    ceo_sentiment: f64,
    sentiment: f64,
) -> Discrepancy {
    let mut negative: Vec<&EvidenceSentence> = evidence
        .iter()
        .filter(|e| e.source == source && e.sentiment < 0.0)
        .collect();
    negative.sort_by(|a, b| a.sentiment.total_cmp(&b.sentiment));
    Discrepancy {
        kind: DiscrepancyKind::SentimentGap,
        source: Some(source),
        claim: None,
        description: format!(
            "{} are markedly less positive ({sentiment:+.2}) than the CEO message ({ceo_sentiment:+.2})",
            source.plural_label()
        ),
        quotes: negative.iter().take(3).map(|e| e.sentence.clone()).collect(),
    }
}

/// The recommendation each kind of discrepancy leads to.
fn recommendation(discrepancy: &Discrepancy) -> String {
    let claim = discrepancy.claim.as_deref().unwrap_or_default();
    let source = discrepancy
        .source
        .map_or("others", SourceKind::plural_label);
    match discrepancy.kind {
        DiscrepancyKind::ContradictedClaim => {
            let example = discrepancy
                .quotes
                .first()
                .map(|q| format!(" (\"{q}\")"))
                .unwrap_or_default();
            format!(
                "{} contradict the claim \"{claim}\"{example}: fix what they describe or change the message",
                capitalise(source)
            )
        }
        DiscrepancyKind::UnverifiedClaim => format!(
            "Nobody else mentions the claim \"{claim}\": ask about it in employee and customer surveys and show it in demos, or drop it from the message"
        ),
        DiscrepancyKind::SentimentGap => format!(
            "{} are markedly less positive than the CEO message: find out what troubles them before repeating the message",
            capitalise(source)
        ),
        DiscrepancyKind::PhraseGap => format!(
            "Few of the CEO's key phrases are echoed ({}): brief employees on the message and check that customers experience it",
            discrepancy.quotes.join(", ")
        ),
    }
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CEO: &str = "We respond to every customer within an hour. \
        Our team delivers exclusive leads that close at higher rates. \
        We offer training for your sales staff. \
        The company was founded in 2010 in Dallas.";

    fn sources(employees: &[&str], customers: &[&str], demos: &[&str]) -> ConsistencySources {
        let owned = |texts: &[&str]| texts.iter().map(|t| t.to_string()).collect();
        ConsistencySources {
            ceo_message: CEO.to_owned(),
            employee_texts: owned(employees),
            customer_texts: owned(customers),
            demo_transcripts: owned(demos),
        }
    }

    fn verdict(claim: &ClaimAssessment, source: SourceKind) -> ClaimVerdict {
        claim
            .verdicts
            .iter()
            .find(|(kind, _)| *kind == source)
            .map(|(_, verdict)| *verdict)
            .unwrap()
    }

    #[test]
    fn finds_the_ceo_claims() {
        let tools = TextTools::new();
        let claims: Vec<String> = sentences(CEO)
            .into_iter()
            .filter(|s| is_claim(&tools, s))
            .collect();
        assert_eq!(
            claims,
            vec![
                "We respond to every customer within an hour.",
                "Our team delivers exclusive leads that close at higher rates.",
                "We offer training for your sales staff.",
            ]
        );
        assert!(!is_claim(&tools, "Do we respond within an hour?"));
        assert!(
            !is_claim(&tools, "They deliver leads."),
            "not in the company's voice"
        );
        assert!(
            !is_claim(&tools, "We were founded in 2010."),
            "no value asserted"
        );
    }

    #[test]
    fn employees_and_customers_contradicting_a_claim_are_found_and_quoted() {
        let report = analyse_consistency(
            &sources(
                &["We do not respond to customers within an hour, it usually takes two days. The leads are exclusive and they close well."],
                &[
                    "They never respond, we waited a week for an answer.",
                    "The leads close at a higher rate than our old vendor.",
                ],
                &["In the demo they showed how leads are routed to your CRM."],
            ),
            None,
            &ConsistencyConfig::default(),
        )
        .unwrap();
        assert_eq!(report.method, AlignmentMethod::Lexical);
        assert_eq!(report.claims.len(), 3);

        let response = &report.claims[0];
        assert_eq!(response.topic_terms, vec!["respond", "customer", "hour"]);
        assert_eq!(
            verdict(response, SourceKind::Employee),
            ClaimVerdict::Contradicted
        );
        assert_eq!(
            verdict(response, SourceKind::Customer),
            ClaimVerdict::Contradicted
        );
        assert_eq!(
            verdict(response, SourceKind::Demo),
            ClaimVerdict::NotMentioned
        );
        let quotes: Vec<(&str, &str)> = response
            .evidence
            .iter()
            .map(|q| (q.sentence.as_str(), q.reason.as_str()))
            .collect();
        assert_eq!(
            quotes,
            vec![
                (
                    "We do not respond to customers within an hour, it usually takes two days.",
                    "negates 'respond'"
                ),
                (
                    "They never respond, we waited a week for an answer.",
                    "negates 'respond'"
                ),
            ]
        );

        let leads = &report.claims[1];
        assert_eq!(
            verdict(leads, SourceKind::Employee),
            ClaimVerdict::Supported
        );
        assert_eq!(
            verdict(leads, SourceKind::Customer),
            ClaimVerdict::Supported
        );
        assert_eq!(leads.overall, ClaimVerdict::Supported);

        let training = &report.claims[2];
        assert_eq!(training.overall, ClaimVerdict::NotMentioned);

        let contradictions: Vec<(Option<SourceKind>, &[String])> = report
            .discrepancies
            .iter()
            .filter(|d| d.kind == DiscrepancyKind::ContradictedClaim)
            .map(|d| (d.source, d.quotes.as_slice()))
            .collect();
        assert_eq!(contradictions.len(), 2);
        assert_eq!(contradictions[0].0, Some(SourceKind::Employee));
        assert_eq!(
            contradictions[1].1,
            ["They never respond, we waited a week for an answer.".to_owned()]
        );
        assert!(report.recommendations.contains(&
            "Customers contradict the claim \"We respond to every customer within an hour.\" (\"They never respond, we waited a week for an answer.\"): fix what they describe or change the message".to_owned()
        ));
        assert!(report
            .discrepancies
            .iter()
            .any(|d| d.kind == DiscrepancyKind::UnverifiedClaim
                && d.claim.as_deref() == Some("We offer training for your sales staff.")));

        // Claim credits: respond 0, 0, 0.5; leads 1, 1, 0.5; training 0.5 × 3 → 4.5 / 9.
        assert!((report.claim_alignment.unwrap() - 0.5).abs() < 1e-12);
        let expected = 100.0
            * (0.6 * 0.5
                + 0.25 * report.phrase_alignment.unwrap()
                + 0.15 * report.sentiment_alignment.unwrap());
        assert!((report.score - expected).abs() < 1e-9);
    }

    #[test]
    fn supportive_sources_score_high_with_no_claim_discrepancy() {
        let report = analyse_consistency(
            &sources(
                &["We respond to customers within an hour, it is our rule. The training for our sales staff is excellent."],
                &["They respond within the hour every time. Their leads are exclusive and close at higher rates."],
                &["The demo showed exclusive leads and the training for sales staff."],
            ),
            None,
            &ConsistencyConfig::default(),
        )
        .unwrap();
        let overall: Vec<ClaimVerdict> = report.claims.iter().map(|c| c.overall).collect();
        assert_eq!(overall, vec![ClaimVerdict::Supported; 3]);
        assert!(!report.discrepancies.iter().any(|d| matches!(
            d.kind,
            DiscrepancyKind::ContradictedClaim | DiscrepancyKind::UnverifiedClaim
        )));
        // Respond: employees and customers support, demos are silent (0.5); leads: customers
        // and demos support, employees silent; training: employees and demos support.
        // (1 + 1 + 0.5) · 3 / 9 = 0.833333.
        assert!((report.claim_alignment.unwrap() - 2.5 / 3.0).abs() < 1e-12);
        assert!(report.score > 70.0, "{}", report.score);
    }

    #[test]
    fn sources_that_ignore_the_claims_leave_them_unverified() {
        let report = analyse_consistency(
            &sources(
                &["I enjoy the office culture and my manager."],
                &["Installation of the software took a day."],
                &[],
            ),
            None,
            &ConsistencyConfig::default(),
        )
        .unwrap();
        assert!(report
            .claims
            .iter()
            .all(|c| c.overall == ClaimVerdict::NotMentioned && c.evidence.is_empty()));
        let unverified = report
            .discrepancies
            .iter()
            .filter(|d| d.kind == DiscrepancyKind::UnverifiedClaim)
            .count();
        assert_eq!(unverified, 3);
        assert_eq!(report.claim_alignment, Some(0.5));
        assert!(
            report.recommendations[0].starts_with("Nobody else mentions the claim \"We respond")
        );
        // Two sources had text, so the demo source is absent, not empty.
        assert_eq!(report.sources.len(), 3);
    }

    #[test]
    fn negative_sentiment_on_the_topic_contradicts_and_shows_a_gap() {
        let report = analyse_consistency(
            &sources(
                &[],
                &["The leads were fake and never closed, terrible. Awful, horrible service and a terrible waste of money."],
                &[],
            ),
            None,
            &ConsistencyConfig::default(),
        )
        .unwrap();
        let leads = &report.claims[1];
        assert_eq!(
            verdict(leads, SourceKind::Customer),
            ClaimVerdict::Contradicted
        );
        assert_eq!(
            leads.evidence[0].sentence,
            "The leads were fake and never closed, terrible."
        );
        let gap = report
            .discrepancies
            .iter()
            .find(|d| d.kind == DiscrepancyKind::SentimentGap)
            .expect("customers are far more negative than the CEO");
        assert_eq!(gap.source, Some(SourceKind::Customer));
        assert!(gap
            .quotes
            .contains(&"Awful, horrible service and a terrible waste of money.".to_owned()));
    }

    /// A stand-in for sentence embeddings: each text maps to counts over three concepts, so
    /// "answered the phone" and "respond" meet although they share no stem.
    fn concept_embedder(texts: &[String]) -> Vec<Vec<f32>> {
        const CONCEPTS: [&[&str]; 3] = [
            &[
                "respond", "answer", "call", "phone", "reply", "hour", "back",
            ],
            &["lead", "close", "rate", "exclusive"],
            &["training", "staff", "coach", "sales"],
        ];
        texts
            .iter()
            .map(|text| {
                let lower = text.to_lowercase();
                CONCEPTS
                    .iter()
                    .map(|words| words.iter().filter(|w| lower.contains(*w)).count() as f32)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn an_embedder_finds_contradictions_in_other_words() {
        let input = sources(
            &[],
            &["Nobody ever picked up the phone when we called."],
            &[],
        );
        let lexical = analyse_consistency(&input, None, &ConsistencyConfig::default()).unwrap();
        assert_eq!(lexical.claims[0].overall, ClaimVerdict::NotMentioned);

        let semantic = analyse_consistency(
            &input,
            Some(&concept_embedder),
            &ConsistencyConfig::default(),
        )
        .unwrap();
        assert_eq!(semantic.method, AlignmentMethod::Semantic);
        let response = &semantic.claims[0];
        assert_eq!(response.overall, ClaimVerdict::Contradicted);
        assert_eq!(
            response.evidence[0].sentence,
            "Nobody ever picked up the phone when we called."
        );
        assert!(response.evidence[0]
            .reason
            .starts_with("a negated statement on the claim's topic"));
    }

    #[test]
    fn an_unusable_embedder_falls_back_to_lexical_comparison() {
        let broken = |_: &[String]| vec![vec![1.0_f32]];
        let report = analyse_consistency(
            &sources(&["They respond fast."], &[], &[]),
            Some(&broken),
            &ConsistencyConfig::default(),
        )
        .unwrap();
        assert_eq!(report.method, AlignmentMethod::Lexical);
        assert!(report.notes[0].contains("fell back to lexical comparison"));
        assert_eq!(report.claims[0].overall, ClaimVerdict::Supported);
    }

    #[test]
    fn needs_a_ceo_message_and_another_source() {
        let config = ConsistencyConfig::default();
        let mut input = sources(&["fine"], &[], &[]);
        input.ceo_message = "  ".into();
        assert_eq!(
            analyse_consistency(&input, None, &config),
            Err(ConsistencyError::NoCeoMessage)
        );
        assert_eq!(
            analyse_consistency(&sources(&[" "], &[], &[]), None, &config),
            Err(ConsistencyError::NoOtherSources)
        );
    }

    #[test]
    fn a_negated_claim_is_contradicted_by_the_plain_statement() {
        let input = ConsistencySources {
            ceo_message: "We never miss a deadline, we always deliver on time.".into(),
            customer_texts: vec![
                "They missed the deadline twice.".into(),
                "They never missed a deadline.".into(),
            ],
            ..ConsistencySources::default()
        };
        let report = analyse_consistency(&input, None, &ConsistencyConfig::default()).unwrap();
        let stances: Vec<Stance> = report.claims[0].evidence.iter().map(|q| q.stance).collect();
        assert_eq!(stances, vec![Stance::Contradicts, Stance::Supports]);
        assert_eq!(report.claims[0].overall, ClaimVerdict::Mixed);
    }
}
