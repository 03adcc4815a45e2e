//! The listen address of the examples: `--addr <ip:port>`, else `PORT` on
//! 127.0.0.1, else 127.0.0.1:8080.

use std::net::SocketAddr;

/// Where the example listens.
pub(crate) fn listen_addr() -> SocketAddr {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--addr" {
            if let Some(addr) = args.next().and_then(|a| a.parse().ok()) {
                return addr;
            }
        }
    }
    let port = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    SocketAddr::from(([127, 0, 0, 1], port))
}
