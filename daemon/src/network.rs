//! The engine's peer-network settings from the daemon's [`Settings`]:
//! DHT, uTP, PEX, LSD and encryption, under Transmission's names
//! (`dht-enabled`, `utp-enabled`, `pex-enabled`, `lpd-enabled`,
//! `encryption`) plus bittern's `dht-bootstrap`. The engine sets these up
//! when the session starts. Over `session-set`, `encryption` and
//! `pex-enabled` then apply at once (`Backend::set_network`); the rest
//! bind sockets or join a multicast group at start, so a change is stored
//! and takes effect at the next start ([`crate::settings::AT_RESTART`]).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use bittern_engine::{DhtSettings, LsdConfig, SessionConfig};

use crate::settings::Settings;

/// The file in the config dir keeping the DHT node's id and contacts.
pub const DHT_STATE_FILE: &str = "dht.dat";

/// The DHT nodes to join through: the configured ones, else the public
/// routers unless peers are bound to a loopback address (which cannot
/// reach them, so they are not even resolved).
pub fn bootstrap(configured: &[String], listen: SocketAddr) -> Vec<String> {
    if !configured.is_empty() {
        return configured.to_vec();
    }
    if listen.ip().is_loopback() {
        return Vec::new();
    }
    bittern_dht::PUBLIC_ROUTERS
        .iter()
        .map(|s| (*s).to_string())
        .collect()
}

/// `base` with the network settings of `settings` for a session listening
/// on `listen`, the DHT state kept in `config_dir`. `base.dht`, when set,
/// gives the DHT's timers (tests shorten them); its bootstrap list and
/// state file are replaced.
pub fn apply(
    settings: &Settings,
    listen: SocketAddr,
    config_dir: &Path,
    base: SessionConfig,
) -> SessionConfig {
    let dht = settings.dht_enabled.then(|| DhtSettings {
        bootstrap: bootstrap(&settings.dht_bootstrap, listen),
        state_file: Some(config_dir.join(DHT_STATE_FILE)),
        ..base.dht.clone().unwrap_or_default()
    });
    // The session fills in the listen address and port (see SessionConfig::lsd).
    let lsd = settings
        .lpd_enabled
        .then(|| LsdConfig::new(Ipv4Addr::UNSPECIFIED, listen.port()));
    SessionConfig {
        listen,
        dht,
        utp: settings.utp_enabled,
        pex: settings.pex_enabled,
        lsd,
        encryption: settings.encryption.into(),
        ..base
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::EncryptionMode;

    #[test]
    fn settings_reach_the_engine_config() {
        let dir = Path::new("/cfg");
        let v4: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let c = apply(&Settings::default(), v4, dir, SessionConfig::default());
        let dht = c.dht.expect("dht on by default");
        assert!(dht.bootstrap.is_empty(), "loopback: no public routers");
        assert_eq!(
            dht.state_file.as_deref(),
            Some(dir.join("dht.dat").as_path())
        );
        assert!(c.utp && c.pex && c.lsd.is_none());
        assert_eq!(c.encryption, bittern_engine::Encryption::Prefer);

        let any: SocketAddr = "0.0.0.0:51413".parse().unwrap();
        let c = apply(&Settings::default(), any, dir, SessionConfig::default());
        assert_eq!(
            c.dht.expect("dht").bootstrap.len(),
            bittern_dht::PUBLIC_ROUTERS.len()
        );

        let s = Settings {
            dht_enabled: false,
            utp_enabled: false,
            pex_enabled: false,
            lpd_enabled: true,
            encryption: EncryptionMode::Required,
            ..Settings::default()
        };
        let c = apply(&s, any, dir, SessionConfig::default());
        assert!(c.dht.is_none() && !c.utp && !c.pex);
        assert_eq!(c.lsd.expect("lsd").listen_port, 51413);
        assert_eq!(c.encryption, bittern_engine::Encryption::Require);

        let s = Settings {
            dht_bootstrap: vec!["127.0.0.1:7000".into()],
            ..Settings::default()
        };
        let c = apply(&s, any, dir, SessionConfig::default());
        assert_eq!(c.dht.expect("dht").bootstrap, ["127.0.0.1:7000"]);
    }
}
