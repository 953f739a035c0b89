//! Reading a token's claims once its signature is checked: `exp`, `nbf`, `iss` and `aud`
//! against the rules, then the identity from the configured claim names (`auth.claims.*`), with
//! scopes as a space-separated string or an array of strings. Also the claims of the tokens
//! this server mints, written with the same names so that it accepts its own tokens.
//!
//! This file knows nothing of keys or signatures ([`super::keys`]) and nothing of HTTP.

use serde_json::{Map, Value};

use super::refusal::{Quoted, Refusal};
use super::{AuthError, Identity};
use crate::config::{AuthSettings, ClaimNames};

/// Seconds of clock difference tolerated on `exp` and `nbf`.
pub(super) const LEEWAY_SECS: u64 = 5;

/// A token whose `exp` is `exp` has expired at `now` (beyond the leeway).
pub(super) fn has_expired(exp: u64, now: u64) -> bool {
    exp.saturating_add(LEEWAY_SECS) < now
}

/// What a token's claims must say, and where its identity is.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClaimRules {
    names: ClaimNames,
    issuers: Vec<String>,
    audiences: Vec<String>,
}

impl ClaimRules {
    /// The rules of `[auth]`.
    pub(crate) fn from_settings(settings: &AuthSettings) -> ClaimRules {
        ClaimRules {
            names: settings.claims.clone(),
            issuers: settings.issuers.clone(),
            audiences: settings.audiences.clone(),
        }
    }

    /// The identity the claims speak for, if they are valid at `now` (seconds since the epoch).
    pub(crate) fn identity(
        &self,
        claims: &Map<String, Value>,
        now: u64,
    ) -> Result<Identity, AuthError> {
        let expires_at = self.check_times(claims, now)?;
        self.check_issuer(claims)?;
        self.check_audience(claims)?;
        Ok(Identity {
            user_id: self.user_id(claims)?,
            name: self.name(claims)?,
            scopes: self.scopes(claims)?,
            expires_at,
        })
    }

    /// `exp` (required, not past) and `nbf` (if present, not future); returns `exp`.
    fn check_times(&self, claims: &Map<String, Value>, now: u64) -> Result<u64, AuthError> {
        let exp = seconds(claims, "exp")?.ok_or_else(|| Refusal::MissingClaim {
            claim: "exp".into(),
            meaning: "its expiry time; tokens without one are refused",
        })?;
        if has_expired(exp, now) {
            return Err(AuthError::Expired);
        }
        if let Some(nbf) = seconds(claims, "nbf")? {
            if nbf > now.saturating_add(LEEWAY_SECS) {
                return Err(Refusal::NotYetValid { seconds: nbf - now }.into());
            }
        }
        Ok(exp)
    }

    fn check_issuer(&self, claims: &Map<String, Value>) -> Result<(), Refusal> {
        if self.issuers.is_empty() {
            return Ok(());
        }
        let found = strings(claims, "iss", "a string")?;
        if found.iter().any(|iss| self.issuers.contains(iss)) {
            return Ok(());
        }
        Err(Refusal::Issuer {
            found: Quoted(found),
            accepted: Quoted(self.issuers.clone()),
        })
    }

    /// With audiences configured, `aud` must name one of them; without, any `aud` is fine (a
    /// token for another service is then accepted: configure `auth.audience` to prevent it).
    fn check_audience(&self, claims: &Map<String, Value>) -> Result<(), Refusal> {
        if self.audiences.is_empty() {
            return Ok(());
        }
        let found = strings(claims, "aud", "a string or an array of strings")?;
        if found.iter().any(|aud| self.audiences.contains(aud)) {
            return Ok(());
        }
        Err(Refusal::Audience {
            found: Quoted(found),
            accepted: Quoted(self.audiences.clone()),
        })
    }

    /// The user id: a non-empty string (a number is taken as its decimal text, as some
    /// identity providers number their users).
    fn user_id(&self, claims: &Map<String, Value>) -> Result<String, Refusal> {
        let claim = &self.names.user_id;
        let missing = || Refusal::MissingClaim {
            claim: claim.clone(),
            meaning: "the user id; auth.claims.userId names this claim",
        };
        match claims.get(claim) {
            None | Some(Value::Null) => Err(missing()),
            Some(Value::String(id)) if id.is_empty() => Err(missing()),
            Some(Value::String(id)) => Ok(id.clone()),
            Some(Value::Number(n)) if n.is_u64() || n.is_i64() => Ok(n.to_string()),
            Some(_) => Err(Refusal::BadClaim {
                claim: claim.clone(),
                expected: "a string (the user id)",
            }),
        }
    }

