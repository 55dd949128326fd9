//! The client's address and user agent as seen through the transport and trusted proxies.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::{header, Extensions, HeaderMap};
use flywheel_services::enrich::ClientContext;
use ipnet::IpNet;

/// Parses `server`-style proxy entries: an address (`10.0.0.1`) or a network (`10.0.0.0/8`).
pub fn parse_trusted_proxies(entries: &[String]) -> Result<Vec<IpNet>, String> {
    entries
        .iter()
        .map(|entry| {
            entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("ingest.trusted_proxies: '{entry}' is neither an IP address nor a CIDR network"))
        })
        .collect()
}

/// The client's address: the peer, or — when the peer is a trusted proxy — the right-most
/// `X-Forwarded-For` entry that is not itself a trusted proxy.
pub fn client_context(
    headers: &HeaderMap,
    extensions: &Extensions,
    trusted: &[IpNet],
) -> ClientContext {
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let ip = match peer {
        Some(peer) if is_trusted(&peer) => {
            let forwarded: Vec<IpAddr> = headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(','))
                .filter_map(|part| part.trim().parse::<IpAddr>().ok())
                .collect();
            forwarded
                .into_iter()
                .rev()
                .find(|ip| !is_trusted(ip))
                .or(Some(peer))
        }
        other => other,
    };
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.chars().take(4096).collect());
    ClientContext { ip, user_agent }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn extensions_with_peer(peer: &str) -> Extensions {
        let mut extensions = Extensions::new();
        extensions.insert(ConnectInfo::<SocketAddr>(peer.parse().unwrap()));
        extensions
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = parse_trusted_proxies(&["10.0.0.0/8".to_owned()]).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("198.51.100.1, 203.0.113.9, 10.0.0.2"),
        );
        let via_proxy = client_context(&headers, &extensions_with_peer("10.1.2.3:5000"), &trusted);
        assert_eq!(via_proxy.ip.unwrap().to_string(), "203.0.113.9");
        let direct = client_context(&headers, &extensions_with_peer("192.0.2.4:5000"), &trusted);
        assert_eq!(direct.ip.unwrap().to_string(), "192.0.2.4");
        assert!(parse_trusted_proxies(&["nope".to_owned()]).is_err());
    }
}
