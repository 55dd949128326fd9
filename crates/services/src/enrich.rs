//! Enrichment of interactions at ingestion: environment and version from configuration,
//! device, browser and OS from the user agent, and the anonymised client address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};

use flywheel_config::ClientIpMode;
use flywheel_core::Interaction;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// Settings for [`enrich`].
#[derive(Clone)]
pub struct EnrichSettings {
    pub environment: String,
    pub app_version: Option<String>,
    pub client_ip: ClientIpMode,
    pub ip_hash_key: [u8; 32],
}

impl std::fmt::Debug for EnrichSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrichSettings")
            .field("environment", &self.environment)
            .field("app_version", &self.app_version)
            .field("client_ip", &self.client_ip)
            .finish_non_exhaustive()
    }
}

/// What the transport knows about the caller's device.
#[derive(Debug, Clone, Default)]
pub struct ClientContext {
    /// The client's address (after trusted-proxy resolution).
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

/// Fills in metadata. `from_transport` is used only for what the document does not say,
/// and only when the caller is the end user's own device (a contractor or partner credential);
/// a service forwarding events must put the user's address and agent in the document.
pub fn enrich(
    interaction: &mut Interaction,
    settings: &EnrichSettings,
    from_transport: Option<&ClientContext>,
) {
    let metadata = interaction.metadata_mut();
    if !metadata.contains_key("environment") {
        metadata.insert(
            "environment".to_owned(),
            Value::String(settings.environment.clone()),
        );
    }
    if let Some(version) = &settings.app_version {
        if !metadata.contains_key("app_version") {
            metadata.insert("app_version".to_owned(), Value::String(version.clone()));
        }
    }
    if let Some(transport) = from_transport {
        if !metadata.contains_key("user_agent") {
            if let Some(agent) = &transport.user_agent {
                metadata.insert("user_agent".to_owned(), Value::String(agent.clone()));
            }
        }
        if !metadata.contains_key("client_ip") {
            if let Some(ip) = transport.ip {
                metadata.insert("client_ip".to_owned(), Value::String(ip.to_string()));
            }
        }
    }
    let agent = metadata
        .get("user_agent")
        .and_then(Value::as_str)
        .map(parse_user_agent);
    if let Some(Some(parsed)) = agent {
        if !metadata.contains_key("device_type") {
            metadata.insert(
                "device_type".to_owned(),
                Value::String(parsed.device_type.to_owned()),
            );
        }
        if let Some(browser) = parsed.browser {
            metadata.insert("browser".to_owned(), Value::String(browser));
        }
        if let Some(os) = parsed.os {
            metadata.insert("os".to_owned(), Value::String(os));
        }
    }
    let ip = metadata
        .get("client_ip")
        .and_then(Value::as_str)
        .and_then(|raw| raw.parse::<IpAddr>().ok());
    if let Some(ip) = ip {
        match anonymise_ip(ip, settings.client_ip, &settings.ip_hash_key) {
            Some(value) => {
                metadata.insert("client_ip".to_owned(), Value::String(value));
            }
            None => {
                metadata.remove("client_ip");
            }
        }
    }
}

#[derive(Debug, Clone)]
struct ParsedAgent {
    device_type: &'static str,
    browser: Option<String>,
    os: Option<String>,
}

/// Distinct user agents are few compared with events, so parses are memoised (bounded: the
/// cache is emptied when it reaches `AGENT_CACHE_ENTRIES`).
const AGENT_CACHE_ENTRIES: usize = 4096;

fn parse_user_agent(agent: &str) -> Option<ParsedAgent> {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<ParsedAgent>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Ok(cache) = cache.lock() {
        if let Some(hit) = cache.get(agent) {
            return hit.clone();
        }
    }
    let parsed = woothee::parser::Parser::new()
        .parse(agent)
        .map(|parsed| ParsedAgent {
            device_type: device_type(parsed.category),
            browser: (parsed.name != "UNKNOWN").then(|| parsed.name.to_owned()),
            os: (parsed.os != "UNKNOWN").then(|| parsed.os.to_owned()),
        });
    if let Ok(mut cache) = cache.lock() {
        if cache.len() >= AGENT_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(agent.to_owned(), parsed.clone());
    }
    parsed
}

/// Maps woothee's categories onto the contract's device types.
fn device_type(category: &str) -> &'static str {
    match category {
        "pc" => "desktop",
        "smartphone" | "mobilephone" => "mobile",
        "crawler" => "bot",
        "appliance" => "appliance",
        _ => "other",
    }
}

