//! STUB: SigV4 signing (being written).
