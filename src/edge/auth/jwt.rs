//! JSON Web Token verification (RFC 7519): pinned algorithms, required `exp`, `nbf` honoured,
//! optional `iss`/`aud`, and the `subscribe` claim's patterns matched against the canonical
//! path ([`super::pattern`]).

use std::time::{Duration, UNIX_EPOCH};

use jsonwebtoken::{DecodingKey, Validation};

use super::pattern::grant_matches;
use super::{bearer, cookie, refuse_query_tokens, AuthRequest, Denial, Grant};

/// Verifies JWTs: pinned algorithms, required `exp`, optional `iss`/`aud`, and the
/// `subscribe` claim matched against the canonical path.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    cookie: String,
}

#[derive(serde::Deserialize)]
struct Claims {
    exp: u64,
    #[serde(default)]
    subscribe: Vec<String>,
    /// Every other claim, for `{jwt.*}` upstream variables.
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

impl JwtVerifier {
    /// A verifier checking tokens with `key` under `validation` (algorithms, leeway, required
    /// claims, issuer, audience), reading them from the bearer header or the `cookie` cookie.
    pub fn new(key: DecodingKey, validation: Validation, cookie: String) -> Self {
        Self {
            key,
            validation,
            cookie,
        }
    }

    pub(super) fn authorize(&self, request: &AuthRequest<'_>) -> Result<Grant, Denial> {
        refuse_query_tokens(request.raw_query)?;
        let token = bearer(request.headers)
            .or_else(|| cookie(request.headers, &self.cookie))
            .ok_or_else(|| {
                Denial::Unauthorized(format!(
                    "no token: send Authorization: Bearer or the {} cookie",
                    self.cookie
                ))
            })?;
        let data = jsonwebtoken::decode::<Claims>(&token, &self.key, &self.validation)
            .map_err(|e| Denial::Unauthorized(format!("invalid token: {e}")))?;
        let claims = data.claims;
        if !claims
            .subscribe
            .iter()
            .any(|p| grant_matches(p, request.path, request.query))
        {
            let mut what = request.path.to_string();
            if !request.query.is_empty() {
                what = format!("{what}?{}", request.query);
            }
            return Err(Denial::Forbidden(format!(
                "the token's subscribe claim does not grant {what}"
            )));
        }
        // An `exp` past what the clock can hold never ends the stream.
        let expires = UNIX_EPOCH.checked_add(Duration::from_secs(claims.exp));
        Ok(Grant {
            expires,
            claims: Some(claims.other),
        })
    }
}
