//! What a limit counts requests by: [`KeyExtractor`] and its ready
//! implementations.

use std::borrow::Cow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};

use http::header::{HeaderMap, HeaderName};
use http::request::Parts;
use http::{Extensions, Method, Request, Uri, Version};

use crate::identity::Identity;

/// Why a request's key could not be determined. The limit refuses the
/// request with `500` (a misconfiguration), unless the extractor has a
/// fallback ([`KeyExtractor::or`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct KeyError {
    // Boxed: keeps `Result<key, KeyError>` small on the request path.
    message: Box<Cow<'static, str>>,
}

impl KeyError {
    /// An error with a message naming what is missing. It is logged (at
    /// `error` level, with the limit's name) when the layer answers `500`,
    /// never sent to the client; still, never put the request's data in it.
    pub fn new(message: impl Into<Cow<'static, str>>) -> Self {
        KeyError {
            message: Box::new(message.into()),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// A borrowed view of a request's head: what [`KeyExtractor`]s read. It
/// borrows from a [`Request`] or from request [`Parts`] without copying
/// them.
#[derive(Clone, Copy, Debug)]
pub struct RequestHead<'a> {
    /// The method.
    pub method: &'a Method,
    /// The URI.
    pub uri: &'a Uri,
    /// The HTTP version.
    pub version: Version,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The extensions: peer address, [`Identity`], ...
    pub extensions: &'a Extensions,
}

impl<'a, B> From<&'a Request<B>> for RequestHead<'a> {
    #[inline]
    fn from(request: &'a Request<B>) -> Self {
        RequestHead {
            method: request.method(),
            uri: request.uri(),
            version: request.version(),
            headers: request.headers(),
            extensions: request.extensions(),
        }
    }
}

impl<'a> From<&'a Parts> for RequestHead<'a> {
    #[inline]
    fn from(parts: &'a Parts) -> Self {
        RequestHead {
            method: &parts.method,
            uri: &parts.uri,
            version: parts.version,
            headers: &parts.headers,
            extensions: &parts.extensions,
        }
    }
}

/// Finds the key a request is counted under: the client IP, the user, the
/// API key, the route...
///
/// The key is hashed with the limiter's random keys; only that digest is
/// stored. Compose extractors with [`or`](KeyExtractor::or)
/// (fallback) and tuples (`(Route::new(), PeerIp::new())`: per route and
/// client), or write one with [`key_fn`].
pub trait KeyExtractor: Send + Sync + 'static {
    /// The key, usually borrowed from the request.
    type Key<'a>: Hash
    where
        Self: 'a;

    /// The key of `request`.
    ///
    /// # Errors
    ///
    /// A [`KeyError`] when the request has no key of this kind.
    fn extract<'a>(&'a self, request: RequestHead<'a>) -> Result<Self::Key<'a>, KeyError>;

    /// The network `key` belongs to, if any: keys of one network share a
    /// cap of tracked keys and, past it, their own overflow budget (see
    /// [`LimiterBuilder::max_keys_per_network`]), so that one network
    /// cannot crowd out the others. [`PeerIp`] and
    /// [`ClientIp`](super::ClientIp) give the IPv6 `/48` or IPv4 `/24` of
    /// the address ([`IpKey::network`]); [`or`](KeyExtractor::or) and
    /// tuples give the network of the part that has one. `None` (the
    /// default) for keys that are not addresses.
    ///
    /// [`LimiterBuilder::max_keys_per_network`]: super::LimiterBuilder::max_keys_per_network
    fn network<'a>(&'a self, key: &Self::Key<'a>) -> Option<IpKey> {
        let _ = key;
        None
    }

    /// Uses `fallback` for requests without a key of this kind, e.g.
    /// `Subject.or(PeerIp::new())` limits anonymous requests per IP.
    fn or<B: KeyExtractor>(self, fallback: B) -> Or<Self, B>
    where
        Self: Sized,
    {
        Or {
            first: self,
            fallback,
        }
    }
}

