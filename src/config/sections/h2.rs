//! `[server.h2]`: the raw HTTP/2 settings the relay advertises and keeps, each with its default
//! and the reason for it (measured in benches/RESULTS.md, "h2 settings chosen for SSE");
//! validated into `server::H2Settings` by `config::settings`, never used raw.

use serde::Deserialize;

/// `[server.h2]`: HTTP/2 server settings (RFC 9113 §6.5.2), all set explicitly.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct H2Config {
    /// Streams a client may have reset before we accept them (Rapid Reset guard), count.
    /// Default 20.
    pub max_pending_accept_reset_streams: usize,
    /// Streams we may reset for protocol errors before the connection is closed
    /// (CVE-2025-8671 guard), count. Default 1024.
    pub max_local_error_reset_streams: usize,
    /// SETTINGS_MAX_HEADER_LIST_SIZE, bytes. Default 16384.
    pub max_header_list_size: u32,
    /// SETTINGS_HEADER_TABLE_SIZE we advertise (RFC 9113 §6.5.2): the HPACK dynamic table
    /// (RFC 7541 §2.3.2) a client may keep in our decoder for the connection's life, bytes.
    /// Default 0: an SSE connection carries a few long-lived requests, so indexing their
    /// headers saves a few hundred bytes once, while the table would hold up to 4 KiB (a
    /// browser's cookies and client hints) per connection for its whole life.
    pub header_table_size: u32,
    /// Interval between keep-alive PINGs, ms (0 disables). Default 20000.
    pub keep_alive_interval_ms: u64,
    /// Time to wait for a PING ack before closing the connection, ms. Default 20000.
    pub keep_alive_timeout_ms: u64,
    /// Bytes buffered per stream for sending before the body stops being polled. Default 65536.
    pub max_send_buf_size: usize,
    /// SETTINGS_INITIAL_WINDOW_SIZE we advertise (RFC 9113 §6.5.2, §6.9.2): request-body bytes
    /// a client may send on one stream before the relay reads them, bytes (1..=2^31-1).
    /// Default 1048576, hyper's: SSE requests carry no body, so the value costs nothing on an
    /// SSE stream (measured in benches/RESULTS.md, "h2 settings"), and a passthrough upload is
    /// not slowed below window / round-trip (1 MiB per 50 ms is 20 MB/s).
    pub initial_stream_window_size: u32,
    /// The connection's flow-control window we grant (RFC 9113 §6.9.1, §6.9.2): request-body
    /// bytes a client may have in flight on all its streams together, so the most of its
    /// unread uploads the relay can be made to hold per connection, bytes (65535..=2^31-1:
    /// every connection starts at 65535 and the window can only grow). Default 1048576,
    /// hyper's, for the same reasons.
    pub initial_connection_window_size: u32,
    /// SETTINGS_MAX_FRAME_SIZE we advertise (RFC 9113 §6.5.2): the largest frame payload a
    /// client may send us, bytes (16384..=16777215). Default 16384, the protocol's initial
    /// value: a client's frames to an SSE relay are HEADERS, WINDOW_UPDATE and PING, and
    /// frames we send are sized by the client's own setting.
    pub max_frame_size: u32,
}

impl Default for H2Config {
    fn default() -> Self {
        Self {
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 1024,
            max_header_list_size: 16 * 1024,
            header_table_size: 0,
            keep_alive_interval_ms: 20_000,
            keep_alive_timeout_ms: 20_000,
            max_send_buf_size: 64 * 1024,
            initial_stream_window_size: 1 << 20,
            initial_connection_window_size: 1 << 20,
            max_frame_size: 16_384,
        }
    }
}
