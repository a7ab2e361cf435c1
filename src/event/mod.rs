//! One audit event, viewed lazily: the top-level keys are located once (as
//! borrowed raw JSON), everything below is read only when a rule asks for it.
//! Also splits an input document into events (`Event`, `EventList`, array),
//! opening the managed clusters' envelopes on the way ([`envelope`]).

pub mod envelope;
pub mod json;
mod lookup;
pub mod scan;
pub mod time;
pub mod unescape;

use std::cell::RefCell;

use serde::Deserialize;
use serde_json::value::RawValue;

pub(crate) use lookup::Scanned;
use scan::Tape;

/// The top-level keys of an `audit.k8s.io` `Event` (v1 and v1beta1), each the
/// raw JSON text of its value, borrowed from the input (a `null` value is
/// absent). Read off the structural scan's tape (`read_top`), or written by
/// an envelope's conversion ([`envelope`]: GKE). serde's decoding of it is
/// the reference the tests hold the tape's reading of the other keys to;
/// `protoPayload` is read from the tape only.
#[derive(Debug, Default, Deserialize)]
pub struct Top<'a> {
    #[serde(borrow, default, deserialize_with = "raw")]
    pub kind: Option<&'a str>,
    #[serde(borrow, rename = "auditID", default, deserialize_with = "raw")]
    pub audit_id: Option<&'a str>,
    #[serde(borrow, default, deserialize_with = "raw")]
    pub stage: Option<&'a str>,
    #[serde(borrow, rename = "requestURI", default, deserialize_with = "raw")]
    pub request_uri: Option<&'a str>,
    #[serde(borrow, default, deserialize_with = "raw")]
    pub verb: Option<&'a str>,
    #[serde(borrow, default, deserialize_with = "raw")]
    pub user: Option<&'a str>,
    #[serde(borrow, rename = "impersonatedUser", default, deserialize_with = "raw")]
    pub impersonated_user: Option<&'a str>,
    #[serde(borrow, rename = "sourceIPs", default, deserialize_with = "raw")]
    pub source_ips: Option<&'a str>,
    #[serde(borrow, rename = "userAgent", default, deserialize_with = "raw")]
    pub user_agent: Option<&'a str>,
    #[serde(borrow, rename = "objectRef", default, deserialize_with = "raw")]
    pub object_ref: Option<&'a str>,
    #[serde(borrow, rename = "responseStatus", default, deserialize_with = "raw")]
    pub response_status: Option<&'a str>,
    #[serde(borrow, rename = "requestObject", default, deserialize_with = "raw")]
    pub request_object: Option<&'a str>,
    #[serde(borrow, rename = "responseObject", default, deserialize_with = "raw")]
    pub response_object: Option<&'a str>,
    #[serde(
        borrow,
        rename = "requestReceivedTimestamp",
        default,
        deserialize_with = "raw"
    )]
    pub request_received_timestamp: Option<&'a str>,
    #[serde(borrow, rename = "stageTimestamp", default, deserialize_with = "raw")]
    pub stage_timestamp: Option<&'a str>,
    /// `audit.k8s.io/v1alpha1`/early `v1beta1` events carry only this.
    #[serde(borrow, default, deserialize_with = "raw")]
    pub timestamp: Option<&'a str>,
    #[serde(borrow, default, deserialize_with = "raw")]
    pub annotations: Option<&'a str>,
    /// Present on an `EventList`.
    #[serde(borrow, default, deserialize_with = "raw")]
    pub items: Option<&'a str>,
    // The keys that mark an envelope of a managed cluster's logs; none is
    // ever a key of an audit event. See [`envelope`].
    /// CloudWatch Logs subscription payload (EKS).
    #[serde(borrow, rename = "messageType", default, deserialize_with = "raw")]
    pub message_type: Option<&'a str>,
    /// Firehose delivery (`records[].data`) or Azure diagnostic records.
    #[serde(borrow, default, deserialize_with = "raw")]
    pub records: Option<&'a str>,
    /// A Lambda event of Kinesis records (`Records[].kinesis.data`).
    #[serde(borrow, rename = "Records", default, deserialize_with = "raw")]
    pub kinesis_records: Option<&'a str>,
    /// A Lambda event of a CloudWatch Logs subscription (`awslogs.data`).
    #[serde(borrow, default, deserialize_with = "raw")]
    pub awslogs: Option<&'a str>,
    /// Cloud Logging `LogEntry` (GKE).
    /// Read from the tape only ([`envelope::Payload::read`]).
    #[serde(skip)]
    pub proto_payload: Option<envelope::Payload<'a>>,
    /// Pub/Sub push message (`message.data`).
    #[serde(borrow, default, deserialize_with = "raw")]
    pub message: Option<&'a str>,
    /// One Azure diagnostic record (AKS).
    #[serde(borrow, default, deserialize_with = "raw")]
    pub properties: Option<&'a str>,
    // Keys of a `LogEntry` that its conversion reads (with `timestamp`).
    #[serde(borrow, rename = "insertId", default, deserialize_with = "raw")]
    pub insert_id: Option<&'a str>,
    #[serde(borrow, default, deserialize_with = "raw")]
    pub operation: Option<&'a str>,
    #[serde(borrow, default, deserialize_with = "raw")]
    pub labels: Option<&'a str>,
    #[serde(borrow, default, deserialize_with = "raw")]
    pub resource: Option<&'a str>,
}

