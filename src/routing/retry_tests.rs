//! Tests for `retry.rs`.
use super::*;
