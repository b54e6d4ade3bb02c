//! From scrapes to what the monitor shows (pure): rows per input, worker family, queue, sink,
//! API route and error, with rates from the previous scrape.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::prom::Sample;

/// One scrape of `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct Scrape {
    /// Every sample of the page.
    pub samples: Vec<Sample>,
    /// When it was taken, unix seconds.
    pub at: f64,
}

impl Scrape {
    /// Samples of series `name`.
    fn series<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }

    /// The sum of series `name` over the samples `keep` accepts.
    fn sum(&self, name: &str, keep: impl Fn(&Sample) -> bool) -> f64 {
        self.series(name)
            .filter(|s| keep(s))
            .map(|s| s.value)
            .filter(|v| v.is_finite())
            .fold(0.0, |a, b| a + b)
    }

    /// The value of an unlabelled series.
    fn one(&self, name: &str) -> Option<f64> {
        self.series(name).next().map(|s| s.value)
    }

    /// The distinct values of label `key` on series `name`.
    fn label_values(&self, name: &str, key: &str) -> BTreeSet<String> {
        self.series(name)
            .map(|s| s.label(key).to_string())
            .collect()
    }
}

/// Per second between two readings `dt` seconds apart; a counter that went down (the agent
/// restarted) counts from zero.
pub fn rate(before: f64, after: f64, dt: f64) -> Option<f64> {
    if dt <= 0.0 {
        return None;
    }
    let delta = if after >= before {
        after - before
    } else {
        after
    };
    Some(delta / dt)
}

/// Basic information about the agent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Basic {
    /// `datakit_uptime_seconds` labels.
    pub version: String,
    /// The build identity.
    pub build: String,
    /// `linux/x86_64`.
    pub os_arch: String,
    /// The host name the agent reports.
    pub hostname: String,
    /// `true` in a container.
    pub docker: String,
    /// `[resource_limit]` as applied.
    pub resource_limit: String,
    /// Seconds since start.
    pub uptime: Option<f64>,
    /// Supervisor CPU percent (100 = one core).
    pub cpu: Option<f64>,
    /// CPUs the agent may use.
    pub cores: Option<f64>,
    /// Supervisor RSS bytes.
    pub rss: Option<f64>,
    /// Workers' RSS bytes, summed.
    pub workers_rss: f64,
    /// Supervisor open files.
    pub open_files: Option<f64>,
    /// Election: `status` label (`disabled`, `success`, `fail`, ...).
    pub election: String,
    /// Election: who leads.
    pub elected: String,
    /// Election: namespace.
    pub namespace: String,
}

/// One input.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InputRow {
    /// Input name.
    pub name: String,
    /// Categories it fed, joined by `,`.
    pub category: String,
    /// Configured instances.
    pub instances: f64,
    /// Points fed since start.
    pub points: f64,
    /// Points per second since the previous scrape.
    pub rate: Option<f64>,
    /// Seconds since its last feed.
    pub last_feed_ago: Option<f64>,
    /// Errors recorded for it (`datakit_error_total{source}` and parse errors).
    pub errors: f64,
    /// Points or events it dropped (`datakit_input_dropped_total`).
    pub dropped: f64,
}

/// One worker family (process).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkerRow {
    /// The family name.
    pub family: String,
    /// Connected and healthy.
    pub up: bool,
    /// Its pid, when known.
    pub pid: Option<u32>,
    /// Restarts since the agent started.
    pub restarts: f64,
    /// Restarts by cause, most first: `signal:2 health:1`.
    pub causes: Vec<(String, f64)>,
    /// Resident memory at its last health check.
    pub rss: Option<f64>,
    /// Election-aware inputs paused.
    pub paused: bool,
}

/// One queue (category, sink).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueueRow {
    /// The category.
    pub category: String,
    /// The sink reading it.
    pub sink: String,
    /// Points waiting for this sink.
    pub pending: f64,
    /// Age of the oldest waiting point, seconds.
    pub oldest: f64,
    /// Bytes on disk for the category (all sinks).
    pub bytes: f64,
    /// Points of the category dropped, by reason.
    pub drops: Vec<(String, f64)>,
}

/// Uploads of one sink and category.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UploadRow {
    /// The sink.
    pub sink: String,
    /// The category.
    pub category: String,
    /// Points written.
    pub ok: f64,
    /// Points whose write failed (per attempt).
    pub failed: f64,
    /// Writes to retry.
    pub retries: f64,
    /// Points written per second since the previous scrape.
    pub rate: Option<f64>,
}

