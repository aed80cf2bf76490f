//! What the per-user tests share: a relay whose route `/me/events` reads the origin's
//! `user-{jwt.sub}`, tokens for it, and the hash a shown key gives the claim.
#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use sse_relay::config::{AuthMode, Config};

use crate::support::{self, TestOrigin, TestRelay};

pub const SECRET: &[u8] = b"an-hs256-test-secret-of-32-bytes-or-more";

/// `Authorization: Bearer …` of a token for `/me/events` with claim `sub`.
pub fn bearer_of(sub: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = serde_json::json!({ "exp": exp, "subscribe": ["/me/events"], "sub": sub });
    let token = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    format!("Bearer {token}")
}

/// A relay whose one route `/me/events` reads `user-{jwt.sub}` from `origin`.
pub async fn per_user_relay(origin: &TestOrigin) -> TestRelay {
    per_user_relay_with(origin, |_| {}).await
}

/// [`per_user_relay`] with `configure` applied last.
pub async fn per_user_relay_with(
    origin: &TestOrigin,
    configure: impl FnOnce(&mut Config),
) -> TestRelay {
    let secret = support::temp_dir("jwt").join("jwt.key");
    std::fs::write(&secret, SECRET).unwrap();
    TestRelay::start_with(
        &format!("http://{}/sub/user-{{jwt.sub}}", origin.addr),
        |c| {
            c.routes[0].path = "/me/events".into();
            c.routes[0].auth = AuthMode::Jwt;
            c.auth.jwt = Some(sse_relay::config::JwtConfig {
                secret_file: Some(secret),
                ..support::jwt_config(&["HS256"])
            });
            configure(c);
        },
    )
    .await
}

/// The hash a shown key gives its `sub` claim.
pub fn sub_hash(shown: &str) -> &str {
    let after = shown.split_once("{jwt.sub:").expect(shown).1;
    let hash = after.split_once('}').expect(shown).0;
    assert_eq!(hash.len(), 12, "{shown}");
    assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{shown}");
    hash
}
