//! A `multipart/form-data` upload rewritten as it streams, for the job endpoints: the bytes
//! are passed on unchanged except
//! - a `model` field naming an alias, replaced by the alias's target model (videos);
//! - the `file` part of a `purpose=batch` upload, rewritten line by line: each JSONL line's
//!   `body.model` naming an alias becomes the target model, and a line whose model the key
//!   may not use refuses the whole upload, naming the line (files).
//!
//! Memory is bounded by one line of the file (at most `max_line` bytes), one part's header
//! block and one small field: a 200 MB batch file passes through a few KiB of buffers.
//! Pure over bytes: [`FormRewriter::feed`] takes the next chunk and answers what to forward.

use bytes::{BufMut, Bytes, BytesMut};

use crate::formats::multipart::MAX_PART_HEADERS;

/// The most bytes of a small field (`purpose`, `model`, ...) the rewriter holds.
pub const MAX_FIELD: usize = 64 * 1024;

/// Maps a model name a client wrote to the model the provider gets, or says why it may not.
pub trait ModelMap {
    /// `Ok(target)` for an alias the caller may use; `Err(reason)` otherwise.
    fn map(&mut self, model: &str) -> Result<String, String>;
}

impl<F: FnMut(&str) -> Result<String, String>> ModelMap for F {
    fn map(&mut self, model: &str) -> Result<String, String> {
        self(model)
    }
}

