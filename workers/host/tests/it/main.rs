//! Runs real host inputs through the public API: build from a worker config, run with a
//! test context, receive feeds, then shut down.

use std::time::Duration;

use dk_input_host::HostFamily;
use dk_proto::rpc::{InputSpec, WorkerConfig};
use dk_proto::{Category, Value};
use dk_worker::emitter::Message;
use dk_worker::testing::worker_config;
use dk_worker::{Emitter, Family, Feed, InputContext};

fn spec(name: &str, toml: &str) -> InputSpec {
    dk_worker::testing::spec(name, "conf.d/host/test.conf", toml)
}

async fn next_feed(rx: &mut tokio::sync::mpsc::Receiver<Message>, input: &str) -> Feed {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a feed within 10 s")
            .expect("channel open");
        match msg {
            Message::Feed(f) if f.input == input => return f,
            Message::Feed(_) | Message::AckedFeed(..) => continue,
            Message::LastError(e) => panic!("unexpected error from {}: {}", e.input, e.message),
        }
    }
}

#[tokio::test]
async fn mem_and_cpu_inputs_emit_typed_points_and_stop_on_shutdown() {
    let config = worker_config(
        "host",
        [
            spec("mem", "interval = '1s'\n[tags]\nteam = \"infra\"\n"),
            spec("cpu", "interval = '1s'\n"),
        ],
    );
    let inputs = HostFamily.build(&config).expect("valid config");
    assert_eq!(inputs.len(), 2);

    let (emitter, mut rx) = Emitter::channel(64);
    let (ctx, shutdown, _pause) = InputContext::for_test(emitter);
    let handles: Vec<_> = inputs
        .into_iter()
        .map(|i| tokio::spawn(i.run(ctx.clone())))
        .collect();

    let mem = next_feed(&mut rx, "mem").await;
    assert_eq!(mem.category, Category::Metric);
    assert_eq!(mem.points.len(), 1);
    let p = &mem.points[0];
    assert_eq!(p.name, "mem");
    assert_eq!(p.get_tag("team"), Some("infra"));
    assert_eq!(p.get_tag("host"), None, "the supervisor adds host tags");
    for key in ["total", "available", "used", "free", "cached", "buffered"] {
        assert!(
            matches!(p.get_field(key), Some(Value::U(_))),
            "mem {key}: {:?}",
            p.get_field(key)
        );
    }
    for key in ["used_percent", "available_percent"] {
        assert!(matches!(p.get_field(key), Some(Value::F(_))), "mem {key}");
    }
    assert!(p.time > 1_600_000_000_000_000_000, "time in ns");

    // Usage needs two samples: the first cpu feed comes one interval after start.
    let cpu = next_feed(&mut rx, "cpu").await;
    let total = cpu
        .points
        .iter()
        .find(|p| p.get_tag("cpu") == Some("cpu-total"))
        .expect("cpu-total point");
    for key in [
        "usage_user",
        "usage_system",
        "usage_idle",
        "usage_nice",
        "usage_iowait",
        "usage_irq",
        "usage_softirq",
        "usage_steal",
        "usage_guest",
        "usage_guest_nice",
        "usage_total",
    ] {
        let Some(Value::F(v)) = total.get_field(key) else {
            panic!("cpu {key}: {:?}", total.get_field(key));
        };
        assert!((0.0..=100.0).contains(v), "cpu {key} = {v}");
    }

    shutdown.cancel();
    for h in handles {
        tokio::time::timeout(Duration::from_secs(5), h)
            .await
            .expect("input stops promptly after shutdown")
            .expect("input task did not panic");
    }
}

#[tokio::test]
async fn hostobject_emits_a_host_object_tagged_with_the_runtime_host_name() {
    let config = WorkerConfig {
        hostname: "ignored".to_string(),
        ..worker_config("host", [spec("hostobject", "")])
    };
    let input = HostFamily.build(&config).expect("valid").remove(0);
    let (emitter, mut rx) = Emitter::channel(4);
    let (ctx, shutdown, _pause) = InputContext::for_test(emitter);
    let handle = tokio::spawn(input.run(ctx));
    let feed = next_feed(&mut rx, "hostobject").await;
    assert_eq!(feed.category, Category::Object);
    let p = &feed.points[0];
    assert_eq!(p.name, "HOST");
    assert_eq!(p.get_tag("host"), Some("test-host"));
    assert_eq!(p.get_tag("name"), Some("test-host"));
    assert!(matches!(p.get_field("message"), Some(Value::S(m)) if m.starts_with("{\"host\":")));
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .expect("stops")
        .expect("no panic");
}

mod corpus;
