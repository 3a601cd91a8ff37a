//! The OTLP exporters (spans, log records) built from the resolved settings, over HTTP/protobuf
//! (blocking reqwest client on the batch processor's thread) or gRPC (tonic, on a private
//! runtime).
//!
//! orderscope resolves the endpoint, the protocol and the certificates itself and hands the
//! exporter the result: opentelemetry-otlp reads no certificate variables, and orderscope needs
//! the endpoint and protocol for its own messages (and under
//! [`with_env`](crate::TelemetryBuilder::with_env)). The headers, the timeout and the
//! compression are the exporter's business: it is given only what was set in code, and reads
//! `OTEL_EXPORTER_OTLP_{,TRACES_,LOGS_}{HEADERS,TIMEOUT,COMPRESSION}` from the process
//! environment itself (code beats the variables for timeout and compression; the headers
//! variable is merged over the code headers, per key).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_otlp::{
    ExporterBuildError, HttpExporterBuilderSet, NoExporterBuilderSet, TonicExporterBuilderSet,
    WithExportConfig, WithHttpConfig, WithTonicConfig,
};

use crate::config::{Compression, OtlpSettings, Protocol};
use crate::delivery::Delivery;
use crate::env::Signal;
use crate::error::InitError;
use crate::guard::OtlpRuntime;
use crate::tls::{self, TlsFiles};

/// The OTLP exporter builders of the SDK (spans, log records), so one function sets up both.
pub(crate) trait OtlpExporterBuilder {
    /// What the builder builds.
    type Exporter;
    /// The builder once HTTP is chosen.
    type Http: WithExportConfig + WithHttpConfig;
    /// The builder once gRPC is chosen.
    type Grpc: WithExportConfig + WithTonicConfig;

    fn http(self) -> Self::Http;
    fn grpc(self) -> Self::Grpc;
    fn build_http(builder: Self::Http) -> Result<Self::Exporter, ExporterBuildError>;
    fn build_grpc(builder: Self::Grpc) -> Result<Self::Exporter, ExporterBuildError>;
}

/// Implements [`OtlpExporterBuilder`] for an SDK builder type; the SDK's builders share method
/// names but no trait.
macro_rules! otlp_exporter_builder {
    ($builder:ident => $exporter:ty) => {
        impl OtlpExporterBuilder for opentelemetry_otlp::$builder<NoExporterBuilderSet> {
            type Exporter = $exporter;
            type Http = opentelemetry_otlp::$builder<HttpExporterBuilderSet>;
            type Grpc = opentelemetry_otlp::$builder<TonicExporterBuilderSet>;

            fn http(self) -> Self::Http {
                self.with_http()
            }
            fn grpc(self) -> Self::Grpc {
                self.with_tonic()
            }
            fn build_http(builder: Self::Http) -> Result<Self::Exporter, ExporterBuildError> {
                builder.build()
            }
            fn build_grpc(builder: Self::Grpc) -> Result<Self::Exporter, ExporterBuildError> {
                builder.build()
            }
        }
    };
}

otlp_exporter_builder!(SpanExporterBuilder => opentelemetry_otlp::SpanExporter);
otlp_exporter_builder!(LogExporterBuilder => opentelemetry_otlp::LogExporter);

