//! The RabbitMQ topology of the message contract, declared the same way by everyone who needs it.

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions, QueuePurgeOptions,
};
use std::sync::{Arc, Mutex, PoisonError};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use orderscope::amqp::{Backoff, Connector, PublishError, PublishOutcome, Retries, TracedChannel};

use crate::model::{ORDER_CREATED, ORDER_STATUS, Topology, amqp_addr};

/// Connections for a consumer of `role`, named `{prefix}{role}` (what `rabbitmqctl list_connections` and the
/// management UI show), made again with a jittered backoff when the broker closes them.
pub(crate) fn connector(role: &str) -> Connector {
    let name = format!("{}{role}", Topology::from_env().prefix());
    Connector::new(
        amqp_addr(),
        ConnectionProperties::default().with_connection_name(name.into()),
    )
}

/// The names (after the prefix) of every connection the CRM and MES open: what
/// [`close_connections_named`] closes in the end-to-end test.
pub(crate) const CONNECTION_ROLES: [&str; 6] = [
    "crm",
    "crm-publisher",
    "crm-queue-watcher",
    "mes",
    "mes-publisher",
    "mes-dead-letters",
];

/// How many times one publish is made again on a new connection before its error is returned.
const MAX_REBUILDS: u32 = 5;

/// A publisher in confirm mode that survives the broker closing its connection: a publish that
/// fails with [`PublishError::ChannelClosed`] is made again, with confirms, on a new connection
/// (one rebuild at a time; the others wait for it). Nothing is lost; a message whose confirm was
/// lost with the connection may arrive twice, so consumers must be idempotent.
#[derive(Clone)]
pub(crate) struct Publisher {
    connector: Connector,
    current: Arc<Mutex<(Arc<Connection>, TracedChannel)>>,
    rebuilding: Arc<tokio::sync::Mutex<()>>,
}

impl Publisher {
    /// Connects through `connector` and opens a confirm channel.
    pub(crate) async fn connect(connector: Connector) -> lapin::Result<Self> {
        let connection = connector.connect().await?;
        let channel = confirm_channel(&connection).await?;
        Ok(Self {
            connector,
            current: Arc::new(Mutex::new((
                Arc::new(connection),
                TracedChannel::new(channel),
            ))),
            rebuilding: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// The channel publishes go through now.
    pub(crate) fn channel(&self) -> TracedChannel {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .clone()
    }

    /// [`TracedChannel::publish`], made again on a new connection while the channel is closed.
    pub(crate) async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        options: BasicPublishOptions,
        payload: &[u8],
        properties: BasicProperties,
    ) -> Result<PublishOutcome, PublishError> {
        let mut rebuilt = 0;
        loop {
            let channel = self.channel();
            match channel
                .publish(
                    exchange.into(),
                    routing_key.into(),
                    options,
                    payload,
                    properties.clone(),
                )
                .await
            {
                // A broker that closes every new channel (a missing exchange, say) gets the error.
                Err(PublishError::ChannelClosed(error)) if rebuilt < MAX_REBUILDS => {
                    rebuilt += 1;
                    tracing::warn!(%error, "the publisher's channel closed; publishing again on a new connection");
                    self.rebuild(&channel).await;
                }
                other => return other,
            }
        }
    }

    /// Replaces `failed` with a channel on a new connection, unless another publish did already.
    async fn rebuild(&self, failed: &TracedChannel) {
        let _one = self.rebuilding.lock().await;
        if self.channel().get_ref().status().connected() {
            return;
        }
        loop {
            let connection = self.connector.connect_with_retry().await;
            match confirm_channel(&connection).await {
                Ok(channel) => {
                    let channel = failed.rebuild(channel);
                    *self.current.lock().unwrap_or_else(PoisonError::into_inner) =
                        (Arc::new(connection), channel);
                    tracing::info!("publishing again on a new connection");
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, "opening the publisher's channel failed; reconnecting");
                }
            }
        }
    }

    /// Closes the connection.
    pub(crate) async fn close(&self) {
        let connection = Arc::clone(
            &self
                .current
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .0,
        );
        let _ = connection.close(200, "bye".into()).await;
    }
}

async fn confirm_channel(connection: &Connection) -> lapin::Result<Channel> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// The client-provided names of the broker's connections that start with `prefix`, each with the
/// connection's pid (`rabbitmqctl list_connections`).
pub(crate) async fn connections_named(prefix: &str) -> Result<Vec<(String, String)>, String> {
    let list = tokio::process::Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "-q",
            "--no-table-headers",
            "pid",
            "client_properties",
        ])
        .output()
        .await
        .map_err(|e| format!("rabbitmqctl: {e}"))?;
    if !list.status.success() {
        return Err(format!("rabbitmqctl list_connections: {list:?}"));
    }
    let mut found = Vec::new();
    if prefix.is_empty() {
        return Ok(found);
    }
    let quoted = format!("\"{prefix}");
    for line in String::from_utf8_lossy(&list.stdout).lines() {
        let Some((pid, properties)) = line.split_once('\t') else {
            continue;
        };
        let Some(at) = properties.find(&quoted) else {
            continue;
        };
        let name = &properties[at + 1..];
        let name = name.split('"').next().unwrap_or_default();
        found.push((pid.trim().to_owned(), name.to_owned()));
    }
    Ok(found)
}

