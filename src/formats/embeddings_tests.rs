use super::*;

fn decode(v: Value) -> EmbeddingRequest {
    decode_openai_request(&serde_json::to_vec(&v).unwrap()).unwrap()
}

fn decode_err(v: Value) -> TranslateError {
    decode_openai_request(&serde_json::to_vec(&v).unwrap()).unwrap_err()
}

fn request(inputs: &[&str]) -> EmbeddingRequest {
    EmbeddingRequest {
        model: "text-embedding-3-small".into(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        ..EmbeddingRequest::default()
    }
}

fn parse(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap()
}

fn bedrock_bodies(req: &EmbeddingRequest, model_id: &str) -> Vec<Value> {
    encode_bedrock_requests(req, model_id).unwrap().iter().map(|b| parse(b)).collect()
}

const TITAN: &str = "amazon.titan-embed-text-v2:0";
const COHERE: &str = "cohere.embed-english-v3";

// === OpenAI request ===

#[test]
fn a_string_input_becomes_one_input() {
    let req = decode(json!({"model": "text-embedding-3-small", "input": "hello"}));
    assert_eq!(req, request(&["hello"]));
}

#[test]
fn an_array_of_strings_keeps_its_order_and_the_options() {
    let req = decode(json!({
        "model": "m", "input": ["a", "b", "c"], "encoding_format": "base64",
        "dimensions": 256, "user": "u-1"
    }));
    assert_eq!(req.inputs, ["a", "b", "c"]);
    assert_eq!(req.dimensions, Some(256));
    assert!(req.base64);
    assert_eq!(req.user.as_deref(), Some("u-1"));
}

#[test]
fn float_and_null_encoding_formats_mean_floats() {
    assert!(!decode(json!({"model": "m", "input": "x", "encoding_format": "float"})).base64);
    assert!(!decode(json!({"model": "m", "input": "x", "encoding_format": null})).base64);
}

#[test]
fn token_array_inputs_are_unsupported() {
    for input in [json!([1, 2, 3]), json!([[1, 2], [3]]), json!(["a", [1]])] {
        let err = decode_err(json!({"model": "m", "input": input}));
        assert!(matches!(&err, TranslateError::Unsupported(m) if m.contains("token arrays")), "{err}");
    }
}

#[test]
fn empty_and_missing_inputs_are_invalid() {
    for input in [json!([]), Value::Null] {
        let err = decode_err(json!({"model": "m", "input": input}));
        assert!(matches!(&err, TranslateError::Invalid { field, .. } if field == "input"), "{err}");
    }
    let err = decode_err(json!({"model": "m", "input": ""}));
    assert!(matches!(&err, TranslateError::Invalid { field, .. } if field == "input"), "{err}");
    let err = decode_err(json!({"model": "m", "input": ["a", ""]}));
    assert!(matches!(&err, TranslateError::Invalid { field, .. } if field == "input[1]"), "{err}");
}

#[test]
fn bad_fields_are_invalid_and_named() {
    let cases = [
        (json!({"input": "x"}), "model"),
        (json!({"model": 3, "input": "x"}), "model"),
        (json!({"model": "m", "input": {"a": 1}}), "input"),
        (json!({"model": "m", "input": [true]}), "input[0]"),
        (json!({"model": "m", "input": "x", "encoding_format": "int8"}), "encoding_format"),
        (json!({"model": "m", "input": "x", "dimensions": 0}), "dimensions"),
        (json!({"model": "m", "input": "x", "dimensions": -5}), "dimensions"),
        (json!({"model": "m", "input": "x", "dimensions": 1.5}), "dimensions"),
        (json!({"model": "m", "input": "x", "user": 7}), "user"),
        (json!(["not", "an", "object"]), "body"),
    ];
    for (body, want) in cases {
        let err = decode_err(body.clone());
        assert!(matches!(&err, TranslateError::Invalid { field, .. } if field == want), "{body}: {err}");
    }
}

#[test]
fn malformed_json_is_a_json_error() {
    assert!(matches!(decode_openai_request(b"{\"model\":"), Err(TranslateError::Json(_))));
}

// === OpenAI response ===

#[test]
fn the_float_response_has_openais_shape() {
    let resp = EmbeddingResponse {
        vectors: vec![vec![0.1, -0.5], vec![1.0, 0.25]],
        usage: Usage { input_tokens: 7, ..Usage::default() },
    };
    let v = parse(&encode_openai_response(&resp, "text-embedding-3-small", false));
    assert_eq!(
        v,
        json!({
            "object": "list",
            "data": [
                {"object": "embedding", "index": 0, "embedding": [0.1, -0.5]},
                {"object": "embedding", "index": 1, "embedding": [1.0, 0.25]},
            ],
            "model": "text-embedding-3-small",
            "usage": {"prompt_tokens": 7, "total_tokens": 7},
        })
    );
}

#[test]
fn base64_embeddings_decode_back_to_little_endian_f32s() {
    let vector = vec![0.1f32, -2.5, 3.0e-8, f32::MAX];
    let resp = EmbeddingResponse { vectors: vec![vector.clone()], usage: Usage::default() };
    let v = parse(&encode_openai_response(&resp, "m", true));
    let b64 = v.pointer("/data/0/embedding").and_then(Value::as_str).unwrap();
    let bytes = B64.decode(b64).unwrap();
    assert_eq!(bytes.len(), 16);
    let back: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(back, vector);
}

#[test]
fn base64_matches_a_known_openai_encoding() {
    // numpy: base64.b64encode(np.array([1.0, -1.0], dtype="<f4").tobytes()) == b"AACAPwAAgL8="
    let resp = EmbeddingResponse { vectors: vec![vec![1.0, -1.0]], usage: Usage::default() };
    let v = parse(&encode_openai_response(&resp, "m", true));
    assert_eq!(v.pointer("/data/0/embedding"), Some(&json!("AACAPwAAgL8=")));
}

// === Gemini ===

#[test]
fn gemini_gets_one_request_per_input_with_the_model_named() {
    let req = request(&["a", "b"]);
    let v = parse(&encode_gemini_request(&req, "gemini-embedding-001").unwrap());
    assert_eq!(
        v,
        json!({"requests": [
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}},
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]}},
        ]})
    );
}

