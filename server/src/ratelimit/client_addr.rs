//! The client's address behind trusted reverse proxies (`TRUSTED_PROXIES`).
//!
//! A request whose socket peer is one of the trusted proxies is attributed to the right-most
//! address of its `X-Forwarded-For` header(s) that is not itself a trusted proxy: proxies append
//! the address they received the request from, so everything right of that address was written
//! by a proxy we trust, and everything left of it by someone we do not (and is never read). From
//! any other peer the header is ignored: a client cannot choose its own rate-limit key.
//!
//! A header from a trusted proxy that cannot be read (not ASCII, an entry that is not an IP
//! address) counts as no header: the request is attributed to the proxy itself. When every
//! address in the header is a trusted proxy, the left-most one is the client (the request
//! started on a proxy host).
//!
//! Addresses are compared in canonical form, so an IPv4 client seen on an IPv6 socket as
//! `::ffff:a.b.c.d` is `a.b.c.d`, both for matching and as the rate-limit key.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use axum::http::HeaderMap;

/// The header proxies put the client address in.
pub const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// A block of IP addresses: an address and a prefix length (`10.0.0.0/8`, `fd00::/8`); a plain
/// address is a block of one (`/32` or `/128`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    network: IpAddr,
    prefix_len: u8,
}

impl IpNet {
    /// The block of `prefix_len` leading bits of `network`; `None` when the prefix length is
    /// longer than the address or bits beyond it are set (`10.0.0.1/8`).
    pub fn new(network: IpAddr, prefix_len: u8) -> Option<IpNet> {
        let net = IpNet {
            network,
            prefix_len,
        };
        (prefix_len <= max_prefix_len(network) && mask(network, prefix_len) == network)
            .then_some(net)
    }

    /// The block holding exactly `ip`.
    pub fn host(ip: IpAddr) -> IpNet {
        IpNet {
            network: ip,
            prefix_len: max_prefix_len(ip),
        }
    }

    /// Whether `ip` is in the block (an IPv4 block never holds an IPv6 address, except an
    /// IPv4-mapped one, which is compared as the IPv4 address it maps).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        let same_family = matches!(
            (self.network, ip),
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_))
        );
        same_family && mask(ip, self.prefix_len) == self.network
    }
}

fn max_prefix_len(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// `ip` with every bit after the first `prefix_len` cleared.
fn mask(ip: IpAddr, prefix_len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let kept = u32::MAX
                .checked_shl(32 - u32::from(prefix_len.min(32)))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(bits & kept))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let kept = u128::MAX
                .checked_shl(128 - u32::from(prefix_len.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits & kept))
        }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

impl fmt::Debug for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for IpNet {
    type Err = String;

    /// `a.b.c.d`, `a.b.c.d/n` (n ≤ 32), an IPv6 address, or `ipv6/n` (n ≤ 128). The bits after
    /// the prefix must be zero, so that a typo such as `192.168.1.10/2` is refused instead of
    /// trusting a quarter of the Internet.
    fn from_str(s: &str) -> Result<IpNet, String> {
        let s = s.trim();
        let Some((addr, len)) = s.split_once('/') else {
            let ip: IpAddr = s
                .parse()
                .map_err(|_| format!("{s:?} is not an IP address or a CIDR block"))?;
            return Ok(IpNet::host(ip.to_canonical()));
        };
        let ip: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?}: {addr:?} is not an IP address"))?;
        let len: u8 = len
            .trim()
            .parse()
            .ok()
            .filter(|len| *len <= max_prefix_len(ip))
            .ok_or_else(|| {
                format!(
                    "{s:?}: the prefix length must be a number from 0 to {}",
                    max_prefix_len(ip)
                )
            })?;
        IpNet::new(ip, len).ok_or_else(|| {
            format!(
                "{s:?} has bits set after the prefix; the block is {}/{len}",
                mask(ip, len)
            )
        })
    }
}

/// The reverse proxies whose `X-Forwarded-For` is believed (`TRUSTED_PROXIES`); empty by
/// default, which ignores the header from everyone.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Trusts nobody.
    pub fn none() -> TrustedProxies {
        TrustedProxies::default()
    }

    /// Parses a comma-separated list of addresses and CIDR blocks (empty entries are skipped);
    /// the error names the first bad entry.
    pub fn parse(list: &str) -> Result<TrustedProxies, String> {
        let nets = list
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(IpNet::from_str)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustedProxies { nets })
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// The trusted blocks.
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|net| net.contains(ip))
    }

    /// The client address of a request that came from `peer` with `headers` (see the module
    /// documentation).
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        forwarded_client(headers, |ip| self.contains(ip)).unwrap_or(peer)
    }
}

impl fmt::Debug for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.nets).finish()
    }
}

