//! The keys that check signatures, and choosing the one a token was signed with.
//!
//! A [`VerifyKey`] is a public key (from a PEM file or a JWK) or the HS256 secret, with the
//! algorithms it may check: a key never checks an algorithm of another family, so a public key
//! cannot be abused as an HMAC secret. A token's header (`alg`, `kid`) picks the candidates:
//! the keys with its `kid`, else the keys without one that check its `alg`.
//!
//! This file owns keys and signatures; it does not read claims ([`super::claims`]) and does not
//! fetch JWKS documents ([`super::jwks`]).

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::LazyLock;

use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::refusal::Refusal;

/// The algorithms of each key family this server checks.
pub(crate) const HMAC: &[Algorithm] = &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
/// RSA keys: PKCS#1 v1.5 and PSS signatures.
pub(crate) const RSA: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];
/// EC keys of P-256 or P-384 (a PEM file does not say which: a wrong curve fails the check).
pub(crate) const EC: &[Algorithm] = &[Algorithm::ES256, Algorithm::ES384];
/// Ed25519 keys.
pub(crate) const ED: &[Algorithm] = &[Algorithm::EdDSA];

/// Reads one type of PEM public key.
type PemParser = fn(&[u8]) -> jsonwebtoken::errors::Result<DecodingKey>;

/// One key that checks signatures.
#[derive(Clone)]
pub(crate) struct VerifyKey {
    /// The key id a token names it by (JWKS keys); `None` for PEM keys and the secret.
    pub(crate) kid: Option<String>,
    /// What it checks; always within one family.
    pub(crate) algorithms: &'static [Algorithm],
    pub(crate) key: DecodingKey,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

impl VerifyKey {
    /// The HS256 (and HS384/512) secret.
    pub(crate) fn secret(secret: &[u8]) -> VerifyKey {
        VerifyKey {
            kid: None,
            algorithms: HMAC,
            key: DecodingKey::from_secret(secret),
        }
    }

    /// A public key from a PEM file (`BEGIN PUBLIC KEY` or `BEGIN RSA PUBLIC KEY`); the error
    /// says what is wrong with the file, for the start-up error.
    pub(crate) fn from_pem_file(path: &Path) -> Result<VerifyKey, String> {
        let pem = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
        if String::from_utf8_lossy(&pem).contains("PRIVATE KEY") {
            return Err(
                "it holds a private key; give the public key instead (openssl pkey \
                 -in KEY -pubout)"
                    .into(),
            );
        }
        let families: [(PemParser, &'static [Algorithm]); 3] = [
            (DecodingKey::from_rsa_pem, RSA),
            (DecodingKey::from_ec_pem, EC),
            (DecodingKey::from_ed_pem, ED),
        ];
        families
            .into_iter()
            .find_map(|(parse, algorithms)| {
                parse(&pem).ok().map(|key| VerifyKey {
                    kid: None,
                    algorithms,
                    key,
                })
            })
            .ok_or_else(|| {
                "it is not a PEM public key of RSA, EC (P-256, P-384) or Ed25519 \
                 (-----BEGIN PUBLIC KEY-----)"
                    .into()
            })
    }

    fn checks(&self, alg: Algorithm) -> bool {
        self.algorithms.contains(&alg)
    }
}

/// What a token's header says about how to check it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenHeader {
    /// `alg` as written (for messages).
    pub(crate) alg_name: String,
    /// `alg`, if it is one this build knows; no key checks an unknown one.
    pub(crate) alg: Option<Algorithm>,
    pub(crate) kid: Option<String>,
}

/// The header fields read, leniently: others (`typ`, `x5t`, `crit`…) are not looked at.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

/// Reads the header of a three-part token, refusing what is not a signed JWT.
pub(crate) fn read_header(token: &str) -> Result<TokenHeader, Refusal> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refusal::NotJwt);
    };
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .map_err(|_| Refusal::Unreadable("header"))?;
    let raw: RawHeader =
        serde_json::from_slice(&json).map_err(|_| Refusal::Unreadable("header"))?;
    if raw.alg.eq_ignore_ascii_case("none") {
        return Err(Refusal::Unsigned);
    }
    Ok(TokenHeader {
        alg: Algorithm::from_str(&raw.alg).ok(),
        alg_name: raw.alg,
        kid: raw.kid,
    })
}

/// The keys that may have signed a token with `header`, from `sets` in order. `kid_unknown` is
/// true when the token names a key id that no key has (a JWKS refresh may bring it).
pub(crate) struct Candidates<'a> {
    pub(crate) keys: Vec<&'a VerifyKey>,
    pub(crate) kid_unknown: bool,
}

/// Keys with the token's `kid` first; without a match (or a `kid`), the keys that carry no
/// `kid` (PEM keys, the secret, kid-less JWKs). Only keys that check the token's `alg`.
pub(crate) fn candidates<'a>(header: &TokenHeader, sets: &[&'a [VerifyKey]]) -> Candidates<'a> {
    let Some(alg) = header.alg else {
        return Candidates {
            keys: Vec::new(),
            kid_unknown: false,
        };
    };
    let fitting = || {
        sets.iter()
            .flat_map(|set| set.iter())
            .filter(move |key| key.checks(alg))
    };
    if let Some(kid) = &header.kid {
        let named: Vec<_> = fitting()
            .filter(|key| key.kid.as_deref() == Some(kid))
            .collect();
        if !named.is_empty() {
            return Candidates {
                keys: named,
                kid_unknown: false,
            };
        }
    }
    let keys: Vec<_> = fitting().filter(|key| key.kid.is_none()).collect();
    // An HMAC token's kid names nothing we keep: the secret has no id.
    let kid_unknown = header.kid.is_some() && !HMAC.contains(&alg);
    Candidates { keys, kid_unknown }
}

