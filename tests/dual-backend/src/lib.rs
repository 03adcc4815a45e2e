//! Test-only crate: see `tests/dual_backend.rs`. Its dependency graph
//! enables both of `jsonwebtoken`'s crypto backends (`aws_lc_rs` through
//! tower-auth, `rust_crypto` directly), as an application's may when another
//! crate uses jsonwebtoken with its pure-Rust backend.
