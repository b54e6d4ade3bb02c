//! Cloud metadata on the `HOST` object, through the real binary: `cloud_meta_url` points the
//! probe at a local server answering like AWS's instance metadata service.

use std::time::Duration;

use dk_worker::testing::fake_http::FakeHttp;

use crate::harness::{Agent, wait_for};

#[test]
fn host_objects_carry_aws_metadata_from_the_configured_metadata_url() {
    let aws = FakeHttp::start(
        &[
            ("GET /latest/meta-data/instance-id", "i-0e2e0e2e0e2e0e2e0"),
            ("GET /latest/meta-data/instance-type", "m5.large"),
            ("GET /latest/meta-data/local-ipv4", "10.1.2.3"),
            (
                "GET /latest/meta-data/placement/availability-zone-id",
                "euw1-az2",
            ),
            ("GET /latest/meta-data/placement/region", "eu-west-1"),
        ],
        None,
    );
    // The other providers answer nothing (404) on the same server.
    let mut urls = String::new();
    for p in ["aliyun", "tencent", "azure", "hwcloud", "volcengine"] {
        urls.push_str(&format!("  {p} = \"{}\"\n", aws.url(&format!("/{p}"))));
    }
    let conf = format!(
        "[inputs.hostobject]\n[inputs.hostobject.cloud_meta_url]\n  aws = \"{}\"\n{urls}",
        aws.url("/latest/meta-data")
    );
    let agent = Agent::start(&[("host/hostobject.conf", &conf)]);
    // The first object goes out at start; the probe answers in the background and the next
    // collection (10 s later) carries its tags.
    let host = wait_for(
        "a HOST object with cloud tags",
        Duration::from_secs(40),
        || {
            agent
                .local_points("object")
                .into_iter()
                .find(|p| p.name == "HOST" && p.get_tag("cloud_provider").is_some())
        },
    );
    for (k, v) in [
        ("cloud_provider", "aws"),
        ("instance_id", "i-0e2e0e2e0e2e0e2e0"),
        ("instance_type", "m5.large"),
        ("private_ip", "10.1.2.3"),
        ("zone_id", "euw1-az2"),
        ("region", "eu-west-1"),
    ] {
        assert_eq!(host.get_tag(k), Some(v), "{k}: {:?}", host.tags);
    }
    assert_eq!(
        host.get_tag("security_group_id"),
        None,
        "not answered: no tag"
    );
    assert!(
        aws.paths()
            .iter()
            .any(|p| p == "GET /latest/meta-data/placement/region"),
        "{:?}",
        aws.paths()
    );
}
