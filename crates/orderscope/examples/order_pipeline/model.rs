//! The demo's vocabulary: roles, the message contract, the scripted orders.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

// ---- environment shared by the orchestrator and the services ------------------------------------

/// The role of a service process (`shop`, `api`, `crm`, `mes`).
pub(crate) const ENV_ROLE: &str = "ORDERSCOPE_PIPELINE_ROLE";
/// The port a service binds (0: any free port).
pub(crate) const ENV_PORT: &str = "ORDERSCOPE_PIPELINE_PORT";
/// Where the shop and the API find the CRM (`http://127.0.0.1:PORT`).
pub(crate) const ENV_CRM_URL: &str = "ORDERSCOPE_PIPELINE_CRM_URL";
/// A prefix for the exchange and queue names (tests use one to stay out of the demo's way).
pub(crate) const ENV_AMQP_PREFIX: &str = "ORDERSCOPE_PIPELINE_AMQP_PREFIX";
/// The broker, as for the other orderscope tools.
pub(crate) const ENV_AMQP_ADDR: &str = "AMQP_ADDR";
/// The broker when `AMQP_ADDR` is not set.
pub(crate) const DEFAULT_AMQP_ADDR: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// The line a service prints on stdout once it listens: `ORDERSCOPE-READY <role> <port>`.
pub(crate) const READY_PREFIX: &str = "ORDERSCOPE-READY";

/// The broker address: `AMQP_ADDR` or the local default.
pub(crate) fn amqp_addr() -> String {
    std::env::var(ENV_AMQP_ADDR)
        .ok()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| DEFAULT_AMQP_ADDR.to_owned())
}

// ---- roles --------------------------------------------------------------------------------------

/// The four services.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Role {
    /// The web shop: `POST /orders`, a public endpoint.
    Shop,
    /// The B2B API: `POST /api/v1/orders`, a public endpoint.
    Api,
    /// The CRM: takes orders over HTTP, publishes them to MES, records their status.
    Crm,
    /// The MES: schedules orders from its queue, serves the operators' dashboard.
    Mes,
}

impl Role {
    /// Every role, in start-up order (CRM and MES first: shop and API call the CRM).
    pub(crate) const ALL: [Role; 4] = [Role::Crm, Role::Mes, Role::Shop, Role::Api];

    /// The service name (`service.name` and the Prometheus `job`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::Shop => "shop",
            Role::Api => "api",
            Role::Crm => "crm",
            Role::Mes => "mes",
        }
    }

    /// Parses a role name.
    pub(crate) fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }

    /// The port in `serve` mode.
    pub(crate) fn fixed_port(self) -> u16 {
        match self {
            Role::Shop => 8080,
            Role::Api => 8081,
            Role::Crm => 8082,
            Role::Mes => 8083,
        }
    }

    /// The order stages this service records (registered at start-up: a bounded label).
    pub(crate) fn stages(self) -> &'static [&'static str] {
        match self {
            Role::Shop => &[stage::SHOP_RECEIVED],
            Role::Api => &[stage::API_RECEIVED],
            Role::Crm => &[stage::CRM_ACCEPTED, stage::CRM_CONFIRMED],
            Role::Mes => &[
                stage::MES_RECEIVED,
                stage::MES_SCHEDULED,
                stage::MES_REJECTED,
                stage::MES_DEAD_LETTERED,
            ],
        }
    }
}

impl Role {
    /// The stages where an order's part in this service ends: it leaves the service's
    /// in-flight tracker there. The shop's and the API's part ends once the CRM took the order.
    pub(crate) fn terminal_stages(self) -> &'static [&'static str] {
        match self {
            Role::Shop => &[stage::SHOP_RECEIVED],
            Role::Api => &[stage::API_RECEIVED],
            Role::Crm => &[stage::CRM_CONFIRMED],
            Role::Mes => &[
                stage::MES_SCHEDULED,
                stage::MES_REJECTED,
                stage::MES_DEAD_LETTERED,
            ],
        }
    }
}

/// The in-flight tracker of `role`: an order waiting in `crm.accepted` for its status longer than
/// [`CRM_STATUS_LIMIT`] is stalled, whatever its deadline.
pub(crate) fn tracker(role: Role) -> orderscope::logs::TrackerBuilder {
    let tracker = orderscope::logs::Tracker::builder().capacity(10_000);
    match role {
        Role::Crm => tracker.stage_limit(stage::CRM_ACCEPTED, CRM_STATUS_LIMIT),
        _ => tracker,
    }
}