/// See [`KeyExtractor::or`].
#[derive(Clone, Debug)]
pub struct Or<A, B> {
    first: A,
    fallback: B,
}

/// The key of [`Or`]: which extractor found it is part of the key.
#[derive(Debug, Hash)]
pub enum OrKey<A, B> {
    /// Found by the first extractor.
    First(A),
    /// Found by the fallback.
    Fallback(B),
}

impl<A: KeyExtractor, B: KeyExtractor> KeyExtractor for Or<A, B> {
    type Key<'a> = OrKey<A::Key<'a>, B::Key<'a>>;

    fn extract<'a>(&'a self, request: RequestHead<'a>) -> Result<Self::Key<'a>, KeyError> {
        match self.first.extract(request) {
            Ok(key) => Ok(OrKey::First(key)),
            Err(_) => self.fallback.extract(request).map(OrKey::Fallback),
        }
    }

    fn network<'a>(&'a self, key: &Self::Key<'a>) -> Option<IpKey> {
        match key {
            OrKey::First(key) => self.first.network(key),
            OrKey::Fallback(key) => self.fallback.network(key),
        }
    }
}

macro_rules! tuple_extractor {
    ($($name:ident $key:ident),+) => {
        impl<$($name: KeyExtractor),+> KeyExtractor for ($($name,)+) {
            type Key<'a> = ($($name::Key<'a>,)+);

            #[allow(non_snake_case)]
            fn extract<'a>(&'a self, request: RequestHead<'a>) -> Result<Self::Key<'a>, KeyError> {
                let ($($name,)+) = self;
                Ok(($($name.extract(request)?,)+))
            }

            /// The network of the first part that has one.
            #[allow(non_snake_case)]
            fn network<'a>(&'a self, key: &Self::Key<'a>) -> Option<IpKey> {
                let ($($name,)+) = self;
                let ($($key,)+) = key;
                None$(.or_else(|| $name.network($key)))+
            }
        }
    };
}

tuple_extractor!(A a, B b);
tuple_extractor!(A a, B b, C c);

/// A [`KeyExtractor`] from a closure; see [`key_fn`].
#[derive(Clone)]
pub struct KeyFn<F>(F);

/// A [`KeyExtractor`] from a closure returning the key, or `None` when the
/// request has none (the request is then refused with `500` unless you add
/// a fallback with [`or`](KeyExtractor::or)).
///
/// ```
/// use tower_auth::rate_limit::{key_fn, KeyExtractor, PeerIp, RequestHead};
///
/// // Per tenant, from a header; per IP for requests without one.
/// let key = key_fn(|req: RequestHead<'_>| {
///     req.headers.get("x-tenant").map(|v| v.as_bytes().to_vec())
/// })
/// .or(PeerIp::new());
/// # let _ = key;
/// ```
pub fn key_fn<F, K>(f: F) -> KeyFn<F>
where
    F: Fn(RequestHead<'_>) -> Option<K> + Send + Sync + 'static,
    K: Hash,
{
    KeyFn(f)
}

impl<F, K> KeyExtractor for KeyFn<F>
where
    F: Fn(RequestHead<'_>) -> Option<K> + Send + Sync + 'static,
    K: Hash,
{
    type Key<'a> = K;

    fn extract<'a>(&'a self, request: RequestHead<'a>) -> Result<K, KeyError> {
        (self.0)(request).ok_or_else(|| KeyError::new("the rate limit key function found no key"))
    }
}

impl<F> fmt::Debug for KeyFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyFn")
    }
}

/// One shared key for every request: a global limit, or the last fallback
/// of an [`or`](KeyExtractor::or) chain.
#[derive(Clone, Copy, Debug, Default)]
pub struct Global;

impl KeyExtractor for Global {
    type Key<'a> = ();

    fn extract<'a>(&'a self, _: RequestHead<'a>) -> Result<(), KeyError> {
        Ok(())
    }
}