/// Why an upload is refused while it streams (the upload is then abandoned unfinished, so
/// the provider never acts on it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("line {line} of the batch file: {reason}")]
    Line { line: u64, reason: String },
    #[error("line {line} of the batch file is longer than {max} bytes")]
    LineTooLong { line: u64, max: usize },
    #[error("`model`: {0}")]
    Model(String),
    #[error("the form has more than one `{0}` field; send exactly one")]
    Duplicate(&'static str),
    #[error("the `purpose` field must come before the `file` part for a batch file")]
    PurposeAfterFile,
    #[error("a multipart part's headers are over {MAX_PART_HEADERS} bytes")]
    HeadersTooLong,
    #[error("the form field `{0}` is over {MAX_FIELD} bytes")]
    FieldTooLong(String),
    #[error("the multipart body ended before its closing boundary")]
    Truncated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Looking for a delimiter (preamble or a part's value).
    Body,
    /// Just after a delimiter: `--` (the end) or a line break, then the part's headers.
    Headers,
    /// After the closing delimiter.
    Epilogue,
}

/// What the current part is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// The preamble, or a part passed on as it is.
    Raw,
    /// A small field held whole (`purpose`, `model`), then passed on (rewritten for `model`).
    Field(FieldName),
    /// The batch file, rewritten line by line.
    BatchFile,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldName {
    Purpose,
    Model,
}

/// The streaming rewriter of one upload.
pub struct FormRewriter<M> {
    /// `\r\n--boundary`: the stream is read as if it began with `\r\n`.
    delim: Vec<u8>,
    state: State,
    part: Part,
    /// Bytes not yet decided (a delimiter may start in them; a header block; a field).
    buf: BytesMut,
    /// The field value or the file's current line.
    held: Vec<u8>,
    /// Whether `model` fields are rewritten (videos) or passed on.
    rewrite_model_field: bool,
    purpose: Option<String>,
    model: Option<String>,
    /// The `file` part was seen before `purpose`.
    file_seen: bool,
    /// Batch file lines seen so far (1-based numbering in errors).
    line: u64,
    max_line: usize,
    map: M,
    /// The two bytes put in front of the stream that must not be forwarded.
    skip: usize,
    /// Target models the batch file's lines were rewritten to (or named), first seen first.
    pub models: Vec<String>,
    /// Aliases the batch file's lines named.
    pub aliases: Vec<String>,
}

impl<M: ModelMap> FormRewriter<M> {
    /// `max_line`: the longest batch-file line accepted (`limits.max_body_bytes`).
    pub fn new(boundary: &str, map: M, rewrite_model_field: bool, max_line: usize) -> Self {
        let mut buf = BytesMut::with_capacity(8 * 1024);
        buf.put_slice(b"\r\n");
        FormRewriter {
            delim: format!("\r\n--{boundary}").into_bytes(),
            state: State::Body,
            part: Part::Raw,
            buf,
            held: Vec::new(),
            rewrite_model_field,
            purpose: None,
            model: None,
            file_seen: false,
            line: 0,
            skip: 2,
            max_line,
            map,
            models: Vec::new(),
            aliases: Vec::new(),
        }
    }

    /// The `purpose` field, once seen.
    pub fn purpose(&self) -> Option<&str> {
        self.purpose.as_deref()
    }

    /// The `model` field as the client wrote it, once seen.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// The next chunk of the upload: the bytes to forward now.
    pub fn feed(&mut self, chunk: &[u8], out: &mut BytesMut) -> Result<(), FormError> {
        self.buf.extend_from_slice(chunk);
        self.run(out, false)
    }

    /// The upload ended: the rest to forward. An upload without its closing delimiter is
    /// refused (the provider must not get half a form).
    pub fn finish(&mut self, out: &mut BytesMut) -> Result<(), FormError> {
        self.run(out, true)?;
        if self.state != State::Epilogue {
            return Err(FormError::Truncated);
        }
        out.extend_from_slice(&self.buf.split());
        Ok(())
    }

    fn run(&mut self, out: &mut BytesMut, end: bool) -> Result<(), FormError> {
        loop {
            match self.state {
                State::Epilogue => {
                    out.extend_from_slice(&self.buf.split());
                    return Ok(());
                }
                State::Body => match memchr::memmem::find(&self.buf, &self.delim) {
                    Some(i) => {
                        let value = self.buf.split_to(i);
                        self.value(&value, out)?;
                        self.end_part(out)?;
                        let d = self.buf.split_to(self.delim.len());
                        self.emit(out, &d);
                        self.state = State::Headers;
                    }
                    None => {
                        // Keep what could be the start of a delimiter.
                        let keep = if end { 0 } else { self.delim.len() - 1 };
                        let n = self.buf.len().saturating_sub(keep);
                        let value = self.buf.split_to(n);
                        self.value(&value, out)?;
                        return Ok(());
                    }
                },
                State::Headers => {
                    if self.buf.len() < 2 {
                        return Ok(());
                    }
                    if self.buf.starts_with(b"--") {
                        self.state = State::Epilogue;
                        continue;
                    }
                    let Some(end_at) = memchr::memmem::find(&self.buf, b"\r\n\r\n") else {
                        if self.buf.len() > MAX_PART_HEADERS {
                            return Err(FormError::HeadersTooLong);
                        }
                        return Ok(());
                    };
                    let head = self.buf.split_to(end_at + 4);
                    self.emit(out, &head);
                    self.part = self.part_of(&head)?;
                    self.state = State::Body;
                }
            }
        }
    }

    /// Forward `data`, less the two bytes this rewriter put in front of the stream (the
    /// first delimiter has no line break before it on the wire).
    fn emit(&mut self, out: &mut BytesMut, data: &[u8]) {
        let n = self.skip.min(data.len());
        self.skip -= n;
        out.extend_from_slice(&data[n..]);
    }

    /// What the part whose header block is `head` is.
    fn part_of(&mut self, head: &[u8]) -> Result<Part, FormError> {
        let name = disposition_name(head).unwrap_or_default();
        Ok(match name.as_str() {
            "purpose" => {
                if self.purpose.is_some() {
                    return Err(FormError::Duplicate("purpose"));
                }
                Part::Field(FieldName::Purpose)
            }
            "model" => {
                if self.model.is_some() {
                    return Err(FormError::Duplicate("model"));
                }
                Part::Field(FieldName::Model)
            }
            "file" => {
                if self.file_seen {
                    return Err(FormError::Duplicate("file"));
                }
                self.file_seen = true;
                match self.purpose.as_deref() {
                    Some("batch") => Part::BatchFile,
                    _ => Part::Raw,
                }
            }
            _ => Part::Raw,
        })
    }

    /// Bytes of the current part's value.
    fn value(&mut self, v: &[u8], out: &mut BytesMut) -> Result<(), FormError> {
        match self.part {
            Part::Raw => self.emit(out, v),
            Part::Field(name) => {
                if self.held.len() + v.len() > MAX_FIELD {
                    let n = match name {
                        FieldName::Purpose => "purpose",
                        FieldName::Model => "model",
                    };
                    return Err(FormError::FieldTooLong(n.into()));
                }
                self.held.extend_from_slice(v);
            }
            Part::BatchFile => {
                let mut rest = v;
                while let Some(nl) = memchr::memchr(b'\n', rest) {
                    self.held.extend_from_slice(&rest[..=nl]);
                    rest = &rest[nl + 1..];
                    self.line(out)?;
                }
                if self.held.len() + rest.len() > self.max_line {
                    return Err(FormError::LineTooLong { line: self.line + 1, max: self.max_line });
                }
                self.held.extend_from_slice(rest);
            }
        }
        Ok(())
    }

    /// The current part ended (a delimiter follows).
    fn end_part(&mut self, out: &mut BytesMut) -> Result<(), FormError> {
        match self.part {
            Part::Raw => {}
            Part::Field(name) => {
                let value = String::from_utf8_lossy(&std::mem::take(&mut self.held)).trim().to_string();
                match name {
                    FieldName::Purpose => {
                        if value == "batch" && self.file_seen {
                            return Err(FormError::PurposeAfterFile);
                        }
                        out.extend_from_slice(value.as_bytes());
                        self.purpose = Some(value);
                    }
                    FieldName::Model => {
                        let sent = if self.rewrite_model_field {
                            self.map.map(&value).map_err(FormError::Model)?
                        } else {
                            value.clone()
                        };
                        out.extend_from_slice(sent.as_bytes());
                        self.model = Some(value);
                    }
                }
            }
            Part::BatchFile => {
                if !self.held.is_empty() {
                    self.line(out)?;
                }
            }
        }
        self.part = Part::Raw;
        Ok(())
    }

    /// One whole line of the batch file is in `held` (with its line break, if any).
    fn line(&mut self, out: &mut BytesMut) -> Result<(), FormError> {
        self.line += 1;
        let line = std::mem::take(&mut self.held);
        let text = trim_line_end(&line);
        if text.iter().all(u8::is_ascii_whitespace) {
            out.extend_from_slice(&line);
            return Ok(());
        }
        let n = self.line;
        let bad = |reason: String| FormError::Line { line: n, reason };
        let (at, model) = body_model(text).map_err(bad)?;
        let target = self.map.map(&model).map_err(bad)?;
        if !self.aliases.contains(&model) {
            self.aliases.push(model.clone());
        }
        if !self.models.contains(&target) {
            self.models.push(target.clone());
        }
        if target == model {
            out.extend_from_slice(&line);
            return Ok(());
        }
        // The line as the client wrote it, only the model's value replaced.
        out.extend_from_slice(&line[..at.start]);
        out.extend_from_slice(&serde_json::to_vec(&target).map_err(|e| bad(e.to_string()))?);
        out.extend_from_slice(&line[at.end..]);
        Ok(())
    }
}

/// Where a batch line's `body.model` value is (its byte range, quotes included) and what it
/// says. The line must be a JSON object whose `body` is an object with a string `model`.
fn body_model(text: &[u8]) -> Result<(std::ops::Range<usize>, String), String> {
    use serde_json::value::RawValue;
    #[derive(serde::Deserialize)]
    struct Line<'a> {
        #[serde(borrow)]
        body: Option<&'a RawValue>,
    }
    #[derive(serde::Deserialize)]
    struct Body<'a> {
        #[serde(borrow)]
        model: Option<&'a RawValue>,
    }
    let line: Line = serde_json::from_slice(text).map_err(|e| format!("not a JSON object: {e}"))?;
    let body = line.body.ok_or("`body` is required")?;
    let b: Body = serde_json::from_str(body.get()).map_err(|e| format!("`body`: {e}"))?;
    let raw = b.model.ok_or("`body.model` is required")?;
    let model: String =
        serde_json::from_str(raw.get()).map_err(|_| "`body.model` must be a string".to_string())?;
    // Both raw values borrow from `text`: their offsets locate the value.
    let start = raw.get().as_ptr() as usize - text.as_ptr() as usize;
    Ok((start..start + raw.get().len(), model))
}

