//! A JSON scanner for the stream decoders' fast path: it reads the everyday shape of a
//! provider's chunk without `serde`, and gives up (`None`) on anything it would not read
//! exactly as `serde_json` does: an escape in a key, a `\u` surrogate, nesting deeper than
//! [`MAX_DEPTH`], a number it does not need, any syntax error. The caller then decodes the same
//! bytes with `serde_json`, whose answer (or error) stands, so the scanner never accepts a
//! document `serde_json` rejects nor reads one differently (the decoders' tests compare both on
//! generated and mutated chunks).
//!
//! Why: a 170-byte chunk costs `serde_json` about 4k instructions to decode into borrowed
//! structs (2.7k only to skip it); this reads it in a fraction of that.

use std::borrow::Cow;

use super::lenient::{Str, U64};

/// Deeper nesting gives up (`serde_json`'s own limit is 128).
pub(crate) const MAX_DEPTH: u32 = 64;

/// Longer integer parts give up (an `f64` overflows past 308 digits).
const MAX_INT_DIGITS: usize = 300;

/// Bytes that end the fast run through a string: `"`, `\` and the control characters.
static STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// The known members of one object already read: the fast paths give up on a member given
/// twice, which serde's derive refuses.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Seen(u32);

impl Seen {
    /// Marks member `bit` read; `None` when it was already.
    pub(crate) fn once(&mut self, bit: u32) -> Option<()> {
        let m = 1 << bit;
        if self.0 & m != 0 {
            return None;
        }
        self.0 |= m;
        Some(())
    }

    /// A lenient `Str` member (a string or `null`), once.
    #[inline]
    pub(crate) fn str<'a>(&mut self, bit: u32, p: &mut Scan<'a>) -> Option<Str<'a>> {
        self.once(bit)?;
        p.string_or_null().map(Str)
    }
}

/// A cursor over one JSON document. Every method returns `None` when it gives up.
pub(crate) struct Scan<'a> {
    s: &'a str,
    i: usize,
    depth: u32,
}

// === impl Scan ===

impl<'a> Scan<'a> {
    pub(crate) fn new(s: &'a str) -> Self {
        Scan { s, i: 0, depth: 0 }
    }