const NO_PEER: &str = "no peer address in the request extensions: serve axum with \
     `into_make_service_with_connect_info::<SocketAddr>()`, or insert the connection's \
     `SocketAddr` into each request's extensions";

/// The IP address of the connection's peer (the TCP client), from the
/// request extensions:
///
/// * a [`SocketAddr`]: insert the connection's address in each request's
///   extensions yourself with plain hyper (`req.extensions_mut().insert(addr)`
///   in the per-connection `service_fn`);
/// * axum's `ConnectInfo<SocketAddr>` (feature `axum`): serve with
///   `into_make_service_with_connect_info::<SocketAddr>()`;
/// * an [`IpAddr`], if that is what you insert;
/// * anything else with [`PeerIp::from_fn`], e.g. tonic's connect info.
///
/// A request without a peer address is refused with `500`: the server is
/// misconfigured, and the limit must not be silently skipped.
///
/// IPv6 clients usually own a whole `/64`, so by default IPv6 addresses are
/// counted per `/64` prefix ([`ipv6_prefix`](PeerIp::ipv6_prefix));
/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) count as their IPv4
/// address.
///
/// Behind a reverse proxy every request has the proxy's address: use
/// [`ClientIp`](super::ClientIp) with the proxy's address as trusted.
#[derive(Clone, Copy)]
pub struct PeerIp {
    ipv6_prefix: u8,
    lookup: Option<fn(&Extensions) -> Option<IpAddr>>,
}

impl PeerIp {
    /// Reads the peer address from the extensions (see above), counting IPv6
    /// addresses per `/64`.
    pub fn new() -> Self {
        PeerIp {
            ipv6_prefix: 64,
            lookup: None,
        }
    }

    /// Reads the peer address with `lookup`, e.g. for tonic:
    ///
    /// ```
    /// use tower_auth::rate_limit::PeerIp;
    ///
    /// let peer = PeerIp::from_fn(|ext| {
    ///     ext.get::<tonic::transport::server::TcpConnectInfo>()?
    ///         .remote_addr()
    ///         .map(|addr| addr.ip())
    /// });
    /// # let _ = peer;
    /// ```
    pub fn from_fn(lookup: fn(&Extensions) -> Option<IpAddr>) -> Self {
        PeerIp {
            ipv6_prefix: 64,
            lookup: Some(lookup),
        }
    }

    /// Counts IPv6 addresses per prefix of `bits` bits (default 64; 128 for
    /// one key per address). Values above 128 mean 128.
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.ipv6_prefix = bits.min(128);
        self
    }

    /// The peer address of `request`, as found.
    #[inline]
    pub(crate) fn peer(&self, request: RequestHead<'_>) -> Result<IpAddr, KeyError> {
        let ext = request.extensions;
        let found = match self.lookup {
            Some(lookup) => lookup(ext),
            None => default_lookup(ext),
        };
        match found {
            Some(ip) => Ok(ip),
            None => Err(no_peer()),
        }
    }

    /// The key of `ip`.
    #[inline]
    pub(crate) fn key(&self, ip: IpAddr) -> IpKey {
        IpKey::masked(ip, self.ipv6_prefix)
    }
}

#[cold]
fn no_peer() -> KeyError {
    KeyError::new(NO_PEER)
}

#[inline]
fn default_lookup(ext: &Extensions) -> Option<IpAddr> {
    // axum's first: an axum server has it on every request (one lookup).
    #[cfg(feature = "axum")]
    if let Some(info) = ext.get::<axum::extract::ConnectInfo<SocketAddr>>() {
        return Some(info.0.ip());
    }
    if let Some(addr) = ext.get::<SocketAddr>() {
        return Some(addr.ip());
    }
    ext.get::<IpAddr>().copied()
}

