//! What the gateway reads in, and changes of, the providers' job answers: the new object's id,
//! the files a job made (owned by the job's owner), the file ids a request names (which the
//! caller must own), a finished job's usage, one page of a list kept to the caller's objects,
//! and Anthropic's `results_url` pointed back at the gateway.

use serde_json::Value;

use super::Api;

/// A finished job's usage as the provider reported it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct JobUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub reasoning_tokens: u64,
    /// Fine-tuning: the tokens trained on.
    pub trained_tokens: u64,
    pub video_seconds: f64,
}

/// The file ids a create request names, each of which the caller must own.
pub fn referenced_files(api: Api, body: &Value) -> Vec<(&'static str, String)> {
    let fields: &[&'static str] = match api {
        Api::Batches => &["input_file_id"],
        Api::FineTuning => &["training_file", "validation_file"],
        _ => &[],
    };
    fields
        .iter()
        .filter_map(|f| body.get(*f).and_then(Value::as_str).map(|id| (*f, id.to_string())))
        .collect()
}

/// Files the provider made for a job (a batch's output and error files, a fine-tuning job's
/// result files): the job's owner may read them.
pub fn made_files(api: Api, job: &Value) -> Vec<String> {
    let s = |k: &str| job.get(k).and_then(Value::as_str).map(str::to_string);
    match api {
        Api::Batches => ["output_file_id", "error_file_id"].iter().filter_map(|k| s(k)).collect(),
        Api::FineTuning => job
            .get("result_files")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// A job's usage, once it is finished and the provider reports some.
pub fn finished_usage(api: Api, job: &Value) -> Option<JobUsage> {
    let status = job.get("status").and_then(Value::as_str).unwrap_or_default();
    let n = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    match api {
        Api::Batches if matches!(status, "completed" | "failed" | "expired" | "cancelled") => {
            let u = job.get("usage").filter(|u| u.is_object())?;
            let usage = JobUsage {
                input_tokens: n(u.get("input_tokens")),
                output_tokens: n(u.get("output_tokens")),
                cached_tokens: n(u.pointer("/input_tokens_details/cached_tokens")),
                reasoning_tokens: n(u.pointer("/output_tokens_details/reasoning_tokens")),
                ..JobUsage::default()
            };
            (usage.input_tokens + usage.output_tokens > 0).then_some(usage)
        }
        Api::FineTuning if matches!(status, "succeeded" | "failed" | "cancelled") => {
            let trained = n(job.get("trained_tokens"));
            (trained > 0).then_some(JobUsage { trained_tokens: trained, ..JobUsage::default() })
        }
        Api::Videos if status == "completed" => {
            let secs = match job.get("seconds") {
                Some(Value::String(s)) => s.parse().ok(),
                Some(v) => v.as_f64(),
                None => None,
            }?;
            Some(JobUsage { video_seconds: secs, ..JobUsage::default() })
        }
        _ => None,
    }
}

/// The usage in an Anthropic message batch's results (JSONL, one result per line), summed as
/// the results stream through: Anthropic reports a batch's usage only there. Holds one line.
#[derive(Default)]
pub struct ResultsUsage {
    line: Vec<u8>,
    usage: JobUsage,
    pub model: Option<String>,
    /// A line was too long to hold: the sum is incomplete and not charged.
    overflow: bool,
}

/// The longest results line summed (a message with its content).
const MAX_RESULT_LINE: usize = 16 * 1024 * 1024;

impl ResultsUsage {
    pub fn feed(&mut self, mut chunk: &[u8]) {
        while let Some(nl) = memchr::memchr(b'\n', chunk) {
            self.push(&chunk[..nl]);
            self.end_line();
            chunk = &chunk[nl + 1..];
        }
        self.push(chunk);
    }

    /// The results ended: their summed usage (`None` when a line could not be read whole).
    pub fn finish(mut self) -> Option<JobUsage> {
        self.end_line();
        (!self.overflow).then_some(self.usage)
    }

    fn push(&mut self, part: &[u8]) {
        if self.line.len() + part.len() > MAX_RESULT_LINE {
            self.overflow = true;
            self.line.clear();
        } else if !self.overflow || !part.is_empty() {
            self.line.extend_from_slice(part);
        }
    }

    fn end_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let Ok(v) = serde_json::from_slice::<Value>(&line) else { return };
        let Some(m) = v.pointer("/result/message") else { return };
        let n = |p: &str| m.pointer(p).and_then(Value::as_u64).unwrap_or(0);
        let (cache_read, cache_write) =
            (n("/usage/cache_read_input_tokens"), n("/usage/cache_creation_input_tokens"));
        self.usage.input_tokens += n("/usage/input_tokens") + cache_read + cache_write;
        self.usage.cached_tokens += cache_read;
        self.usage.output_tokens += n("/usage/output_tokens");
        if self.model.is_none() {
            self.model = m.get("model").and_then(Value::as_str).map(str::to_string);
        }
    }
}

/// One page of a provider's list: the caller's objects in it, whether the provider has more,
/// and the last id on the page (the cursor for the next page).
pub struct Page {
    pub kept: Vec<Value>,
    pub has_more: bool,
    pub last_id: Option<String>,
}

/// Keep the objects of `page` that `owns` says the caller owns.
pub fn filter_page(page: &Value, owns: impl Fn(&str) -> bool) -> Page {
    let data = page.get("data").and_then(Value::as_array).cloned().unwrap_or_default();
    let last_id = data.last().and_then(|o| o.get("id")).and_then(Value::as_str).map(str::to_string);
    let kept = data.into_iter().filter(|o| o.get("id").and_then(Value::as_str).is_some_and(&owns)).collect();
    Page { kept, has_more: page.get("has_more").and_then(Value::as_bool).unwrap_or(false), last_id }
}

/// The list answer in the provider's shape, of `kept` objects.
pub fn list_answer(api: Api, kept: Vec<Value>, has_more: bool) -> Value {
    let id = |v: Option<&Value>| v.and_then(|o| o.get("id")).cloned().unwrap_or(Value::Null);
    let (first, last) = (id(kept.first()), id(kept.last()));
    match api {
        Api::MessageBatches => {
            serde_json::json!({"data": kept, "has_more": has_more, "first_id": first, "last_id": last})
        }
        _ => {
            serde_json::json!({"object": "list", "data": kept, "first_id": first, "last_id": last, "has_more": has_more})
        }
    }
}

/// Point a message batch's `results_url` at the gateway (`base` = the URL the client called,
/// scheme and authority), so the SDK fetches results with its virtual key.
pub fn rewrite_results_url(batch: &mut Value, base: &str) {
    let Some(id) = batch.get("id").and_then(Value::as_str).map(str::to_string) else { return };
    if let Some(url) = batch.get_mut("results_url").filter(|u| u.is_string()) {
        *url = Value::String(format!(
            "{base}/v1/messages/batches/{}/results",
            crate::providers::encode_segment(&id)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_batch_is_charged_only_when_finished_with_usage() {
        let b = |status: &str| {
            json!({"id": "b", "status": status, "output_file_id": "f-out", "error_file_id": null,
            "usage": {"input_tokens": 10, "output_tokens": 4, "input_tokens_details": {"cached_tokens": 2}, "output_tokens_details": {"reasoning_tokens": 1}}})
        };
        assert_eq!(finished_usage(Api::Batches, &b("in_progress")), None);
        let u = finished_usage(Api::Batches, &b("completed")).unwrap();
        assert_eq!((u.input_tokens, u.output_tokens, u.cached_tokens, u.reasoning_tokens), (10, 4, 2, 1));
        assert_eq!(made_files(Api::Batches, &b("completed")), vec!["f-out".to_string()]);
        let ft = json!({"status": "succeeded", "trained_tokens": 5000, "result_files": ["file-r"]});
        assert_eq!(finished_usage(Api::FineTuning, &ft).unwrap().trained_tokens, 5000);
        assert_eq!(made_files(Api::FineTuning, &ft), vec!["file-r".to_string()]);
        let v = json!({"status": "completed", "seconds": "8"});
        assert_eq!(finished_usage(Api::Videos, &v).unwrap().video_seconds, 8.0);
        assert_eq!(finished_usage(Api::Videos, &json!({"status": "in_progress", "seconds": "8"})), None);
    }

    #[test]
    fn message_batch_results_sum_their_usage_across_chunk_boundaries() {
        let line = |i: u64| {
            json!({"custom_id": format!("r{i}"), "result": {"type": "succeeded", "message": {"model": "claude-x",
                "usage": {"input_tokens": 10 + i, "output_tokens": 3, "cache_read_input_tokens": 2}}}})
            .to_string()
        };
        let text = format!(
            "{}\n{}\n{}\n{}",
            line(0),
            line(1),
            r#"{"custom_id":"e","result":{"type":"errored"}}"#,
            line(2)
        );
        for chunk in [1, 7, 1000] {
            let mut r = ResultsUsage::default();
            text.as_bytes().chunks(chunk).for_each(|c| r.feed(c));
            assert_eq!(r.model.as_deref(), Some("claude-x"));
            let u = r.finish().unwrap();
            assert_eq!((u.input_tokens, u.cached_tokens, u.output_tokens), (33 + 6, 6, 9), "chunk {chunk}");
        }
    }

    #[test]
    fn lists_keep_the_callers_objects_and_results_urls_point_home() {
        let page =
            json!({"object": "list", "data": [{"id": "a"}, {"id": "b"}, {"id": "c"}], "has_more": true});
        let p = filter_page(&page, |id| id != "b");
        assert_eq!(p.kept, vec![json!({"id": "a"}), json!({"id": "c"})]);
        assert!(p.has_more);
        assert_eq!(p.last_id.as_deref(), Some("c"));
        let l = list_answer(Api::Files, p.kept, false);
        assert_eq!(l["first_id"], "a");
        assert_eq!(l["last_id"], "c");
        let mut mb = json!({"id": "msgbatch_1", "results_url": "https://api.anthropic.com/v1/messages/batches/msgbatch_1/results"});
        rewrite_results_url(&mut mb, "http://127.0.0.1:8080");
        assert_eq!(mb["results_url"], "http://127.0.0.1:8080/v1/messages/batches/msgbatch_1/results");
        let mut pending = json!({"id": "msgbatch_1", "results_url": null});
        rewrite_results_url(&mut pending, "http://g");
        assert_eq!(pending["results_url"], Value::Null);
        let refs =
            referenced_files(Api::FineTuning, &json!({"training_file": "f1", "validation_file": "f2"}));
        assert_eq!(refs, vec![("training_file", "f1".to_string()), ("validation_file", "f2".to_string())]);
    }
}
