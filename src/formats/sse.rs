//! STUB: SSE framing. To be replaced.
