//! The client IP behind trusted reverse proxies: `X-Forwarded-For` and
//! RFC 7239 `Forwarded`, read right to left.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use http::header::{HeaderName, FORWARDED};

use super::key::{IpKey, KeyError, KeyExtractor, PeerIp, RequestHead};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// At most this many hops are read from the right of a forwarding header.
const MAX_HOPS: usize = 64;

/// A trusted proxy range in a [`TrustedProxies`] list is not an IP address
/// or a CIDR range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid trusted proxy `{0}`: expected an IP address or a CIDR range such as 10.0.0.0/8")]
pub struct InvalidProxy(String);

/// One CIDR range, stored with its host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => {
                if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                (addr, Some(prefix.parse::<u8>().ok()?))
            }
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return None;
        }
        // An IPv4-mapped range is an IPv4 range: peers are canonicalized.
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix - 96),
                None => (addr, prefix),
            },
            _ => (addr, prefix),
        };
        let network = mask(addr, prefix);
        Some(Cidr { network, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(ip, self.prefix) == self.network
            }
            _ => false,
        }
    }
}

/// `ip` with all but its first `prefix` bits cleared.
fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let m = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & m))
        }
        IpAddr::V6(v6) => {
            let m = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & m))
        }
    }
}

/// The addresses of your own reverse proxies, as IP addresses and CIDR
/// ranges. Empty by default: no forwarding header is trusted unless you
/// list the proxies that write it.
///
/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) match IPv4 ranges.
///
/// ```
/// use tower_auth::rate_limit::TrustedProxies;
///
/// let proxies = TrustedProxies::new(["10.0.0.0/8", "fd00::/8", "127.0.0.1"]).unwrap();
/// assert!(proxies.contains("10.1.2.3".parse().unwrap()));
/// assert!(proxies.contains("::ffff:127.0.0.1".parse().unwrap()));
/// assert!(!proxies.contains("192.0.2.1".parse().unwrap()));
/// assert!(TrustedProxies::new(["10.0.0.0/33"]).is_err());
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    ranges: Arc<[Cidr]>,
}

impl TrustedProxies {
    /// Trusts no proxy.
    pub fn none() -> Self {
        Self::default()
    }

    /// Trusts the listed addresses and ranges (`"10.0.0.0/8"`, `"::1"`).
    ///
    /// # Errors
    ///
    /// [`InvalidProxy`] for an entry that is not an address or a range.
    pub fn new<I, S>(ranges: I) -> Result<Self, InvalidProxy>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let ranges = ranges
            .into_iter()
            .map(|r| Cidr::parse(r.as_ref()).ok_or_else(|| InvalidProxy(r.as_ref().to_owned())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustedProxies {
            ranges: ranges.into(),
        })
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.ranges.iter().any(|r| r.contains(ip))
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

impl fmt::Debug for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.ranges
                    .iter()
                    .map(|r| format!("{}/{}", r.network, r.prefix)),
            )
            .finish()
    }
}

/// Which header your proxies write the client address to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (the de facto standard).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for="[2001:db8::1]:4711"`.
    Forwarded,
}

/// The client IP address of a request that came through your reverse
/// proxies.
///
/// When the connection's peer ([`PeerIp`]) is one of the
/// [`TrustedProxies`], the forwarding header is read **from right to left**
/// (each proxy appends the address of its own peer): trusted proxies are
/// skipped and the first address that is not one is the client. Entries to
/// its left were written by the client and are ignored, so a spoofed
/// `X-Forwarded-For` gets nowhere.
///
/// * peer not trusted (or no proxy trusted, the default): the peer address;
///   the header is ignored;
/// * every hop trusted: the leftmost one. List only your proxies as
///   trusted: a client inside a trusted range (a VPN, a pod network) could
///   otherwise write its own leftmost hop and choose its key;
/// * a hop that is not an IP address (`unknown`, an obfuscated RFC 7239
///   identifier, garbage): the address of the trusted proxy that reported
///   it, so such requests share that proxy's budget (fail closed);
/// * no peer address: `500`, like [`PeerIp`].
///
/// Read only the header your proxies write ([`ForwardedHeader`]): a proxy
/// that writes `X-Forwarded-For` passes a client's `Forwarded` header
/// through untouched. Counted like [`PeerIp`]: IPv6 per `/64` by default.
///
/// ```
/// use tower_auth::rate_limit::{ClientIp, ForwardedHeader, KeyExtractor, TrustedProxies};
///
/// let key = ClientIp::new(TrustedProxies::new(["10.0.0.0/8"]).unwrap());
/// let (mut parts, ()) = http::Request::get("/")
///     .header("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.2")
///     .body(())
///     .unwrap()
///     .into_parts();
/// parts.extensions.insert(std::net::SocketAddr::from(([10, 0, 0, 1], 443)));
/// let client = key.client_ip((&parts).into()).unwrap();
/// assert_eq!(client, "203.0.113.9".parse::<std::net::IpAddr>().unwrap());
/// ```
#[derive(Clone, Debug)]
pub struct ClientIp {
    trusted: TrustedProxies,
    header: ForwardedHeader,
    peer: PeerIp,
}

