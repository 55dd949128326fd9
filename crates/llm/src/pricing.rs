//! The price table: USD per million tokens for each (provider, model) the gateway calls, and
//! the cost of one call's [`Usage`].
//!
//! The built-in table is `crates/llm/data/prices.toml`, embedded at build time and holding only
//! prices confirmed on the providers' own pages; configuration adds or replaces prices with
//! [`PriceTable::with_overrides`]. A model without a price has no cost: [`PriceTable::lookup`]
//! answers `None` and the caller records the cost as unknown, never an invented number.
//!
//! Lookup is an exact match on the model id as sent upstream (aliases and dated snapshots are
//! separate ids in the table). The one exception is written down in the data: an entry whose
//! model is `*` prices every model of its provider (`local` models cost nothing).

use std::collections::HashMap;

use serde::Deserialize;
use toml::value::Datetime;

use crate::types::Usage;

/// The model id of an entry that prices every model of its provider.
pub const ANY_MODEL: &str = "*";

const BUILTIN_PRICES: &str = include_str!("../data/prices.toml");

/// List prices in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    /// Uncached input tokens.
    pub input_per_million: f64,
    /// Input tokens read from the provider's prompt cache; `None` when the provider publishes no
    /// such price, in which case cached tokens are billed at the input price.
    pub cached_input_per_million: Option<f64>,
    /// Output tokens, reasoning tokens included.
    pub output_per_million: f64,
}

impl Price {
    /// Checks that every price is a finite number and not negative. The built-in file is
    /// checked on load; configuration checks its overrides with this before passing them on.
    pub fn check(&self) -> Result<(), InvalidPrice> {
        let fields = [
            ("input_per_million", Some(self.input_per_million)),
            ("cached_input_per_million", self.cached_input_per_million),
            ("output_per_million", Some(self.output_per_million)),
        ];
        for (field, value) in fields {
            if let Some(value) = value {
                if !value.is_finite() || value < 0.0 {
                    return Err(InvalidPrice { field, value });
                }
            }
        }
        Ok(())
    }
}

/// A price that is negative, infinite or not a number.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("`{field}` is {value}; a price must be a finite number, zero or more")]
pub struct InvalidPrice {
    pub field: &'static str,
    pub value: f64,
}

/// Where a price in the table comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriceOrigin {
    /// The built-in price file: the page the price was read from and the date it was checked.
    Builtin { source: String, as_of: String },
    /// A configuration override.
    Override,
}

/// One priced (provider, model) pair.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceEntry {
    pub provider: String,
    /// The model id as sent upstream, or [`ANY_MODEL`].
    pub model: String,
    pub price: Price,
    pub origin: PriceOrigin,
}

/// Prices by provider and model.
#[derive(Debug, Clone)]
pub struct PriceTable {
    as_of: String,
    note: String,
    entries: Vec<PriceEntry>,
    /// provider → model → index in `entries`.
    index: HashMap<String, HashMap<String, usize>>,
}

