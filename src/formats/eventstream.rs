//! AWS event-stream framing (`application/vnd.amazon.eventstream`), as spoken by Bedrock
//! ConverseStream: an incremental frame decoder fed arbitrary byte splits, and a frame encoder
//! for tests and the mock upstream. Pure: no I/O, and nothing about what the payloads mean
//! (that is `bedrock.rs`).
//!
//! A frame is `total_len u32 BE | headers_len u32 BE | prelude CRC32 | headers | payload |
//! message CRC32`. The CRC checks and header parsing are AWS's own `aws-smithy-eventstream`
//! (`MessageFrameDecoder`); this file adds early prelude validation and a frame-size cap so a
//! corrupt length can neither stall a stream nor make us buffer gigabytes, and hides the smithy
//! types behind a small API of our own.

use aws_smithy_eventstream::frame::{write_message_to, DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::{
    Header as SmithyHeader, HeaderValue as SmithyValue, Message as SmithyMessage,
};
use bytes::{Buf, Bytes, BytesMut};

/// Prelude: total length, headers length, prelude CRC.
const PRELUDE_LEN: usize = 12;
/// The smallest frame: a prelude and a message CRC.
const MIN_FRAME_LEN: usize = PRELUDE_LEN + 4;
/// The protocol's limits are 16 MiB of payload and 128 KiB of headers; anything bigger is corrupt.
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024 + 128 * 1024 + MIN_FRAME_LEN;

/// Why the byte stream is not valid event-stream framing. After one of these the stream has
/// lost sync and the decoder refuses further input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("event-stream prelude checksum mismatch (expected {expected:#010x}, got {actual:#010x})")]
    PreludeChecksum { expected: u32, actual: u32 },
    #[error("event-stream message checksum mismatch")]
    MessageChecksum,
    #[error("event-stream frame length {0} is out of range")]
    Length(usize),
    #[error("event-stream ended inside a frame ({0} bytes left over)")]
    Truncated(usize),
    #[error("malformed event-stream frame: {0}")]
    Malformed(String),
}

/// One header value. Bedrock only sends strings; the other types exist in the protocol.
#[derive(Clone, Debug, PartialEq)]
pub enum HeaderValue {
    Bool(bool),
    /// Byte, int16, int32 and int64 values.
    Int(i64),
    Bytes(Bytes),
    String(String),
    /// Milliseconds since the Unix epoch.
    Timestamp(i64),
    Uuid(u128),
}

/// One decoded event-stream message.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub headers: Vec<(String, HeaderValue)>,
    pub payload: Bytes,
}

// === impl Message ===

impl Message {
    /// The string value of header `name` (exact, case-sensitive as on the wire).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|(n, v)| match v {
            HeaderValue::String(s) if n == name => Some(s.as_str()),
            _ => None,
        })
    }

    /// `:message-type`: `event`, `exception` or `error`.
    pub fn message_type(&self) -> Option<&str> {
        self.header(":message-type")
    }

    /// `:event-type` of an `event` message, e.g. `contentBlockDelta`.
    pub fn event_type(&self) -> Option<&str> {
        self.header(":event-type")
    }

    /// `:exception-type` of an `exception` message, e.g. `throttlingException`.
    pub fn exception_type(&self) -> Option<&str> {
        self.header(":exception-type")
    }

    /// `:content-type` of the payload, normally `application/json`.
    pub fn content_type(&self) -> Option<&str> {
        self.header(":content-type")
    }

    /// `:error-code` of a protocol-level `error` message.
    pub fn error_code(&self) -> Option<&str> {
        self.header(":error-code")
    }

    /// `:error-message` of a protocol-level `error` message.
    pub fn error_message(&self) -> Option<&str> {
        self.header(":error-message")
    }

    fn from_smithy(m: SmithyMessage) -> Message {
        let headers = m
            .headers()
            .iter()
            .map(|h| {
                let v = match h.value() {
                    SmithyValue::Bool(b) => HeaderValue::Bool(*b),
                    SmithyValue::Byte(v) => HeaderValue::Int(i64::from(*v)),
                    SmithyValue::Int16(v) => HeaderValue::Int(i64::from(*v)),
                    SmithyValue::Int32(v) => HeaderValue::Int(i64::from(*v)),
                    SmithyValue::Int64(v) => HeaderValue::Int(*v),
                    SmithyValue::ByteArray(b) => HeaderValue::Bytes(b.clone()),
                    SmithyValue::String(s) => HeaderValue::String(s.as_str().to_owned()),
                    SmithyValue::Timestamp(t) => HeaderValue::Timestamp(t.to_millis().unwrap_or(0)),
                    SmithyValue::Uuid(u) => HeaderValue::Uuid(*u),
                    // `HeaderValue` is non-exhaustive; newer kinds are carried as their debug text.
                    other => HeaderValue::String(format!("{other:?}")),
                };
                (h.name().as_str().to_owned(), v)
            })
            .collect();
        Message { headers, payload: m.payload().clone() }
    }
}

