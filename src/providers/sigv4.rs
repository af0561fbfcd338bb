//! AWS Signature Version 4 for Bedrock requests: the headers to add to one request, and the
//! Converse paths whose model-id encoding the signature depends on. Pure: the caller supplies
//! the clock and the credentials; no I/O, no credential discovery (no SDK, no STS, no IMDS).
//!
//! The signing itself is AWS's `aws-sigv4` crate (the one the Rust SDK uses), so canonical
//! request, header normalisation and key derivation are the SDK's, not ours.

use std::fmt;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign as aws_sign, PayloadChecksumKind, PercentEncodingMode, SessionTokenMode, SignableBody,
    SignableRequest, SigningSettings, UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;

/// The SigV4 service name for Bedrock Runtime (Converse, ConverseStream, InvokeModel).
pub const BEDROCK_SERVICE: &str = "bedrock";

/// The request to sign. `url` is the full URL exactly as it will be sent
/// (`https://host/path?query`, path already percent-encoded, e.g. from [`converse_path`]).
/// Every header in `headers` is signed, so pass only ones sent unchanged: at least `host`
/// (when the connection's Host differs from the URL's) and `content-type`. Never pass
/// `authorization`, `x-amz-date`, `x-amz-content-sha256` or `x-amz-security-token`: those
/// are what [`sign`] returns.
#[derive(Clone, Copy, Debug)]
pub struct SigningInput<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// Static AWS credentials (long-lived keys, or temporary ones with a session token).
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .field("session_token", &self.session_token.as_ref().map(|_| "** redacted **"))
            .finish()
    }
}

/// Why a request could not be signed (a bug or a config problem, never the client's).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    #[error("cannot sign {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot sign header {name:?}: {reason}")]
    Header { name: String, reason: String },
    #[error("SigV4 signing failed: {0}")]
    Signing(String),
}

/// The SigV4 headers to add to `req`: `x-amz-date`, `authorization`, `x-amz-content-sha256`
/// (the body's SHA-256, signed), and `x-amz-security-token` when `creds` has a session token.
/// Names are lower-case.
///
/// Path encoding: `req.url`'s path is signed as AWS's SDKs sign it for every service but S3:
/// the already-encoded path is percent-encoded a *second* time for the canonical URI
/// (`PercentEncodingMode::Double`, so `%3A` becomes `%253A`), with `.`/`..` segments
/// normalised (`UriPathNormalizationMode::Enabled`). Bedrock's server does the same to the
/// path it receives, so the URL must carry the model id encoded once, `:` as `%3A`, exactly as
/// [`converse_path`] writes it and as the Rust SDK and boto3 send it. (The single-encoding,
/// no-normalisation mode is S3's special case and would make Bedrock answer 403
/// `SignatureDoesNotMatch` for any model id with a `:`.)
pub fn sign(
    req: &SigningInput,
    creds: &AwsCredentials,
    region: &str,
    service: &str,
    time: SystemTime,
) -> Result<Vec<(String, String)>, SigV4Error> {
    sign_with(req, creds, region, service, time, PayloadChecksumKind::XAmzSha256)
}

fn sign_with(
    req: &SigningInput,
    creds: &AwsCredentials,
    region: &str,
    service: &str,
    time: SystemTime,
    checksum: PayloadChecksumKind,
) -> Result<Vec<(String, String)>, SigV4Error> {
    check_url(req.url)?;
    for (name, value) in req.headers {
        check_header(name, value)?;
    }

    let identity = Credentials::new(
        creds.access_key_id.clone(),
        creds.secret_access_key.clone(),
        creds.session_token.clone(),
        None,
        "llm-gateway",
    )
    .into();
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Double;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Enabled;
    settings.payload_checksum_kind = checksum;
    settings.session_token_mode = SessionTokenMode::Include;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| SigV4Error::Signing(e.to_string()))?
        .into();

    let signable =
        SignableRequest::new(req.method, req.url, req.headers.iter().copied(), SignableBody::Bytes(req.body))
            .map_err(|e| SigV4Error::Url { url: req.url.to_owned(), reason: e.to_string() })?;
    let (instructions, _signature) =
        aws_sign(signable, &params).map_err(|e| SigV4Error::Signing(e.to_string()))?.into_parts();
    Ok(instructions.headers().map(|(n, v)| (n.to_owned(), v.to_owned())).collect())
}

