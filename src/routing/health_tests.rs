//! Tests for `health.rs`.
use super::*;