impl ClientIp {
    /// Reads `X-Forwarded-For` from the `trusted` proxies.
    pub fn new(trusted: TrustedProxies) -> Self {
        ClientIp {
            trusted,
            header: ForwardedHeader::XForwardedFor,
            peer: PeerIp::new(),
        }
    }

    /// Reads `header` instead of `X-Forwarded-For`.
    pub fn header(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }

    /// Finds the peer address, and counts IPv6 prefixes, with `peer`.
    pub fn peer(mut self, peer: PeerIp) -> Self {
        self.peer = peer;
        self
    }

    /// The client address of `request` (not masked to the IPv6 prefix).
    ///
    /// # Errors
    ///
    /// A [`KeyError`] when the request has no peer address.
    pub fn client_ip(&self, request: RequestHead<'_>) -> Result<IpAddr, KeyError> {
        let peer = self.peer.peer(request)?.to_canonical();
        if !self.trusted.contains(peer) {
            return Ok(peer);
        }
        let mut nearest_trusted = peer;
        let mut hops = 0;
        let mut visit = |hop: Option<IpAddr>| -> Option<IpAddr> {
            hops += 1;
            match hop.map(|ip| ip.to_canonical()) {
                Some(ip) if self.trusted.contains(ip) && hops < MAX_HOPS => {
                    nearest_trusted = ip;
                    None
                }
                Some(ip) if !self.trusted.contains(ip) => Some(ip),
                _ => Some(nearest_trusted),
            }
        };
        let found = match self.header {
            ForwardedHeader::XForwardedFor => {
                walk(request, &X_FORWARDED_FOR, b',', parse_xff_hop, &mut visit)
            }
            ForwardedHeader::Forwarded => {
                walk(request, &FORWARDED, b',', parse_forwarded_hop, &mut visit)
            }
        };
        Ok(found.unwrap_or(nearest_trusted))
    }
}

impl KeyExtractor for ClientIp {
    type Key<'a> = IpKey;

    fn extract<'a>(&'a self, request: RequestHead<'a>) -> Result<IpKey, KeyError> {
        self.client_ip(request).map(|ip| self.peer.key(ip))
    }

    #[inline]
    fn network(&self, key: &IpKey) -> Option<IpKey> {
        Some(key.network())
    }
}

/// Calls `visit` on the hops of every `name` header, last line first and
/// each line from right to left, until it returns an address.
fn walk(
    request: RequestHead<'_>,
    name: &HeaderName,
    separator: u8,
    parse: fn(&str) -> Option<IpAddr>,
    visit: &mut dyn FnMut(Option<IpAddr>) -> Option<IpAddr>,
) -> Option<IpAddr> {
    for line in request.headers.get_all(name).iter().rev() {
        // Hop by hop, not the whole line: one byte that is not visible
        // ASCII on the client's side must not hide the hops the proxies
        // wrote to its right.
        for hop in RevSplit::new(line.as_bytes(), separator) {
            let hop = std::str::from_utf8(hop).ok().filter(|h| h.is_ascii());
            if let Some(found) = visit(hop.and_then(parse)) {
                return Some(found);
            }
        }
    }
    None
}

/// Splits `text` on `separator` outside double-quoted strings, from right
/// to left. Works from the right so that a malformed part written by the
/// client (on the left) cannot hide the hops written by the proxies.
struct RevSplit<'a> {
    rest: Option<&'a [u8]>,
    separator: u8,
}

