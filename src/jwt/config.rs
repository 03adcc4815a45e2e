//! Configuration mistakes found at startup: [`ConfigError`].

use jsonwebtoken::Algorithm;

use super::jws::JwtError;

/// A JWT configuration that would refuse every token (or, for a
/// [`TokenIssuer`](super::TokenIssuer), issue tokens nobody accepts),
/// reported by [`JwtAuthenticator::build`](super::JwtAuthenticator::build),
/// [`TokenIssuer::build`](super::TokenIssuer::build) and their `validate`
/// methods. Call one of them at startup: the constructors do not, so that
/// builder chains stay infallible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The key set holds no key.
    #[error("the JWT key set is empty: every token would be refused")]
    EmptyKeySet,
    /// No algorithm is allowed.
    #[error("no JWT algorithm is allowed: every token would be refused")]
    NoAlgorithms,
    /// An allowed algorithm that no key of the set can verify.
    #[error("JWT algorithm {0:?} is allowed but no key can verify it")]
    AlgorithmWithoutKey(Algorithm),
    /// A key without a `kid` in a set of several keys: key selection never
    /// picks it (a token without a `kid` needs a set of one key).
    #[error("a JWT key without a kid in a set of {0} keys can never be selected")]
    UnreachableKey(usize),
    /// The issuer's signing key cannot sign with its algorithm (e.g. a
    /// P-384 key for ES256, or key material that does not parse).
    #[error("the token issuer's key cannot sign {alg:?}: {reason}")]
    CannotSign {
        /// The issuer's algorithm.
        alg: Algorithm,
        /// Why, as reported by the crypto library.
        reason: String,
    },
    /// The issuer's key set refuses the issuer's own tokens (a public key
    /// that does not match the signing key, a `kid` the set does not hold,
    /// a key bound to another algorithm...).
    #[error("the token issuer's key set refuses its own tokens: {0}")]
    OwnTokensRefused(JwtError),
    /// Keys come from a [`KeySource`](super::KeySource) such as a remote
    /// JWKS, yet neither [`issuers`](super::JwtAuthenticator::issuers) nor
    /// [`any_issuer`](super::JwtAuthenticator::any_issuer) was configured:
    /// a provider's key set (e.g. a multi-tenant one) must not accept any
    /// issuer silently.
    #[error("keys come from a key source: configure `issuers(...)` or an explicit `any_issuer()`")]
    IssuerRequired,
    /// [`from_issuers`](super::JwtAuthenticator::from_issuers) with no
    /// issuer.
    #[error("no JWT issuer is configured: every token would be refused")]
    NoIssuers,
    /// More issuers than [`MAX_ISSUERS`](super::MAX_ISSUERS).
    #[error("{0} JWT issuers are configured, more than the limit")]
    TooManyIssuers(usize),
    /// An issuer configured twice, or an empty issuer.
    #[error("JWT issuer {0:?} is empty or configured twice")]
    InvalidIssuer(String),
    /// An issuer none of whose algorithms is allowed.
    #[error("no allowed JWT algorithm verifies the keys of issuer {0:?}")]
    IssuerWithoutAlgorithms(String),
    /// A [`ClaimMapping`](super::ClaimMapping) pointer that is not an RFC
    /// 6901 JSON pointer, is too deep, or is one too many.
    #[error("claim mapping pointer {0:?} is invalid, too deep or one too many")]
    ClaimPointer(String),
    /// The [access-token profile](super::JwtAuthenticator::access_token_profile)
    /// (RFC 9068) without the audience or issuer check it requires.
    #[error("the RFC 9068 access-token profile requires {0}")]
    AccessTokenProfile(&'static str),
}
