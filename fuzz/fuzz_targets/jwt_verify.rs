//! Arbitrary strings as JWTs, and structured tokens (a header and claims
//! with random `alg` / `kid` / `typ` / `crit`, random JSON, signed by us, by
//! an attacker, with a public key as HMAC secret, or not at all), through a
//! `JwtAuthenticator` holding an HS256, an ES256 and an EdDSA key: both its
//! `verify` and an `AuthLayer` in front of a service.
//!
//! The invariant beyond well-formed refusals: a token whose signature we
//! did not make never authenticates, and one we signed authenticates only
//! when its header and claims are acceptable.
//!
//! Input: one mode byte. Even: the rest (placeholders `{J}`, `{E}`, `{D}`,
//! `{O}` expanded) is the token. Odd: the rest drives a structured token.

#![no_main]

use std::sync::OnceLock;

use arbitrary::{Result, Unstructured};
use http::{header, Request};
use jsonwebtoken::EncodingKey;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};
use tower::ServiceBuilder;
use tower_auth::jwt::JwtAuthenticator;
use tower_auth::AuthLayer;
use tower_auth_fuzz::*;

struct Fixture {
    jwt: JwtAuthenticator<Value>,
    app: App,
    known: Known,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let jwt = jwt_authenticator();
        let app = boxed(
            ServiceBuilder::new()
                .layer(AuthLayer::new(jwt.clone()))
                .service_fn(ok),
        );
        let known = known_for(&[&app]);
        Fixture { jwt, app, known }
    })
}

/// What the fuzzer built, and what we know about it.
struct Built {
    token: String,
    /// Signed by one of our keys, over exactly this header and payload.
    ours: Option<OurKey>,
    header: Option<Value>,
    claims: Option<Value>,
}

const ALGS: &[&str] = &[
    "HS256",
    "ES256",
    "EdDSA",
    "none",
    "None",
    "NONE",
    "nOnE",
    "HS384",
    "HS512",
    "RS256",
    "PS256",
    "ES384",
    "hs256",
    "es256",
    "EDDSA",
    "",
    " HS256",
    "HS256\u{0}",
];

fn pick_str(u: &mut Unstructured<'_>, options: &[&str]) -> Result<Value> {
    let i = usize::from(u.arbitrary::<u8>()?);
    Ok(match options.get(i) {
        Some(s) => Value::from(*s),
        None if i % 4 == 0 => Value::from(i),
        None if i % 4 == 1 => Value::Null,
        None => Value::from(u.arbitrary::<String>()?),
    })
}

fn time_value(u: &mut Unstructured<'_>, now: u64) -> Result<Value> {
    let n = now as i64;
    Ok(match u.arbitrary::<u8>()? % 12 {
        0 => json!(n - 3600),
        1 => json!(n - 31),
        2 => json!(n - 10),
        3 => json!(n + 10),
        4 => json!(n + 3600),
        5 => json!(i64::MAX),
        6 => json!(-1),
        7 => json!((n + 3600) as f64 + 0.5),
        8 => json!("9999999999"),
        9 => json!(u64::MAX),
        10 => json!(1e300),
        _ => json!(u.arbitrary::<i64>()?),
    })
}