    #[inline]
    fn bytes(&self) -> &'a [u8] {
        self.s.as_bytes()
    }

    #[inline]
    fn ws(&mut self) {
        let b = self.bytes();
        let mut i = self.i;
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = b.get(i) {
            i += 1;
        }
        self.i = i;
    }

    /// The first byte of the next value (after whitespace), not consumed.
    #[inline]
    pub(crate) fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.bytes().get(self.i).copied()
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    /// Only whitespace is left.
    pub(crate) fn end(&mut self) -> Option<()> {
        self.ws();
        (self.i == self.s.len()).then_some(())
    }

    /// A cursor at byte `at` of `s`, inside `depth` containers: to go on reading a document
    /// whose first `at` bytes are those of one read before, up to that point.
    pub(crate) fn resume(s: &'a str, at: usize, depth: u32) -> Self {
        Scan { s, i: at, depth }
    }

    /// Where the cursor is.
    pub(crate) fn at(&self) -> usize {
        self.i
    }

    /// Reads an object: `member` gets each key with the cursor at its value, which it must
    /// consume (its `None` gives up).
    #[inline]
    pub(crate) fn members(&mut self, member: impl FnMut(&'a str, &mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        self.enter()?;
        self.member_loop(true, member)
    }

    /// The rest of an object of which at least one member was read, as [`Self::members`].
    #[inline]
    pub(crate) fn more_members(
        &mut self,
        member: impl FnMut(&'a str, &mut Self) -> Option<()>,
    ) -> Option<()> {
        self.member_loop(false, member)
    }

    #[inline]
    fn member_loop(
        &mut self,
        mut first: bool,
        mut member: impl FnMut(&'a str, &mut Self) -> Option<()>,
    ) -> Option<()> {
        while self.more(&mut first, b'}')? {
            self.ws();
            let key = self.plain_string()?;
            self.eat(b':')?;
            member(key, self)?;
        }
        Some(())
    }

    /// Reads an array: `element` gets the cursor at each element, which it must consume.
    #[inline]
    pub(crate) fn elements(&mut self, mut element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        self.enter()?;
        let mut first = true;
        while self.more(&mut first, b']')? {
            element(self)?;
        }
        Some(())
    }

    /// `null`, as `None`, or a value `read` reads, as `Some`.
    #[inline]
    pub(crate) fn nullable<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        match self.peek()? {
            b'n' => self.null().map(|_| None),
            _ => read(self).map(Some),
        }
    }

    /// Whether another member or element follows in the container being read: `false` once its
    /// `close` byte is consumed. `first` is `true` before the first one and kept by the caller.
    fn more(&mut self, first: &mut bool, close: u8) -> Option<bool> {
        match self.peek()? {
            c if c == close => {
                self.i += 1;
                self.depth -= 1;
                return Some(false);
            }
            b',' if !*first => self.i += 1,
            _ if *first => {}
            _ => return None,
        }
        *first = false;
        Some(true)
    }

    /// `null`.
    pub(crate) fn null(&mut self) -> Option<()> {
        self.literal(b"null")
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.ws();
        let b = self.bytes();
        (b.get(self.i..self.i + word.len())? == word).then(|| self.i += word.len())
    }

    /// A string without escapes, borrowed (keys).
    #[inline]
    fn plain_string(&mut self) -> Option<&'a str> {
        let b = self.bytes();
        if b.get(self.i) != Some(&b'"') {
            return None;
        }
        let start = self.i + 1;
        let j = find_stop(b, start)?;
        if b[j] != b'"' {
            return None;
        }
        self.i = j + 1;
        // `start` and `j` sit next to ASCII quotes: both are char boundaries.
        self.s.get(start..j)
    }

    /// A string value, borrowed when it has no escapes.
    #[inline]
    pub(crate) fn string(&mut self) -> Option<Cow<'a, str>> {
        self.ws();
        let b = self.bytes();
        if b.get(self.i) != Some(&b'"') {
            return None;
        }
        let start = self.i + 1;
        let j = find_stop(b, start)?;
        match b[j] {
            b'"' => {
                self.i = j + 1;
                self.s.get(start..j).map(Cow::Borrowed)
            }
            b'\\' => self.escaped(start, j).map(Cow::Owned),
            _ => None, // a control character
        }
    }

    /// The rest of a string from its first escape at `j`, decoded.
    fn escaped(&mut self, start: usize, mut j: usize) -> Option<String> {
        let b = self.bytes();
        let mut out = String::with_capacity(j - start + 16);
        out.push_str(self.s.get(start..j)?);
        loop {
            match *b.get(j)? {
                b'"' => {
                    self.i = j + 1;
                    return Some(out);
                }
                b'\\' => {
                    let (c, next) = escape(b, j + 1)?;
                    out.push(c);
                    j = next;
                }
                c if c < 0x20 => return None,
                _ => {
                    let run = j;
                    j = find_stop(b, j)?;
                    out.push_str(self.s.get(run..j)?);
                }
            }
        }
    }

    /// Skips one string, validating it.
    #[inline]
    fn skip_string(&mut self) -> Option<()> {
        let b = self.bytes();
        let mut j = self.i + 1;
        loop {
            j = find_stop(b, j)?;
            match b[j] {
                b'"' => {
                    self.i = j + 1;
                    return Some(());
                }
                b'\\' => j = escape(b, j + 1)?.1,
                _ => return None,
            }
        }
    }

    /// A string, or `None` inside `Some` for `null` (the lenient `Str` of a field that may be
    /// `null`); any other value gives up.
    #[inline]
    pub(crate) fn string_or_null(&mut self) -> Option<Option<Cow<'a, str>>> {
        self.nullable(Self::string)
    }

    /// A non-negative integer that fits a `u64` (anything else, floats included, gives up).
    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.ws();
        let b = self.bytes();
        let start = self.i;
        let mut n: u64 = 0;
        let mut j = start;
        while let Some(&c @ b'0'..=b'9') = b.get(j) {
            n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
            j += 1;
        }
        if j == start || (b[start] == b'0' && j > start + 1) {
            return None;
        }
        if matches!(b.get(j), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        self.i = j;
        Some(n)
    }

    /// The lenient `U64` of a field that is an integer or `null` (anything else gives up).
    pub(crate) fn u64_or_null(&mut self) -> Option<U64> {
        self.nullable(Self::u64).map(U64)
    }

    /// Skips one value and returns where it lies (whitespace around it excluded).
    pub(crate) fn skip_span(&mut self) -> Option<std::ops::Range<usize>> {
        self.ws();
        let start = self.i;
        self.skip()?;
        Some(start..self.i)
    }

    /// Skips one value and returns its text (whitespace around it excluded).
    pub(crate) fn skip_raw(&mut self) -> Option<&'a str> {
        let at = self.skip_span()?;
        self.s.get(at)
    }

    /// Skips one number, validating JSON's grammar for it. Gives up on an exponent and on
    /// more than [`MAX_INT_DIGITS`] integer digits: the numbers a decode into `f64` could find
    /// out of range (`serde_json` refuses those where it decodes, not where it skips).
    fn skip_number(&mut self) -> Option<()> {
        let b = self.bytes();
        let mut j = self.i;
        if b.get(j) == Some(&b'-') {
            j += 1;
        }
        match b.get(j)? {
            b'0' => j += 1,
            b'1'..=b'9' => {
                let k = digits(b, j);
                if k - j > MAX_INT_DIGITS {
                    return None;
                }
                j = k;
            }
            _ => return None,
        }
        if b.get(j) == Some(&b'.') {
            let k = digits(b, j + 1);
            if k == j + 1 {
                return None;
            }
            j = k;
        }
        if matches!(b.get(j), Some(b'e' | b'E')) {
            return None;
        }
        self.i = j;
        Some(())
    }

    /// Skips one value of any type, validating it.
    pub(crate) fn skip(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.skip_string(),
            b'{' => self.members(|_, p| p.skip()),
            b'[' => self.elements(Self::skip),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.null(),
            _ => self.skip_number(),
        }
    }

    /// Reads an object: the members named in `fields` as their kinds (one given twice gives
    /// up, as the derive the kinds stand for refuses it), the others skipped. With `list`,
    /// every member's key and text go to it too, in order.
    #[inline]
    pub(crate) fn typed_members<const N: usize>(
        &mut self,
        fields: &[(&str, Kind); N],
        mut list: Option<&mut Vec<(Cow<'a, str>, &'a str)>>,
    ) -> Option<[Field<'a>; N]> {
        let mut typed = [const { Field::Absent }; N];
        self.members(|key, p| {
            let raw = match fields.iter().position(|(name, _)| *name == key) {
                None if list.is_none() => return p.skip(),
                None => p.skip_raw()?,
                Some(i) if typed[i] != Field::Absent => return None,
                Some(i) => {
                    let (f, raw) = p.raw_of(|p| p.field(fields[i].1))?;
                    typed[i] = f;
                    raw
                }
            };
            if let Some(list) = list.as_deref_mut() {
                list.push((Cow::Borrowed(key), raw));
            }
            Some(())
        })?;
        Some(typed)
    }

    /// Reads one value with `read` and returns its text too (whitespace around it excluded).
    #[inline]
    pub(crate) fn raw_of<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<(T, &'a str)> {
        self.ws();
        let start = self.i;
        let v = read(self)?;
        Some((v, self.s.get(start..self.i)?))
    }

    /// A member's value read as `kind` expects it, as a derived `Deserialize` of the matching
    /// `Option` would (see [`Kind`]); gives up on a value of another type.
    pub(crate) fn field(&mut self, kind: Kind) -> Option<Field<'a>> {
        let c = self.peek()?;
        if c == b'n' {
            self.null()?;
            return Some(Field::Null);
        }
        Some(match kind {
            Kind::Str => Field::Str(self.string()?),
            Kind::Objects => {
                let mut n = 0;
                self.elements(|p| {
                    if p.peek()? != b'{' {
                        return None;
                    }
                    n += 1;
                    p.skip()
                })?;
                Field::Count(n)
            }
            Kind::Bool if c == b't' || c == b'f' => self.skip().map(|_| Field::Ok)?,
            Kind::U64 => Field::U64(self.u64()?),
            Kind::U32 => Field::U64(self.u64().filter(|&n| n <= u64::from(u32::MAX))?),
            Kind::F64 if c == b'-' || c.is_ascii_digit() => self.skip().map(|_| Field::Ok)?,
            Kind::Bool | Kind::F64 => return None,
        })
    }
}

