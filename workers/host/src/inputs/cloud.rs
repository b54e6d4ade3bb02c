//! Cloud metadata for the `HOST` object: which cloud the host runs on (`cloud_provider`) and
//! what its metadata service says (instance id, type, region, zone, private IP...), with
//! Datakit's providers, paths, tag names and 3 s timeout.
//!
//! Unlike Datakit, which asks the metadata services inside a collection, the probe runs in a
//! background task ([`CloudProbe::start`]) and the collection only reads its last answer
//! ([`CloudProbe::tags`]): a host without a metadata service never waits for one.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::watch;

use crate::http::{Request, fetch};

/// The value Datakit gives a field the metadata service did not answer.
pub const UNAVAILABLE: &str = "-";
/// Datakit's metadata client timeout, per request.
pub const TIMEOUT: Duration = Duration::from_secs(3);
/// How long an unsuccessful detection is trusted before asking again (Datakit: 24 h).
pub const REDETECT: Duration = Duration::from_secs(24 * 3600);
/// Largest metadata answer read.
const MAX_ANSWER: usize = 256 << 10;

/// The providers, in Datakit's detection order.
pub const PROVIDERS: [&str; 6] = ["aliyun", "aws", "tencent", "azure", "hwcloud", "volcengine"];

const AWS_IPV4: &str = "http://169.254.169.254/latest/meta-data";
const AWS_IPV6: &str = "http://[fd00:ec2::254]/latest/meta-data";
const AWS_TOKEN_IPV4: &str = "http://169.254.169.254/latest/api/token";
const AWS_TOKEN_IPV6: &str = "http://[fd00:ec2::254]/latest/api/token";
const AWS_MAX_TOKEN_TTL: Duration = Duration::from_secs(21600);
const AZURE_API: &str = "api-version=2021-02-01";

/// The cloud settings of `[inputs.hostobject]`.
#[derive(Debug, Clone, Default)]
pub struct CloudConfig {
    /// `disable_cloud_provider_sync`: no probe at all.
    pub disabled: bool,
    /// The `cloud_provider` tag of `[inputs.hostobject.tags]`: skip detection.
    pub provider: Option<String>,
    /// `enable_cloud_aws_imds_v2`: ask AWS with a session token.
    pub aws_imds_v2: bool,
    /// `enable_cloud_aws_ipv6`: AWS's IPv6 endpoints.
    pub aws_ipv6: bool,
    /// `cloud_meta_url`: provider to base URL.
    pub meta_url: BTreeMap<String, String>,
    /// `cloud_meta_token_url`: provider to token URL (AWS).
    pub token_url: BTreeMap<String, String>,
    /// The input's interval: how often the metadata is refreshed and the AWS token TTL.
    pub interval: Duration,
}

impl CloudConfig {
    /// The metadata base URL of `provider`.
    pub fn base(&self, provider: &str) -> String {
        if let Some(u) = self.meta_url.get(provider) {
            return u.trim_end_matches('/').to_string();
        }
        match provider {
            "aliyun" => "http://100.100.100.200/latest/meta-data",
            "aws" if self.aws_ipv6 => AWS_IPV6,
            "aws" | "hwcloud" => AWS_IPV4,
            "tencent" => "http://metadata.tencentyun.com/latest/meta-data",
            "azure" => "http://169.254.169.254/metadata/instance",
            "volcengine" => "http://100.96.0.96/latest",
            _ => "",
        }
        .to_string()
    }

    fn token_url(&self) -> String {
        match self.token_url.get("aws") {
            Some(u) => u.clone(),
            None if self.aws_ipv6 => AWS_TOKEN_IPV6.into(),
            None => AWS_TOKEN_IPV4.into(),
        }
    }

    /// Huawei Cloud's OpenStack documents, on the host of its base URL.
    fn openstack(&self, doc: &str) -> String {
        let base = self.base("hwcloud");
        let root = base
            .strip_prefix("http://")
            .and_then(|rest| rest.split('/').next())
            .map_or_else(
                || "http://169.254.169.254".to_string(),
                |h| format!("http://{h}"),
            );
        format!("{root}/openstack/latest/{doc}")
    }
}

