//! `[compression]` validated into [`CompressionSettings`]: the codings offered (known, not
//! repeated, never br), the levels in their libraries' ranges, the segment bounds above zero.

use crate::compress::{Coding, CompressionSettings, SegmentRule};

use super::issue::{ms, positive, ConfigIssue};
use super::Config;

/// The compression settings of `config` (every coding off when `enabled = false`).
///
/// # Errors
/// A [`ConfigIssue`] naming the key: an unknown or repeated coding, `br`, more codings than
/// the relay has, a level out of range, a zero segment bound.
pub(super) fn settings(config: &Config) -> Result<CompressionSettings, ConfigIssue> {
    let c = &config.compression;
    let mut codings = [None; 2];
    if c.encodings.len() > codings.len() {
        return Err(ConfigIssue::new(
            "compression.encodings",
            "lists more codings than the relay has (zstd, gzip)",
        ));
    }
    for (slot, name) in codings.iter_mut().zip(&c.encodings) {
        let coding = Coding::from_token(name).ok_or_else(|| {
            let why = if name.eq_ignore_ascii_case("br") {
                "br cannot be shared: a brotli stream cannot drop its history mid-stream, so a subscriber joining a topic could never share its bytes (use zstd or gzip)".to_string()
            } else {
                format!("unknown coding {name:?} (the relay compresses with zstd and gzip)")
            };
            ConfigIssue::new("compression.encodings", why)
        })?;
        *slot = Some(coding);
    }
    if codings[0].is_some() && codings[0] == codings[1] {
        return Err(ConfigIssue::new(
            "compression.encodings",
            "lists a coding twice",
        ));
    }
    if !(1..=9).contains(&c.gzip_level) {
        return Err(ConfigIssue::new(
            "compression.gzip_level",
            format!("must be 1 to 9 (zlib's levels), got {}", c.gzip_level),
        ));
    }
    if !(1..=19).contains(&c.zstd_level) {
        return Err(ConfigIssue::new(
            "compression.zstd_level",
            format!("must be 1 to 19 (zstd's levels), got {}", c.zstd_level),
        ));
    }
    positive("compression.segment_events", u64::from(c.segment_events))?;
    positive("compression.segment_bytes", c.segment_bytes as u64)?;
    positive("compression.segment_ms", c.segment_ms)?;
    Ok(CompressionSettings {
        codings: if c.enabled { codings } else { [None; 2] },
        segment: SegmentRule {
            events: c.segment_events,
            bytes: c.segment_bytes,
            duration: ms(c.segment_ms),
        },
        gzip_level: c.gzip_level,
        zstd_level: c.zstd_level,
    })
}
