use super::*;
use serde_json::json;

fn body(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn embed_content_is_one_input_of_its_text_parts() {
    let b = body(json!({"content": {"parts": [{"text": "a"}, {"text": "b"}], "role": "user"},
        "taskType": "RETRIEVAL_QUERY", "outputDimensionality": 256}));
    let r = decode_request(&b, false, "emb").unwrap();
    assert_eq!(r.model, "emb");
    assert_eq!(r.inputs, vec!["a\nb".to_string()]);
    assert_eq!(r.dimensions, Some(256));
    assert!(!r.base64);
}

#[test]
fn batch_is_one_input_per_request_as_the_sdk_sends_it() {
    // What google-genai 3.6.1 sends for embed_content(contents=["a", "b"]).
    let b = body(json!({"requests": [
        {"content": {"parts": [{"text": "a"}], "role": "user"}, "model": "models/m1"},
        {"content": {"parts": [{"text": "b"}], "role": "user"}, "model": "models/m1"}]}));
    let r = decode_request(&b, true, "emb").unwrap();
    assert_eq!(r.inputs, vec!["a".to_string(), "b".to_string()]);
    assert_eq!(r.dimensions, None);
    let openai: Value = serde_json::from_slice(&encode_openai_request(&r)).unwrap();
    assert_eq!(openai, json!({"model": "emb", "input": ["a", "b"], "encoding_format": "float"}));
}

#[test]
fn bad_requests_name_the_field() {
    let err = |v: Value, batch: bool| decode_request(&body(v), batch, "m").unwrap_err().to_string();
    assert_eq!(err(json!({"requests": []}), true), "requests: must not be empty");
    assert_eq!(err(json!({}), true), "requests: required");
    assert_eq!(err(json!({}), false), "content: required");
    assert_eq!(err(json!({"content": {"parts": []}}), false), "content.parts: no text to embed");
    assert!(err(json!({"requests": [{"content": {"parts": [{"inlineData": {}}]}}]}), true)
        .contains("requests[0].content.parts[0]: only text parts"));
    assert!(err(json!({"content": {"parts": [{"text": "a"}]}, "outputDimensionality": 0}), false)
        .starts_with("outputDimensionality: expected a positive integer"));
    let mixed = json!({"requests": [
        {"content": {"parts": [{"text": "a"}]}, "outputDimensionality": 8},
        {"content": {"parts": [{"text": "b"}]}}]});
    assert!(err(mixed, true).contains("different outputDimensionality"));
}

#[test]
fn openai_answers_come_back_in_gemini_shape_in_input_order() {
    let req = decode_request(
        &body(json!({"requests": [{"content": {"parts": [{"text": "aaaa"}]}}, {"content": {"parts": [{"text": "b"}]}}]})),
        true,
        "m",
    )
    .unwrap();
    // Out of order, the second as base64 of [1.5, -2.0].
    let b64 = super::super::vector_to_base64(&[1.5, -2.0]);
    let answer = body(json!({"object": "list", "data": [
        {"object": "embedding", "index": 1, "embedding": b64},
        {"object": "embedding", "index": 0, "embedding": [0.25, 0.5]}],
        "model": "text-embedding-3-small", "usage": {"prompt_tokens": 7, "total_tokens": 7}}));
    let resp = decode_openai_response(&answer, &req).unwrap();
    assert_eq!(resp.vectors, vec![vec![0.25, 0.5], vec![1.5, -2.0]]);
    assert_eq!(resp.usage.input_tokens, 7);
    let batch: Value = serde_json::from_slice(&encode_response(&resp, true)).unwrap();
    assert_eq!(batch, json!({"embeddings": [{"values": [0.25, 0.5]}, {"values": [1.5, -2.0]}]}));
    let one: Value = serde_json::from_slice(&encode_response(&resp, false)).unwrap();
    assert_eq!(one, json!({"embedding": {"values": [0.25, 0.5]}}));
}

#[test]
fn a_wrong_answer_is_an_error_not_a_panic() {
    let req =
        decode_request(&body(json!({"content": {"parts": [{"text": "abcdefgh"}]}})), false, "m").unwrap();
    let two = body(json!({"data": [{"embedding": [1.0]}, {"embedding": [2.0]}]}));
    assert!(decode_openai_response(&two, &req)
        .unwrap_err()
        .to_string()
        .contains("2 embeddings for 1 inputs"));
    let out_of_range = body(json!({"data": [{"index": 3, "embedding": [1.0]}]}));
    assert!(decode_openai_response(&out_of_range, &req).unwrap_err().to_string().contains("index 3"));
    let bad_b64 = body(json!({"data": [{"embedding": "%%%"}]}));
    assert!(decode_openai_response(&bad_b64, &req).is_err());
    // No usage: estimated (8 bytes = 2 tokens).
    let no_usage = body(json!({"data": [{"embedding": [1.0]}]}));
    assert_eq!(decode_openai_response(&no_usage, &req).unwrap().usage.input_tokens, 2);
}