/// One metadata GET: the body with newlines turned into spaces (as Datakit), or `None`.
async fn get(url: &str, headers: &[(&'static str, String)]) -> Option<String> {
    let mut req = Request::get(url);
    for (k, v) in headers {
        req = req.header(k, v.clone());
    }
    match fetch(req, TIMEOUT, MAX_ANSWER).await {
        Ok(body) => Some(String::from_utf8_lossy(&body).replace('\n', " ")),
        Err(e) => {
            tracing::debug!(error = %e, "cloud metadata not available");
            None
        }
    }
}

fn or_unavailable(v: Option<String>) -> String {
    v.unwrap_or_else(|| UNAVAILABLE.to_string())
}

/// An AWS IMDSv2 session token (`PUT /latest/api/token`), TTL the input's interval.
async fn aws_token(cfg: &CloudConfig) -> Option<String> {
    let ttl = if cfg.interval.is_zero() || cfg.interval > AWS_MAX_TOKEN_TTL {
        AWS_MAX_TOKEN_TTL
    } else {
        cfg.interval
    };
    let url = cfg.token_url();
    let req = Request {
        method: http::Method::PUT,
        url: &url,
        headers: vec![(
            "X-aws-ec2-metadata-token-ttl-seconds",
            format!("{:.0}", ttl.as_secs_f64()),
        )],
    };
    match fetch(req, TIMEOUT, 4096).await {
        Ok(b) => Some(String::from_utf8_lossy(&b).trim().to_string()),
        Err(e) => {
            tracing::debug!(error = %e, "no AWS IMDSv2 token");
            None
        }
    }
}

async fn aws_headers(cfg: &CloudConfig) -> Vec<(&'static str, String)> {
    if !cfg.aws_imds_v2 {
        return Vec::new();
    }
    aws_token(cfg)
        .await
        .map(|t| vec![("X-aws-ec2-metadata-token", t)])
        .unwrap_or_default()
}

#[derive(serde::Deserialize, Default)]
struct AzureDoc {
    compute: Option<AzureCompute>,
}

#[derive(serde::Deserialize, Default)]
struct AzureCompute {
    #[serde(default, rename = "location")]
    region: String,
    #[serde(default, rename = "name")]
    instance_name: String,
    #[serde(default, rename = "vmId")]
    instance_id: String,
    #[serde(default, rename = "zone")]
    zone_id: String,
    #[serde(default, rename = "vmSize")]
    instance_type: String,
}

#[derive(serde::Deserialize, Default)]
struct HwMeta {
    #[serde(default)]
    uuid: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    instance_type: String,
    #[serde(default)]
    region_id: String,
    #[serde(default)]
    availability_zone: String,
}

#[derive(serde::Deserialize, Default)]
struct HwNetwork {
    #[serde(default)]
    networks: Vec<HwNet>,
    #[serde(default)]
    links: Vec<HwLink>,
}

#[derive(serde::Deserialize, Default)]
struct HwNet {
    #[serde(default, rename = "type")]
    kind: String,
}

#[derive(serde::Deserialize, Default)]
struct HwLink {
    #[serde(default)]
    local_ipv4: String,
}

async fn azure_doc(cfg: &CloudConfig) -> Option<AzureCompute> {
    let url = format!("{}?{AZURE_API}", cfg.base("azure"));
    let body = get(&url, &[("Metadata", "true".into())]).await?;
    serde_json::from_str::<AzureDoc>(&body).ok()?.compute
}

async fn hw_meta(cfg: &CloudConfig) -> Option<HwMeta> {
    let body = get(&cfg.openstack("meta_data.json"), &[]).await?;
    serde_json::from_str(&body).ok()
}

/// What one provider's metadata service says, with Datakit's keys (`cloud_provider`,
/// `description`, `instance_id`, `instance_name`, `instance_type`, `instance_charge_type`,
/// `instance_network_type`, `instance_status`, `security_group_id`, `private_ip`, `zone_id`,
/// `region`); what it does not answer is [`UNAVAILABLE`].
pub async fn sync(provider: &str, cfg: &CloudConfig) -> BTreeMap<String, String> {
    let base = cfg.base(provider);
    let u = |path: &str| format!("{base}{path}");
    let mut m: BTreeMap<String, String> = [
        "description",
        "instance_id",
        "instance_name",
        "instance_type",
        "instance_charge_type",
        "instance_network_type",
        "instance_status",
        "security_group_id",
        "private_ip",
        "zone_id",
        "region",
    ]
    .iter()
    .map(|k| (k.to_string(), UNAVAILABLE.to_string()))
    .collect();
    m.insert("cloud_provider".into(), provider.to_string());
    let mut put = |k: &str, v: Option<String>| {
        m.insert(k.to_string(), or_unavailable(v));
    };
    match provider {
        "aliyun" | "tencent" | "volcengine" => {
            let paths: &[(&str, &str)] = match provider {
                "aliyun" => &[
                    ("instance_id", "/instance-id"),
                    ("instance_type", "/instance/instance-type"),
                    ("instance_network_type", "/network-type"),
                    ("private_ip", "/private-ipv4"),
                    ("zone_id", "/zone-id"),
                    ("region", "/region-id"),
                ],
                "tencent" => &[
                    ("instance_id", "/instance-id"),
                    ("instance_name", "/instance-name"),
                    ("instance_type", "/instance/instance-type"),
                    ("instance_charge_type", "/payment/charge-type"),
                    ("security_group_id", "/instance/security-group"),
                    ("private_ip", "/local-ipv4"),
                    ("zone_id", "/placement/zone"),
                    ("region", "/placement/region"),
                ],
                _ => &[
                    ("instance_id", "/instance_id"),
                    ("instance_name", "/hostname"),
                    ("instance_type", "/instance_type_id"),
                    ("instance_charge_type", "/payment/charge_type"),
                    ("private_ip", "/private_ipv4"),
                    ("zone_id", "/availability_zone"),
                    ("region", "/region_id"),
                ],
            };
            let answers =
                futures::future::join_all(paths.iter().map(|(_, p)| get_owned(u(p), Vec::new())))
                    .await;
            for ((k, _), v) in paths.iter().zip(answers) {
                put(k, v);
            }
            if provider == "volcengine" {
                let mac = or_unavailable(get(&u("/mac"), &[]).await);
                let sg = get(
                    &u(&format!(
                        "/network/interfaces/macs/{mac}/security_group_ids"
                    )),
                    &[],
                )
                .await;
                put("security_group_id", sg);
            }
        }
        "aws" => {
            let headers = aws_headers(cfg).await;
            let paths = [
                ("instance_id", "/instance-id"),
                ("instance_type", "/instance-type"),
                ("security_group_id", "/security-groups"),
                ("private_ip", "/local-ipv4"),
                ("zone_id", "/placement/availability-zone-id"),
                ("region", "/placement/region"),
            ];
            let answers = futures::future::join_all(
                paths.iter().map(|(_, p)| get_owned(u(p), headers.clone())),
            )
            .await;
            for ((k, _), v) in paths.iter().zip(answers) {
                put(k, v);
            }
        }
        "azure" => {
            let (doc, ip) = futures::join!(
                azure_doc(cfg),
                get_owned(
                    u(&format!(
                        "/network/interface/0/ipv4/ipAddress/0/privateIpAddress?{AZURE_API}&format=text"
                    )),
                    vec![("Metadata", "true".into())],
                )
            );
            if let Some(c) = doc {
                put("instance_id", Some(c.instance_id));
                put("instance_name", Some(c.instance_name));
                put("instance_type", Some(c.instance_type));
                put("zone_id", Some(c.zone_id));
                put("region", Some(c.region));
            }
            put("private_ip", ip);
        }
        "hwcloud" => {
            let (meta, net, sg) = futures::join!(
                hw_meta(cfg),
                get_owned(cfg.openstack("network_data.json"), Vec::new()),
                get_owned(u("/security-groups"), Vec::new())
            );
            if let Some(h) = meta {
                put("instance_id", Some(h.uuid));
                put("instance_name", Some(h.name));
                put("instance_type", Some(h.instance_type));
                put("zone_id", Some(h.availability_zone));
                put("region", Some(h.region_id));
            }
            if let Some(n) = net.and_then(|b| serde_json::from_str::<HwNetwork>(&b).ok()) {
                // Datakit joins them with a space after each.
                put(
                    "instance_network_type",
                    Some(n.networks.iter().map(|x| format!("{} ", x.kind)).collect()),
                );
                put(
                    "private_ip",
                    Some(
                        n.links
                            .iter()
                            .map(|x| format!("{} ", x.local_ipv4))
                            .collect(),
                    ),
                );
            }
            put("security_group_id", sg);
        }
        _ => {}
    }
    m
}

async fn get_owned(url: String, headers: Vec<(&'static str, String)>) -> Option<String> {
    get(&url, &headers).await
}

/// Whether `provider`'s metadata service answers with an instance id (and, for AWS and Huawei
/// Cloud, which share an address, whether `/placement/availability-zone-id` answers: AWS only).
async fn answers(provider: &str, cfg: &CloudConfig) -> bool {
    let base = cfg.base(provider);
    let id = match provider {
        "azure" => azure_doc(cfg).await.map(|c| c.instance_id),
        "hwcloud" => hw_meta(cfg).await.map(|h| h.uuid),
        "volcengine" => get(&format!("{base}/instance_id"), &[]).await,
        "aws" => {
            let h = aws_headers(cfg).await;
            get(&format!("{base}/instance-id"), &h).await
        }
        _ => get(&format!("{base}/instance-id"), &[]).await,
    };
    if id.is_none_or(|i| i.is_empty() || i == UNAVAILABLE) {
        return false;
    }
    match provider {
        "aws" | "hwcloud" => {
            let h = if provider == "aws" {
                aws_headers(cfg).await
            } else {
                Vec::new()
            };
            let zone = get(&format!("{base}/placement/availability-zone-id"), &h).await;
            zone.is_some() == (provider == "aws")
        }
        _ => true,
    }
}

/// The provider this host runs on: every provider is asked at once, the first in Datakit's
/// order that answers wins.
pub async fn detect(cfg: &CloudConfig) -> Option<&'static str> {
    let found = futures::future::join_all(PROVIDERS.iter().map(|p| answers(p, cfg))).await;
    PROVIDERS
        .iter()
        .zip(found)
        .find_map(|(p, ok)| ok.then_some(*p))
}

/// The `HOST` tags of a metadata answer, as Datakit sets them: every key whose value is not
/// [`UNAVAILABLE`], and `extra_cloud_meta`, the whole answer as JSON.
pub fn host_tags(info: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut tags: Vec<(String, String)> = info
        .iter()
        .filter(|(_, v)| v.as_str() != UNAVAILABLE)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    tags.push((
        "extra_cloud_meta".into(),
        serde_json::to_string(info).unwrap_or_default(),
    ));
    tags
}

/// The background probe and its last answer.
pub struct CloudProbe {
    tags: watch::Receiver<Option<Vec<(String, String)>>>,
    first: std::sync::Arc<tokio::sync::Notify>,
}

impl CloudProbe {
    /// Starts probing on the current runtime (nothing when disabled or outside a runtime):
    /// detection unless a provider is set, then the provider's metadata every `interval`.
    /// The task ends when the probe is dropped.
    pub fn start(cfg: CloudConfig) -> CloudProbe {
        let (tx, rx) = watch::channel(None);
        let first = std::sync::Arc::new(tokio::sync::Notify::new());
        if !cfg.disabled
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let notify = first.clone();
            rt.spawn(async move {
                tokio::select! {
                    _ = tx.closed() => {}
                    _ = run(cfg, &tx, &notify) => {}
                }
            });
        }
        CloudProbe { tags: rx, first }
    }

    /// Notified once, when the first answer arrives (the input then collects at once rather
    /// than a whole interval later).
    pub fn first_answer(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.first.clone()
    }

    /// The tags of the last answer (`None` before the first, or without a cloud).
    pub fn tags(&self) -> Option<Vec<(String, String)>> {
        self.tags.borrow().clone()
    }

    /// Waits until the probe has an answer (tests, and callers that may wait).
    pub async fn answered(&mut self) -> Option<Vec<(String, String)>> {
        self.tags
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|t| t.clone())
    }
}