/// The key of [`PeerIp`] and [`ClientIp`](super::ClientIp): an IP address,
/// IPv4-mapped IPv6 as IPv4, IPv6 masked to the configured prefix.
///
/// It is kept and hashed as one integer (32 bits for IPv4, 128 for IPv6),
/// several times cheaper than hashing an [`IpAddr`]. Check a
/// [`Limiter`](super::Limiter) with `&IpKey::from(ip)` to share a budget
/// with a layer keyed by IP (with IPv6 `/128`, or a masked address).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct IpKey(Bits);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Bits {
    V4(u32),
    V6(u128),
}

impl IpKey {
    /// The address.
    pub fn ip(&self) -> IpAddr {
        match self.0 {
            Bits::V4(v4) => IpAddr::V4(v4.into()),
            Bits::V6(v6) => IpAddr::V6(v6.into()),
        }
    }

    /// The network of the address, for the per-network caps of a
    /// [`Limiter`](super::Limiter) (see
    /// [`max_keys_per_network`](super::LimiterBuilder::max_keys_per_network)):
    /// the IPv6 `/48` (the usual allocation of one site), the IPv4 `/24`.
    /// A key masked to a shorter prefix is its own network.
    pub fn network(&self) -> IpKey {
        match self.0 {
            Bits::V4(v4) => IpKey(Bits::V4(v4 & !0xff)),
            Bits::V6(v6) => IpKey(Bits::V6(v6 & !(u128::MAX >> 48))),
        }
    }

    /// `ip`, canonical, with IPv6 addresses masked to `ipv6_prefix` bits.
    #[inline]
    fn masked(ip: IpAddr, ipv6_prefix: u8) -> Self {
        match ip {
            IpAddr::V4(v4) => IpKey(Bits::V4(v4.to_bits())),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpKey(Bits::V4(v4.to_bits())),
                None => {
                    let mask = u128::MAX
                        .checked_shl(128 - u32::from(ipv6_prefix))
                        .unwrap_or(0);
                    IpKey(Bits::V6(v6.to_bits() & mask))
                }
            },
        }
    }
}

impl From<IpAddr> for IpKey {
    /// The key of `ip` itself (IPv4-mapped IPv6 as IPv4, IPv6 not masked).
    fn from(ip: IpAddr) -> Self {
        IpKey::masked(ip, 128)
    }
}

impl Hash for IpKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Different lengths: an IPv4 key never hashes like an IPv6 one.
        match self.0 {
            Bits::V4(v4) => state.write_u32(v4),
            Bits::V6(v6) => state.write_u128(v6),
        }
    }
}

impl Default for PeerIp {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for PeerIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerIp")
            .field("ipv6_prefix", &self.ipv6_prefix)
            .field("custom_lookup", &self.lookup.is_some())
            .finish()
    }
}

impl KeyExtractor for PeerIp {
    type Key<'a> = IpKey;

    #[inline]
    fn extract<'a>(&'a self, request: RequestHead<'a>) -> Result<IpKey, KeyError> {
        self.peer(request).map(|ip| self.key(ip))
    }

    #[inline]
    fn network(&self, key: &IpKey) -> Option<IpKey> {
        Some(key.network())
    }
}

/// The subject of the request's [`Identity`]: a per-user limit. Put the
/// limit after the [`AuthLayer`](crate::AuthLayer) (inside it), so the
/// identity is there.
///
/// Requests without an identity (anonymous requests through an optional
/// `AuthLayer`, or a limit placed before it) are refused with `500` unless
/// you give a fallback: `Subject.or(PeerIp::new())`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Subject;

impl KeyExtractor for Subject {
    type Key<'a> = &'a str;

    #[inline]
    fn extract<'a>(&'a self, request: RequestHead<'a>) -> Result<&'a str, KeyError> {
        request
            .extensions
            .get::<Identity>()
            .map(Identity::subject)
            .ok_or_else(|| {
                KeyError::new(
                    "no authenticated identity in the request: put the rate limit after an \
                     AuthLayer, or add a fallback key",
                )
            })
    }
}

