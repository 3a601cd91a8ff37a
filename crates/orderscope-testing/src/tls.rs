//! Certificates generated in the test: a CA, a server certificate for `127.0.0.1` and
//! `localhost`, and a client certificate, all signed by that CA and written as PEM files.
//!
//! Generated with `rcgen` (pure Rust, ring): no `openssl` command, no fixture that expires.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A CA with a server and a client certificate it signed, as PEM strings and as files in a
/// directory of their own (removed on drop).
///
/// # Example
///
/// ```
/// let certs = orderscope_testing::TestCertificates::generate().unwrap();
/// assert!(std::fs::read_to_string(certs.ca_path()).unwrap().contains("BEGIN CERTIFICATE"));
/// ```
#[derive(Debug)]
pub struct TestCertificates {
    dir: PathBuf,
    ca_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
}

/// Why certificates could not be generated or written.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// Generating or signing failed.
    #[error("generating a test certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// Writing the files failed.
    #[error("writing a test certificate: {0}")]
    Io(#[from] std::io::Error),
}

impl TestCertificates {
    /// Generates a fresh CA (`orderscope test CA`), a server certificate for `127.0.0.1` and
    /// `localhost`, and a client certificate (`orderscope test client`), and writes them to a new
    /// directory under the system's temporary directory.
    ///
    /// # Errors
    ///
    /// When a key cannot be generated or a file cannot be written.
    pub fn generate() -> Result<Self, CertificateError> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "orderscope test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

        let mut server_params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
        server_params
            .distinguished_name
            .push(DnType::CommonName, "orderscope test receiver");
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate()?;
        let server_cert = server_params.signed_by(&server_key, &ca)?;

        let mut client_params = CertificateParams::new(Vec::<String>::new())?;
        client_params
            .distinguished_name
            .push(DnType::CommonName, "orderscope test client");
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_key = KeyPair::generate()?;
        let client_cert = client_params.signed_by(&client_key, &ca)?;

        let certs = TestCertificates {
            dir: unique_dir(),
            ca_pem: ca.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            client_cert_pem: client_cert.pem(),
            client_key_pem: client_key.serialize_pem(),
        };
        std::fs::create_dir_all(&certs.dir)?;
        for (name, pem) in [
            ("ca.pem", &certs.ca_pem),
            ("server.pem", &certs.server_cert_pem),
            ("server.key", &certs.server_key_pem),
            ("client.pem", &certs.client_cert_pem),
            ("client.key", &certs.client_key_pem),
        ] {
            std::fs::write(certs.dir.join(name), pem)?;
        }
        Ok(certs)
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA's certificate file (`OTEL_EXPORTER_OTLP_CERTIFICATE`).
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The client certificate file (`OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`).
    pub fn client_cert_path(&self) -> PathBuf {
        self.dir.join("client.pem")
    }

    /// The client key file (`OTEL_EXPORTER_OTLP_CLIENT_KEY`).
    pub fn client_key_path(&self) -> PathBuf {
        self.dir.join("client.key")
    }

    /// The CA's certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The server certificate, PEM.
    pub fn server_cert_pem(&self) -> &str {
        &self.server_cert_pem
    }

    /// The server key, PEM.
    pub fn server_key_pem(&self) -> &str {
        &self.server_key_pem
    }
}

impl Drop for TestCertificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn unique_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::env::temp_dir().join(format!(
        "orderscope-test-certs-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Makes ring the process's default rustls crypto provider, unless one is installed already.
///
/// A workspace built with orderscope's `tls` feature compiles reqwest's rustls without a crypto
/// provider of its own, so a test that builds a reqwest client (or an OTLP HTTP exporter) without
/// going through `orderscope::init`, which installs ring itself, calls this first. Safe to call any
/// number of times, from any thread.
///
/// # Example
///
/// ```
/// orderscope_testing::install_crypto_provider();
/// assert!(rustls::crypto::CryptoProvider::get_default().is_some());
/// ```
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Another thread may have installed one in between: theirs stays, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
