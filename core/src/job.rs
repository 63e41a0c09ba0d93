//! The job message schema and the parser that turns any queue message into jobs.
//!
//! A message body is one of:
//! - a docfleet job (`{"version": 1, "job_id": ..., "input": ..., "pipeline": ...}`),
//! - an S3 event notification (`{"Records": [{"eventSource": "aws:s3", ...}]}`) as S3 sends it
//!   to SQS, or the same wrapped in an SNS envelope (`{"Type": "Notification", "Message": "..."}`),
//! - an `s3:TestEvent`, which S3 sends when notifications are configured and which is deleted.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::keys::{validate_bucket, validate_key, validate_pipeline_name, validate_prefix};
use crate::{Error, Result};

/// The job schema version this build writes and understands.
pub const JOB_SCHEMA_VERSION: u32 = 1;

/// A bucket and key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
}

impl ObjectRef {
    pub fn new(bucket: impl Into<String>, key: impl Into<String>) -> Self {
        Self { bucket: bucket.into(), key: key.into() }
    }

    /// Parse `s3://bucket/key`.
    pub fn parse_url(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| Error::InvalidJob(format!("input `{url}` is not an s3://bucket/key URL")))?;
        let (bucket, key) = rest
            .split_once('/')
            .ok_or_else(|| Error::InvalidJob(format!("input `{url}` has no key after the bucket")))?;
        Ok(Self::new(bucket, key))
    }

    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    fn validate(&self) -> Result<()> {
        validate_bucket(&self.bucket)?;
        validate_key(&self.key)
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// The input of a job message: `"s3://bucket/key"` or `{"bucket": ..., "key": ...}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InputSpec {
    Url(String),
    Object { bucket: String, key: String },
}

/// The versioned JSON job message as it travels on the queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobMessage {
    /// Schema version, currently 1.
    pub version: u32,
    /// Caller-chosen id, echoed in results and logs.
    pub job_id: String,
    /// The document to process.
    pub input: InputSpec,
    /// Pipeline name; the worker's `default_pipeline` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    /// Key prefix for the result instead of the configured `results_prefix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_prefix: Option<String>,
    /// Pipeline parameters, passed through to the pipeline.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub params: Map<String, Value>,
}

impl JobMessage {
    /// A version-1 job for an object.
    pub fn new(job_id: impl Into<String>, input: &ObjectRef, pipeline: Option<String>) -> Self {
        Self {
            version: JOB_SCHEMA_VERSION,
            job_id: job_id.into(),
            input: InputSpec::Object { bucket: input.bucket.clone(), key: input.key.clone() },
            pipeline,
            output_prefix: None,
            params: Map::new(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("job message serializes")
    }
}

/// Where a job came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobSource {
    /// A docfleet job message.
    JobMessage,
    /// An S3 event notification (`via_sns` when wrapped in an SNS envelope).
    S3Event { event_name: String, via_sns: bool, size: Option<u64> },
}

/// A parsed and validated job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job {
    pub job_id: String,
    pub input: ObjectRef,
    pub pipeline: String,
    pub output_prefix: Option<String>,
    pub params: Map<String, Value>,
    pub source: JobSource,
}

/// What a queue message turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// One or more jobs (an S3 event can carry several records).
    Jobs(Vec<Job>),
    /// S3's `s3:TestEvent`: nothing to do, delete it.
    TestEvent,
    /// A valid notification with nothing to process (e.g. only `ObjectRemoved` records).
    Ignored(String),
}

/// Parse a message body. `default_pipeline` applies to S3 events and jobs that name none.
pub fn parse_message(body: &str, default_pipeline: &str) -> Result<Parsed> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| Error::InvalidMessage(format!("body is not JSON: {e}")))?;
    parse_value(value, default_pipeline, false)
}

fn parse_value(value: Value, default_pipeline: &str, via_sns: bool) -> Result<Parsed> {
    let Value::Object(obj) = value else {
        return Err(Error::InvalidMessage("body is JSON but not an object".into()));
    };
    if obj.get("Type").and_then(Value::as_str) == Some("Notification") {
        if via_sns {
            return Err(Error::InvalidMessage("nested SNS envelopes".into()));
        }
        let inner = obj
            .get("Message")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::InvalidMessage("SNS notification without a string `Message`".into()))?;
        let inner: Value = serde_json::from_str(inner)
            .map_err(|e| Error::InvalidMessage(format!("SNS `Message` is not JSON: {e}")))?;
        return parse_value(inner, default_pipeline, true);
    }
    if obj.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Parsed::TestEvent);
    }
    if let Some(records) = obj.get("Records") {
        return parse_s3_records(records, default_pipeline, via_sns);
    }
    if obj.contains_key("version") {
        let msg: JobMessage = serde_json::from_value(Value::Object(obj))
            .map_err(|e| Error::InvalidMessage(format!("not a valid docfleet job: {e}")))?;
        return Ok(Parsed::Jobs(vec![job_from_message(msg, default_pipeline)?]));
    }
    Err(Error::InvalidMessage(
        "neither a docfleet job (no `version`), an S3 event (no `Records`) nor an SNS notification".into(),
    ))
}

