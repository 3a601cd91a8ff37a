//! The RabbitMQ topology of the message contract, declared the same way by everyone who needs it.

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ConnectionProperties, ExchangeKind};
use orderscope::amqp::{Backoff, Connector, Retries};

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

/// Has the broker close every connection whose client-provided name starts with `prefix` (the
/// services' consumer connections, see [`connector`]), through `rabbitmqctl close_connection`. Only
/// those: the broker may be shared. Returns how many it closed.
pub(crate) async fn close_connections_named(prefix: &str) -> Result<usize, String> {
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
    let mut closed = 0;
    for line in String::from_utf8_lossy(&list.stdout).lines() {
        let Some((pid, properties)) = line.split_once('\t') else {
            continue;
        };
        if prefix.is_empty() || !properties.contains(&format!("\"{prefix}")) {
            continue;
        }
        let out = tokio::process::Command::new("rabbitmqctl")
            .args([
                "close_connection",
                pid.trim(),
                "order pipeline: simulated broker close",
            ])
            .output()
            .await
            .map_err(|e| format!("rabbitmqctl: {e}"))?;
        if !out.status.success() {
            return Err(format!("rabbitmqctl close_connection: {out:?}"));
        }
        closed += 1;
    }
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