/// `aws-sigv4` panics on a URL without a host, so refuse one here.
fn check_url(url: &str) -> Result<(), SigV4Error> {
    let bad = |reason: &str| SigV4Error::Url { url: url.to_owned(), reason: reason.to_owned() };
    let uri: http::Uri = url.parse().map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
    if uri.scheme().is_none() || uri.host().is_none_or(str::is_empty) {
        return Err(bad("need an absolute http(s) URL with a host"));
    }
    Ok(())
}

/// Signed header values must be visible ASCII (what `http::HeaderValue::to_str` accepts).
fn check_header(name: &str, value: &str) -> Result<(), SigV4Error> {
    let bad = |reason: &str| SigV4Error::Header { name: name.to_owned(), reason: reason.to_owned() };
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        return Err(bad("not a valid header name"));
    }
    if !value.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) {
        return Err(bad("value must be visible ASCII"));
    }
    let lower = name.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "authorization" | "x-amz-date" | "x-amz-content-sha256" | "x-amz-security-token"
    ) {
        return Err(bad("set by the signer; do not pass it in"));
    }
    Ok(())
}

/// The Converse (`stream == false`) or ConverseStream path for `model_id`, with the id
/// percent-encoded as one path segment the way AWS's SDKs encode an `httpLabel`: everything
/// but `A-Z a-z 0-9 - . _ ~` is `%XX` (UTF-8 bytes), so `:` is `%3A` and the `/` of an
/// inference-profile ARN is `%2F`.
///
/// `converse_path("anthropic.claude-3-5-haiku-20241022-v1:0", false)` is
/// `/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse`.
pub fn converse_path(model_id: &str, stream: bool) -> String {
    let op = if stream { "converse-stream" } else { "converse" };
    let mut out = String::with_capacity(model_id.len() + 32);
    out.push_str("/model/");
    for b in model_id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out.push('/');
    out.push_str(op);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The AWS SigV4 test suite's credentials, clock (2015-08-30T12:36:00Z) and scope.
    fn suite_creds() -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        }
    }
    fn suite_time() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160)
    }
    const SUITE_HOST: &str = "example.amazonaws.com";

    /// Sign a test-suite request the way the suite does (no x-amz-content-sha256 header).
    fn suite_sign(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> String {
        let req = SigningInput { method, url, headers, body };
        let out = sign_with(
            &req,
            &suite_creds(),
            "us-east-1",
            "service",
            suite_time(),
            PayloadChecksumKind::NoHeader,
        )
        .unwrap();
        assert_eq!(header(&out, "x-amz-date"), "20150830T123600Z");
        header(&out, "authorization").to_owned()
    }

    fn header<'a>(h: &'a [(String, String)], name: &str) -> &'a str {
        h.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} in {h:?}"))
    }

    fn suite_authz(signed_headers: &str, signature: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders={signed_headers}, Signature={signature}"
        )
    }

    #[test]
    fn get_vanilla_matches_the_aws_test_suite() {
        let a = suite_sign("GET", "https://example.amazonaws.com/", &[("host", SUITE_HOST)], b"");
        assert_eq!(
            a,
            suite_authz(
                "host;x-amz-date",
                "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
            )
        );
    }

    #[test]
    fn get_vanilla_query_order_key_case_matches_the_aws_test_suite() {
        let a = suite_sign(
            "GET",
            "https://example.amazonaws.com/?Param2=value2&Param1=value1",
            &[("host", SUITE_HOST)],
            b"",
        );
        assert_eq!(
            a,
            suite_authz(
                "host;x-amz-date",
                "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
            )
        );
    }

    /// The suite's `get-utf8` sends the raw path `/ሴ` and signs `/%E1%88%B4`. A real request
    /// line carries the encoded form, which the non-S3 rule encodes again: `/%25E1%2588%25B4`.
    #[test]
    fn get_utf8_path_is_encoded_twice_like_every_non_s3_service() {
        let a = suite_sign("GET", "https://example.amazonaws.com/%E1%88%B4", &[("host", SUITE_HOST)], b"");
        let (signed, sig) = reference_signature(
            "GET",
            "/%25E1%2588%25B4",
            &[("host", SUITE_HOST), ("x-amz-date", "20150830T123600Z")],
            b"",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20150830T123600Z",
            "us-east-1",
            "service",
        );
        assert_eq!(a, suite_authz(&signed, &sig));
        // And the reference implementation reproduces the suite's own get-utf8 signature
        // for the canonical URI the suite specifies.
        let (_, suite_sig) = reference_signature(
            "GET",
            "/%E1%88%B4",
            &[("host", SUITE_HOST), ("x-amz-date", "20150830T123600Z")],
            b"",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20150830T123600Z",
            "us-east-1",
            "service",
        );
        assert_eq!(suite_sig, "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85");
    }

    #[test]
    fn post_vanilla_matches_the_aws_test_suite() {
        let a = suite_sign("POST", "https://example.amazonaws.com/", &[("host", SUITE_HOST)], b"");
        assert_eq!(
            a,
            suite_authz(
                "host;x-amz-date",
                "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
            )
        );
    }

    #[test]
    fn post_x_www_form_urlencoded_matches_the_aws_test_suite() {
        let a = suite_sign(
            "POST",
            "https://example.amazonaws.com/",
            &[("Content-Type", "application/x-www-form-urlencoded"), ("Host", SUITE_HOST)],
            b"Param1=value1",
        );
        assert_eq!(
            a,
            suite_authz(
                "content-type;host;x-amz-date",
                "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
            )
        );
    }

    #[test]
    fn host_comes_from_the_url_when_not_given() {
        let a = suite_sign("GET", "https://example.amazonaws.com/", &[], b"");
        assert!(a.ends_with("5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"));
    }

    // --- an independent SigV4 (ring only), to check the Bedrock path encoding end to end ---

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
    fn sha256_hex(data: &[u8]) -> String {
        hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
    }
    fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
        let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
        ring::hmac::sign(&k, data).as_ref().to_vec()
    }

    /// SigV4 from the published algorithm: canonical request, string to sign, key chain.
    #[allow(clippy::too_many_arguments)]
    fn reference_signature(
        method: &str,
        canonical_uri: &str,
        headers: &[(&str, &str)], // lower-case, sorted, including x-amz-*
        body: &[u8],
        secret: &str,
        amz_date: &str,
        region: &str,
        service: &str,
    ) -> (String, String) {
        let canonical_headers: String = headers.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
        let signed: Vec<&str> = headers.iter().map(|(n, _)| *n).collect();
        let signed = signed.join(";");
        let creq =
            format!("{method}\n{canonical_uri}\n\n{canonical_headers}\n{signed}\n{}", sha256_hex(body));
        let date = &amz_date[..8];
        let scope = format!("{date}/{region}/{service}/aws4_request");
        let sts = format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", sha256_hex(creq.as_bytes()));
        let k = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
        let k = hmac(&k, region.as_bytes());
        let k = hmac(&k, service.as_bytes());
        let k = hmac(&k, b"aws4_request");
        (signed, hex(&hmac(&k, sts.as_bytes())))
    }

    const MODEL: &str = "anthropic.claude-3-5-haiku-20241022-v1:0";
    const BEDROCK_HOST: &str = "bedrock-runtime.us-west-2.amazonaws.com";
    const BODY: &[u8] = br#"{"messages":[{"role":"user","content":[{"text":"Hi"}]}]}"#;

    fn bedrock_creds() -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: Some("FQoGZXIvYXdzEXAMPLETOKEN".into()),
        }
    }

    fn sign_bedrock(body: &[u8], stream: bool) -> Vec<(String, String)> {
        let url = format!("https://{BEDROCK_HOST}{}", converse_path(MODEL, stream));
        let req = SigningInput {
            method: "POST",
            url: &url,
            headers: &[("host", BEDROCK_HOST), ("content-type", "application/json")],
            body,
        };
        // 2024-11-23T10:15:36Z
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_732_356_936);
        sign(&req, &bedrock_creds(), "us-west-2", BEDROCK_SERVICE, t).unwrap()
    }

    #[test]
    fn converse_path_encodes_the_model_id_once() {
        assert_eq!(converse_path(MODEL, false), "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse");
        assert_eq!(
            converse_path(MODEL, true),
            "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse-stream"
        );
        assert_eq!(
            converse_path(
                "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.meta.llama3-2-1b-instruct-v1:0",
                false
            ),
            "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.meta.llama3-2-1b-instruct-v1%3A0/converse"
        );
        assert_eq!(converse_path("a b+é", false), "/model/a%20b%2B%C3%A9/converse");
    }

    #[test]
    fn bedrock_converse_signature_matches_an_independent_computation() {
        let out = sign_bedrock(BODY, false);
        let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
        for want in ["authorization", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token"] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        assert_eq!(header(&out, "x-amz-date"), "20241123T101536Z");
        assert_eq!(header(&out, "x-amz-content-sha256"), sha256_hex(BODY));
        assert_eq!(header(&out, "x-amz-security-token"), "FQoGZXIvYXdzEXAMPLETOKEN");

        // The canonical URI is the sent path encoded a second time: %3A -> %253A.
        let (signed, sig) = reference_signature(
            "POST",
            "/model/anthropic.claude-3-5-haiku-20241022-v1%253A0/converse",
            &[
                ("content-type", "application/json"),
                ("host", BEDROCK_HOST),
                ("x-amz-content-sha256", &sha256_hex(BODY)),
                ("x-amz-date", "20241123T101536Z"),
                ("x-amz-security-token", "FQoGZXIvYXdzEXAMPLETOKEN"),
            ],
            BODY,
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "20241123T101536Z",
            "us-west-2",
            "bedrock",
        );
        assert_eq!(
            header(&out, "authorization"),
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20241123/us-west-2/bedrock/aws4_request, \
                 SignedHeaders={signed}, Signature={sig}"
            )
        );
    }

    #[test]
    fn tampered_body_or_other_operation_changes_the_signature() {
        let base = sign_bedrock(BODY, false);
        let tampered = sign_bedrock(br#"{"messages":[{"role":"user","content":[{"text":"Ho"}]}]}"#, false);
        let stream = sign_bedrock(BODY, true);
        assert_ne!(header(&base, "authorization"), header(&tampered, "authorization"));
        assert_ne!(header(&base, "x-amz-content-sha256"), header(&tampered, "x-amz-content-sha256"));
        assert_ne!(header(&base, "authorization"), header(&stream, "authorization"));
        // Deterministic for the same input.
        assert_eq!(base, sign_bedrock(BODY, false));
    }

    #[test]
    fn no_session_token_means_no_token_header() {
        let req = SigningInput {
            method: "POST",
            url: "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse",
            headers: &[("content-type", "application/json")],
            body: b"{}",
        };
        let out = sign(&req, &suite_creds(), "us-east-1", "bedrock", suite_time()).unwrap();
        assert!(out.iter().all(|(n, _)| n != "x-amz-security-token"));
        assert!(header(&out, "authorization")
            .contains("SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date,"));
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        let c = suite_creds();
        let t = suite_time();
        let with = |url: &str, headers: &[(&str, &str)]| {
            let req = SigningInput { method: "POST", url, headers, body: b"" };
            sign(&req, &c, "us-east-1", "bedrock", t)
        };
        assert!(matches!(with("/model/m/converse", &[]), Err(SigV4Error::Url { .. })));
        assert!(matches!(with("not a url", &[]), Err(SigV4Error::Url { .. })));
        assert!(matches!(with("", &[]), Err(SigV4Error::Url { .. })));
        let u = "https://h.example/";
        assert!(matches!(with(u, &[("x-amz-date", "x")]), Err(SigV4Error::Header { .. })));
        assert!(matches!(with(u, &[("x-note", "é")]), Err(SigV4Error::Header { .. })));
        assert!(matches!(with(u, &[("bad name", "v")]), Err(SigV4Error::Header { .. })));
        assert!(with(u, &[("x-note", " spaced  value ")]).is_ok());
    }

    #[test]
    fn debug_redacts_secrets() {
        let d = format!("{:?}", bedrock_creds());
        assert!(d.contains("AKIAIOSFODNN7EXAMPLE"));
        assert!(!d.contains("wJalrXUtnFEMI") && !d.contains("FQoGZXIvYXdz"));
    }
}