/// A value as its raw JSON text, `null` as absent.
fn raw<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de str>, D::Error> {
    let v = <&RawValue>::deserialize(d)?.get();
    Ok((v != "null").then_some(v))
}

impl<'a> Top<'a> {
    /// Whether `name` is one of the top-level keys decoded into `Top`; for
    /// those, absence from `Top` means absence from the event.
    pub fn captures(name: &str) -> bool {
        CAPTURED.contains(&name)
    }

    /// Whether the object is an envelope rather than an event.
    fn is_envelope(&self) -> bool {
        self.message_type.is_some()
            || self.records.is_some()
            || self.kinesis_records.is_some()
            || self.awslogs.is_some()
            || self.proto_payload.is_some()
            || self.message.is_some()
            || self.properties.is_some()
    }

    /// Sets a captured top-level key to the raw JSON text of its value (for
    /// an event written rather than decoded); other keys are not kept.
    pub(crate) fn set(&mut self, name: &str, value: &'a str) {
        if !Top::captures(name) {
            return;
        }
        if let Some((_, slot)) = self.slot(name) {
            *slot = Some(value);
        }
    }

    /// The field of a top-level key decoded as raw text, with one bit per
    /// field to notice a key given twice.
    fn slot(&mut self, name: &str) -> Option<(u32, &mut Option<&'a str>)> {
        let (bit, slot) = match name {
            "kind" => (0, &mut self.kind),
            "verb" => (4, &mut self.verb),
            "user" => (5, &mut self.user),
            "stage" => (2, &mut self.stage),
            "items" => (17, &mut self.items),
            "labels" => (26, &mut self.labels),
            "auditID" => (1, &mut self.audit_id),
            "records" => (19, &mut self.records),
            "Records" => (20, &mut self.kinesis_records),
            "awslogs" => (21, &mut self.awslogs),
            "message" => (22, &mut self.message),
            "insertId" => (24, &mut self.insert_id),
            "resource" => (27, &mut self.resource),
            "sourceIPs" => (7, &mut self.source_ips),
            "userAgent" => (8, &mut self.user_agent),
            "objectRef" => (9, &mut self.object_ref),
            "timestamp" => (15, &mut self.timestamp),
            "operation" => (25, &mut self.operation),
            "requestURI" => (3, &mut self.request_uri),
            "properties" => (23, &mut self.properties),
            "messageType" => (18, &mut self.message_type),
            "annotations" => (16, &mut self.annotations),
            "requestObject" => (11, &mut self.request_object),
            "responseStatus" => (10, &mut self.response_status),
            "responseObject" => (12, &mut self.response_object),
            "stageTimestamp" => (14, &mut self.stage_timestamp),
            "impersonatedUser" => (6, &mut self.impersonated_user),
            "requestReceivedTimestamp" => (13, &mut self.request_received_timestamp),
            _ => return None,
        };
        Some((1 << bit, slot))
    }

