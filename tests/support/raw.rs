//! Raw-socket helpers for tests that speak below HTTP (silent connections, PROXY headers).

use tokio::io::{AsyncRead, AsyncReadExt};

use super::WAIT;

/// Reads from `stream` until the peer closes it; panics if it stays open past [`WAIT`].
pub async fn until_closed<R: AsyncRead + Unpin>(mut stream: R) {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(WAIT, async {
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                return;
            }
        }
    })
    .await
    .expect("the relay closes the connection");
}