fn job_from_message(msg: JobMessage, default_pipeline: &str) -> Result<Job> {
    if msg.version != JOB_SCHEMA_VERSION {
        return Err(Error::InvalidMessage(format!(
            "job schema version {} is not supported (this worker understands {JOB_SCHEMA_VERSION})",
            msg.version
        )));
    }
    if msg.job_id.is_empty() || msg.job_id.len() > 256 || msg.job_id.chars().any(char::is_control) {
        return Err(Error::InvalidMessage("job_id must be 1–256 printable characters".into()));
    }
    let input = match msg.input {
        InputSpec::Url(url) => ObjectRef::parse_url(&url)?,
        InputSpec::Object { bucket, key } => ObjectRef::new(bucket, key),
    };
    input.validate()?;
    let pipeline = msg.pipeline.unwrap_or_else(|| default_pipeline.to_owned());
    validate_pipeline_name(&pipeline)?;
    if let Some(prefix) = &msg.output_prefix {
        validate_prefix(prefix)?;
    }
    Ok(Job {
        job_id: msg.job_id,
        input,
        pipeline,
        output_prefix: msg.output_prefix,
        params: msg.params,
        source: JobSource::JobMessage,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct S3Record {
    #[serde(default)]
    event_source: String,
    #[serde(default)]
    event_name: String,
    s3: Option<S3Entity>,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: S3Bucket,
    object: S3Object,
}

#[derive(Deserialize)]
struct S3Bucket {
    name: String,
}

#[derive(Deserialize)]
struct S3Object {
    key: String,
    size: Option<u64>,
    #[serde(rename = "eTag")]
    e_tag: Option<String>,
    sequencer: Option<String>,
}

fn parse_s3_records(records: &Value, default_pipeline: &str, via_sns: bool) -> Result<Parsed> {
    let records: Vec<S3Record> = serde_json::from_value(records.clone())
        .map_err(|e| Error::InvalidMessage(format!("malformed S3 event records: {e}")))?;
    let mut jobs = Vec::new();
    let mut skipped = Vec::new();
    for record in records {
        if record.event_source != "aws:s3" || !record.event_name.starts_with("ObjectCreated:") {
            skipped.push(format!("{} {}", record.event_source, record.event_name));
            continue;
        }
        let entity = record.s3.ok_or_else(|| Error::InvalidMessage("S3 ObjectCreated record without `s3`".into()))?;
        let key = decode_event_key(&entity.object.key)?;
        let input = ObjectRef::new(entity.bucket.name, key);
        input.validate()?;
        let version = entity.object.sequencer.or(entity.object.e_tag).unwrap_or_default();
        jobs.push(Job {
            job_id: format!("s3-event:{}:{}", input.url(), version),
            input,
            pipeline: default_pipeline.to_owned(),
            output_prefix: None,
            params: Map::new(),
            source: JobSource::S3Event { event_name: record.event_name, via_sns, size: entity.object.size },
        });
    }
    if jobs.is_empty() {
        return Ok(Parsed::Ignored(format!("no ObjectCreated records (saw: {})", skipped.join(", "))));
    }
    Ok(Parsed::Jobs(jobs))
}

/// S3 event keys are URL-encoded with `+` for spaces.
fn decode_event_key(raw: &str) -> Result<String> {
    let plus_decoded = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_decoded)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| Error::InvalidMessage(format!("S3 event key `{raw}` is not valid UTF-8 once decoded")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jobs(p: Parsed) -> Vec<Job> {
        match p {
            Parsed::Jobs(j) => j,
            other => panic!("expected jobs, got {other:?}"),
        }
    }

    #[test]
    fn job_message_round_trips_with_both_input_forms() {
        let msg = JobMessage::new("j1", &ObjectRef::new("in-b", "a/b.png"), Some("inspect".into()));
        let job = jobs(parse_message(&msg.to_json(), "ocr").unwrap()).remove(0);
        assert_eq!(job.job_id, "j1");
        assert_eq!(job.input, ObjectRef::new("in-b", "a/b.png"));
        assert_eq!(job.pipeline, "inspect");
        assert_eq!(job.source, JobSource::JobMessage);

        let body =
            r#"{"version":1,"job_id":"j2","input":"s3://in-b/x/y.pdf","output_prefix":"custom/","params":{"dpi":150}}"#;
        let job = jobs(parse_message(body, "ocr").unwrap()).remove(0);
        assert_eq!(job.input, ObjectRef::new("in-b", "x/y.pdf"));
        assert_eq!(job.pipeline, "ocr", "default pipeline applies");
        assert_eq!(job.output_prefix.as_deref(), Some("custom/"));
        assert_eq!(job.params["dpi"], 150);
    }

    #[test]
    fn malformed_messages_are_invalid_with_a_reason() {
        let cases = [
            ("not json", "not JSON"),
            ("[1,2]", "not an object"),
            (r#"{"hello":1}"#, "neither a docfleet job"),
            (r#"{"version":2,"job_id":"a","input":"s3://bkt/k"}"#, "version 2 is not supported"),
            (r#"{"version":1,"job_id":"a"}"#, "not a valid docfleet job"),
            (r#"{"version":1,"job_id":"a","input":"s3://bkt/k","extra":1}"#, "unknown field `extra`"),
            (r#"{"version":1,"job_id":"a","input":"http://x/y"}"#, "not an s3://"),
            (r#"{"version":1,"job_id":"a","input":"s3://bkt/../etc/passwd"}"#, "segment"),
            (r#"{"version":1,"job_id":"a","input":"s3://bkt/k","output_prefix":"../up"}"#, "segment"),
            (r#"{"version":1,"job_id":"a","input":"s3://bkt/k","pipeline":"a/b"}"#, "pipeline name"),
            (r#"{"Type":"Notification","Message":"{oops"}"#, "SNS `Message` is not JSON"),
        ];
        for (body, needle) in cases {
            let err = parse_message(body, "inspect").unwrap_err().to_string();
            assert!(err.contains(needle), "{body}: {err}");
        }
    }

    const S3_EVENT: &str = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1",
        "eventTime":"2026-11-24T10:00:00.000Z","eventName":"ObjectCreated:Put",
        "s3":{"s3SchemaVersion":"1.0","configurationId":"docfleet","bucket":{"name":"in-bucket","arn":"arn:aws:s3:::in-bucket"},
        "object":{"key":"scans/My+File%C3%A9+%282%29.png","size":1234,"eTag":"abc","sequencer":"0055AED6DCD90281E5"}}}]}"#;

    #[test]
    fn s3_event_notification_becomes_a_job_with_decoded_key() {
        let job = jobs(parse_message(S3_EVENT, "ocr").unwrap()).remove(0);
        assert_eq!(job.input, ObjectRef::new("in-bucket", "scans/My Fileé (2).png"));
        assert_eq!(job.pipeline, "ocr");
        assert_eq!(job.job_id, "s3-event:s3://in-bucket/scans/My Fileé (2).png:0055AED6DCD90281E5");
        assert_eq!(
            job.source,
            JobSource::S3Event { event_name: "ObjectCreated:Put".into(), via_sns: false, size: Some(1234) }
        );
    }

    #[test]
    fn sns_wrapped_s3_event_is_unwrapped() {
        let envelope = serde_json::json!({
            "Type": "Notification",
            "MessageId": "c0ffee",
            "TopicArn": "arn:aws:sns:us-east-1:000000000000:uploads",
            "Subject": "Amazon S3 Notification",
            "Message": S3_EVENT,
            "Timestamp": "2026-11-24T10:00:00.000Z"
        });
        let job = jobs(parse_message(&envelope.to_string(), "ocr").unwrap()).remove(0);
        assert_eq!(job.input.bucket, "in-bucket");
        assert!(matches!(job.source, JobSource::S3Event { via_sns: true, .. }));
    }

    #[test]
    fn test_events_and_removals_are_recognised() {
        let test_event = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-24T10:00:00.000Z","Bucket":"in-bucket","RequestId":"1","HostId":"2"}"#;
        assert_eq!(parse_message(test_event, "ocr").unwrap(), Parsed::TestEvent);
        let wrapped = serde_json::json!({"Type":"Notification","Message":test_event}).to_string();
        assert_eq!(parse_message(&wrapped, "ocr").unwrap(), Parsed::TestEvent);
        let removed = S3_EVENT.replace("ObjectCreated:Put", "ObjectRemoved:Delete");
        assert!(matches!(parse_message(&removed, "ocr").unwrap(), Parsed::Ignored(_)));
    }

    #[test]
    fn multi_record_events_yield_one_job_per_created_object() {
        let mut v: Value = serde_json::from_str(S3_EVENT).unwrap();
        let mut second = v["Records"][0].clone();
        second["s3"]["object"]["key"] = "other.pdf".into();
        v["Records"].as_array_mut().unwrap().push(second);
        let js = jobs(parse_message(&v.to_string(), "inspect").unwrap());
        assert_eq!(js.len(), 2);
        assert_eq!(js[1].input.key, "other.pdf");
    }
}
