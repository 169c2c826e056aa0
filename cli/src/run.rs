//! `bittern download` and `bittern seed`: one session for every torrent
//! given, a live display, a graceful stop on the first Ctrl-C, and one
//! summary line per torrent on exit.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use bittern_engine::{
    Error as EngineError, SeedGoal, Session, SessionConfig, TorrentHandle, TorrentOptions,
    TorrentState, TorrentStatus,
};
use bittern_wire::Metainfo;

use crate::args::{DownloadArgs, PeerArgs, SeedArgs};
use crate::exit::{coded, Code};
use crate::glob;
use crate::load::{self, TorrentArg};
use crate::progress::{self, Display, Overview, Summary};
use crate::signals::Stop;

/// How often the loop polls statuses (with at most `DETAIL_LIMIT` torrents).
const TICK: Duration = Duration::from_millis(200);
/// How often the loop polls the torrents not yet reported complete, with
/// more than `DETAIL_LIMIT` torrents.
const MANY_TICK: Duration = Duration::from_millis(500);
/// How often the loop looks at the stop flag and whether every torrent
/// has ended.
const POLL: Duration = Duration::from_millis(25);

/// Opens a session, mapping a busy port to [`Code::Network`].
///
/// # Errors
/// [`Code::Network`] when the address cannot be bound.
pub fn open_session(config: SessionConfig) -> anyhow::Result<Session> {
    let listen = config.listen;
    Session::new(config).map_err(|e| match e {
        EngineError::Listen { addr, source } => {
            let hint = if source.kind() == std::io::ErrorKind::AddrInUse {
                " (another client running? choose another port with -p)"
            } else {
                ""
            };
            coded(
                Code::Network,
                anyhow!("cannot listen on {addr}: {source}{hint}"),
            )
        }
        other => coded(
            Code::Failure,
            anyhow!("cannot start a session on {listen}: {other}"),
        ),
    })
}

fn session_config(common: &PeerArgs, download_limit: Option<u64>) -> anyhow::Result<SessionConfig> {
    let utp = !common.transport.no_utp || common.transport.utp;
    let tcp = !common.transport.no_tcp || common.transport.tcp;
    if !utp && !tcp {
        return Err(coded(
            Code::Usage,
            anyhow!("--no-tcp and --no-utp leave no way to reach peers"),
        ));
    }
    // Only loopback addresses given: the public DHT routers are out of reach.
    let loopback = !common.bind.is_empty() && common.bind.iter().all(IpAddr::is_loopback);
    Ok(SessionConfig {
        // No --bind: both families' unspecified addresses (dual stack);
        // else exactly the addresses given, on one port.
        listen: SocketAddr::new(
            common
                .bind
                .first()
                .copied()
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            common.port,
        ),
        dual_stack: common.bind.is_empty(),
        listen_also: common.bind.iter().skip(1).copied().collect(),
        upload_limit: common.upload_limit,
        download_limit,
        max_peers_per_torrent: common.max_peers,
        max_half_open: common.max_half_open,
        web_seeds: !common.no_web_seeds,
        lsd: (common.lsd && !common.no_lsd).then(|| {
            // The interface follows the listen address (see SessionConfig).
            bittern_engine::LsdConfig::new(std::net::Ipv4Addr::UNSPECIFIED, common.port)
        }),
        dht: crate::dht::settings(&common.dht, loopback, &common.dir),
        utp,
        tcp,
        encryption: common.encryption.into(),
        pex: !common.no_pex,
        ..SessionConfig::default()
    })
}

/// Per-file flags for `--only`; empty when every file is wanted.
///
/// # Errors
/// [`Code::Usage`] when the patterns select no file of `m`.
pub fn wanted_files(m: &Metainfo, only: &[String]) -> anyhow::Result<Vec<bool>> {
    if only.is_empty() {
        return Ok(Vec::new());
    }
    let flags: Vec<bool> = m
        .info
        .files
        .iter()
        .map(|f| !f.padding && glob::selected(only, &f.path))
        .collect();
    if !flags.iter().any(|f| *f) {
        return Err(coded(
            Code::Usage,
            anyhow!(
                "--only {} matches no file of {}",
                only.join(" --only "),
                m.info.name
            ),
        ));
    }
    Ok(flags)
}

/// What the loop is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Download,
    Seed,
}