/// The stored form of an address under `mode`; `None` means "store nothing".
pub fn anonymise_ip(ip: IpAddr, mode: ClientIpMode, hash_key: &[u8; 32]) -> Option<String> {
    match mode {
        ClientIpMode::Drop => None,
        ClientIpMode::Truncate => Some(match ip {
            IpAddr::V4(v4) => {
                let [a, b, c, _] = v4.octets();
                format!("{a}.{b}.{c}.0")
            }
            IpAddr::V6(v6) => {
                let segments = v6.segments();
                std::net::Ipv6Addr::new(segments[0], segments[1], segments[2], 0, 0, 0, 0, 0)
                    .to_string()
            }
        }),
        ClientIpMode::Hash => {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(hash_key)
                .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
            mac.update(ip.to_string().as_bytes());
            let digest = mac.finalize().into_bytes();
            Some(format!("hmac:{}", hex::encode(&digest[..16])))
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use flywheel_core::TenantId;
    use serde_json::json;

    use super::*;

    fn settings(mode: ClientIpMode) -> EnrichSettings {
        EnrichSettings {
            environment: "production".to_owned(),
            app_version: Some("2.1.0".to_owned()),
            client_ip: mode,
            ip_hash_key: [7; 32],
        }
    }

    fn interaction(metadata: Value) -> Interaction {
        Interaction::parse(
            json!({"interaction_type": "x", "user_id": "u", "user_type": "contractor", "metadata": metadata}),
            &TenantId::parse("acme").unwrap(),
            Utc::now(),
        )
        .unwrap()
    }

    #[test]
    fn truncates_addresses_by_default() {
        let key = [1; 32];
        assert_eq!(
            anonymise_ip(
                "203.0.113.77".parse().unwrap(),
                ClientIpMode::Truncate,
                &key
            )
            .unwrap(),
            "203.0.113.0"
        );
        assert_eq!(
            anonymise_ip(
                "2001:db8:abcd:12::1".parse().unwrap(),
                ClientIpMode::Truncate,
                &key
            )
            .unwrap(),
            "2001:db8:abcd::"
        );
        assert!(anonymise_ip("203.0.113.77".parse().unwrap(), ClientIpMode::Drop, &key).is_none());
        let a = anonymise_ip("203.0.113.77".parse().unwrap(), ClientIpMode::Hash, &key).unwrap();
        let b = anonymise_ip("203.0.113.77".parse().unwrap(), ClientIpMode::Hash, &key).unwrap();
        assert_eq!(a, b);
        assert!(a.starts_with("hmac:") && !a.contains("203"));
    }

    #[test]
    fn parses_user_agents_and_fills_configuration() {
        let mut item = interaction(json!({
            "user_agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
            "client_ip": "198.51.100.23"
        }));
        enrich(&mut item, &settings(ClientIpMode::Truncate), None);
        let metadata = &item.document["metadata"];
        assert_eq!(metadata["device_type"], "mobile");
        assert_eq!(metadata["browser"], "Safari");
        assert_eq!(metadata["os"], "iPhone");
        assert_eq!(metadata["client_ip"], "198.51.100.0");
        assert_eq!(metadata["environment"], "production");
        assert_eq!(metadata["app_version"], "2.1.0");
    }

    #[test]
    fn transport_fills_only_gaps() {
        let mut item = interaction(json!({"environment": "staging"}));
        let transport = ClientContext {
            ip: Some("192.0.2.9".parse().unwrap()),
            user_agent: Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36".to_owned()),
        };
        enrich(&mut item, &settings(ClientIpMode::Drop), Some(&transport));
        let metadata = &item.document["metadata"];
        assert_eq!(metadata["environment"], "staging", "the document wins");
        assert_eq!(metadata["device_type"], "desktop");
        assert_eq!(metadata["browser"], "Chrome");
        assert!(metadata.get("client_ip").is_none(), "dropped");
    }
}
