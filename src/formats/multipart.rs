//! `multipart/form-data` as the transcription upload needs it, without holding the upload:
//! the boundary, the first `model` field's value in the prefix read so far, and a streaming
//! scanner that counts `model` parts so a second one is refused before it is forwarded.
//! Pure functions over bytes (fuzzed: `fuzz/fuzz_targets/multipart.rs`).

/// The boundary of a `multipart/form-data` content type.
pub fn boundary_of(content_type: &str) -> Option<String> {
    if !content_type.to_ascii_lowercase().starts_with("multipart/form-data") {
        return None;
    }
    let b = content_type.split(';').find_map(|p| p.trim().strip_prefix("boundary="))?;
    let b = b.trim_matches('"');
    (!b.is_empty()).then(|| b.to_string())
}

/// Byte range of the value of the first `model` field in `buf`, once that part is complete.
pub fn model_field(buf: &[u8], boundary: &str) -> Option<(usize, usize)> {
    let delim = format!("--{boundary}");
    let finder = memchr::memmem::Finder::new(delim.as_bytes());
    let mut at = finder.find(buf)?;
    loop {
        let part = at + delim.len();
        if buf[part..].starts_with(b"--") {
            return None; // the closing delimiter: what follows is not part of the form
        }
        let (headers_end, body_start) = headers_end(&buf[part..]).map(|(e, b)| (part + e, part + b))?;
        let next = finder.find(&buf[body_start..]).map(|p| p + body_start);
        let is_it = names_model(&buf[part..headers_end]);
        match next {
            Some(n) if is_it => {
                // The value ends before "\r\n--boundary".
                let end = if buf[..n].ends_with(b"\r\n") {
                    n - 2
                } else {
                    n - usize::from(buf[..n].ends_with(b"\n"))
                };
                return Some((body_start, end.max(body_start)));
            }
            Some(n) => at = n,
            None => return None,
        }
    }
}

/// The most bytes of one part's header block (`Content-Disposition` and friends).
pub const MAX_PART_HEADERS: usize = 16 * 1024;

/// Why a multipart upload is refused while it streams.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    #[error("the form has more than one `model` field; send exactly one")]
    DuplicateModel,
    #[error("a multipart part's headers are over {MAX_PART_HEADERS} bytes")]
    PartHeadersTooLong,
}

/// Counts the parts of a streamed multipart body that name the field `model`, chunk by chunk,
/// so a second one is refused before any byte of it is forwarded: a provider reading the last
/// `model` field would otherwise be asked for a model the key may not use. Any occurrence of
/// the delimiter counts (not only those at a line start) and header blocks may end with a bare
/// LF, so every part a lenient upstream parser could see is seen here too. Holds at most one
/// part's header block.
pub struct ModelParts {
    delim: Vec<u8>,
    state: Scan,
    /// Body: the last `delim.len() - 1` bytes (a delimiter split across chunks). Headers: the
    /// header block so far.
    carry: Vec<u8>,
    models: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    Body,
    Headers,
    /// After the closing delimiter: the epilogue is ignored.
    Done,
}

// === impl ModelParts ===

impl ModelParts {
    pub fn new(boundary: &str) -> ModelParts {
        ModelParts {
            delim: format!("--{boundary}").into_bytes(),
            state: Scan::Body,
            carry: Vec::new(),
            models: 0,
        }
    }

    /// `model` fields seen so far.
    pub fn models(&self) -> u32 {
        self.models
    }

    /// Scan the next bytes of the body. An error means the body must not be forwarded further.
    pub fn feed(&mut self, mut input: &[u8]) -> Result<(), MultipartError> {
        while !input.is_empty() {
            match self.state {
                Scan::Done => return Ok(()),
                Scan::Body => {
                    let keep = self.delim.len() - 1;
                    if !self.carry.is_empty() {
                        // A delimiter that starts in the previous chunk.
                        let take = input.len().min(keep);
                        let mut window = std::mem::take(&mut self.carry);
                        let held = window.len();
                        window.extend_from_slice(&input[..take]);
                        if let Some(p) = memchr::memmem::find(&window, &self.delim) {
                            input = &input[p + self.delim.len() - held..];
                            self.state = Scan::Headers;
                            continue;
                        }
                        if input.len() < keep {
                            let from = window.len().saturating_sub(keep);
                            self.carry = window[from..].to_vec();
                            return Ok(());
                        }
                    }
                    match memchr::memmem::find(input, &self.delim) {
                        Some(p) => {
                            input = &input[p + self.delim.len()..];
                            self.state = Scan::Headers;
                        }
                        None => {
                            self.carry = input[input.len().saturating_sub(keep)..].to_vec();
                            return Ok(());
                        }
                    }
                }
                Scan::Headers => {
                    let held = self.carry.len();
                    let take = input.len().min(MAX_PART_HEADERS + 4 - held);
                    self.carry.extend_from_slice(&input[..take]);
                    if self.carry.starts_with(b"--") {
                        self.state = Scan::Done;
                        self.carry = Vec::new();
                        return Ok(());
                    }
                    match headers_end(&self.carry) {
                        Some((end, body)) => {
                            if names_model(&self.carry[..end]) {
                                self.models += 1;
                                if self.models > 1 {
                                    return Err(MultipartError::DuplicateModel);
                                }
                            }
                            input = &input[body - held..];
                            self.carry.clear();
                            self.state = Scan::Body;
                        }
                        None if self.carry.len() > MAX_PART_HEADERS => {
                            return Err(MultipartError::PartHeadersTooLong)
                        }
                        None => return Ok(()),
                    }
                }
            }
        }
        Ok(())
    }
}

