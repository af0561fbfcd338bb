//! `POST /v1/audio/transcriptions`: a multipart upload streamed to the upstream, never held whole.
//! The body is read only as far as the `model` part (SDKs send form fields before the file), the
//! target is chosen, `model` is rewritten in that prefix, and the rest of the upload is forwarded
//! chunk by chunk. Only a failure to connect can move to another target: once upload bytes have
//! been sent they cannot be replayed.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;

use super::chat::{self, Inbound};
use std::time::SystemTime;

use super::ctx::RequestCtx;
use super::plan::Plan;
use super::respond;
use super::upstream::{self, AttemptError};
use super::Gateway;
use crate::admission::{self, Shape};
use crate::error::GatewayError;
use crate::formats::Format;
use crate::providers::{self, MediaOp, Operation};

const OP: MediaOp = MediaOp::AudioTranscriptions;

pub async fn transcribe(gw: &Gateway, s: &mut Session, ctx: &mut RequestCtx) -> pingora::Result<()> {
    let format = Format::OpenAiChat;
    match admit(s, ctx).await? {
        Ok(form) => upload(gw, s, ctx, form).await,
        Err(e) => respond::error(s, ctx, format, e).await,
    }
}

/// An admitted upload: what was read of it so far and the `model` it names.
struct Form {
    prefix: BytesMut,
    model: String,
    /// The whole body is in `prefix`.
    done: bool,
    /// Watches the rest of the body for a second `model` part.
    parts: ModelParts,
}