impl<'a> RevSplit<'a> {
    fn new(text: &'a [u8], separator: u8) -> Self {
        RevSplit {
            rest: Some(text),
            separator,
        }
    }
}

impl<'a> Iterator for RevSplit<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let bytes = self.rest?;
        let mut quoted = false;
        let mut i = bytes.len();
        while i > 0 {
            i -= 1;
            match bytes[i] {
                b'"' if !is_escaped(bytes, i) => quoted = !quoted,
                b if b == self.separator && !quoted => {
                    self.rest = Some(&bytes[..i]);
                    return Some(&bytes[i + 1..]);
                }
                _ => {}
            }
        }
        self.rest = None;
        Some(bytes)
    }
}

/// Whether the byte at `i` is preceded by an odd number of backslashes.
fn is_escaped(bytes: &[u8], i: usize) -> bool {
    bytes[..i].iter().rev().take_while(|b| **b == b'\\').count() % 2 == 1
}

/// One `X-Forwarded-For` hop: `192.0.2.1`, `2001:db8::1`, and, as some
/// proxies write them, `192.0.2.1:4711` and `[2001:db8::1]:4711`.
fn parse_xff_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim_matches([' ', '\t']);
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = hop.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    hop.strip_prefix('[')?
        .strip_suffix(']')?
        .parse::<Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

/// The `for` node of one RFC 7239 `forwarded-element`, when it is an IP
/// address: `for=192.0.2.60`, `for="192.0.2.60:4711"`,
/// `for="[2001:db8:cafe::17]:4711"`. `None` for `unknown`, obfuscated
/// identifiers, a missing or repeated `for`, and malformed elements.
fn parse_forwarded_hop(element: &str) -> Option<IpAddr> {
    let mut node = None;
    for pair in RevSplit::new(element.as_bytes(), b';') {
        // `element` is ASCII, split at ASCII bytes: always valid.
        let pair = std::str::from_utf8(pair).ok()?.trim_matches([' ', '\t']);
        if pair.is_empty() {
            continue;
        }
        let (name, value) = pair.split_once('=')?;
        if !name.eq_ignore_ascii_case("for") {
            continue;
        }
        if node.is_some() {
            return None;
        }
        node = Some(unquote(value)?);
    }
    parse_node(&node?)
}

/// An RFC 7230 token or quoted-string, unquoted.
fn unquote(value: &str) -> Option<Cow<'_, str>> {
    let Some(inner) = value.strip_prefix('"') else {
        return (!value.is_empty() && !value.contains(['"', '\\'])).then_some(Cow::Borrowed(value));
    };
    let inner = inner.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' { chars.next()? } else { c });
    }
    Some(Cow::Owned(out))
}

