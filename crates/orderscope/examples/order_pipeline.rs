//! The order pipeline: a web shop, a B2B API, a CRM and an MES, linked by HTTP and RabbitMQ, every
//! order traceable end to end.
//!
//! ```text
//! cargo run --example order_pipeline                         # scripted orders, summary, exit
//! cargo run --example order_pipeline -- serve                # stay up on ports 8080–8083 until Ctrl-C
//! cargo run --example order_pipeline -- serve --port-base 9080  # … on ports 9080–9083
//! cargo run --example order_pipeline -- --log-dir logs       # JSON logs to logs/<service>.jsonl
//! ```
//!
//! Needs a RabbitMQ broker (`AMQP_ADDR`, default `amqp://guest:guest@127.0.0.1:5672/%2f`) and
//! PostgreSQL (`DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/test`, where MES
//! recreates its schema `mes_demo` and loads 200,000 past orders); `scripts/demo` starts both. Traces go to an OTLP receiver the demo runs itself, or to the
//! collector in `OTEL_EXPORTER_OTLP_ENDPOINT` when that is set.
//!
//! The binary re-executes itself once per service (with `ORDERSCOPE_PIPELINE_ROLE` set), so each
//! service is its own process with its own `service.name` and its own `orderscope::init`.
//!
//! | service | port (serve; `--port-base N` moves them to N…N+3) | endpoints |
//! | --- | --- | --- |
//! | shop | 8080 | `POST /orders` (public) |
//! | api | 8081 | `POST /api/v1/orders` (public) |
//! | crm | 8082 | `POST /orders` (from shop and api), `GET /orders`, `GET /orders/{id}` |
//! | mes | 8083 | `GET /dashboard/orders?status=&channel=&overdue=&q=&page=&per_page=`, `GET /dashboard/orders/{id}` |
//!
//! All four serve `GET /metrics`. Message contract: exchange `orders` (topic); the CRM publishes
//! `order.created` (queue `mes.orders`), MES publishes `order.status` (queue `crm.order-status`);
//! JSON bodies `{"order_id", "channel", "items": [{"sku", "qty"}], "deadline"}` and
//! `{"order_id", "status"}`; a W3C `traceparent` header continues the publisher's trace.

#[path = "order_pipeline/amqp.rs"]
mod amqp;
#[path = "order_pipeline/crm.rs"]
mod crm;
#[path = "order_pipeline/front.rs"]
mod front;
#[path = "order_pipeline/mes.rs"]
mod mes;
#[path = "order_pipeline/mes_db.rs"]
mod mes_db;
#[path = "order_pipeline/model.rs"]
mod model;
#[path = "order_pipeline/orchestrator.rs"]
mod orchestrator;
#[path = "order_pipeline/service.rs"]
mod service;
#[path = "order_pipeline/summary.rs"]
mod summary;

use std::path::PathBuf;
use std::process::ExitCode;

use crate::model::{ENV_ROLE, Role};
use crate::orchestrator::{Options, PipelineError};

const USAGE: &str = "usage: order_pipeline [serve] [--port-base N] [--log-dir DIR]

  (no arguments)  run the scripted orders through the four services, print a summary, exit
  serve           keep the services up on ports 8080-8083 until Ctrl-C
  --port-base N   in serve mode, put the shop on port N and the api, crm and mes on N+1..N+3
                  (default 8080)
  --log-dir DIR   write each service's JSON log lines to DIR/<service>.jsonl

Environment: AMQP_ADDR (default amqp://guest:guest@127.0.0.1:5672/%2f),
DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test),
OTEL_EXPORTER_OTLP_ENDPOINT (default: an OTLP receiver the demo runs itself).";

fn main() -> ExitCode {
    // A service process: the orchestrator started us with a role.
    if let Ok(name) = std::env::var(ENV_ROLE) {
        let Some(role) = Role::parse(&name) else {
            eprintln!("unknown role {name:?} in {ENV_ROLE}");
            return ExitCode::from(2);
        };
        return ExitCode::from(service::child_main(role).clamp(0, 255) as u8);
    }

    let mut options = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "serve" | "--serve" => options.serve = true,
            "--port-base" => match args.next().and_then(|n| n.parse::<u16>().ok()) {
                Some(base) if (1..=u16::MAX - 3).contains(&base) => options.port_base = Some(base),
                _ => {
                    eprintln!("--port-base needs a port number from 1 to 65532\n\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "--log-dir" => match args.next() {
                Some(dir) => options.log_dir = Some(PathBuf::from(dir)),
                None => {
                    eprintln!("--log-dir needs a directory\n\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument {other:?}\n\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("cannot find this program's path to start the services: {e}");
            return ExitCode::FAILURE;
        }
    };
    let launch = move |_role: Role| std::process::Command::new(&exe);
    match runtime.block_on(orchestrator::run(&launch, &options)) {
        Ok(outcome) => {
            print!("{}", summary::render(&outcome));
            if let Some(dir) = &options.log_dir {
                println!("\nJSON logs: {}/<service>.jsonl", dir.display());
            }
            if outcome.settled && outcome.clean_exit {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(PipelineError::NoBroker { addr, error }) => {
            eprintln!(
                "error: RabbitMQ is not reachable at {addr} ({error}). Start one with `scripts/demo` (it starts a local broker), `docker run -d -p 5672:5672 rabbitmq:4`, or `sudo rabbitmq-server -detached`, or point AMQP_ADDR at yours."
            );
            ExitCode::from(3)
        }
        Err(PipelineError::NoDatabase { url, error }) => {
            eprintln!(
                "error: PostgreSQL is not reachable at {url} ({error}). Start one with `scripts/demo` (it starts a local server), `docker run -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:17`, or point DATABASE_URL at yours."
            );
            ExitCode::from(4)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
