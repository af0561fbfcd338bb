//! STUB: AWS event-stream framing decoder. To be replaced.