/// The type a request member must have, as the admission checks read it ([`Scan::field`]).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    /// `Option<String>`.
    Str,
    /// An array of objects, counted (`Option<Vec<_>>` of a map type).
    Objects,
    Bool,
    U64,
    U32,
    F64,
}

/// A member's value as [`Scan::field`] read it (`Absent` and `Null` both read as `None`).
#[derive(Debug, PartialEq)]
pub(crate) enum Field<'a> {
    Absent,
    Null,
    Str(Cow<'a, str>),
    Count(usize),
    U64(u64),
    /// A boolean or a number where one is expected (nothing more is kept of it).
    Ok,
}

impl<'a> Field<'a> {
    pub(crate) fn str(&self) -> Option<&str> {
        match self {
            Field::Str(s) => Some(s),
            _ => None,
        }
    }
    pub(crate) fn count(&self) -> Option<usize> {
        match self {
            Field::Count(n) => Some(*n),
            _ => None,
        }
    }
    pub(crate) fn u64(&self) -> Option<u64> {
        match self {
            Field::U64(n) => Some(*n),
            _ => None,
        }
    }
}

/// The index of the first `"`, `\\` or control character at or after `j`, 8 bytes at a time
/// (`None`: the text ends first).
#[inline]
pub(crate) fn find_stop(b: &[u8], mut j: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(word) = b.get(j..j + 8) {
        let w = u64::from_le_bytes(word.try_into().ok()?);
        // A byte's high bit is set in each term where it is `"`, `\` or below 0x20 (the first
        // such byte exactly; borrows may flag bytes after it, which are never read).
        let quote = w ^ (ONES * u64::from(b'"'));
        let slash = w ^ (ONES * u64::from(b'\\'));
        let hits = (quote.wrapping_sub(ONES) & !quote
            | slash.wrapping_sub(ONES) & !slash
            | w.wrapping_sub(ONES * 0x20) & !w)
            & HIGH;
        if hits != 0 {
            return Some(j + (hits.trailing_zeros() / 8) as usize);
        }
        j += 8;
    }
    while !STOP[*b.get(j)? as usize] {
        j += 1;
    }
    Some(j)
}

