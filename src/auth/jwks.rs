//! The JWKS document of an identity provider (`auth.jwks`: a file or an `http(s)://` URL):
//! fetched at start, cached, fetched again every `auth.jwksRefreshMs`, and when a token names a
//! key id the cache lacks, at most once per `auth.jwksMinRefreshMs` (so that random key ids
//! cannot turn every request into a fetch).
//!
//! A JWKS that cannot be fetched or has no usable key at start stops the server; later the
//! failure is a warning and the cached keys stay. Keys for encryption (`use: enc`), symmetric
//! keys (`kty: oct`: a shared secret has no place in a public document) and curves this build
//! does not check are skipped. This file owns fetching and parsing; which key checks which
//! token is [`super::keys`].

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::keys::{VerifyKey, ED, RSA};
use crate::config::{AuthSettings, JwksLocation};

/// Longest one fetch may take, connection included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest JWKS document read (a real one is a few KiB).
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// The cached keys of one JWKS document, and how to fetch it again.
pub(crate) struct Jwks {
    location: JwksLocation,
    client: reqwest::Client,
    keys: RwLock<Arc<[VerifyKey]>>,
    /// When the last fetch started (successful or not).
    last_fetch: Mutex<Instant>,
    refresh_every: Duration,
    min_refresh: Duration,
    /// One fetch at a time: callers that wait for it then find the keys it brought.
    fetching: tokio::sync::Mutex<()>,
    /// Wakes [`Jwks::keep_fresh`] for a key id the cache lacks.
    wake: Notify,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("location", &self.location)
            .field("keys", &self.keys.read().len())
            .finish_non_exhaustive()
    }
}

impl Jwks {
    /// Fetches the document at `location` once; an error (unreachable, not a JWK set, no usable
    /// key) says what went wrong, for the start-up error.
    pub(crate) async fn load(
        settings: &AuthSettings,
        location: JwksLocation,
    ) -> Result<Jwks, String> {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot make an HTTP client: {}", with_causes(&e)))?;
        let jwks = Jwks {
            location,
            client,
            keys: RwLock::new(Arc::from(Vec::new())),
            last_fetch: Mutex::new(Instant::now()),
            refresh_every: settings.jwks_refresh,
            min_refresh: settings.jwks_min_refresh,
            fetching: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
        };
        let keys = jwks.fetch().await?;
        *jwks.keys.write() = Arc::from(keys);
        Ok(jwks)
    }

    /// The keys as last fetched.
    pub(crate) fn keys(&self) -> Arc<[VerifyKey]> {
        Arc::clone(&self.keys.read())
    }

    /// Where the document is.
    pub(crate) fn location(&self) -> &JwksLocation {
        &self.location
    }

    /// Asks [`Jwks::keep_fresh`] to fetch the document soon (a token named an unknown key id),
    /// without waiting for it.
    pub(crate) fn request_refresh(&self) {
        self.wake.notify_one();
    }

    /// Fetches the document again for a token whose key id is unknown, unless the last fetch
    /// is more recent than `auth.jwksMinRefreshMs`; returns once the keys are as fresh as that
    /// allows (a fetch by another caller that was under way counts).
    pub(crate) async fn refresh_for_unknown_key(&self) {
        let _one_at_a_time = self.fetching.lock().await;
        if self.last_fetch.lock().elapsed() < self.min_refresh {
            return;
        }
        self.refresh().await;
    }