/// Runs `bittern download`.
///
/// # Errors
/// Bad input, a busy port, an unwritable directory, a torrent that fails.
pub fn download(args: &DownloadArgs, stop: &Stop) -> anyhow::Result<Code> {
    let seed_goal = if args.exit_on_complete {
        SeedGoal::None
    } else if let Some(r) = args.seed_ratio {
        SeedGoal::Ratio(r)
    } else if let Some(t) = args.seed_time {
        SeedGoal::Time(t)
    } else {
        SeedGoal::Forever
    };
    let peers = load::peers(&args.common.peers)?;
    let mut jobs = Vec::new();
    for t in &args.torrents {
        let arg = load::torrent_arg(t)?;
        let wanted_files = match &arg {
            TorrentArg::Meta(m) => wanted_files(m, &args.only)?,
            TorrentArg::Magnet(_) if !args.only.is_empty() => {
                return Err(coded(
                    Code::Usage,
                    anyhow!("--only needs the file list: give the .torrent, not a magnet link"),
                ))
            }
            TorrentArg::Magnet(_) => Vec::new(),
        };
        let options = TorrentOptions {
            wanted_files,
            seed_goal,
            peers: peers.clone(),
            ..TorrentOptions::default()
        };
        jobs.push((arg, options));
    }
    if args.save_torrent.is_some()
        && (jobs.len() != 1 || !matches!(jobs[0].0, TorrentArg::Magnet(_)))
    {
        return Err(coded(
            Code::Usage,
            anyhow!("--save-torrent takes exactly one magnet link"),
        ));
    }
    let config = session_config(&args.common, args.download_limit)?;
    let save = args.save_torrent.as_deref();
    serve(jobs, &args.common.dir, config, Mode::Download, stop, save)
}

/// Runs `bittern seed`.
///
/// # Errors
/// As [`download`]; [`Code::BadData`] when the data is not complete.
pub fn seed(args: &SeedArgs, stop: &Stop) -> anyhow::Result<Code> {
    let peers = load::peers(&args.common.peers)?;
    let mut jobs = Vec::new();
    for t in &args.torrents {
        let m = match load::torrent_arg(t)? {
            TorrentArg::Meta(m) => m,
            TorrentArg::Magnet(_) => {
                return Err(coded(
                    Code::Usage,
                    anyhow!("seeding needs the .torrent file (`bittern download MAGNET --save-torrent FILE` writes it)"),
                ))
            }
        };
        let options = TorrentOptions {
            seed_goal: SeedGoal::Forever,
            peers: peers.clone(),
            super_seed: args.super_seed,
            ..TorrentOptions::default()
        };
        jobs.push((TorrentArg::Meta(m), options));
    }
    let config = session_config(&args.common, None)?;
    serve(jobs, &args.common.dir, config, Mode::Seed, stop, None)
}

/// The line printed for each torrent on exit; scripts and tests parse it.
pub fn summary_line(s: &TorrentStatus) -> String {
    let web = if s.web_seed_downloaded > 0 {
        format!(" ({} from web seeds)", s.web_seed_downloaded)
    } else {
        String::new()
    };
    format!(
        "{}: downloaded {} bytes{web}, uploaded {} bytes, have {} of {} bytes ({:.1}%), {}",
        s.name,
        s.downloaded,
        s.uploaded,
        s.have_bytes,
        s.wanted_bytes,
        s.progress * 100.0,
        progress::state_word(&s.state)
    )
}

fn is_complete(s: &TorrentStatus) -> bool {
    s.wanted_bytes > 0 && s.have_bytes >= s.wanted_bytes
}

/// Writes the fetched `.torrent` of a magnet download to `path`, once it
/// is known. True when written (or failed: reported once either way).
fn save_fetched(h: &TorrentHandle, path: &Path) -> bool {
    let Some(bytes) = h.torrent_file() else {
        return false;
    };
    match std::fs::write(path, bytes) {
        Ok(()) => progress::note(&format!("saved the metadata to {}", path.display())),
        Err(e) => progress::note(&format!(
            "bittern: error: cannot write {}: {e}",
            path.display()
        )),
    }
    true
}

/// What the loop has reported of each torrent.
struct Watch {
    mode: Mode,
    /// "complete" / "verified, seeding" printed.
    announced: Vec<bool>,
    /// Its error printed.
    reported_error: Vec<bool>,
    /// A torrent given to `seed` whose data is not complete.
    incomplete_seed: Option<TorrentStatus>,
}

impl Watch {
    fn new(n: usize, mode: Mode) -> Watch {
        Watch {
            mode,
            announced: vec![false; n],
            reported_error: vec![false; n],
            incomplete_seed: None,
        }
    }

