//! Tests for `targets.rs`.
use super::*;
