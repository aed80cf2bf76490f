//! At start the relay raises its soft file-descriptor limit to the hard one, and knows when the
//! caps can open more descriptors than that. Its own test binary, as it changes the process's
//! limit.

// `rlim_t` is `u64` on Linux but not on every platform `libc` serves: the casts stay.
#![allow(clippy::unnecessary_cast)]

use sse_relay::app::fds;

#[test]
fn the_soft_descriptor_limit_is_raised_to_the_hard_one() {
    let (_, hard) = fds::limits().expect("getrlimit");
    let low = hard.min(256);
    let lowered = libc::rlimit {
        rlim_cur: low as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: a valid `rlimit`, lowering only the soft limit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);
    assert_eq!(fds::limits().unwrap().0, low);
    assert_eq!(fds::prepare(10, 10), Some(hard));
    assert_eq!(fds::limits().unwrap(), (hard, hard), "soft raised to hard");
}

#[test]
fn the_default_caps_need_more_than_twenty_thousand_descriptors() {
    assert_eq!(fds::needed(10_000, 10_000), 20_000 + fds::RESERVE);
    assert!(fds::needed(10_000, 10_000) > 20_000);
}
