//! `saker produce`: writes recorded audit events to a Kafka topic, one
//! message per input line, keyed by a field of the event (the user by
//! default, which is what the windowed rules group by) and stamped with the
//! event's time. For replaying audit logs into a test topic, and for the
//! project's own Kafka tests and benchmarks.

use std::future::Future;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Wake};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::{ClientConfig, ClientContext};

use crate::event::decode_document;
use crate::fields::{self, extract, Arg, FieldDef};
use crate::source::lines::{strip_prefixes, Line, LineReader};

/// Settings of `saker produce`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub brokers: String,
    pub topic: String,
    /// `-X key=value` pairs for librdkafka.
    pub options: Vec<(String, String)>,
    /// The field whose value keys each message; `None` sends without keys.
    pub key: Option<&'static FieldDef>,
    /// Create the topic with this many partitions if it does not exist.
    pub create_partitions: Option<i32>,
    pub max_line_bytes: usize,
}

/// Resolves a `--key` field name.
pub fn key_field(name: &str) -> Result<&'static FieldDef, String> {
    let def = fields::lookup(name).ok_or_else(|| format!("unknown field `{name}`"))?;
    if def.list || def.check_arg(None).is_err() {
        return Err(format!(
            "field `{name}` cannot key messages (it is a list or needs an argument)"
        ));
    }
    Ok(def)
}

/// What was produced.
#[derive(Debug, Default, Clone, Copy)]
pub struct Produced {
    pub messages: u64,
    pub delivered: u64,
    pub failed: u64,
    pub bytes: u64,
}

#[derive(Default)]
struct Deliveries {
    delivered: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.delivered.fetch_add(1, Relaxed),
            Err((e, _)) => {
                if self.failed.load(Relaxed) < 5 {
                    tracing::warn!("kafka: a message was not delivered: {e}");
                }
                self.failed.fetch_add(1, Relaxed)
            }
        };
    }
}

fn config(settings: &Settings) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &settings.brokers)
        .set("client.id", "saker-produce")
        .set("linger.ms", "20");
    for (k, v) in &settings.options {
        c.set(k, v);
    }
    c
}

/// Reads lines from `input` and sends each non-blank one as a message.
pub fn produce(settings: &Settings, input: impl Read) -> Result<Produced, String> {
    let config = config(settings);
    if let Some(n) = settings.create_partitions {
        create_topic(&config, &settings.topic, n)?;
    }
    let producer: BaseProducer<Deliveries> = config
        .create_with_context(Deliveries::default())
        .map_err(|e| format!("cannot create the Kafka producer: {e}"))?;
    let mut lines = LineReader::new(input, settings.max_line_bytes);
    let mut out = Produced::default();
    let mut key = String::new();
    loop {
        let line = match lines.next_line(&mut || {}) {
            Ok(Some(Line::Text(t))) => t,
            Ok(Some(Line::TooLong)) => {
                tracing::warn!("a line longer than --max-line-bytes was not sent");
                continue;
            }
            Ok(None) => break,
            Err(e) => return Err(format!("cannot read the input: {e}")),
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        // The key and timestamp of the first event in the line; lines that
        // hold no event are sent as they are, without a key.
        let mut first: Option<(Option<String>, i64)> = None;
        decode_document(
            strip_prefixes(line),
            |ev| {
                if first.is_none() {
                    let k = settings.key.and_then(|def| {
                        extract::extract(&ev, def, &Arg::None).map(|v| v.render().into_owned())
                    });
                    first = Some((k, ev.time_ns.div_euclid(1_000_000)));
                }
            },
            |_| {},
        );
        let mut record = BaseRecord::<str, [u8]>::to(&settings.topic).payload(line);
        if let Some((k, ms)) = &first {
            if let Some(k) = k {
                key.clear();
                key.push_str(k);
                record = record.key(key.as_str());
            }
            if *ms > 0 {
                record = record.timestamp(*ms);
            }
        }
        let mut record = record;
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => return Err(format!("cannot send a message: {e}")),
            }
        }
        out.messages += 1;
        out.bytes += line.len() as u64;
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(|e| format!("not every message was delivered: {e}"))?;
    let d = producer.context();
    out.delivered = d.delivered.load(Relaxed);
    out.failed = d.failed.load(Relaxed);
    Ok(out)
}

pub(crate) fn create_topic(
    config: &ClientConfig,
    topic: &str,
    partitions: i32,
) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = config
        .create()
        .map_err(|e| format!("cannot create the Kafka admin client: {e}"))?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = block_on(admin.create_topics([&new], &options))
        .map_err(|e| format!("cannot create topic {topic}: {e}"))?;
    for r in results {
        match r {
            Ok(_) => tracing::info!(topic, partitions, "topic created"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::info!(topic, "topic exists already")
            }
            Err((_, code)) => return Err(format!("cannot create topic {topic}: {code}")),
        }
    }
    Ok(())
}

/// Runs a future to completion on this thread (the admin client's replies
/// arrive from librdkafka's own thread; no async runtime is needed).
fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = TaskContext::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}