/// Incremental frame decoder: feed it whatever the socket delivered, collect whole messages.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
    inner: MessageFrameDecoder,
    failed: Option<FrameError>,
}

// === impl Decoder ===

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Append `chunk` and push every message it completes onto `out`. A frame split across
    /// chunks is held until its last byte arrives. Errors are sticky: once the framing is
    /// broken every later call returns the same error.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<Message>) -> Result<(), FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.buf.extend_from_slice(chunk);
        let r = self.drain(out);
        if let Err(e) = &r {
            self.failed = Some(e.clone());
            self.buf.clear();
        }
        r
    }

    /// End of input: an error if bytes of an unfinished frame are left over.
    pub fn finish(&mut self) -> Result<(), FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.buf.len() {
            0 => Ok(()),
            n => Err(FrameError::Truncated(n)),
        }
    }

    /// Bytes held waiting for the rest of a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    fn drain(&mut self, out: &mut Vec<Message>) -> Result<(), FrameError> {
        while self.buf.len() >= PRELUDE_LEN {
            let total = check_prelude(&self.buf[..PRELUDE_LEN])?;
            if self.buf.len() < total {
                return Ok(());
            }
            let frame = self.buf.split_to(total).freeze();
            match self.inner.decode_frame(frame) {
                Ok(DecodedFrame::Complete(m)) => out.push(Message::from_smithy(m)),
                Ok(DecodedFrame::Incomplete) => {
                    return Err(FrameError::Malformed("frame decoder wanted more bytes".into()))
                }
                Err(e) => {
                    // The smithy error kind is private; its message is the only discriminator.
                    let text = e.to_string();
                    return Err(if text.starts_with("message checksum") {
                        FrameError::MessageChecksum
                    } else {
                        FrameError::Malformed(text)
                    });
                }
            }
        }
        Ok(())
    }
}

/// Validate a 12-byte prelude (CRC, then length bounds) and return the frame's total length.
fn check_prelude(mut prelude: &[u8]) -> Result<usize, FrameError> {
    let expected = crc32fast::hash(&prelude[..8]);
    let total = prelude.get_u32() as usize;
    let headers_len = prelude.get_u32() as usize;
    let actual = prelude.get_u32();
    if expected != actual {
        return Err(FrameError::PreludeChecksum { expected, actual });
    }
    if !(MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&total) || headers_len > total - MIN_FRAME_LEN {
        return Err(FrameError::Length(total));
    }
    Ok(total)
}

/// Encode one frame with string headers (the only kind Bedrock uses).
///
/// # Panics
/// If a header name is over 255 bytes, a value over 32,767 bytes, or the frame over 4 GiB
/// (see [`try_encode_frame`] for the fallible form).
pub fn encode_frame(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    try_encode_frame(headers, payload).expect("event-stream frame within protocol limits")
}

/// Encode one frame with string headers, or say which protocol limit it breaks.
pub fn try_encode_frame(headers: &[(&str, &str)], payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    let headers = headers
        .iter()
        .map(|(n, v)| SmithyHeader::new((*n).to_owned(), SmithyValue::String((*v).to_owned().into())))
        .collect();
    let message = SmithyMessage::new_from_parts(headers, Bytes::copy_from_slice(payload));
    let mut out = Vec::with_capacity(payload.len() + 128);
    write_message_to(&message, &mut out).map_err(|e| FrameError::Malformed(e.to_string()))?;
    Ok(out)
}

/// Encode a Bedrock-style `event` frame: `:event-type`, `:content-type: application/json`,
/// `:message-type: event`, JSON payload.
pub fn encode_event(event_type: &str, json_payload: &[u8]) -> Vec<u8> {
    encode_frame(
        &[(":event-type", event_type), (":content-type", "application/json"), (":message-type", "event")],
        json_payload,
    )
}