/// A line without its trailing `\n` / `\r\n`.
fn trim_line_end(line: &[u8]) -> &[u8] {
    let l = line.strip_suffix(b"\n").unwrap_or(line);
    l.strip_suffix(b"\r").unwrap_or(l)
}

/// The `name` parameter of a part's `Content-Disposition` header.
fn disposition_name(head: &[u8]) -> Option<String> {
    let head = String::from_utf8_lossy(head);
    head.split("\r\n").find_map(|line| {
        let (k, v) = line.split_once(':')?;
        if !k.trim().eq_ignore_ascii_case("content-disposition") {
            return None;
        }
        v.split(';').find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim().eq_ignore_ascii_case("name").then(|| v.trim().trim_matches('"').to_string())
        })
    })
}

/// Bytes as one chunk (helper for callers that forward `Bytes`).
pub fn take(out: &mut BytesMut) -> Bytes {
    out.split().freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aliases(m: &str) -> Result<String, String> {
        match m {
            "cheap" => Ok("gpt-4o-mini-2024-07-18".into()),
            "big" => Err("key \"k\" may not use model \"big\"".into()),
            other => Err(format!("model {other:?} does not exist (no such alias)")),
        }
    }

    fn form(purpose: &str, file: &str) -> Vec<u8> {
        format!(
            "--XyZ\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n{purpose}\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.jsonl\"\r\nContent-Type: application/octet-stream\r\n\r\n{file}\r\n--XyZ--\r\n"
        )
        .into_bytes()
    }

    fn run(body: &[u8], chunk: usize) -> Result<(Vec<u8>, Vec<String>), FormError> {
        let mut r = FormRewriter::new("XyZ", aliases, false, 1024);
        let mut out = BytesMut::new();
        for c in body.chunks(chunk.max(1)) {
            r.feed(c, &mut out)?;
        }
        r.finish(&mut out)?;
        Ok((out.to_vec(), r.models.clone()))
    }

    #[test]
    fn batch_lines_naming_an_alias_get_the_target_model_at_any_chunking() {
        let l1 = r#"{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"cheap","messages":[]}}"#;
        let l2 = r#"{"custom_id":"b","method":"POST","url":"/v1/chat/completions","body":{"model":"cheap","messages":[]}}"#;
        let body = form("batch", &format!("{l1}\n{l2}"));
        let want = form(
            "batch",
            &format!(
                "{}\n{}",
                l1.replace("cheap", "gpt-4o-mini-2024-07-18"),
                l2.replace("cheap", "gpt-4o-mini-2024-07-18")
            ),
        );
        for chunk in [1, 2, 3, 7, 64, 100_000] {
            let (out, models) = run(&body, chunk).unwrap();
            assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(&want), "chunk {chunk}");
            assert_eq!(models, vec!["gpt-4o-mini-2024-07-18".to_string()]);
        }
    }

    #[test]
    fn a_line_the_key_may_not_use_refuses_the_upload_naming_the_line() {
        let l = |m: &str| format!(r#"{{"custom_id":"x","body":{{"model":"{m}"}}}}"#);
        let body = form("batch", &format!("{}\n{}\n{}\n", l("cheap"), l("cheap"), l("big")));
        for chunk in [1, 5, 4096] {
            let e = run(&body, chunk).unwrap_err();
            assert_eq!(e, FormError::Line { line: 3, reason: "key \"k\" may not use model \"big\"".into() });
        }
        let body = form("batch", &format!("{}\n{}\n", l("cheap"), l("gpt-4o")));
        assert!(matches!(run(&body, 9).unwrap_err(), FormError::Line { line: 2, .. }));
        let body = form("batch", "not json\n");
        assert!(matches!(run(&body, 9).unwrap_err(), FormError::Line { line: 1, .. }));
    }

    #[test]
    fn other_purposes_pass_unchanged_and_a_long_line_is_refused() {
        let data = r#"{"messages":[{"role":"user","content":"x"}],"model":"big"}"#;
        let body = form("fine-tune", &format!("{data}\n{data}\n"));
        assert_eq!(run(&body, 3).unwrap().0, body);
        let long = format!(r#"{{"body":{{"model":"cheap","x":"{}"}}}}"#, "a".repeat(2000));
        assert!(matches!(
            run(&form("batch", &long), 100).unwrap_err(),
            FormError::LineTooLong { line: 1, .. }
        ));
    }

    #[test]
    fn purpose_after_file_duplicates_and_truncation_are_refused() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b\"\r\n\r\n{}\r\n--XyZ\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--XyZ--\r\n";
        assert_eq!(run(body, 4).unwrap_err(), FormError::PurposeAfterFile);
        let two = b"--XyZ\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--XyZ\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nfine-tune\r\n--XyZ--\r\n";
        assert_eq!(run(two, 4).unwrap_err(), FormError::Duplicate("purpose"));
        let body = form("batch", "");
        assert_eq!(run(&body[..body.len() - 9], 4).unwrap_err(), FormError::Truncated);
    }

    #[test]
    fn a_model_field_is_rewritten_when_asked() {
        let body = b"--b\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\na cat\r\n--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ncheap\r\n--b--\r\n";
        let mut r = FormRewriter::new("b", aliases, true, 1024);
        let mut out = BytesMut::new();
        for c in body.chunks(2) {
            r.feed(c, &mut out).unwrap();
        }
        r.finish(&mut out).unwrap();
        let want = String::from_utf8_lossy(body).replace("\r\n\r\ncheap", "\r\n\r\ngpt-4o-mini-2024-07-18");
        assert_eq!(String::from_utf8_lossy(&out), want);
        assert_eq!(r.model(), Some("cheap"));
        let mut r = FormRewriter::new("b", aliases, true, 1024);
        let body = String::from_utf8_lossy(body).replace("cheap", "big");
        assert!(matches!(r.feed(body.as_bytes(), &mut BytesMut::new()), Err(FormError::Model(_))));
    }
}
