//! The family on the kit: sample, listeners, and the running input fed real softflowd
//! packets on a loopback socket.

use std::os::fd::AsRawFd;
use std::time::Duration;

use dk_proto::rpc::{InheritedListener, ListenerKind};
use dk_proto::{Category, Point, Value};
use dk_worker::emitter::Message;
use dk_worker::testing::{instances, spec, worker_config};
use dk_worker::{Emitter, Family, InputContext, ListenSpec};

use super::*;

#[test]
fn the_sample_validates_and_listens_for_netflow5_on_2056() {
    let f = NetflowFamily;
    assert_eq!((f.name(), f.inputs()), ("netflow", &["netflow"][..]));
    let tables = instances(NetflowFamily::SAMPLE, INPUT_NAME);
    assert_eq!(tables.len(), 1);
    assert_eq!(f.validate("netflow", &tables[0]), Vec::new());
    assert_eq!(
        f.listeners("netflow", &tables[0]),
        vec![ListenSpec::new("udp://0.0.0.0:2056", ListenerKind::Udp)]
    );
    let all = dk_worker::testing::uncommented(NetflowFamily::SAMPLE);
    let tables = instances(&all, INPUT_NAME);
    assert_eq!(f.validate("netflow", &tables[0]), Vec::new());
    assert_eq!(f.listeners("netflow", &tables[0]).len(), 4);
}

#[test]
fn build_makes_one_input_per_instance_and_names_the_file_of_a_problem() {
    let s = |toml: &str| spec(INPUT_NAME, "conf.d/netflow/netflow.conf", toml);
    let ok = worker_config(
        "netflow",
        [s("[[listeners]]\nflow_type = \"netflow9\"\nport = 2055\n")],
    );
    assert_eq!(NetflowFamily.build(&ok).map(|i| i.len()).ok(), Some(1));
    let bad = worker_config(
        "netflow",
        [s("[[listeners]]\nflow_type = \"x\"\nport = 1\n")],
    );
    let Err(problems) = NetflowFamily.build(&bad) else {
        panic!("refused");
    };
    assert!(
        problems[0]
            .message
            .starts_with("conf.d/netflow/netflow.conf: ")
    );
}

const V9: &[u8] = include_bytes!("../tests/fixtures/softflowd_v9.bin");
const IPFIX: &[u8] = include_bytes!("../tests/fixtures/softflowd_ipfix.bin");

fn s(p: &Point, k: &str) -> String {
    match p.get_field(k) {
        Some(Value::S(v)) => v.clone(),
        other => panic!("{k}: {other:?} in {p:?}"),
    }
}

/// The points of the next feeds until `n` arrived (10 s at most).
async fn collect(rx: &mut tokio::sync::mpsc::Receiver<Message>, n: usize) -> Vec<Point> {
    let mut points = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while points.len() < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(Message::Feed(f))) => {
                assert_eq!(
                    (f.category, f.input.as_str()),
                    (Category::Logging, "netflow")
                );
                points.extend(f.points);
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => panic!("{} of {n} points: {points:?}", points.len()),
        }
    }
    assert_eq!(points.len(), n, "{points:?}");
    points
}

