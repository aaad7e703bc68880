//! Facts about the request behind a call, which services record (audit
//! trail, sessions) and throttle by.

use std::net::IpAddr;

/// The longest User-Agent kept: sessions and device logins store it, and
/// the header is the client's to make as long as the server's header
/// limit allows.
pub const MAX_USER_AGENT_CHARS: usize = 512;

/// Facts about the HTTP request (or websocket connection) behind a query.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    /// The client address, after trusted proxies are peeled off.
    pub client_ip: IpAddr,
    /// The client's User-Agent header, cut to [`MAX_USER_AGENT_CHARS`].
    pub user_agent: Option<String>,
}

impl RequestMeta {
    /// The facts of a request; a longer User-Agent is cut, not refused,
    /// since it is not something the person chose.
    pub fn new(client_ip: IpAddr, user_agent: Option<&str>) -> Self {
        Self {
            client_ip,
            user_agent: user_agent.map(|ua| ua.chars().take(MAX_USER_AGENT_CHARS).collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_user_agent_is_cut_on_a_character_boundary() {
        let meta = RequestMeta::new(
            IpAddr::from([127, 0, 0, 1]),
            Some(&"é".repeat(MAX_USER_AGENT_CHARS + 10)),
        );
        assert_eq!(meta.user_agent.map(|ua| ua.chars().count()), Some(MAX_USER_AGENT_CHARS));
        assert_eq!(RequestMeta::new(IpAddr::from([127, 0, 0, 1]), None).user_agent, None);
    }
}
