//! Reading what the tools print: flat JSON (nchan's channel info, the browser script's result)
//! and the relay's `text/event-stream` output.

/// The number value of `"key": N` in a flat JSON object (nchan's channel info, the browser
/// script's result), without a JSON dependency.
pub fn json_number(json: &str, key: &str) -> Option<u64> {
    let rest = json_value(json, key)?;
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The string value of `"key": "..."` in a flat JSON object (no escapes expected).
pub fn json_string(json: &str, key: &str) -> Option<String> {
    let rest = json_value(json, key)?.strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

/// The text after `"key":` where `"key"` is a key (followed by a colon), not a value.
fn json_value<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let quoted = format!("\"{key}\"");
    json.match_indices(&quoted).find_map(|(at, _)| {
        let rest = json[at + quoted.len()..].trim_start().strip_prefix(':')?;
        Some(rest.trim_start())
    })
}

/// One event of a `text/event-stream`, as the relay encodes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `id:`, if present.
    pub id: Option<String>,
    /// `event:`, if present.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// The complete events in `text` (blocks ended by a blank line that carry data). Comments,
/// `retry:` and an unfinished last block are skipped. Only the relay's canonical output (LF line
/// ends, `field: value`) is expected.
pub fn parse_events(text: &str) -> Vec<SseEvent> {
    let mut blocks: Vec<&str> = text.split("\n\n").collect();
    blocks.pop(); // unterminated (or empty) tail
    blocks
        .into_iter()
        .filter_map(|block| {
            let (mut id, mut event, mut data) = (None, None, Vec::new());
            for line in block.lines() {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "id" => id = Some(value.to_string()),
                    "event" => event = Some(value.to_string()),
                    "data" => data.push(value),
                    _ => {}
                }
            }
            (!data.is_empty()).then(|| SseEvent {
                id,
                event,
                data: data.join("\n"),
            })
        })
        .collect()
}