/// No claim is validated by the library: [`super::claims`] checks them, with plain messages
/// and `aud` accepted when no audience is configured.
static SIGNATURE_ONLY: LazyLock<HashMap<Algorithm, Validation>> = LazyLock::new(|| {
    [HMAC, RSA, EC, ED]
        .concat()
        .into_iter()
        .map(|alg| {
            let mut validation = Validation::new(alg);
            validation.required_spec_claims.clear();
            validation.validate_exp = false;
            validation.validate_nbf = false;
            validation.validate_aud = false;
            (alg, validation)
        })
        .collect()
});

/// The token's claims if one of `keys` checks its signature.
pub(crate) fn check_signature(
    token: &str,
    alg: Algorithm,
    keys: &[&VerifyKey],
) -> Result<Map<String, Value>, Refusal> {
    let validation = SIGNATURE_ONLY.get(&alg).ok_or(Refusal::Signature)?;
    for key in keys {
        match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, validation) {
            Ok(data) => return Ok(data.claims),
            Err(e) => match e.kind() {
                ErrorKind::Base64(_) => return Err(Refusal::Unreadable("signature or payload")),
                ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
                    return Err(Refusal::Unreadable("payload"))
                }
                // A key of the right family that does not fit (another curve, a malformed
                // JWK): the next key may.
                _ => continue,
            },
        }
    }
    Err(Refusal::Signature)
}

/// In words, the algorithms `keys` check (for "this server accepts …").
pub(crate) fn accepted_algorithms(sets: &[&[VerifyKey]]) -> String {
    let families = [
        (HMAC, "HS256 with its secret"),
        (RSA, "RS256/PS256 with its RSA keys"),
        (EC, "ES256/ES384 with its EC keys"),
        (ED, "EdDSA with its Ed25519 keys"),
    ];
    let present: Vec<_> = families
        .iter()
        .filter(|(algorithms, _)| {
            sets.iter()
                .flat_map(|set| set.iter())
                .any(|key| key.algorithms.iter().any(|alg| algorithms.contains(alg)))
        })
        .map(|(_, words)| *words)
        .collect();
    format!("it accepts {}", present.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
    }

    #[test]
    fn headers_are_read_leniently_and_unsigned_or_odd_tokens_refused() {
        let token = format!(
            "{}.e30.sig",
            b64(r#"{"alg":"RS256","kid":"k1","typ":"at+jwt"}"#)
        );
        assert_eq!(
            read_header(&token).unwrap(),
            TokenHeader {
                alg_name: "RS256".into(),
                alg: Some(Algorithm::RS256),
                kid: Some("k1".into())
            }
        );
        assert_eq!(read_header("abc"), Err(Refusal::NotJwt));
        assert_eq!(read_header("a.b.c.d"), Err(Refusal::NotJwt));
        assert_eq!(read_header("%%.b.c"), Err(Refusal::Unreadable("header")));
        let none = format!("{}.e30.", b64(r#"{"alg":"none"}"#));
        assert_eq!(read_header(&none), Err(Refusal::Unsigned));
        let odd = format!("{}.e30.x", b64(r#"{"alg":"XS999"}"#));
        assert_eq!(read_header(&odd).unwrap().alg, None);
    }

    #[test]
    fn a_kid_picks_its_key_and_an_unknown_kid_falls_back_to_keys_without_one() {
        let secret = VerifyKey::secret(&[1; 32]);
        let rsa = |kid: Option<&str>| VerifyKey {
            kid: kid.map(str::to_owned),
            algorithms: RSA,
            key: DecodingKey::from_secret(b"stand-in"),
        };
        let jwks = [rsa(Some("a")), rsa(Some("b"))];
        let pem = [rsa(None)];
        let statics = [secret, pem[0].clone()];
        let header = |kid: Option<&str>, alg: Algorithm| TokenHeader {
            alg_name: format!("{alg:?}"),
            alg: Some(alg),
            kid: kid.map(str::to_owned),
        };
        let named = candidates(&header(Some("b"), Algorithm::RS256), &[&statics, &jwks]);
        assert_eq!(named.keys.len(), 1);
        assert_eq!(named.keys[0].kid.as_deref(), Some("b"));
        assert!(!named.kid_unknown);
        let unknown = candidates(&header(Some("c"), Algorithm::RS256), &[&statics, &jwks]);
        assert!(unknown.kid_unknown);
        assert_eq!(unknown.keys.len(), 1, "the PEM key is still tried");
        let hmac = candidates(&header(Some("x"), Algorithm::HS256), &[&statics, &jwks]);
        assert_eq!(hmac.keys.len(), 1);
        assert!(!hmac.kid_unknown);
        let no_ec = candidates(&header(None, Algorithm::ES256), &[&statics, &jwks]);
        assert!(no_ec.keys.is_empty());
    }
}