/// Requests of one (api, status): the HTTP API's routes or Dataway's.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ApiRow {
    /// The route or Dataway API path.
    pub api: String,
    /// The method (empty for Dataway).
    pub method: String,
    /// HTTP status text or transport error.
    pub status: String,
    /// Requests.
    pub count: f64,
    /// Mean latency, seconds.
    pub avg: Option<f64>,
}

/// One recorded error.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ErrorRow {
    /// Input or component.
    pub input: String,
    /// Source.
    pub source: String,
    /// The error text.
    pub error: String,
    /// Seconds ago.
    pub ago: f64,
}

/// Everything one screen shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct View {
    /// Basic info.
    pub basic: Basic,
    /// Inputs.
    pub inputs: Vec<InputRow>,
    /// Worker families.
    pub workers: Vec<WorkerRow>,
    /// Queues.
    pub queue: Vec<QueueRow>,
    /// Sink uploads.
    pub uploads: Vec<UploadRow>,
    /// Dataway requests.
    pub dataway: Vec<ApiRow>,
    /// Dataway points dropped, by category and error.
    pub dataway_drops: Vec<(String, String, f64)>,
    /// HTTP API routes.
    pub http: Vec<ApiRow>,
    /// Recorded errors, newest first.
    pub errors: Vec<ErrorRow>,
    /// Points fed per second, all inputs.
    pub points_rate: Option<f64>,
    /// Queue bytes, all categories.
    pub queue_bytes: f64,
}

/// What to show.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Only these inputs (`-I`); empty for all.
    pub inputs: Vec<String>,
    /// Every row, empty queues included (`-V`).
    pub verbose: bool,
}

impl Filter {
    fn input(&self, name: &str) -> bool {
        self.inputs.is_empty() || self.inputs.iter().any(|i| i == name)
    }
}

