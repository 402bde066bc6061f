//! Where the console listens: on loopback, unless the node's configuration
//! (`[console] listen` in `tongban.toml`) names another address. A flag alone
//! never opens the console to the office LAN.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The default address: loopback, a fixed port.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8088);

/// Why the console may not listen where it was asked to.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// A non-loopback address that the node's configuration does not name.
    #[error(
        "控制台只监听本机回环地址 the console listens on loopback only: {requested} is not loopback, \
         and {} does not open it to the office LAN (add `[console] listen = \"{requested}\"` to tongban.toml \
         and pass it with --config)",
        config.as_ref().map_or("no tongban.toml".to_string(), |p| p.display().to_string())
    )]
    NotLoopback {
        /// The address asked for.
        requested: SocketAddr,
        /// The configuration read, if any.
        config: Option<PathBuf>,
    },
    /// The configuration could not be read.
    #[error("{0}")]
    Config(String),
}

/// The address to listen on: `requested` (from `--listen`), else the one the
/// configuration at `config` names under `[console]`, else [`DEFAULT_LISTEN`].
/// A non-loopback address is allowed only when the configuration names it.
pub fn resolve_listen(
    requested: Option<SocketAddr>,
    config: Option<&Path>,
) -> Result<SocketAddr, ListenError> {
    let configured = match config {
        Some(path) => tongban_node::daemon::NodeConfig::load(path)
            .map_err(|e| ListenError::Config(e.to_string()))?
            .console
            .and_then(|c| c.listen),
        None => None,
    };
    let addr = requested.or(configured).unwrap_or(DEFAULT_LISTEN);
    if addr.ip().is_loopback() || Some(addr) == configured {
        Ok(addr)
    } else {
        Err(ListenError::NotLoopback {
            requested: addr,
            config: config.map(Path::to_path_buf),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config(dir: &Path, console: &str) -> PathBuf {
        let path = dir.join("tongban.toml");
        std::fs::write(&path, format!("data_dir = \"data\"\n{console}")).unwrap();
        path
    }

    #[test]
    fn loopback_by_default_and_on_request() {
        assert_eq!(resolve_listen(None, None).unwrap(), DEFAULT_LISTEN);
        let local: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        assert_eq!(resolve_listen(Some(local), None).unwrap(), local);
        let v6: SocketAddr = "[::1]:9000".parse().unwrap();
        assert_eq!(resolve_listen(Some(v6), None).unwrap(), v6);
    }

    #[test]
    fn a_lan_address_needs_the_node_configuration() {
        let lan: SocketAddr = "0.0.0.0:8088".parse().unwrap();
        let err = resolve_listen(Some(lan), None).unwrap_err();
        assert!(matches!(err, ListenError::NotLoopback { .. }));
        assert!(err.to_string().contains("[console] listen"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let closed = config(dir.path(), "");
        assert!(resolve_listen(Some(lan), Some(&closed)).is_err());
        let other = config(dir.path(), "[console]\nlisten = \"192.168.1.10:8088\"\n");
        assert!(resolve_listen(Some(lan), Some(&other)).is_err());
        let open = config(dir.path(), "[console]\nlisten = \"0.0.0.0:8088\"\n");
        assert_eq!(resolve_listen(Some(lan), Some(&open)).unwrap(), lan);
        assert_eq!(resolve_listen(None, Some(&open)).unwrap(), lan);
    }
}