fn build(u: &mut Unstructured<'_>) -> Result<Built> {
    let now = now();
    // Header.
    let mut h = Map::new();
    let flags = u.arbitrary::<u8>()?;
    if flags & 1 == 0 {
        h.insert("alg".into(), pick_str(u, ALGS)?);
    }
    if flags & 2 == 0 {
        h.insert(
            "kid".into(),
            pick_str(u, &["hs", "es", "ed", "HS", "", "hs "])?,
        );
    }
    if flags & 4 != 0 {
        h.insert(
            "typ".into(),
            pick_str(u, &["JWT", "at+jwt", "jwt", "refresh"])?,
        );
    }
    if flags & 8 != 0 {
        let crit: Vec<String> = u.arbitrary()?;
        h.insert("crit".into(), json!(crit));
    }
    if flags & 16 != 0 {
        h.insert(
            "jwk".into(),
            json!({ "kty": "oct", "k": b64(b"attacker secret of thirty-two bytes!!") }),
        );
        h.insert("jku".into(), json!("https://evil.example/jwks"));
    }
    let mut header = Value::Object(h).to_string().into_bytes();
    if flags & 32 != 0 {
        // A duplicate member: parsers disagree on which one wins.
        let dup = pick_str(u, ALGS)?;
        let extra = format!("{{\"alg\":{dup},");
        header.splice(0..1, extra.into_bytes());
        if header.ends_with(b",}") {
            header.truncate(header.len() - 2);
            header.push(b'}');
        }
    }
    if flags & 64 != 0 {
        header = u.arbitrary::<Vec<u8>>()?;
    }
    let header_json: Option<Value> = serde_json::from_slice(&header).ok();

    // Claims.
    let mode = u.arbitrary::<u8>()?;
    let payload: Vec<u8> = if mode < 200 {
        let mut c = Map::new();
        let have = u.arbitrary::<u16>()?;
        if have & 1 == 0 {
            c.insert("sub".into(), pick_str(u, &["alice", "", "admin"])?);
        }
        if have & 2 == 0 {
            c.insert("exp".into(), time_value(u, now)?);
        }
        if have & 4 != 0 {
            c.insert("nbf".into(), time_value(u, now)?);
        }
        if have & 8 != 0 {
            c.insert("iat".into(), time_value(u, now)?);
        }
        if have & 16 != 0 {
            c.insert(
                "typ".into(),
                pick_str(u, &["access", "refresh", "Access", ""])?,
            );
        }
        if have & 32 != 0 {
            c.insert("aud".into(), json!(["api", u.arbitrary::<String>()?]));
        }
        if have & 64 != 0 {
            c.insert("iss".into(), pick_str(u, &["https://issuer.example"])?);
        }
        if have & 128 != 0 {
            c.insert("roles".into(), json!(u.arbitrary::<Vec<String>>()?));
        }
        if have & 256 != 0 {
            c.insert("scope".into(), pick_str(u, &["read write", ""])?);
            c.insert("scp".into(), json!(u.arbitrary::<Vec<String>>()?));
        }
        if have & 512 != 0 {
            c.insert("permissions".into(), pick_str(u, &["posts:delete"])?);
        }
        if have & 1024 != 0 {
            c.insert("jti".into(), json!("j"));
        }
        let mut p = Value::Object(c).to_string().into_bytes();
        if have & 2048 != 0 {
            // A duplicate `exp` in front, far in the future.
            p.splice(0..1, b"{\"exp\":99999999999,".iter().copied());
            if p.ends_with(b",}") {
                p.truncate(p.len() - 2);
                p.push(b'}');
            }
        }
        p
    } else {
        u.arbitrary::<Vec<u8>>()?
    };
    let claims_json: Option<Value> = serde_json::from_slice(&payload).ok();

    // Signature.
    let message = format!("{}.{}", b64(&header), b64(&payload));
    let key = OurKey::ALL[usize::from(u.arbitrary::<u8>()? % 3)];
    let (sig, ours) = match u.arbitrary::<u8>()? % 9 {
        0..=2 => {
            let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &key.encoding(), key.alg())
                .expect("signing");
            (sig, Some(key))
        }
        3 => {
            let secret: Vec<u8> = u.arbitrary()?;
            let sig = jsonwebtoken::crypto::sign(
                message.as_bytes(),
                &EncodingKey::from_secret(&secret),
                jsonwebtoken::Algorithm::HS256,
            )
            .expect("signing");
            (sig, (secret == HS_SECRET).then_some(OurKey::Hs))
        }
        4 => {
            // RS/ES → HS confusion: the public key as an HMAC secret.
            let public = if u.arbitrary::<bool>()? {
                EC_PUBLIC
            } else {
                ED_PUBLIC
            };
            let sig = jsonwebtoken::crypto::sign(
                message.as_bytes(),
                &EncodingKey::from_secret(public),
                jsonwebtoken::Algorithm::HS256,
            )
            .expect("signing");
            (sig, None)
        }
        5 => (String::new(), None),
        6 => (b64(&u.arbitrary::<Vec<u8>>()?), None),
        7 => {
            // Our signature with one bit flipped.
            let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &key.encoding(), key.alg())
                .expect("signing");
            let mut raw =
                base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sig)
                    .expect("our base64");
            let at = usize::from(u.arbitrary::<u8>()?) % raw.len();
            raw[at] ^= 1 << (u.arbitrary::<u8>()? % 8);
            (b64(&raw), None)
        }
        _ => {
            // A signature of another token: ours, but not over this message.
            let c = creds();
            let i = usize::from(u.arbitrary::<u8>()? % 3);
            let other = [&c.jwt_hs, &c.jwt_es, &c.jwt_ed][i];
            let sig = other.rsplit('.').next().unwrap_or_default().to_owned();
            let same = other.rsplit_once('.').is_some_and(|(m, _)| m == message);
            (sig, same.then_some(OurKey::ALL[i]))
        }
    };
    Ok(Built {
        token: format!("{message}.{sig}"),
        ours,
        header: header_json,
        claims: claims_json,
    })
}

