//! A stateful mock of the providers' job APIs on loopback: OpenAI Files, Batches, fine-tuning
//! jobs and videos, and Anthropic Message Batches, with their ids, statuses, list cursors
//! (`after`, `after_id`, newest first) and content downloads. A job advances one status per
//! read (created -> in progress -> finished), so a test sees it finish. Requests must carry the
//! gateway's provider credentials (`PROVIDER_KEY`); request bodies may be chunked (a rewritten
//! upload streams through the gateway chunked). Uploads are parsed as multipart forms.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const OPENAI_KEY: &str = "sk-openai-upstream";
pub const ANTHROPIC_KEY: &str = "sk-ant-upstream";

#[derive(Default)]
pub struct State {
    /// id -> (object, content), in creation order.
    pub files: Vec<(Value, Vec<u8>)>,
    pub batches: Vec<Value>,
    pub jobs: Vec<Value>,
    pub videos: Vec<Value>,
    pub message_batches: Vec<Value>,
    /// Anthropic batch id -> its requests.
    pub mb_requests: HashMap<String, Vec<Value>>,
    /// Every request: (method, path and query).
    pub seen: Vec<(String, String)>,
    /// Bytes of upload bodies received (all of them).
    pub upload_bytes: u64,
    /// Requests whose credentials were not the gateway's.
    pub bad_auth: u64,
}

pub struct JobsMock {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JobsMock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl JobsMock {
    pub async fn start() -> JobsMock {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        let seq = Arc::new(AtomicU64::new(1));
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else { return };
                let (st, seq) = (st.clone(), seq.clone());
                tokio::spawn(async move {
                    let _ = serve(sock, st, seq).await;
                });
            }
        });
        JobsMock { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The models named by the lines of every batch input file received (purpose `batch`).
    pub fn batch_file_models(&self) -> Vec<String> {
        let st = self.state.lock();
        st.files
            .iter()
            .filter(|(f, _)| f["purpose"] == "batch")
            .flat_map(|(_, c)| {
                String::from_utf8_lossy(c)
                    .lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .filter_map(|v| v["body"]["model"].as_str().map(str::to_string))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

struct Req {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    fn param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == name).then(|| v.to_string())
        })
    }
}

async fn serve(mut sock: TcpStream, st: Arc<Mutex<State>>, seq: Arc<AtomicU64>) -> std::io::Result<()> {
    sock.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        let Some(req) = read(&mut sock, &mut buf).await? else { return Ok(()) };
        let (status, ct, body) = handle(&req, &st, &seq);
        let head =
            format!("HTTP/1.1 {status} X\r\ncontent-type: {ct}\r\ncontent-length: {}\r\n\r\n", body.len());
        sock.write_all(head.as_bytes()).await?;
        sock.write_all(&body).await?;
    }
}

async fn fill(sock: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut tmp = [0u8; 65536];
    let n = sock.read(&mut tmp).await?;
    buf.extend_from_slice(&tmp[..n]);
    Ok(n > 0)
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    memchr::memmem::find(h, n)
}