/// How long the CRM expects to wait for the MES's status of an order.
pub(crate) const CRM_STATUS_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Stage names, `<service>.<what happened>`.
pub(crate) mod stage {
    /// The shop took the order.
    pub(crate) const SHOP_RECEIVED: &str = "shop.received";
    /// The B2B API took the order.
    pub(crate) const API_RECEIVED: &str = "api.received";
    /// The CRM accepted the order and handed it to MES.
    pub(crate) const CRM_ACCEPTED: &str = "crm.accepted";
    /// The CRM heard back from MES (scheduled or rejected).
    pub(crate) const CRM_CONFIRMED: &str = "crm.confirmed";
    /// MES took the order from its queue.
    pub(crate) const MES_RECEIVED: &str = "mes.received";
    /// MES scheduled the order.
    pub(crate) const MES_SCHEDULED: &str = "mes.scheduled";
    /// MES rejected the order (unknown item, over capacity).
    pub(crate) const MES_REJECTED: &str = "mes.rejected";
    /// The order's message ended in MES's dead-letter queue.
    pub(crate) const MES_DEAD_LETTERED: &str = "mes.dead_lettered";
}

// ---- AMQP topology ------------------------------------------------------------------------------

/// Exchange and queue names: the message contract's, optionally prefixed.
#[derive(Clone, Debug)]
pub(crate) struct Topology {
    prefix: String,
}

impl Topology {
    /// The names of the message contract, prefixed by `ORDERSCOPE_PIPELINE_AMQP_PREFIX` if set.
    pub(crate) fn from_env() -> Self {
        Topology::with_prefix(std::env::var(ENV_AMQP_PREFIX).unwrap_or_default())
    }

    /// Names with `prefix` in front.
    pub(crate) fn with_prefix(prefix: impl Into<String>) -> Self {
        Topology {
            prefix: prefix.into(),
        }
    }

    /// The prefix of every name (empty outside tests).
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    fn name(&self, base: &str) -> String {
        format!("{}{base}", self.prefix)
    }

    /// The topic exchange `orders`.
    pub(crate) fn exchange(&self) -> String {
        self.name("orders")
    }
    /// MES's queue `mes.orders`, bound with `order.created`.
    pub(crate) fn mes_queue(&self) -> String {
        self.name("mes.orders")
    }
    /// CRM's queue `crm.order-status`, bound with `order.status`.
    pub(crate) fn crm_queue(&self) -> String {
        self.name("crm.order-status")
    }
    /// The dead-letter exchange of `mes.orders`.
    pub(crate) fn dead_letter_exchange(&self) -> String {
        self.name("orders.dead-letter")
    }
    /// The queue that keeps MES's dead letters.
    pub(crate) fn mes_dead_letter_queue(&self) -> String {
        self.name("mes.orders.dead-letter")
    }
    /// Every exchange, for clean-up.
    pub(crate) fn exchanges(&self) -> Vec<String> {
        vec![self.exchange(), self.dead_letter_exchange()]
    }
    /// Every queue, for clean-up.
    pub(crate) fn queues(&self) -> Vec<String> {
        vec![
            self.mes_queue(),
            self.crm_queue(),
            self.mes_dead_letter_queue(),
            // MES's delay queue for its one retry (orderscope's `Retries`).
            format!("{}.retry.1", self.mes_queue()),
        ]
    }
}

/// Routing key of new orders (CRM → MES).
pub(crate) const ORDER_CREATED: &str = "order.created";
/// Routing key of status updates (MES → CRM).
pub(crate) const ORDER_STATUS: &str = "order.status";
/// A routing key nothing is bound to any more: MES's old status path. Publishing with it is the
/// demo's unroutable message.
pub(crate) const RETIRED_STATUS_KEY: &str = "order.state";

// ---- the message contract -------------------------------------------------------------------------

/// An order, as the shop and the API take it and as the CRM publishes it (`order.created`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OrderMessage {
    /// The order's id.
    pub(crate) order_id: String,
    /// Where it came from: `web`, `api`, …
    pub(crate) channel: String,
    /// What was ordered.
    pub(crate) items: Vec<Item>,
    /// When it is promised, RFC 3339, or null.
    pub(crate) deadline: Option<String>,
}

/// One line of an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Item {
    /// Stock keeping unit.
    pub(crate) sku: String,
    /// Quantity.
    pub(crate) qty: i64,
}

/// A status update (`order.status`, MES → CRM).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StatusMessage {
    /// The order's id.
    pub(crate) order_id: String,
    /// `scheduled` or `rejected`.
    pub(crate) status: String,
}

/// What the shop and the API take: an order without a channel (they know their own), optionally
/// without an id (they issue one).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub(crate) struct PlaceOrder {
    /// The order id the client chose, if any.
    #[serde(default)]
    pub(crate) order_id: Option<String>,
    /// What was ordered.
    pub(crate) items: Vec<Item>,
    /// When it is promised, RFC 3339.
    #[serde(default)]
    pub(crate) deadline: Option<String>,
    /// `low`, `normal`, `high`, `urgent`.
    #[serde(default)]
    pub(crate) priority: Option<String>,
}

/// RFC 3339 (UTC) of a time.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    OffsetDateTime::from(t).format(&Rfc3339).unwrap_or_default()
}

/// Parses an RFC 3339 time.
pub(crate) fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .map(SystemTime::from)
}

// ---- demo fault injection and MES's rules ---------------------------------------------------------