/// Builds the OTLP exporter of `signal` with the resolved endpoint, protocol and certificates,
/// and the headers, timeout and compression set in code. gRPC exporters get their connection
/// tasks on the private runtime in `runtime`, started by the first of them.
pub(crate) fn otlp_exporter<B: OtlpExporterBuilder>(
    builder: B,
    otlp: &OtlpSettings,
    signal: Signal,
    runtime: &mut Option<OtlpRuntime>,
    delivery: Option<Arc<Delivery>>,
) -> Result<B::Exporter, InitError> {
    // Certificate files are read here, before anything is installed: a missing one is an error
    // that names the setting and the path.
    let files = tls::load(&otlp.tls, otlp.tls_mode(), &otlp.endpoint)?;
    match otlp.protocol {
        Protocol::HttpProtobuf => {
            let request_timeout = exporter_timeout(otlp.timeout, signal.timeout, |name| {
                std::env::var(name).ok()
            });
            let client = ReportingHttpClient {
                inner: blocking_http_client(request_timeout, &files)?,
                delivery,
            };
            let mut builder = builder
                .http()
                .with_endpoint(otlp.endpoint.clone())
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_http_client(client)
                .with_headers(http_headers(&otlp.headers)?)
                // The deadline of its retries: the same timeout that bounds each request.
                .with_timeout(request_timeout);
            if let Some(Compression::Gzip) = otlp.compression {
                builder = builder.with_compression(opentelemetry_otlp::Compression::Gzip);
            }
            B::build_http(builder).map_err(InitError::Exporter)
        }
        Protocol::Grpc => {
            let metadata = grpc_metadata(&otlp.headers)?;
            let runtime = match runtime {
                Some(runtime) => runtime,
                None => {
                    runtime.insert(OtlpRuntime::start().map_err(|source| InitError::Thread {
                        what: "OTLP gRPC runtime",
                        source,
                    })?)
                }
            };
            // tonic's channel spawns its connection tasks on the current runtime: ours, so
            // export works inside or outside the service's runtime and keeps working while that
            // runtime is blocked or shutting down.
            let _entered = runtime.handle().enter();
            let mut builder = builder
                .grpc()
                .with_endpoint(otlp.endpoint.clone())
                .with_protocol(opentelemetry_otlp::Protocol::Grpc);
            builder = builder.with_metadata(metadata);
            if let Some(timeout) = otlp.timeout {
                builder = builder.with_timeout(timeout);
            }
            if let Some(Compression::Gzip) = otlp.compression {
                builder = builder.with_compression(opentelemetry_otlp::Compression::Gzip);
            }
            #[cfg(feature = "tls")]
            let builder = if otlp.tls_mode() == crate::config::TlsMode::Plaintext {
                builder
            } else {
                builder.with_tls_config(tls::tonic_config(&files))
            };
            #[cfg(not(feature = "tls"))]
            let _ = files;
            B::build_grpc(builder).map_err(InitError::Exporter)
        }
    }
}

/// gRPC metadata from the headers set in code.
fn grpc_metadata(headers: &[(String, String)]) -> Result<tonic::metadata::MetadataMap, InitError> {
    let mut metadata = tonic::metadata::MetadataMap::new();
    for (name, value) in headers {
        let key = tonic::metadata::MetadataKey::from_bytes(name.as_bytes())
            .map_err(|_| InitError::InvalidHeader { name: name.clone() })?;
        let value = tonic::metadata::MetadataValue::try_from(value.as_str())
            .map_err(|_| InitError::InvalidHeader { name: name.clone() })?;
        metadata.insert(key, value);
    }
    Ok(metadata)
}

/// The headers set in code, checked, as the HTTP exporter builder takes them. It percent-decodes
/// the values it is given (as it decodes `OTEL_EXPORTER_OTLP_HEADERS`), so a `%` is handed over
/// as `%25`: a value set in code is sent as it was written, as over gRPC.
fn http_headers(headers: &[(String, String)]) -> Result<HashMap<String, String>, InitError> {
    let mut map = HashMap::with_capacity(headers.len());
    for (name, value) in headers {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err()
            || http::HeaderValue::from_str(value).is_err()
        {
            return Err(InitError::InvalidHeader { name: name.clone() });
        }
        // The exporter's own map holds `User-Agent`: one key for it, or both would reach the
        // request and one of them would win at random.
        let name = if name.eq_ignore_ascii_case("user-agent") {
            "User-Agent".to_owned()
        } else {
            name.clone()
        };
        map.insert(name, value.replace('%', "%25"));
    }
    Ok(map)
}

/// The timeout opentelemetry-otlp resolves for one export (its `resolve_timeout`): the one set in
/// code, else the signal's variable, else `OTEL_EXPORTER_OTLP_TIMEOUT` (milliseconds; a value
/// that is not a whole number is passed over), else 10 s, the variables read through `var` from
/// the process environment as the exporter reads them.
///
/// The exporter bounds each gRPC request by it itself (the channel's timeout), but over HTTP it
/// uses it only as the deadline of its retries and for the HTTP client it builds when it is given
/// none; a client given to it bounds each request by its own timeout. orderscope gives it one
/// (for the certificates, and to say why a request failed), which must bound each request by
/// this same timeout, not by another.
fn exporter_timeout(
    code: Option<Duration>,
    signal_var: &str,
    var: impl Fn(&str) -> Option<String>,
) -> Duration {
    code.or_else(|| {
        [signal_var, opentelemetry_otlp::OTEL_EXPORTER_OTLP_TIMEOUT]
            .into_iter()
            .find_map(|name| var(name)?.parse().ok().map(Duration::from_millis))
    })
    .unwrap_or(opentelemetry_otlp::OTEL_EXPORTER_OTLP_TIMEOUT_DEFAULT)
}

