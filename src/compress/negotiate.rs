//! Picking a client's content coding from its `Accept-Encoding` (RFC 9110 §12.5.3): the
//! offered coding with the highest weight, the relay's order breaking ties. It only reads the
//! header's text; it never decides whether compression is on (the caller offers nothing then).

use super::Coding;

/// The coding to send a stream in, given the request's `Accept-Encoding` value (`None`: the
/// header is absent) and the codings the relay offers, in its order of preference. `None`:
/// identity (no header, nothing acceptable offered, or a malformed header, which is read as
/// far as it parses, RFC 9110 §12.5.3: a weight of 0 means "not acceptable", and `*` stands
/// for any coding not listed).
pub fn negotiate(
    accept_encoding: Option<&str>,
    offered: impl Iterator<Item = Coding>,
) -> Option<Coding> {
    let header = accept_encoding?;
    let weight = |coding: Coding| -> u16 {
        let mut star = None;
        for item in header.split(',') {
            let mut params = item.split(';');
            let name = params.next().unwrap_or("").trim();
            let q = params
                .filter_map(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .or_else(|| p.trim().strip_prefix("Q="))
                })
                .map(parse_weight)
                .next()
                .unwrap_or(Some(1000));
            let Some(q) = q else { continue };
            if name.eq_ignore_ascii_case(coding.token()) {
                return q;
            }
            if name == "*" {
                star = Some(q);
            }
        }
        star.unwrap_or(0)
    };
    let mut best: Option<(Coding, u16)> = None;
    for coding in offered {
        let w = weight(coding);
        if w > 0 && best.is_none_or(|(_, b)| w > b) {
            best = Some((coding, w));
        }
    }
    best.map(|(coding, _)| coding)
}

/// A weight (RFC 9110 §12.4.2: `0` to `1` with up to three decimals) in thousandths; `None`
/// when it is not one (the item is then ignored).
fn parse_weight(text: &str) -> Option<u16> {
    let text = text.trim();
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_value: u16 = format!("{frac:0<3}").parse().ok()?;
    match int {
        "0" => Some(frac_value),
        "1" if frac_value == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The relay's default order (`compression.encodings`): gzip, then zstd.
    fn pick(header: Option<&str>) -> Option<Coding> {
        negotiate(header, [Coding::Gzip, Coding::Zstd].into_iter())
    }

    /// zstd first, as a relay configured with `encodings = ["zstd", "gzip"]` offers them.
    fn pick_zstd_first(header: Option<&str>) -> Option<Coding> {
        negotiate(header, [Coding::Zstd, Coding::Gzip].into_iter())
    }

    #[test]
    fn browsers_headers_get_the_relays_first_coding_they_accept() {
        // Chromium's and Firefox's EventSource requests over https, then over http.
        assert_eq!(pick(Some("gzip, deflate, br, zstd")), Some(Coding::Gzip));
        assert_eq!(
            pick_zstd_first(Some("gzip, deflate, br, zstd")),
            Some(Coding::Zstd)
        );
        assert_eq!(
            pick_zstd_first(Some("gzip, deflate, br")),
            Some(Coding::Gzip)
        );
        assert_eq!(pick(Some("zstd")), Some(Coding::Zstd));
        assert_eq!(
            pick(Some("deflate, gzip;q=1.0, *;q=0.5")),
            Some(Coding::Gzip)
        );
    }

    #[test]
    fn no_header_or_nothing_acceptable_is_identity() {
        assert_eq!(pick(None), None);
        assert_eq!(pick(Some("")), None);
        assert_eq!(pick(Some("identity")), None);
        assert_eq!(pick(Some("br, deflate")), None);
        assert_eq!(pick(Some("gzip;q=0, zstd;q=0")), None);
        assert_eq!(pick(Some("*;q=0")), None);
    }

    #[test]
    fn weights_choose_and_ties_go_to_the_relays_order() {
        assert_eq!(pick(Some("zstd;q=0.5, gzip")), Some(Coding::Gzip));
        assert_eq!(pick(Some("gzip;q=0.5, zstd")), Some(Coding::Zstd));
        assert_eq!(pick(Some("zstd;q=0.8, gzip;q=0.8")), Some(Coding::Gzip));
        assert_eq!(
            pick_zstd_first(Some("gzip;q=0.8, zstd;q=0.8")),
            Some(Coding::Zstd)
        );
        assert_eq!(pick(Some("*")), Some(Coding::Gzip));
        assert_eq!(pick(Some("gzip;q=0, *")), Some(Coding::Zstd));
        assert_eq!(pick(Some("GZIP")), Some(Coding::Gzip));
        // A malformed weight drops its item, not the header.
        assert_eq!(pick(Some("zstd;q=2, gzip")), Some(Coding::Gzip));
        assert_eq!(
            negotiate(Some("gzip, zstd"), [Coding::Gzip].into_iter()),
            Some(Coding::Gzip)
        );
    }
}
