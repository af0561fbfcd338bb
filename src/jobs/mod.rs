//! Jobs and files (SPEC section 10): OpenAI Files, Batches, fine-tuning jobs and videos, and
//! Anthropic Message Batches, passed to the provider `jobs:` names with the gateway's
//! credentials, each object owned by the project that created it.
//!
//! This room is pure: which call a request is ([`JobCall::classify`]), the ownership record
//! ([`objects`]), the streaming rewrite of uploads ([`form`]) and of answers ([`answer`]).
//! The I/O is in `proxy/jobs.rs`.

pub mod answer;
pub mod form;
pub mod objects;

pub use self::objects::{ObjectKind, ObjectStore};

/// A family of job endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Api {
    Files,
    Batches,
    FineTuning,
    Videos,
    /// Anthropic Message Batches (`/v1/messages/batches`).
    MessageBatches,
}

/// What is done to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    Create,
    List,
    Get,
    Delete,
    Cancel,
    /// A file's or video's bytes, a message batch's results: streamed down.
    Content,
    Events,
    Checkpoints,
}

/// One job call: the API, the act, and the object id when the path names one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobCall {
    pub api: Api,
    pub act: Act,
    pub id: Option<String>,
}

/// A path of the job APIs with a method it does not take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrongMethod {
    pub allow: &'static str,
}

// === impl Api ===

impl Api {
    /// The path under `/v1` (OpenAI) for this API.
    pub fn path(self) -> &'static str {
        match self {
            Api::Files => "/files",
            Api::Batches => "/batches",
            Api::FineTuning => "/fine_tuning/jobs",
            Api::Videos => "/videos",
            Api::MessageBatches => "/messages/batches",
        }
    }

    /// What the objects are called in errors (as OpenAI and Anthropic name them).
    pub fn object(self) -> &'static str {
        match self {
            Api::Files => "File",
            Api::Batches => "Batch",
            Api::FineTuning => "fine-tuning job",
            Api::Videos => "video",
            Api::MessageBatches => "message batch",
        }
    }

    pub fn kind(self) -> ObjectKind {
        match self {
            Api::Files => ObjectKind::File,
            Api::Batches => ObjectKind::Batch,
            Api::FineTuning => ObjectKind::FineTuningJob,
            Api::Videos => ObjectKind::Video,
            Api::MessageBatches => ObjectKind::MessageBatch,
        }
    }

    /// The name of the operation in errors and provider declarations.
    pub fn name(self) -> &'static str {
        match self {
            Api::Files => "files",
            Api::Batches => "batches",
            Api::FineTuning => "fine_tuning",
            Api::Videos => "videos",
            Api::MessageBatches => "message_batches",
        }
    }
}

// === impl JobCall ===

impl JobCall {
    /// The job call `method path` is, `Err` for a job path with the wrong method, `None` for
    /// any other path.
    pub fn classify(method: &http::Method, path: &str) -> Option<Result<JobCall, WrongMethod>> {
        let path = path.strip_prefix("/v1").filter(|p| p.starts_with('/')).unwrap_or(path);
        let (api, rest) = [Api::MessageBatches, Api::FineTuning, Api::Files, Api::Batches, Api::Videos]
            .into_iter()
            .find_map(|a| {
                let rest = path.strip_prefix(a.path())?;
                (rest.is_empty() || rest.starts_with('/')).then_some((a, rest))
            })?;
        let m = |allowed: &[(http::Method, Act)], allow: &'static str, id: Option<&str>| match allowed
            .iter()
            .find(|(am, _)| am == method)
        {
            Some((_, act)) => Ok(JobCall { api, act: *act, id: id.map(str::to_string) }),
            None => Err(WrongMethod { allow }),
        };
        use http::Method as M;
        let segs: Vec<&str> = rest.split('/').skip(1).collect();
        Some(match (api, segs.as_slice()) {
            (_, []) | (_, [""]) => m(&[(M::POST, Act::Create), (M::GET, Act::List)], "GET, POST", None),
            (_, [id]) if !id.is_empty() => {
                let deletable = matches!(api, Api::Files | Api::Videos | Api::MessageBatches);
                if deletable {
                    m(&[(M::GET, Act::Get), (M::DELETE, Act::Delete)], "GET, DELETE", Some(id))
                } else {
                    m(&[(M::GET, Act::Get)], "GET", Some(id))
                }
            }
            (Api::Batches | Api::FineTuning | Api::MessageBatches, [id, "cancel"]) if !id.is_empty() => {
                m(&[(M::POST, Act::Cancel)], "POST", Some(id))
            }
            (Api::Files | Api::Videos, [id, "content"]) if !id.is_empty() => {
                m(&[(M::GET, Act::Content)], "GET", Some(id))
            }
            (Api::MessageBatches, [id, "results"]) if !id.is_empty() => {
                m(&[(M::GET, Act::Content)], "GET", Some(id))
            }
            (Api::FineTuning, [id, "events"]) if !id.is_empty() => {
                m(&[(M::GET, Act::Events)], "GET", Some(id))
            }
            (Api::FineTuning, [id, "checkpoints"]) if !id.is_empty() => {
                m(&[(M::GET, Act::Checkpoints)], "GET", Some(id))
            }
            _ => return None,
        })
    }

