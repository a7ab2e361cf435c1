//! The HTTP client the HTTP outputs share (reqwest over hyper, TLS by
//! rustls with the `ring` provider): one pooled client per output, so
//! connections are kept alive and reused; TLS trusting a private CA
//! (`--alertmanager-ca-file`) or the bundled public roots; a bearer token;
//! a timeout per request; and the proxy conventions operators expect
//! (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY`, upper or lower
//! case, read by reqwest from the environment).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Url;

/// Idle connections kept per host.
const IDLE_PER_HOST: usize = 4;
/// How long an idle connection is kept.
const IDLE_FOR: Duration = Duration::from_secs(90);
/// At most this much of a refusal's body is kept for the log.
const MAX_ERROR_BODY: usize = 4096;

/// Why an HTTP output could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `am:9093`, `ftp://host/`: not an http or https URL with a host.
    #[error("{url}: expected http://host[:port][/path] or https://…")]
    BadUrl { url: String },
    /// A `--…-ca-file` that cannot be read.
    #[error("cannot read CA file {}: {source}", path.display())]
    CaFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A CA file whose content is not a usable certificate.
    #[error("bad CA certificate in {}: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },
    /// A bearer token that cannot be sent as a header (a control character).
    #[error("the bearer token is not a valid header value")]
    BadToken,
    #[error("TLS settings: {0}")]
    Tls(String),
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error(transparent)]
    Runtime(#[from] std::io::Error),
}

/// Settings of one HTTP output's client.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Connect timeout, and the timeout of a whole request.
    pub timeout: Duration,
    /// PEM file of the CA that signs the receiver's (or its proxy's) TLS
    /// certificate; without it, the bundled public roots are trusted.
    pub ca_file: Option<PathBuf>,
    pub bearer_token: Option<String>,
}

/// A pooled client that posts JSON bodies.
#[derive(Debug, Clone)]
pub struct Poster {
    client: reqwest::Client,
    auth: Option<HeaderValue>,
}

/// The receiver's answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Poster {
    pub fn new(settings: &ClientSettings) -> Result<Self, Error> {
        let tls = tls_config(settings.ca_file.as_deref())?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(settings.timeout)
            .timeout(settings.timeout)
            .pool_idle_timeout(IDLE_FOR)
            .pool_max_idle_per_host(IDLE_PER_HOST)
            .user_agent(concat!("saker/", env!("CARGO_PKG_VERSION")))
            // A redirect would turn the POST into a GET: it is answered as a
            // refusal instead, and logged.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let auth = match &settings.bearer_token {
            None => None,
            Some(t) => {
                let mut v =
                    HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| Error::BadToken)?;
                v.set_sensitive(true);
                Some(v)
            }
        };
        Ok(Poster { client, auth })
    }

    /// `POST url` with a JSON body: the status and (the start of) the body
    /// of the answer, or why there was none.
    pub async fn post(&self, url: &Url, body: Vec<u8>) -> Result<Answer, reqwest::Error> {
        let mut request = self
            .client
            .post(url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body);
        if let Some(auth) = &self.auth {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        // Read the body to its end so the connection goes back to the pool.
        let bytes = response.bytes().await?;
        let body = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_ERROR_BODY)]).into_owned();
        Ok(Answer { status, body })
    }
}

/// Checks an output URL: http or https, with a host.
pub fn parse_url(url: &str) -> Result<Url, Error> {
    let bad = || Error::BadUrl {
        url: url.to_string(),
    };
    let parsed = Url::parse(url).map_err(|_| bad())?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad());
    }
    Ok(parsed)
}

/// The TLS client settings: the given CA, or the bundled public roots.
fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, Error> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let bad = |reason: String| Error::BadCertificate {
                path: path.to_path_buf(),
                reason,
            };
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| match e {
                rustls::pki_types::pem::Error::Io(source) => Error::CaFile {
                    path: path.to_path_buf(),
                    source,
                },
                other => bad(other.to_string()),
            })?;
            for cert in certs {
                let cert = cert.map_err(|e| bad(e.to_string()))?;
                roots.add(cert).map_err(|e| bad(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(bad("no certificate in the file".into()));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::Tls(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_urls_are_http_or_https_with_a_host() {
        assert!(parse_url("http://127.0.0.1:2801/").is_ok());
        assert!(parse_url("https://sidekick.example.com").is_ok());
        for bad in ["am:9093", "ftp://host/", "http://", "127.0.0.1:2801"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let e = tls_config(Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(matches!(e, Error::CaFile { .. }), "{e}");
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }
}
