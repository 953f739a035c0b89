//! A real browser for the web-console tests: Debian's `chromium`, driven by `playwright-core`
//! (pinned in `tests/clients/package-lock.json`; it never downloads a browser) from the Node
//! script `tests/clients/console_browser.mjs`.
//!
//! Chromium is installed from Debian's packages on first use when it is missing (as root, or
//! through `sudo`), once per test binary and under the same file lock as the client packages.
//! A machine where that fails fails these tests saying what to install; they never skip.

use std::fs::File;
use std::path::Path;
use std::sync::OnceLock;

/// Where Debian puts the browser binary (`/usr/bin/chromium` is a shell wrapper around it).
pub const CHROMIUM: &str = "/usr/lib/chromium/chromium";

/// Installs Debian's chromium unless it is there; returns the binary's path.
pub fn ensure_chromium() -> &'static str {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let lock = File::create(std::env::temp_dir().join("tidings-test-clients.lock"))
            .expect("create the install lock file");
        lock.lock().expect("lock the install lock file");
        if Path::new(CHROMIUM).exists() {
            return;
        }
        let installed = super::clients::apt_install(&["chromium"]);
        assert!(
            installed && Path::new(CHROMIUM).exists(),
            "the console tests need Debian's chromium, and installing it failed: run \
             `apt-get install chromium` as root"
        );
    });
    CHROMIUM
}
