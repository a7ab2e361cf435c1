//! Flags of `saker produce`, and the producer settings they make.

use super::UsageError;

#[derive(clap::Args)]
pub struct ProduceArgs {
    /// Bootstrap brokers, host:port[,host:port...].
    #[arg(long, value_name = "HOSTS")]
    pub kafka_brokers: String,
    /// Topic to write to.
    #[arg(long, value_name = "TOPIC")]
    pub kafka_topic: String,
    /// Create the topic with this many partitions when it does not exist.
    #[arg(long, value_name = "N")]
    pub partitions: Option<i32>,
    /// Field whose value keys each message (`none` for no key). Key by what
    /// the windowed rules group by.
    #[arg(long, default_value = "ka.user.name", value_name = "FIELD")]
    pub key: String,
    /// librdkafka property, key=value; repeatable.
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = saker::source::kafka::parse_option)]
    pub kafka_option: Vec<(String, String)>,
    /// Events to send: `-` for stdin, or a file; one message per line.
    #[arg(long, short = 'i', default_value = "-", value_name = "-|FILE")]
    pub input: String,
    /// Lines longer than this many bytes are not sent.
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES")]
    pub max_line_bytes: usize,
}

impl ProduceArgs {
    pub fn settings(&self) -> Result<saker::source::kafka::produce::Settings, UsageError> {
        let key = match self.key.as_str() {
            "none" => None,
            name => Some(
                saker::source::kafka::produce::key_field(name)
                    .map_err(|e| UsageError(format!("--key: {e}")))?,
            ),
        };
        Ok(saker::source::kafka::produce::Settings {
            brokers: self.kafka_brokers.clone(),
            topic: self.kafka_topic.clone(),
            options: self.kafka_option.clone(),
            key,
            create_partitions: self.partitions,
            max_line_bytes: self.max_line_bytes,
        })
    }
}