/// The blocking reqwest client the OTLP exporter uses by default, built the same way: on a
/// thread of its own, because reqwest's blocking client cannot be built inside a tokio runtime,
/// and each request bounded by `timeout` (from [`exporter_timeout`]; reqwest's own default would
/// be 30 s).
fn blocking_http_client(
    timeout: Duration,
    files: &TlsFiles,
) -> Result<reqwest::blocking::Client, InitError> {
    #[cfg(feature = "tls")]
    let tls = tls::rustls_config(files)?;
    #[cfg(not(feature = "tls"))]
    let _ = files;
    std::thread::Builder::new()
        .name("orderscope-otlp-http-init".to_owned())
        .spawn(move || {
            let builder = reqwest::blocking::Client::builder().timeout(timeout);
            #[cfg(feature = "tls")]
            let builder = builder.tls_backend_preconfigured(tls);
            builder.build()
        })
        .map_err(|source| InitError::Thread {
            what: "OTLP HTTP client",
            source,
        })?
        .join()
        .map_err(|_| InitError::HttpClient("building the client panicked".into()))?
        .map_err(|e| InitError::HttpClient(Box::new(e)))
}

/// The HTTP client of the OTLP exporter: orderscope's blocking reqwest client (certificates,
/// timeout), and the transport's own account of a failed request handed to `delivery`, because
/// the exporter's error says only "network error".
#[derive(Debug)]
struct ReportingHttpClient {
    inner: reqwest::blocking::Client,
    /// Told why a request failed.
    delivery: Option<Arc<Delivery>>,
}

impl opentelemetry_http::HttpClient for ReportingHttpClient {
    fn send_bytes<'s, 'f>(
        &'s self,
        request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> std::pin::Pin<
        Box<
            dyn Future<
                    Output = Result<
                        opentelemetry_http::Response<opentelemetry_http::Bytes>,
                        opentelemetry_http::HttpError,
                    >,
                > + Send
                + 'f,
        >,
    >
    where
        's: 'f,
        Self: 'f,
    {
        let sent = self.inner.send_bytes(request);
        let delivery = self.delivery.clone();
        Box::pin(async move {
            let result = sent.await;
            if let (Err(error), Some(delivery)) = (&result, &delivery) {
                delivery.note_cause(error_chain(error.as_ref()));
            }
            result
        })
    }
}

/// An error and its sources, `: `-separated, each said once ("error sending request: client
/// error (Connect): invalid peer certificate: UnknownIssuer").
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !chain.contains(&text) {
            chain.push_str(": ");
            chain.push_str(&text);
        }
        source = cause.source();
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn the_http_client_times_out_as_the_exporter_resolves() {
        let traces = opentelemetry_otlp::OTEL_EXPORTER_OTLP_TRACES_TIMEOUT;
        let generic = opentelemetry_otlp::OTEL_EXPORTER_OTLP_TIMEOUT;
        assert_eq!(
            exporter_timeout(None, traces, vars(&[])),
            Duration::from_secs(10)
        );
        assert_eq!(
            exporter_timeout(None, traces, vars(&[(generic, "3000")])),
            Duration::from_secs(3)
        );
        assert_eq!(
            exporter_timeout(None, traces, vars(&[(generic, "3000"), (traces, "1500")])),
            Duration::from_millis(1500)
        );
        // A signal value that is not a number is passed over, as the exporter does.
        assert_eq!(
            exporter_timeout(None, traces, vars(&[(generic, "3000"), (traces, "soon")])),
            Duration::from_secs(3)
        );
        // Code beats both.
        assert_eq!(
            exporter_timeout(
                Some(Duration::from_millis(250)),
                traces,
                vars(&[(generic, "3000"), (traces, "1500")])
            ),
            Duration::from_millis(250)
        );
    }

    #[test]
    fn a_user_agent_set_in_code_takes_the_exporters_own_key() {
        let headers = http_headers(&[
            ("user-agent".into(), "mes/1.0".into()),
            ("x-tenant".into(), "50%".into()),
        ])
        .unwrap();
        assert_eq!(
            headers.get("User-Agent").map(String::as_str),
            Some("mes/1.0")
        );
        assert!(!headers.contains_key("user-agent"));
        assert_eq!(headers.get("x-tenant").map(String::as_str), Some("50%25"));
    }

    #[test]
    fn an_invalid_code_header_is_an_error_naming_it() {
        let invalid = http_headers(&[("bad header".into(), "x".into())]);
        assert!(
            matches!(invalid, Err(InitError::InvalidHeader { ref name }) if name == "bad header"),
            "{invalid:?}"
        );
        let invalid = grpc_metadata(&[("x-tenant".into(), "line\nbreak".into())]);
        assert!(
            matches!(invalid, Err(InitError::InvalidHeader { ref name }) if name == "x-tenant"),
            "{invalid:?}"
        );
    }
}