async fn run(
    cfg: CloudConfig,
    tx: &watch::Sender<Option<Vec<(String, String)>>>,
    first: &tokio::sync::Notify,
) {
    let mut provider: Option<String> = cfg.provider.clone();
    let mut last_detect: Option<tokio::time::Instant> = None;
    let period = cfg.interval.max(Duration::from_secs(1));
    loop {
        if provider.is_none() && last_detect.is_none_or(|t| t.elapsed() >= REDETECT) {
            provider = detect(&cfg).await.map(str::to_string);
            last_detect = Some(tokio::time::Instant::now());
            match &provider {
                Some(p) => {
                    tracing::info!(cloud_provider = %p, "hostobject: cloud provider detected")
                }
                None => tracing::info!(
                    "hostobject: no cloud metadata service answered; asking again in 24 h"
                ),
            }
        }
        if let Some(p) = &provider {
            let info = sync(p, &cfg).await;
            if tx.send_replace(Some(host_tags(&info))).is_none() {
                first.notify_one();
            }
        }
        tokio::time::sleep(period).await;
    }
}

/// Test fixtures: every provider's base URL on one fake metadata server.
#[cfg(test)]
pub(crate) mod fake {
    pub use dk_worker::testing::fake_http::FakeHttp as FakeMeta;
    use std::net::SocketAddr;

