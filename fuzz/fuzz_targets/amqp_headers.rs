//! AMQP header tables: any keys, any value types, any bytes. Extraction never panics, the
//! direct and generic paths agree, and writing back into the table never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lapin::types::{AMQPValue, ByteArray, FieldTable, LongString, ShortString};
use opentelemetry::propagation::Injector;
use orderscope_context::carrier::{self, FieldTableExtractor, FieldTableInjector};
use orderscope_context::Propagation;

const KEYS: [&str; 6] = [
    "traceparent",
    "tracestate",
    "baggage",
    "MT-Activity-Id",
    "Correlation-Context",
    "x-order-id",
];

fuzz_target!(|input: (Vec<(u8, String, u8, Vec<u8>)>, String, String)| {
    let (entries, key, value) = input;
    let mut table = FieldTable::default();
    for (which, own_key, kind, bytes) in entries {
        let key = match KEYS.get(usize::from(which)) {
            Some(k) => (*k).to_owned(),
            None => own_key,
        };
        let Ok(key) = ShortString::try_new(key) else {
            continue;
        };
        let value = match kind % 5 {
            0 => AMQPValue::LongString(LongString::from(bytes)),
            1 => AMQPValue::ByteArray(ByteArray::from(bytes)),
            2 => match ShortString::try_new(String::from_utf8_lossy(&bytes).into_owned()) {
                Ok(s) => AMQPValue::ShortString(s),
                Err(_) => continue,
            },
            3 => AMQPValue::LongLongInt(bytes.len() as i64),
            _ => AMQPValue::FieldTable(FieldTable::default()),
        };
        table.insert(key, value);
    }
    let direct = Propagation::trusted().extract_amqp(&table);
    let generic = Propagation::trusted().extract(&FieldTableExtractor(&table));
    assert_eq!(direct.remote(), generic.remote());
    assert_eq!(direct.order(), generic.order());

    carrier::inject_amqp(direct.context(), &mut table);
    carrier::inject_amqp_replacing(direct.context(), &mut table);
    let again = Propagation::trusted().extract_amqp(&table);
    assert_eq!(again.order(), direct.order());
    assert_eq!(again.remote().map(|r| r.trace_id()), direct.remote().map(|r| r.trace_id()));

    // Whatever key the caller passes, writing never panics.
    FieldTableInjector(&mut table).set(&key, value);
});
