//! Tests for `router.rs`.
use super::*;