    /// Every provider's base URL on `addr`, under `/<provider>` (AWS under Datakit's
    /// `/latest/meta-data`).
    pub fn all_on(addr: SocketAddr) -> std::collections::BTreeMap<String, String> {
        super::PROVIDERS
            .iter()
            .map(|p| {
                let path = if *p == "aws" {
                    "/latest/meta-data".to_string()
                } else {
                    format!("/{p}")
                };
                (p.to_string(), format!("http://{addr}{path}"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{FakeMeta, all_on};
    use super::*;

    /// AWS's instance metadata answers (EC2 user guide, "Instance metadata categories").
    const AWS: &[(&str, &str)] = &[
        ("GET /latest/meta-data/instance-id", "i-0123456789abcdef0"),
        ("GET /latest/meta-data/instance-type", "t3.micro"),
        ("GET /latest/meta-data/security-groups", "web\nssh"),
        ("GET /latest/meta-data/local-ipv4", "172.31.5.9"),
        (
            "GET /latest/meta-data/placement/availability-zone-id",
            "use1-az4",
        ),
        ("GET /latest/meta-data/placement/region", "us-east-1"),
    ];

    /// Alibaba Cloud's ECS instance metadata answers ("Instance metadata" items).
    const ALIYUN: &[(&str, &str)] = &[
        ("GET /aliyun/instance-id", "i-bp67acfmxazb4ph****"),
        ("GET /aliyun/instance/instance-type", "ecs.g6.large"),
        ("GET /aliyun/network-type", "vpc"),
        ("GET /aliyun/private-ipv4", "192.168.0.12"),
        ("GET /aliyun/zone-id", "cn-hangzhou-i"),
        ("GET /aliyun/region-id", "cn-hangzhou"),
    ];

    fn cfg(addr: std::net::SocketAddr) -> CloudConfig {
        CloudConfig {
            meta_url: all_on(addr),
            interval: Duration::from_secs(300),
            ..CloudConfig::default()
        }
    }

    fn tag<'a>(tags: &'a [(String, String)], k: &str) -> Option<&'a str> {
        tags.iter().find(|(t, _)| t == k).map(|(_, v)| v.as_str())
    }

    #[tokio::test]
    async fn an_aws_metadata_service_gives_datakit_s_aws_tags() {
        let s = FakeMeta::start(AWS, None);
        let c = cfg(s.addr);
        assert_eq!(detect(&c).await, Some("aws"));
        let tags = host_tags(&sync("aws", &c).await);
        for (k, v) in [
            ("cloud_provider", "aws"),
            ("instance_id", "i-0123456789abcdef0"),
            ("instance_type", "t3.micro"),
            ("security_group_id", "web ssh"),
            ("private_ip", "172.31.5.9"),
            ("zone_id", "use1-az4"),
            ("region", "us-east-1"),
        ] {
            assert_eq!(tag(&tags, k), Some(v), "{k}: {tags:?}");
        }
        assert_eq!(
            tag(&tags, "instance_name"),
            None,
            "unavailable values are no tags"
        );
        let extra: BTreeMap<String, String> =
            serde_json::from_str(tag(&tags, "extra_cloud_meta").unwrap()).unwrap();
        assert_eq!(extra["instance_name"], "-");
        assert_eq!(extra["region"], "us-east-1");
        assert_eq!(extra.len(), 12);
    }

    #[tokio::test]
    async fn an_aliyun_metadata_service_gives_datakit_s_aliyun_tags() {
        let s = FakeMeta::start(ALIYUN, None);
        let c = cfg(s.addr);
        assert_eq!(detect(&c).await, Some("aliyun"));
        let tags = host_tags(&sync("aliyun", &c).await);
        for (k, v) in [
            ("cloud_provider", "aliyun"),
            ("instance_id", "i-bp67acfmxazb4ph****"),
            ("instance_type", "ecs.g6.large"),
            ("instance_network_type", "vpc"),
            ("private_ip", "192.168.0.12"),
            ("zone_id", "cn-hangzhou-i"),
            ("region", "cn-hangzhou"),
        ] {
            assert_eq!(tag(&tags, k), Some(v), "{k}: {tags:?}");
        }
    }

    #[tokio::test]
    async fn imds_v2_asks_for_a_token_with_the_interval_as_ttl_and_sends_it() {
        let mut routes = AWS.to_vec();
        routes.push(("PUT /latest/api/token", "TOKEN-1"));
        let s = FakeMeta::start(&routes, Some("TOKEN-1"));
        let mut c = cfg(s.addr);
        assert_eq!(detect(&c).await, None, "without a token IMDSv2 answers 401");
        c.aws_imds_v2 = true;
        c.token_url.insert("aws".into(), s.url("/latest/api/token"));
        assert_eq!(detect(&c).await, Some("aws"));
        let tags = host_tags(&sync("aws", &c).await);
        assert_eq!(tag(&tags, "region"), Some("us-east-1"));
        let seen = s.seen.lock().unwrap().clone();
        let put = seen.iter().find(|(m, _, _)| m == "PUT").unwrap();
        assert!(
            put.2
                .iter()
                .any(|(k, v)| k == "x-aws-ec2-metadata-token-ttl-seconds" && v == "300"),
            "{put:?}"
        );
    }

    #[tokio::test]
    async fn huawei_cloud_is_told_from_aws_by_the_missing_zone_id() {
        let s = FakeMeta::start(
            &[
                ("GET /latest/meta-data/instance-id", "abc"),
                (
                    "GET /openstack/latest/meta_data.json",
                    r#"{"uuid":"4a4f-uuid","name":"ecs-1","instance_type":"s6.small.1","region_id":"cn-north-4","availability_zone":"cn-north-4a"}"#,
                ),
                (
                    "GET /openstack/latest/network_data.json",
                    r#"{"links":[{"local_ipv4":"192.168.1.7"}],"networks":[{"type":"ipv4_dhcp"}]}"#,
                ),
            ],
            None,
        );
        let mut c = cfg(s.addr);
        c.meta_url
            .insert("hwcloud".into(), s.url("/latest/meta-data"));
        assert_eq!(detect(&c).await, Some("hwcloud"));
        let info = sync("hwcloud", &c).await;
        assert_eq!(info["instance_id"], "4a4f-uuid");
        assert_eq!(info["zone_id"], "cn-north-4a");
        assert_eq!(info["private_ip"], "192.168.1.7 ");
        assert_eq!(info["instance_network_type"], "ipv4_dhcp ");
    }

    #[tokio::test]
    async fn a_configured_provider_is_not_detected_but_synced() {
        let s = FakeMeta::start(
            &[
                ("GET /tencent/instance-id", "ins-abc"),
                ("GET /tencent/placement/region", "ap-guangzhou"),
            ],
            None,
        );
        let mut c = cfg(s.addr);
        c.provider = Some("tencent".into());
        let mut probe = CloudProbe::start(c);
        let tags = probe.answered().await.unwrap();
        assert_eq!(tag(&tags, "cloud_provider"), Some("tencent"));
        assert_eq!(tag(&tags, "region"), Some("ap-guangzhou"));
        assert!(
            s.paths().iter().all(|p| p.starts_with("GET /tencent/")),
            "{:?}",
            s.paths()
        );
    }
}
