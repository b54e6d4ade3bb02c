//! The view as text sections (pure): the terminal UI and the one-shot text mode show the same
//! lines.

use super::model::{ApiRow, View};

/// Datakit's monitor modules (`-M`): the short and the long name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Module {
    /// `B`, `basic`: version, host, uptime, CPU, memory, election.
    Basic,
    /// `R`, `runtime`: the worker processes (pid, restarts and causes, RSS).
    Runtime,
    /// `In`, `inputs`: per input points, last feed, errors; the last errors.
    Inputs,
    /// `G`, `goroutine`: nothing here (no goroutines).
    Goroutine,
    /// `H`, `http`: the HTTP API per route.
    Http,
    /// `F`, `filter`: nothing here yet (no filters).
    Filter,
    /// `P`, `pipeline`: nothing here yet (no pipelines).
    Pipeline,
    /// `IO`, `io_stats`: the durable queue.
    Io,
    /// `W`, `dataway`: uploads per sink, Dataway requests.
    Dataway,
    /// `WAL`, `wal`: the durable queue (it is the WAL).
    Wal,
}

const MODULES: [(Module, &str, &str); 10] = [
    (Module::Basic, "B", "basic"),
    (Module::Runtime, "R", "runtime"),
    (Module::Inputs, "In", "inputs"),
    (Module::Goroutine, "G", "goroutine"),
    (Module::Http, "H", "http"),
    (Module::Filter, "F", "filter"),
    (Module::Pipeline, "P", "pipeline"),
    (Module::Io, "IO", "io_stats"),
    (Module::Dataway, "W", "dataway"),
    (Module::Wal, "WAL", "wal"),
];

/// The modules shown without `-M`.
pub const DEFAULT_MODULES: [Module; 6] = [
    Module::Basic,
    Module::Runtime,
    Module::Inputs,
    Module::Io,
    Module::Dataway,
    Module::Http,
];

/// Reads `-M` (`B,In` or `basic,inputs`, comma separated).
///
/// # Errors
/// The names that are no module, as Datakit reports them.
pub fn parse_modules(s: &str) -> Result<Vec<Module>, String> {
    let mut out = Vec::new();
    let mut wrong = Vec::new();
    for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match MODULES
            .iter()
            .find(|(_, short, long)| name == *short || name == *long)
        {
            Some((m, _, _)) => out.push(*m),
            None => wrong.push(name.to_string()),
        }
    }
    if wrong.is_empty() {
        Ok(out)
    } else {
        let known: Vec<String> = MODULES
            .iter()
            .map(|(_, s, l)| format!("{s} ({l})"))
            .collect();
        Err(format!(
            "has no module: {}; the modules are {}",
            wrong.join(","),
            known.join(", ")
        ))
    }
}

/// One titled block of lines.
#[derive(Clone, Debug, PartialEq)]
pub struct Section {
    /// The title.
    pub title: &'static str,
    /// The lines under it (a table's header first).
    pub lines: Vec<String>,
}

/// How to lay out tables.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// The widest a cell may be (`-W`); longer text is cut with `…`.
    pub max_cell: usize,
    /// Every row and full details (`-V`).
    pub verbose: bool,
}

/// `bytes` as `12.3 KiB`.
pub fn bytes(v: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = v.max(0.0);
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Seconds as `2h3m`, `5m2s`, `12s`.
pub fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// A latency in seconds as `850µs`, `12.3ms`, `1.20s`.
pub fn latency(secs: f64) -> String {
    if secs < 0.001 {
        format!("{:.0}µs", secs * 1e6)
    } else if secs < 1.0 {
        format!("{:.1}ms", secs * 1e3)
    } else {
        format!("{secs:.2}s")
    }
}

/// A count: whole numbers without decimals.
pub fn count(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "-".to_string(), f)
}

/// A table as lines: columns as wide as their widest cell (at most `max_cell`), two spaces
/// apart, trailing spaces trimmed.
pub fn table(header: &[&str], rows: &[Vec<String>], max_cell: usize) -> Vec<String> {
    let max_cell = max_cell.max(4);
    let cut = |s: &str| -> String {
        if s.chars().count() > max_cell {
            let mut t: String = s.chars().take(max_cell - 1).collect();
            t.push('…');
            t
        } else {
            s.to_string()
        }
    };
    let cells: Vec<Vec<String>> = std::iter::once(header.iter().map(|h| cut(h)).collect())
        .chain(rows.iter().map(|r| r.iter().map(|c| cut(c)).collect()))
        .collect();
    let mut widths = vec![0usize; header.len()];
    for row in &cells {
        for (i, c) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    cells
        .iter()
        .map(|row| {
            let mut line = String::new();
            for (i, c) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(c);
                let pad = widths
                    .get(i)
                    .map_or(0, |w| w.saturating_sub(c.chars().count()));
                line.extend(std::iter::repeat_n(' ', pad));
            }
            line.trim_end().to_string()
        })
        .collect()
}