fn digits(b: &[u8], mut j: usize) -> usize {
    while matches!(b.get(j), Some(b'0'..=b'9')) {
        j += 1;
    }
    j
}

/// The escape after a `\` at `j`: its character and the index after it. A `\u` in the
/// surrogate range gives up (pairs and lone halves are left to `serde_json`).
fn escape(b: &[u8], j: usize) -> Option<(char, usize)> {
    let c = match *b.get(j)? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => {
            let hex = b.get(j + 1..j + 5)?;
            let mut n = 0u32;
            for &h in hex {
                n = n * 16 + (h as char).to_digit(16)?;
            }
            return char::from_u32(n).map(|c| (c, j + 5));
        }
        _ => return None,
    };
    Some((c, j + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skips(s: &str) -> bool {
        let mut p = Scan::new(s);
        p.skip().is_some() && p.end().is_some()
    }

    #[test]
    fn skips_exactly_what_serde_json_accepts() {
        let cases = [
            "0",
            "-0",
            "1",
            "-12",
            "1.5",
            "1e3",
            "1E+3",
            "1.5e-3",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "1e+",
            "+1",
            "true",
            "false",
            "null",
            "nul",
            "tru",
            "\"\"",
            "\"a\\nb\"",
            "\"\\u00e9\"",
            "\"\\x\"",
            "\"\\u12\"",
            "\"a\u{1}\"",
            "[]",
            "[1,2]",
            "[1,]",
            "[,1]",
            "[1 2]",
            "{}",
            "{\"a\":1}",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{1:2}",
            "{\"a\":[{\"b\":null}]}",
            " [ 1 , { } ] ",
            "[1]x",
            "\"é\"",
        ];
        for c in cases {
            let serde = serde_json::from_str::<serde::de::IgnoredAny>(c).is_ok();
            // Exponents are left to serde_json (it may find them out of range).
            let exponent = c.contains(['e', 'E']) && !c.contains(['"', 't', 'f', 'n']);
            assert_eq!(skips(c), serde && !exponent, "{c:?}");
        }
        assert!(!skips(&"9".repeat(MAX_INT_DIGITS + 1)));
        assert!(skips(&"9".repeat(MAX_INT_DIGITS)));
    }

    #[test]
    fn strings_decode_like_serde_json_and_borrow_without_escapes() {
        for c in ["\"plain\"", "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"", "\"caf\\u00e9 \u{1F600}\"", "\"\""] {
            let want: String = serde_json::from_str(c).unwrap();
            assert_eq!(Scan::new(c).string().as_deref(), Some(want.as_str()), "{c}");
        }
        assert!(matches!(Scan::new("\"plain\"").string(), Some(Cow::Borrowed("plain"))));
        // Surrogates are left to serde_json.
        assert_eq!(Scan::new("\"\\ud83d\\ude00\"").string(), None);
    }

    #[test]
    fn gives_up_past_the_depth_limit() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(skips(&deep(MAX_DEPTH as usize)));
        assert!(!skips(&deep(MAX_DEPTH as usize + 1)));
    }

    #[test]
    fn find_stop_finds_the_first_stop_byte_at_every_offset() {
        for stop in ['"', '\\', '\u{0}', '\u{1f}'] {
            for len in 0..20 {
                for from in 0..=len {
                    let mut s: Vec<u8> =
                        (0..len).map(|i| [b'a', 0x20, 0x7f, 0xc3, b'!', 0x21][i % 6]).collect();
                    s.push(stop as u8);
                    s.extend_from_slice(b"\"\\\x01 tail");
                    assert_eq!(find_stop(&s, from), Some(len), "{stop:?} {len} {from}");
                }
                let plain = vec![b'x'; len];
                assert_eq!(find_stop(&plain, 0), None);
            }
        }
    }

    #[test]
    fn every_fast_path_agrees_with_serde_json_on_generated_documents() {
        // Documents of every shape the fast paths read, whole and mutated, through all of them.
        let mut g = testgen::Gen(0x6A09_E667_F3BC_C909);
        for i in 0..20_000 {
            let keys = [
                "model",
                "messages",
                "choices",
                "usage",
                "error",
                "prompt_tokens",
                "completion_tokens",
                "input_tokens",
                "stream",
                "max_tokens",
                "content",
                "id",
                "delta",
                "index",
            ];
            let n = g.below(6);
            let members: Vec<String> =
                (0..n).map(|_| format!("\"{}\":{}", g.pick(&keys), g.any(0))).collect();
            let mut s = format!("{{{}}}", members.join(","));
            if i % 2 == 1 {
                s = g.mutate(&s);
            }
            fast_paths_agree(s.as_bytes());
        }
    }

    #[test]
    fn u64_reads_plain_integers_only() {
        assert_eq!(Scan::new("0").u64(), Some(0));
        assert_eq!(Scan::new("18446744073709551615").u64(), Some(u64::MAX));
        for c in ["18446744073709551616", "-1", "1.0", "1e2", "01", "x"] {
            assert_eq!(Scan::new(c).u64(), None, "{c}");
        }
    }
}