    /// The raw JSON text of a top-level key.
    pub fn key(&self, name: &str) -> Option<&'a str> {
        match name {
            "kind" => self.kind,
            "auditID" => self.audit_id,
            "stage" => self.stage,
            "requestURI" => self.request_uri,
            "verb" => self.verb,
            "user" => self.user,
            "impersonatedUser" => self.impersonated_user,
            "sourceIPs" => self.source_ips,
            "userAgent" => self.user_agent,
            "objectRef" => self.object_ref,
            "responseStatus" => self.response_status,
            "requestObject" => self.request_object,
            "responseObject" => self.response_object,
            "requestReceivedTimestamp" => self.request_received_timestamp,
            "stageTimestamp" => self.stage_timestamp,
            "timestamp" => self.timestamp,
            "annotations" => self.annotations,
            _ => None,
        }
    }
}

const CAPTURED: &[&str] = &[
    "kind",
    "auditID",
    "stage",
    "requestURI",
    "verb",
    "user",
    "impersonatedUser",
    "sourceIPs",
    "userAgent",
    "objectRef",
    "responseStatus",
    "requestObject",
    "responseObject",
    "requestReceivedTimestamp",
    "stageTimestamp",
    "timestamp",
    "annotations",
];

/// A decoded audit event.
#[derive(Debug)]
pub struct Event<'a> {
    /// The event's whole JSON text.
    pub raw: &'a str,
    pub top: Top<'a>,
    /// Event time (stageTimestamp, else requestReceivedTimestamp, else the
    /// legacy `timestamp`) in nanoseconds since the Unix epoch.
    pub time_ns: i64,
    /// The cluster's name, when the envelope the event came in names it
    /// (`ka.cluster`).
    pub cluster: Option<&'a str>,
    /// The tape of the text that holds the event: the event itself, or the
    /// document around it (an `EventList`, an array).
    doc: Scanned<'a>,
}