/// The view of `cur`, with rates against `prev` (the previous scrape) when given; `now` is
/// the time "ago" columns count from (unix seconds).
pub fn view(prev: Option<&Scrape>, cur: &Scrape, now: f64, filter: &Filter) -> View {
    let dt = prev.map_or(0.0, |p| cur.at - p.at);
    let rate_of = |name: &str, keep: &dyn Fn(&Sample) -> bool| {
        prev.and_then(|p| rate(p.sum(name, keep), cur.sum(name, keep), dt))
    };
    let mut v = View {
        basic: basic(cur),
        ..View::default()
    };

    // Inputs.
    let mut names = cur.label_values("datakit_inputs_instance", "input");
    names.extend(cur.label_values("datakit_io_feed_point_total", "name"));
    for name in names.into_iter().filter(|n| filter.input(n)) {
        let of_name = |s: &Sample| s.label("name") == name;
        let of_input = |s: &Sample| s.label("input") == name;
        let cats: BTreeSet<&str> = cur
            .series("datakit_io_feed_point_total")
            .filter(|s| of_name(s))
            .map(|s| s.label("category"))
            .collect();
        let last = cur
            .series("datakit_io_last_feed_timestamp_seconds")
            .filter(|s| of_name(s))
            .map(|s| s.value)
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
        v.inputs.push(InputRow {
            category: cats.into_iter().collect::<Vec<_>>().join(","),
            instances: cur.sum("datakit_inputs_instance", of_input),
            points: cur.sum("datakit_io_feed_point_total", of_name),
            rate: rate_of("datakit_io_feed_point_total", &of_name),
            last_feed_ago: last.map(|t| (now - t).max(0.0)),
            errors: cur.sum("datakit_error_total", |s| s.label("source") == name)
                + cur.sum("datakit_input_parse_errors_total", of_input),
            dropped: cur.sum("datakit_input_dropped_total", of_input),
            name,
        });
    }
    v.points_rate = rate_of("datakit_io_feed_point_total", &|_| true);

    // Worker families.
    let mut families = cur.label_values("datakit_worker_up", "family");
    families.extend(cur.label_values("datakit_worker_restarts_total", "family"));
    for family in families {
        let of = |s: &Sample| s.label("family") == family;
        let mut causes: Vec<(String, f64)> = cur
            .series("datakit_worker_restarts_total")
            .filter(|s| of(s) && s.value > 0.0)
            .map(|s| (s.label("cause").to_string(), s.value))
            .collect();
        causes.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let first = |name: &str| cur.series(name).find(|s| of(s)).map(|s| s.value);
        v.workers.push(WorkerRow {
            up: first("datakit_worker_up").is_some_and(|x| x > 0.0),
            pid: first("datakit_process_pid")
                .filter(|p| *p > 0.0)
                .map(|p| p as u32),
            restarts: causes.iter().fold(0.0, |a, c| a + c.1),
            causes,
            rss: first("datakit_worker_rss_bytes"),
            paused: first("datakit_worker_paused").is_some_and(|x| x > 0.0),
            family,
        });
    }
    v.basic.workers_rss = cur.sum("datakit_worker_rss_bytes", |_| true);

    // Queue.
    let mut queues: BTreeSet<(String, String)> = cur
        .series("datakit_io_queue_points")
        .map(|s| (s.label("category").to_string(), s.label("sink").to_string()))
        .collect();
    queues.extend(
        cur.series("datakit_io_queue_oldest_seconds")
            .map(|s| (s.label("category").to_string(), s.label("sink").to_string())),
    );
    for (category, sink) in queues {
        let of = |s: &Sample| s.label("category") == category && s.label("sink") == sink;
        let mut drops: Vec<(String, f64)> = cur
            .series("datakit_io_dropped_point_total")
            .filter(|s| s.label("category") == category && s.value > 0.0)
            .map(|s| (s.label("reason").to_string(), s.value))
            .collect();
        drops.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let row = QueueRow {
            pending: cur.sum("datakit_io_queue_points", of),
            oldest: cur.sum("datakit_io_queue_oldest_seconds", of),
            bytes: cur.sum("datakit_io_queue_bytes", |s| {
                s.label("category") == category
            }),
            drops,
            category,
            sink,
        };
        if filter.verbose || row.pending > 0.0 || row.bytes > 0.0 || !row.drops.is_empty() {
            v.queue.push(row);
        }
    }
    v.queue_bytes = cur.sum("datakit_io_queue_bytes", |_| true);

    // Uploads.
    let mut sinks: BTreeSet<(String, String)> = cur
        .series("datakit_io_sink_point_total")
        .map(|s| (s.label("sink").to_string(), s.label("category").to_string()))
        .collect();
    sinks.extend(
        cur.series("datakit_io_sink_retry_total")
            .map(|s| (s.label("sink").to_string(), s.label("category").to_string())),
    );
    for (sink, category) in sinks {
        let of = |s: &Sample| s.label("sink") == sink && s.label("category") == category;
        let ok = |s: &Sample| of(s) && s.label("status") == "ok";
        v.uploads.push(UploadRow {
            ok: cur.sum("datakit_io_sink_point_total", ok),
            failed: cur.sum("datakit_io_sink_point_total", |s| {
                of(s) && s.label("status") != "ok"
            }),
            retries: cur.sum("datakit_io_sink_retry_total", of),
            rate: rate_of("datakit_io_sink_point_total", &ok),
            sink,
            category,
        });
    }
    v.dataway = api_rows(cur, "datakit_io_dataway_api_latency_seconds", None);
    v.dataway_drops = cur
        .series("datakit_io_dataway_http_drop_point_total")
        .filter(|s| s.value > 0.0)
        .map(|s| {
            (
                s.label("category").to_string(),
                s.label("error").to_string(),
                s.value,
            )
        })
        .collect();
    v.http = api_rows(
        cur,
        "datakit_http_api_elapsed_seconds",
        Some("datakit_http_api_total"),
    );

    // Errors, newest first.
    v.errors = cur
        .series("datakit_last_err")
        .map(|s| ErrorRow {
            input: s.label("input").to_string(),
            source: s.label("source").to_string(),
            error: s.label("error").to_string(),
            ago: (now - s.value).max(0.0),
        })
        .collect();
    v.errors.sort_by(|a, b| a.ago.total_cmp(&b.ago));
    v
}

/// Rows of a latency histogram `{api, [method,] status}` (`_count`, `_sum`), or of the
/// counter `total` when given (requests that have no latency yet still count).
fn api_rows(cur: &Scrape, histogram: &str, total: Option<&str>) -> Vec<ApiRow> {
    type Key = (String, String, String);
    let key = |s: &Sample| -> Key {
        (
            s.label("api").to_string(),
            s.label("method").to_string(),
            s.label("status").to_string(),
        )
    };
    let mut rows: BTreeMap<Key, (f64, f64, f64)> = BTreeMap::new();
    let count_name = format!("{histogram}_count");
    let sum_name = format!("{histogram}_sum");
    for s in &cur.samples {
        let slot = if s.name == count_name {
            1
        } else if s.name == sum_name {
            2
        } else if Some(s.name.as_str()) == total {
            0
        } else {
            continue;
        };
        let e = rows.entry(key(s)).or_default();
        match slot {
            0 => e.0 += s.value,
            1 => e.1 += s.value,
            _ => e.2 += s.value,
        }
    }
    rows.into_iter()
        .map(|((api, method, status), (total_n, count, sum))| ApiRow {
            api,
            method,
            status,
            count: if total.is_some() {
                total_n.max(count)
            } else {
                count
            },
            avg: (count > 0.0).then(|| sum / count),
        })
        .collect()
}

