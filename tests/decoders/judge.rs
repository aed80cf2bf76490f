//! Judging a stream whose position differs by design from an identity stream's (a lag):
//! frame by frame, against the frames of a healthy identity stream of the same topic.

use super::Stream;

/// A stream of the topic that `reference` (an identity stream that read every event) follows,
/// judged frame by frame where its position differs by design (a lag): it opens like the
/// reference, each event frame is the reference's frame of that id, byte for byte, ids run on
/// by one except right after a gap signal that names the next id (and the last one, when the
/// relay knows it: a skip does not), and a
/// `retry:` frame may follow a skip or end the stream.
#[derive(Debug, Default)]
pub struct Judged {
    /// The ids of the events it got, in order.
    pub ids: Vec<u64>,
    /// The gap signals' (last_event_id, next_event_id).
    pub gaps: Vec<(String, String)>,
    /// `retry:` frames after the opening.
    pub retries: usize,
    /// It ends with a `retry:` frame.
    pub ends_with_retry: bool,
}

/// See [`Judged`].
pub fn judge(stream: &Stream, reference: &Stream) -> Judged {
    let name = &stream.name;
    let reference_frames = reference.frames();
    let events: std::collections::HashMap<u64, &String> = reference_frames
        .iter()
        .filter_map(|f| Some((frame_id(f)?, f)))
        .collect();
    let retry = &reference_frames[1];
    assert!(
        retry.starts_with("retry: "),
        "{}: {retry:?}",
        reference.name
    );
    let frames = stream.frames();
    assert_eq!(frames[..2], reference_frames[..2], "{name}: the opening");
    let mut judged = Judged::default();
    let mut gap: Option<(String, String)> = None;
    for frame in &frames[2..] {
        if let Some(id) = frame_id(frame) {
            assert_eq!(Some(&frame), events.get(&id), "{name}: event {id}");
            if let Some(&last) = judged.ids.last() {
                if id != last + 1 {
                    let announced = gap.take().unwrap_or_else(|| {
                        panic!("{name}: from event {last} to {id} without a gap signal")
                    });
                    // A skip does not know the last id the client got (null then).
                    let sides = (announced.0.as_str(), announced.1.as_str());
                    let want = (last.to_string(), id.to_string());
                    assert!(
                        sides == (&want.0, &want.1) || sides == ("", &want.1),
                        "{name}: the gap signal {announced:?} between events {last} and {id}"
                    );
                }
            }
            assert!(
                gap.is_none(),
                "{name}: a gap signal before event {id}, which follows on"
            );
            judged.ids.push(id);
        } else if frame.starts_with("event: sse-relay-gap\n") {
            let data = frame
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .expect("the gap's data");
            let data: serde_json::Value = serde_json::from_str(data).expect("JSON");
            let side = |key: &str| data[key].as_str().unwrap_or_default().to_string();
            let announced = (side("last_event_id"), side("next_event_id"));
            judged.gaps.push(announced.clone());
            gap = Some(announced);
        } else if frame == retry {
            judged.retries += 1;
        } else {
            panic!("{name}: a frame the identity stream has no counterpart for: {frame:?}");
        }
    }
    judged.ends_with_retry = frames.last() == Some(retry) && frames.len() > 2;
    judged
}

/// The numeric id of an event frame.
fn frame_id(frame: &str) -> Option<u64> {
    frame
        .lines()
        .find_map(|l| l.strip_prefix("id: "))?
        .parse()
        .ok()
}