/// Every fast path against its `serde_json` twin on the same bytes: panics where one accepts
/// what its twin refuses or reads it differently (the `scan_differential` fuzz target, tests).
#[cfg(any(test, feature = "fuzzing"))]
pub fn fast_paths_agree(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        super::openai_chat_stream::fast_path_agrees(text);
        super::anthropic_stream::fast_path_agrees(text);
    }
    super::anthropic_request::fast_path_agrees(data);
    super::validate::fast_path_agrees(data);
    super::passthrough::fast_path_agrees(data);
    super::stream_usage::fast_path_agrees(data);
    crate::admission::validate::fast_path_agrees(data);
    // The OpenAI chunks read from the previous chunk's head, against whole.
    super::openai_chat_stream::resume_agrees(data);
    // The SSE parser's in-place events, the stream cut every 1 to 16 bytes as its first byte says.
    let step = data.first().map_or(1, |b| usize::from(b % 16) + 1);
    super::sse::fast_path_agrees(data, || step);
}

#[cfg(test)]
pub(crate) mod testgen {
    /// A small deterministic generator of JSON-like text (xorshift) for the fast paths' tests:
    /// values of every type, objects whose members may be missing, repeated or of another type,
    /// and character edits that break the syntax.
    pub(crate) struct Gen(pub(crate) u64);

    impl Gen {
        pub(crate) fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }

