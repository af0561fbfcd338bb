//! The one redaction every log line, alert and error detail goes through: secrets in URLs
//! (`?key=`, `access_token=`, `sig=` …), in headers (`authorization`, `x-api-key`, cookies …)
//! and in free text (`sk-…`, `sk-ant-…`, `AIza…`, `AKIA…`, `Bearer …`, JWTs, `"api_key": "…"`).
//! Masking is total: a secret becomes `***` after at most its public prefix (`sk-ant-***`),
//! never a suffix or a hash that could confirm a guess. Allocation-free when nothing matches.
//! Does not decide what is logged (see `access_log.rs`).

use std::borrow::Cow;

/// What a secret value is replaced with.
pub const MASK: &str = "***";

/// URL query parameters whose value is a secret (compared ASCII case-insensitively).
const SECRET_PARAMS: &[&str] = &[
    "key",
    "api-key",
    "api_key",
    "apikey",
    "x-api-key",
    "access_token",
    "refresh_token",
    "id_token",
    "token",
    "auth",
    "authorization",
    "sig",
    "signature",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "x-goog-signature",
    "x-goog-credential",
    "client_secret",
    "secret",
    "password",
    "passwd",
];

/// JSON member names whose string value is a secret (`"api_key": "…"` in a logged body).
const SECRET_JSON_MEMBERS: &[&str] = &[
    "api_key",
    "api-key",
    "apikey",
    "x-api-key",
    "authorization",
    "access_token",
    "refresh_token",
    "client_secret",
    "secret",
    "password",
    "aws_secret_access_key",
    "master_key",
];

/// Header names whose whole value is a secret.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "cookie",
    "set-cookie",
    "x-amz-security-token",
];

/// Masks secret query values in a request path and query (or a bare query string), and any
/// token-shaped secret elsewhere in it. `"/v1beta/models?key=AIza…&alt=sse"` →
/// `"/v1beta/models?key=***&alt=sse"`.
pub fn redact_url(path_and_query: &str) -> Cow<'_, str> {
    let bare_query =
        !path_and_query.starts_with('/') && !path_and_query.contains('?') && path_and_query.contains('=');
    scan(path_and_query, bare_query)
}

/// Masks a header value when the header carries a credential; the auth scheme stays
/// (`Bearer ***`) so a log still says how the client authenticated. Other headers are
/// passed through `redact_text`.
pub fn redact_header<'a>(name: &str, value: &'a str) -> Cow<'a, str> {
    if !is_secret_header(name) {
        return redact_text(value);
    }
    let is_auth =
        name.eq_ignore_ascii_case("authorization") || name.eq_ignore_ascii_case("proxy-authorization");
    match value.trim_start().split_once(' ') {
        Some((scheme, rest)) if is_auth && !rest.trim().is_empty() && is_scheme(scheme) => {
            Cow::Owned(format!("{scheme} {MASK}"))
        }
        _ => Cow::Borrowed(MASK),
    }
}

/// Whether a header's value is a credential (the list above, plus any name that says so).
pub fn is_secret_header(name: &str) -> bool {
    let n = name.as_bytes();
    SECRET_HEADERS.iter().any(|h| h.as_bytes().eq_ignore_ascii_case(n))
        || ["token", "secret", "password", "api-key", "apikey", "credential"]
            .iter()
            .any(|w| n.windows(w.len()).any(|win| win.eq_ignore_ascii_case(w.as_bytes())))
}

/// Masks anything in free text that looks like a credential.
pub fn redact_text(s: &str) -> Cow<'_, str> {
    scan(s, false)
}

/// One pass over `s`; `query_at_start` treats `s` as a query string (a parameter may start at 0).
fn scan(s: &str, query_at_start: bool) -> Cow<'_, str> {
    let b = s.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        // After an escaped line break (`\r\n` in a debug-printed byte string) is a boundary too.
        let escaped_break = i >= 2 && b[i - 2] == b'\\' && matches!(b[i - 1], b'n' | b'r' | b't');
        let boundary = i == 0 || !is_token_byte(b[i - 1]) || escaped_break;
        let hit = match b[i] {
            b'?' | b'&' => secret_param(b, i + 1),
            _ if i == 0 && query_at_start => secret_param(b, 0),
            b'"' => secret_json_member(b, i),
            _ if boundary => secret_header_line(b, i).or_else(|| secret_token(b, i)),
            _ => None,
        };
        match hit {
            Some(Hit { keep_to, end }) => {
                let o = out.get_or_insert_with(|| String::with_capacity(s.len()));
                o.push_str(&s[copied..keep_to]);
                o.push_str(MASK);
                copied = end;
                i = end.max(i + 1);
            }
            None => i += 1,
        }
    }
    match out {
        None => Cow::Borrowed(s),
        Some(mut o) => {
            o.push_str(&s[copied..]);
            Cow::Owned(o)
        }
    }
}

/// A match: keep `s[..keep_to]` (the public prefix), mask `s[keep_to..end]`.
struct Hit {
    keep_to: usize,
    end: usize,
}

/// `name=value` at `at` with a secret name: masks the value.
fn secret_param(b: &[u8], at: usize) -> Option<Hit> {
    let eq = at + b[at..].iter().position(|&c| c == b'=')?;
    let name = &b[at..eq];
    if name.is_empty()
        || name.len() > 32
        || !SECRET_PARAMS.iter().any(|p| p.as_bytes().eq_ignore_ascii_case(name))
    {
        return None;
    }
    let start = eq + 1;
    let end = start
        + b[start..]
            .iter()
            .position(|&c| {
                matches!(c, b'&' | b'#' | b'"' | b'\'' | b'<' | b'>' | b')') || c.is_ascii_whitespace()
            })
            .unwrap_or(b.len() - start);
    (end > start && &b[start..end] != MASK.as_bytes()).then_some(Hit { keep_to: start, end })
}

