//! `daemon/RPC.md` lists exactly what the code serves: the methods
//! ([`bittern_daemon::rpc::METHODS`]), the `torrent-get` fields
//! ([`bittern_daemon::fields::FIELDS`], each asked of a real torrent and
//! answered), the `session-get` and `session-stats` keys (read from a
//! live reply) and the `session-set` keys ([`bittern_daemon::settings::MUTABLE`]).
//! The lists between the `<!-- generated:NAME -->` markers are compared
//! with the code; `BITTERN_BLESS=1 cargo test -p bittern-daemon rpc_doc`
//! rewrites them.

use std::path::Path;

use bittern_daemon::{fields::FIELDS, rpc::METHODS, settings::MUTABLE, Access};
use serde_json::{json, Value};

use crate::util::{single, Harness};

fn list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
    k.sort();
    k
}

/// Replaces the text between `<!-- generated:NAME -->` and
/// `<!-- /generated:NAME -->` in `doc` by `body`.
fn splice(doc: &str, name: &str, body: &str) -> String {
    let open = format!("<!-- generated:{name} -->");
    let close = format!("<!-- /generated:{name} -->");
    let a = doc
        .find(&open)
        .unwrap_or_else(|| panic!("RPC.md has no {open}"))
        + open.len();
    let b = doc
        .find(&close)
        .unwrap_or_else(|| panic!("RPC.md has no {close}"));
    format!("{}\n{body}\n{}", &doc[..a], &doc[b..])
}

#[test]
fn rpc_doc_lists_every_method_and_field_served() {
    let h = Harness::new(Access::default());
    let id = h.add(&single(), h.data())["torrent-added"]["id"].clone();
    let t = h.ok(json!({"method": "torrent-get",
                        "arguments": {"ids": [id], "fields": FIELDS}}));
    let got = keys(&t["torrents"][0]);
    let mut want: Vec<String> = FIELDS.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want, "every field of FIELDS is answered for a torrent");

    let session = keys(&h.ok(json!({"method": "session-get", "arguments": {}})));
    let stats = keys(&h.ok(json!({"method": "session-stats", "arguments": {}})));
    let methods: Vec<String> = METHODS.iter().map(|s| s.to_string()).collect();
    let mut set: Vec<String> = MUTABLE.iter().map(|s| s.to_string()).collect();
    set.sort();

    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("RPC.md");
    let doc = std::fs::read_to_string(&path).expect("daemon/RPC.md");
    let mut fresh = doc.clone();
    for (name, body) in [
        ("methods", list(&methods)),
        ("torrent-get", list(&want)),
        ("session-get", list(&session)),
        ("session-set", list(&set)),
        ("session-stats", list(&stats)),
    ] {
        fresh = splice(&fresh, name, &body);
    }
    if std::env::var_os("BITTERN_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("write RPC.md");
        return;
    }
    assert!(
        doc == fresh,
        "daemon/RPC.md's lists differ from the code; run \
         BITTERN_BLESS=1 cargo test -p bittern-daemon rpc_doc and review the diff"
    );
}
