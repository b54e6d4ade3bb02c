//! Several sinks at once through the real agent: Dataway (the fake), a real InfluxDB, and the
//! local files, each reading the durable queue from its own position.

use std::time::Duration;

use dk_proto::{Category, Value};
use dk_sinks::influxd::Influxd;
use dk_sinks::testing::FakeDataway;

use crate::harness::{Agent, wait_for};

const TOKEN: &str = "tkn_0123456789abcdef0123456789abcdef";

fn body(from: i64, n: i64) -> String {
    (from..from + n)
        .map(|i| {
            format!(
                "e2e_sinks,src=api seq={i}i,value={i}.5 {}\n",
                1_700_000_000_000_000_000i64 + i
            )
        })
        .collect()
}

#[test]
fn dataway_influxdb_and_local_files_each_get_every_point_and_an_outage_of_one_delays_no_other() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fake = rt.block_on(FakeDataway::start(TOKEN)).unwrap();
    let Some(mut influx) = rt.block_on(Influxd::start()) else {
        return;
    };
    rt.block_on(influx.create_db("dk"));
    let extra = format!(
        "[dataway]\n  urls = [\"{}\"]\n[sinks.local]\n  enable = true\n[sinks.influxdb]\n  url = \"{}\"\n  database = \"dk\"\n  timeout = \"2s\"\n",
        fake.url(),
        influx.url()
    );
    let agent = Agent::start_with(&[], &extra, &[]);

    let (status, _) = agent.request("POST", "/v1/write/metric", &[], body(0, 500).as_bytes());
    assert_eq!(status, 200);
    let count = |rt: &tokio::runtime::Runtime, influx: &Influxd| {
        rt.block_on(influx.count("dk", "e2e_sinks", "seq"))
    };
    wait_for("500 points in InfluxDB", Duration::from_secs(20), || {
        (count(&rt, &influx) == 500).then_some(())
    });
    wait_for("500 points at Dataway", Duration::from_secs(20), || {
        (fake
            .points(Category::Metric)
            .iter()
            .filter(|p| p.name == "e2e_sinks")
            .count()
            == 500)
            .then_some(())
    });
    wait_for(
        "500 points in the local files",
        Duration::from_secs(20),
        || {
            (agent
                .local_points("metric")
                .iter()
                .filter(|p| p.name == "e2e_sinks")
                .count()
                == 500)
                .then_some(())
        },
    );
    let p = fake
        .points(Category::Metric)
        .into_iter()
        .find(|p| p.name == "e2e_sinks")
        .unwrap();
    assert_eq!(p.get_tag("e2e"), Some("yes"), "global tags reach Dataway");
    assert!(matches!(p.get_field("seq"), Some(Value::I(_))));

    // InfluxDB goes down: Dataway and the files keep getting data; InfluxDB catches up after.
    influx.stop();
    let (status, _) = agent.request("POST", "/v1/write/metric", &[], body(500, 500).as_bytes());
    assert_eq!(
        status, 200,
        "writes are acknowledged while one upstream is down"
    );
    wait_for(
        "1000 points at Dataway during the InfluxDB outage",
        Duration::from_secs(20),
        || {
            (fake
                .points(Category::Metric)
                .iter()
                .filter(|p| p.name == "e2e_sinks")
                .count()
                == 1000)
                .then_some(())
        },
    );
    wait_for(
        "1000 points in the local files during the outage",
        Duration::from_secs(20),
        || {
            (agent
                .local_points("metric")
                .iter()
                .filter(|p| p.name == "e2e_sinks")
                .count()
                == 1000)
                .then_some(())
        },
    );
    agent.wait_metric_at_least(
        "datakit_io_queue_points{category=\"metric\",sink=\"influxdb\"}",
        500.0,
        Duration::from_secs(10),
    );
    rt.block_on(influx.restart());
    wait_for(
        "InfluxDB to catch up from the queue",
        Duration::from_secs(60),
        || (count(&rt, &influx) == 1000).then_some(()),
    );
    rt.block_on(fake.stop());
}

#[test]
fn with_dataway_three_hours_ahead_a_point_written_at_host_time_is_stored_at_dataways_time() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fake = rt.block_on(FakeDataway::start(TOKEN)).unwrap();
    fake.set_clock_skew(3 * 3_600);
    // [dataway.ntp] is on by default; the harness turns the time correction off, this test
    // turns it back on (Datakit's default).
    let extra = format!(
        "[dataway]\n  urls = [\"{}\"]\n[io]\n  auto_timestamp_correction = true\n",
        fake.url()
    );
    let agent = Agent::start_with(&[], &extra, &[]);
    let offset = agent.wait_metric_at_least(
        "datakit_ntp_offset_seconds",
        10_799.0,
        Duration::from_secs(20),
    );
    assert!(offset <= 10_801.0, "offset {offset}");
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.category == "ntp" && r.status == 200),
        "the agent asked Dataway's /v1/ntp"
    );

    let host_ns = dk_delivery::host_now_secs() * 1_000_000_000;
    let line = format!("e2e_ntp value=1i {host_ns}\n");
    let (status, _) = agent.request("POST", "/v1/write/metric", &[], line.as_bytes());
    assert_eq!(status, 200);
    let p = wait_for("the point at Dataway", Duration::from_secs(20), || {
        fake.points(Category::Metric)
            .into_iter()
            .find(|p| p.name == "e2e_ntp")
    });
    let moved = (p.time - host_ns) / 1_000_000_000;
    assert!(
        (10_798..=10_802).contains(&moved),
        "moved by {moved}s: {p:?}"
    );
    assert_eq!(p.get_field("__orig_time"), Some(&Value::I(host_ns)));
}

#[test]
fn with_dataway_ten_minutes_ahead_a_statsd_point_stamped_by_its_worker_carries_dataways_time() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fake = rt.block_on(FakeDataway::start(TOKEN)).unwrap();
    // Under the 2 h of the time correction: only the [dataway.ntp] offset moves the point.
    fake.set_clock_skew(600);
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = udp.local_addr().unwrap().port();
    drop(udp);
    let statsd = format!(
        "[[inputs.statsd]]\n  interval = \"1s\"\n  protocol = \"udp\"\n  service_address = \"127.0.0.1:{port}\"\n  service_unix_address = \"\"\n"
    );
    let extra = format!("[dataway]\n  urls = [\"{}\"]\n", fake.url());
    let agent = Agent::start_with(&[("statsd/statsd.conf", &statsd)], &extra, &[]);
    agent.wait_metric_at_least("datakit_ntp_offset_seconds", 599.0, Duration::from_secs(20));
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let p = wait_for(
        "the worker's point at Dataway",
        Duration::from_secs(20),
        || {
            // Sent until the worker has the offset (pushed at its next health check) and flushed.
            sender
                .send_to(b"ntpw.hits:1|c", ("127.0.0.1", port))
                .unwrap();
            std::thread::sleep(Duration::from_millis(200));
            fake.points(Category::Metric)
                .into_iter()
                .filter(|p| p.name == "ntpw")
                .find(|p| p.time - dk_proto::clock::host_now_ns() > 500_000_000_000)
        },
    );
    let ahead = (p.time - dk_proto::clock::host_now_ns()) / 1_000_000_000;
    assert!((595..=601).contains(&ahead), "{ahead}s ahead: {p:?}");
    assert_eq!(p.get_field("__orig_time"), None, "not the 2 h correction");
}
