//! The `subscribe` claim's patterns: path segments with `*` wildcards and an optional query
//! pattern, matched in linear time (no exponential backtracking).

/// True when a `subscribe` pattern grants the canonical `path` and `query` (see
/// [`crate::edge::routing::TopicTarget`]). A pattern is `PATH[?QUERY]`: `PATH` as in
/// [`path_matches`]; on a request with a query (a route's `query_params`), the pattern must
/// name it, `*` matching within one parameter (never `&`), e.g. `/events/room?id=team-*`.
/// A pattern without `?` grants only query-less requests, so a token for `/events/x` cannot
/// open `/events/x?room=private`.
pub fn grant_matches(pattern: &str, path: &str, query: &str) -> bool {
    let (path_pattern, query_pattern) = match pattern.split_once('?') {
        Some((p, q)) => (p, q),
        None => (pattern, ""),
    };
    path_matches(path_pattern, path)
        && glob_matches(query_pattern.as_bytes(), query.as_bytes(), b'&')
}

/// True when `pattern` matches `path` segment by segment; `*` matches any run of characters
/// within one segment (never a `/`), e.g. `/events/stock-*` matches `/events/stock-ACME`.
pub fn path_matches(pattern: &str, path: &str) -> bool {
    let mut p = pattern.split('/');
    let mut s = path.split('/');
    loop {
        match (p.next(), s.next()) {
            (None, None) => return true,
            (Some(pat), Some(seg)) if segment_matches(pat.as_bytes(), seg.as_bytes()) => {}
            _ => return false,
        }
    }
}

fn segment_matches(pattern: &[u8], segment: &[u8]) -> bool {
    glob_matches(pattern, segment, b'/')
}

/// Wildcard match where `*` matches any run of bytes other than `stop`. Greedy with one
/// backtrack point, so it takes O(pattern × text) steps at worst, never exponential.
fn glob_matches(pattern: &[u8], text: &[u8], stop: u8) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star.filter(|&(_, st)| text[st] != stop) {
            // Let the last `*` swallow one more byte and retry after it.
            star = Some((sp, st + 1));
            p = sp + 1;
            t = st + 1;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_matches_within_one_segment_only() {
        assert!(path_matches("/events/stock-*", "/events/stock-ACME"));
        assert!(path_matches("/events/*", "/events/a"));
        assert!(path_matches("/events/exact", "/events/exact"));
        assert!(!path_matches("/events/stock-*", "/events/bond-X"));
        assert!(!path_matches("/events/*", "/events/a/b"));
        assert!(!path_matches("/events/*", "/other/a"));
        assert!(!path_matches("/events/a", "/events/ab"));
        assert!(!path_matches("/*", "/events/a"));
    }

    #[test]
    fn a_query_is_granted_only_by_a_pattern_naming_it() {
        assert!(grant_matches("/events/x", "/events/x", ""));
        assert!(!grant_matches("/events/x", "/events/x", "room=private"));
        assert!(grant_matches(
            "/events/x?room=team-*",
            "/events/x",
            "room=team-a"
        ));
        assert!(!grant_matches(
            "/events/x?room=team-*",
            "/events/x",
            "room=team-a&x=1"
        ));
        assert!(!grant_matches(
            "/events/x?room=team-*",
            "/events/x",
            "room=other"
        ));
        assert!(grant_matches("/events/*?*", "/events/y", "lang=en"));
        assert!(grant_matches("/events/*?*", "/events/y", ""));
    }

    #[test]
    fn many_stars_do_not_backtrack_exponentially() {
        let text = "a".repeat(20_000);
        assert!(!path_matches(
            "/*a*a*a*a*a*a*a*a*a*a*b",
            &format!("/{text}")
        ));
        assert!(path_matches("/*a*a*a*a*a*a*a*a*a*a*", &format!("/{text}")));
    }
}