    /// Fetches the document every `auth.jwksRefreshMs` and on [`Jwks::request_refresh`],
    /// until `shutdown`.
    pub(crate) async fn keep_fresh(&self, shutdown: CancellationToken) {
        loop {
            let scheduled = tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.refresh_every) => true,
                () = self.wake.notified() => false,
            };
            let refresh = async {
                if scheduled {
                    let _one_at_a_time = self.fetching.lock().await;
                    self.refresh().await;
                } else {
                    self.refresh_for_unknown_key().await;
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = refresh => {}
            }
        }
    }

    /// One fetch; on failure the cached keys stay (a warning says why).
    async fn refresh(&self) {
        *self.last_fetch.lock() = Instant::now();
        match self.fetch().await {
            Ok(keys) => {
                tracing::debug!(jwks = %self.location, keys = keys.len(), "JWKS fetched");
                *self.keys.write() = Arc::from(keys);
            }
            Err(reason) => tracing::warn!(
                jwks = %self.location,
                kept = self.keys.read().len(),
                "cannot refresh the JWKS ({reason}); the keys fetched before stay in use"
            ),
        }
    }

    async fn fetch(&self) -> Result<Vec<VerifyKey>, String> {
        let bytes = match &self.location {
            JwksLocation::File(path) => read_file(path).await?,
            JwksLocation::Url(url) => self.download(url).await?,
        };
        parse_jwks(&bytes)
    }

    async fn download(&self, url: &str) -> Result<Vec<u8>, String> {
        let mut response = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("cannot fetch it: {}", with_causes(&e)))?;
        if !response.status().is_success() {
            return Err(format!("it answered HTTP {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("cannot read it: {}", with_causes(&e)))?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("it is larger than {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

async fn read_file(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(format!("it is larger than {MAX_JWKS_BYTES} bytes"));
    }
    Ok(bytes)
}

/// The usable keys of a JWK set (`{"keys": [...]}`); an error when it is not one or none of
/// its keys can check signatures here.
pub(crate) fn parse_jwks(bytes: &[u8]) -> Result<Vec<VerifyKey>, String> {
    let document: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("it is not JSON ({e})"))?;
    let Some(entries) = document.get("keys").and_then(Value::as_array) else {
        return Err("it is not a JWK set (a JSON object with a \"keys\" array)".into());
    };
    let keys: Vec<VerifyKey> = entries.iter().filter_map(verify_key).collect();
    if keys.is_empty() {
        return Err(format!(
            "none of its {} keys can check signatures here (RSA, EC P-256/P-384 or Ed25519 \
             public keys for signing)",
            entries.len()
        ));
    }
    Ok(keys)
}

/// The key of one JWK, or `None` (with a debug line) when it is not a usable signing key.
fn verify_key(entry: &Value) -> Option<VerifyKey> {
    let kid = entry.get("kid").and_then(Value::as_str).map(str::to_owned);
    let skip = |why: &str| {
        tracing::debug!(
            kid = kid.as_deref().unwrap_or("-"),
            "JWKS key skipped: {why}"
        );
        None
    };
    if entry
        .get("use")
        .and_then(Value::as_str)
        .is_some_and(|u| u != "sig")
    {
        return skip("not a signing key (use is not sig)");
    }
    let field = |name: &str| entry.get(name).and_then(Value::as_str);
    let family: &'static [Algorithm] = match (field("kty"), field("crv")) {
        (Some("RSA"), _) => RSA,
        (Some("EC"), Some("P-256")) => &[Algorithm::ES256],
        (Some("EC"), Some("P-384")) => &[Algorithm::ES384],
        (Some("OKP"), Some("Ed25519")) => ED,
        _ => return skip("not an RSA, EC P-256/P-384 or Ed25519 public key"),
    };
    let algorithms = match field("alg") {
        None => family,
        // A JWK whose alg names one algorithm checks only that one.
        Some(alg) => match family
            .iter()
            .position(|a| Algorithm::from_str(alg).is_ok_and(|named| named == *a))
        {
            Some(at) => &family[at..=at],
            None => return skip("its alg does not fit its key type"),
        },
    };
    let Ok(jwk) = serde_json::from_value::<Jwk>(entry.clone()) else {
        return skip("not a valid JWK");
    };
    let Ok(key) = DecodingKey::from_jwk(&jwk) else {
        return skip("its key material is not valid");
    };
    Some(VerifyKey {
        kid,
        algorithms,
        key,
    })
}

/// `error: cause: cause` (reqwest hides the useful part, such as "connection refused", in
/// its causes).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// An RSA modulus and exponent (a real 2048-bit key's, tests/fixtures/auth/rs256-public.pem).
    fn rsa_jwk(kid: &str) -> Value {
        json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "e": "AQAB", "n": RSA_N})
    }

    const RSA_N: &str = "qpXcKPBCDfasfmWDJuv1RahexsuNVTOiPGuVviQB1f5UYdxRwWPha4e4BGoA-IjmYDeWahoh1rwG5FERIKLdU2SdqjOBX2_fVG72rD7zvY9qRj1d8YYZQpDSrmN_zllMb2YDsKA-PgpL1lGLs2krymECRMawT-uNkIvbc5TpE2dXKRso8dU-5XQSITK1KLQlKJpeSBnHk0AiwujM4SqB4JsdM7YM1CvZ4HWOyp3cJ0rlrYi11Gaxm1T3pgpyrCfBpedE3cLEfdF9JnXiL0ZgxL8R5txfHxD2pn7H0llHZW5Wd7sFykw2OwowtvBnIQjdEQhC8gxrGtv940_KihaWww";

    #[test]
    fn signing_keys_are_kept_and_others_skipped() {
        let document = json!({"keys": [
            rsa_jwk("a"),
            {"kty": "RSA", "kid": "enc", "use": "enc", "e": "AQAB", "n": RSA_N},
            {"kty": "oct", "kid": "shared", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA"},
            {"kty": "RSA", "kid": "mismatch", "alg": "ES256", "e": "AQAB", "n": RSA_N},
        ]});
        let keys = parse_jwks(document.to_string().as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("a"));
        assert_eq!(keys[0].algorithms, &[Algorithm::RS256]);
    }

    #[test]
    fn documents_without_usable_keys_are_errors_that_say_so() {
        let not_json = parse_jwks(b"<html>").unwrap_err();
        assert!(not_json.contains("not JSON"), "{not_json}");
        let not_a_set = parse_jwks(br#"{"kty":"RSA"}"#).unwrap_err();
        assert!(not_a_set.contains("not a JWK set"), "{not_a_set}");
        let only_oct = parse_jwks(br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#).unwrap_err();
        assert!(only_oct.contains("none of its 1 keys"), "{only_oct}");
    }
}