fn basic(cur: &Scrape) -> Basic {
    let mut b = Basic::default();
    if let Some(s) = cur.series("datakit_uptime_seconds").next() {
        b.version = s.label("version").to_string();
        b.build = s.label("build_at").to_string();
        b.os_arch = s.label("os_arch").to_string();
        b.hostname = s.label("hostname").to_string();
        b.docker = s.label("docker").to_string();
        b.resource_limit = s.label("resource_limit").to_string();
        b.uptime = Some(s.value);
    }
    b.cpu = cur.one("datakit_cpu_usage");
    b.cores = cur.one("datakit_cpu_cores");
    b.rss = cur.one("datakit_sys_alloc_bytes");
    b.open_files = cur.one("datakit_open_files");
    if let Some(s) = cur.series("datakit_election_status").next() {
        b.election = s.label("status").to_string();
        b.elected = s.label("elected_id").to_string();
        b.namespace = s.label("namespace").to_string();
    }
    b
}

/// The last values of a series for a sparkline, oldest first.
#[derive(Clone, Debug)]
pub struct History {
    values: VecDeque<f64>,
    cap: usize,
}

impl History {
    /// Keeps up to `cap` values.
    pub fn new(cap: usize) -> Self {
        History {
            values: VecDeque::with_capacity(cap),
            cap: cap.max(1),
        }
    }

    /// Adds the newest value (a missing one counts as 0), dropping the oldest past the cap.
    pub fn push(&mut self, v: Option<f64>) {
        if self.values.len() == self.cap {
            self.values.pop_front();
        }
        self.values
            .push_back(v.filter(|x| x.is_finite()).unwrap_or(0.0).max(0.0));
    }

    /// The values as sparkline bars (rounded up so any activity shows).
    pub fn bars(&self) -> Vec<u64> {
        self.values.iter().map(|v| v.ceil() as u64).collect()
    }

    /// The newest value.
    pub fn last(&self) -> Option<f64> {
        self.values.back().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::prom::parse;

    pub(crate) const PAGE: &str = include_str!("testdata/agent.prom");
    const NOW: f64 = 1_796_318_130.0;

    fn scrape(text: &str, at: f64) -> Scrape {
        Scrape {
            samples: parse(text).unwrap(),
            at,
        }
    }

    #[test]
    fn inputs_join_feeds_instances_last_feed_errors_and_drops() {
        let v = view(None, &scrape(PAGE, NOW), NOW, &Filter::default());
        let names: Vec<&str> = v.inputs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["mem", "statsd"]);
        let s = &v.inputs[1];
        assert_eq!(s.category, "logging,metric");
        assert_eq!(s.instances, 2.0);
        assert_eq!(s.points, 1010.0);
        assert_eq!(s.rate, None, "no rate from one scrape");
        assert_eq!(
            s.last_feed_ago,
            Some(2.5),
            "the newest feed of any category"
        );
        assert_eq!(s.errors, 5.0, "2 recorded errors + 3 parse errors");
        assert_eq!(s.dropped, 4.0);
        assert_eq!(v.inputs[0].errors, 0.0);
        assert!(v.inputs[0].errors.is_sign_positive(), "no -0 on screen");
    }

    #[test]
    fn rates_come_from_two_scrapes_and_a_reset_counts_from_zero() {
        let before = scrape(PAGE, NOW - 5.0);
        let after = scrape(
            &PAGE.replace(
                "{name=\"statsd\",category=\"metric\"} 1000",
                "{name=\"statsd\",category=\"metric\"} 1500",
            ),
            NOW,
        );
        let v = view(Some(&before), &after, NOW, &Filter::default());
        assert_eq!(v.inputs[1].rate, Some(100.0));
        assert_eq!(v.inputs[0].rate, Some(0.0));
        assert_eq!(v.points_rate, Some(100.0));
        assert_eq!(rate(1000.0, 50.0, 5.0), Some(10.0), "agent restarted");
        assert_eq!(rate(1.0, 2.0, 0.0), None);
    }

