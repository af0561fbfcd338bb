//! A small blocking HTTP/1.1 client for the admin API (SPEC section 5), over `std::net::TcpStream`:
//! plain `http://` to the admin listener (loopback or a private network), one request per
//! connection, bearer token from the caller. Not a general HTTP client: no TLS, no redirects,
//! no proxies.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

/// Where the admin listener is when neither `--admin` nor `LLM_GATEWAY_ADMIN_URL` says.
pub const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:8081";
/// Connect timeout per address.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for the next bytes of an answer (a rollback re-validates a whole config).
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest answer read (usage tables and config versions stay far below).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Why an admin API call failed. Never carries the admin token.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("admin URL {url:?}: {problem}")]
    BadUrl { url: String, problem: String },
    #[error("cannot connect to the admin API at {url}: {source} (is the gateway running? set --admin or LLM_GATEWAY_ADMIN_URL)")]
    Connect { url: String, source: std::io::Error },
    #[error("talking to the admin API at {url}: {source}")]
    Io { url: String, source: std::io::Error },
    #[error("the admin API at {url} sent a malformed answer: {problem}")]
    BadResponse { url: String, problem: String },
    #[error("admin token refused by {url} (set LLM_GATEWAY_ADMIN_TOKEN to an admin token)")]
    TokenRefused { url: String },
    #[error("this admin token may not do that (403): {message}")]
    Forbidden { message: String },
    #[error("admin API answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("the admin API answered {status} with a body that is not JSON")]
    NotJson { status: u16 },
}

/// An admin API answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// The admin listener's address and the token to present.
pub struct AdminClient {
    /// The URL as given, for messages.
    url: String,
    host: String,
    port: u16,
    /// Path prefix (no trailing slash), for an admin API mounted below `/`.
    prefix: String,
    token: String,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient").field("url", &self.url).finish_non_exhaustive()
    }
}

// === impl AdminClient ===

impl AdminClient {
    /// `url` is `http://host[:port][/prefix]` (port 80 when absent); `token` is sent as
    /// `Authorization: Bearer`.
    pub fn new(url: &str, token: String) -> Result<AdminClient, ClientError> {
        let bad = |problem: &str| ClientError::BadUrl { url: url.to_string(), problem: problem.to_string() };
        let trimmed = url.trim();
        if trimmed.starts_with("https://") {
            return Err(bad("https is not supported by the CLI; reach the admin listener over plain http (loopback or an SSH tunnel)"));
        }
        let rest = trimmed.strip_prefix("http://").ok_or_else(|| bad("must start with http://"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(bad("needs a host (and no user:password@)"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed [ in IPv6 address"))?;
            match after.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None if after.is_empty() => (h, None),
                None => return Err(bad("unexpected text after ]")),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let port = match port {
            Some(p) => p.parse::<u16>().map_err(|_| bad("the port is not a number 1-65535"))?,
            None => 80,
        };
        if host.is_empty() || port == 0 {
            return Err(bad("needs a host and a port 1-65535"));
        }
        let prefix = path.split(['?', '#']).next().unwrap_or("").trim_end_matches('/').to_string();
        Ok(AdminClient { url: trimmed.to_string(), host: host.to_string(), port, prefix, token })
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Send one request; any status is returned as an answer (see `json` for status checks).
    /// `path` starts with `/` and may carry a query string.
    pub fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Response, ClientError> {
        let io = |source| ClientError::Io { url: self.url.clone(), source };
        let mut stream = self.connect()?;
        stream.set_read_timeout(Some(READ_TIMEOUT)).map_err(io)?;
        stream.set_write_timeout(Some(READ_TIMEOUT)).map_err(io)?;
        let body = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        let mut head = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {host}:{}\r\nAuthorization: Bearer {}\r\nAccept: application/json\r\nUser-Agent: llm-gateway-cli/{}\r\nConnection: close\r\n",
            self.prefix,
            self.port,
            self.token,
            env!("CARGO_PKG_VERSION")
        );
        match &body {
            Some(b) => {
                head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len()))
            }
            None if method != "GET" => head.push_str("Content-Length: 0\r\n"),
            None => {}
        }
        head.push_str("\r\n");
        let mut request = head.into_bytes();
        if let Some(b) = body {
            request.extend_from_slice(&b);
        }
        stream.write_all(&request).map_err(io)?;
        stream.flush().map_err(io)?;
        read_response(&mut stream).map_err(|e| match e {
            ReadError::Io(source) => ClientError::Io { url: self.url.clone(), source },
            ReadError::Bad(problem) => ClientError::BadResponse { url: self.url.clone(), problem },
        })
    }

    /// Send and require a 2xx JSON answer. 401 is `TokenRefused`, 403 `Forbidden`, any other
    /// status `Status` with the API's error message.
    pub fn json(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, ClientError> {
        let r = self.checked(method, path, body)?;
        if r.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&r.body).map_err(|_| ClientError::NotJson { status: r.status })
    }

    /// Send and require a 2xx answer, whatever its type.
    pub fn checked(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Response, ClientError> {
        let r = self.send(method, path, body)?;
        match r.status {
            200..=299 => Ok(r),
            401 => Err(ClientError::TokenRefused { url: self.url.clone() }),
            403 => Err(ClientError::Forbidden { message: error_message(&r.body) }),
            status => Err(ClientError::Status { status, message: error_message(&r.body) }),
        }
    }

    fn connect(&self) -> Result<TcpStream, ClientError> {
        let connect_err = |source| ClientError::Connect { url: self.url.clone(), source };
        let addrs: Vec<SocketAddr> = if let Ok(ip) = self.host.parse::<IpAddr>() {
            vec![SocketAddr::new(ip, self.port)]
        } else if self.host.eq_ignore_ascii_case("localhost") {
            vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.port)]
        } else {
            // A one-shot command, not the data plane: a blocking lookup is fine here.
            #[allow(clippy::disallowed_methods)]
            let resolved = std::net::ToSocketAddrs::to_socket_addrs(&(self.host.as_str(), self.port));
            resolved.map_err(connect_err)?.collect()
        };
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "the host name has no address");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(s) => return Ok(s),
                Err(e) => last = e,
            }
        }
        Err(connect_err(last))
    }
}