        pub(crate) fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[self.below(from.len())]
        }

        pub(crate) fn ws(&mut self) -> &'static str {
            ["", "", "", " ", "\n", "\t", "\r\n "][self.below(7)]
        }

        pub(crate) fn string(&mut self) -> String {
            let parts = [
                "hi",
                "The ",
                "",
                "é",
                "😀",
                "\\n",
                "\\\"",
                "\\\\",
                "\\/",
                "\\t",
                "\\u00e9",
                "\\u0041",
                "\\b\\f\\r",
                "a b",
            ];
            // Rarer: what the fast path leaves to serde_json, or what is not JSON at all.
            let odd = ["\\ud83d\\ude00", "\\ud83d", "\\ude00x", "\\x", "\\u12", "\u{1}"];
            let mut s = String::from("\"");
            for _ in 0..self.below(4) {
                let part = if self.below(40) == 0 { self.pick(&odd) } else { self.pick(&parts) };
                s.push_str(part);
            }
            s.push('"');
            s
        }

        pub(crate) fn number(&mut self) -> String {
            self.pick(&[
                "0",
                "1",
                "7",
                "42",
                "-1",
                "-0",
                "1.5",
                "2e3",
                "1E+2",
                "0.0",
                "01",
                "1.",
                "-",
                "18446744073709551616",
                "3",
            ])
            .to_owned()
        }

        /// A count: a plain integer, now and then any number (or not one).
        pub(crate) fn count(&mut self) -> String {
            if self.below(10) == 0 {
                self.number()
            } else {
                self.below(100_000).to_string()
            }
        }

        pub(crate) fn any(&mut self, depth: usize) -> String {
            match self.below(if depth > 3 { 5 } else { 8 }) {
                0 | 1 => self.string(),
                2 => self.number(),
                3 => self.pick(&["true", "false"]).to_owned(),
                4 => "null".to_owned(),
                5 => {
                    let n = self.below(3);
                    let items: Vec<String> = (0..n).map(|_| self.any(depth + 1)).collect();
                    format!("[{}]", items.join(","))
                }
                _ => {
                    let keys = ["a", "id", "content", "type", "index"];
                    let n = self.below(3);
                    let items: Vec<String> =
                        (0..n).map(|_| format!("\"{}\":{}", self.pick(&keys), self.any(depth + 1))).collect();
                    format!("{{{}}}", items.join(","))
                }
            }
        }

        /// An object from `(key, value)` candidates: each present or not, some twice, some with a
        /// value of any type instead.
        pub(crate) fn object(&mut self, members: Vec<(&str, String)>) -> String {
            let mut out = Vec::new();
            for (k, v) in members {
                if self.below(5) == 0 {
                    continue;
                }
                let v = if self.below(12) == 0 { self.any(2) } else { v };
                out.push(format!("{}\"{k}\"{}:{}{v}{}", self.ws(), self.ws(), self.ws(), self.ws()));
                if self.below(25) == 0 {
                    out.push(format!("\"{k}\":{}", self.any(2)));
                }
            }
            if self.below(4) == 0 {
                let v = self.any(1);
                out.insert(self.below(out.len() + 1), format!("\"x_unknown\":{v}"));
            }
            format!("{{{}}}", out.join(","))
        }

        /// A differential run: `n` documents from `doc`, every second one mutated, read by the
        /// fast path (`fast`, its result as `Debug` text, or `None` where it gives up) and by
        /// serde (`serde`). Panics where the fast path accepts what serde rejects or reads it
        /// differently; returns, of the documents serde accepts, how many there were and how
        /// many the fast path read, `[unmutated, mutated]` each.
        pub(crate) fn differential(
            &mut self,
            n: usize,
            mut doc: impl FnMut(&mut Gen) -> String,
            serde: impl Fn(&str) -> Result<String, serde_json::Error>,
            fast: impl Fn(&str) -> Option<String>,
        ) -> ([usize; 2], [usize; 2]) {
            let mut valid = [0; 2];
            let mut read = [0; 2];
            for i in 0..n {
                let mutated = i % 2;
                let mut s = doc(self);
                if mutated == 1 {
                    s = self.mutate(&s);
                }
                let want = serde(&s);
                valid[mutated] += usize::from(want.is_ok());
                let Some(got) = fast(&s) else { continue };
                read[mutated] += 1;
                match want {
                    Ok(want) => assert_eq!(got, want, "{s}"),
                    Err(e) => panic!("the fast path accepted what serde rejects ({e}): {s}"),
                }
            }
            eprintln!("valid {valid:?}, fast {read:?}");
            (valid, read)
        }

        pub(crate) fn str_or_null(&mut self) -> String {
            if self.below(4) == 0 {
                "null".to_owned()
            } else {
                self.string()
            }
        }

        /// One to three character edits (delete, insert, replace) that keep the text UTF-8.
        pub(crate) fn mutate(&mut self, s: &str) -> String {
            let mut chars: Vec<char> = s.chars().collect();
            let alphabet: Vec<char> = "{}[]\",:\\ 0123456789-.eEntfrua\u{1}é".chars().collect();
            for _ in 0..=self.below(3) {
                let at = self.below(chars.len() + 1);
                let c = alphabet[self.below(alphabet.len())];
                match self.below(3) {
                    0 if at < chars.len() => {
                        chars.remove(at);
                    }
                    1 if at < chars.len() => chars[at] = c,
                    _ => chars.insert(at, c),
                }
            }
            chars.into_iter().collect()
        }
    }
}
