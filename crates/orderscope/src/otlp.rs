//! The OTLP exporters (spans, log records) built from the resolved settings: endpoint,
//! protocol, headers, timeout, compression and TLS, over HTTP/protobuf (blocking reqwest client
//! on the batch processor's thread) or gRPC (tonic, on a private runtime).

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

/// Builds the OTLP exporter of `signal` with the resolved endpoint, protocol, headers and
/// timeout. gRPC exporters get their connection tasks on the private runtime in `runtime`,
/// started by the first of them.
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
            let client = HttpHeaderOverride {
                headers: http_headers(&otlp.headers)?,
                env_headers: signal.headers,
                inner: blocking_http_client(otlp.timeout, &files)?,
                delivery,
            };
            let builder = builder
                .http()
                .with_endpoint(otlp.endpoint.clone())
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_timeout(otlp.timeout)
                .with_http_client(client);
            let builder = match otlp.compression {
                Some(Compression::Gzip) => {
                    builder.with_compression(opentelemetry_otlp::Compression::Gzip)
                }
                None => builder,
            };
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
            let builder = builder
                .grpc()
                .with_endpoint(otlp.endpoint.clone())
                .with_protocol(opentelemetry_otlp::Protocol::Grpc)
                .with_timeout(otlp.timeout)
                .with_interceptor(HeaderOverride {
                    metadata: Arc::new(metadata),
                    env_headers: signal.headers,
                });
            let builder = match otlp.compression {
                Some(Compression::Gzip) => {
                    builder.with_compression(opentelemetry_otlp::Compression::Gzip)
                }
                None => builder,
            };
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

/// gRPC metadata from the resolved headers.
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

/// Sets the resolved headers on every gRPC export, replacing what the exporter read from the
/// process environment behind our back, so code settings keep beating the environment.
#[derive(Clone)]
struct HeaderOverride {
    metadata: Arc<tonic::metadata::MetadataMap>,
    /// The signal's headers variable, which the exporter reads (before the generic one).
    env_headers: &'static str,
}

impl tonic::service::Interceptor for HeaderOverride {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let metadata = request.metadata_mut();
        for name in env_header_names(self.env_headers) {
            metadata.remove(name.as_str());
        }
        for entry in self.metadata.iter() {
            if let tonic::metadata::KeyAndValueRef::Ascii(key, value) = entry {
                metadata.insert(key.clone(), value.clone());
            }
        }
        Ok(request)
    }
}

/// HTTP headers from the resolved headers.
fn http_headers(headers: &[(String, String)]) -> Result<http::HeaderMap, InitError> {
    let mut map = http::HeaderMap::new();
    for (name, value) in headers {
        let invalid = || InitError::InvalidHeader { name: name.clone() };
        let key = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
        let value = http::HeaderValue::from_str(value).map_err(|_| invalid())?;
        map.insert(key, value);
    }
    Ok(map)
}

/// The blocking reqwest client the OTLP exporter uses by default, built the same way: on a
/// thread of its own, because reqwest's blocking client cannot be built inside a tokio runtime.
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

/// Sends OTLP/HTTP requests with exactly the resolved headers: the exporter also adds the
/// headers of the process environment on its own, which would let the environment beat code.
#[derive(Debug)]
struct HttpHeaderOverride {
    inner: reqwest::blocking::Client,
    headers: http::HeaderMap,
    /// The signal's headers variable, which the exporter reads (before the generic one).
    env_headers: &'static str,
    /// Told why a request failed: the exporter's own error says only "network error".
    delivery: Option<Arc<Delivery>>,
}

impl opentelemetry_http::HttpClient for HttpHeaderOverride {
    fn send_bytes<'s, 'f>(
        &'s self,
        mut request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
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
        let headers = request.headers_mut();
        for name in env_header_names(self.env_headers) {
            headers.remove(name.as_str());
        }
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
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

/// The header names the OTLP exporter reads from the process environment on its own: from the
/// signal's variable `signal_var`, else from the generic one.
fn env_header_names(signal_var: &str) -> Vec<String> {
    let raw = std::env::var(signal_var)
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_HEADERS"))
        .unwrap_or_default();
    raw.split(',')
        .filter_map(|entry| entry.split_once('='))
        .map(|(key, _)| key.trim().to_ascii_lowercase())
        .filter(|key| !key.is_empty())
        .collect()
}