    /// Nothing is left to report for torrent `i` but a later error.
    fn settled(&self, i: usize) -> bool {
        self.announced[i] || self.reported_error[i]
    }

    /// Reports what changed for torrent `i`.
    fn look(&mut self, i: usize, s: &TorrentStatus) {
        if let TorrentState::Error(e) = &s.state {
            if !self.reported_error[i] {
                self.reported_error[i] = true;
                progress::note(&format!("bittern: error: {}: {e}", s.name));
            }
            return;
        }
        if matches!(
            s.state,
            TorrentState::Checking | TorrentState::FetchingMetadata
        ) || self.announced[i]
        {
            return;
        }
        if is_complete(s) {
            self.announced[i] = true;
            let what = match self.mode {
                Mode::Seed => "verified, seeding",
                Mode::Download => "complete",
            };
            println!("{}: {what}", s.name);
        } else if self.mode == Mode::Seed {
            self.incomplete_seed = Some(s.clone());
        }
    }

    /// Every torrent has ended or failed.
    fn all_done(&self, handles: &[TorrentHandle]) -> bool {
        handles
            .iter()
            .enumerate()
            .all(|(i, h)| self.reported_error[i] || h.is_finished())
    }
}

fn serve(
    jobs: Vec<(TorrentArg, TorrentOptions)>,
    dir: &Path,
    config: SessionConfig,
    mode: Mode,
    stop: &Stop,
    save_torrent: Option<&Path>,
) -> anyhow::Result<Code> {
    match mode {
        Mode::Download => load::writable_dir(dir)?,
        Mode::Seed => {
            if !dir.is_dir() {
                return Err(coded(
                    Code::Usage,
                    anyhow!("{} is not a directory", dir.display()),
                ));
            }
        }
    }
    let mut session = open_session(config)?;
    let addrs: Vec<String> = session
        .local_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    println!("listening on {}", addrs.join(", "));
    // Many torrents: one summary instead of a row each, progress while
    // they are added, and only the torrents whose completion or error is
    // not reported yet are looked at every tick (see `Watch`).
    let many = jobs.len() > progress::DETAIL_LIMIT;
    let mut overview = many.then(|| Overview::new(jobs.len()));
    let mut handles: Vec<TorrentHandle> = Vec::with_capacity(jobs.len());
    for (arg, options) in jobs {
        let name = arg.label();
        let added = match arg {
            TorrentArg::Meta(m) => session.add_torrent(*m, dir, options),
            TorrentArg::Magnet(m) => session.add_magnet(&m, dir, options),
        };
        match added {
            Ok(h) => handles.push(h),
            Err(e) => {
                session.shutdown();
                let code = match e {
                    EngineError::DuplicateTorrent(_) | EngineError::InvalidOptions(_) => {
                        Code::Usage
                    }
                    EngineError::Storage(_) => Code::Filesystem,
                    _ => Code::Failure,
                };
                return Err(coded(code, anyhow!("cannot add {name}: {e}")));
            }
        }
        if let Some(o) = overview.as_mut() {
            o.adding(handles.len());
        }
    }
    let mut display =
        (!many).then(|| Display::new(handles.iter().map(|h| h.status().name).collect()));
    let mut watch = Watch::new(handles.len(), mode);
    let tick = if many { MANY_TICK } else { TICK };
    let mut last_full: Option<Instant> = None;
    let mut dht_shown = crate::dht::NodeCount::default();
    let mut saved = save_torrent.is_none();
    let mut trimmer = crate::heap::Trimmer::default();
    let interrupted = loop {
        trimmer.tick();
        if let (false, Some(path), Some(h)) = (saved, save_torrent, handles.first()) {
            saved = save_fetched(h, path);
        }
        if stop.requested() {
            break true;
        }
        // Every torrent is looked at once per display interval (errors
        // after completion, the summary); with few torrents, every tick.
        let full = !many || last_full.is_none_or(|t| t.elapsed() >= progress::interval());
        if full {
            last_full = Some(Instant::now());
        }
        let mut summary = (many && full).then(Summary::default);
        for (i, h) in handles.iter().enumerate() {
            if full {
                // This loop shows statuses, not events: taking them lets
                // an idle torrent's queue give its memory back.
                h.events().try_iter().for_each(drop);
            }
            if full || !watch.settled(i) {
                h.with_status(|s| {
                    if let Some(sum) = summary.as_mut() {
                        sum.add(s);
                    }
                    watch.look(i, s);
                });
            }
        }
        if let (Some(o), Some(sum)) = (overview.as_mut(), &summary) {
            o.update(sum, false);
        }
        if let Some(d) = display.as_mut() {
            let statuses: Vec<TorrentStatus> = handles.iter().map(TorrentHandle::status).collect();
            d.update(&statuses, false);
        }
        dht_shown.show(session.dht_nodes());
        if watch.incomplete_seed.is_some() {
            break false;
        }
        if watch.all_done(&handles) {
            break false;
        }
        // Sleep a tick, but notice soon when every torrent has ended (a
        // download told to exit on completion) or Ctrl-C comes.
        let until = Instant::now() + tick;
        while Instant::now() < until
            && !stop.requested()
            && !handles.iter().all(TorrentHandle::is_finished)
        {
            std::thread::sleep(POLL);
        }
    };
    if interrupted {
        progress::note(
            "stopping: saving state and telling trackers (Ctrl-C again to quit at once)",
        );
    }
    session.shutdown();
    if let (false, Some(path), Some(h)) = (saved, save_torrent, handles.first()) {
        if !save_fetched(h, path) {
            progress::note(&format!(
                "bittern: the metadata never arrived; {} not written",
                path.display()
            ));
        }
    }
    let statuses: Vec<TorrentStatus> = handles.iter().map(TorrentHandle::status).collect();
    if let Some(d) = display.as_mut() {
        d.update(&statuses, true);
        d.finish();
    }
    if let Some(o) = overview.as_mut() {
        let mut sum = Summary::default();
        statuses.iter().for_each(|s| sum.add(s));
        o.update(&sum, true);
        o.finish();
    }
    {
        // One write for all the lines (10,000 torrents: one syscall each
        // through the line-buffered stdout took a quarter of a second of
        // the stop). A closed stdout is not an error worth failing for.
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        for s in &statuses {
            let _ = writeln!(out, "{}", summary_line(s));
        }
        let _ = out.flush();
    }
    if let Some(s) = watch.incomplete_seed {
        return Err(coded(
            Code::BadData,
            anyhow!(
                "{} is incomplete: {} of {} pieces verified under {} (use `bittern download` to finish it)",
                s.name,
                s.pieces_have,
                s.pieces_total,
                load::absolute(dir).display()
            ),
        ));
    }
    let errors: Vec<String> = statuses
        .iter()
        .filter_map(|s| match &s.state {
            TorrentState::Error(e) => Some(format!("{}: {e}", s.name)),
            _ => None,
        })
        .collect();
    if !errors.is_empty() {
        return Err(anyhow!("{}", errors.join("; ")));
    }
    if interrupted && mode == Mode::Download && !statuses.iter().all(is_complete) {
        return Ok(Code::Interrupted);
    }
    Ok(Code::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bittern_wire::MetainfoBuilder;

    #[test]
    fn only_builds_file_flags() {
        let m = MetainfoBuilder::new("d")
            .file(vec!["a.iso".into()], 10)
            .pad_file(6)
            .file(vec!["docs".into(), "b.txt".into()], 10)
            .piece_length(16384)
            .pieces(vec![[0; 20]])
            .build_metainfo()
            .unwrap();
        assert!(wanted_files(&m, &[]).unwrap().is_empty());
        assert_eq!(
            wanted_files(&m, &["*.iso".into()]).unwrap(),
            [true, false, false]
        );
        assert_eq!(
            wanted_files(&m, &["docs/*".into()]).unwrap(),
            [false, false, true]
        );
        let e = wanted_files(&m, &["*.mkv".into()]).unwrap_err();
        assert_eq!(crate::exit::code_of(&e), Code::Usage);
    }

    /// `--lsd` turns LSD on in the session (both groups: the IPv6 one
    /// follows the listen addresses), `--no-lsd` after it off; off by
    /// default.
    #[test]
    fn lsd_flags_reach_the_session_config() {
        use clap::Parser;
        let lsd = |flags: &[&str]| {
            let mut argv = vec!["bittern", "download", "a.torrent", "-p", "0"];
            argv.extend_from_slice(flags);
            let cli = crate::args::Cli::try_parse_from(argv).unwrap();
            let crate::args::Command::Download(d) = cli.command else {
                panic!("not download")
            };
            session_config(&d.common, None).unwrap().lsd
        };
        assert!(lsd(&[]).is_none());
        let on = lsd(&["--lsd"]).expect("lsd on");
        assert_eq!(on.lsd_port, 6771);
        assert_eq!(on.interface_v6, None, "filled in from the listen addresses");
        assert!(lsd(&["--lsd", "--no-lsd"]).is_none());
    }
}
