//! How a per-user topic key is shown: in `/topics`, `/stats`, the status page and the logs, a
//! `{jwt.NAME}` claim's value in a topic's upstream URL is replaced by a short keyed hash of
//! it, so the admin listener and the logs never carry a user's identity in clear
//! (docs/security.md, "The admin port").
//!
//! This module only builds the shown form; it never changes a topic key (routing, the
//! registry, cluster rendezvous and the upstream request all use the key itself).

use ring::hmac;

use super::template::CLAIM_PREFIX;

/// Hex digits of a claim's hash that are shown: 12 (48 bits), short enough to read, long
/// enough that two users of one relay practically never share one.
pub const SHOWN_HASH_HEX: usize = 12;

/// Hashes claim values for display: HMAC-SHA-256 (RFC 2104) under a random key drawn once per
/// router, that is once per relay process, so the same claim shows the same hash for the
/// process's life, and a list of likely values (e-mail addresses, user ids) cannot be hashed
/// to find whose topic it is.
#[derive(Clone)]
pub struct ClaimHasher {
    key: hmac::Key,
}

impl std::fmt::Debug for ClaimHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClaimHasher(..)")
    }
}

impl Default for ClaimHasher {
    fn default() -> Self {
        Self::random()
    }
}

impl ClaimHasher {
    /// A hasher under a fresh random 256-bit key.
    pub fn random() -> Self {
        let secret: [u8; 32] = rand::random();
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
        }
    }

    /// The first [`SHOWN_HASH_HEX`] hex digits of the HMAC of `value`.
    pub fn hash(&self, value: &str) -> String {
        let tag = hmac::sign(&self.key, value.as_bytes());
        let mut hex = String::with_capacity(SHOWN_HASH_HEX);
        for byte in &tag.as_ref()[..SHOWN_HASH_HEX / 2] {
            hex.push_str(&format!("{byte:02x}"));
        }
        hex
    }

    /// How `url` is shown, given `template`: the route's upstream template with its path
    /// variables filled in and its claims still `{jwt.NAME}`. Each claim becomes
    /// `{jwt.NAME:HASH}` (the hash of the claim as it stands in the URL, percent-encoded);
    /// literals and the canonical query after the template are shown as they are. When `url`
    /// does not follow `template`, it is shown as `template` then ` #` and the hash of the
    /// whole URL: never a claim in clear.
    pub fn shown(&self, template: &str, url: &str) -> String {
        self.shown_claims(template, url)
            .unwrap_or_else(|| format!("{template} #{}", self.hash(url)))
    }

    /// [`Self::shown`] when `url` follows `template`. A claim's value ends where the next
    /// literal first occurs (exactly where it ends when the literal holds a byte a claim never
    /// does, such as `/`, `?` or `&`; otherwise perhaps early, which changes only which bytes
    /// are hashed), or, before another claim or at the end, after the bytes a claim may hold.
    /// Only template literals, hashes and a remainder starting with `?` or `&` (the query the
    /// request added) are shown.
    fn shown_claims(&self, template: &str, url: &str) -> Option<String> {
        let parts = split(template);
        let mut shown = String::with_capacity(template.len() + 16);
        let mut rest = url;
        for (i, part) in parts.iter().enumerate() {
            match part {
                Part::Literal(literal) => {
                    rest = rest.strip_prefix(literal)?;
                    shown.push_str(literal);
                }
                Part::Claim(name) => {
                    let end = match parts.get(i + 1) {
                        Some(Part::Literal(next)) => rest.find(next)?,
                        _ => rest.find(|c: char| !is_claim_char(c)).unwrap_or(rest.len()),
                    };
                    if end == 0 {
                        return None;
                    }
                    let hash = self.hash(&rest[..end]);
                    shown.push_str(&format!("{{{CLAIM_PREFIX}{name}:{hash}}}"));
                    rest = &rest[end..];
                }
            }
        }
        if !(rest.is_empty() || rest.starts_with(['?', '&'])) {
            return None;
        }
        shown.push_str(rest);
        Some(shown)
    }
}

/// A piece of an upstream template whose path variables are filled in.
#[derive(Debug, PartialEq, Eq)]
enum Part<'a> {
    Literal(&'a str),
    /// A `{jwt.NAME}` claim, by NAME.
    Claim(&'a str),
}

/// `template` cut into literals and `{jwt.NAME}` claims (empty literals left out).
fn split(template: &str) -> Vec<Part<'_>> {
    let opening = format!("{{{CLAIM_PREFIX}");
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find(&opening) {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        if open > 0 {
            parts.push(Part::Literal(&rest[..open]));
        }
        parts.push(Part::Claim(&rest[open + opening.len()..open + close]));
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Literal(rest));
    }
    parts
}

/// A byte a claim may hold in an upstream URL: RFC 3986 §2.3 unreserved, or `%` of an escape.
fn is_claim_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '%')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_is_shown_as_its_hash_and_the_rest_as_it_is() {
        let hasher = ClaimHasher::random();
        let template = "http://app/users/{jwt.sub}/events";
        let shown = hasher.shown(
            template,
            "http://app/users/alice%40example.com/events?lang=en",
        );
        let hash = hasher.hash("alice%40example.com");
        assert_eq!(hash.len(), SHOWN_HASH_HEX);
        assert_eq!(
            shown,
            format!("http://app/users/{{jwt.sub:{hash}}}/events?lang=en")
        );
        assert!(!shown.contains("alice"));
    }

    #[test]
    fn same_claim_same_hash_other_claim_or_process_other_hash() {
        let (one, other) = (ClaimHasher::random(), ClaimHasher::random());
        assert_eq!(one.hash("alice"), one.hash("alice"));
        assert_ne!(one.hash("alice"), one.hash("bob"));
        assert_ne!(one.hash("alice"), other.hash("alice"));
    }

    #[test]
    fn claims_between_literals_that_a_claim_may_hold_are_never_shown() {
        let hasher = ClaimHasher::random();
        for (template, url) in [
            ("http://a/{jwt.x}.json", "http://a/p.jsonq.json"),
            ("http://a/{jwt.x}-{jwt.y}", "http://a/p-q-r"),
            ("http://a/u-{jwt.x}{jwt.y}/f", "http://a/u-secret/f"),
            ("http://a/{jwt.x}", "http://a/secret/more"),
            ("http://a/{jwt.x}/f", "http://b/secret/f"),
        ] {
            let shown = hasher.shown(template, url);
            for secret in ["secret", "p.jsonq", "q-r", "jsonq"] {
                assert!(!shown.contains(secret), "{template} {url}: {shown}");
            }
        }
    }

    #[test]
    fn a_url_off_the_template_is_shown_as_the_template_and_a_hash() {
        let hasher = ClaimHasher::random();
        let url = "http://b/alice/f";
        assert_eq!(
            hasher.shown("http://a/{jwt.x}/f", url),
            format!("http://a/{{jwt.x}}/f #{}", hasher.hash(url))
        );
    }
}