#[test]
fn gemini_gets_dimensions_as_output_dimensionality_and_no_double_models_prefix() {
    let req = EmbeddingRequest { dimensions: Some(768), ..request(&["a"]) };
    let v = parse(&encode_gemini_request(&req, "models/text-embedding-004").unwrap());
    assert_eq!(v.pointer("/requests/0/model"), Some(&json!("models/text-embedding-004")));
    assert_eq!(v.pointer("/requests/0/outputDimensionality"), Some(&json!(768)));
}

#[test]
fn gemini_rejects_an_empty_input_list_and_an_empty_model() {
    let err = encode_gemini_request(&request(&[]), "g").unwrap_err();
    assert!(matches!(&err, TranslateError::Invalid { field, .. } if field == "input"), "{err}");
    assert!(encode_gemini_request(&request(&["a"]), "models/").is_err());
}

#[test]
fn gemini_vectors_come_back_in_order_with_estimated_usage() {
    let req = request(&["abcd", "abcde"]);
    let body = br#"{"embeddings": [{"values": [1, 2.5]}, {"values": [-3.0, 0]}]}"#;
    let resp = decode_gemini_response(body, &req).unwrap();
    assert_eq!(resp.vectors, vec![vec![1.0, 2.5], vec![-3.0, 0.0]]);
    assert_eq!(resp.usage.input_tokens, 1 + 2);
}