fn pairs(v: &[(String, f64)]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.iter()
        .map(|(k, n)| format!("{k}:{}", count(*n)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The sections of `modules` for `view`.
pub fn sections(view: &View, modules: &[Module], layout: Layout) -> Vec<Section> {
    let w = layout.max_cell;
    let mut out = Vec::new();
    let want = |m: Module| modules.contains(&m);
    if want(Module::Basic) {
        let b = &view.basic;
        let mut lines = vec![
            format!(
                "Version {} ({})  {}  Host {}  Uptime {}",
                or_dash(&b.version),
                or_dash(&b.build),
                or_dash(&b.os_arch),
                or_dash(&b.hostname),
                opt(b.uptime, duration)
            ),
            format!(
                "CPU {}/{} cores  RSS {}  Workers {}  Files {}  Election {}{}",
                opt(b.cpu, |c| format!("{c:.1}%")),
                opt(b.cores, count),
                opt(b.rss, bytes),
                bytes(b.workers_rss),
                opt(b.open_files, count),
                or_dash(&b.election),
                if b.elected.is_empty() {
                    String::new()
                } else {
                    format!(" (leader {} in {})", b.elected, b.namespace)
                }
            ),
        ];
        if layout.verbose {
            lines.push(format!(
                "Container {}  Resource limit {}",
                or_dash(&b.docker),
                or_dash(&b.resource_limit)
            ));
        }
        out.push(Section {
            title: "Basic",
            lines,
        });
    }
    if want(Module::Inputs) {
        let rows: Vec<Vec<String>> = view
            .inputs
            .iter()
            .map(|r| {
                vec![
                    r.name.clone(),
                    or_dash(&r.category),
                    count(r.instances),
                    count(r.points),
                    opt(r.rate, |x| format!("{x:.1}")),
                    opt(r.last_feed_ago, |a| format!("{} ago", duration(a))),
                    count(r.errors),
                    count(r.dropped),
                ]
            })
            .collect();
        out.push(Section {
            title: "Inputs",
            lines: table(
                &[
                    "Input",
                    "Cat",
                    "N",
                    "Points",
                    "Pts/s",
                    "Last feed",
                    "Errors",
                    "Drops",
                ],
                &rows,
                w,
            ),
        });
    }
    if want(Module::Runtime) {
        let rows: Vec<Vec<String>> = view
            .workers
            .iter()
            .map(|r| {
                vec![
                    r.family.clone(),
                    if r.paused {
                        "paused".into()
                    } else if r.up {
                        "up".into()
                    } else {
                        "down".into()
                    },
                    r.pid.map_or_else(|| "-".into(), |p| p.to_string()),
                    count(r.restarts),
                    opt(r.rss, bytes),
                    pairs(&r.causes),
                ]
            })
            .collect();
        out.push(Section {
            title: "Workers",
            lines: table(
                &["Family", "State", "PID", "Restarts", "RSS", "Causes"],
                &rows,
                w,
            ),
        });
    }
    if want(Module::Io) || want(Module::Wal) {
        let rows: Vec<Vec<String>> = view
            .queue
            .iter()
            .enumerate()
            .map(|(i, r)| {
                // Drops are per category: on its first row only.
                let first = i == 0 || view.queue[i - 1].category != r.category;
                vec![
                    r.category.clone(),
                    r.sink.clone(),
                    count(r.pending),
                    if r.pending > 0.0 {
                        duration(r.oldest)
                    } else {
                        "-".into()
                    },
                    bytes(r.bytes),
                    if first {
                        pairs(&r.drops)
                    } else {
                        String::new()
                    },
                ]
            })
            .collect();
        let mut lines = vec![format!("Total {} on disk", bytes(view.queue_bytes))];
        lines.extend(table(
            &["Cat", "Sink", "Pending", "Oldest", "Bytes", "Drops"],
            &rows,
            w,
        ));
        out.push(Section {
            title: "Queue",
            lines,
        });
    }
    if want(Module::Dataway) {
        let rows: Vec<Vec<String>> = view
            .uploads
            .iter()
            .map(|r| {
                vec![
                    r.sink.clone(),
                    r.category.clone(),
                    count(r.ok),
                    count(r.failed),
                    count(r.retries),
                    opt(r.rate, |x| format!("{x:.1}")),
                ]
            })
            .collect();
        let mut lines = table(
            &["Sink", "Cat", "Points", "Failed", "Retries", "Pts/s"],
            &rows,
            w,
        );
        if !view.dataway.is_empty() {
            lines.extend(api_table(&view.dataway, false, w));
        }
        for (cat, err, n) in &view.dataway_drops {
            lines.push(format!("dropped {cat}: {} ({err})", count(*n)));
        }
        out.push(Section {
            title: "Uploads",
            lines,
        });
    }
    if want(Module::Http) {
        out.push(Section {
            title: "HTTP API",
            lines: api_table(&view.http, true, w),
        });
    }
    if want(Module::Inputs) && !view.errors.is_empty() {
        let n = if layout.verbose { view.errors.len() } else { 5 };
        let rows: Vec<Vec<String>> = view
            .errors
            .iter()
            .take(n)
            .map(|e| {
                vec![
                    format!("{} ago", duration(e.ago)),
                    e.input.clone(),
                    e.source.clone(),
                    e.error.replace('\n', " "),
                ]
            })
            .collect();
        out.push(Section {
            title: "Last errors",
            lines: table(&["When", "Input", "Source", "Error"], &rows, w),
        });
    }
    for (m, what) in [
        (
            Module::Goroutine,
            "goroutine: none (the agent has no goroutines)",
        ),
        (Module::Filter, "filter: no filters in this agent"),
        (Module::Pipeline, "pipeline: no pipelines in this agent"),
    ] {
        if want(m) {
            out.push(Section {
                title: "Note",
                lines: vec![what.to_string()],
            });
        }
    }
    out
}

fn api_table(rows: &[ApiRow], method: bool, w: usize) -> Vec<String> {
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut row = vec![r.api.clone()];
            if method {
                row.push(r.method.clone());
            }
            row.extend([r.status.clone(), count(r.count), opt(r.avg, latency)]);
            row
        })
        .collect();
    if method {
        table(&["Route", "Method", "Status", "Count", "Avg"], &body, w)
    } else {
        table(&["Dataway API", "Status", "Count", "Avg"], &body, w)
    }
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

/// The sections as plain text: each title, then its lines indented by two spaces.
pub fn text(sections: &[Section]) -> String {
    let mut out = String::new();
    for s in sections {
        out.push_str(s.title);
        out.push('\n');
        for l in &s.lines {
            out.push_str("  ");
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::model::{Filter, Scrape, view};
    use crate::monitor::prom::parse;

    const NOW: f64 = 1_796_318_130.0;

    fn sample_view() -> View {
        let page = include_str!("testdata/agent.prom");
        let cur = Scrape {
            samples: parse(page).unwrap(),
            at: NOW,
        };
        view(None, &cur, NOW, &Filter::default())
    }

    fn layout() -> Layout {
        Layout {
            max_cell: 128,
            verbose: false,
        }
    }

    #[test]
    fn modules_take_datakits_short_and_long_names_and_refuse_others() {
        assert_eq!(
            parse_modules("B,inputs, W ,WAL").unwrap(),
            [Module::Basic, Module::Inputs, Module::Dataway, Module::Wal]
        );
        let err = parse_modules("In,nope,X").unwrap_err();
        assert!(err.contains("has no module: nope,X"), "{err}");
        assert!(err.contains("In (inputs)"), "{err}");
    }

    #[test]
    fn tables_align_columns_and_cut_cells_wider_than_the_limit() {
        let lines = table(
            &["A", "Bee"],
            &[
                vec!["long-value".into(), "1".into()],
                vec!["x".into(), "22".into()],
            ],
            6,
        );
        assert_eq!(lines, ["A       Bee", "long-…  1", "x       22"]);
    }

    #[test]
    fn figures_read_as_people_write_them() {
        assert_eq!(bytes(45_466.0), "44.4 KiB");
        assert_eq!(bytes(12.0), "12 B");
        assert_eq!(duration(447.0), "7m27s");
        assert_eq!(duration(3725.0), "1h2m");
        assert_eq!(latency(0.000_765), "765µs");
        assert_eq!(latency(0.0123), "12.3ms");
        assert_eq!(count(3.0), "3");
        assert_eq!(count(2.5), "2.5");
    }

    #[test]
    fn the_default_sections_show_inputs_workers_queue_uploads_and_errors() {
        let text = text(&sections(&sample_view(), &DEFAULT_MODULES, layout()));
        for title in [
            "Basic\n",
            "Inputs\n",
            "Workers\n",
            "Queue\n",
            "Uploads\n",
            "HTTP API\n",
            "Last errors\n",
        ] {
            assert!(text.contains(title), "{title} in\n{text}");
        }
        let row = |start: &str| {
            text.lines()
                .find(|l| l.trim_start().starts_with(start))
                .unwrap_or_else(|| panic!("{start} in\n{text}"))
                .split_whitespace()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            row("statsd  logging"),
            [
                "statsd",
                "logging,metric",
                "2",
                "1010",
                "-",
                "3s",
                "ago",
                "5",
                "4"
            ]
        );
        assert_eq!(
            row("statsd  up"),
            [
                "statsd", "up", "26901", "3", "23.3", "MiB", "signal:2", "health:1"
            ]
        );
        assert_eq!(
            row("metric  dataway"),
            [
                "metric",
                "dataway",
                "88",
                "7m27s",
                "44.4",
                "KiB",
                "evicted_cap:5"
            ]
        );
        assert!(text.contains("Uptime 1h2m"), "{text}");
        assert!(text.contains("dropped metric: 3 (4xx)"), "{text}");
    }

    #[test]
    fn only_the_asked_modules_are_shown() {
        let s = sections(
            &sample_view(),
            &[Module::Runtime, Module::Goroutine],
            layout(),
        );
        let titles: Vec<&str> = s.iter().map(|s| s.title).collect();
        assert_eq!(titles, ["Workers", "Note"]);
    }
}