#[tokio::test]
async fn softflowd_packets_become_aggregated_netflow_logs_with_rolled_up_ports() {
    let v9_sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let ipfix_sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let toml = "flush_interval = \"200ms\"\n[tags]\ndc = \"eu\"\n[[listeners]]\nflow_type = \"netflow9\"\nport = 2055\n[[listeners]]\nflow_type = \"ipfix\"\nport = 4739\n";
    let inputs = NetflowFamily
        .build(&worker_config(
            "netflow",
            [spec(INPUT_NAME, "t.conf", toml)],
        ))
        .unwrap_or_else(|p| panic!("{p:?}"));
    let (emitter, mut rx) = Emitter::channel(64);
    let (mut ctx, cancel, _pause) = InputContext::for_test(emitter);
    ctx.listeners = vec![
        InheritedListener {
            address: "udp://0.0.0.0:2055".into(),
            kind: ListenerKind::Udp,
            fd: v9_sock.as_raw_fd(),
        },
        InheritedListener {
            address: "udp://0.0.0.0:4739".into(),
            kind: ListenerKind::Udp,
            fd: ipfix_sock.as_raw_fd(),
        },
    ];
    let mut tasks = tokio::task::JoinSet::new();
    for i in inputs {
        tasks.spawn(i.run(ctx.clone()));
    }
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    tx.send_to(V9, v9_sock.local_addr().expect("addr"))
        .expect("send");
    tx.send_to(b"\x00\x09garbage", v9_sock.local_addr().expect("addr"))
        .expect("send");
    // TCP, UDP, and 9 of the 12 one-packet flows to 10.0.0.6:443 keep their source port;
    // the other 3 roll up to one.
    let v9 = collect(&mut rx, 12).await;
    // The rollup is per input: every IPFIX flow to 10.0.0.6:443 now rolls up.
    tx.send_to(IPFIX, ipfix_sock.local_addr().expect("addr"))
        .expect("send");
    let ipfix = collect(&mut rx, 3).await;
    for (kind, of, star_bytes) in [("netflow9", &v9, 150), ("ipfix", &ipfix, 600)] {
        assert!(of.iter().all(|p| s(p, "type") == kind), "{of:?}");
        assert!(
            of.iter()
                .all(|p| p.name == "netflow" && p.get_tag("dc") == Some("eu"))
        );
        assert!(of.iter().all(|p| s(p, "device_ip") == "127.0.0.1"));
        let tcp = of
            .iter()
            .find(|p| s(p, "source_ip") == "10.0.0.1")
            .expect("the TCP flow");
        assert_eq!(
            (
                s(tcp, "source_port"),
                s(tcp, "dest_port"),
                s(tcp, "ip_protocol")
            ),
            ("40000".into(), "80".into(), "TCP".into())
        );
        assert_eq!(tcp.get_field("bytes"), Some(&Value::I(220)));
        let msg: serde_json::Value = serde_json::from_str(&s(tcp, "message")).expect("json");
        assert_eq!(msg["packets"], 3);
        assert_eq!(msg["host"], "test-host");
        assert_eq!(
            msg["tcp_flags"],
            serde_json::json!(["FIN", "SYN", "PSH", "ACK"])
        );
        let star = of
            .iter()
            .find(|p| s(p, "source_port") == "*")
            .expect("a rolled-up flow");
        assert_eq!(
            (s(star, "dest_port"), star.get_field("bytes")),
            ("443".into(), Some(&Value::I(star_bytes)))
        );
    }
    cancel.cancel();
    while tasks.join_next().await.is_some() {}
    assert!(
        matches!(rx.try_recv(), Err(_) | Ok(Message::LastError(_))),
        "nothing more was fed"
    );
    let text = dk_worker::telemetry::encode(&ctx);
    assert_eq!(
        dk_worker::telemetry::sample(
            &text,
            "datakit_input_parse_errors_total",
            r#"input="netflow",reason="malformed""#
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        dk_worker::telemetry::sample(
            &text,
            "datakit_input_received_events_total",
            r#"input="netflow",listener="udp://0.0.0.0:2055""#
        ),
        2.0,
        "{text}"
    );
}

#[tokio::test]
async fn sfprobe_datagrams_on_an_sflow5_listener_become_flows_of_the_agent_and_counters_are_counted()
 {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let toml = "flush_interval = \"200ms\"\n[[listeners]]\nflow_type = \"sflow5\"\nport = 6343\n";
    let inputs = NetflowFamily
        .build(&worker_config(
            "netflow",
            [spec(INPUT_NAME, "t.conf", toml)],
        ))
        .unwrap_or_else(|p| panic!("{p:?}"));
    let (emitter, mut rx) = Emitter::channel(64);
    let (mut ctx, cancel, _pause) = InputContext::for_test(emitter);
    ctx.listeners = vec![InheritedListener {
        address: "udp://0.0.0.0:6343".into(),
        kind: ListenerKind::Udp,
        fd: sock.as_raw_fd(),
    }];
    let mut tasks = tokio::task::JoinSet::new();
    for i in inputs {
        tasks.spawn(i.run(ctx.clone()));
    }
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    for d in [
        &include_bytes!("../tests/fixtures/sfprobe_flows_0.bin")[..],
        include_bytes!("../tests/fixtures/sfprobe_flows_1.bin"),
        include_bytes!("../tests/fixtures/sfprobe_counters.bin"),
    ] {
        tx.send_to(d, sock.local_addr().expect("addr"))
            .expect("send");
    }
    let points = collect(&mut rx, 12).await;
    assert!(
        points.iter().all(|p| s(p, "type") == "sflow5"),
        "{points:?}"
    );
    assert!(
        points.iter().all(|p| s(p, "device_ip") == "192.0.2.10"),
        "the agent address, not the sender"
    );
    let tcp = points
        .iter()
        .find(|p| s(p, "source_ip") == "10.0.0.1")
        .expect("the TCP flow");
    assert_eq!(tcp.get_field("bytes"), Some(&Value::I(274)));
    cancel.cancel();
    while tasks.join_next().await.is_some() {}
    let text = dk_worker::telemetry::encode(&ctx);
    assert_eq!(
        dk_worker::telemetry::sample(
            &text,
            "datakit_input_dropped_total",
            r#"input="netflow",reason="sflow_counter_sample""#
        ),
        1.0,
        "{text}"
    );
}