    fn name(&self, claims: &Map<String, Value>) -> Result<Option<String>, Refusal> {
        match claims.get(&self.names.name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(name)) => Ok(Some(name.clone())),
            Some(_) => Err(Refusal::BadClaim {
                claim: self.names.name.clone(),
                expected: "a string (the display name)",
            }),
        }
    }

    /// Scopes as a space-separated string (OAuth 2.0) or an array of strings (as several
    /// identity providers write `scp` or roles).
    fn scopes(&self, claims: &Map<String, Value>) -> Result<Vec<String>, Refusal> {
        let bad = || Refusal::BadClaim {
            claim: self.names.scope.clone(),
            expected: "a space-separated string or an array of strings",
        };
        match claims.get(&self.names.scope) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::String(text)) => Ok(text.split_whitespace().map(str::to_owned).collect()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| item.as_str().map(str::to_owned).ok_or_else(bad))
                .collect(),
            Some(_) => Err(bad()),
        }
    }

    /// The claims of a token this server mints: the user id, name and scopes under the
    /// configured names, `exp`, `iat`, and the first configured issuer and audience (so that
    /// the server's own checks accept it).
    pub(crate) fn minted(
        &self,
        user: &str,
        name: Option<&str>,
        scopes: &[String],
        issued_at: u64,
        expires_at: u64,
    ) -> Map<String, Value> {
        let mut claims = Map::new();
        if let Some(iss) = self.issuers.first() {
            claims.insert("iss".into(), iss.clone().into());
        }
        if let Some(aud) = self.audiences.first() {
            claims.insert("aud".into(), aud.clone().into());
        }
        claims.insert("iat".into(), issued_at.into());
        claims.insert("exp".into(), expires_at.into());
        if let Some(name) = name {
            claims.insert(self.names.name.clone(), name.into());
        }
        if !scopes.is_empty() {
            claims.insert(self.names.scope.clone(), scopes.join(" ").into());
        }
        // Last: a user-id claim configured as, say, "iss" must still carry the user.
        claims.insert(self.names.user_id.clone(), user.into());
        claims
    }
}

/// A NumericDate claim (seconds since the epoch, an integer or a fraction, floored).
fn seconds(claims: &Map<String, Value>, claim: &str) -> Result<Option<u64>, Refusal> {
    let bad = || Refusal::BadClaim {
        claim: claim.into(),
        expected: "a number of seconds since 1970-01-01 UTC",
    };
    match claims.get(claim) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(whole), _) => Ok(Some(whole)),
            (None, Some(fraction)) if fraction >= 0.0 && fraction.is_finite() => {
                // Saturating: a date past u64 seconds is "never expires" either way.
                Ok(Some(fraction as u64))
            }
            _ => Err(bad()),
        },
        Some(_) => Err(bad()),
    }
}