#[test]
fn gemini_takes_at_most_100_inputs() {
    let texts = vec!["x"; GEMINI_MAX_BATCH + 1];
    let err = encode_gemini_request(&request(&texts), "g").unwrap_err();
    assert!(
        matches!(&err, TranslateError::Invalid { message, .. } if message.contains("at most 100")),
        "{err}"
    );
    assert!(encode_gemini_request(&request(&texts[1..]), "g").is_ok());
}

#[test]
fn gemini_usage_metadata_wins_over_the_estimate_when_present() {
    let body = br#"{"embeddings": [{"values": [1]}], "usageMetadata": {"promptTokenCount": 42}}"#;
    assert_eq!(decode_gemini_response(body, &request(&["a"])).unwrap().usage.input_tokens, 42);
}

#[test]
fn gemini_answers_with_the_wrong_shape_are_errors() {
    let req = request(&["a", "b"]);
    for body in [
        &br#"{"embeddings": [{"values": [1]}]}"#[..],
        br#"{"error": {"code": 400, "message": "bad"}}"#,
        br#"{"embeddings": [{"values": ["x"]}, {"values": [1]}]}"#,
        b"[]",
    ] {
        assert!(decode_gemini_response(body, &req).is_err(), "{}", String::from_utf8_lossy(body));
    }
}

// === Bedrock family ===

#[test]
fn families_are_found_for_plain_ids() {
    assert_eq!(bedrock_family(TITAN), Some(BedrockEmbedFamily::Titan));
    assert_eq!(bedrock_family("amazon.titan-embed-text-v1"), Some(BedrockEmbedFamily::Titan));
    assert_eq!(bedrock_family("amazon.titan-embed-g1-text-02"), Some(BedrockEmbedFamily::Titan));
    assert_eq!(bedrock_family(COHERE), Some(BedrockEmbedFamily::Cohere));
    assert_eq!(bedrock_family("cohere.embed-multilingual-v3"), Some(BedrockEmbedFamily::Cohere));
    assert_eq!(bedrock_family("cohere.embed-v4:0"), Some(BedrockEmbedFamily::Cohere));
}

#[test]
fn families_are_found_behind_region_prefixes_and_arns() {
    assert_eq!(bedrock_family("us.cohere.embed-v4:0"), Some(BedrockEmbedFamily::Cohere));
    assert_eq!(bedrock_family("eu.amazon.titan-embed-text-v2:0"), Some(BedrockEmbedFamily::Titan));
    assert_eq!(
        bedrock_family("arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-embed-text-v2:0"),
        Some(BedrockEmbedFamily::Titan)
    );
    assert_eq!(
        bedrock_family("arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.cohere.embed-v4:0"),
        Some(BedrockEmbedFamily::Cohere)
    );
}

#[test]
fn other_models_have_no_family() {
    for id in [
        "",
        "anthropic.claude-3-haiku-20240307-v1:0",
        "amazon.titan-embed-image-v1",
        "us.meta.llama3-1-8b-instruct-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123",
        "cohere.command-r-v1:0",
    ] {
        assert_eq!(bedrock_family(id), None, "{id}");
    }
    let err = encode_bedrock_requests(&request(&["a"]), "cohere.command-r-v1:0").unwrap_err();
    assert!(matches!(err, TranslateError::Unsupported(_)));
}

// === Bedrock Titan ===

#[test]
fn titan_fans_out_one_body_per_input_and_combines_in_order() {
    let req = request(&["one", "two", "three"]);
    let bodies = bedrock_bodies(&req, TITAN);
    assert_eq!(
        bodies,
        [
            json!({"inputText": "one", "normalize": true}),
            json!({"inputText": "two", "normalize": true}),
            json!({"inputText": "three", "normalize": true}),
        ]
    );
    let answers: [&[u8]; 3] = [
        br#"{"embedding": [1.0], "inputTextTokenCount": 2, "embeddingsByType": {"float": [1.0]}}"#,
        br#"{"embedding": [2.0], "inputTextTokenCount": 3}"#,
        br#"{"embedding": [3.0], "inputTextTokenCount": 4}"#,
    ];
    let resp = decode_bedrock_responses(&answers, TITAN, &req).unwrap();
    assert_eq!(resp.vectors, vec![vec![1.0], vec![2.0], vec![3.0]]);
    assert_eq!(resp.usage.input_tokens, 9);
}