/// One request, with a Content-Length or chunked body.
async fn read(sock: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Option<Req>> {
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i;
        }
        if !fill(sock, buf).await? {
            return Ok(None);
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    buf.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_string();
    let target = first.next().unwrap_or("").to_string();
    let (path, query) =
        target.split_once('?').map_or((target.clone(), String::new()), |(p, q)| (p.into(), q.into()));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let mut body = Vec::new();
    if chunked {
        loop {
            let line_end = loop {
                if let Some(i) = find(buf, b"\r\n") {
                    break i;
                }
                if !fill(sock, buf).await? {
                    return Ok(None);
                }
            };
            let size =
                usize::from_str_radix(String::from_utf8_lossy(&buf[..line_end]).trim(), 16).unwrap_or(0);
            buf.drain(..line_end + 2);
            while buf.len() < size + 2 {
                if !fill(sock, buf).await? {
                    return Ok(None);
                }
            }
            body.extend_from_slice(&buf[..size]);
            buf.drain(..size + 2);
            if size == 0 {
                break;
            }
        }
    } else {
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < len {
            if !fill(sock, buf).await? {
                return Ok(None);
            }
        }
        body = buf.drain(..len).collect();
    }
    Ok(Some(Req { method, path, query, headers, body }))
}

/// The parts of a multipart form: (name, value).
fn form(req: &Req) -> Vec<(String, Vec<u8>)> {
    let ct = req.header("content-type").unwrap_or("");
    let Some(b) = ct.split("boundary=").nth(1) else { return Vec::new() };
    let delim = format!("--{}", b.trim_matches('"'));
    let body = &req.body;
    let mut out = Vec::new();
    let mut at = match find(body, delim.as_bytes()) {
        Some(i) => i + delim.len(),
        None => return out,
    };
    loop {
        if body[at..].starts_with(b"--") {
            return out;
        }
        let Some(h) = find(&body[at..], b"\r\n\r\n") else { return out };
        let headers = String::from_utf8_lossy(&body[at..at + h]).into_owned();
        let start = at + h + 4;
        let close = format!("\r\n{delim}");
        let Some(end) = find(&body[start..], close.as_bytes()) else { return out };
        let name =
            headers.split("name=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("").to_string();
        out.push((name, body[start..start + end].to_vec()));
        at = start + end + close.len();
    }
}

fn j(status: u16, v: Value) -> (u16, &'static str, Vec<u8>) {
    (status, "application/json", serde_json::to_vec(&v).unwrap())
}

fn not_found(what: &str, id: &str) -> (u16, &'static str, Vec<u8>) {
    j(
        404,
        json!({"error": {"message": format!("No such {what}: {id}"), "type": "invalid_request_error", "param": "id", "code": null}}),
    )
}

/// A page of `items` (creation order) newest first, after `after`, `limit` of them.
fn page(items: &[Value], req: &Req, cursor: &str, anthropic: bool) -> Value {
    let limit: usize = req.param("limit").and_then(|l| l.parse().ok()).unwrap_or(20);
    let mut all: Vec<&Value> = items.iter().rev().collect();
    if let Some(after) = req.param(cursor) {
        if let Some(i) = all.iter().position(|v| v["id"] == after.as_str()) {
            all.drain(..=i);
        }
    }
    let has_more = all.len() > limit;
    let data: Vec<Value> = all.into_iter().take(limit).cloned().collect();
    let first = data.first().map(|v| v["id"].clone()).unwrap_or(Value::Null);
    let last = data.last().map(|v| v["id"].clone()).unwrap_or(Value::Null);
    if anthropic {
        json!({"data": data, "has_more": has_more, "first_id": first, "last_id": last})
    } else {
        json!({"object": "list", "data": data, "has_more": has_more, "first_id": first, "last_id": last})
    }
}

fn handle(req: &Req, st: &Mutex<State>, seq: &AtomicU64) -> (u16, &'static str, Vec<u8>) {
    let mut st = st.lock();
    st.seen.push((req.method.clone(), format!("{}?{}", req.path, req.query)));
    let anthropic = req.path.starts_with("/v1/messages/");
    let authed = if anthropic {
        req.header("x-api-key") == Some(ANTHROPIC_KEY) && req.header("anthropic-version").is_some()
    } else {
        req.header("authorization") == Some(&format!("Bearer {OPENAI_KEY}"))
    };
    if !authed {
        st.bad_auth += 1;
        return j(401, json!({"error": {"message": "bad key", "type": "authentication_error"}}));
    }
    let n = seq.fetch_add(1, Ordering::SeqCst);
    let now = 1_760_000_000 + n;
    let segs: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    match (req.method.as_str(), segs.as_slice()) {
        // --- files
        ("POST", ["v1", "files"]) => {
            st.upload_bytes += req.body.len() as u64;
            let parts = form(req);
            let get = |n: &str| parts.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
            let (Some(purpose), Some(file)) = (get("purpose"), get("file")) else {
                return j(
                    400,
                    json!({"error": {"message": "purpose and file are required", "type": "invalid_request_error"}}),
                );
            };
            let id = format!("file-{n}");
            let f = json!({"id": id, "object": "file", "bytes": file.len(), "created_at": now,
                "filename": "upload.jsonl", "purpose": String::from_utf8_lossy(&purpose), "status": "processed"});
            st.files.push((f.clone(), file));
            j(200, f)
        }
        ("GET", ["v1", "files"]) => {
            let items: Vec<Value> = st.files.iter().map(|(f, _)| f.clone()).collect();
            j(200, page(&items, req, "after", false))
        }
        ("GET", ["v1", "files", id]) => match st.files.iter().find(|(f, _)| f["id"] == *id) {
            Some((f, _)) => j(200, f.clone()),
            None => not_found("File", id),
        },
        ("DELETE", ["v1", "files", id]) => {
            let before = st.files.len();
            st.files.retain(|(f, _)| f["id"] != *id);
            if st.files.len() == before {
                return not_found("File", id);
            }
            j(200, json!({"id": id, "object": "file", "deleted": true}))
        }
        ("GET", ["v1", "files", id, "content"]) => match st.files.iter().find(|(f, _)| f["id"] == *id) {
            Some((_, c)) => (200, "application/octet-stream", c.clone()),
            None => not_found("File", id),
        },
        // --- batches
        ("POST", ["v1", "batches"]) => {
            let input = body["input_file_id"].as_str().unwrap_or_default().to_string();
            if !st.files.iter().any(|(f, _)| f["id"] == input.as_str()) {
                return not_found("File", &input);
            }
            let b = json!({"id": format!("batch_{n}"), "object": "batch", "endpoint": body["endpoint"],
                "input_file_id": input, "completion_window": body["completion_window"], "status": "validating",
                "output_file_id": null, "error_file_id": null, "created_at": now,
                "request_counts": {"total": 0, "completed": 0, "failed": 0}, "metadata": body["metadata"]});
            st.batches.push(b.clone());
            j(200, b)
        }
        ("GET", ["v1", "batches"]) => j(200, page(&st.batches.clone(), req, "after", false)),
        ("GET", ["v1", "batches", id]) => {
            let Some(i) = st.batches.iter().position(|b| b["id"] == *id) else {
                return not_found("Batch", id);
            };
            advance_batch(&mut st, i, n, now);
            j(200, st.batches[i].clone())
        }
        ("POST", ["v1", "batches", id, "cancel"]) => {
            let Some(b) = st.batches.iter_mut().find(|b| b["id"] == *id) else {
                return not_found("Batch", id);
            };
            b["status"] = json!("cancelling");
            j(200, b.clone())
        }
        // --- fine-tuning
        ("POST", ["v1", "fine_tuning", "jobs"]) => {
            let f = json!({"id": format!("ftjob-{n}"), "object": "fine_tuning.job", "model": body["model"],
                "training_file": body["training_file"], "validation_file": body["validation_file"],
                "status": "queued", "created_at": now, "fine_tuned_model": null, "result_files": [],
                "trained_tokens": null, "hyperparameters": {"n_epochs": "auto"}, "organization_id": "org-mock", "seed": 1});
            st.jobs.push(f.clone());
            j(200, f)
        }
        ("GET", ["v1", "fine_tuning", "jobs"]) => j(200, page(&st.jobs.clone(), req, "after", false)),
        ("GET", ["v1", "fine_tuning", "jobs", id]) => {
            let Some(i) = st.jobs.iter().position(|b| b["id"] == *id) else {
                return not_found("fine-tuning job", id);
            };
            if st.jobs[i]["status"] == "queued" {
                st.jobs[i]["status"] = json!("running");
            } else if st.jobs[i]["status"] == "running" {
                let rid = format!("file-{n}");
                let f = json!({"id": rid, "object": "file", "bytes": 5, "created_at": now, "filename": "step_metrics.csv", "purpose": "fine-tune-results", "status": "processed"});
                st.files.push((f, b"a,b\n1".to_vec()));
                let j2 = &mut st.jobs[i];
                j2["status"] = json!("succeeded");
                j2["trained_tokens"] = json!(5000);
                j2["result_files"] = json!([rid]);
                j2["fine_tuned_model"] = json!(format!("ft:{}:mock", j2["model"].as_str().unwrap_or("")));
            }
            j(200, st.jobs[i].clone())
        }
        ("POST", ["v1", "fine_tuning", "jobs", id, "cancel"]) => {
            let Some(b) = st.jobs.iter_mut().find(|b| b["id"] == *id) else {
                return not_found("fine-tuning job", id);
            };
            b["status"] = json!("cancelled");
            j(200, b.clone())
        }
        ("GET", ["v1", "fine_tuning", "jobs", id, "events"]) => j(
            200,
            json!({"object": "list", "has_more": false, "data": [
            {"id": format!("ftevent-{id}-1"), "object": "fine_tuning.job.event", "created_at": now, "level": "info", "message": "Job started", "type": "message"}]}),
        ),
        ("GET", ["v1", "fine_tuning", "jobs", id, "checkpoints"]) => j(
            200,
            json!({"object": "list", "has_more": false, "first_id": null, "last_id": null, "data": [
            {"id": format!("ftckpt-{id}-1"), "object": "fine_tuning.job.checkpoint", "created_at": now, "fine_tuning_job_id": id,
             "fine_tuned_model_checkpoint": "ft:mock:ckpt-1", "step_number": 10, "metrics": {"train_loss": 0.5}}]}),
        ),
        // --- videos
        ("POST", ["v1", "videos"]) => {
            let (model, seconds) = if req.header("content-type").unwrap_or("").starts_with("multipart/") {
                let parts = form(req);
                let get = |k: &str| {
                    parts.iter().find(|(n, _)| n == k).map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                };
                (
                    get("model").map(Value::from).unwrap_or(Value::Null),
                    get("seconds").unwrap_or_else(|| "4".into()),
                )
            } else {
                (body["model"].clone(), body["seconds"].as_str().unwrap_or("4").to_string())
            };
            let v = json!({"id": format!("video_{n}"), "object": "video", "model": model, "status": "queued",
                "progress": 0, "seconds": seconds, "size": "720x1280", "created_at": now});
            st.videos.push(v.clone());
            j(200, v)
        }
        ("GET", ["v1", "videos"]) => j(200, page(&st.videos.clone(), req, "after", false)),
        ("GET", ["v1", "videos", id]) => {
            let Some(v) = st.videos.iter_mut().find(|b| b["id"] == *id) else {
                return not_found("video", id);
            };
            v["status"] = json!("completed");
            v["progress"] = json!(100);
            j(200, v.clone())
        }
        ("DELETE", ["v1", "videos", id]) => {
            st.videos.retain(|v| v["id"] != *id);
            j(200, json!({"id": id, "object": "video.deleted", "deleted": true}))
        }
        ("GET", ["v1", "videos", id, "content"]) => (200, "video/mp4", format!("MP4:{id}").into_bytes()),
        // --- Anthropic message batches
        ("POST", ["v1", "messages", "batches"]) => {
            let id = format!("msgbatch_{n}");
            let reqs = body["requests"].as_array().cloned().unwrap_or_default();
            let b = json!({"id": id, "type": "message_batch", "processing_status": "in_progress",
                "request_counts": {"processing": reqs.len(), "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0},
                "ended_at": null, "created_at": "2026-12-01T00:00:00Z", "expires_at": "2026-12-02T00:00:00Z",
                "archived_at": null, "cancel_initiated_at": null, "results_url": null});
            st.mb_requests.insert(id, reqs);
            st.message_batches.push(b.clone());
            j(200, b)
        }
        ("GET", ["v1", "messages", "batches"]) => {
            j(200, page(&st.message_batches.clone(), req, "after_id", true))
        }
        ("GET", ["v1", "messages", "batches", id]) => {
            let count = st.mb_requests.get(*id).map_or(0, Vec::len);
            let Some(b) = st.message_batches.iter_mut().find(|b| b["id"] == *id) else {
                return j(
                    404,
                    json!({"type": "error", "error": {"type": "not_found_error", "message": "not found"}}),
                );
            };
            b["processing_status"] = json!("ended");
            b["ended_at"] = json!("2026-12-01T00:01:00Z");
            b["request_counts"] =
                json!({"processing": 0, "succeeded": count, "errored": 0, "canceled": 0, "expired": 0});
            b["results_url"] = json!(format!("https://api.anthropic.com/v1/messages/batches/{id}/results"));
            j(200, b.clone())
        }
        ("GET", ["v1", "messages", "batches", id, "results"]) => {
            let reqs = st.mb_requests.get(*id).cloned().unwrap_or_default();
            let mut out = Vec::new();
            for r in reqs {
                let line = json!({"custom_id": r["custom_id"], "result": {"type": "succeeded", "message": {
                    "id": "msg_1", "type": "message", "role": "assistant", "model": r["params"]["model"],
                    "content": [{"type": "text", "text": "Hello from anthropic"}], "stop_reason": "end_turn",
                    "stop_sequence": null, "usage": {"input_tokens": 10, "output_tokens": 3}}}});
                out.extend_from_slice(&serde_json::to_vec(&line).unwrap());
                out.push(b'\n');
            }
            (200, "application/binary", out)
        }
        ("POST", ["v1", "messages", "batches", id, "cancel"]) => {
            let Some(b) = st.message_batches.iter_mut().find(|b| b["id"] == *id) else {
                return j(
                    404,
                    json!({"type": "error", "error": {"type": "not_found_error", "message": "not found"}}),
                );
            };
            b["processing_status"] = json!("canceling");
            b["cancel_initiated_at"] = json!("2026-12-01T00:00:30Z");
            j(200, b.clone())
        }
        ("DELETE", ["v1", "messages", "batches", id]) => {
            st.message_batches.retain(|b| b["id"] != *id);
            j(200, json!({"id": id, "type": "message_batch_deleted"}))
        }
        _ => j(404, json!({"error": {"message": format!("mock: no route {} {}", req.method, req.path)}})),
    }
}

/// validating -> in_progress -> completed (with an output file of one answer per input line,
/// and the usage summed over them: 10 input and 5 output tokens a line).
fn advance_batch(st: &mut State, i: usize, n: u64, now: u64) {
    match st.batches[i]["status"].as_str() {
        Some("validating") => st.batches[i]["status"] = json!("in_progress"),
        Some("in_progress") => {
            let input = st.batches[i]["input_file_id"].as_str().unwrap_or_default().to_string();
            let lines: Vec<Value> = st
                .files
                .iter()
                .find(|(f, _)| f["id"] == input.as_str())
                .map(|(_, c)| {
                    String::from_utf8_lossy(c).lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
                })
                .unwrap_or_default();
            let mut out = Vec::new();
            for (k, l) in lines.iter().enumerate() {
                let line = json!({"id": format!("batch_req_{k}"), "custom_id": l["custom_id"], "error": null,
                    "response": {"status_code": 200, "request_id": format!("req_{k}"), "body": {
                        "id": format!("chatcmpl-{k}"), "object": "chat.completion", "created": now, "model": l["body"]["model"],
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from openai"}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}}});
                out.extend_from_slice(&serde_json::to_vec(&line).unwrap());
                out.push(b'\n');
            }
            let oid = format!("file-{n}");
            let f = json!({"id": oid, "object": "file", "bytes": out.len(), "created_at": now,
                "filename": "batch_output.jsonl", "purpose": "batch_output", "status": "processed"});
            st.files.push((f, out));
            let k = lines.len() as u64;
            let b = &mut st.batches[i];
            b["status"] = json!("completed");
            b["output_file_id"] = json!(oid);
            b["completed_at"] = json!(now);
            b["request_counts"] = json!({"total": k, "completed": k, "failed": 0});
            b["model"] = lines.first().map(|l| l["body"]["model"].clone()).unwrap_or(Value::Null);
            b["usage"] = json!({"input_tokens": 10 * k, "output_tokens": 5 * k, "total_tokens": 15 * k,
                "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}});
        }
        _ => {}
    }
}
