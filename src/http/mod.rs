//! The seamless-database JSON-over-HTTP protocol, served with axum.