#[test]
fn titan_v2_gets_allowed_dimensions() {
    let req = EmbeddingRequest { dimensions: Some(512), ..request(&["a"]) };
    assert_eq!(
        bedrock_bodies(&req, TITAN),
        [json!({"inputText": "a", "dimensions": 512, "normalize": true})]
    );
}

#[test]
fn titan_v2_rejects_other_dimensions_naming_the_allowed_ones() {
    let req = EmbeddingRequest { dimensions: Some(768), ..request(&["a"]) };
    let err = encode_bedrock_requests(&req, TITAN).unwrap_err();
    let TranslateError::Invalid { field, message } = &err else { panic!("{err}") };
    assert_eq!(field, "dimensions");
    assert!(message.contains("256, 512 or 1024"), "{message}");
}

#[test]
fn titan_g1_gets_only_the_text_and_cannot_take_dimensions() {
    assert_eq!(bedrock_bodies(&request(&["a"]), "amazon.titan-embed-text-v1"), [json!({"inputText": "a"})]);
    let req = EmbeddingRequest { dimensions: Some(256), ..request(&["a"]) };
    let err = encode_bedrock_requests(&req, "amazon.titan-embed-text-v1").unwrap_err();
    assert!(matches!(err, TranslateError::Unsupported(_)));
}