impl<'a> Event<'a> {
    /// The whole event's JSON text (already validated by the decoder).
    pub fn root(&self) -> &'a str {
        self.raw
    }

    /// The raw JSON text of a top-level key, wherever it is.
    pub fn key(&self, name: &str) -> Option<&'a str> {
        if Top::captures(name) {
            self.top.key(name)
        } else {
            self.get(self.raw, name)
        }
    }

    /// The value of `key` in object `parent` (the first one, if repeated),
    /// found on the tape without scanning text; by reading the text for a
    /// value that is not on it.
    pub fn get(&self, parent: &'a str, key: &str) -> Option<&'a str> {
        self.doc.get(parent, key)
    }

    /// A value of the event as Falco renders it: strings unquoted,
    /// everything else as compact JSON ([`json::text`]).
    pub fn text(&self, v: &'a str) -> std::borrow::Cow<'a, str> {
        self.doc.text(v)
    }

    /// Walks a path of object keys through [`Event::get`].
    pub fn path(&self, v: &'a str, keys: &[&str]) -> Option<&'a str> {
        self.doc.path(v, keys)
    }

    /// The elements of array `v`.
    pub fn elements(&self, v: &'a str) -> Option<Vec<&'a str>> {
        self.doc.elements(v)
    }

    /// Element `idx` of array `v`.
    pub fn index(&self, v: &'a str, idx: usize) -> Option<&'a str> {
        self.doc.index(v, idx)
    }
}

/// Why a line or document produced no event. Every skip is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Skip {
    /// An empty or whitespace-only line.
    Blank,
    /// A line that is not JSON, e.g. a klog line of the API server.
    NotJson,
    /// A line longer than the configured limit.
    TooLong,
    /// Starts like JSON but does not parse (truncated, invalid UTF-8, ...).
    InvalidJson,
    /// Valid JSON that is not an audit event (`{"kind":0}`, a number, ...).
    NotAuditEvent,
    /// An audit event without a usable timestamp.
    NoTimestamp,
    /// A CloudWatch Logs `CONTROL_MESSAGE` (EKS): a subscription's check
    /// that its destination is reachable, not data.
    ControlMessage,
    /// A record of a managed cluster's other logs: an Azure diagnostic
    /// record of another category (`kube-apiserver`, `guard`, ...), a
    /// message of an EKS log stream other than the audit log.
    OtherLog,
    /// An audit event cut off by the cloud's size limit (Azure's `log`
    /// property ends mid-document).
    Truncated,
}

impl Skip {
    pub const ALL: [Skip; 9] = [
        Skip::Blank,
        Skip::NotJson,
        Skip::TooLong,
        Skip::InvalidJson,
        Skip::NotAuditEvent,
        Skip::NoTimestamp,
        Skip::ControlMessage,
        Skip::OtherLog,
        Skip::Truncated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Blank => "blank",
            Skip::NotJson => "not_json",
            Skip::TooLong => "too_long",
            Skip::InvalidJson => "invalid_json",
            Skip::NotAuditEvent => "not_audit_event",
            Skip::NoTimestamp => "no_timestamp",
            Skip::ControlMessage => "control_message",
            Skip::OtherLog => "other_log",
            Skip::Truncated => "truncated",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Skip::Blank => "blank lines",
            Skip::NotJson => "lines that are not JSON (log text)",
            Skip::TooLong => "lines over the length limit",
            Skip::InvalidJson => "invalid or truncated JSON (or a corrupt gzip or base64 layer)",
            Skip::NotAuditEvent => "data not recognized as a k8s audit event",
            Skip::NoTimestamp => "malformed events without a timestamp",
            Skip::ControlMessage => "CloudWatch Logs control messages",
            Skip::OtherLog => "records of a managed cluster's other logs",
            Skip::Truncated => "audit events cut off by the cloud's size limit",
        }
    }
}

/// Decodes one document (one line, or one message): an `Event`, an
/// `EventList`, an array of events, or a managed cluster's envelope of them
/// (see [`envelope`]: CloudWatch Logs, Firehose, Cloud Logging, Pub/Sub,
/// Azure diagnostic records; gzip'd or base64'd where the cloud does so).
/// Calls `on_event` for each event and `on_skip` for each part that is not
/// one.
pub fn decode_document(
    doc: &[u8],
    mut on_event: impl FnMut(Event<'_>),
    mut on_skip: impl FnMut(Skip),
) {
    decode_bytes(doc, Layer::default(), &mut on_event, &mut on_skip)
}

/// The event callback inside the decoder (dynamic, so that an envelope can
/// wrap it without a new instance of the decoder per nesting level).
pub(crate) type OnEvent<'f> = dyn FnMut(Event<'_>) + 'f;
/// The skip callback inside the decoder.
pub(crate) type OnSkip<'f> = dyn FnMut(Skip) + 'f;

/// Where a document sits: the cluster an enclosing envelope named, and how
/// many envelopes deep it is.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Layer<'c> {
    pub cluster: Option<&'c str>,
    pub depth: u8,
}

pub(crate) fn decode_bytes<'d>(
    doc: &'d [u8],
    layer: Layer<'d>,
    on_event: &mut OnEvent,
    on_skip: &mut OnSkip,
) {
    if envelope::is_gzip(doc) {
        return envelope::inflate(doc, layer, on_event, on_skip);
    }
    let Ok(text) = std::str::from_utf8(doc) else {
        return on_skip(Skip::InvalidJson);
    };
    let text = text.trim();
    match text.as_bytes().first() {
        Some(b'{') if envelope::by_first_key(text, layer, on_event, on_skip) => {}
        Some(b'{' | b'[') => with_tape(|tape| match tape.scan(text) {
            Ok(()) => decode_scanned(text, tape, layer, on_event, on_skip),
            Err(_) => on_skip(Skip::InvalidJson),
        }),
        Some(_) => on_skip(Skip::NotJson),
        None => on_skip(Skip::Blank),
    }
}

