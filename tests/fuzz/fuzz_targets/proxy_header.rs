//! Fuzz target: the PROXY protocol header framing and parse (v1 and v2). Arbitrary bytes must
//! never panic; a header framed as `Complete(n)` is framed the same from its first `n` bytes
//! alone, every shorter prefix is `Incomplete` (the reader then waits rather than refusing),
//! and the parse of those `n` bytes gives an address or `Invalid`, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sse_relay::server::proxy_protocol::{frame, parse, Framing, V1_MAX_BYTES, V2_MAX_BYTES};

fuzz_target!(|input: &[u8]| {
    match frame(input) {
        Framing::Complete(n) => {
            assert!(n > 0 && n <= input.len() && n <= V1_MAX_BYTES.max(V2_MAX_BYTES));
            assert_eq!(frame(&input[..n]), Framing::Complete(n));
            for k in 0..n {
                assert_eq!(
                    frame(&input[..k]),
                    Framing::Incomplete,
                    "prefix of {k} bytes"
                );
            }
            let _ = parse(&input[..n]);
        }
        Framing::Invalid => {
            // Once refused, more bytes never make it a header.
            let mut longer = input.to_vec();
            longer.extend_from_slice(b"\r\n");
            assert_eq!(frame(&longer), Framing::Invalid);
        }
        Framing::Incomplete => {
            assert!(input.len() < V2_MAX_BYTES);
        }
    }
});
