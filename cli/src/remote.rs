//! `bittern remote`: a small client of the Transmission RPC that
//! `bittern daemon` speaks (so it drives transmission-daemon too): the
//! `X-Transmission-Session-Id` handshake (a 409 carries the id, the
//! request is sent again), optional Basic auth, and the few methods a
//! command line needs: list, add, start, stop, remove, info.

use std::time::Duration;

use anyhow::{anyhow, Context};
use serde_json::{json, Value};

use crate::args::{RemoteAction, RemoteArgs};
use crate::exit::{coded, Code};
use crate::units::{format_rate, format_size};

/// One RPC endpoint with its current session id.
struct Client {
    agent: ureq::Agent,
    url: String,
    auth: Option<String>,
    session_id: String,
}

impl Client {
    fn new(url: &str, auth: Option<&str>) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Client {
            agent,
            url: url.to_string(),
            auth: auth.map(|a| format!("Basic {}", data_encoding::BASE64.encode(a.as_bytes()))),
            session_id: String::new(),
        }
    }

    /// Calls `method`; returns its `arguments` when `result` is success.
    fn call(&mut self, method: &str, arguments: Value) -> anyhow::Result<Value> {
        let body = json!({"method": method, "arguments": arguments}).to_string();
        for _ in 0..2 {
            let mut req = self
                .agent
                .post(&self.url)
                .header("Content-Type", "application/json")
                .header("X-Transmission-Session-Id", self.session_id.as_str());
            if let Some(a) = &self.auth {
                req = req.header("Authorization", a.as_str());
            }
            let mut resp = req
                .send(body.as_str())
                .map_err(|e| coded(Code::Network, anyhow!("cannot reach {}: {e}", self.url)))?;
            match resp.status().as_u16() {
                409 => {
                    let id = resp
                        .headers()
                        .get("x-transmission-session-id")
                        .and_then(|v| v.to_str().ok())
                        .ok_or_else(|| anyhow!("a 409 without a session id from {}", self.url))?;
                    self.session_id = id.to_string();
                    continue;
                }
                401 => {
                    return Err(coded(
                        Code::Usage,
                        anyhow!(
                            "{} wants a user name and password (--auth USER:PASSWORD)",
                            self.url
                        ),
                    ))
                }
                200 => {}
                other => return Err(anyhow!("{} answered HTTP {other}", self.url)),
            }
            let text = resp
                .body_mut()
                .with_config()
                .limit(64 << 20)
                .read_to_string()
                .context("reading the reply")?;
            let reply: Value = serde_json::from_str(&text).context("a reply that is not json")?;
            return match reply["result"].as_str() {
                Some("success") => Ok(reply["arguments"].clone()),
                Some(err) => Err(anyhow!("{method}: {err}")),
                None => Err(anyhow!("{method}: a reply without a result")),
            };
        }
        Err(anyhow!("{} keeps refusing the session id", self.url))
    }
}

/// `ids` as the RPC takes them: integers, hashes, or none for `all`.
fn ids(args: &[String]) -> anyhow::Result<Option<Value>> {
    if args.iter().any(|a| a == "all") {
        return Ok(None);
    }
    let list = args
        .iter()
        .map(|a| match a.parse::<i64>() {
            Ok(n) => Ok(json!(n)),
            Err(_) if a.len() == 40 && a.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(json!(a)),
            Err(_) => Err(coded(
                Code::Usage,
                anyhow!("{a:?} is not a torrent id, an info hash or `all`"),
            )),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Some(Value::Array(list)))
}

fn with_ids(ids: Option<Value>, mut args: Value) -> Value {
    if let (Some(ids), Some(obj)) = (ids, args.as_object_mut()) {
        obj.insert("ids".into(), ids);
    }
    args
}

/// Transmission's status codes as words.
fn status_word(code: i64) -> &'static str {
    match code {
        0 => "Stopped",
        1 => "Check wait",
        2 => "Checking",
        3 => "Queued",
        4 => "Downloading",
        5 => "Queued seed",
        6 => "Seeding",
        _ => "Unknown",
    }
}