    /// The `endpoint` of its usage line (`files_create`, `batches_get`, ...).
    pub fn endpoint(&self) -> &'static str {
        use Act::*;
        use Api::*;
        match (self.api, self.act) {
            (Files, Create) => "files_create",
            (Files, List) => "files_list",
            (Files, Get) => "files_get",
            (Files, Delete) => "files_delete",
            (Files, Content) => "files_content",
            (Batches, Create) => "batches_create",
            (Batches, List) => "batches_list",
            (Batches, Get) => "batches_get",
            (Batches, Cancel) => "batches_cancel",
            (FineTuning, Create) => "fine_tuning_create",
            (FineTuning, List) => "fine_tuning_list",
            (FineTuning, Get) => "fine_tuning_get",
            (FineTuning, Cancel) => "fine_tuning_cancel",
            (FineTuning, Events) => "fine_tuning_events",
            (FineTuning, Checkpoints) => "fine_tuning_checkpoints",
            (Videos, Create) => "videos_create",
            (Videos, List) => "videos_list",
            (Videos, Get) => "videos_get",
            (Videos, Delete) => "videos_delete",
            (Videos, Content) => "videos_content",
            (MessageBatches, Create) => "message_batches_create",
            (MessageBatches, List) => "message_batches_list",
            (MessageBatches, Get) => "message_batches_get",
            (MessageBatches, Delete) => "message_batches_delete",
            (MessageBatches, Cancel) => "message_batches_cancel",
            (MessageBatches, Content) => "message_batches_results",
            _ => "jobs",
        }
    }

    /// The path after the API's own (`""`, `/{id}`, `/{id}/cancel`, ...), ids escaped.
    pub fn sub(&self) -> String {
        let id = self.id.as_deref().map(crate::providers::encode_segment);
        let tail = match (self.api, self.act) {
            (_, Act::Cancel) => "/cancel",
            (Api::MessageBatches, Act::Content) => "/results",
            (_, Act::Content) => "/content",
            (_, Act::Events) => "/events",
            (_, Act::Checkpoints) => "/checkpoints",
            _ => "",
        };
        match id {
            Some(id) => format!("/{id}{tail}"),
            None => String::new(),
        }
    }

    pub fn method(&self) -> http::Method {
        match self.act {
            Act::Create | Act::Cancel => http::Method::POST,
            Act::Delete => http::Method::DELETE,
            _ => http::Method::GET,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method as M;

    fn call(m: M, p: &str) -> Option<Result<JobCall, WrongMethod>> {
        JobCall::classify(&m, p)
    }

    #[test]
    fn every_job_path_of_the_spec_is_classified() {
        let ok = |m: M, p: &str, api: Api, act: Act, id: Option<&str>| {
            let c = call(m.clone(), p).unwrap_or_else(|| panic!("{m} {p}: not a job path")).unwrap();
            assert_eq!(c, JobCall { api, act, id: id.map(str::to_string) }, "{m} {p}");
        };
        ok(M::POST, "/v1/files", Api::Files, Act::Create, None);
        ok(M::GET, "/v1/files", Api::Files, Act::List, None);
        ok(M::GET, "/v1/files/file-1", Api::Files, Act::Get, Some("file-1"));
        ok(M::DELETE, "/v1/files/file-1", Api::Files, Act::Delete, Some("file-1"));
        ok(M::GET, "/v1/files/file-1/content", Api::Files, Act::Content, Some("file-1"));
        ok(M::POST, "/v1/batches", Api::Batches, Act::Create, None);
        ok(M::GET, "/v1/batches/b1", Api::Batches, Act::Get, Some("b1"));
        ok(M::POST, "/v1/batches/b1/cancel", Api::Batches, Act::Cancel, Some("b1"));
        ok(M::POST, "/v1/fine_tuning/jobs", Api::FineTuning, Act::Create, None);
        ok(M::GET, "/v1/fine_tuning/jobs/ft1/events", Api::FineTuning, Act::Events, Some("ft1"));
        ok(M::GET, "/v1/fine_tuning/jobs/ft1/checkpoints", Api::FineTuning, Act::Checkpoints, Some("ft1"));
        ok(M::POST, "/v1/fine_tuning/jobs/ft1/cancel", Api::FineTuning, Act::Cancel, Some("ft1"));
        ok(M::POST, "/v1/videos", Api::Videos, Act::Create, None);
        ok(M::DELETE, "/v1/videos/v1", Api::Videos, Act::Delete, Some("v1"));
        ok(M::GET, "/v1/videos/v1/content", Api::Videos, Act::Content, Some("v1"));
        ok(M::POST, "/v1/messages/batches", Api::MessageBatches, Act::Create, None);
        ok(M::GET, "/v1/messages/batches/mb1/results", Api::MessageBatches, Act::Content, Some("mb1"));
        ok(M::POST, "/v1/messages/batches/mb1/cancel", Api::MessageBatches, Act::Cancel, Some("mb1"));
        ok(M::GET, "/files", Api::Files, Act::List, None);
        assert_eq!(call(M::PUT, "/v1/files").unwrap().unwrap_err().allow, "GET, POST");
        assert_eq!(call(M::DELETE, "/v1/batches/b1").unwrap().unwrap_err().allow, "GET");
        assert!(call(M::GET, "/v1/filesx").is_none());
        assert!(call(M::GET, "/v1/files/a/b/c").is_none());
        assert!(call(M::GET, "/v1/messages").is_none());
        assert!(call(M::POST, "/v1/chat/completions").is_none());
        let c = call(M::GET, "/v1/files/a%2Fb/content").unwrap().unwrap();
        assert_eq!(c.sub(), "/a%252Fb/content", "ids are one escaped segment");
    }
}
