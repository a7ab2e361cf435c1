//! Who may post to which path. Each path takes the credentials its sender
//! can present:
//!
//! - the audit paths (`/k8s-audit`, `/audit`): a client certificate
//!   signed by `--tls-client-ca` and a bearer token of `--http-token-file`,
//!   each when configured (both, when both are);
//! - `/firehose`: the `X-Amz-Firehose-Access-Key` header, one of the keys
//!   of `--http-access-key-file` (Firehose presents nothing else);
//! - `/pubsub`: a token of `--http-token-file`, in the push endpoint's URL
//!   (`?token=…`, as a push subscription can carry no header of its own) or
//!   as a bearer token. The OIDC token Pub/Sub can add is not verified
//!   (that needs Google's keys, fetched online), so it neither admits nor
//!   refuses a request.
//!
//! A receiver with no credential configured (allowed on loopback only)
//! admits every request. Once any is configured, a path whose own
//! credential is not configured admits nothing, so no path is ever open
//! beside authenticated ones.

use hyper::header::{HeaderName, AUTHORIZATION};
use hyper::{Request, StatusCode};

use super::ingest::Failure;
use super::secrets::SecretFile;
use super::Shared;

/// The header Firehose sends its access key in.
pub const FIREHOSE_ACCESS_KEY: HeaderName = HeaderName::from_static("x-amz-firehose-access-key");

fn missing(what: &str) -> Failure {
    Failure::new(StatusCode::UNAUTHORIZED, format!("{what} is required"))
}

fn wrong(what: &str) -> Failure {
    Failure::new(StatusCode::FORBIDDEN, format!("{what} is not accepted"))
}

/// A path whose credential is not configured, on a receiver that has
/// others.
fn closed(path: &str, flag: &str) -> Failure {
    Failure::new(
        StatusCode::FORBIDDEN,
        format!(
            "{path} takes no requests on this receiver: its credential ({flag}) is not configured"
        ),
    )
}

impl Shared {
    fn any_credential(&self) -> bool {
        self.client_certs || self.tokens.is_some() || self.access_keys.is_some()
    }
}

