//! The order page over real HTTP and in a real headless Chromium, fed by the in-flight tracker
//! that `with_order_tracker` installs; and the USE signals the same builder turns on, on
//! `/metrics`.
//!
//! Chromium (Debian's `chromium`, which `scripts/test` installs) must be on `PATH`: without it
//! the test fails and says so.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use orderscope::logs::{Tracker, register_terminal_stages};
use orderscope::{Channel, OrderContext, OrderPage, Priority, register_stages, stage};

const STUCK: &str = "ORD-2026-STUCK-1";
/// Were it markup, it would write `PWNED` into the page and make a bold element.
const HOSTILE: &str = "<script>document.write('PWN'+'ED')</script><b>x</b>";
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// Serves `app` on 127.0.0.1, on a free port.
async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn get(url: String) -> String {
    tokio::task::spawn_blocking(move || {
        let response = reqwest::blocking::get(&url).unwrap();
        assert!(
            response.status().is_success(),
            "{url}: {}",
            response.status()
        );
        response.text().unwrap()
    })
    .await
    .unwrap()
}

/// A fresh temporary directory.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "orderscope-{name}-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs headless Chromium on `url` with `args` (`--dump-dom`, `--screenshot=…`); its stdout.
async fn chromium(url: &str, args: &[&str]) -> String {
    let profile = temp_dir("chromium-profile");
    let mut command = Command::new("chromium");
    command.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
    ]);
    command.arg(format!("--user-data-dir={}", profile.display()));
    command.args(args).arg(url);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| {
            panic!("chromium could not be run ({e}): install it (Debian package `chromium`; scripts/test does)")
        });
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The order ids of the `<tr class="order…">` rows of a page, in order, as the DOM holds them
/// (text, re-escaped by the serialiser).
fn row_ids(dom: &str) -> Vec<String> {
    dom.split("<tr class=\"order")
        .skip(1)
        .filter_map(|row| {
            let start = row.find("<td class=\"id\">")? + "<td class=\"id\">".len();
            let end = row[start..].find("</td>")?;
            Some(row[start..start + end].to_owned())
        })
        .collect()
}

