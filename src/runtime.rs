//! The one tokio runtime of the network edges: the HTTP receiver's listener,
//! the metrics listener and the HTTP outputs' senders run on it. The engine
//! never does: decoding, matching and windows stay synchronous on their own
//! thread, and meet the edges only through short locked queues
//! (`source/http/queue.rs`, `sink/delivery.rs`).

use std::io;
use std::sync::OnceLock;

use tokio::runtime::{Builder, Handle, Runtime};

/// Worker threads of the runtime. The edges do little work per request
/// (TLS, a JSON check of a received body, serialising an alert); two
/// threads keep one slow handshake from holding up the rest.
const WORKERS: usize = 2;

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// The runtime, started on first use and kept for the life of the process.
pub fn handle() -> io::Result<Handle> {
    let runtime = RUNTIME.get_or_init(|| {
        Builder::new_multi_thread()
            .worker_threads(WORKERS)
            .thread_name("saker-net")
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| e.to_string())
    });
    match runtime {
        Ok(rt) => Ok(rt.handle().clone()),
        Err(e) => Err(io::Error::other(format!(
            "cannot start the network runtime: {e}"
        ))),
    }
}