/// The message of an admin API error body: `{"error": {"message": ...}}`, `{"error": "..."}`,
/// `{"message": ...}`, or the start of the text.
pub fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let found = v
            .pointer("/error/message")
            .or_else(|| v.get("error").filter(|e| e.is_string()))
            .or_else(|| v.get("message"))
            .and_then(Value::as_str);
        if let Some(m) = found {
            return m.to_string();
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(no message)".to_string();
    }
    text.chars().take(300).collect()
}

enum ReadError {
    Io(std::io::Error),
    Bad(String),
}

/// How the body of an answer ends.
enum Framing {
    Length(usize),
    Chunked,
    Close,
}

/// Read one answer: status line, headers, and a body framed by Content-Length, chunked
/// encoding, or the end of the connection.
fn read_response(stream: &mut impl Read) -> Result<Response, ReadError> {
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    let mut head: Option<(usize, u16, Option<String>, Framing)> = None;
    loop {
        if head.is_none() {
            if let Some(end) = memchr::memmem::find(&buf, b"\r\n\r\n") {
                head = Some(parse_head(&buf[..end])?);
                if let Some((end, ..)) = &head {
                    buf.drain(..end + 4);
                }
            }
        }
        if let Some((_, status, _, framing)) = &head {
            let informational = (100..200).contains(status);
            let done = informational
                || match framing {
                    Framing::Length(n) => buf.len() >= *n,
                    Framing::Chunked => dechunk(&buf)?.is_some(),
                    Framing::Close => false,
                };
            if informational {
                head = None;
                continue;
            }
            if done {
                break;
            }
        }
        let n = stream.read(&mut chunk).map_err(ReadError::Io)?;
        if n == 0 {
            break;
        }
        if buf.len() + n > MAX_RESPONSE_BYTES {
            return Err(ReadError::Bad(format!("answer larger than {MAX_RESPONSE_BYTES} bytes")));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let (_, status, content_type, framing) =
        head.ok_or_else(|| ReadError::Bad("the connection closed before the headers ended".into()))?;
    let body = match framing {
        Framing::Length(n) if buf.len() >= n => buf[..n].to_vec(),
        Framing::Length(n) => {
            return Err(ReadError::Bad(format!("body ended after {} of {n} bytes", buf.len())))
        }
        Framing::Chunked => {
            dechunk(&buf)?.ok_or_else(|| ReadError::Bad("chunked body ended early".into()))?
        }
        Framing::Close => buf,
    };
    Ok(Response { status, content_type, body })
}

fn parse_head(head: &[u8]) -> Result<(usize, u16, Option<String>, Framing), ReadError> {
    let text = std::str::from_utf8(head).map_err(|_| ReadError::Bad("headers are not UTF-8".into()))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !version.starts_with("HTTP/1.") {
        return Err(ReadError::Bad("not an HTTP/1.x answer".into()));
    }
    let status = code.parse::<u16>().map_err(|_| ReadError::Bad("bad status code".into()))?;
    let mut content_type = None;
    let mut framing = Framing::Close;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
        {
            framing = Framing::Chunked;
        } else if name.eq_ignore_ascii_case("content-length") && !matches!(framing, Framing::Chunked) {
            let n = value.parse::<usize>().map_err(|_| ReadError::Bad("bad content-length".into()))?;
            framing = Framing::Length(n);
        }
    }
    if status == 204 || status == 304 {
        framing = Framing::Length(0);
    }
    Ok((head.len(), status, content_type, framing))
}

/// The body of a complete chunked encoding, or `None` while more bytes are needed.
fn dechunk(mut buf: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = memchr::memmem::find(buf, b"\r\n") else { return Ok(None) };
        let size_text =
            std::str::from_utf8(&buf[..eol]).map_err(|_| ReadError::Bad("bad chunk size".into()))?;
        let size_hex = size_text.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(size_hex, 16).map_err(|_| ReadError::Bad("bad chunk size".into()))?;
        buf = &buf[eol + 2..];
        if size == 0 {
            // The last chunk: the body is complete (trailers, if any, are ignored).
            return Ok(Some(out));
        }
        if buf.len() < size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&buf[..size]);
        buf = &buf[size + 2..];
    }
}
