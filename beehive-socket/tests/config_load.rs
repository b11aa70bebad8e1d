//! `SocketModuleConfig::load`: the file named by `SOCKET_MODULE_CONFIG`,
//! else Go's default path. One test in its own binary, since it sets a
//! process-wide environment variable.
#![cfg(feature = "yaml")]

use std::path::Path;

use beehive_socket::config::{ConfigError, SocketModuleConfig, CONFIG_ENV, DEFAULT_CONFIG_PATH};

/// The path `load` tried, when it could not read it.
fn tried(r: Result<SocketModuleConfig, ConfigError>) -> Option<std::path::PathBuf> {
    match r {
        Err(ConfigError::Io { path, .. }) => Some(path),
        _ => None,
    }
}

#[test]
fn load_reads_the_file_the_variable_names_else_the_default_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("socket_module.yaml");
    std::fs::write(&file, "- module: edge\n  address: /tmp/e.sock\n").unwrap();
    std::env::set_var(CONFIG_ENV, &file);
    let cfg = SocketModuleConfig::load().unwrap();
    assert_eq!(cfg.client("edge").map(|c| c.address.as_str()), Some("/tmp/e.sock"));

    let missing = dir.path().join("nothing.yaml");
    std::env::set_var(CONFIG_ENV, &missing);
    assert_eq!(tried(SocketModuleConfig::load()), Some(missing));

    // Empty or unset: Go's default path. Checked where that path does not
    // exist, so that the error names the path tried.
    if !Path::new(DEFAULT_CONFIG_PATH).exists() {
        std::env::set_var(CONFIG_ENV, "");
        assert_eq!(tried(SocketModuleConfig::load()).as_deref(), Some(Path::new(DEFAULT_CONFIG_PATH)));
        std::env::remove_var(CONFIG_ENV);
        assert_eq!(tried(SocketModuleConfig::load()).as_deref(), Some(Path::new(DEFAULT_CONFIG_PATH)));
    }
}
