//! TLS for OTLP export: the certificate files read and checked, and the client configurations
//! built from them.
//!
//! rustls with the ring provider (no OpenSSL, no system library). Without a CA set, the
//! collector's certificate is checked against the platform's roots as `rustls-native-certs`
//! loads them (on Linux the distribution's CA bundle, honouring `SSL_CERT_FILE` and
//! `SSL_CERT_DIR`; the Keychain on macOS; the system store on Windows), for gRPC and HTTP
//! alike. The platform's store, not a bundled copy of Mozilla's list (`webpki-roots`), so that a
//! company CA installed on the host is trusted and a distrusted root goes with the OS's updates.
//! With a CA set (`OTEL_EXPORTER_OTLP_CERTIFICATE`), only that CA is trusted.

use crate::config::{PemFile, TlsMode, TlsSettings};
use crate::error::InitError;

/// The PEM contents of the TLS settings, read and checked before anything is installed.
#[derive(Clone, Debug, Default)]
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
pub(crate) struct TlsFiles {
    /// The CA to trust instead of the platform's roots.
    pub(crate) ca: Option<Vec<u8>>,
    /// The client certificate chain and key, for mutual TLS.
    pub(crate) identity: Option<(Vec<u8>, Vec<u8>)>,
}

fn invalid(file: &PemFile, reason: impl Into<String>) -> InitError {
    InitError::Certificate {
        setting: file.setting,
        path: file.path.clone(),
        reason: reason.into(),
    }
}

fn read(file: &PemFile) -> Result<Vec<u8>, InitError> {
    std::fs::read(&file.path).map_err(|e| invalid(file, e.to_string()))
}

/// Reads the files of `settings` when `mode` uses TLS.
///
/// # Errors
///
/// [`InitError::Certificate`] naming the setting and the path when a file is missing,
/// unreadable or holds no certificate (or key); [`InitError::TlsUnavailable`] when the crate was
/// built without its `tls` feature.
pub(crate) fn load(
    settings: &TlsSettings,
    mode: TlsMode,
    endpoint: &str,
) -> Result<TlsFiles, InitError> {
    if mode == TlsMode::Plaintext {
        return Ok(TlsFiles::default());
    }
    if cfg!(not(feature = "tls")) {
        return Err(InitError::TlsUnavailable {
            endpoint: endpoint.to_owned(),
        });
    }
    let ca = match &settings.certificate {
        Some(file) => {
            let pem = read(file)?;
            check_certificates(file, &pem)?;
            Some(pem)
        }
        None => None,
    };
    let identity = match (&settings.client_certificate, &settings.client_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            let cert_pem = read(cert)?;
            check_certificates(cert, &cert_pem)?;
            let key_pem = read(key)?;
            check_key(key, &key_pem)?;
            Some((cert_pem, key_pem))
        }
        (Some(cert), None) => {
            return Err(invalid(
                cert,
                "a client certificate needs its key (OTEL_EXPORTER_OTLP_CLIENT_KEY or with_otlp_client_key)",
            ));
        }
        (None, Some(key)) => {
            return Err(invalid(
                key,
                "a client key needs its certificate (OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE or with_otlp_client_certificate)",
            ));
        }
    };
    Ok(TlsFiles { ca, identity })
}

#[cfg(feature = "tls")]
fn check_certificates(file: &PemFile, pem: &[u8]) -> Result<(), InitError> {
    use rustls_pki_types::pem::PemObject as _;
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(file, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(file, "no PEM certificate in the file"));
    }
    Ok(())
}

#[cfg(feature = "tls")]
fn check_key(file: &PemFile, pem: &[u8]) -> Result<(), InitError> {
    use rustls_pki_types::pem::PemObject as _;
    rustls_pki_types::PrivateKeyDer::from_pem_slice(pem)
        .map(drop)
        .map_err(|e| invalid(file, format!("no PEM private key in the file: {e}")))
}

#[cfg(not(feature = "tls"))]
fn check_certificates(_file: &PemFile, _pem: &[u8]) -> Result<(), InitError> {
    Ok(())
}

#[cfg(not(feature = "tls"))]
fn check_key(_file: &PemFile, _pem: &[u8]) -> Result<(), InitError> {
    Ok(())
}

/// The rustls configuration of the OTLP/HTTP client.
#[cfg(feature = "tls")]
pub(crate) fn rustls_config(files: &TlsFiles) -> Result<rustls::ClientConfig, InitError> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    let error = |reason: String| InitError::HttpClient(reason.into());
    let mut roots = rustls::RootCertStore::empty();
    match &files.ca {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| error(e.to_string()))?;
                roots.add(cert).map_err(|e| error(format!("the CA: {e}")))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| error(e.to_string()))?
        .with_root_certificates(roots);
    match &files.identity {
        None => Ok(builder.with_no_client_auth()),
        Some((cert_pem, key_pem)) => {
            let chain = CertificateDer::pem_slice_iter(cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| error(e.to_string()))?;
            let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| error(e.to_string()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| error(format!("the client certificate: {e}")))
        }
    }
}

/// The TLS configuration of the OTLP/gRPC channel.
#[cfg(feature = "tls")]
pub(crate) fn tonic_config(files: &TlsFiles) -> tonic::transport::ClientTlsConfig {
    let config = tonic::transport::ClientTlsConfig::new();
    let config = match &files.ca {
        Some(pem) => config.ca_certificate(tonic::transport::Certificate::from_pem(pem)),
        None => config.with_native_roots(),
    };
    match &files.identity {
        Some((cert, key)) => config.identity(tonic::transport::Identity::from_pem(cert, key)),
        None => config,
    }
}

/// Makes ring the process's default rustls crypto provider, unless the service installed one.
///
/// The `tls` feature builds reqwest with rustls but without a provider of its own (so that no
/// second crypto library is compiled in); a reqwest client that the service builds without one
/// would then fail. After `init`, such clients use ring, as orderscope's exporters do.
#[cfg(feature = "tls")]
pub(crate) fn install_default_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Another thread may have installed one in between: theirs stays, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
