//! The client's address, believing X-Forwarded-For only from proxies we run.

use std::net::IpAddr;

use ipnet::IpNet;

/// The client address of a request that arrived from `peer`.
///
/// When `peer` is a trusted proxy, X-Forwarded-For is read from the right:
/// the right-most hop that is not itself a trusted proxy is the client
/// (hops further left were written by the client and can be forged).
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let Some(header) = forwarded_for else { return peer };
    let mut last_trusted = peer;
    for hop in header.rsplit(',').map(str::trim) {
        let Ok(ip) = hop.parse::<IpAddr>().map(canonical) else {
            // A malformed entry ends what can be believed.
            return last_trusted;
        };
        if !is_trusted(&ip) {
            return ip;
        }
        last_trusted = ip;
    }
    last_trusted
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) read as IPv4, so rules
/// and logs see one form.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_claim() {
        assert_eq!(client_ip(ip("203.0.113.9"), Some("1.1.1.1"), &[]), ip("203.0.113.9"));
    }

    #[test]
    fn trusted_proxies_are_peeled_from_the_right() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let forged_then_real = Some("6.6.6.6, 198.51.100.7, 10.1.1.1");
        assert_eq!(
            client_ip(ip("10.0.0.2"), forged_then_real, &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(client_ip(ip("10.0.0.2"), None, &trusted), ip("10.0.0.2"));
        assert_eq!(
            client_ip(ip("10.0.0.2"), Some("garbage, 10.0.0.3"), &trusted),
            ip("10.0.0.3")
        );
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.2"), Some("198.51.100.7"), &trusted),
            ip("198.51.100.7")
        );
    }
}
