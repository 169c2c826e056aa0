//! Progress output: indicatif bars redrawn in place on a terminal, one
//! plain status line per interval otherwise (pipes, CI), nothing with
//! `-q`. Log lines go through [`LogWriter`] so they never tear a bar.

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bittern_engine::{TorrentState, TorrentStatus};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::Mutex;

use crate::units::{format_duration, format_rate, format_size};

#[derive(Debug, Clone, Copy)]
struct Settings {
    quiet: bool,
    tty: bool,
    interval: Duration,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();
static MULTI: OnceLock<MultiProgress> = OnceLock::new();

/// Sets how progress is shown, once, from the global options.
pub fn configure(quiet: bool, interval: Duration) {
    let _ = SETTINGS.set(Settings {
        quiet,
        tty: std::io::stderr().is_terminal(),
        interval,
    });
}

fn settings() -> Settings {
    *SETTINGS.get_or_init(|| Settings {
        quiet: false,
        tty: false,
        interval: Duration::from_secs(2),
    })
}

fn multi() -> &'static MultiProgress {
    MULTI.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// Prints a note on stderr (not with `-q`), above any bars.
pub fn note(msg: &str) {
    let s = settings();
    if s.quiet {
        return;
    }
    if s.tty {
        let _ = multi().println(msg);
    } else {
        eprintln!("{msg}");
    }
}

/// A [`Write`] for the logger that clears the bars while a line is written.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        multi().suspend(|| std::io::stderr().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// A single byte-counting bar (hashing, verifying). `Sync`: pool threads
/// call [`Bar::set`].
pub struct Bar {
    bar: Option<ProgressBar>,
    plain: Option<Mutex<Instant>>,
    label: String,
    total: u64,
}

/// A bar over `total` bytes labelled `label` (hidden with `-q`).
pub fn bytes_bar(quiet: bool, total: u64, label: &str) -> Bar {
    let s = settings();
    let quiet = quiet || s.quiet;
    let bar = (!quiet && s.tty).then(|| {
        let style = ProgressStyle::with_template(
            "{prefix:>10} [{bar:40.cyan/blue}] {percent:>3}% {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let b = multi().add(ProgressBar::new(total).with_style(style));
        b.set_prefix(label.to_string());
        b
    });
    Bar {
        bar,
        plain: (!quiet && !s.tty).then(|| Mutex::new(Instant::now())),
        label: label.to_string(),
        total,
    }
}

impl Bar {
    /// Sets the position in bytes.
    pub fn set(&self, done: u64) {
        if let Some(b) = &self.bar {
            b.set_position(done);
        }
        if let Some(last) = &self.plain {
            // progress is cosmetic: a poisoned lock is still usable
            let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
            if last.elapsed() >= settings().interval {
                *last = Instant::now();
                let pct = percent(done, self.total);
                eprintln!(
                    "{}: {pct:.1}% ({} of {})",
                    self.label,
                    format_size(done),
                    format_size(self.total)
                );
            }
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
            multi().remove(b);
        }
    }
}

fn percent(done: u64, total: u64) -> f64 {
    if total == 0 {
        100.0
    } else {
        done as f64 * 100.0 / total as f64
    }
}

/// A torrent's state in a word.
pub fn state_word(s: &TorrentState) -> String {
    match s {
        TorrentState::FetchingMetadata => "fetching metadata".into(),
        TorrentState::Checking => "checking".into(),
        TorrentState::Downloading => "downloading".into(),
        TorrentState::Seeding => "seeding".into(),
        TorrentState::Paused => "paused".into(),
        TorrentState::Stopped => "stopped".into(),
        TorrentState::Error(e) => format!("error: {e}"),
    }
}

/// Upload ratio: uploaded over the torrent's wanted size.
pub fn ratio(s: &TorrentStatus) -> f64 {
    if s.wanted_bytes == 0 {
        0.0
    } else {
        s.uploaded as f64 / s.wanted_bytes as f64
    }
}

/// Rates, ETA, peers, ratio and state, for a bar message or a plain line.
pub fn status_text(s: &TorrentStatus) -> String {
    if s.state == TorrentState::FetchingMetadata {
        return fetching_text(s);
    }
    let eta = match (&s.state, s.eta) {
        (TorrentState::Downloading, Some(d)) => format_duration(d),
        (TorrentState::Downloading, None) => "?".into(),
        _ => "-".into(),
    };
    // Web seeds: their share of the download, while any runs or gave data.
    let web = if s.web_seeds > 0 || s.web_seed_downloaded > 0 {
        format!(
            " (web {} {}, {} seed{})",
            format_rate(s.web_seed_rate),
            format_size(s.web_seed_downloaded),
            s.web_seeds,
            if s.web_seeds == 1 { "" } else { "s" }
        )
    } else {
        String::new()
    };
    format!(
        "down {}{web} up {} eta {} peers {} ratio {:.2} {}",
        format_rate(s.download_rate),
        format_rate(s.upload_rate),
        eta,
        s.peers_connected,
        ratio(s),
        state_word(&s.state)
    )
}

/// The line of a torrent started from a magnet link before its size is
/// known.
fn fetching_text(s: &TorrentStatus) -> String {
    if s.peers_connecting > 0 {
        format!(
            "fetching metadata ({} peers, {} connecting)",
            s.peers_connected, s.peers_connecting
        )
    } else {
        format!("fetching metadata ({} peers)", s.peers_connected)
    }
}

/// A plain status line (without the label).
pub fn plain_line(s: &TorrentStatus) -> String {
    if s.state == TorrentState::FetchingMetadata {
        return fetching_text(s);
    }
    if s.state == TorrentState::Checking {
        return format!("checking data ({} pieces)", s.pieces_total);
    }
    format!(
        "{:.1}% ({} of {}) {}",
        s.progress * 100.0,
        format_size(s.have_bytes),
        format_size(s.wanted_bytes),
        status_text(s)
    )
}

/// The live display of several torrents.
pub struct Display {
    labels: Vec<String>,
    bars: Vec<ProgressBar>,
    plain: bool,
    last: Option<Instant>,
}

impl Display {
    /// One row per label.
    pub fn new(labels: Vec<String>) -> Display {
        let s = settings();
        let width = labels
            .iter()
            .map(|l| l.chars().count())
            .max()
            .unwrap_or(0)
            .min(24);
        let bars = if !s.quiet && s.tty {
            let template =
                format!("{{prefix:{width}.bold}} [{{bar:30.green/blue}}] {{percent:>3}}% {{msg}}");
            let style = ProgressStyle::with_template(&template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            labels
                .iter()
                .map(|l| {
                    let b = multi().add(ProgressBar::new(1).with_style(style.clone()));
                    b.set_prefix(truncate(l, 24));
                    b
                })
                .collect()
        } else {
            Vec::new()
        };
        Display {
            labels,
            bars,
            plain: !s.quiet && !s.tty,
            last: None,
        }
    }

    /// Shows `statuses` (same order as the labels); plain lines only once
    /// per interval unless `force`.
    pub fn update(&mut self, statuses: &[TorrentStatus], force: bool) {
        for (bar, s) in self.bars.iter().zip(statuses) {
            bar.set_length(s.wanted_bytes.max(1));
            bar.set_position(s.have_bytes);
            bar.set_message(status_text(s));
        }
        if self.plain {
            let due = self.last.is_none_or(|t| t.elapsed() >= settings().interval);
            if due || force {
                self.last = Some(Instant::now());
                for (label, s) in self.labels.iter().zip(statuses) {
                    eprintln!("{label}: {}", plain_line(s));
                }
            }
        }
    }

    /// Removes the bars (the last state stays printed on a terminal).
    pub fn finish(&self) {
        for b in &self.bars {
            b.abandon();
        }
    }
}

/// Above this many torrents the live display is one summary (bar or
/// line), not a row per torrent.
pub const DETAIL_LIMIT: usize = 16;

/// Time between plain status lines (`--status-interval`).
pub fn interval() -> Duration {
    settings().interval
}

/// Counters over many torrents, for one summary line.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Summary {
    /// Torrents counted.
    pub torrents: usize,
    /// Started from a magnet link, still fetching their metadata.
    pub fetching: usize,
    /// Still checking their data.
    pub checking: usize,
    /// Downloading.
    pub downloading: usize,
    /// Seeding.
    pub seeding: usize,
    /// Paused or stopped.
    pub stopped: usize,
    /// In an error state.
    pub errors: usize,
    /// Verified bytes.
    pub have_bytes: u64,
    /// Bytes wanted.
    pub wanted_bytes: u64,
    /// Sum of the download rates, bytes per second.
    pub download_rate: f64,
    /// Sum of the upload rates, bytes per second.
    pub upload_rate: f64,
    /// Connected peers.
    pub peers: usize,
}

impl Summary {
    /// Counts one torrent.
    pub fn add(&mut self, s: &TorrentStatus) {
        self.torrents += 1;
        match s.state {
            TorrentState::FetchingMetadata => self.fetching += 1,
            TorrentState::Checking => self.checking += 1,
            TorrentState::Downloading => self.downloading += 1,
            TorrentState::Seeding => self.seeding += 1,
            TorrentState::Paused | TorrentState::Stopped => self.stopped += 1,
            TorrentState::Error(_) => self.errors += 1,
        }
        self.have_bytes += s.have_bytes;
        self.wanted_bytes += s.wanted_bytes;
        self.download_rate += s.download_rate;
        self.upload_rate += s.upload_rate;
        self.peers += s.peers_connected;
    }

    /// The summary in one line.
    pub fn line(&self) -> String {
        let mut out = format!(
            "{} torrents: {} seeding, {} downloading, {} checking",
            self.torrents, self.seeding, self.downloading, self.checking
        );
        if self.fetching > 0 {
            out += &format!(", {} fetching metadata", self.fetching);
        }
        if self.stopped > 0 {
            out += &format!(", {} stopped", self.stopped);
        }
        if self.errors > 0 {
            out += &format!(", {} with errors", self.errors);
        }
        out += &format!(
            "; have {} of {}; down {} up {} peers {}",
            format_size(self.have_bytes),
            format_size(self.wanted_bytes),
            format_rate(self.download_rate),
            format_rate(self.upload_rate),
            self.peers
        );
        out
    }
}

/// The live display of many torrents: one bar over the torrents past
/// their startup check (on a terminal) or one line per interval.
pub struct Overview {
    bar: Option<ProgressBar>,
    plain: bool,
    last: Option<Instant>,
    total: usize,
}

impl Overview {
    /// A display for `total` torrents.
    pub fn new(total: usize) -> Overview {
        let s = settings();
        let bar = (!s.quiet && s.tty).then(|| {
            let style = ProgressStyle::with_template(
                "{prefix:>8.bold} [{bar:30.green/blue}] {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            let b = multi().add(ProgressBar::new(total as u64).with_style(style));
            b.set_prefix("adding");
            b
        });
        Overview {
            bar,
            plain: !s.quiet && !s.tty,
            last: None,
            total,
        }
    }

    fn due(&mut self, force: bool) -> bool {
        let due = self.last.is_none_or(|t| t.elapsed() >= settings().interval);
        if due || force {
            self.last = Some(Instant::now());
        }
        due || force
    }

    /// Shows that `added` of the torrents are in the session.
    pub fn adding(&mut self, added: usize) {
        if let Some(b) = &self.bar {
            b.set_position(added as u64);
        }
        if self.plain && self.due(added == self.total) {
            eprintln!("adding torrents: {added} of {}", self.total);
        }
    }

    /// Shows `s`: the bar counts the torrents past their startup check;
    /// plain lines come once per interval unless `force`.
    pub fn update(&mut self, s: &Summary, force: bool) {
        if let Some(b) = &self.bar {
            b.set_prefix(if s.checking > 0 {
                "checking"
            } else {
                "torrents"
            });
            b.set_position((s.torrents - s.checking) as u64);
            b.set_message(s.line());
        }
        if self.plain && self.due(force) {
            eprintln!("{}", s.line());
        }
    }

    /// Leaves the bar with its last state.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.abandon();
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('~');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bittern_engine::TorrentError;

    fn status(state: TorrentState) -> TorrentStatus {
        TorrentStatus {
            name: "t".into(),
            state,
            progress: 0.5,
            wanted_bytes: 1000,
            have_bytes: 500,
            downloaded: 500,
            uploaded: 250,
            download_rate: 2048.0,
            upload_rate: 0.0,
            eta: Some(Duration::from_secs(65)),
            peers_connected: 3,
            peers_connecting: 0,
            seeds_connected: 0,
            peers_known: 4,
            pieces_have: 1,
            pieces_total: 2,
            files: Vec::new(),
            hash_failures: 0,
            corrupt: 0,
            written: 500,
            web_seeds: 0,
            web_seed_downloaded: 0,
            web_seed_rate: 0.0,
        }
    }

    #[test]
    fn status_line() {
        let s = status(TorrentState::Downloading);
        assert_eq!(
            status_text(&s),
            "down 2.0 KiB/s up 0 B/s eta 1m05s peers 3 ratio 0.25 downloading"
        );
        let web = TorrentStatus {
            web_seeds: 1,
            web_seed_downloaded: 3 << 20,
            web_seed_rate: 1024.0,
            ..s.clone()
        };
        assert_eq!(
            status_text(&web),
            "down 2.0 KiB/s (web 1.0 KiB/s 3.0 MiB, 1 seed) up 0 B/s eta 1m05s peers 3 ratio 0.25 downloading"
        );
        let full = bittern_storage::Error::DiskFull {
            path: "/d/x.bin".into(),
        };
        let s = status(TorrentState::Error(TorrentError::Write(full.into())));
        assert!(status_text(&s).ends_with(
            "eta - peers 3 ratio 0.25 error: writing to disk: disk full while writing /d/x.bin"
        ));
    }

    #[test]
    fn fetching_metadata_line() {
        let mut s = status(TorrentState::FetchingMetadata);
        s.peers_connected = 2;
        assert_eq!(plain_line(&s), "fetching metadata (2 peers)");
        assert_eq!(status_text(&s), "fetching metadata (2 peers)");
        // Connections still in their handshakes are shown apart, not as peers.
        s.peers_connecting = 1;
        assert_eq!(plain_line(&s), "fetching metadata (2 peers, 1 connecting)");
    }

    #[test]
    fn summary_counts_states_and_sums() {
        let mut sum = Summary::default();
        sum.add(&status(TorrentState::Seeding));
        sum.add(&status(TorrentState::Checking));
        sum.add(&status(TorrentState::Downloading));
        sum.add(&status(TorrentState::Seeding));
        assert_eq!(
            (
                sum.torrents,
                sum.seeding,
                sum.checking,
                sum.downloading,
                sum.peers
            ),
            (4, 2, 1, 1, 12)
        );
        assert_eq!(
            sum.line(),
            "4 torrents: 2 seeding, 1 downloading, 1 checking; \
             have 2.0 KiB of 3.9 KiB; down 8.0 KiB/s up 0 B/s peers 12"
        );
        sum.add(&status(TorrentState::FetchingMetadata));
        assert_eq!(sum.fetching, 1);
        assert!(
            sum.line().starts_with(
                "5 torrents: 2 seeding, 1 downloading, 1 checking, 1 fetching metadata;"
            ),
            "{}",
            sum.line()
        );
    }

    #[test]
    fn truncates_labels() {
        assert_eq!(truncate("short", 24), "short");
        assert_eq!(truncate("abcdef", 4), "abc~");
    }
}