#[test]
fn titan_usage_is_estimated_when_the_count_is_missing() {
    let req = request(&["12345678"]);
    let resp = decode_bedrock_responses(&[br#"{"embedding": [0.5]}"#], TITAN, &req).unwrap();
    assert_eq!(resp.usage.input_tokens, 2);
}

#[test]
fn titan_answers_of_the_wrong_count_or_shape_are_errors() {
    let req = request(&["a", "b"]);
    let one: &[u8] = br#"{"embedding": [1.0], "inputTextTokenCount": 1}"#;
    assert!(decode_bedrock_responses(&[one], TITAN, &req).is_err());
    assert!(decode_bedrock_responses(&[one, b"{\"message\": \"throttled\"}"], TITAN, &req).is_err());
    assert!(decode_bedrock_responses(&[one, one, one], TITAN, &req).is_err());
}

// === Bedrock Cohere ===

#[test]
fn cohere_gets_all_texts_in_one_body() {
    let bodies = bedrock_bodies(&request(&["a", "b"]), COHERE);
    assert_eq!(bodies, [json!({"texts": ["a", "b"], "input_type": "search_document"})]);
}

#[test]
fn cohere_splits_beyond_96_texts_and_rejoins_in_order() {
    let texts: Vec<String> = (0..200).map(|i| format!("t{i}")).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let req = request(&refs);
    let bodies = bedrock_bodies(&req, COHERE);
    let sizes: Vec<usize> = bodies.iter().map(|b| b["texts"].as_array().unwrap().len()).collect();
    assert_eq!(sizes, [96, 96, 8]);
    assert_eq!(bodies[1]["texts"][0], json!("t96"));

    let answers: Vec<Vec<u8>> = bodies
        .iter()
        .map(|b| {
            let vectors: Vec<Vec<f32>> = b["texts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| vec![t.as_str().unwrap()[1..].parse::<f32>().unwrap()])
                .collect();
            serde_json::to_vec(&json!({"id": "x", "embeddings": vectors, "texts": b["texts"]})).unwrap()
        })
        .collect();
    let answers: Vec<&[u8]> = answers.iter().map(Vec::as_slice).collect();
    let resp = decode_bedrock_responses(&answers, COHERE, &req).unwrap();
    let firsts: Vec<f32> = resp.vectors.iter().map(|v| v[0]).collect();
    assert_eq!(firsts, (0..200).map(|i| i as f32).collect::<Vec<_>>());
    assert_eq!(resp.usage.input_tokens, estimate_tokens(&req.inputs));
}

#[test]
fn cohere_embeddings_by_type_and_billed_units_are_read() {
    let req = request(&["a", "b"]);
    let body: &[u8] = br#"{"id": "x", "response_type": "embeddings_by_type",
        "embeddings": {"float": [[1.0, 2.0], [3.0, 4.0]], "int8": [[1, 2], [3, 4]]},
        "meta": {"billed_units": {"input_tokens": 11}}}"#;
    let resp = decode_bedrock_responses(&[body], COHERE, &req).unwrap();
    assert_eq!(resp.vectors, vec![vec![1.0, 2.0], vec![3.0, 4.0]]);
    assert_eq!(resp.usage.input_tokens, 11);
}

#[test]
fn cohere_v3_rejects_dimensions() {
    let req = EmbeddingRequest { dimensions: Some(512), ..request(&["a"]) };
    let err = encode_bedrock_requests(&req, "cohere.embed-multilingual-v3").unwrap_err();
    assert!(matches!(&err, TranslateError::Unsupported(m) if m.contains("fixed dimensions")), "{err}");
}

#[test]
fn cohere_v4_asks_for_floats_and_takes_its_dimensions() {
    let req = EmbeddingRequest { dimensions: Some(1536), ..request(&["a"]) };
    assert_eq!(
        bedrock_bodies(&req, "us.cohere.embed-v4:0"),
        [json!({"texts": ["a"], "input_type": "search_document", "embedding_types": ["float"],
            "output_dimension": 1536})]
    );
    let req = EmbeddingRequest { dimensions: Some(300), ..request(&["a"]) };
    let err = encode_bedrock_requests(&req, "cohere.embed-v4:0").unwrap_err();
    assert!(matches!(&err, TranslateError::Invalid { message, .. } if message.contains("1536")), "{err}");
}

#[test]
fn cohere_answers_of_the_wrong_count_are_errors() {
    let req = request(&["a", "b"]);
    let body: &[u8] = br#"{"embeddings": [[1.0]]}"#;
    let err = decode_bedrock_responses(&[body], COHERE, &req).unwrap_err();
    assert!(err.to_string().contains("1 embeddings for 2 inputs"), "{err}");
}

#[test]
fn bedrock_rejects_an_empty_input_list() {
    for model in [TITAN, COHERE] {
        let err = encode_bedrock_requests(&request(&[]), model).unwrap_err();
        assert!(matches!(&err, TranslateError::Invalid { field, .. } if field == "input"), "{err}");
    }
}

// === Properties ===

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let req = request(&["a", "b"]);
            let _ = decode_openai_request(&bytes);
            let _ = decode_gemini_response(&bytes, &req);
            let _ = decode_bedrock_responses(&[&bytes], COHERE, &req);
            let _ = decode_bedrock_responses(&[&bytes, &bytes], TITAN, &req);
        }

        #[test]
        fn base64_round_trips_any_vector(v in proptest::collection::vec(any::<f32>(), 0..64)) {
            let resp = EmbeddingResponse { vectors: vec![v.clone()], usage: Usage::default() };
            let out = parse(&encode_openai_response(&resp, "m", true));
            let bytes = B64.decode(out["data"][0]["embedding"].as_str().unwrap()).unwrap();
            let back: Vec<u32> = bytes.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect();
            prop_assert_eq!(back, v.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
        }

        #[test]
        fn arbitrary_model_ids_never_panic(id in ".{0,80}") {
            let req = request(&["a"]);
            let _ = bedrock_family(&id);
            let _ = encode_bedrock_requests(&req, &id);
            let _ = encode_gemini_request(&req, &id);
        }
    }
}
