//! `llm-gateway audit verify`: checks the hash chain of `audit.jsonl` (SPEC section 6). Each
//! line is a JSON object whose `prev_hash` is the lowercase hex SHA-256 of the previous line's
//! exact bytes (without its newline); the first line's is 64 zeros. Pure: the caller reads the file.

use ring::digest::{digest, SHA256};
use serde_json::Value;

/// `prev_hash` of the first line.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What the check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainCheck {
    /// Every line links to the one before; `lines` lines were checked.
    Intact { lines: usize },
    /// The first line (1-based) that does not link, and why.
    Broken { line: usize, problem: String },
}

/// Check the chain over the bytes of an audit log. A final newline is optional.
pub fn verify_chain(log: &[u8]) -> ChainCheck {
    let mut lines: Vec<&[u8]> = log.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    let mut expected = GENESIS_HASH.to_string();
    for (i, line) in lines.iter().enumerate() {
        let n = i + 1;
        let broken = |problem: String| ChainCheck::Broken { line: n, problem };
        if line.is_empty() {
            return broken("empty line".into());
        }
        let value: Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) => return broken(format!("not JSON ({e})")),
        };
        let Some(prev) = value.get("prev_hash") else {
            return broken("no prev_hash field".into());
        };
        let Some(prev) = prev.as_str() else {
            return broken("prev_hash is not a string".into());
        };
        if prev != expected {
            let what = if n == 1 {
                "the first line's prev_hash is not 64 zeros".to_string()
            } else {
                format!("prev_hash does not match line {} (a line was edited, removed or inserted)", n - 1)
            };
            return broken(format!("{what}: expected {expected}, found {prev}"));
        }
        expected = hex_sha256(line);
    }
    ChainCheck::Intact { lines: lines.len() }
}

/// Lowercase hex SHA-256 of `bytes` (what the next line's `prev_hash` must be).
pub fn hex_sha256(bytes: &[u8]) -> String {
    digest(&SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chained log of `actions`, one line each, newline-terminated.
    fn chain(actions: &[&str]) -> Vec<String> {
        let mut prev = GENESIS_HASH.to_string();
        let mut lines = Vec::new();
        for (i, a) in actions.iter().enumerate() {
            let line = serde_json::json!({"time": format!("2026-11-30T00:00:0{i}Z"), "actor": "admin", "action": a, "prev_hash": prev}).to_string();
            prev = hex_sha256(line.as_bytes());
            lines.push(line);
        }
        lines
    }

    fn joined(lines: &[String]) -> Vec<u8> {
        lines.iter().flat_map(|l| format!("{l}\n").into_bytes()).collect()
    }

    #[test]
    fn an_intact_chain_is_ok_with_or_without_a_final_newline() {
        let lines = chain(&["create key", "update model", "rollback"]);
        assert_eq!(verify_chain(&joined(&lines)), ChainCheck::Intact { lines: 3 });
        let mut no_newline = joined(&lines);
        no_newline.pop();
        assert_eq!(verify_chain(&no_newline), ChainCheck::Intact { lines: 3 });
        assert_eq!(verify_chain(b""), ChainCheck::Intact { lines: 0 });
    }

    #[test]
    fn the_sha256_is_lowercase_hex() {
        assert_eq!(hex_sha256(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn an_edited_line_breaks_the_link_after_it() {
        let mut lines = chain(&["a", "b", "c", "d"]);
        lines[1] = lines[1].replace("\"b\"", "\"B\"");
        match verify_chain(&joined(&lines)) {
            ChainCheck::Broken { line, problem } => {
                assert_eq!(line, 3);
                assert!(problem.contains("does not match line 2"), "{problem}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_removed_line_and_a_bad_first_line_are_found() {
        let mut lines = chain(&["a", "b", "c"]);
        lines.remove(1);
        assert!(matches!(verify_chain(&joined(&lines)), ChainCheck::Broken { line: 2, .. }));
        let lines = chain(&["a", "b"]);
        let truncated_head = joined(&lines[1..]);
        match verify_chain(&truncated_head) {
            ChainCheck::Broken { line: 1, problem } => assert!(problem.contains("64 zeros"), "{problem}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lines_that_are_not_chain_entries_are_named() {
        let lines = chain(&["a"]);
        let cases: [(&[u8], &str); 4] = [
            (b"\n", "empty line"),
            (b"not json\n", "not JSON"),
            (b"{\"action\":\"x\"}\n", "no prev_hash"),
            (b"{\"prev_hash\":7}\n", "not a string"),
        ];
        for (tail, want) in cases {
            let mut log = joined(&lines);
            log.extend_from_slice(tail);
            match verify_chain(&log) {
                ChainCheck::Broken { line: 2, problem } => assert!(problem.contains(want), "{problem}"),
                other => panic!("{tail:?}: {other:?}"),
            }
        }
    }
}