fn bearer<B>(req: &Request<B>) -> Option<&str> {
    req.headers()
        .get(AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// The audit paths: the client certificate and the bearer token, as
/// configured.
pub fn audit<B>(req: &Request<B>, verified: bool, s: &Shared) -> Result<(), Failure> {
    if !s.client_certs && s.tokens.is_none() && s.any_credential() {
        return Err(closed(
            req.uri().path(),
            "--tls-client-ca or --http-token-file",
        ));
    }
    if s.client_certs && !verified {
        return Err(missing("a client certificate"));
    }
    match &s.tokens {
        None => Ok(()),
        Some(tokens) => check(tokens, bearer(req), "a bearer token"),
    }
}

/// `/firehose`: the access key header.
pub fn firehose<B>(req: &Request<B>, s: &Shared) -> Result<(), Failure> {
    let Some(keys) = &s.access_keys else {
        return match s.any_credential() {
            true => Err(closed("/firehose", "--http-access-key-file")),
            false => Ok(()),
        };
    };
    let given = req
        .headers()
        .get(FIREHOSE_ACCESS_KEY)
        .and_then(|v| v.to_str().ok());
    check(keys, given, "the X-Amz-Firehose-Access-Key header")
}

/// `/pubsub`: a token in the URL's `token` parameter or as a bearer token.
pub fn pubsub<B>(req: &Request<B>, s: &Shared) -> Result<(), Failure> {
    let Some(tokens) = &s.tokens else {
        return match s.any_credential() {
            true => Err(closed("/pubsub", "--http-token-file")),
            false => Ok(()),
        };
    };
    let in_url = query_token(req.uri().query().unwrap_or(""));
    let given: Vec<&str> = in_url
        .iter()
        .map(String::as_str)
        .chain(bearer(req))
        .collect();
    if given.is_empty() {
        return Err(missing("a token (?token= in the push endpoint URL)"));
    }
    // Either may be the token: Pub/Sub's own OIDC bearer token is not one.
    let ok = given.iter().fold(false, |ok, g| tokens.accepts(g) | ok);
    match ok {
        true => Ok(()),
        false => Err(wrong("the token")),
    }
}

/// The `token` parameters of a query string, percent-decoded.
fn query_token(query: &str) -> Vec<String> {
    form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .collect()
}

fn check(secrets: &SecretFile, given: Option<&str>, what: &str) -> Result<(), Failure> {
    match given {
        None => Err(missing(what)),
        Some(g) if secrets.accepts(g) => Ok(()),
        Some(_) => Err(wrong(what)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::source::http::queue::{Budget, Queue};

    fn secrets(name: &str, text: &str) -> Arc<SecretFile> {
        let dir = std::env::temp_dir().join(format!("saker-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        Arc::new(SecretFile::open(&path).unwrap())
    }

    fn shared(client_certs: bool, tokens: bool, keys: bool) -> Shared {
        Shared {
            queue: Queue::default(),
            budget: Budget::new(1),
            tls: None,
            client_certs,
            tokens: tokens.then(|| secrets("tokens", "tok-1\ntok-2\n")),
            access_keys: keys.then(|| secrets("keys", "key-1\n")),
            max_body_bytes: 1,
            counters: Default::default(),
            stopping: Default::default(),
        }
    }

    fn req(uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::post(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    fn code(r: Result<(), Failure>) -> u16 {
        r.map_or_else(|f| f.code.as_u16(), |()| 200)
    }

    #[test]
    fn each_path_takes_its_own_credential() {
        let s = shared(true, true, true);
        let bearer = [("authorization", "Bearer tok-1")];
        assert_eq!(code(audit(&req("/audit", &bearer), true, &s)), 200);
        assert_eq!(code(audit(&req("/audit", &bearer), false, &s)), 401);
        assert_eq!(code(audit(&req("/audit", &[]), true, &s)), 401);
        let key = [("x-amz-firehose-access-key", "key-1")];
        // The access key opens /firehose only; a token does not.
        assert_eq!(code(firehose(&req("/firehose", &key), &s)), 200);
        assert_eq!(code(audit(&req("/audit", &key), true, &s)), 401);
        assert_eq!(code(firehose(&req("/firehose", &bearer), &s)), 401);
        let wrong_key = [("x-amz-firehose-access-key", "key-2")];
        assert_eq!(code(firehose(&req("/firehose", &wrong_key), &s)), 403);
        assert_eq!(code(pubsub(&req("/pubsub?token=tok-2", &[]), &s)), 200);
        assert_eq!(code(pubsub(&req("/pubsub", &bearer), &s)), 200);
        assert_eq!(code(pubsub(&req("/pubsub?token=key-1", &[]), &s)), 403);
        assert_eq!(code(pubsub(&req("/pubsub?other=tok-1", &[]), &s)), 401);
        // Pub/Sub's OIDC token beside the URL's token does not refuse it.
        let oidc = [("authorization", "Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln")];
        assert_eq!(
            code(pubsub(&req("/pubsub?a=1&token=tok-1", &oidc), &s)),
            200
        );
        assert_eq!(code(pubsub(&req("/pubsub", &oidc), &s)), 403);
    }

    #[test]
    fn a_path_without_its_credential_is_closed_once_another_is_configured() {
        let keys_only = shared(false, false, true);
        let r = audit(&req("/k8s-audit", &[]), false, &keys_only);
        assert_eq!(r.as_ref().map_err(|f| f.code.as_u16()), Err(403));
        assert!(r
            .unwrap_err()
            .reason
            .contains("--tls-client-ca or --http-token-file"));
        assert_eq!(code(pubsub(&req("/pubsub?token=x", &[]), &keys_only)), 403);
        let certs_only = shared(true, false, false);
        assert_eq!(code(firehose(&req("/firehose", &[]), &certs_only)), 403);
        assert_eq!(code(pubsub(&req("/pubsub", &[]), &certs_only)), 403);
        // No credential at all (loopback): every path is open.
        let open = shared(false, false, false);
        assert_eq!(code(audit(&req("/audit", &[]), false, &open)), 200);
        assert_eq!(code(firehose(&req("/firehose", &[]), &open)), 200);
        assert_eq!(code(pubsub(&req("/pubsub", &[]), &open)), 200);
    }

    #[test]
    fn url_tokens_are_percent_decoded() {
        assert_eq!(query_token("a=1&token=x%2By+z&token=w"), ["x+y z", "w"]);
        assert!(query_token("").is_empty());
    }
}