thread_local! {
    /// Tapes to reuse, one per document being decoded (a document inside an
    /// envelope takes its own, and so does each record of an envelope read
    /// in one pass).
    static TAPES: RefCell<Vec<Tape>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with a tape from this thread's pool.
pub(crate) fn with_tape<R>(f: impl FnOnce(&mut Tape) -> R) -> R {
    let mut tape = take_tape();
    let out = f(&mut tape);
    give_tape(tape);
    out
}

/// A tape from this thread's pool (or a new one), to give back with
/// [`give_tape`] once its document is decoded.
pub(crate) fn take_tape() -> Tape {
    TAPES.with(|t| t.borrow_mut().pop()).unwrap_or_default()
}

/// Gives a tape back to this thread's pool, which keeps a few (an
/// envelope of many records holds one per record until they are decoded).
pub(crate) fn give_tape(mut tape: Tape) {
    const KEPT: usize = 16;
    tape.trim();
    TAPES.with(|t| {
        let mut pool = t.borrow_mut();
        if pool.len() < KEPT {
            pool.push(tape);
        }
    });
}

/// Decodes a document that an envelope has already scanned onto `tape`
/// (unescaped and scanned in one pass: [`Tape::scan_string`]), as
/// [`decode_bytes`] decodes it.
pub(crate) fn decode_prescanned<'d>(
    doc: &'d [u8],
    tape: &'d Tape,
    layer: Layer<'d>,
    on_event: &mut OnEvent,
    on_skip: &mut OnSkip,
) {
    // The unescaped text of a string of UTF-8 is UTF-8.
    let Ok(text) = std::str::from_utf8(doc) else {
        return on_skip(Skip::InvalidJson);
    };
    if !envelope::by_first_key(text, layer, on_event, on_skip) {
        decode_scanned(text, tape, layer, on_event, on_skip)
    }
}

/// A document the structural scan accepted: an event, an `EventList`, an
/// array of events, or an envelope.
fn decode_scanned<'d>(
    text: &'d str,
    tape: &'d Tape,
    layer: Layer<'d>,
    on_event: &mut OnEvent,
    on_skip: &mut OnSkip,
) {
    if json::kind(text) == json::Kind::Array {
        return decode_elements(text, tape, 0, layer, on_event, on_skip);
    }
    match read_top(text, tape, 0) {
        Read::Top(top, Some(items)) if is_event_list(&top) => {
            decode_elements(text, tape, items, layer, on_event, on_skip)
        }
        Read::Top(top, _) => decode_node(text, top, tape, text, layer, on_event, on_skip),
        Read::Refused => on_skip(Skip::NotAuditEvent),
    }
}

/// The elements of array node `arr`, each an event or an envelope.
fn decode_elements<'d>(
    text: &'d str,
    tape: &'d Tape,
    arr: usize,
    layer: Layer<'d>,
    on_event: &mut OnEvent,
    on_skip: &mut OnSkip,
) {
    let node = tape.nodes()[arr];
    if text.as_bytes()[node.start as usize] != b'[' {
        return on_skip(Skip::NotAuditEvent);
    }
    for (i, n) in tape.children(arr) {
        let raw = &text[n.start as usize..n.end as usize];
        if json::kind(raw) != json::Kind::Object {
            on_skip(Skip::NotAuditEvent);
            continue;
        }
        match read_top(text, tape, i) {
            Read::Top(top, _) => decode_node(raw, top, tape, text, layer, on_event, on_skip),
            Read::Refused => on_skip(Skip::NotAuditEvent),
        }
    }
}

