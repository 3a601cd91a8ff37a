//! Prometheus recorder set-up: explicit buckets for every catalogue histogram, descriptions.

use metrics::{KeyName, Recorder, SharedString};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};

use crate::catalogue::{CATALOGUE, MetricDef, MetricKind};

/// A [`PrometheusBuilder`] with the catalogue's buckets set for every catalogue histogram, so
/// they render as `_bucket`/`_sum`/`_count` series, never as summaries.
///
/// Names are used as given (the builder's recommended naming stays off: the catalogue names
/// already carry `_total` and unit suffixes). Histograms outside the catalogue keep the
/// exporter's default rendering unless the caller adds buckets for them
/// (`set_buckets_for_metric` or `set_buckets`). No listener or push gateway is configured.
///
/// ```
/// let recorder = orderscope_metrics::prometheus_builder()
///     .add_global_label("service_name", "mes")
///     .build_recorder();
/// let handle = recorder.handle();
/// # let _ = handle;
/// ```
pub fn prometheus_builder() -> PrometheusBuilder {
    let mut builder = PrometheusBuilder::new().with_recommended_naming(false);
    for def in CATALOGUE {
        let Some(buckets) = def.buckets else { continue };
        // Buckets are checked non-empty at compile time (see `catalogue`), so this never fails.
        builder = match builder.set_buckets_for_metric(Matcher::Full(def.name.to_owned()), buckets)
        {
            Ok(b) => b,
            Err(_) => unreachable!("catalogue buckets are non-empty"),
        };
    }
    builder
}

/// `prometheus_builder().build_recorder()`: a recorder to install (globally, or locally in a
/// test) and render through its [`handle`](PrometheusRecorder::handle).
///
/// The caller schedules upkeep (`PrometheusHandle::run_upkeep`) as the exporter documents.
pub fn build_recorder() -> PrometheusRecorder {
    prometheus_builder().build_recorder()
}

/// Describes every catalogue metric (help text and unit) to the current recorder.
///
/// Call once after installing the recorder, or inside `metrics::with_local_recorder`.
pub fn describe_all() {
    metrics::with_recorder(describe_all_to);
}

/// Describes every catalogue metric to `recorder`.
pub fn describe_all_to(recorder: &dyn Recorder) {
    for def in CATALOGUE {
        describe(recorder, def);
    }
}

fn describe(recorder: &dyn Recorder, def: &'static MetricDef) {
    let key = KeyName::from_const_str(def.name);
    let unit = def.metrics_unit();
    let help = SharedString::const_str(def.help);
    match def.kind {
        MetricKind::Counter => recorder.describe_counter(key, unit, help),
        MetricKind::Gauge => recorder.describe_gauge(key, unit, help),
        MetricKind::Histogram => recorder.describe_histogram(key, unit, help),
    }
}
