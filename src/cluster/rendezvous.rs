//! Which relay owns a topic: rendezvous (highest-random-weight) hashing of the topic key over
//! the live peers (Thaler & Ravishankar, "Using name-based mappings to increase hit rates",
//! 1998). Every relay computes the same owner from the same peer set, and when a peer joins or
//! leaves only the topics it wins or held move.
//!
//! The weight is SipHash-2-4 with fixed keys (the `siphasher` crate, stable across Rust
//! releases, unlike `std`'s `DefaultHasher`), so relays of different builds agree.
//!
//! This module is a pure function of the key and the peer set; it never reads the view itself.

use std::hash::Hasher;
use std::net::SocketAddr;

use siphasher::sip::SipHasher24;

/// The fixed SipHash keys: any constants do, as long as every relay uses the same.
const KEYS: (u64, u64) = (0x7373_652d_7265_6c61, 0x792d_6f77_6e65_7273);

/// The weight of `peer` for `key`.
pub fn weight(peer: &SocketAddr, key: &str) -> u64 {
    let mut hasher = SipHasher24::new_with_keys(KEYS.0, KEYS.1);
    hasher.write(peer.to_string().as_bytes());
    hasher.write_u8(0xff);
    hasher.write(key.as_bytes());
    hasher.finish()
}

/// The owner of `key` among `peers`: the one of highest weight (ties, astronomically rare, go
/// to the lower address); `None` when `peers` is empty.
pub fn owner<'a>(key: &str, peers: &'a [SocketAddr]) -> Option<&'a SocketAddr> {
    peers
        .iter()
        .max_by(|a, b| weight(a, key).cmp(&weight(b, key)).then(b.cmp(a)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(n: u8) -> Vec<SocketAddr> {
        (1..=n)
            .map(|i| SocketAddr::from(([127, 0, 0, 10 + i], 9443)))
            .collect()
    }

    #[test]
    fn the_owner_does_not_depend_on_the_order_of_the_peers() {
        let mut three = peers(3);
        let first: Vec<_> = (0..100)
            .map(|i| *owner(&format!("topic {i}"), &three).unwrap())
            .collect();
        three.reverse();
        let again: Vec<_> = (0..100)
            .map(|i| *owner(&format!("topic {i}"), &three).unwrap())
            .collect();
        assert_eq!(first, again);
    }

    #[test]
    fn topics_spread_and_only_a_leaving_peers_topics_move() {
        let three = peers(3);
        let keys: Vec<String> = (0..3000)
            .map(|i| format!("0 http://origin/sub/{i}"))
            .collect();
        let owners: Vec<_> = keys.iter().map(|k| *owner(k, &three).unwrap()).collect();
        for peer in &three {
            let owned = owners.iter().filter(|o| *o == peer).count();
            assert!((800..1200).contains(&owned), "{peer} owns {owned} of 3000");
        }
        let two = &three[..2];
        for (key, before) in keys.iter().zip(&owners) {
            let after = *owner(key, two).unwrap();
            if before != &three[2] {
                assert_eq!(&after, before, "{key} moved although its owner stayed");
            }
        }
    }

    #[test]
    fn no_peers_no_owner() {
        assert_eq!(owner("k", &[]), None);
    }
}