/// What the root object of a scanned document holds.
// `Top` is large but lives on the stack for one event; boxing it would cost
// an allocation per event.
#[allow(clippy::large_enum_variant)]
enum Read<'d> {
    /// Its top-level keys, and the tape node of `items`.
    Top(Top<'d>, Option<usize>),
    /// A key of `Top` twice (as serde_json's decoding of `Top` refuses it),
    /// or a `protoPayload` that is neither an object nor `null`: not an
    /// audit event.
    Refused,
}

/// The top-level keys of object node `i`, from the tape.
fn read_top<'d>(text: &'d str, tape: &Tape, i: usize) -> Read<'d> {
    let mut top = Top::default();
    let mut seen = 0u32;
    let mut items = None;
    for (child, n) in tape.children(i) {
        let key = key_of(text, n);
        if key == "protoPayload" {
            if seen & PROTO_PAYLOAD != 0 {
                return Read::Refused;
            }
            seen |= PROTO_PAYLOAD;
            if &text[n.start as usize..n.end as usize] != "null" {
                match envelope::Payload::read(text, tape, child) {
                    Some(payload) => top.proto_payload = Some(payload),
                    None => return Read::Refused,
                }
            }
            continue;
        }
        let Some((bit, slot)) = top.slot(&key) else {
            continue;
        };
        if seen & bit != 0 {
            return Read::Refused;
        }
        seen |= bit;
        let value = &text[n.start as usize..n.end as usize];
        if value != "null" {
            *slot = Some(value);
            if key == "items" {
                items = Some(child);
            }
        }
    }
    if seen & PROTO_PAYLOAD != 0 {
        // A Cloud Logging entry (its `protoPayload` perhaps `null`), not
        // an `EventList`, whatever else it holds.
        items = None;
    }
    Read::Top(top, items)
}

/// The duplicate-key bit of `protoPayload` (beside those of [`Top::slot`]).
const PROTO_PAYLOAD: u32 = 1 << 28;

/// The key of an object entry on the tape, unescaped.
pub(crate) fn key_of<'d>(text: &'d str, n: &scan::Node) -> std::borrow::Cow<'d, str> {
    if let Some(plain) = n.plain_key(text) {
        return std::borrow::Cow::Borrowed(plain);
    }
    let raw_key = &text[n.key as usize..n.key_end as usize];
    let inner = &raw_key[1..raw_key.len() - 1];
    if inner.contains('\\') {
        json::string(raw_key).unwrap_or_default()
    } else {
        std::borrow::Cow::Borrowed(inner)
    }
}

fn is_event_list(top: &Top) -> bool {
    match top.kind.and_then(json::string) {
        Some(kind) => kind == "EventList",
        None => top.kind.is_none(),
    }
}

/// One scanned object: an event, or an envelope to open.
fn decode_node<'d>(
    raw: &'d str,
    top: Top<'d>,
    tape: &'d Tape,
    base: &'d str,
    layer: Layer<'d>,
    on_event: &mut OnEvent,
    on_skip: &mut OnSkip,
) {
    let doc = Scanned { tape, base };
    if top.is_envelope() {
        envelope::open(raw, &top, doc, layer, on_event, on_skip)
    } else {
        decode_event(raw, top, layer.cluster, doc, on_event, on_skip)
    }
}