/// An RFC 7239 node (`nodename [ ":" node-port ]`) as an IP address.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        if !after.is_empty() && !is_node_port(after.strip_prefix(':')?) {
            return None;
        }
        return ip.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let (host, port) = match node.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (node, None),
    };
    if port.is_some_and(|p| !is_node_port(p)) {
        return None;
    }
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// `node-port = port / obfport`: 1 to 5 digits, or `_` and obfuscation
/// characters.
fn is_node_port(port: &str) -> bool {
    let digits = (1..=5).contains(&port.len()) && port.bytes().all(|b| b.is_ascii_digit());
    let obfuscated = port.len() > 1
        && port.starts_with('_')
        && port
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    digits || obfuscated
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::request::Parts;
    use http::Request;

    fn request(peer: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = Request::get("/");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let (mut parts, ()) = b.body(()).unwrap().into_parts();
        parts
            .extensions
            .insert(SocketAddr::new(peer.parse().unwrap(), 1234));
        parts
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies() -> TrustedProxies {
        TrustedProxies::new(["10.0.0.0/8", "2001:db8:ffff::/48"]).unwrap()
    }

    #[test]
    fn cidr_parsing() {
        let t = TrustedProxies::new([
            "192.168.0.0/16",
            " 127.0.0.1 ",
            "::1",
            "fd00::/8",
            "::ffff:172.16.0.1",
        ])
        .unwrap();
        assert!(t.contains(ip("192.168.200.1")));
        assert!(!t.contains(ip("192.169.0.1")));
        assert!(t.contains(ip("127.0.0.1")));
        assert!(!t.contains(ip("127.0.0.2")));
        assert!(t.contains(ip("::1")));
        assert!(t.contains(ip("fdab::1")));
        assert!(t.contains(ip("172.16.0.1")));
        assert!(t.contains(ip("::ffff:192.168.1.1")));
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0/8",
            "10.0.0.0/+8",
            "localhost",
            "",
        ] {
            assert_eq!(
                TrustedProxies::new([bad]),
                Err(InvalidProxy(bad.into())),
                "{bad}"
            );
        }
        let all = TrustedProxies::new(["0.0.0.0/0"]).unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        assert!(!all.contains(ip("2001:db8::1")));
        assert!(TrustedProxies::none().is_empty());
    }

    #[test]
    fn untrusted_peer_ignores_spoofed_headers() {
        let key = ClientIp::new(proxies());
        let r = request("203.0.113.7", &[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(key.client_ip((&r).into()).unwrap(), ip("203.0.113.7"));
        // nothing is trusted by default
        let key = ClientIp::new(TrustedProxies::none());
        let r = request("10.0.0.1", &[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(key.client_ip((&r).into()).unwrap(), ip("10.0.0.1"));
    }

    #[test]
    fn trusted_chain_is_read_right_to_left() {
        let key = ClientIp::new(proxies());
        // client spoofed 6.6.6.6; real client 198.51.100.1; two proxies
        let r = request(
            "10.0.0.1",
            &[("x-forwarded-for", "6.6.6.6, 198.51.100.1, 10.0.0.2")],
        );
        assert_eq!(key.client_ip((&r).into()).unwrap(), ip("198.51.100.1"));
        // several header lines: the last line is the nearest
        let r = request(
            "10.0.0.1",
            &[
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-for", "198.51.100.1,10.9.9.9"),
            ],
        );
        assert_eq!(key.client_ip((&r).into()).unwrap(), ip("198.51.100.1"));
        // ports and brackets some proxies add
        let r = request("10.0.0.1", &[("x-forwarded-for", "[2001:db8::5]:80")]);
        assert_eq!(key.client_ip((&r).into()).unwrap(), ip("2001:db8::5"));
        let r = request("10.0.0.1", &[("x-forwarded-for", "198.51.100.1:5000")]);
        assert_eq!(key.client_ip((&r).into()).unwrap(), ip("198.51.100.1"));
    }

    #[test]
    fn all_trusted_no_header_and_garbage() {
        let key = ClientIp::new(proxies());
        let r = request("10.0.0.1", &[("x-forwarded-for", "10.0.0.3, 10.0.0.2")]);
        assert_eq!(key.client_ip((&r).into()).unwrap(), ip("10.0.0.3"));
        let r = request("10.0.0.1", &[]);
        assert_eq!(key.client_ip((&r).into()).unwrap(), ip("10.0.0.1"));
        // garbage reported by proxy 10.0.0.2: the proxy's address
        let r = request(
            "10.0.0.1",
            &[("x-forwarded-for", "1.1.1.1, nonsense, 10.0.0.2")],
        );
        assert_eq!(key.client_ip((&r).into()).unwrap(), ip("10.0.0.2"));
        let r = request("10.0.0.1", &[("x-forwarded-for", "")]);
        assert_eq!(key.client_ip((&r).into()).unwrap(), ip("10.0.0.1"));
        // a non-ASCII hop: the proxy that reported it
        let mut r = request("10.0.0.1", &[]);
        r.headers.insert(
            "x-forwarded-for",
            http::HeaderValue::from_bytes(b"1.1.1.1\xff").unwrap(),
        );
        assert_eq!(key.client_ip((&r).into()).unwrap(), ip("10.0.0.1"));
    }

    #[test]
    fn client_bytes_do_not_hide_the_hops_proxies_wrote() {
        let key = ClientIp::new(proxies());
        for line in [
            &b"\xff, 198.51.100.1"[..],
            b"caf\xc3\xa9, 198.51.100.1, 10.0.0.2",
            b"\x80\x80,198.51.100.1",
        ] {
            let mut r = request("10.0.0.1", &[]);
            r.headers.insert(
                "x-forwarded-for",
                http::HeaderValue::from_bytes(line).unwrap(),
            );
            assert_eq!(key.client_ip((&r).into()).unwrap(), ip("198.51.100.1"));
        }
        let key = key.header(ForwardedHeader::Forwarded);
        let mut r = request("10.0.0.1", &[]);
        r.headers.insert(
            "forwarded",
            http::HeaderValue::from_bytes(b"for=\"\xff\", for=198.51.100.1").unwrap(),
        );
        assert_eq!(key.client_ip((&r).into()).unwrap(), ip("198.51.100.1"));
    }

    #[test]
    fn forwarded_header_parsing() {
        let key = ClientIp::new(proxies()).header(ForwardedHeader::Forwarded);
        let cases = [
            ("for=198.51.100.17", "198.51.100.17"),
            ("For=\"198.51.100.17:4711\";proto=https", "198.51.100.17"),
            ("for=\"[2001:db8:cafe::17]:4711\"", "2001:db8:cafe::17"),
            ("for=\"[2001:db8:cafe::17]\"", "2001:db8:cafe::17"),
            (
                "for=6.6.6.6, for=198.51.100.1;by=10.0.0.2, for=10.0.0.2",
                "198.51.100.1",
            ),
            // the client's malformed element on the left is never reached
            (
                "for=\"6.6.6.6, for=198.51.100.1;proto=http, for=\"[2001:db8:ffff::1]\"",
                "198.51.100.1",
            ),
            (
                "proto=https;for=198.51.100.2;host=example.com",
                "198.51.100.2",
            ),
            ("for=\"198.51.100.3:_abc\"", "198.51.100.3"),
            ("for=\"198\\.51.100.4\"", "198.51.100.4"),
        ];
        for (header, want) in cases {
            let r = request("10.0.0.1", &[("forwarded", header)]);
            assert_eq!(key.client_ip((&r).into()).unwrap(), ip(want), "{header}");
        }
        // unknown / obfuscated / malformed: the reporting proxy
        for header in [
            "for=unknown",
            "for=_hidden",
            "for=198.51.100.1;for=198.51.100.2",
            "by=10.0.0.5",
            "for=\"[2001:db8::1\"",
            "for=\"198.51.100.1:123456\"",
            "for=\"198.51.100.1",
            "garbage",
        ] {
            let r = request("10.0.0.1", &[("forwarded", header)]);
            assert_eq!(
                key.client_ip((&r).into()).unwrap(),
                ip("10.0.0.1"),
                "{header}"
            );
        }
        // X-Forwarded-For is not read when Forwarded is configured
        let r = request("10.0.0.1", &[("x-forwarded-for", "198.51.100.1")]);
        assert_eq!(key.client_ip((&r).into()).unwrap(), ip("10.0.0.1"));
    }

    #[test]
    fn key_is_masked_and_ipv4_mapped_is_canonical() {
        let key = ClientIp::new(proxies());
        let r = request(
            "::ffff:10.0.0.1",
            &[("x-forwarded-for", "2001:db8:1:2:3::9")],
        );
        assert_eq!(key.extract((&r).into()).unwrap().ip(), ip("2001:db8:1:2::"));
        let r = request(
            "::ffff:10.0.0.1",
            &[("x-forwarded-for", "::ffff:198.51.100.9")],
        );
        assert_eq!(key.extract((&r).into()).unwrap().ip(), ip("198.51.100.9"));
    }

    #[test]
    fn long_chains_are_bounded() {
        let key = ClientIp::new(proxies());
        let chain = vec!["10.0.0.9"; 10_000].join(",");
        let r = request("10.0.0.1", &[("x-forwarded-for", &chain)]);
        assert_eq!(key.client_ip((&r).into()).unwrap(), ip("10.0.0.9"));
    }

    #[test]
    fn rev_split_respects_quotes_and_escapes() {
        let parts: Vec<_> = RevSplit::new(br#"a,"b,c",d\,e,"f\",g""#, b',').collect();
        let expected: [&[u8]; 5] = [br#""f\",g""#, b"e", br#"d\"#, br#""b,c""#, b"a"];
        assert_eq!(parts, expected);
    }
}