/// Runs `f` inside a span of trace [`TRACE`], as the orderscope layers attach one.
fn in_trace<R>(f: impl FnOnce() -> R) -> R {
    let sc = SpanContext::new(
        TraceId::from_hex(TRACE).unwrap(),
        SpanId::from_bytes([3; 8]),
        TraceFlags::SAMPLED,
        false,
        TraceState::NONE,
    );
    let _guard = opentelemetry::Context::current()
        .with_remote_span_context(sc)
        .attach();
    f()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_page_lists_the_stuck_order_first_finds_orders_and_escapes_ids() {
    let logs = common::Capture::default();
    let telemetry = orderscope::builder("crm")
        .with_env(Vec::<(String, String)>::new())
        .with_log_writer(logs.clone())
        .with_order_tracker(Tracker::builder().capacity(1000))
        .with_process_metrics()
        .with_runtime_metrics()
        .with_sample_interval(Duration::from_millis(50))
        .build()
        .expect("init");
    register_stages(&["crm.accepted", "crm.forwarded"]);
    register_terminal_stages(&["crm.done"]);

    let now = SystemTime::now();
    for i in 0..5 {
        let order = OrderContext::builder(format!("ORD-2026-OK-{i}"))
            .channel(Channel::Web)
            .deadline(now + Duration::from_secs(3600))
            .build()
            .unwrap();
        order.in_scope(|| stage!("crm.forwarded"));
    }
    let stuck = OrderContext::builder(STUCK)
        .channel(Channel::Api)
        .priority(Priority::High)
        .deadline(now - Duration::from_secs(120))
        .build()
        .unwrap();
    in_trace(|| stuck.in_scope(|| stage!("crm.accepted")));
    let hostile = OrderContext::builder(HOSTILE)
        .channel(Channel::Web)
        .build()
        .unwrap();
    hostile.in_scope(|| stage!("crm.forwarded"));
    let done = OrderContext::new("ORD-2026-DONE").unwrap();
    done.in_scope(|| {
        stage!("crm.accepted");
        stage!("crm.done");
    });

    let page = OrderPage::new().with_trace_url("http://jaeger.test/trace/{trace_id}");
    let app: axum::Router = page.router().merge(telemetry.metrics_router());
    let addr = serve(app).await;
    let base = format!("http://{addr}");

    // The tick samples the tracker, the process and the runtime: wait for their series.
    let deadline = Instant::now() + Duration::from_secs(20);
    let metrics = loop {
        let text = get(format!("{base}/metrics")).await;
        if text.contains("order_stalled_total{stage=\"crm.accepted\"} 1")
            && text.contains("tokio_busy_ratio")
        {
            break text;
        }
        assert!(Instant::now() < deadline, "no samples after 20 s:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let samples = orderscope_testing::parse_prometheus(&metrics).unwrap();
    let value = |name: &str, stage: Option<&str>| {
        samples
            .iter()
            .find(|s| {
                s.name == name
                    && stage.is_none_or(|st| s.labels.get("stage").map(String::as_str) == Some(st))
            })
            .unwrap_or_else(|| panic!("{name} {stage:?} missing"))
            .value
    };
    assert_eq!(value("order_in_flight", Some("crm.accepted")), 1.0);
    assert_eq!(value("order_in_flight", Some("crm.forwarded")), 6.0);
    assert_eq!(value("order_overdue_in_flight", Some("crm.accepted")), 1.0);
    assert_eq!(value("order_overdue_in_flight", Some("crm.forwarded")), 0.0);
    assert_eq!(value("tokio_workers", None), 2.0);
    assert!(value("process_resident_memory_bytes", None) > 1e6);
    assert!(value("process_threads", None) >= 3.0);
    // CPU time: a counter of fractional seconds, appended to what the recorder renders.
    assert!(metrics.contains("# TYPE process_cpu_seconds_total counter"));
    // (Present; it counts in 10 ms ticks, so a young process may still read 0.)
    assert!(value("process_cpu_seconds_total", None) >= 0.0);
    // The stall was logged once, with the trace id of the span that entered the stage.
    let stall_lines: Vec<serde_json::Value> = logs
        .json()
        .into_iter()
        .filter(|l| l["message"] == "order stalled")
        .collect();
    assert_eq!(stall_lines.len(), 1, "{stall_lines:?}");
    assert_eq!(stall_lines[0]["order.id"], STUCK);
    assert_eq!(stall_lines[0]["trace_id"], TRACE);
    assert_eq!(stall_lines[0]["level"], "WARN");

    // JSON: the stuck order first, the finished one gone.
    let json: serde_json::Value =
        serde_json::from_str(&get(format!("{base}/debug/orders.json")).await).unwrap();
    assert_eq!(json["tracked"], 7);
    let orders = json["orders"].as_array().unwrap();
    assert_eq!(orders[0]["id"], STUCK);
    assert_eq!(orders[0]["stage"], "crm.accepted");
    assert_eq!(orders[0]["overdue"], true);
    assert_eq!(orders[0]["trace_id"], TRACE);
    assert_eq!(
        orders[0]["trace_url"],
        format!("http://jaeger.test/trace/{TRACE}")
    );
    assert!(orders.iter().all(|o| o["id"] != "ORD-2026-DONE"));

    // In a real browser: the stuck order is the first row, linked to its trace.
    let dom = chromium(&format!("{base}/debug/orders"), &["--dump-dom"]).await;
    let ids = row_ids(&dom);
    assert_eq!(ids.len(), 7, "{dom}");
    assert_eq!(ids[0], STUCK);
    assert!(dom.contains(&format!("href=\"http://jaeger.test/trace/{TRACE}\"")));
    // The hostile id is text: escaped in the DOM, no script ran, no element was made of it.
    assert!(
        ids.contains(
            &"&lt;script&gt;document.write('PWN'+'ED')&lt;/script&gt;&lt;b&gt;x&lt;/b&gt;"
                .to_owned()
        ),
        "{ids:?}"
    );
    assert!(dom.contains("<title>Orders in flight</title>"));
    assert!(!dom.contains("<script>") && !dom.contains("<b>x</b>") && !dom.contains("PWNED"));

    // The search form is a GET with `q`: the page it leads to lists that order alone.
    let dom = chromium(&format!("{base}/debug/orders?q=OK-3"), &["--dump-dom"]).await;
    assert_eq!(row_ids(&dom), ["ORD-2026-OK-3"]);
    assert!(dom.contains("value=\"OK-3\""));
    let dom = chromium(&format!("{base}/debug/orders?q=%3Cscript"), &["--dump-dom"]).await;
    assert_eq!(row_ids(&dom).len(), 1);

    // A screenshot for people to look at (kept in the temp dir).
    let shot = temp_dir("order-page").join("orders.png");
    chromium(
        &format!("{base}/debug/orders"),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1200,700",
        ],
    )
    .await;
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 5_000);
    println!("screenshot: {}", shot.display());

    telemetry.shutdown().unwrap();
}
