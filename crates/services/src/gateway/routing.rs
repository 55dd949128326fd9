//! Where a requested model goes: `provider/model` directly, or an alias with weighted
//! variants (sticky per user) and an ordered fallback chain.

use std::collections::BTreeMap;

use flywheel_config::AliasConfig;
use sha2::{Digest, Sha256};

/// One entry of a fallback chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub provider: String,
    pub model: String,
}

impl Target {
    /// Parses `provider/model`; the model may itself contain `/` (e.g. Ollama namespaces).
    pub fn parse(text: &str) -> Option<Target> {
        let (provider, model) = text.split_once('/')?;
        (!provider.is_empty() && !model.is_empty()).then(|| Target {
            provider: provider.to_owned(),
            model: model.to_owned(),
        })
    }

    pub fn label(&self) -> String {
        format!("{}/{}", self.provider, self.model)
    }
}

#[derive(Debug, Clone)]
pub struct Variant {
    pub name: String,
    pub weight: u32,
    pub targets: Vec<Target>,
}

#[derive(Debug, Clone)]
pub struct Alias {
    pub name: String,
    pub experiment: String,
    pub variants: Vec<Variant>,
}

/// The route chosen for one request.
#[derive(Debug, Clone)]
pub struct Route {
    pub alias: Option<String>,
    /// `(experiment, variant)` when the alias has several variants.
    pub variant: Option<(String, String)>,
    pub targets: Vec<Target>,
}

/// Builds aliases from configuration, checking every target names a known provider.
pub fn aliases_from_config(
    configured: &BTreeMap<String, AliasConfig>,
    known_providers: &[String],
) -> Result<BTreeMap<String, Alias>, String> {
    let mut aliases = BTreeMap::new();
    for (name, config) in configured {
        let parse_targets = |targets: &[String], place: &str| -> Result<Vec<Target>, String> {
            if targets.is_empty() {
                return Err(format!("gateway.aliases.{name}{place}: `targets` is empty"));
            }
            targets
                .iter()
                .map(|text| {
                    let target = Target::parse(text).ok_or_else(|| {
                        format!("gateway.aliases.{name}{place}: target `{text}` is not `provider/model`")
                    })?;
                    if !known_providers.contains(&target.provider) {
                        return Err(format!(
                            "gateway.aliases.{name}{place}: provider `{}` is not configured (known: {})",
                            target.provider,
                            known_providers.join(", ")
                        ));
                    }
                    Ok(target)
                })
                .collect()
        };
        let variants = match (config.targets.is_empty(), config.variants.is_empty()) {
            (false, true) => vec![Variant {
                name: "default".to_owned(),
                weight: 1,
                targets: parse_targets(&config.targets, "")?,
            }],
            (true, false) => config
                .variants
                .iter()
                .enumerate()
                .map(|(idx, variant)| {
                    let place = format!(".variants[{idx}]");
                    if variant.name.is_empty() {
                        return Err(format!("gateway.aliases.{name}{place}: `name` is empty"));
                    }
                    if variant.weight == 0 {
                        return Err(format!(
                            "gateway.aliases.{name}{place}: `weight` must be at least 1"
                        ));
                    }
                    Ok(Variant {
                        name: variant.name.clone(),
                        weight: variant.weight,
                        targets: parse_targets(&variant.targets, &place)?,
                    })
                })
                .collect::<Result<_, _>>()?,
            _ => {
                return Err(format!(
                "gateway.aliases.{name}: give either `targets` or `variants`, not both or neither"
            ))
            }
        };
        aliases.insert(
            name.clone(),
            Alias {
                name: name.clone(),
                experiment: config.experiment.clone().unwrap_or_else(|| name.clone()),
                variants,
            },
        );
    }
    Ok(aliases)
}

impl Alias {
    /// The variant for `user`: stable for the same (tenant, alias, user), spread by weight.
    pub fn choose(&self, tenant: &str, user: &str) -> &Variant {
        let total: u64 = self.variants.iter().map(|v| u64::from(v.weight)).sum();
        let mut hasher = Sha256::new();
        for part in [tenant, &self.name, user] {
            hasher.update(part.as_bytes());
            hasher.update([0u8]);
        }
        let digest = hasher.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        let mut point = u64::from_be_bytes(first) % total.max(1);
        for variant in &self.variants {
            let weight = u64::from(variant.weight);
            if point < weight {
                return variant;
            }
            point -= weight;
        }
        // Unreachable with at least one variant of weight >= 1, which configuration enforces.
        &self.variants[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flywheel_config::VariantConfig;

    fn alias(weights: &[(&str, u32)]) -> Alias {
        let mut configured = BTreeMap::new();
        configured.insert(
            "chat".to_owned(),
            AliasConfig {
                targets: Vec::new(),
                variants: weights
                    .iter()
                    .map(|(name, weight)| VariantConfig {
                        name: (*name).to_owned(),
                        weight: *weight,
                        targets: vec![format!("openai/{name}")],
                    })
                    .collect(),
                experiment: None,
            },
        );
        aliases_from_config(&configured, &["openai".to_owned()]).unwrap()["chat"].clone()
    }

    #[test]
    fn variants_are_sticky_and_follow_weights() {
        let alias = alias(&[("a", 90), ("b", 10)]);
        let mut counts = BTreeMap::new();
        for user in 0..10_000 {
            let user = format!("user-{user}");
            let first = alias.choose("acme", &user).name.clone();
            assert_eq!(alias.choose("acme", &user).name, first, "sticky");
            *counts.entry(first).or_insert(0) += 1;
        }
        let b = counts.get("b").copied().unwrap_or(0);
        assert!((800..1_200).contains(&b), "about 10% get b: {counts:?}");
    }

    #[test]
    fn bad_targets_are_named() {
        let mut configured = BTreeMap::new();
        configured.insert(
            "x".to_owned(),
            AliasConfig {
                targets: vec!["nowhere/model".to_owned()],
                ..AliasConfig::default()
            },
        );
        let err = aliases_from_config(&configured, &["openai".to_owned()]).unwrap_err();
        assert!(
            err.contains("gateway.aliases.x") && err.contains("nowhere"),
            "{err}"
        );
        assert_eq!(
            Target::parse("ollama/library/llama3").unwrap().model,
            "library/llama3"
        );
        assert!(Target::parse("gpt-4o").is_none());
    }
}