/// The value of a request header, e.g. the API key: a per-key limit that
/// runs before authentication. Only the limiter's keyed hash of the value is
/// kept, never the value, and it is never logged.
///
/// The value is taken without surrounding whitespace, as authenticators
/// read it. Note that a client can send a new made-up key with every
/// request and get a fresh budget each time (the store's cap bounds the
/// memory this costs), and that a key sent another way (e.g. in a query
/// parameter the [`ApiKeyAuthenticator`](crate::api_key) accepts) has no
/// header: pair this limit with a per-IP one, or better, key by
/// [`Subject`] after authentication.
#[derive(Clone, Debug)]
pub struct Header {
    name: HeaderName,
}

impl Header {
    /// Counts requests by the value of header `name`.
    pub fn new(name: HeaderName) -> Self {
        Header { name }
    }

    /// Counts requests by their `x-api-key` header (the
    /// [`api_key`](crate::api_key) module's default).
    pub fn api_key() -> Self {
        Self::new(HeaderName::from_static("x-api-key"))
    }
}

/// The key of [`Header`]: every value of the header, in order. Its `Debug`
/// output names the header only, never the values.
pub struct HeaderValues<'a> {
    headers: &'a HeaderMap,
    name: &'a HeaderName,
}

impl fmt::Debug for HeaderValues<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeaderValues")
            .field("name", self.name)
            .finish_non_exhaustive()
    }
}

impl Hash for HeaderValues<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Without the whitespace around the value, as the authenticators
        // read it: HTTP/1 parsers strip it but HTTP/2 passes it through, so
        // `"KEY "` and `" KEY"` would otherwise each get a fresh budget.
        for value in self.headers.get_all(self.name) {
            value.as_bytes().trim_ascii().hash(state);
        }
    }
}

impl KeyExtractor for Header {
    type Key<'a> = HeaderValues<'a>;

    fn extract<'a>(&'a self, request: RequestHead<'a>) -> Result<HeaderValues<'a>, KeyError> {
        if !request.headers.contains_key(&self.name) {
            return Err(KeyError::new(format!("no {} header", self.name)));
        }
        Ok(HeaderValues {
            headers: request.headers,
            name: &self.name,
        })
    }
}

/// The method and route of the request: axum's `MatchedPath` (the route
/// template, such as `/users/{id}`) when the `axum` feature is on and the
/// limit runs inside the router, the URI path otherwise.
///
/// A URI path is chosen by the client, which can make up new ones to get
/// fresh budgets; prefer running route limits inside the router, or pair
/// them with the client: `(Route, PeerIp::new())`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Route;

impl KeyExtractor for Route {
    type Key<'a> = (&'a Method, &'a str);