/// An item with this SKU makes MES's handler panic (the demo's panicking handler).
pub(crate) const SKU_PANIC: &str = "FAULT-PANIC";
/// An item with this SKU makes MES publish the status with [`RETIRED_STATUS_KEY`] (the demo's
/// unroutable message).
pub(crate) const SKU_UNROUTABLE: &str = "FAULT-UNROUTABLE";
/// SKUs MES knows, with the work per unit (milliseconds of simulated machine planning).
pub(crate) const CATALOGUE: &[(&str, u64)] = &[
    ("BOLT", 0),
    ("PANEL", 4),
    ("MOTOR", 120),
    (SKU_PANIC, 0),
    (SKU_UNROUTABLE, 0),
];
/// MES rejects lines above this quantity.
pub(crate) const MAX_QTY: i64 = 1000;

// ---- the scripted mix -----------------------------------------------------------------------------

/// What should become of a scripted order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Expect {
    /// Scheduled by MES in time, confirmed to the CRM.
    Scheduled,
    /// Scheduled, after its deadline.
    Late,
    /// Rejected by MES, confirmed to the CRM.
    Rejected,
    /// Scheduled, but the status message was unroutable: the CRM never hears of it.
    Lost,
    /// MES's handler panicked on it; after one retry it went to the dead-letter queue.
    DeadLettered,
}

impl Expect {
    /// Whether the CRM receives a status for the order.
    pub(crate) fn confirmed_to_crm(self) -> bool {
        matches!(self, Expect::Scheduled | Expect::Late | Expect::Rejected)
    }

    /// A short word for the summary.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Expect::Scheduled => "scheduled",
            Expect::Late => "late",
            Expect::Rejected => "rejected",
            Expect::Lost => "lost",
            Expect::DeadLettered => "dead-lettered",
        }
    }
}

/// One order of the script.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ScriptedOrder {
    /// The order id.
    pub(crate) id: &'static str,
    /// Where it enters: [`Role::Shop`] or [`Role::Api`].
    pub(crate) via: Role,
    /// `(sku, qty)` lines.
    pub(crate) items: &'static [(&'static str, i64)],
    /// Deadline, relative to when the order is placed.
    pub(crate) deadline: Option<Duration>,
    /// `order.priority`.
    pub(crate) priority: &'static str,
    /// What should happen.
    pub(crate) expect: Expect,
}

const fn order(
    id: &'static str,
    via: Role,
    items: &'static [(&'static str, i64)],
    deadline_ms: Option<u64>,
    priority: &'static str,
    expect: Expect,
) -> ScriptedOrder {
    let deadline = match deadline_ms {
        Some(ms) => Some(Duration::from_millis(ms)),
        None => None,
    };
    ScriptedOrder {
        id,
        via,
        items,
        deadline,
        priority,
        expect,
    }
}

/// The scripted mix: web and B2B orders, two that miss their deadline (motors take MES long), two
/// that MES rejects, one whose status message is unroutable, one whose handler panics.
pub(crate) const SCRIPT: &[ScriptedOrder] = &[
    order(
        "ORD-2026-000101",
        Role::Shop,
        &[("BOLT", 20), ("PANEL", 2)],
        Some(3_600_000),
        "normal",
        Expect::Scheduled,
    ),
    order(
        "ORD-2026-000201",
        Role::Api,
        &[("PANEL", 40)],
        Some(86_400_000),
        "normal",
        Expect::Scheduled,
    ),
    order(
        "ORD-2026-000102",
        Role::Shop,
        &[("MOTOR", 2), ("BOLT", 8)],
        Some(150),
        "urgent",
        Expect::Late,
    ),
    order(
        "ORD-2026-000103",
        Role::Shop,
        &[("LAMP-DISCONTINUED", 1)],
        None,
        "low",
        Expect::Rejected,
    ),
    order(
        "ORD-2026-000202",
        Role::Api,
        &[("MOTOR", 3)],
        Some(200),
        "high",
        Expect::Late,
    ),
    order(
        "ORD-2026-000104",
        Role::Shop,
        &[("BOLT", 100)],
        None,
        "normal",
        Expect::Scheduled,
    ),
    order(
        "ORD-2026-000203",
        Role::Api,
        &[("BOLT", 5000)],
        Some(7_200_000),
        "normal",
        Expect::Rejected,
    ),
    order(
        "ORD-2026-000204",
        Role::Api,
        &[(SKU_UNROUTABLE, 1), ("PANEL", 2)],
        None,
        "normal",
        Expect::Lost,
    ),
    order(
        "ORD-2026-000105",
        Role::Shop,
        &[(SKU_PANIC, 1)],
        None,
        "normal",
        Expect::DeadLettered,
    ),
    order(
        "ORD-2026-000205",
        Role::Api,
        &[("BOLT", 50), ("MOTOR", 1)],
        Some(7_200_000),
        "high",
        Expect::Scheduled,
    ),
    order(
        "ORD-2026-000106",
        Role::Shop,
        &[("PANEL", 1)],
        Some(3_600_000),
        "normal",
        Expect::Scheduled,
    ),
];
