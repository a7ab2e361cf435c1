//! Flags of `saker decode`, and the [`DecodeSettings`] they are validated
//! into. The input flags are `run`'s (`--input -|FILE|kafka` and the Kafka
//! flags).

use saker::fields::{self, FieldDef};

use super::run::{input_settings, InputSettings, KafkaArgs};
use super::UsageError;

/// The consumer group `decode` joins unless told otherwise: never the one
/// of the `saker run` instances, whose partitions it would take over.
const DECODE_GROUP: &str = "saker-decode";

#[derive(clap::Args)]
pub struct DecodeArgs {
    /// Where to read: `-` for stdin, a file path, or `kafka` (see the Kafka
    /// flags; the group defaults to `saker-decode`, and no offset is
    /// committed).
    #[arg(long, short = 'i', default_value = "-", value_name = "-|FILE|kafka")]
    pub input: String,
    /// Print these fields of each event (comma-separated, e.g.
    /// `ka.cluster,ka.verb,ka.target.resource`), as a JSON object, instead
    /// of the event.
    #[arg(long, value_delimiter = ',', value_name = "FIELDS")]
    pub fields: Vec<String>,
    /// Lines (and Kafka messages' documents) longer than this many bytes
    /// are skipped and counted.
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES")]
    pub max_line_bytes: usize,
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

/// Everything `saker decode` does, validated.
pub struct DecodeSettings {
    pub input: InputSettings,
    /// Empty: print the events themselves.
    pub fields: Vec<&'static FieldDef>,
    pub max_line_bytes: usize,
}

impl DecodeArgs {
    pub fn settings(mut self) -> Result<DecodeSettings, UsageError> {
        if self.kafka.kafka_group == "saker" {
            self.kafka.kafka_group = DECODE_GROUP.to_string();
        }
        let input = input_settings(&self.input, false, self.max_line_bytes, &self.kafka)?;
        let fields = self
            .fields
            .iter()
            .map(|name| {
                fields::lookup(name)
                    .filter(|f| f.arg == fields::ArgSpec::None || f.arg == fields::ArgSpec::Index)
                    .ok_or_else(|| {
                        UsageError(format!(
                            "--fields: no field {name} (without an argument); see saker fields"
                        ))
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(DecodeSettings {
            input,
            fields,
            max_line_bytes: self.max_line_bytes,
        })
    }
}