/// Where a part's header block ends in `buf` (just after the delimiter): (end of the headers,
/// start of the value). The block ends at the first empty line, CRLF or bare LF.
fn headers_end(buf: &[u8]) -> Option<(usize, usize)> {
    let crlf = memchr::memmem::find(buf, b"\r\n\r\n").map(|i| (i, i + 4));
    let lf = memchr::memmem::find(buf, b"\n\n").map(|i| (i, i + 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// Whether a part's header block has a `Content-Disposition` whose `name` (or `name*`)
/// parameter is `model` (any case, quoted or not).
fn names_model(headers: &[u8]) -> bool {
    headers.split(|&b| b == b'\n').any(|line| {
        let Some(colon) = line.iter().position(|&b| b == b':') else { return false };
        if !line[..colon].trim_ascii().eq_ignore_ascii_case(b"content-disposition") {
            return false;
        }
        line[colon + 1..].split(|&b| b == b';').any(|param| {
            let Some(eq) = param.iter().position(|&b| b == b'=') else { return false };
            let key = param[..eq].trim_ascii();
            let mut value = param[eq + 1..].trim_ascii();
            if key.eq_ignore_ascii_case(b"name*") {
                // RFC 5987: charset'language'value
                if let Some(q) = value.iter().rposition(|&b| b == b'\'') {
                    value = &value[q + 1..];
                }
            } else if !key.eq_ignore_ascii_case(b"name") {
                return false;
            }
            let value = value.strip_prefix(b"\"").unwrap_or(value);
            let value = value.strip_suffix(b"\"").unwrap_or(value);
            value.trim_ascii().eq_ignore_ascii_case(b"model")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-fast\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF....\r\n--XyZ--\r\n";

    #[test]
    fn the_boundary_is_read_from_the_content_type() {
        assert_eq!(boundary_of("multipart/form-data; boundary=XyZ").as_deref(), Some("XyZ"));
        assert_eq!(boundary_of("multipart/form-data; boundary=\"a b\"").as_deref(), Some("a b"));
        assert_eq!(boundary_of("application/json"), None);
    }

    #[test]
    fn the_model_field_is_found_once_its_part_is_complete() {
        let (s, e) = model_field(BODY, "XyZ").unwrap();
        assert_eq!(&BODY[s..e], b"whisper-fast");
        // Not yet complete: the next delimiter has not arrived.
        assert_eq!(model_field(&BODY[..60], "XyZ"), None);
        let no_model = b"--XyZ\r\nContent-Disposition: form-data; name=\"language\"\r\n\r\nen\r\n--XyZ--\r\n";
        assert_eq!(model_field(no_model, "XyZ"), None);
    }

    #[test]
    fn a_file_called_model_is_not_the_model_field() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"model\"\r\n\r\nRIFF\r\n--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nstt\r\n--XyZ--\r\n";
        let (s, e) = model_field(body, "XyZ").unwrap();
        assert_eq!(&body[s..e], b"stt");
        let mut parts = ModelParts::new("XyZ");
        assert_eq!(parts.feed(body), Ok(()));
        assert_eq!(parts.models(), 1);
    }

    /// `body` fed to a fresh scanner split at every byte offset (and byte by byte).
    fn scan_every_split(body: &[u8]) -> Vec<Result<u32, MultipartError>> {
        let run = |pieces: &[&[u8]]| {
            let mut p = ModelParts::new("XyZ");
            for piece in pieces {
                p.feed(piece)?;
            }
            Ok(p.models())
        };
        let mut out: Vec<_> = (0..=body.len()).map(|i| run(&[&body[..i], &body[i..]])).collect();
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        out.push(run(&bytes));
        out
    }

    #[test]
    fn one_model_part_is_counted_once_however_the_body_is_split() {
        for r in scan_every_split(BODY) {
            assert_eq!(r, Ok(1));
        }
    }

    #[test]
    fn a_second_model_part_is_refused_however_the_body_is_split() {
        let spellings: [&[u8]; 5] = [
            b"Content-Disposition: form-data; name=\"model\"",
            b"content-disposition: form-data; name=model",
            b"CONTENT-DISPOSITION:form-data;NAME=\"Model\"",
            b"Content-Disposition: form-data; name*=utf-8''model",
            b"Content-Type: text/plain\r\nContent-Disposition: form-data; name=\"model\"",
        ];
        for second in spellings {
            let mut body = BODY[..BODY.len() - b"--XyZ--\r\n".len()].to_vec();
            body.extend_from_slice(b"--XyZ\r\n");
            body.extend_from_slice(second);
            body.extend_from_slice(b"\r\n\r\nwhisper-dear\r\n--XyZ--\r\n");
            for r in scan_every_split(&body) {
                assert_eq!(r, Err(MultipartError::DuplicateModel), "{}", String::from_utf8_lossy(second));
            }
        }
        // Headers ended by a bare LF, and a delimiter not at a line start: still parts.
        let lenient = b"--XyZ\nContent-Disposition: form-data; name=model\n\nstt\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nab--XyZ\nContent-Disposition: form-data; name=model\n\ndear\n--XyZ--";
        for r in scan_every_split(lenient) {
            assert_eq!(r, Err(MultipartError::DuplicateModel));
        }
    }

    #[test]
    fn nothing_after_the_closing_delimiter_is_a_field() {
        let body =
            b"--XyZ--\r\n--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nstt\r\n--XyZ--\r\n";
        assert_eq!(model_field(body, "XyZ"), None);
        let mut p = ModelParts::new("XyZ");
        assert_eq!((p.feed(body), p.models()), (Ok(()), 0));
    }

    #[test]
    fn the_epilogue_and_oversized_headers() {
        let mut body = BODY.to_vec();
        body.extend_from_slice(b"--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nx\r\n");
        let mut p = ModelParts::new("XyZ");
        assert_eq!(p.feed(&body), Ok(()), "after the closing delimiter nothing counts");
        let mut huge = b"--XyZ\r\nX-Pad: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_PART_HEADERS + 10));
        let mut p = ModelParts::new("XyZ");
        assert_eq!(p.feed(&huge), Err(MultipartError::PartHeadersTooLong));
    }

    /// The fuzz target's oracle over bodies built from the pieces that matter (delimiters,
    /// header lines in several spellings, CRLF and bare LF, values), split at random.
    #[test]
    fn random_forms_count_the_same_whatever_the_split() {
        const PIECES: [&[u8]; 14] = [
            b"--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nstt\r\n",
            b"--XyZ\nContent-Disposition: form-data; name=model\n\nx\n",
            b"--XyZ",
            b"--XyZ--",
            b"\r\n",
            b"\n",
            b"Content-Disposition: form-data; name=\"model\"",
            b"content-disposition:form-data;name=model",
            b"Content-Disposition: form-data; name=\"file\"; filename=\"model\"",
            b"Content-Type: audio/wav",
            b"stt",
            b"RIFF\x00\xff--X",
            b"-",
            b"\r\n\r\n",
        ];
        let mut rng = fastrand::Rng::with_seed(9);
        let (mut refused, mut counted) = (0, 0);
        for _ in 0..8_000 {
            let body: Vec<u8> = (0..rng.usize(1..30))
                .flat_map(|_| PIECES[rng.usize(..PIECES.len())].iter().copied())
                .collect();
            let run = |chunk: usize| -> Result<u32, MultipartError> {
                let mut p = ModelParts::new("XyZ");
                for piece in body.chunks(chunk.max(1)) {
                    p.feed(piece)?;
                }
                Ok(p.models())
            };
            let whole = run(body.len());
            assert_eq!(whole, run(1 + rng.usize(..16)), "{}", String::from_utf8_lossy(&body));
            assert_eq!(whole, run(1), "{}", String::from_utf8_lossy(&body));
            assert!(whole.as_ref().map_or(true, |&n| n <= 1));
            if let Some((start, end)) = model_field(&body, "XyZ") {
                assert!(start <= end && end <= body.len());
                assert_ne!(whole, Ok(0), "{}", String::from_utf8_lossy(&body));
            }
            refused += usize::from(whole.is_err());
            counted += usize::from(whole == Ok(1));
        }
        // The generator reaches both outcomes often enough to mean something.
        assert!(refused > 300 && counted > 300, "refused {refused}, one model {counted}");
    }
}
