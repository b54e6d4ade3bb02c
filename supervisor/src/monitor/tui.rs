//! The terminal drawing: a title line, sparklines of points/s and queue size, then the
//! sections, scrollable; keys `q`/Esc/Ctrl-C quit, arrows and PgUp/PgDn/Home/End scroll.

use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Sparkline};

use super::model::{self, History, Scrape};
use super::{Settings, Source, now_unix, render};

/// How many refreshes the sparklines remember.
const HISTORY: usize = 120;

/// One frame's content.
pub(crate) struct Screen<'a> {
    /// After "datakit monitor" on the first line.
    pub(crate) title: String,
    /// Points per second, one per refresh.
    pub(crate) points: &'a History,
    /// Whether a rate is known (two scrapes).
    pub(crate) have_rate: bool,
    /// Queue bytes, one per refresh.
    pub(crate) queue: &'a History,
    /// The sections' lines.
    pub(crate) body: Vec<Line<'a>>,
    /// Lines scrolled off the top.
    pub(crate) scroll: u16,
}

/// The body: an error line when the last scrape failed, then each section's title and lines.
pub(crate) fn body_lines<'a>(error: Option<&str>, sections: &[render::Section]) -> Vec<Line<'a>> {
    let mut body: Vec<Line<'a>> = Vec::new();
    if let Some(e) = error {
        for line in wrap(&format!("Error: {e}"), 78) {
            body.push(Line::styled(line, Style::default().fg(Color::Red)));
        }
    }
    for s in sections {
        body.push(Line::styled(
            s.title,
            Style::default()
                .fg(Color::Cyan)
                .add_modifier(Modifier::BOLD),
        ));
        body.extend(s.lines.iter().map(|l| Line::raw(format!("  {l}"))));
    }
    body
}

/// `text` in lines of at most `width` characters, broken at spaces where there are any.
pub(crate) fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let mut word = word.to_string();
        loop {
            let room = width - line.chars().count().min(width);
            let sep = usize::from(!line.is_empty());
            if word.chars().count() + sep <= room {
                if sep == 1 {
                    line.push(' ');
                }
                line.push_str(&word);
                break;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
                continue;
            }
            // A word longer than a line: cut it.
            let head: String = word.chars().take(width).collect();
            word = word.chars().skip(width).collect();
            lines.push(head);
            if word.is_empty() {
                break;
            }
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Draws one frame: the title line, the sparkline line, the body.
pub(crate) fn draw(f: &mut ratatui::Frame<'_>, screen: &Screen<'_>) {
    let [title, sparks, main] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
    ])
    .areas(f.area());
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(
                "datakit monitor ",
                Style::default().add_modifier(Modifier::BOLD),
            ),
            Span::raw(screen.title.clone()),
        ])),
        title,
    );
    let [pl, ps, ql, qs] = Layout::horizontal([
        Constraint::Length(18),
        Constraint::Fill(1),
        Constraint::Length(19),
        Constraint::Fill(1),
    ])
    .areas(sparks);
    f.render_widget(
        Paragraph::new(format!(
            " Pts/s {:>10} ",
            screen
                .points
                .last()
                .filter(|_| screen.have_rate)
                .map_or_else(|| "-".into(), |x| format!("{x:.1}"))
        )),
        pl,
    );
    let tail =
        |b: Vec<u64>, w: u16| -> Vec<u64> { b[b.len().saturating_sub(usize::from(w))..].to_vec() };
    f.render_widget(
        Sparkline::default()
            .data(tail(screen.points.bars(), ps.width))
            .style(Style::default().fg(Color::Green)),
        ps,
    );
    f.render_widget(
        Paragraph::new(format!(
            " Queue {:>11} ",
            screen
                .queue
                .last()
                .map_or_else(|| "-".into(), render::bytes)
        )),
        ql,
    );
    f.render_widget(
        Sparkline::default()
            .data(tail(screen.queue.bars(), qs.width))
            .style(Style::default().fg(Color::Yellow)),
        qs,
    );
    f.render_widget(
        Paragraph::new(screen.body.clone()).scroll((screen.scroll, 0)),
        main,
    );
}

/// Runs until a quit key; the terminal is restored on every exit path (also on panic, by
/// ratatui's hook).
pub(crate) fn run(src: &Source, settings: &Settings) -> std::io::Result<()> {
    let mut terminal = ratatui::try_init()?;
    let result = run_loop(&mut terminal, src, settings);
    ratatui::restore();
    result
}