    fn extract<'a>(&'a self, request: RequestHead<'a>) -> Result<Self::Key<'a>, KeyError> {
        #[cfg(feature = "axum")]
        if let Some(path) = request.extensions.get::<axum::extract::MatchedPath>() {
            return Ok((request.method, path.as_str()));
        }
        Ok((request.method, request.uri.path()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scheme;
    use http::Request;

    fn parts(build: impl FnOnce(&mut Parts)) -> Parts {
        let (mut parts, ()) = Request::get("/a/b").body(()).unwrap().into_parts();
        build(&mut parts);
        parts
    }

    #[test]
    fn peer_ip_from_socket_addr_and_ipv6_prefix() {
        let p = parts(|p| {
            p.extensions
                .insert(SocketAddr::from(([192, 0, 2, 1], 4000)));
        });
        assert_eq!(
            PeerIp::new().extract(RequestHead::from(&p)).unwrap().ip(),
            IpAddr::from([192, 0, 2, 1])
        );

        let v6: SocketAddr = "[2001:db8:1:2:3:4:5:6]:443".parse().unwrap();
        let p = parts(|p| {
            p.extensions.insert(v6);
        });
        assert_eq!(
            PeerIp::new().extract(RequestHead::from(&p)).unwrap().ip(),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            PeerIp::new()
                .ipv6_prefix(128)
                .extract(RequestHead::from(&p))
                .unwrap()
                .ip(),
            v6.ip()
        );
        assert_eq!(
            PeerIp::new()
                .ipv6_prefix(0)
                .extract(RequestHead::from(&p))
                .unwrap()
                .ip(),
            "::".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn ipv4_mapped_counts_as_ipv4() {
        let p = parts(|p| {
            p.extensions
                .insert("[::ffff:192.0.2.7]:1".parse::<SocketAddr>().unwrap());
        });
        assert_eq!(
            PeerIp::new().extract(RequestHead::from(&p)).unwrap().ip(),
            IpAddr::from([192, 0, 2, 7])
        );
    }

    #[test]
    fn missing_peer_is_an_error_naming_the_fix() {
        let err = PeerIp::new()
            .extract(RequestHead::from(&parts(|_| {})))
            .unwrap_err();
        assert!(err
            .message()
            .contains("into_make_service_with_connect_info"));
    }

    #[cfg(feature = "axum")]
    #[test]
    fn peer_ip_from_axum_connect_info() {
        let p = parts(|p| {
            p.extensions
                .insert(axum::extract::ConnectInfo(SocketAddr::from((
                    [10, 0, 0, 1],
                    1,
                ))));
        });
        assert_eq!(
            PeerIp::new().extract(RequestHead::from(&p)).unwrap().ip(),
            IpAddr::from([10, 0, 0, 1])
        );
    }

    #[test]
    fn peer_ip_custom_lookup() {
        #[derive(Clone)]
        struct Conn(IpAddr);
        let p = parts(|p| {
            p.extensions.insert(Conn(IpAddr::from([1, 2, 3, 4])));
        });
        let key = PeerIp::from_fn(|ext| ext.get::<Conn>().map(|c| c.0));
        assert_eq!(
            key.extract(RequestHead::from(&p)).unwrap(),
            IpKey::from(IpAddr::from([1, 2, 3, 4]))
        );
    }

    #[test]
    fn ip_keys_of_both_families_hash_apart() {
        use std::hash::BuildHasher;
        let rs = std::collections::hash_map::RandomState::new();
        let v4 = IpKey::from(IpAddr::from([0, 0, 0, 1]));
        let v6 = IpKey::from("::1".parse::<IpAddr>().unwrap());
        assert_ne!(rs.hash_one(v4), rs.hash_one(v6));
        let mapped = IpKey::from("::ffff:0.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(rs.hash_one(v4), rs.hash_one(mapped));
        assert_eq!(mapped.ip(), IpAddr::from([0, 0, 0, 1]));
    }

    #[test]
    fn subject_and_fallback() {
        let with_id = parts(|p| {
            p.extensions.insert(Identity::new("u1", Scheme::Bearer));
            p.extensions.insert(SocketAddr::from(([1, 1, 1, 1], 1)));
        });
        let anonymous = parts(|p| {
            p.extensions.insert(SocketAddr::from(([1, 1, 1, 1], 1)));
        });
        assert_eq!(Subject.extract(RequestHead::from(&with_id)).unwrap(), "u1");
        assert!(Subject.extract(RequestHead::from(&anonymous)).is_err());
        let key = Subject.or(PeerIp::new());
        assert!(matches!(
            key.extract(RequestHead::from(&with_id)),
            Ok(OrKey::First("u1"))
        ));
        assert!(matches!(
            key.extract(RequestHead::from(&anonymous)),
            Ok(OrKey::Fallback(_))
        ));
        assert!(Subject
            .or(Subject)
            .extract(RequestHead::from(&anonymous))
            .is_err());
    }

    #[test]
    fn header_route_global_tuple_and_fn() {
        let hash = |k: &dyn Fn(&mut std::collections::hash_map::DefaultHasher)| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            k(&mut h);
            h.finish()
        };
        let a = parts(|p| {
            p.headers.insert("x-api-key", "k1".parse().unwrap());
        });
        let b = parts(|p| {
            p.headers.insert("x-api-key", "k2".parse().unwrap());
        });
        let key = Header::api_key();
        let ha = hash(&|h| key.extract(RequestHead::from(&a)).unwrap().hash(h));
        let hb = hash(&|h| key.extract(RequestHead::from(&b)).unwrap().hash(h));
        assert_ne!(ha, hb);
        // Whitespace around the value (kept by HTTP/2) makes no new key.
        for padded in ["k1 ", " k1", "\tk1\t", "  k1  "] {
            let p = parts(|p| {
                p.headers
                    .insert("x-api-key", http::HeaderValue::from_static(padded));
            });
            let hp = hash(&|h| key.extract(RequestHead::from(&p)).unwrap().hash(h));
            assert_eq!(hp, ha, "{padded:?}");
        }
        assert_eq!(
            key.extract(RequestHead::from(&parts(|_| {})))
                .unwrap_err()
                .message(),
            "no x-api-key header"
        );

        assert_eq!(
            Route.extract(RequestHead::from(&a)).unwrap(),
            (&Method::GET, "/a/b")
        );
        assert!(Global.extract(RequestHead::from(&a)).is_ok());
        let pair = (Route, Header::api_key());
        assert!(pair.extract(RequestHead::from(&a)).is_ok());
        assert!(pair.extract(RequestHead::from(&parts(|_| {}))).is_err());

        let f =
            key_fn(|p: RequestHead<'_>| p.headers.get("x-tenant").map(|v| v.as_bytes().to_vec()));
        assert!(f.extract(RequestHead::from(&a)).is_err());
    }

    #[cfg(feature = "axum")]
    #[test]
    fn route_prefers_axum_matched_path() {
        use axum::routing::get;
        use tower::ServiceExt;
        // MatchedPath can only be built by the router: capture it.
        let router = axum::Router::new().route(
            "/users/{id}",
            get(|req: Request<axum::body::Body>| async move {
                let (parts, _) = req.into_parts();
                let (m, p) = Route.extract(RequestHead::from(&parts)).unwrap();
                format!("{m} {p}")
            }),
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let body = rt.block_on(async {
            let res = router
                .oneshot(
                    Request::get("/users/7")
                        .body(axum::body::Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            http_body_util::BodyExt::collect(res.into_body())
                .await
                .unwrap()
                .to_bytes()
        });
        assert_eq!(body, "GET /users/{id}");
    }

    #[test]
    fn the_network_of_an_ip_key_is_its_48_or_24() {
        let peer = PeerIp::new();
        let key = |ip: &str| peer.key(ip.parse().unwrap());
        let net = |ip: &str| peer.network(&key(ip)).unwrap().ip().to_string();
        assert_eq!(net("2001:db8:1:2:3:4:5:6"), "2001:db8:1::");
        assert_eq!(net("192.0.2.77"), "192.0.2.0");
        assert_eq!(net("::ffff:192.0.2.77"), "192.0.2.0");
        assert_eq!(
            key("2001:db8:1:2:3:4:5:6").network(),
            key("2001:db8:1:ffff::").network()
        );
        assert_ne!(key("2001:db8:1::").network(), key("2001:db8:2::").network());
        // Keys that are not addresses have no network; `or` and tuples
        // take the network of the part that has one.
        let head = Request::get("/").body(()).unwrap();
        let head = RequestHead::from(&head);
        assert_eq!(Global.network(&Global.extract(head).unwrap()), None);
        let both = (Global, peer);
        assert_eq!(
            both.network(&((), key("192.0.2.1"))),
            Some(key("192.0.2.0"))
        );
        let either = Subject.or(peer);
        let fallback = OrKey::Fallback(key("192.0.2.1"));
        assert_eq!(either.network(&fallback), Some(key("192.0.2.0")));
    }
}