/// `"name": "value"` at the opening quote of a secret member name: masks the string value.
fn secret_json_member(b: &[u8], at: usize) -> Option<Hit> {
    let close = at + 1 + b.get(at + 1..)?.iter().take(40).position(|&c| c == b'"')?;
    let name = &b[at + 1..close];
    // Header maps print as `{"x-goog-api-key": "…"}` in debug dumps.
    let header = std::str::from_utf8(name).is_ok_and(is_secret_header);
    if !header && !SECRET_JSON_MEMBERS.iter().any(|m| m.as_bytes().eq_ignore_ascii_case(name)) {
        return None;
    }
    let mut j = close + 1;
    while b.get(j).is_some_and(|c| c.is_ascii_whitespace()) {
        j += 1;
    }
    if b.get(j) != Some(&b':') {
        return None;
    }
    j += 1;
    while b.get(j).is_some_and(|c| c.is_ascii_whitespace()) {
        j += 1;
    }
    if b.get(j) != Some(&b'"') {
        return None;
    }
    let start = j + 1;
    let mut k = start;
    while k < b.len() && b[k] != b'"' {
        k += if b[k] == b'\\' { 2 } else { 1 };
    }
    let end = k.min(b.len());
    (end > start && &b[start..end] != MASK.as_bytes()).then_some(Hit { keep_to: start, end })
}

/// `name: value` of a credential header (as in a raw HTTP head) at a word boundary: masks the
/// value to the end of the line (or a closing quote), keeping an `Authorization` scheme.
fn secret_header_line(b: &[u8], at: usize) -> Option<Hit> {
    let rest = &b[at..];
    let name = SECRET_HEADERS
        .iter()
        .find(|h| rest.len() > h.len() && rest[..h.len()].eq_ignore_ascii_case(h.as_bytes()))?;
    let mut j = at + name.len();
    if b[j] != b':' {
        return None;
    }
    j += 1;
    while b.get(j).is_some_and(|&c| c == b' ' || c == b'\t') {
        j += 1;
    }
    // A backslash ends it too: `\r\n` escaped in a debug-printed byte string.
    let end = j + b[j..]
        .iter()
        .position(|&c| matches!(c, b'\r' | b'\n' | b'"' | b'\'' | b'\\'))
        .unwrap_or(b.len() - j);
    let value = &b[j..end];
    // Keep `Bearer ` / `Basic ` so a log still says how the client authenticated.
    let start = match value.iter().position(|&c| c == b' ') {
        Some(sp)
            if name.contains("authorization")
                && sp > 0
                && value[..sp].iter().all(|c| c.is_ascii_alphanumeric()) =>
        {
            j + sp + 1
        }
        _ => j,
    };
    (end > start && &b[start..end] != MASK.as_bytes()).then_some(Hit { keep_to: start, end })
}

/// A token-shaped secret starting at a word boundary.
fn secret_token(b: &[u8], at: usize) -> Option<Hit> {
    let rest = &b[at..];
    let run = |from: usize, pred: fn(u8) -> bool| from + b[from..].iter().take_while(|&&c| pred(c)).count();
    if rest.starts_with(b"sk-") {
        let end = run(at + 3, is_token_byte);
        if end - (at + 3) < 8 {
            return None;
        }
        // Keep a vendor prefix such as `sk-ant-`, `sk-proj-`, `sk-gw-`: short, letters only.
        let word = run(at + 3, |c| c.is_ascii_lowercase());
        let keep_to = if (2..=8).contains(&(word - (at + 3))) && b.get(word) == Some(&b'-') {
            word + 1
        } else {
            at + 3
        };
        return Some(Hit { keep_to, end });
    }
    if rest.starts_with(b"AIza") {
        let end = run(at + 4, is_token_byte);
        return (end - (at + 4) >= 20).then_some(Hit { keep_to: at + 4, end });
    }
    if rest.starts_with(b"AKIA") || rest.starts_with(b"ASIA") {
        let end = run(at + 4, |c| c.is_ascii_uppercase() || c.is_ascii_digit());
        let whole = end - (at + 4) == 16 && !b.get(end).is_some_and(|&c| is_token_byte(c));
        return whole.then_some(Hit { keep_to: at + 4, end });
    }
    if rest.len() > 7 && rest[..7].eq_ignore_ascii_case(b"bearer ") {
        let start = run(at + 7, |c| c == b' ');
        let end = run(start, |c| {
            !c.is_ascii_whitespace()
                && !matches!(c, b'"' | b'\'' | b',' | b';' | b')' | b']' | b'}' | b'<' | b'>')
        });
        return (end > start && &b[start..end] != MASK.as_bytes()).then_some(Hit { keep_to: start, end });
    }
    if rest.starts_with(b"eyJ") {
        // A JWT: three base64url segments, the first two JSON (`eyJ` = `{"`).
        let h = run(at, is_b64url);
        let p = (b.get(h) == Some(&b'.')).then(|| run(h + 1, is_b64url))?;
        let s = (b.get(p) == Some(&b'.')).then(|| run(p + 1, is_b64url))?;
        return (p - h > 8).then_some(Hit { keep_to: at + 3, end: s });
    }
    None
}

fn is_token_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
}

fn is_b64url(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'='
}

fn is_scheme(s: &str) -> bool {
    !s.is_empty() && s.len() <= 24 && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
}

#[cfg(test)]
#[path = "redact_tests.rs"]
mod tests;