fn run_loop(
    terminal: &mut ratatui::DefaultTerminal,
    src: &Source,
    settings: &Settings,
) -> std::io::Result<()> {
    let mut prev: Option<Scrape> = None;
    let mut cur: Option<Scrape> = None;
    let mut error: Option<String> = None;
    let mut points = History::new(HISTORY);
    let mut queue = History::new(HISTORY);
    let mut scroll: u16 = 0;
    let mut next = Instant::now();
    loop {
        if Instant::now() >= next {
            match src.scrape(now_unix()) {
                Ok(s) => {
                    prev = cur.take();
                    cur = Some(s);
                    error = None;
                }
                Err(e) => error = Some(e.to_string()),
            }
            next = Instant::now() + settings.refresh;
            if let Some(c) = &cur {
                let v = model::view(prev.as_ref(), c, c.at, &settings.filter);
                points.push(v.points_rate);
                queue.push(Some(v.queue_bytes));
            }
        }
        let view = cur.as_ref().map(|c| {
            model::view(
                prev.as_ref(),
                c,
                settings.now.unwrap_or_else(now_unix),
                &settings.filter,
            )
        });
        let sections = view
            .as_ref()
            .map(|v| render::sections(v, &settings.modules, settings.layout))
            .unwrap_or_default();
        let body = body_lines(error.as_deref(), &sections);
        let max_scroll = u16::try_from(body.len()).unwrap_or(u16::MAX);
        scroll = scroll.min(max_scroll.saturating_sub(1));
        let screen = Screen {
            title: format!(
                "{} every {}s  q quit, ↑↓ PgUp PgDn scroll",
                src.describe(),
                settings.refresh.as_secs()
            ),
            points: &points,
            have_rate: prev.is_some(),
            queue: &queue,
            body,
            scroll,
        };
        terminal.draw(|f| draw(f, &screen))?;
        let wait = next
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(1));
        if event::poll(wait)? {
            match event::read()? {
                Event::Key(k) if k.kind == KeyEventKind::Press => match k.code {
                    KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                    KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                        return Ok(());
                    }
                    KeyCode::Down | KeyCode::Char('j') => scroll = scroll.saturating_add(1),
                    KeyCode::Up | KeyCode::Char('k') => scroll = scroll.saturating_sub(1),
                    KeyCode::PageDown | KeyCode::Char(' ') => scroll = scroll.saturating_add(10),
                    KeyCode::PageUp => scroll = scroll.saturating_sub(10),
                    KeyCode::Home => scroll = 0,
                    KeyCode::End => scroll = max_scroll,
                    _ => {}
                },
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::model::{Filter, View};
    use crate::monitor::prom::parse;
    use ratatui::backend::TestBackend;

    const NOW: f64 = 1_796_318_130.0;

    fn sample_view() -> View {
        let cur = Scrape {
            samples: parse(include_str!("testdata/agent.prom")).unwrap(),
            at: NOW,
        };
        model::view(None, &cur, NOW, &Filter::default())
    }

    /// The screen as text, one string per row.
    fn frame(width: u16, height: u16, scroll: u16) -> Vec<String> {
        let view = sample_view();
        let sections = render::sections(
            &view,
            &render::DEFAULT_MODULES,
            render::Layout {
                max_cell: 128,
                verbose: false,
            },
        );
        let mut points = History::new(10);
        let mut queue = History::new(10);
        for i in 0..10 {
            points.push(Some(f64::from(i)));
            queue.push(Some(1000.0));
        }
        let screen = Screen {
            title: "http://127.0.0.1:9529/metrics every 5s".into(),
            points: &points,
            have_rate: true,
            queue: &queue,
            body: body_lines(Some("cannot read x"), &sections),
            scroll,
        };
        let mut terminal = ratatui::Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|f| draw(f, &screen)).unwrap();
        let buf = terminal.backend().buffer().clone();
        (0..height)
            .map(|y| {
                (0..width)
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect()
    }

    #[test]
    fn an_80_by_24_terminal_shows_the_inputs_workers_and_queue_on_the_first_screen() {
        let rows = frame(80, 24, 0);
        let screen = rows.join("\n");
        assert!(
            rows[0].starts_with("datakit monitor http://127.0.0.1:9529"),
            "{screen}"
        );
        assert!(rows[1].contains("Pts/s        9.0"), "{screen}");
        assert!(rows[1].contains("Queue      1000 B"), "{screen}");
        assert!(rows[1].contains('█'), "the sparkline is drawn: {screen}");
        assert!(rows[2].starts_with("Error: cannot read x"), "{screen}");
        for needle in [
            "Inputs",
            "  statsd  logging,metric",
            "Workers",
            "  statsd  up     26901",
            "Queue",
            "  metric  dataway  88",
        ] {
            assert!(
                rows.iter().any(|r| r.starts_with(needle)),
                "{needle:?} in\n{screen}"
            );
        }
    }

    #[test]
    fn long_errors_wrap_at_spaces_and_long_words_are_cut() {
        assert_eq!(
            wrap("Error: cannot read http://x/metrics: refused", 20),
            ["Error: cannot read", "http://x/metrics:", "refused"]
        );
        assert_eq!(wrap("abcdefghij kl", 4), ["abcd", "efgh", "ij", "kl"]);
    }

    #[test]
    fn scrolling_brings_the_lower_sections_into_view() {
        let first = frame(80, 24, 0).join("\n");
        assert!(!first.contains("Last errors"), "{first}");
        let scrolled = frame(80, 24, 20).join("\n");
        assert!(scrolled.contains("Last errors"), "{scrolled}");
        assert!(scrolled.contains("HTTP API"), "{scrolled}");
    }
}