/// Encode a Bedrock-style `exception` frame (`:exception-type`, JSON `{"message": ...}` payload).
pub fn encode_exception(exception_type: &str, json_payload: &[u8]) -> Vec<u8> {
    encode_frame(
        &[
            (":exception-type", exception_type),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        json_payload,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_stream() -> Vec<u8> {
        let mut s = encode_event("messageStart", br#"{"role":"assistant"}"#);
        s.extend(encode_event("contentBlockDelta", br#"{"contentBlockIndex":0,"delta":{"text":"Hello"}}"#));
        s.extend(encode_frame(&[], b""));
        s.extend(encode_exception("throttlingException", br#"{"message":"slow down"}"#));
        s
    }

    fn decode_all(chunks: &[&[u8]]) -> Result<Vec<Message>, FrameError> {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        for c in chunks {
            d.feed(c, &mut out)?;
        }
        d.finish()?;
        Ok(out)
    }

    #[test]
    fn whole_stream_decodes_with_headers_and_payloads() {
        let s = sample_stream();
        let msgs = decode_all(&[&s]).unwrap();
        assert_eq!(msgs.len(), 4);
        assert_eq!(msgs[0].message_type(), Some("event"));
        assert_eq!(msgs[0].event_type(), Some("messageStart"));
        assert_eq!(msgs[0].content_type(), Some("application/json"));
        assert_eq!(&msgs[0].payload[..], br#"{"role":"assistant"}"#);
        assert!(msgs[2].headers.is_empty() && msgs[2].payload.is_empty());
        assert_eq!(msgs[3].message_type(), Some("exception"));
        assert_eq!(msgs[3].exception_type(), Some("throttlingException"));
        assert_eq!(msgs[3].event_type(), None);
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        let s = sample_stream();
        let whole = decode_all(&[&s]).unwrap();
        let bytes: Vec<&[u8]> = s.chunks(1).collect();
        assert_eq!(decode_all(&bytes).unwrap(), whole);
    }

    #[test]
    fn frame_matches_the_published_layout() {
        // Length, headers length, prelude CRC, one header, payload, message CRC.
        let f = encode_frame(&[(":message-type", "event")], b"{}");
        let headers_len = 1 + 13 + 1 + 2 + 5;
        assert_eq!(u32::from_be_bytes(f[0..4].try_into().unwrap()) as usize, f.len());
        assert_eq!(u32::from_be_bytes(f[4..8].try_into().unwrap()), headers_len);
        assert_eq!(u32::from_be_bytes(f[8..12].try_into().unwrap()), crc32fast::hash(&f[..8]));
        let n = f.len();
        assert_eq!(u32::from_be_bytes(f[n - 4..].try_into().unwrap()), crc32fast::hash(&f[..n - 4]));
    }

    #[test]
    fn corrupted_prelude_crc_is_an_error() {
        let mut s = encode_event("messageStart", br#"{"role":"assistant"}"#);
        s[9] ^= 0xff;
        assert!(matches!(decode_all(&[&s]), Err(FrameError::PreludeChecksum { .. })));
    }

    #[test]
    fn corrupted_length_is_caught_before_waiting_for_the_frame() {
        let mut s = encode_event("messageStart", br#"{"role":"assistant"}"#);
        s[1] = 0x7f; // a huge total length, CRC now wrong
        let mut d = Decoder::new();
        let mut out = Vec::new();
        assert!(d.feed(&s[..12], &mut out).is_err());
        // Sticky.
        assert!(d.feed(b"more", &mut out).is_err());
        assert!(d.finish().is_err());
    }

    #[test]
    fn corrupted_payload_fails_the_message_crc() {
        let mut s = encode_event("messageStart", br#"{"role":"assistant"}"#);
        let n = s.len();
        s[n - 6] ^= 0x01;
        assert_eq!(decode_all(&[&s]), Err(FrameError::MessageChecksum));
        let mut s = encode_event("messageStart", br#"{"role":"assistant"}"#);
        let n = s.len();
        s[n - 1] ^= 0x01; // the CRC itself
        assert_eq!(decode_all(&[&s]), Err(FrameError::MessageChecksum));
    }

    #[test]
    fn trailing_partial_frame_is_truncated() {
        let s = sample_stream();
        assert_eq!(
            decode_all(&[&s[..s.len() - 3]]),
            Err(FrameError::Truncated(
                encode_exception("throttlingException", br#"{"message":"slow down"}"#).len() - 3
            ))
        );
    }

    #[test]
    fn oversized_header_value_cannot_be_encoded() {
        let v = "x".repeat(40_000);
        assert!(try_encode_frame(&[("h", &v)], b"").is_err());
    }

    proptest! {
        #[test]
        fn random_splits_give_identical_messages(cuts in proptest::collection::vec(0usize..400, 0..12)) {
            let s = sample_stream();
            let whole = decode_all(&[&s]).unwrap();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (s.len() + 1)).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut at = 0;
            for c in cuts {
                chunks.push(&s[at..c]);
                at = c;
            }
            chunks.push(&s[at..]);
            prop_assert_eq!(decode_all(&chunks).unwrap(), whole);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), split in 0usize..512) {
            let split = split.min(bytes.len());
            let _ = decode_all(&[&bytes[..split], &bytes[split..]]);
        }

        #[test]
        fn bit_flips_never_panic_and_are_detected(pos in 0usize..10_000, bit in 0u8..8) {
            let mut s = sample_stream();
            let pos = pos % s.len();
            s[pos] ^= 1 << bit;
            prop_assert!(decode_all(&[&s]).is_err());
        }

        #[test]
        fn valid_prelude_with_random_body_never_panics(
            headers_len in 0u32..64,
            body in proptest::collection::vec(any::<u8>(), 0..128),
        ) {
            // A correct prelude CRC gets past the first check, so the smithy parser sees junk.
            let total = (MIN_FRAME_LEN + body.len()) as u32;
            let mut f = Vec::new();
            f.extend(total.to_be_bytes());
            f.extend(headers_len.to_be_bytes());
            f.extend(crc32fast::hash(&f).to_be_bytes());
            f.extend(&body);
            let crc = crc32fast::hash(&f);
            f.extend(crc.to_be_bytes());
            let _ = decode_all(&[&f]);
        }
    }
}