/// Admission for an upload: principal, the `model` part (read from the body's prefix), alias and
/// allow-list. Answers the prefix read so far and the model. A form with two `model` parts is
/// refused: the provider could read the other one.
async fn admit(s: &mut Session, ctx: &mut RequestCtx) -> pingora::Result<Result<Form, GatewayError>> {
    let Some(rt) = ctx.rt.clone() else { return Ok(Err(GatewayError::Internal("no runtime".into()))) };
    let req = s.req_header();
    let principal = match admission::authenticate(&rt, &req.headers, req.uri.query(), SystemTime::now()) {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    ctx.principal = Some(principal.clone());
    let max = rt.snap.limits.max_body_bytes;
    let content_type =
        s.req_header().headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let Some(boundary) = boundary_of(&content_type) else {
        return Ok(Err(GatewayError::InvalidRequest(
            "expected a multipart/form-data body with a boundary".into(),
        )));
    };
    let declared = chat::declared_length(s);
    let too_large = || GatewayError::BodyTooLarge { limit: "limits.max_body_bytes", max: max as u64 };
    if declared.is_some_and(|n| n > max) {
        chat::drain(s).await;
        return Ok(Err(too_large()));
    }
    chat::answer_expect_continue(s).await?;

    // Read up to the end of the `model` part.
    let mut prefix = BytesMut::with_capacity(16 * 1024);
    let mut done = false;
    let field = loop {
        if let Some(f) = field_value(&prefix, &boundary) {
            break Some(f);
        }
        if done {
            break None;
        }
        let read = match s.read_request_body().await {
            Ok(read) => read,
            Err(e) => return Ok(Err(chat::bad_body(s, &e))),
        };
        match read {
            Some(c) => {
                if prefix.len() + c.len() > max {
                    return Ok(Err(too_large()));
                }
                prefix.extend_from_slice(&c);
            }
            None => done = true,
        }
    };
    let Some((vs, ve)) = field else {
        return Ok(Err(GatewayError::MissingField { field: "model" }));
    };
    let mut parts = ModelParts::new(&boundary);
    if let Err(e) = parts.feed(&prefix) {
        if !done {
            chat::drain(s).await;
        }
        return Ok(Err(e.into()));
    }
    let model = String::from_utf8_lossy(&prefix[vs..ve]).trim().to_string();
    match admission::admit(&rt, principal, &model, Shape::Media(OP), None, false) {
        Ok(a) => {
            ctx.alias = a.alias;
            ctx.admission = Some(a);
            Ok(Ok(Form { prefix, model, done, parts }))
        }
        Err(e) => Ok(Err(e)),
    }
}

/// Stream the upload to the first target that serves transcriptions.
async fn upload(gw: &Gateway, s: &mut Session, ctx: &mut RequestCtx, form: Form) -> pingora::Result<()> {
    let Form { prefix, model, done, mut parts } = form;
    let format = Format::OpenAiChat;
    let Some(rt) = ctx.rt.clone() else { return Ok(()) };
    let snap = &rt.snap;
    let max = snap.limits.max_body_bytes;
    let alias_idx = ctx.alias.unwrap_or_default();
    let content_type =
        s.req_header().headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let boundary = boundary_of(&content_type).unwrap_or_default();
    let (vs, ve) = field_value(&prefix, &boundary).unwrap_or((0, 0));
    let declared = chat::declared_length(s);
    let mut plan = Plan::new(&rt, alias_idx);
    while let Some(step) = plan.next().await {
        let alias = &snap.aliases[step.alias];
        let target = &alias.targets[step.target];
        let provider = &snap.providers[target.provider];
        if !providers::supports_media(provider.kind, OP) {
            ctx.attempt_log.push(format!("provider {} does not serve audio transcriptions", provider.name));
            plan.skipped(
                &step,
                format!("skipped: {} does not serve audio transcriptions", provider.kind.name()),
            );
            continue;
        }
        ctx.attempts += 1;
        ctx.provider = Some(provider.name.clone());
        ctx.model = Some(target.model.clone());
        let started = Instant::now();
        let mut pending = match upstream::open(&gw.connector, &gw.resolver, provider, &snap.limits).await {
            Ok(p) => p,
            Err(e) => {
                ctx.attempt_log.push(format!("{}/{}: {e}", provider.name, target.model));
                plan.failed(&step, &e);
                continue;
            }
        };
        // From here on the upload is consumed: no other target can be tried.
        let req = match providers::build_request(
            provider,
            Operation::Media(OP),
            &target.model,
            Bytes::new(),
            &s.req_header().headers,
        ) {
            Ok(r) => r,
            Err(e) => return respond::error(s, ctx, format, GatewayError::Upstream(e.to_string())).await,
        };
        let mut head = BytesMut::with_capacity(prefix.len() + target.model.len());
        head.extend_from_slice(&prefix[..vs]);
        head.extend_from_slice(target.model.as_bytes());
        head.extend_from_slice(&prefix[ve..]);
        let length = declared.map(|n| n - (ve - vs) + target.model.len());
        let sent: Result<(), Sent> = async {
            pending.write_header(&req, &content_type, length).await.map_err(Sent::Failed)?;
            pending.write(head.freeze()).await.map_err(Sent::Failed)?;
            let mut total = prefix.len();
            if !done {
                while let Some(chunk) = s.read_request_body().await.map_err(|e| {
                    Sent::Failed(AttemptError::Io {
                        provider: "client".into(),
                        detail: format!("reading the upload: {e}"),
                    })
                })? {
                    total += chunk.len();
                    if total > max {
                        return Err(Sent::TooLarge);
                    }
                    // Checked before the chunk is forwarded: the upstream request is then
                    // abandoned unfinished, so the provider never acts on it.
                    parts.feed(&chunk).map_err(Sent::Refused)?;
                    pending.write(chunk).await.map_err(Sent::Failed)?;
                }
            }
            Ok(())
        }
        .await;
        match sent {
            Ok(()) => {}
            Err(Sent::TooLarge) => {
                drop(pending);
                let e = GatewayError::BodyTooLarge { limit: "limits.max_body_bytes", max: max as u64 };
                return respond::error(s, ctx, format, e).await;
            }
            Err(Sent::Refused(e)) => {
                // Close the upstream connection mid-body before answering.
                drop(pending);
                chat::drain(s).await;
                return respond::error(s, ctx, format, e.into()).await;
            }
            Err(Sent::Failed(e)) => {
                return respond::error(s, ctx, format, GatewayError::Upstream(e.to_string())).await
            }
        }
        let mut up = match pending.finish().await {
            Ok(up) => up,
            Err(e) => {
                plan.failed(&step, &e);
                let (tried, timed_out) = plan.into_report();
                let e = GatewayError::AllTargetsFailed { attempts: ctx.attempts, tried, timed_out };
                return respond::error(s, ctx, format, e).await;
            }
        };
        let status = up.status();
        let inb = Inbound {
            op: Operation::Media(OP),
            peek: Default::default(),
            format,
            body: Bytes::new(),
            model,
            stream: false,
            include_usage: false,
            gemini_sse: true,
        };
        if (200..300).contains(&status) {
            match chat::check_answer(&mut up, inb.op, format, false).await {
                Ok(answer) => {
                    plan.succeeded(&step, started.elapsed());
                    let names =
                        chat::Names { provider: &provider.name, model: &target.model, alias: &alias.name };
                    return chat::respond_upstream(gw, s, ctx, &inb, up, answer, format, names, &[]).await;
                }
                // The upload cannot be sent again: a bad answer ends the request.
                Err(chat::Refused::Failed(e)) => {
                    ctx.attempt_log.push(format!("{}/{}: {e}", provider.name, target.model));
                    plan.failed(&step, &e);
                    let (tried, timed_out) = plan.into_report();
                    let e = GatewayError::AllTargetsFailed { attempts: ctx.attempts, tried, timed_out };
                    return respond::error(s, ctx, format, e).await;
                }
                Err(chat::Refused::Client(class)) => {
                    let status = crate::formats::status_for(class.kind);
                    ctx.error = Some(format!("upstream {status}"));
                    let body = crate::formats::encode_error(format, class.kind, &class.message);
                    let extra = [("x-gateway-provider", provider.name.clone())];
                    return respond::json(s, ctx, status, body, &extra).await;
                }
            }
        }
        if (300..400).contains(&status) {
            let e = GatewayError::Upstream(format!(
                "{}/{} answered HTTP {status} (a redirect), which the gateway does not follow",
                provider.name, target.model
            ));
            return respond::error(s, ctx, format, e).await;
        }
        let body = up.read_to_end(64 * 1024).await.unwrap_or_default();
        up.release(&gw.connector).await;
        ctx.status = status;
        ctx.error = Some(format!("upstream {status}"));
        let extra = [("x-gateway-provider", provider.name.clone())];
        return respond::json(s, ctx, status, body.to_vec(), &extra).await;
    }
    let (tried, timed_out) = plan.into_report();
    let e = GatewayError::AllTargetsFailed { attempts: ctx.attempts, tried, timed_out };
    respond::error(s, ctx, format, e).await
}

/// Why forwarding the upload stopped.
enum Sent {
    /// The client sent more than `limits.max_body_bytes`.
    TooLarge,
    /// The form is refused (a second `model` part).
    Refused(MultipartError),
    Failed(AttemptError),
}

/// The boundary of a `multipart/form-data` content type.
fn boundary_of(content_type: &str) -> Option<String> {
    if !content_type.to_ascii_lowercase().starts_with("multipart/form-data") {
        return None;
    }
    let b = content_type.split(';').find_map(|p| p.trim().strip_prefix("boundary="))?;
    let b = b.trim_matches('"');
    (!b.is_empty()).then(|| b.to_string())
}

/// Byte range of the value of the first `model` field in `buf`, once that part is complete.
fn field_value(buf: &[u8], boundary: &str) -> Option<(usize, usize)> {
    let delim = format!("--{boundary}");
    let finder = memchr::memmem::Finder::new(delim.as_bytes());
    let mut at = finder.find(buf)?;
    loop {
        let part = at + delim.len();
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
const MAX_PART_HEADERS: usize = 16 * 1024;

/// Why a multipart upload is refused while it streams.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    #[error("the form has more than one `model` field; send exactly one")]
    DuplicateModel,
    #[error("a multipart part's headers are over {MAX_PART_HEADERS} bytes")]
    PartHeadersTooLong,
}

impl From<MultipartError> for GatewayError {
    fn from(e: MultipartError) -> GatewayError {
        match e {
            MultipartError::DuplicateModel => GatewayError::InvalidField {
                field: "model".into(),
                problem: "appears in more than one part of the form".into(),
            },
            MultipartError::PartHeadersTooLong => GatewayError::InvalidRequest(e.to_string()),
        }
    }
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
    #[cfg(test)]
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
        let (s, e) = field_value(BODY, "XyZ").unwrap();
        assert_eq!(&BODY[s..e], b"whisper-fast");
        // Not yet complete: the next delimiter has not arrived.
        assert_eq!(field_value(&BODY[..60], "XyZ"), None);
        let no_model = b"--XyZ\r\nContent-Disposition: form-data; name=\"language\"\r\n\r\nen\r\n--XyZ--\r\n";
        assert_eq!(field_value(no_model, "XyZ"), None);
    }

    #[test]
    fn a_file_called_model_is_not_the_model_field() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"model\"\r\n\r\nRIFF\r\n--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nstt\r\n--XyZ--\r\n";
        let (s, e) = field_value(body, "XyZ").unwrap();
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
}