/// A claim that is a string or an array of strings; absent is an empty list.
fn strings(
    claims: &Map<String, Value>,
    claim: &str,
    expected: &'static str,
) -> Result<Vec<String>, Refusal> {
    let bad = || Refusal::BadClaim {
        claim: claim.into(),
        expected,
    };
    match claims.get(claim) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(one)) => Ok(vec![one.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or_else(bad))
            .collect(),
        Some(_) => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn claims(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("an object: {other}"),
        }
    }

    fn rules(issuers: &[&str], audiences: &[&str], names: ClaimNames) -> ClaimRules {
        ClaimRules {
            names,
            issuers: issuers.iter().map(|s| s.to_string()).collect(),
            audiences: audiences.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn refusal(result: Result<Identity, AuthError>) -> String {
        match result {
            Err(AuthError::Invalid(refusal)) => refusal.to_string(),
            other => panic!("a refusal: {other:?}"),
        }
    }

    #[test]
    fn scopes_are_a_spaced_string_or_an_array() {
        let plain = ClaimRules::default();
        let spaced = claims(json!({"sub": "a", "exp": NOW + 60, "scope": "read  write"}));
        assert_eq!(
            plain.identity(&spaced, NOW).unwrap().scopes,
            ["read", "write"]
        );
        let array = claims(json!({"sub": "a", "exp": NOW + 60, "scope": ["read", "admin"]}));
        let who = plain.identity(&array, NOW).unwrap();
        assert_eq!(who.scopes, ["read", "admin"]);
        assert!(who.has_scope("events:publish"), "admin implies every scope");
        let none = claims(json!({"sub": "a", "exp": NOW + 60}));
        assert!(plain.identity(&none, NOW).unwrap().scopes.is_empty());
        let mixed = claims(json!({"sub": "a", "exp": NOW + 60, "scope": ["read", 7]}));
        assert_eq!(
            refusal(plain.identity(&mixed, NOW)),
            "the token's scope claim must be a space-separated string or an array of strings"
        );
    }

    #[test]
    fn custom_claim_names_carry_the_identity() {
        let names = ClaimNames {
            user_id: "oid".into(),
            name: "preferred_username".into(),
            scope: "scp".into(),
        };
        let custom = rules(&[], &[], names);
        let token = claims(json!({
            "sub": "ignored", "oid": "u-42", "preferred_username": "Ann",
            "scp": ["chat"], "exp": NOW + 60,
        }));
        let who = custom.identity(&token, NOW).unwrap();
        assert_eq!(
            (
                who.user_id.as_str(),
                who.display_name(),
                who.scopes.as_slice()
            ),
            ("u-42", "Ann", ["chat".to_owned()].as_slice())
        );
        let without = claims(json!({"sub": "a", "exp": NOW + 60}));
        assert_eq!(
            refusal(custom.identity(&without, NOW)),
            "the token has no oid claim (the user id; auth.claims.userId names this claim)"
        );
    }

    #[test]
    fn exp_is_required_and_checked_with_expires_at_kept() {
        let plain = ClaimRules::default();
        let future = claims(json!({"sub": "a", "exp": NOW + 60}));
        assert_eq!(plain.identity(&future, NOW).unwrap().expires_at, NOW + 60);
        let fraction = claims(json!({"sub": "a", "exp": (NOW + 60) as f64 + 0.5}));
        assert_eq!(plain.identity(&fraction, NOW).unwrap().expires_at, NOW + 60);
        let past = claims(json!({"sub": "a", "exp": NOW - 60}));
        assert!(matches!(
            plain.identity(&past, NOW),
            Err(AuthError::Expired)
        ));
        let within_leeway = claims(json!({"sub": "a", "exp": NOW - LEEWAY_SECS}));
        assert!(plain.identity(&within_leeway, NOW).is_ok());
        let missing = claims(json!({"sub": "a"}));
        assert!(refusal(plain.identity(&missing, NOW)).contains("no exp claim"));
        let text = claims(json!({"sub": "a", "exp": "tomorrow"}));
        assert_eq!(
            refusal(plain.identity(&text, NOW)),
            "the token's exp claim must be a number of seconds since 1970-01-01 UTC"
        );
        let negative = claims(json!({"sub": "a", "exp": -5}));
        assert!(refusal(plain.identity(&negative, NOW)).contains("exp claim must be"));
    }

    #[test]
    fn nbf_in_the_future_is_refused() {
        let plain = ClaimRules::default();
        let later = claims(json!({"sub": "a", "exp": NOW + 600, "nbf": NOW + 120}));
        assert_eq!(
            refusal(plain.identity(&later, NOW)),
            "the token is not valid yet (its nbf is 120 s from now)"
        );
        let now = claims(json!({"sub": "a", "exp": NOW + 600, "nbf": NOW}));
        assert!(plain.identity(&now, NOW).is_ok());
    }

    #[test]
    fn any_audience_passes_unless_audiences_are_configured() {
        let token = claims(json!({"sub": "a", "exp": NOW + 60, "aud": ["api://other", "x"]}));
        assert!(ClaimRules::default().identity(&token, NOW).is_ok());
        let strict = rules(&[], &["chat"], ClaimNames::default());
        assert_eq!(
            refusal(strict.identity(&token, NOW)),
            "the token was issued for another audience (aud \"api://other\" or \"x\"; this \
             server accepts \"chat\")"
        );
        let ours = claims(json!({"sub": "a", "exp": NOW + 60, "aud": ["x", "chat"]}));
        assert!(strict.identity(&ours, NOW).is_ok());
        let single = claims(json!({"sub": "a", "exp": NOW + 60, "aud": "chat"}));
        assert!(strict.identity(&single, NOW).is_ok());
        let none = claims(json!({"sub": "a", "exp": NOW + 60}));
        assert!(refusal(strict.identity(&none, NOW)).contains("aud none;"));
    }

    #[test]
    fn the_issuer_must_match_when_configured() {
        let strict = rules(&["https://idp.example/"], &[], ClaimNames::default());
        let other = claims(json!({"sub": "a", "exp": NOW + 60, "iss": "https://evil.example/"}));
        assert_eq!(
            refusal(strict.identity(&other, NOW)),
            "the token was issued by another issuer (iss \"https://evil.example/\"; this \
             server accepts \"https://idp.example/\")"
        );
        let ours = claims(json!({"sub": "a", "exp": NOW + 60, "iss": "https://idp.example/"}));
        assert!(strict.identity(&ours, NOW).is_ok());
    }

    #[test]
    fn user_ids_are_strings_or_whole_numbers() {
        let plain = ClaimRules::default();
        let number = claims(json!({"sub": 42, "exp": NOW + 60}));
        assert_eq!(plain.identity(&number, NOW).unwrap().user_id, "42");
        let empty = claims(json!({"sub": "", "exp": NOW + 60}));
        assert!(refusal(plain.identity(&empty, NOW)).contains("no sub claim"));
        let object = claims(json!({"sub": {"id": 1}, "exp": NOW + 60}));
        assert!(refusal(plain.identity(&object, NOW)).contains("sub claim must be a string"));
        let bad_name = claims(json!({"sub": "a", "name": 3, "exp": NOW + 60}));
        assert!(refusal(plain.identity(&bad_name, NOW)).contains("name claim must be"));
    }

    #[test]
    fn minted_claims_pass_the_same_rules() {
        let names = ClaimNames {
            user_id: "uid".into(),
            name: "display".into(),
            scope: "roles".into(),
        };
        let strict = rules(&["tidings"], &["chat", "other"], names);
        let minted = strict.minted("ann", Some("Ann"), &["admin".into()], NOW, NOW + 60);
        let who = strict.identity(&minted, NOW).unwrap();
        assert_eq!(who.user_id, "ann");
        assert_eq!(who.name.as_deref(), Some("Ann"));
        assert_eq!(who.scopes, ["admin"]);
        assert_eq!(who.expires_at, NOW + 60);
    }
}
