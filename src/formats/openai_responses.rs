//! STUB: to be replaced by the real openai_responses wire format <-> IR converters.
//! Pure: no I/O.

use super::{
    ChatRequest, ChatResponse, Encoded, ErrorKind, RequestOptions, ResponseOptions, StreamEvent,
    TranslateError,
};

pub fn decode_request(_body: &[u8]) -> Result<ChatRequest, TranslateError> {
    Err(TranslateError::Unsupported("openai_responses".into()))
}

pub fn encode_request(
    _req: &ChatRequest,
    _opts: &RequestOptions,
) -> Result<Encoded, TranslateError> {
    Err(TranslateError::Unsupported("openai_responses".into()))
}

pub fn decode_response(_body: &[u8]) -> Result<ChatResponse, TranslateError> {
    Err(TranslateError::Unsupported("openai_responses".into()))
}

pub fn encode_response(_resp: &ChatResponse, _opts: &ResponseOptions) -> Vec<u8> {
    Vec::new()
}

pub fn decode_error(_status: u16, body: &[u8]) -> (ErrorKind, String) {
    (
        ErrorKind::UpstreamError,
        String::from_utf8_lossy(body).into_owned(),
    )
}

pub fn encode_error(_kind: ErrorKind, message: &str) -> Vec<u8> {
    message.as_bytes().to_vec()
}

#[derive(Debug, Default)]
pub struct StreamDecoder;

impl StreamDecoder {
    pub fn new() -> Self {
        StreamDecoder
    }
    pub fn feed(
        &mut self,
        _chunk: &[u8],
        _out: &mut Vec<StreamEvent>,
    ) -> Result<(), TranslateError> {
        Err(TranslateError::Unsupported("openai_responses".into()))
    }
    pub fn finish(&mut self, _out: &mut Vec<StreamEvent>) -> Result<(), TranslateError> {
        Ok(())
    }
}

#[derive(Debug)]
pub struct StreamEncoder;

impl StreamEncoder {
    pub fn new(_opts: &ResponseOptions) -> Self {
        StreamEncoder
    }
    pub fn encode(&mut self, _ev: &StreamEvent, _out: &mut Vec<u8>) {}
    pub fn finish(&mut self, _out: &mut Vec<u8>) {}
}
