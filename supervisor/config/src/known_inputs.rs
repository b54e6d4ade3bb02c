//! The input names Datakit 1.84 registers, to tell "not served yet" from "unknown".

/// Every input name Datakit 1.84.1 registers (from its `internal/plugins/inputs` packages),
/// sorted. `tailf` and `nvidia_smi` are Datakit's deprecated aliases of `logging` and `gpu_smi`.
pub const DATAKIT_INPUTS: &[&str] = &[
    "apache",
    "awslambda",
    "beats_output",
    "cassandra",
    "cat",
    "chrony",
    "clickhousev1",
    "cloudprober",
    "cockroachdb",
    "configwatcher",
    "consul",
    "container",
    "coredns",
    "couchbase",
    "couchdb",
    "cpu",
    "dameng",
    "db2",
    "ddtrace",
    "demo",
    "dialtesting",
    "disk",
    "diskio",
    "dk",
    "doris",
    "ebpf",
    "ebpftrace",
    "elasticsearch",
    "etcd",
    "external",
    "flinkv1",
    "gitlab",
    "gpu_smi",
    "graphite",
    "host_healthcheck",
    "host_processes",
    "hostdir",
    "hostobject",
    "iis",
    "influxdb",
    "ipmi",
    "jaeger",
    "jenkins",
    "jvm",
    "kafka",
    "kafkamq",
    "kingbase",
    "kube_state_metric",
    "kubernetesprometheus",
    "logfwdserver",
    "logging",
    "logstreaming",
    "lsblk",
    "mem",
    "memcached",
    "mongodb",
    "mysql",
    "neo4j",
    "net",
    "netflow",
    "netstat",
    "newrelic",
    "nfs",
    "nginx",
    "nsq",
    "nvidia_smi",
    "oceanbase",
    "opentelemetry",
    "oracle",
    "phpfpm",
    "pinpoint",
    "ploffload",
    "postgresql",
    "profile",
    "prom",
    "prom_remote_write",
    "promsd",
    "promtail",
    "promv2",
    "proxy",
    "pushgateway",
    "pyroscope",
    "pythond",
    "rabbitmq",
    "redis",
    "rum",
    "sensors",
    "skywalking",
    "smart",
    "snmp",
    "socket",
    "solr",
    "sqlserver",
    "ssh",
    "statsd",
    "swap",
    "system",
    "tailf",
    "tdengine",
    "tomcat",
    "vsphere",
    "windows_event",
    "windows_remote",
    "xfsquota",
    "zabbix_exporter",
    "zipkin",
];

/// The `default_enabled_inputs` Datakit's installer writes on Linux, less `container` (not
/// served) and `statsd` (it would bind UDP 8125 on every install; listed in docs/compat.md).
pub const DATAKIT_DEFAULT_ENABLED_INPUTS: &[&str] = &[
    "cpu",
    "disk",
    "diskio",
    "dk",
    "host_processes",
    "hostobject",
    "mem",
    "net",
    "swap",
    "system",
];

/// Whether Datakit 1.84 has an input called `name`.
pub fn is_datakit_input(name: &str) -> bool {
    DATAKIT_INPUTS.binary_search(&name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_is_sorted_and_unique() {
        assert!(DATAKIT_INPUTS.windows(2).all(|w| w[0] < w[1]));
        assert!(is_datakit_input("cpu"));
        assert!(is_datakit_input("zipkin"));
        assert!(!is_datakit_input("cpux"));
        assert!(
            DATAKIT_DEFAULT_ENABLED_INPUTS
                .iter()
                .all(|n| is_datakit_input(n))
        );
    }
}