/// Has the broker close every connection whose client-provided name starts with `prefix` (the
/// services' connections, see [`connector`] and [`CONNECTION_ROLES`]), through `rabbitmqctl
/// close_connection`. Only those: the broker may be shared. Returns the names it closed.
pub(crate) async fn close_connections_named(prefix: &str) -> Result<Vec<String>, String> {
    let mut closed = Vec::new();
    for (pid, name) in connections_named(prefix).await? {
        let out = tokio::process::Command::new("rabbitmqctl")
            .args([
                "close_connection",
                pid.as_str(),
                "order pipeline: simulated broker close",
            ])
            .output()
            .await
            .map_err(|e| format!("rabbitmqctl: {e}"))?;
        if !out.status.success() {
            return Err(format!("rabbitmqctl close_connection: {out:?}"));
        }
        closed.push(name);
    }
    closed.sort();
    Ok(closed)
}

/// MES's retries: one more attempt half a second later (`mes.orders.retry.1`), then
/// `mes.orders.dead-letter`; declared when the consumer starts.
pub(crate) fn mes_retries(topology: &Topology) -> Retries {
    Retries::new(topology.mes_queue())
        .max_attempts(2)
        .backoff(Backoff::exponential(std::time::Duration::from_millis(500)))
        .dead_letter_queue_name(topology.mes_dead_letter_queue())
        .declare_at_start(true)
}

/// Declares (idempotently) the exchange `orders` (topic), MES's queue `mes.orders` bound with
/// `order.created` and dead-lettering into `orders.dead-letter` → `mes.orders.dead-letter`, and CRM's
/// queue `crm.order-status` bound with `order.status`. Nothing is bound to any other routing key.
pub(crate) async fn declare_topology(channel: &Channel, topology: &Topology) -> lapin::Result<()> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .exchange_declare(
            topology.exchange().into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            topology.dead_letter_exchange().into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await?;

    let queue = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let mut mes_args = FieldTable::default();
    mes_args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(LongString::from(topology.dead_letter_exchange().as_str())),
    );
    channel
        .queue_declare(topology.mes_queue().into(), queue, mes_args)
        .await?;
    channel
        .queue_declare(topology.crm_queue().into(), queue, FieldTable::default())
        .await?;
    channel
        .queue_declare(
            topology.mes_dead_letter_queue().into(),
            queue,
            FieldTable::default(),
        )
        .await?;

    let bind = |q: String, x: String, key: &'static str| {
        channel.queue_bind(
            q.into(),
            x.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
    };
    bind(topology.mes_queue(), topology.exchange(), ORDER_CREATED).await?;
    bind(topology.crm_queue(), topology.exchange(), ORDER_STATUS).await?;
    bind(
        topology.mes_dead_letter_queue(),
        topology.dead_letter_exchange(),
        "",
    )
    .await?;
    // MES's delay queue (the dead-letter queue above is also its retries' last stop).
    mes_retries(topology).declare(channel).await?;
    Ok(())
}

/// Empties the queues (messages left over from an interrupted run).
pub(crate) async fn purge(channel: &Channel, topology: &Topology) -> lapin::Result<()> {
    for queue in topology.queues() {
        channel
            .queue_purge(queue.into(), QueuePurgeOptions::default())
            .await?;
    }
    Ok(())
}

/// Deletes the queues and exchanges (tests with their own prefix clean up after themselves).
pub(crate) async fn delete(channel: &Channel, topology: &Topology) {
    for queue in topology.queues() {
        let _ = channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await;
    }
    for exchange in topology.exchanges() {
        let _ = channel
            .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
            .await;
    }
}
