//! Tests for `circuit.rs`.
use super::*;
