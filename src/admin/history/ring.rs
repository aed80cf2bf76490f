//! The sample ring: the last [`CAPACITY`] samples, oldest first, each with its sequence
//! number, so a reader that follows the history asks for what came after the last one it had.
//!
//! It only keeps samples; it never takes one (the sampler does) and never grows past its
//! capacity: a new sample past it pushes out the oldest.

use std::collections::VecDeque;

/// Samples kept: 15 minutes at one a second. With a [`super::Sample`] of under 200 bytes the
/// ring holds under 180 KiB, whatever the relay's load.
pub const CAPACITY: usize = 15 * 60;

/// The last samples, oldest first, at most a fixed number.
#[derive(Debug)]
pub struct SampleRing<T> {
    samples: VecDeque<T>,
    capacity: usize,
    /// Sequence number of `samples[0]`; the next sample gets `first_seq + samples.len()`.
    first_seq: u64,
}

impl<T: Clone> SampleRing<T> {
    /// An empty ring keeping at most `capacity` samples (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            samples: VecDeque::with_capacity(capacity),
            capacity,
            first_seq: 0,
        }
    }

    /// Appends `sample`, pushing out the oldest when the ring is full; returns its sequence
    /// number.
    pub fn push(&mut self, sample: T) -> u64 {
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
            self.first_seq += 1;
        }
        self.samples.push_back(sample);
        self.next_seq() - 1
    }

    /// The sequence number the next sample gets.
    pub fn next_seq(&self) -> u64 {
        self.first_seq + self.samples.len() as u64
    }

    /// The samples from sequence number `seq` on, oldest first (all of them when `seq` was
    /// pushed out already: a reader that fell behind by more than the ring gets what is left).
    pub fn since(&self, seq: u64) -> Vec<T> {
        let skip = seq.saturating_sub(self.first_seq) as usize;
        self.samples.iter().skip(skip).cloned().collect()
    }

    /// Samples held, count.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True when no sample was taken yet.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The most samples it holds, count.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_keeps_the_newest_in_order_and_never_more_than_its_capacity() {
        let mut ring = SampleRing::new(4);
        assert!(ring.is_empty());
        for n in 0..3u32 {
            assert_eq!(ring.push(n), u64::from(n));
        }
        assert_eq!(ring.since(0), [0, 1, 2]);
        for n in 3..11u32 {
            ring.push(n);
            assert!(ring.len() <= 4);
        }
        assert_eq!(ring.len(), 4);
        assert_eq!(ring.since(0), [7, 8, 9, 10], "wrapped around, oldest first");
        assert_eq!(ring.since(9), [9, 10], "a follower asks from its next one");
        assert_eq!(ring.since(11), Vec::<u32>::new(), "nothing new");
        assert_eq!(ring.next_seq(), 11);
    }
}