/// Why a price file was rejected. Entry errors name the entry by its position in the file
/// (counting from 1) and its provider and model.
#[derive(Debug, thiserror::Error)]
pub enum PricingError {
    #[error("the price file is not valid: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("the price file has no `{field}` at the top level")]
    MissingHeader { field: &'static str },
    #[error("the price file's top-level `as_of` must be a date such as 2026-11-22, not {value}")]
    InvalidHeaderDate { value: String },
    #[error("price entry {entry}: missing field `{field}`")]
    MissingField { entry: String, field: &'static str },
    #[error("price entry {entry}: `{field}` is empty")]
    EmptyField { entry: String, field: &'static str },
    #[error("price entry {entry}: {source}")]
    InvalidPrice {
        entry: String,
        #[source]
        source: InvalidPrice,
    },
    #[error("price entry {entry}: `as_of` must be a date such as 2026-11-22, not {value}")]
    InvalidDate { entry: String, value: String },
    #[error("price entry {entry}: provider `{provider}` model `{model}` is already priced by entry {first}")]
    Duplicate {
        entry: String,
        provider: String,
        model: String,
        first: String,
    },
}

impl PriceTable {
    /// The table shipped with Flywheel (`crates/llm/data/prices.toml`).
    pub fn builtin() -> Result<PriceTable, PricingError> {
        PriceTable::parse(BUILTIN_PRICES)
    }

    /// Parses a price file in the format of the built-in one.
    pub fn parse(text: &str) -> Result<PriceTable, PricingError> {
        let file: PriceFile = toml::from_str(text)?;
        let as_of = file
            .as_of
            .ok_or(PricingError::MissingHeader { field: "as_of" })?;
        let as_of = date_only(&as_of).ok_or_else(|| PricingError::InvalidHeaderDate {
            value: as_of.to_string(),
        })?;
        let note = file
            .note
            .ok_or(PricingError::MissingHeader { field: "note" })?;

        let mut table = PriceTable {
            as_of,
            note,
            entries: Vec::new(),
            index: HashMap::new(),
        };
        // The label of the entry that first priced each (provider, model), for duplicate errors.
        let mut labels: Vec<String> = Vec::new();
        for (position, raw) in file.price.into_iter().enumerate() {
            let entry = raw.validate(position + 1)?;
            for model in std::iter::once(&entry.model).chain(&entry.aliases) {
                if let Some(&first) = table
                    .index
                    .get(&entry.provider)
                    .and_then(|models| models.get(model))
                {
                    return Err(PricingError::Duplicate {
                        entry: entry.label.clone(),
                        provider: entry.provider.clone(),
                        model: model.clone(),
                        first: labels[first].clone(),
                    });
                }
                labels.push(entry.label.clone());
                table.insert(PriceEntry {
                    provider: entry.provider.clone(),
                    model: model.clone(),
                    price: entry.price,
                    origin: PriceOrigin::Builtin {
                        source: entry.source.clone(),
                        as_of: entry.as_of.clone(),
                    },
                });
            }
        }
        Ok(table)
    }

    /// Applies configuration overrides: a price for a (provider, model) already in the table
    /// replaces it, any other is added. Overrides are keyed exactly like lookups; overriding an
    /// id leaves its aliases at their built-in price.
    pub fn with_overrides(
        mut self,
        overrides: impl IntoIterator<Item = ((String, String), Price)>,
    ) -> Self {
        for ((provider, model), price) in overrides {
            let existing = self
                .index
                .get(&provider)
                .and_then(|models| models.get(&model))
                .copied();
            match existing {
                Some(position) => {
                    let entry = &mut self.entries[position];
                    entry.price = price;
                    entry.origin = PriceOrigin::Override;
                }
                None => self.insert(PriceEntry {
                    provider,
                    model,
                    price,
                    origin: PriceOrigin::Override,
                }),
            }
        }
        self
    }

    /// The price of `model` as sent upstream to `provider`, where `provider` is the configured
    /// provider name (`openai`, `anthropic`, …; for an `openai_compatible` server, the name it
    /// was given). Falls back to the provider's [`ANY_MODEL`] entry when the file has one.
    pub fn lookup(&self, provider: &str, model: &str) -> Option<&Price> {
        let models = self.index.get(provider)?;
        let position = *models.get(model).or_else(|| models.get(ANY_MODEL))?;
        Some(&self.entries[position].price)
    }

    /// Every priced (provider, model), in file order followed by added overrides.
    pub fn entries(&self) -> &[PriceEntry] {
        &self.entries
    }

    /// The date the price file as a whole was last reviewed.
    pub fn as_of(&self) -> &str {
        &self.as_of
    }

    /// The file's note on what the prices cover and what "cached input" means per provider.
    pub fn note(&self) -> &str {
        &self.note
    }

    fn insert(&mut self, entry: PriceEntry) {
        let position = self.entries.len();
        self.index
            .entry(entry.provider.clone())
            .or_default()
            .insert(entry.model.clone(), position);
        self.entries.push(entry);
    }
}

/// The cost in USD of one call with `usage` at `price`. `usage.input_tokens` includes the
/// cached tokens: uncached input is billed at the input price, cached input at the cached price
/// (or the input price when the model has none), output at the output price. A provider
/// reporting more cached tokens than input tokens is taken to have cached all of the input.
pub fn cost(price: &Price, usage: &Usage) -> f64 {
    let cached = usage
        .cached_input_tokens
        .unwrap_or(0)
        .min(usage.input_tokens);
    let uncached = usage.input_tokens - cached;
    let cached_price = price
        .cached_input_per_million
        .unwrap_or(price.input_per_million);
    (uncached as f64 * price.input_per_million
        + cached as f64 * cached_price
        + usage.output_tokens as f64 * price.output_per_million)
        / 1_000_000.0
}

/// The price file as written; every field is optional here so that a missing one can be
/// reported with the entry it is missing from.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceFile {
    as_of: Option<Datetime>,
    note: Option<String>,
    #[serde(default)]
    price: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    provider: Option<String>,
    model: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
    input_per_million: Option<f64>,
    cached_input_per_million: Option<f64>,
    output_per_million: Option<f64>,
    source: Option<String>,
    as_of: Option<Datetime>,
}

/// A checked entry of the file, before its aliases are expanded.
struct FileEntry {
    label: String,
    provider: String,
    model: String,
    aliases: Vec<String>,
    price: Price,
    source: String,
    as_of: String,
}

impl RawEntry {
    fn validate(self, position: usize) -> Result<FileEntry, PricingError> {
        let label = format!(
            "#{position} ({}/{})",
            self.provider.as_deref().unwrap_or("<no provider>"),
            self.model.as_deref().unwrap_or("<no model>"),
        );
        let missing = |field| PricingError::MissingField {
            entry: label.clone(),
            field,
        };
        let empty = |field| PricingError::EmptyField {
            entry: label.clone(),
            field,
        };

        let provider = self.provider.ok_or_else(|| missing("provider"))?;
        let model = self.model.ok_or_else(|| missing("model"))?;
        let source = self.source.ok_or_else(|| missing("source"))?;
        for (field, value) in [
            ("provider", &provider),
            ("model", &model),
            ("source", &source),
        ] {
            if value.trim().is_empty() {
                return Err(empty(field));
            }
        }
        if self.aliases.iter().any(|alias| alias.trim().is_empty()) {
            return Err(empty("aliases"));
        }

        let price = Price {
            input_per_million: self
                .input_per_million
                .ok_or_else(|| missing("input_per_million"))?,
            cached_input_per_million: self.cached_input_per_million,
            output_per_million: self
                .output_per_million
                .ok_or_else(|| missing("output_per_million"))?,
        };
        price.check().map_err(|source| PricingError::InvalidPrice {
            entry: label.clone(),
            source,
        })?;

        let as_of = self.as_of.ok_or_else(|| missing("as_of"))?;
        let as_of = date_only(&as_of).ok_or_else(|| PricingError::InvalidDate {
            entry: label.clone(),
            value: as_of.to_string(),
        })?;

        Ok(FileEntry {
            label,
            provider,
            model,
            aliases: self.aliases,
            price,
            source,
            as_of,
        })
    }
}

/// The date of a TOML date literal (`2026-11-22`), or `None` for a time or a date-time.
fn date_only(value: &Datetime) -> Option<String> {
    match (value.date, value.time, value.offset) {
        (Some(date), None, None) => Some(date.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "as_of = 2026-11-22\nnote = \"test prices\"\n";

    fn entry(provider: &str, model: &str, input: &str) -> String {
        format!(
            "[[price]]\nprovider = \"{provider}\"\nmodel = \"{model}\"\n\
             input_per_million = {input}\noutput_per_million = 2.0\n\
             source = \"https://example.com/pricing\"\nas_of = 2026-11-22\n"
        )
    }

    fn usage(input: u64, cached: Option<u64>, output: u64) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            cached_input_tokens: cached,
        }
    }

    fn price(input: f64, cached: Option<f64>, output: f64) -> Price {
        Price {
            input_per_million: input,
            cached_input_per_million: cached,
            output_per_million: output,
        }
    }

    #[test]
    fn the_builtin_file_parses_and_every_entry_is_sourced_and_dated() {
        let table = PriceTable::builtin().unwrap();
        assert_eq!(table.as_of(), "2026-11-22");
        assert!(table.note().contains("cached"));
        assert!(!table.entries().is_empty());
        for entry in table.entries() {
            let PriceOrigin::Builtin { source, as_of } = &entry.origin else {
                panic!("{}/{} is not from the file", entry.provider, entry.model);
            };
            assert!(
                source.starts_with("https://") || entry.provider == "local",
                "{}/{} has source {source}",
                entry.provider,
                entry.model
            );
            assert_eq!(as_of.len(), "2026-11-22".len());
        }
    }

    #[test]
    fn the_builtin_file_prices_aliases_like_their_model() {
        let table = PriceTable::builtin().unwrap();
        let dated = table
            .lookup("anthropic", "claude-sonnet-4-5-20250929")
            .unwrap();
        let alias = table.lookup("anthropic", "claude-sonnet-4-5").unwrap();
        assert_eq!(dated, alias);
        assert_eq!(*dated, price(3.0, Some(0.3), 15.0));
    }

    #[test]
    fn cost_bills_cached_tokens_at_the_cached_price() {
        let table = PriceTable::builtin().unwrap();
        let sonnet = table
            .lookup("anthropic", "claude-sonnet-4-5-20250929")
            .unwrap();
        // 2,000 uncached × $3 + 8,000 cached × $0.30 + 1,000 output × $15, per million:
        // (6,000 + 2,400 + 15,000) / 1,000,000 = $0.0234.
        let usd = cost(sonnet, &usage(10_000, Some(8_000), 1_000));
        assert!((usd - 0.0234).abs() < 1e-12, "{usd}");
    }

    #[test]
    fn cost_bills_cached_tokens_at_the_input_price_when_there_is_no_cached_price() {
        let no_cache_price = price(2.0, None, 10.0);
        // 1,000 input (all of them, cached or not) × $2 + 500 output × $10 = $0.007.
        let usd = cost(&no_cache_price, &usage(1_000, Some(600), 500));
        assert!((usd - 0.007).abs() < 1e-12, "{usd}");
        let without_cache_report = cost(&no_cache_price, &usage(1_000, None, 500));
        assert!((without_cache_report - usd).abs() < 1e-12);
    }

    #[test]
    fn cost_takes_more_cached_than_input_tokens_as_all_cached() {
        let usd = cost(&price(1.0, Some(0.1), 0.0), &usage(1_000, Some(5_000), 0));
        assert!((usd - 0.0001).abs() < 1e-12, "{usd}");
    }

    #[test]
    fn unknown_models_and_providers_have_no_price() {
        let table = PriceTable::builtin().unwrap();
        assert_eq!(
            table.lookup("anthropic", "claude-sonnet-4-5-20990101"),
            None
        );
        assert_eq!(table.lookup("openai", "gpt-5-mini-latest"), None);
        assert_eq!(table.lookup("openai", "GPT-5-MINI"), None);
        assert_eq!(table.lookup("my-vllm", "llama-3-8b"), None);
        assert_eq!(
            table.lookup("bedrock", "anthropic.claude-sonnet-4-20250514-v1:0"),
            None
        );
    }

    #[test]
    fn local_models_cost_nothing_through_their_explicit_entry() {
        let table = PriceTable::builtin().unwrap();
        let local = table.lookup("local", "any-model-at-all").unwrap();
        assert_eq!(*local, price(0.0, Some(0.0), 0.0));
        assert_eq!(cost(local, &usage(1_000_000, Some(10), 1_000_000)), 0.0);
    }

    #[test]
    fn overrides_replace_existing_prices_and_add_new_ones() {
        let replaced = price(2.0, Some(0.2), 12.0);
        let added = price(0.5, None, 1.5);
        let table = PriceTable::builtin().unwrap().with_overrides([
            (
                (
                    "anthropic".to_owned(),
                    "claude-sonnet-4-5-20250929".to_owned(),
                ),
                replaced,
            ),
            // An OpenAI-compatible server is looked up by its configured name.
            (("my-vllm".to_owned(), "llama-3-8b".to_owned()), added),
        ]);

        assert_eq!(
            table.lookup("anthropic", "claude-sonnet-4-5-20250929"),
            Some(&replaced)
        );
        // The alias is a separate id and keeps the file's price.
        assert_eq!(
            table.lookup("anthropic", "claude-sonnet-4-5"),
            Some(&price(3.0, Some(0.3), 15.0))
        );
        assert_eq!(table.lookup("my-vllm", "llama-3-8b"), Some(&added));

        let origins: Vec<_> = table
            .entries()
            .iter()
            .filter(|entry| entry.origin == PriceOrigin::Override)
            .map(|entry| (entry.provider.as_str(), entry.model.as_str()))
            .collect();
        assert_eq!(
            origins,
            [
                ("anthropic", "claude-sonnet-4-5-20250929"),
                ("my-vllm", "llama-3-8b")
            ]
        );
        let builtin_len = PriceTable::builtin().unwrap().entries().len();
        assert_eq!(table.entries().len(), builtin_len + 1);
    }

    #[test]
    fn a_duplicate_provider_and_model_is_rejected_naming_both_entries() {
        let text = format!(
            "{HEADER}{}{}",
            entry("openai", "gpt-x", "1.0"),
            entry("openai", "gpt-x", "2.0")
        );
        let error = PriceTable::parse(&text).unwrap_err();
        assert!(
            matches!(&error, PricingError::Duplicate { entry, first, .. }
                if entry == "#2 (openai/gpt-x)" && first == "#1 (openai/gpt-x)"),
            "{error}"
        );
        assert!(error.to_string().contains("#2 (openai/gpt-x)"));
    }

    #[test]
    fn an_alias_that_repeats_a_model_is_a_duplicate() {
        let text = format!(
            "{HEADER}{}{}aliases = [\"gpt-x\"]\n",
            entry("openai", "gpt-x", "1.0"),
            entry("openai", "gpt-x-2026", "1.0")
        );
        let error = PriceTable::parse(&text).unwrap_err();
        assert!(
            matches!(&error, PricingError::Duplicate { model, .. } if model == "gpt-x"),
            "{error}"
        );
    }

    #[test]
    fn the_same_model_under_two_providers_is_not_a_duplicate() {
        let text = format!(
            "{HEADER}{}{}",
            entry("openai", "gpt-x", "1.0"),
            entry("azure", "gpt-x", "1.5")
        );
        let table = PriceTable::parse(&text).unwrap();
        assert_eq!(
            table.lookup("azure", "gpt-x").unwrap().input_per_million,
            1.5
        );
    }

    #[test]
    fn a_negative_price_is_rejected_naming_the_entry_and_field() {
        let text = format!("{HEADER}{}", entry("openai", "gpt-x", "-0.5"));
        let error = PriceTable::parse(&text).unwrap_err();
        assert!(
            matches!(&error, PricingError::InvalidPrice { entry, source }
                if entry == "#1 (openai/gpt-x)" && source.field == "input_per_million"),
            "{error}"
        );
        assert!(error.to_string().contains("input_per_million"));
    }

    #[test]
    fn a_missing_field_is_rejected_naming_the_entry_and_field() {
        let text = format!("{HEADER}{}", entry("openai", "gpt-x", "1.0"))
            .replace("output_per_million = 2.0\n", "");
        let error = PriceTable::parse(&text).unwrap_err();
        assert!(
            matches!(&error, PricingError::MissingField { entry, field }
                if entry == "#1 (openai/gpt-x)" && *field == "output_per_million"),
            "{error}"
        );

        let no_model = format!("{HEADER}{}", entry("openai", "gpt-x", "1.0"))
            .replace("model = \"gpt-x\"\n", "");
        let error = PriceTable::parse(&no_model).unwrap_err();
        assert!(
            matches!(&error, PricingError::MissingField { entry, field }
                if entry == "#1 (openai/<no model>)" && *field == "model"),
            "{error}"
        );
    }

    #[test]
    fn a_malformed_date_or_header_is_rejected() {
        let with_time = format!("{HEADER}{}", entry("openai", "gpt-x", "1.0")).replace(
            "source = \"https://example.com/pricing\"\nas_of = 2026-11-22",
            "source = \"https://example.com/pricing\"\nas_of = 2026-11-22T10:00:00Z",
        );
        let error = PriceTable::parse(&with_time).unwrap_err();
        assert!(matches!(error, PricingError::InvalidDate { .. }), "{error}");

        let no_note = format!("as_of = 2026-11-22\n{}", entry("openai", "gpt-x", "1.0"));
        let error = PriceTable::parse(&no_note).unwrap_err();
        assert!(
            matches!(error, PricingError::MissingHeader { field: "note" }),
            "{error}"
        );
    }

    #[test]
    fn an_unknown_field_is_rejected() {
        let text = format!(
            "{HEADER}{}cache_write_per_million = 1.0\n",
            entry("openai", "gpt-x", "1.0")
        );
        let error = PriceTable::parse(&text).unwrap_err();
        assert!(matches!(error, PricingError::Toml(_)), "{error}");
        assert!(
            error.to_string().contains("cache_write_per_million"),
            "{error}"
        );
    }

    #[test]
    fn price_check_rejects_non_finite_prices() {
        assert!(price(1.0, Some(f64::NAN), 1.0).check().is_err());
        assert!(price(1.0, None, f64::INFINITY).check().is_err());
        assert!(price(0.0, None, 0.0).check().is_ok());
    }
}
