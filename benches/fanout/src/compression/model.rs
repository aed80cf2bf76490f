//! What a run is and what it yields: the variants (who serves, which coding the subscribers
//! ask for), the sizes and each feed's pace, and a run's record of named figures or its
//! failure. Plain data, saved with the results; it starts and measures nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use super::feeds::FeedKind;
use crate::client::Coding;
use crate::scenarios::Values;

/// What serves the subscribers, and the coding they ask for.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
pub enum Variant {
    /// The relay, no `Accept-Encoding`.
    RelayIdentity,
    /// The relay, `Accept-Encoding: gzip` (its shared gzip).
    RelayGzip,
    /// The relay, `Accept-Encoding: zstd` (its shared zstd).
    RelayZstd,
    /// nginx `gzip on` proxying nchan, `Accept-Encoding: gzip`.
    NginxGzip,
}

impl Variant {
    /// Every variant, in run order (the relay's identity runs again after the others).
    pub const ALL: [Variant; 4] = [
        Self::RelayIdentity,
        Self::RelayGzip,
        Self::RelayZstd,
        Self::NginxGzip,
    ];

    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Self::RelayIdentity => "relay identity",
            Self::RelayGzip => "relay shared gzip",
            Self::RelayZstd => "relay shared zstd",
            Self::NginxGzip => "nginx gzip → nchan",
        }
    }

    /// The coding the subscribers ask for.
    pub fn coding(self) -> Coding {
        match self {
            Self::RelayIdentity => Coding::Identity,
            Self::RelayGzip | Self::NginxGzip => Coding::Gzip,
            Self::RelayZstd => Coding::Zstd,
        }
    }
}

/// How one feed is published in a run.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Pace {
    /// Events published before measuring, as fast as they are delivered (at most one per
    /// [`WARM_PERIOD`]): enough to pass the relay's first segment boundary (256 events or
    /// 256 KiB by default), after which every subscriber is in step with the topic's shared
    /// bytes.
    pub warm: u64,
    /// Measured events.
    pub rounds: u64,
    /// Time between measured events, ms (longer when an event takes longer to reach everyone).
    pub period_ms: u64,
}

/// The fastest warm-up pace: one event per this long, at most.
pub const WARM_PERIOD: Duration = Duration::from_millis(5);

/// Sizes of a run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Sizes {
    /// h2 connections of the subscribers.
    pub conns: usize,
    /// Streams per connection.
    pub streams: usize,
    /// Subscriber streams whose decoded bytes are kept and compared with the witness's.
    pub samples: u64,
    /// Pause before reading RSS, ms.
    pub settle_ms: u64,
    /// How each feed is published.
    pub feeds: BTreeMap<FeedKind, Pace>,
}

impl Sizes {
    /// The full run (about 10 minutes on 2 cores). Ticks and deltas measure 256 events, one
    /// whole default segment. RSS is read 10.5 s after each half joined: past the relay's
    /// periodic trim (every 10 s, when its allocator holds over 16 MiB free), which hands back
    /// what the joiners' pieces of their own left behind.
    pub fn full() -> Self {
        Self {
            conns: 20,
            streams: 50,
            samples: 4,
            settle_ms: 10_500,
            feeds: Self::paced(256, 60),
        }
    }

    /// The smoke run (about 2 minutes; RSS read 0.5 s after each half joined, before the
    /// relay's trim).
    pub fn quick() -> Self {
        Self {
            conns: 4,
            streams: 50,
            samples: 2,
            settle_ms: 500,
            feeds: Self::paced(64, 16),
        }
    }

    fn paced(small: u64, snapshots: u64) -> BTreeMap<FeedKind, Pace> {
        let fast = |rounds| Pace {
            warm: 300,
            rounds,
            period_ms: 40,
        };
        BTreeMap::from([
            (FeedKind::Ticks, fast(small)),
            (FeedKind::Deltas, fast(small)),
            (
                FeedKind::Snapshots,
                Pace {
                    warm: 12,
                    rounds: snapshots,
                    period_ms: 250,
                },
            ),
        ])
    }

    /// Subscribers, count (the witness not included).
    pub fn subscribers(&self) -> u64 {
        (self.conns * self.streams) as u64
    }
}

/// Figures of one variant on one feed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Record {
    /// The feed.
    pub feed: FeedKind,
    /// The variant.
    pub variant: Variant,
    /// Which run of this variant on this feed (1, 2, …).
    pub pass: u32,
    /// Why it failed, if it did.
    pub failure: Option<String>,
    /// Named figures.
    pub values: Values,
    /// Negotiated TLS version, cipher suite and ALPN.
    pub tls: Option<String>,
}

impl Record {
    /// A figure (none when the run failed).
    pub fn get(&self, key: &str) -> Option<f64> {
        self.failure
            .is_none()
            .then(|| self.values.get(key).copied())?
    }
}