/// An event, scanned or (GKE's conversion) written with its tape.
fn decode_event<'d>(
    raw: &'d str,
    top: Top<'d>,
    cluster: Option<&'d str>,
    doc: Scanned<'d>,
    on_event: &mut OnEvent,
    on_skip: &mut OnSkip,
) {
    let kind_ok = match top.kind {
        None => true,
        Some(k) => json::string(k).is_some_and(|k| k == "Event"),
    };
    let looks_like_event = top.audit_id.is_some() || top.stage.is_some() || top.verb.is_some();
    if !kind_ok || !(looks_like_event || top.kind.is_some()) {
        return on_skip(Skip::NotAuditEvent);
    }
    let time = [
        top.stage_timestamp,
        top.request_received_timestamp,
        top.timestamp,
    ]
    .into_iter()
    .flatten()
    .find_map(|v| json::string(v).and_then(|s| time::parse_rfc3339(&s)));
    match time {
        Some(time_ns) => on_event(Event {
            raw,
            top,
            time_ns,
            cluster,
            doc,
        }),
        None => on_skip(Skip::NoTimestamp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(s: &str) -> (Vec<i64>, Vec<Skip>) {
        let mut events = Vec::new();
        let mut skips = Vec::new();
        decode_document(s.as_bytes(), |e| events.push(e.time_ns), |s| skips.push(s));
        (events, skips)
    }

    const EV: &str = r#"{"kind":"Event","auditID":"a","stage":"ResponseComplete","verb":"get","stageTimestamp":"1970-01-01T00:00:01.000000Z"}"#;

    #[test]
    fn shapes() {
        assert_eq!(decode(EV), (vec![1_000_000_000], vec![]));
        let list = format!(r#"{{"kind":"EventList","items":[{EV},{EV}]}}"#);
        assert_eq!(decode(&list).0.len(), 2);
        assert_eq!(
            decode(&format!("[{EV}, 3]")),
            (vec![1_000_000_000], vec![Skip::NotAuditEvent])
        );
        let legacy = r#"{"auditID":"x","verb":"get","timestamp":"1970-01-01T00:00:02Z"}"#;
        assert_eq!(decode(legacy).0, vec![2_000_000_000]);
        let received_only = r#"{"auditID":"x","requestReceivedTimestamp":"1970-01-01T00:00:03Z"}"#;
        assert_eq!(decode(received_only).0, vec![3_000_000_000]);
    }

    #[test]
    fn a_log_entry_with_items_is_an_entry_not_an_event_list() {
        let entry = |payload: &str| {
            format!(
                r#"{{"items":[{EV}],"protoPayload":{payload},"insertId":"i1","timestamp":"1970-01-01T00:00:04Z","resource":{{"type":"k8s_cluster","labels":{{"cluster_name":"c"}}}}}}"#
            )
        };
        let audit = r#"{"@type":"type.googleapis.com/google.cloud.audit.AuditLog","serviceName":"k8s.io","methodName":"io.k8s.core.v1.pods.get","resourceName":"core/v1/namespaces/default/pods/web","authenticationInfo":{"principalEmail":"alice"}}"#;
        assert_eq!(decode(&entry(audit)), (vec![4_000_000_000], vec![]));
        let (events, skips) = decode(&entry("null"));
        assert!(
            events.is_empty() && skips.len() == 1,
            "{events:?} {skips:?}"
        );
        // A key twice is refused as serde_json refuses it, a null first too.
        let twice = format!(
            r#"{{"protoPayload":null,"protoPayload":{audit},"timestamp":"1970-01-01T00:00:04Z"}}"#
        );
        assert_eq!(decode(&twice), (vec![], vec![Skip::NotAuditEvent]));
    }

    /// Every raw key of `Top` that is not an event's: the envelopes' and
    /// the `EventList`'s.
    const OTHER_KEYS: &[&str] = &[
        "items",
        "messageType",
        "records",
        "Records",
        "awslogs",
        "message",
        "properties",
        "insertId",
        "operation",
        "labels",
        "resource",
    ];

    #[test]
    fn the_tape_reads_top_as_serde_does() {
        let doc = |keys: &[&str]| {
            let entries: Vec<String> = keys
                .iter()
                .enumerate()
                .map(|(i, k)| format!("\"{k}\":\"v{i}\""))
                .collect();
            format!(
                "{{{},\"apiVersion\":\"audit.k8s.io/v1\"}}",
                entries.join(",")
            )
        };
        let raw_keys: Vec<&str> = CAPTURED.iter().chain(OTHER_KEYS).copied().collect();
        let text = doc(&raw_keys);
        let mut tape = Tape::default();
        tape.scan(&text).unwrap();
        let Read::Top(top, _) = read_top(&text, &tape, 0) else {
            panic!("every key has its own bit: no duplicate");
        };
        let serde: Top = serde_json::from_str(&text).unwrap();
        assert_eq!(format!("{top:?}"), format!("{serde:?}"));
        for k in &raw_keys {
            let twice = doc(&[k, k]);
            tape.scan(&twice).unwrap();
            assert!(matches!(read_top(&twice, &tape, 0), Read::Refused), "{k}");
            assert!(serde_json::from_str::<Top>(&twice).is_err(), "{k}");
        }
        // An escaped key is the key it stands for.
        let escaped = r#"{"ver\u0062":"get","auditID":"a"}"#;
        tape.scan(escaped).unwrap();
        let Read::Top(top, _) = read_top(escaped, &tape, 0) else {
            panic!("not a duplicate");
        };
        assert_eq!(top.verb, Some("\"get\""));
    }

    #[test]
    fn captured_keys_are_the_ones_top_decodes() {
        let ev = format!(
            "{{{}}}",
            CAPTURED
                .iter()
                .map(|k| format!("\"{k}\":\"x\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        let top: Top = serde_json::from_str(&ev).unwrap();
        let mut set = Top::default();
        for k in CAPTURED {
            assert_eq!(top.key(k), Some("\"x\""), "{k}");
            set.set(k, "1");
            assert_eq!(set.key(k), Some("1"), "{k}");
        }
        set.set("apiVersion", "2");
        assert_eq!(set.key("apiVersion"), None);
        let null: Top = serde_json::from_str(r#"{"auditID":null,"verb":"get"}"#).unwrap();
        assert_eq!(
            (null.key("auditID"), null.key("verb")),
            (None, Some("\"get\""))
        );
        assert!(!Top::captures("level"));
    }

    #[test]
    fn skips() {
        assert_eq!(decode(r#"{"kind": 0}"#).1, vec![Skip::NotAuditEvent]);
        assert_eq!(
            decode(r#"{"kind":"Pod","metadata":{}}"#).1,
            vec![Skip::NotAuditEvent]
        );
        assert_eq!(
            decode(r#"{"auditID":"x","verb":"get"}"#).1,
            vec![Skip::NoTimestamp]
        );
        assert_eq!(
            decode(r#"{"auditID":"x","stageTimestamp":"yesterday"}"#).1,
            vec![Skip::NoTimestamp]
        );
        assert_eq!(decode(r#"{"auditID":"x","#).1, vec![Skip::InvalidJson]);
        assert_eq!(
            decode("I0215 11:51:31.123456 1 file.go:123] msg").1,
            vec![Skip::NotJson]
        );
        assert_eq!(decode("").1, vec![Skip::Blank]);
        let (e, s) = decode(&format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)));
        assert!(e.is_empty() && s.len() == 1, "{s:?}");
        let (e, s) = decode(&format!(
            "{{\"auditID\":{}1{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        ));
        assert!(e.is_empty() && s.len() == 1, "{s:?}");
        let mut bad = EV.as_bytes().to_vec();
        bad[30] = 0xff;
        let mut skips = Vec::new();
        decode_document(&bad, |_| panic!(), |s| skips.push(s));
        assert_eq!(skips, vec![Skip::InvalidJson]);
    }
}
