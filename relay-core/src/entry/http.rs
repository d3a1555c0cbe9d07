//! HTTP proxy requests (placeholder).