/// For a token we signed and the verifier accepted: the header and claims
/// must be acceptable under the authenticator's defaults.
fn assert_acceptable(b: &Built, key: OurKey) {
    let now = now() as f64;
    let header = b
        .header
        .as_ref()
        .expect("accepted a header that is not JSON");
    let h = header
        .as_object()
        .expect("accepted a header that is not an object");
    assert_eq!(
        h.get("alg").and_then(Value::as_str),
        Some(key.alg_name()),
        "accepted under another alg than the key's"
    );
    assert!(!h.contains_key("crit"), "accepted a crit header");
    if let Some(kid) = h.get("kid") {
        assert_eq!(
            kid.as_str(),
            Some(key.kid()),
            "accepted with another key's kid"
        );
    }
    let claims = b
        .claims
        .as_ref()
        .expect("accepted claims that are not JSON");
    let c = claims
        .as_object()
        .expect("accepted claims that are not an object");
    let exp = c.get("exp").expect("accepted without exp");
    let exp = exp.as_f64().expect("accepted a non-numeric exp");
    assert!(exp + 30.0 >= now, "accepted an expired token (exp {exp})");
    if let Some(nbf) = c.get("nbf") {
        let nbf = nbf.as_f64().expect("accepted a non-numeric nbf");
        assert!(nbf <= now + 31.0, "accepted before nbf");
    }
    if let Some(iat) = c.get("iat") {
        let iat = iat.as_f64().expect("accepted a non-numeric iat");
        assert!(iat <= now + 31.0, "accepted an iat in the future");
    }
    assert!(
        !c.contains_key("aud"),
        "accepted an audience none was configured for"
    );
    if let Some(typ) = c.get("typ") {
        // Unconfigured, any token type passes (Keycloak's "Bearer", an
        // IdP's "access") except a refresh token, in any casing.
        let typ = typ
            .as_str()
            .expect("accepted a token type that is not a string");
        assert!(
            !typ.eq_ignore_ascii_case("refresh"),
            "accepted a refresh token as an access token"
        );
    }
}

fn run(token: &str, f: &Fixture) -> (bool, bool) {
    let verified = f.jwt.verify(token).is_ok();
    let mut req = Request::new(());
    let bearer = format!("Bearer {token}");
    let Some(v) = value(bearer.as_bytes()) else {
        return (verified, false);
    };
    req.headers_mut().insert(header::AUTHORIZATION, v);
    req.extensions_mut().insert(peer());
    let ans = send(&f.app, req);
    check(&ans, false, &[400, 401], &[token.as_bytes()], &f.known);
    (verified, ans.is_ok())
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    if mode & 1 == 0 {
        let input = expand(rest);
        let Ok(token) = std::str::from_utf8(&input) else {
            // Not text: only the layer can see it.
            let mut req = Request::new(());
            let mut v = b"Bearer ".to_vec();
            v.extend_from_slice(&input);
            if append(req.headers_mut(), "authorization", &v) {
                let ans = send(&f.app, req);
                assert!(!ans.is_ok(), "non-UTF-8 token accepted");
                check(&ans, false, &[400, 401], &[&input], &f.known);
            }
            return;
        };
        let (verified, passed) = run(token, f);
        if verified {
            assert!(
                signed_by_us(token),
                "verify() accepted a token we did not sign"
            );
            assert_ne!(token, creds().jwt_expired, "expired token accepted");
        }
        if passed {
            // `Bearer` may be followed by several spaces.
            let token = token.trim_start_matches(' ');
            assert!(signed_by_us(token), "a token we did not sign authenticated");
            assert_ne!(token, creds().jwt_expired, "expired token accepted");
        }
        if token.len() > 8 * 1024 {
            assert!(!verified && !passed, "token over 8 KiB accepted");
        }
        return;
    }
    let mut u = Unstructured::new(rest);
    let Ok(built) = build(&mut u) else {
        return;
    };
    let (verified, passed) = run(&built.token, f);
    match built.ours {
        None => assert!(
            !verified && !passed,
            "forged token authenticated: {}",
            built.token
        ),
        Some(key) => {
            if verified || passed {
                assert!(signed_by_us(&built.token));
                assert_acceptable(&built, key);
            }
        }
    }
    assert_eq!(
        verified, passed,
        "verify and the layer disagree: {}",
        built.token
    );
});