fn int(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// Runs `bittern remote`.
///
/// # Errors
/// The daemon cannot be reached ([`Code::Network`]), refuses the
/// credentials or an argument ([`Code::Usage`]), or a method fails.
pub fn run(args: &RemoteArgs) -> anyhow::Result<Code> {
    let mut c = Client::new(&args.url, args.auth.as_deref());
    match &args.action {
        RemoteAction::List => {
            let fields = [
                "id",
                "name",
                "status",
                "percentDone",
                "sizeWhenDone",
                "rateDownload",
                "rateUpload",
                "uploadRatio",
                "error",
                "errorString",
            ];
            let r = c.call("torrent-get", json!({"fields": fields}))?;
            println!(
                "{:>4}  {:>5}  {:>10}  {:>10}  {:>10}  {:>6}  {:<12}  Name",
                "ID", "Done", "Size", "Down", "Up", "Ratio", "Status"
            );
            for t in r["torrents"].as_array().into_iter().flatten() {
                let ratio = t["uploadRatio"].as_f64().unwrap_or(-1.0);
                let mut status = status_word(t["status"].as_i64().unwrap_or(-1)).to_string();
                if int(&t["error"]) != 0 {
                    status = format!("Error: {}", t["errorString"].as_str().unwrap_or(""));
                }
                println!(
                    "{:>4}  {:>4.0}%  {:>10}  {:>10}  {:>10}  {:>6}  {:<12}  {}",
                    int(&t["id"]),
                    t["percentDone"].as_f64().unwrap_or(0.0) * 100.0,
                    format_size(int(&t["sizeWhenDone"])),
                    format_rate(int(&t["rateDownload"]) as f64),
                    format_rate(int(&t["rateUpload"]) as f64),
                    if ratio < 0.0 {
                        "None".to_string()
                    } else {
                        format!("{ratio:.2}")
                    },
                    status,
                    t["name"].as_str().unwrap_or("")
                );
            }
        }
        RemoteAction::Add {
            torrents,
            dir,
            paused,
        } => {
            for t in torrents {
                let mut a = json!({"paused": paused});
                let lower = t.to_ascii_lowercase();
                // Magnet links and URLs go as they are: the daemon fetches.
                if ["magnet:", "http://", "https://"]
                    .iter()
                    .any(|p| lower.starts_with(p))
                {
                    a["filename"] = json!(t);
                } else {
                    let bytes = std::fs::read(t)
                        .map_err(|e| coded(Code::Usage, anyhow!("cannot read {t}: {e}")))?;
                    a["metainfo"] = json!(data_encoding::BASE64.encode(&bytes));
                }
                if let Some(d) = dir {
                    a["download-dir"] = json!(d);
                }
                let r = c.call("torrent-add", a)?;
                let (word, added) = match (r.get("torrent-added"), r.get("torrent-duplicate")) {
                    (Some(x), _) => ("added", x),
                    (None, Some(x)) => ("already there", x),
                    _ => return Err(anyhow!("torrent-add: a reply without the torrent")),
                };
                println!(
                    "{word}: {} (id {}, {})",
                    added["name"].as_str().unwrap_or(""),
                    int(&added["id"]),
                    added["hashString"].as_str().unwrap_or("")
                );
            }
        }
        RemoteAction::Start { ids: i } => {
            c.call("torrent-start", with_ids(ids(i)?, json!({})))?;
        }
        RemoteAction::Stop { ids: i } => {
            c.call("torrent-stop", with_ids(ids(i)?, json!({})))?;
        }
        RemoteAction::Remove { ids: i, delete } => {
            c.call(
                "torrent-remove",
                with_ids(ids(i)?, json!({"delete-local-data": delete})),
            )?;
        }
        RemoteAction::Info { id } => {
            let Some(sel) = ids(std::slice::from_ref(id))? else {
                return Err(coded(Code::Usage, anyhow!("info takes one torrent")));
            };
            let fields = [
                "id",
                "name",
                "hashString",
                "status",
                "percentDone",
                "sizeWhenDone",
                "downloadDir",
                "downloadedEver",
                "uploadedEver",
                "peersConnected",
                "labels",
                "errorString",
                "files",
            ];
            let r = c.call("torrent-get", json!({"ids": sel, "fields": fields}))?;
            let Some(t) = r["torrents"].as_array().and_then(|l| l.first()) else {
                return Err(coded(Code::Usage, anyhow!("no torrent {id}")));
            };
            println!("Id: {}", int(&t["id"]));
            println!("Name: {}", t["name"].as_str().unwrap_or(""));
            println!("Hash: {}", t["hashString"].as_str().unwrap_or(""));
            println!(
                "Status: {}",
                status_word(t["status"].as_i64().unwrap_or(-1))
            );
            println!(
                "Done: {:.1}% of {}",
                t["percentDone"].as_f64().unwrap_or(0.0) * 100.0,
                format_size(int(&t["sizeWhenDone"]))
            );
            println!("Location: {}", t["downloadDir"].as_str().unwrap_or(""));
            println!("Downloaded: {}", format_size(int(&t["downloadedEver"])));
            println!("Uploaded: {}", format_size(int(&t["uploadedEver"])));
            println!("Peers: {}", int(&t["peersConnected"]));
            let labels: Vec<&str> = t["labels"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            println!("Labels: {}", labels.join(", "));
            if let Some(e) = t["errorString"].as_str().filter(|e| !e.is_empty()) {
                println!("Error: {e}");
            }
            for f in t["files"].as_array().into_iter().flatten() {
                println!(
                    "  {}  {}/{}",
                    f["name"].as_str().unwrap_or(""),
                    format_size(int(&f["bytesCompleted"])),
                    format_size(int(&f["length"]))
                );
            }
        }
    }
    Ok(Code::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_in_every_form() {
        let h = "0ca7f07bf09ca3fcaf077b7e85e79cff922f5a3a";
        assert_eq!(ids(&["1".into(), h.into()]).unwrap(), Some(json!([1, h])));
        assert_eq!(ids(&["2".into(), "all".into()]).unwrap(), None);
        assert!(ids(&["x1".into()]).is_err());
    }
}
