//! The addresses Portal's webhook calls may come from. API Gateway refuses other addresses before
//! the function runs (the REST API's resource policy); the function checks again from the
//! event's `sourceIp`, so a route wired without that policy still answers Portal alone.

use std::net::IpAddr;

use ipnet::IpNet;

/// A list of CIDR blocks (IPv4 or IPv6); a bare address is its own /32 or /128.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceAllowList(Vec<IpNet>);

impl SourceAllowList {
    /// Parses a comma-separated list; an error names the entry at fault (addresses are public).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let net = entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("has `{entry}`, which is not a CIDR block or an address"))?;
            nets.push(net.trunc());
        }
        if nets.is_empty() {
            return Err("must list at least one CIDR block".into());
        }
        Ok(Self(nets))
    }

    /// Whether `source` (the event's `sourceIp`) is in the list; a missing or unreadable address
    /// is not.
    pub fn admits(&self, source: Option<&str>) -> bool {
        source
            .and_then(|s| s.trim().parse::<IpAddr>().ok())
            .is_some_and(|ip| self.0.iter().any(|net| net.contains(&ip)))
    }

    /// How many blocks it lists (logged at cold start).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it lists none (never, once parsed).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portals_addresses_and_nothing_else() {
        let portal =
            SourceAllowList::parse("35.203.150.117/32, 104.155.171.139/32,35.185.20.23").unwrap();
        assert_eq!(portal.len(), 3);
        for ok in ["35.203.150.117", "104.155.171.139", "35.185.20.23"] {
            assert!(portal.admits(Some(ok)), "{ok}");
        }
        for refused in [
            Some("35.203.150.118"),
            Some("127.0.0.1"),
            Some("::1"),
            Some("not an address"),
            Some(""),
            None,
        ] {
            assert!(!portal.admits(refused), "{refused:?}");
        }
        let wide = SourceAllowList::parse("10.0.0.0/8,2001:db8::/32").unwrap();
        assert!(wide.admits(Some("10.200.3.4")) && wide.admits(Some("2001:db8::7")));
        assert!(!wide.admits(Some("11.0.0.1")));
    }

    #[test]
    fn bad_lists_are_refused_by_entry() {
        assert!(SourceAllowList::parse("").is_err());
        assert!(SourceAllowList::parse(" , ").is_err());
        let e = SourceAllowList::parse("35.203.150.117/32,portal.example").unwrap_err();
        assert!(e.contains("portal.example"), "{e}");
        assert!(SourceAllowList::parse("10.0.0.0/33").is_err());
    }
}