impl FromStr for TrustedProxies {
    type Err = String;

    fn from_str(s: &str) -> Result<TrustedProxies, String> {
        TrustedProxies::parse(s)
    }
}

/// The right-most `X-Forwarded-For` address that `trusted` refuses (the left-most one when it
/// accepts them all); `None` when there is no header or it cannot be read. Several header lines
/// are one list, in order.
fn forwarded_client(headers: &HeaderMap, trusted: impl Fn(IpAddr) -> bool) -> Option<IpAddr> {
    let mut lines = headers.get_all(X_FORWARDED_FOR).iter().rev().peekable();
    lines.peek()?;
    let mut leftmost = None;
    for line in lines {
        let line = line.to_str().ok()?;
        for entry in line.rsplit(',') {
            let ip = parse_forwarded_entry(entry)?;
            if !trusted(ip) {
                return Some(ip);
            }
            leftmost = Some(ip);
        }
    }
    leftmost
}

/// One `X-Forwarded-For` entry: an address, optionally with a port (`a.b.c.d:port`,
/// `[ipv6]:port`, `[ipv6]`), in canonical form.
fn parse_forwarded_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    let is_port = |p: &str| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = entry.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return addr
            .parse::<Ipv6Addr>()
            .ok()
            .map(|ip| IpAddr::V6(ip).to_canonical());
    }
    let (addr, port) = entry.split_once(':')?;
    if !is_port(port) {
        return None;
    }
    addr.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn net(s: &str) -> IpNet {
        s.parse().expect("test block")
    }

    fn proxies(list: &str) -> TrustedProxies {
        TrustedProxies::parse(list).expect("test list")
    }

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(
                X_FORWARDED_FOR,
                HeaderValue::from_str(line).expect("header"),
            );
        }
        headers
    }

    #[test]
    fn ipv4_blocks_hold_the_addresses_under_their_prefix() {
        let ten = net("10.0.0.0/8");
        assert!(ten.contains(ip("10.0.0.1")));
        assert!(ten.contains(ip("10.255.255.255")));
        assert!(!ten.contains(ip("11.0.0.0")));
        assert!(!ten.contains(ip("9.255.255.255")));
        let odd = net("192.168.4.0/22");
        assert!(odd.contains(ip("192.168.7.200")));
        assert!(!odd.contains(ip("192.168.8.1")));
        assert!(net("0.0.0.0/0").contains(ip("203.0.113.9")));
        let one = net("127.0.0.1");
        assert_eq!(one.to_string(), "127.0.0.1/32");
        assert!(one.contains(ip("127.0.0.1")));
        assert!(!one.contains(ip("127.0.0.2")));
    }

    #[test]
    fn ipv6_blocks_hold_the_addresses_under_their_prefix() {
        let doc = net("2001:db8::/32");
        assert!(doc.contains(ip("2001:db8:ffff::1")));
        assert!(!doc.contains(ip("2001:db9::1")));
        let ula = net("fd00::/8");
        assert!(ula.contains(ip("fdff:1::2")));
        assert!(!ula.contains(ip("fe80::1")));
        let odd = net("2001:db8:0:40::/58");
        assert!(odd.contains(ip("2001:db8:0:7f::1")));
        assert!(!odd.contains(ip("2001:db8:0:80::1")));
        assert!(net("::/0").contains(ip("::1")));
        assert_eq!(net("::1").to_string(), "::1/128");
        assert!(net("::1").contains(ip("::1")));
        assert!(!net("::1").contains(ip("::2")));
    }

    #[test]
    fn families_do_not_mix_except_for_ipv4_mapped_addresses() {
        assert!(!net("0.0.0.0/0").contains(ip("2001:db8::1")));
        assert!(!net("::/0").contains(ip("10.0.0.1")));
        assert!(net("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")));
        assert_eq!(net("::ffff:10.1.2.3"), net("10.1.2.3"));
    }

    #[test]
    fn bad_blocks_are_refused_with_the_reason() {
        for (bad, says) in [
            ("10.0.0.0/33", "0 to 32"),
            ("2001:db8::/129", "0 to 128"),
            ("10.0.0.0/", "prefix length"),
            ("10.0.0.0/-1", "prefix length"),
            ("10.0.0.0/8/8", "prefix length"),
            ("10.0.0.1/8", "10.0.0.0/8"),
            ("2001:db8::1/32", "2001:db8::/32"),
            ("10.0.0", "not an IP address"),
            ("localhost", "not an IP address"),
            ("nginx/32", "not an IP address"),
        ] {
            let err = bad.parse::<IpNet>().expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
            assert!(err.contains(bad), "the error names the entry: {err}");
        }
    }

    #[test]
    fn a_list_is_comma_separated_and_skips_empty_entries() {
        let list = proxies(" 10.0.0.0/8, ,127.0.0.1,fd00::/8 ,");
        assert_eq!(format!("{list:?}"), "[10.0.0.0/8, 127.0.0.1/32, fd00::/8]");
        assert!(list.contains(ip("10.9.9.9")));
        assert!(list.contains(ip("fd12::1")));
        assert!(!list.contains(ip("127.0.0.2")));
        assert!(proxies("").is_empty());
        let err = TrustedProxies::parse("10.0.0.0/8, 300.0.0.1").expect_err("bad entry");
        assert!(err.contains("300.0.0.1"), "{err}");
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let trusted = proxies("10.0.0.0/8");
        let peer = ip("203.0.113.7");
        assert_eq!(trusted.client_ip(peer, &headers(&["198.51.100.1"])), peer);
        assert_eq!(
            TrustedProxies::none().client_ip(peer, &headers(&["1.2.3.4"])),
            peer
        );
        assert_eq!(
            TrustedProxies::none().client_ip(ip("10.0.0.1"), &headers(&["1.2.3.4"])),
            ip("10.0.0.1"),
            "without TRUSTED_PROXIES nobody is trusted"
        );
    }

    #[test]
    fn a_trusted_peer_forwards_the_rightmost_untrusted_address() {
        let trusted = proxies("10.0.0.0/8, 127.0.0.1");
        let nginx = ip("127.0.0.1");
        assert_eq!(
            trusted.client_ip(nginx, &headers(&["198.51.100.1"])),
            ip("198.51.100.1")
        );
        // A client-written entry on the left is never read, however it looks.
        assert_eq!(
            trusted.client_ip(nginx, &headers(&["6.6.6.6, 198.51.100.1, 10.1.1.1"])),
            ip("198.51.100.1")
        );
        assert_eq!(
            trusted.client_ip(nginx, &headers(&["not an address, 198.51.100.1"])),
            ip("198.51.100.1")
        );
        // Several header lines are one list, in order.
        assert_eq!(
            trusted.client_ip(nginx, &headers(&["6.6.6.6", "198.51.100.1", "10.1.1.1"])),
            ip("198.51.100.1")
        );
        assert_eq!(
            trusted.client_ip(nginx, &headers(&["2001:db8::5"])),
            ip("2001:db8::5")
        );
    }

    #[test]
    fn forwarded_entries_may_carry_ports_and_mapped_addresses() {
        let trusted = proxies("127.0.0.1");
        let nginx = ip("127.0.0.1");
        for (entry, client) in [
            ("198.51.100.1:4711", "198.51.100.1"),
            ("[2001:db8::5]:443", "2001:db8::5"),
            ("[2001:db8::5]", "2001:db8::5"),
            ("::ffff:198.51.100.1", "198.51.100.1"),
            ("  198.51.100.1  ", "198.51.100.1"),
        ] {
            assert_eq!(
                trusted.client_ip(nginx, &headers(&[entry])),
                ip(client),
                "{entry}"
            );
        }
        // The proxy itself may be seen as an IPv4-mapped IPv6 peer.
        assert_eq!(
            trusted.client_ip(ip("::ffff:127.0.0.1"), &headers(&["198.51.100.1"])),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn a_missing_or_malformed_header_from_a_trusted_peer_means_the_peer() {
        let trusted = proxies("127.0.0.1, 10.0.0.0/8");
        let nginx = ip("127.0.0.1");
        assert_eq!(trusted.client_ip(nginx, &HeaderMap::new()), nginx);
        for bad in [
            "",
            "unknown",
            "198.51.100.1,",
            "198.51.100.1, , 10.0.0.2",
            "198.51.100.1:",
            "198.51.100.1:99999999",
            "[2001:db8::5",
            "[2001:db8::5]x",
            "2001:db8::5:443:x",
            "300.1.1.1",
            "_hidden",
        ] {
            assert_eq!(trusted.client_ip(nginx, &headers(&[bad])), nginx, "{bad:?}");
        }
        let mut not_ascii = HeaderMap::new();
        not_ascii.insert(
            X_FORWARDED_FOR,
            HeaderValue::from_bytes(b"198.51.100.1\xff").expect("opaque header"),
        );
        assert_eq!(trusted.client_ip(nginx, &not_ascii), nginx);
    }

    #[test]
    fn when_every_forwarded_address_is_trusted_the_leftmost_is_the_client() {
        let trusted = proxies("127.0.0.1, 10.0.0.0/8");
        assert_eq!(
            trusted.client_ip(ip("127.0.0.1"), &headers(&["10.0.0.9, 10.0.0.2"])),
            ip("10.0.0.9")
        );
    }
}
