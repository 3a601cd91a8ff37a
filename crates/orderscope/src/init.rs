//! [`init`], the one-call path, and [`builder`], where every setting starts.

use std::sync::atomic::AtomicBool;

use crate::builder::TelemetryBuilder;
use crate::env::CodeSettings;
use crate::error::InitError;
use crate::guard::Telemetry;

/// Set by the first `init` (or `build`) that installs the pipeline.
pub(crate) static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// Installs the whole telemetry pipeline for `service_name`, configured from the environment.
///
/// The same as `builder(service_name).build()`; see [`TelemetryBuilder`] for what is installed
/// and which variables are read.
///
/// # Errors
///
/// See [`InitError`]: a second call returns [`InitError::AlreadyInitialized`].
///
/// # Example
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let telemetry = orderscope::init("mes")?;
/// tracing::info!("ready");
/// telemetry.shutdown()?;
/// # Ok(()) }
/// ```
pub fn init(service_name: &str) -> Result<Telemetry, InitError> {
    builder(service_name).build()
}

/// A builder for the telemetry pipeline of `service_name`. Settings made here beat the
/// corresponding environment variables, which beat the defaults.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let telemetry = orderscope::builder("mes")
///     .with_resource_attribute("deployment.environment.name", "staging")
///     .with_shutdown_timeout(Duration::from_secs(2))
///     .build()?;
/// # drop(telemetry); Ok(()) }
/// ```
pub fn builder(service_name: &str) -> TelemetryBuilder {
    TelemetryBuilder {
        code: CodeSettings {
            service_name: service_name.to_owned(),
            ..CodeSettings::default()
        },
        env: None,
        log_writer: None,
        exporter: None,
        panic_hook: true,
        propagator: None,
        prometheus: true,
        use_signals: Default::default(),
    }
}
