//! `--http-output URL`: every alert `POST`ed as one Falco JSON body (the
//! line stdout prints, `Content-Type: application/json`), as Falco's
//! `http_output` does, so falcosidekick (`http://HOST:2801/`) and every
//! output it has take Saker's alerts. Each URL gets every alert; queues,
//! retries and drops are `delivery.rs`'s, one alert per request.

use std::io;
use std::time::Instant;

use super::delivery::{self, Delivery, Item, Shape};
use super::http::{self, ClientSettings, Poster};
use super::metrics::MetricSource;
use super::stdout::{falco_json, hostname};
use super::{Alert, AlertSink};

/// Settings of the HTTP output.
#[derive(Debug, Clone)]
pub struct Settings {
    pub urls: Vec<String>,
    pub queue_cap: usize,
    pub client: ClientSettings,
}

/// The HTTP output. Clones share the same queues and senders.
#[derive(Debug, Clone)]
pub struct HttpOutputSink {
    delivery: Delivery,
    hostname: String,
}

impl HttpOutputSink {
    /// Checks the URLs and starts one sender per URL.
    pub fn start(settings: Settings) -> Result<Self, http::Error> {
        let urls = settings
            .urls
            .iter()
            .map(|u| http::parse_url(u))
            .collect::<Result<Vec<_>, _>>()?;
        let delivery = Delivery::start(delivery::Options {
            name: "HTTP output",
            urls,
            queue_cap: settings.queue_cap,
            shape: Shape::One,
            poster: Poster::new(&settings.client)?,
            on_settled: None,
        })?;
        Ok(HttpOutputSink {
            delivery,
            hostname: hostname(),
        })
    }

    pub fn stats(&self) -> delivery::Stats {
        self.delivery.stats()
    }

    /// Waits until every queued alert is delivered (or refused), or until
    /// `deadline`.
    pub fn drain_until(&self, deadline: Instant) -> bool {
        self.delivery.drain_until(deadline)
    }
}

impl AlertSink for HttpOutputSink {
    fn emit(&mut self, alert: &Alert) -> io::Result<()> {
        self.delivery.push_all(&Item {
            body: falco_json(alert, &self.hostname),
            windowed: alert.aggregate.is_some(),
            tag: None,
        });
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl MetricSource for HttpOutputSink {
    fn render(&self, out: &mut String) {
        self.delivery.render(out, "saker_http_output", true);
    }
}
