//! The admin listener's bearer token (`admin.token_file`): who may read `/topics`, `/stats` and
//! the status page. It checks a request's `Authorization` against the token and words the
//! 401 (RFC 6750 §3); it never reads a file (the config does, once, at start) and never
//! logs or shows the token.

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use ring::digest;
use subtle::ConstantTimeEq;

/// The token `Authorization: Bearer <token>` must carry, kept as its SHA-256 so the comparison
/// takes the same time whatever the length or content of what is presented.
#[derive(Clone)]
pub struct AdminToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

/// Why a request was not let in: what the 401's `WWW-Authenticate` says (RFC 6750 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No bearer token: the challenge alone, with no error code (RFC 6750 §3.1).
    Missing,
    /// A bearer token that is not the admin token: `error="invalid_token"`.
    Invalid,
}

impl Refusal {
    /// The `WWW-Authenticate` value of the 401.
    pub fn challenge(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Self::Missing => "Bearer realm=\"sse-relay admin\"",
            Self::Invalid => "Bearer realm=\"sse-relay admin\", error=\"invalid_token\"",
        })
    }
}

impl AdminToken {
    /// The token from a file's `contents`, trimmed of surrounding whitespace (a trailing
    /// newline, as editors and `kubectl create secret --from-file` leave); `None` when nothing
    /// is left.
    pub fn from_contents(contents: &str) -> Option<Self> {
        let token = contents.trim();
        (!token.is_empty()).then(|| Self {
            digest: sha256(token.as_bytes()),
        })
    }

    /// Admits a request whose `Authorization` is `Bearer <token>` (the scheme without regard
    /// to case, RFC 9110 §11.1; one or more spaces after it, RFC 6750 §2.1).
    ///
    /// # Errors
    /// The [`Refusal`] the 401 reports.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let presented = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim_start_matches(' '));
        let presented = presented.ok_or(Refusal::Missing)?;
        if bool::from(sha256(presented.as_bytes()).ct_eq(&self.digest)) {
            Ok(())
        } else {
            Err(Refusal::Invalid)
        }
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn only_the_bearer_token_itself_is_admitted() {
        let token = AdminToken::from_contents("  s3cret-token\n").unwrap();
        assert_eq!(token.check(&with_auth("Bearer s3cret-token")), Ok(()));
        assert_eq!(token.check(&with_auth("bearer  s3cret-token")), Ok(()));
        assert_eq!(token.check(&HeaderMap::new()), Err(Refusal::Missing));
        assert_eq!(
            token.check(&with_auth("Basic czNjcmV0LXRva2Vu")),
            Err(Refusal::Missing)
        );
        for wrong in [
            "Bearer s3cret",
            "Bearer s3cret-token2",
            "Bearer ",
            "Bearer S3CRET-TOKEN",
        ] {
            assert_eq!(
                token.check(&with_auth(wrong)),
                Err(Refusal::Invalid),
                "{wrong}"
            );
        }
    }

    #[test]
    fn an_empty_file_is_no_token() {
        assert!(AdminToken::from_contents(" \n\t").is_none());
    }
}
