//! Support code for the end-to-end suite (loopback targets, hash checks).