    #[test]
    fn workers_carry_pid_restarts_by_cause_and_rss() {
        let v = view(None, &scrape(PAGE, NOW), NOW, &Filter::default());
        let statsd = v.workers.iter().find(|w| w.family == "statsd").unwrap();
        assert!(statsd.up && !statsd.paused);
        assert_eq!(statsd.pid, Some(26901));
        assert_eq!(statsd.restarts, 3.0);
        assert_eq!(
            statsd.causes,
            vec![("signal".to_string(), 2.0), ("health".to_string(), 1.0)]
        );
        assert_eq!(statsd.rss, Some(24_469_504.0));
        let host = v.workers.iter().find(|w| w.family == "host").unwrap();
        assert_eq!(host.restarts, 0.0);
        assert!(
            host.causes.is_empty(),
            "causes that never happened are left out"
        );
        assert_eq!(v.basic.workers_rss, 24_322_048.0 + 24_469_504.0);
    }

    #[test]
    fn empty_queues_are_left_out_unless_verbose() {
        let v = view(None, &scrape(PAGE, NOW), NOW, &Filter::default());
        let rows: Vec<(&str, &str)> = v
            .queue
            .iter()
            .map(|q| (q.category.as_str(), q.sink.as_str()))
            .collect();
        assert_eq!(rows, [("metric", "dataway"), ("metric", "local")]);
        assert_eq!(v.queue[0].pending, 88.0);
        assert_eq!(v.queue[0].oldest, 447.0);
        assert_eq!(v.queue[0].bytes, 45_466.0);
        assert_eq!(v.queue[0].drops, vec![("evicted_cap".to_string(), 5.0)]);
        assert_eq!(v.queue_bytes, 45_466.0);
        let all = view(
            None,
            &scrape(PAGE, NOW),
            NOW,
            &Filter {
                verbose: true,
                ..Filter::default()
            },
        );
        assert_eq!(all.queue.len(), 4);
    }

    #[test]
    fn uploads_and_requests_show_counts_statuses_and_mean_latency() {
        let v = view(None, &scrape(PAGE, NOW), NOW, &Filter::default());
        let dw = v.uploads.iter().find(|u| u.sink == "dataway").unwrap();
        assert_eq!((dw.ok, dw.failed, dw.retries), (0.0, 28.0, 7.0));
        let local = v.uploads.iter().find(|u| u.sink == "local").unwrap();
        assert_eq!((local.ok, local.failed), (1050.0, 0.0));
        assert_eq!(v.dataway.len(), 1);
        assert_eq!(v.dataway[0].status, "connection-refused");
        assert_eq!(v.dataway[0].count, 7.0);
        assert!((v.dataway[0].avg.unwrap() - 0.001).abs() < 1e-9);
        assert_eq!(
            v.dataway_drops,
            vec![("metric".to_string(), "4xx".to_string(), 3.0)]
        );
        let write = v.http.iter().find(|r| r.api == "/v1/write/metric").unwrap();
        assert_eq!((write.method.as_str(), write.count), ("POST", 4.0));
        assert!((write.avg.unwrap() - 0.001).abs() < 1e-9);
        let ping = v.http.iter().find(|r| r.api == "/v1/ping").unwrap();
        assert_eq!((ping.count, ping.avg), (1.0, None));
    }

    #[test]
    fn errors_are_newest_first_and_basic_info_comes_from_the_uptime_labels() {
        let v = view(None, &scrape(PAGE, NOW), NOW, &Filter::default());
        assert_eq!(v.errors.len(), 2);
        assert_eq!(v.errors[0].input, "statsd");
        assert_eq!(v.errors[0].error, "bad packet, \"x\"");
        assert_eq!(v.errors[0].ago, 10.0);
        assert_eq!(v.errors[1].input, "worker/statsd");
        let b = &v.basic;
        assert_eq!(
            (b.version.as_str(), b.hostname.as_str(), b.uptime),
            ("1.84.1", "vm", Some(3725.0))
        );
        assert_eq!((b.cores, b.open_files), (Some(2.0), Some(60.0)));
        assert_eq!(b.election, "disabled");
    }

    #[test]
    fn the_input_filter_keeps_only_the_named_inputs() {
        let v = view(
            None,
            &scrape(PAGE, NOW),
            NOW,
            &Filter {
                inputs: vec!["mem".into()],
                verbose: false,
            },
        );
        assert_eq!(v.inputs.len(), 1);
        assert_eq!(v.inputs[0].name, "mem");
    }

    #[test]
    fn history_keeps_the_newest_values_for_the_sparkline() {
        let mut h = History::new(3);
        for v in [Some(1.2), None, Some(f64::NAN), Some(7.0), Some(-1.0)] {
            h.push(v);
        }
        assert_eq!(h.bars(), vec![0, 7, 0]);
        assert_eq!(h.last(), Some(0.0));
    }
}
