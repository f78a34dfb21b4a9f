//! A throwaway PostgreSQL cluster for tests and `usher bench --store postgres`: Debian's
//! `initdb` and `pg_ctl` in a temporary folder, listening on a free loopback port, and
//! removed afterwards.
//!
//! `initdb` refuses to run as root, so a root process (CI) runs the cluster as the
//! `postgres` system user through `runuser`, with the folder owned by that user. A
//! watcher process removes the cluster when the process that started it exits, however
//! it exits: a test binary never runs the destructors of its statics.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Set (to anything but `0`) where PostgreSQL must be there: a missing one fails the
/// tests instead of skipping them. CI sets it.
pub const REQUIRE_VAR: &str = "USHER_REQUIRE_POSTGRES";

/// A running throwaway cluster.
pub struct TempCluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    /// The system user the cluster runs as, when this process is root.
    run_as: Option<String>,
}

impl TempCluster {
    /// Make and start a cluster; the error says what is missing.
    pub fn start() -> Result<TempCluster, String> {
        let bin = find_bin_dir().ok_or_else(|| {
            "no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin \
             or on PATH; install Debian's `postgresql` package"
                .to_string()
        })?;
        let root = unsafe { libc::geteuid() } == 0;
        let run_as = root.then(|| "postgres".to_string());
        // Under /tmp (world-traversable), so the `postgres` user can reach it.
        let base = if root {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!(
            "usher-pg-{}-{}",
            std::process::id(),
            crate::crypto::random_token(6)
        ));
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut cluster = TempCluster {
            dir,
            bin,
            port: 0,
            run_as,
        };
        if let Some(user) = &cluster.run_as {
            chown_to(&cluster.dir, user)?;
        }
        cluster.watch_parent();
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data().to_string_lossy(),
                "-U",
                "usher",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        // A free port can be taken by someone else before the server binds it: retry.
        let mut last = String::new();
        for _ in 0..5 {
            cluster.port = free_port()?;
            match cluster.pg_ctl_start() {
                Ok(()) => return Ok(cluster),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// A URL for database `db` of this cluster (`postgres` always exists).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://usher@127.0.0.1:{}/{db}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Create a database and return its URL.
    pub fn create_database(&self, name: &str) -> Result<String, String> {
        self.run(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "usher",
                name,
            ],
        )?;
        Ok(self.url(name))
    }

    /// Stop the server at once, like a crash (`pg_ctl stop -m immediate`).
    pub fn stop_now(&self) -> Result<(), String> {
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )
    }

    /// Start it again on the same port, after [`stop_now`](Self::stop_now).
    pub fn start_again(&self) -> Result<(), String> {
        self.pg_ctl_start()
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Accept TLS with this certificate and key (PEM) from now on: the files go into
    /// the data folder, owned by the cluster's user and readable by it alone (the
    /// server refuses a key others can read), `ssl = on` into its configuration, and
    /// the server rereads it.
    pub fn serve_tls(&self, cert_pem: &str, key_pem: &str) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        let data = self.data();
        for (name, pem) in [("server.crt", cert_pem), ("server.key", key_pem)] {
            let path = data.join(name);
            std::fs::write(&path, pem).map_err(|e| format!("{}: {e}", path.display()))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if let Some(user) = &self.run_as {
                chown_to(&path, user)?;
            }
        }
        let conf = data.join("postgresql.conf");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .map_err(|e| format!("{}: {e}", conf.display()))?;
        writeln!(
            file,
            "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'"
        )
        .map_err(|e| format!("{}: {e}", conf.display()))?;
        self.run("pg_ctl", &["-D", &data.to_string_lossy(), "reload"])
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c max_connections=400 -c fsync=on",
            self.port,
            self.dir.display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-l",
                &self.dir.join("server.log").to_string_lossy(),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
    }

    /// Run one of the server's programs, as the cluster's user.
    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let path = self.bin.join(program);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&path);
                c
            }
            None => Command::new(&path),
        };
        let out = command
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
        if out.status.success() {
            return Ok(());
        }
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        Err(format!(
            "{program} failed ({}): {}{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            log.lines().rev().take(10).collect::<Vec<_>>().join("\n")
        ))
    }

    /// Start a watcher that stops the cluster and removes its folder once this process
    /// is gone (a crash, a `kill -9`, a test binary's exit without destructors).
    fn watch_parent(&self) {
        let stop = match &self.run_as {
            Some(user) => format!(
                "runuser -u {user} -- '{}' -D '{}' -m immediate stop",
                self.bin.join("pg_ctl").display(),
                self.data().display()
            ),
            None => format!(
                "'{}' -D '{}' -m immediate stop",
                self.bin.join("pg_ctl").display(),
                self.data().display()
            ),
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             if [ -d '{dir}' ]; then {stop} >/dev/null 2>&1; rm -rf '{dir}'; fi",
            pid = std::process::id(),
            dir = self.dir.display(),
        );
        let _ = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        let _ = self.stop_now();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The folder of `initdb` and `pg_ctl`: `USHER_PG_BIN`, the newest
/// `/usr/lib/postgresql/*/bin`, or PATH.
pub fn find_bin_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("USHER_PG_BIN") {
        let dir = PathBuf::from(dir);
        return dir.join("initdb").is_file().then_some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
    })
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

fn chown_to(dir: &Path, user: &str) -> Result<(), String> {
    let out = Command::new("chown")
        .arg(user)
        .arg(dir)
        .output()
        .map_err(|e| format!("cannot run chown: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "chown {user} {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// One cluster shared by every test of this process, started on first use; `None`
/// (after saying so once, loudly, on the terminal) when PostgreSQL is not installed.
/// Panics instead when [`REQUIRE_VAR`] is set: there, a missing PostgreSQL is a failure.
pub fn shared() -> Option<&'static TempCluster> {
    static CLUSTER: OnceLock<Result<TempCluster, String>> = OnceLock::new();
    match CLUSTER.get_or_init(TempCluster::start) {
        Ok(c) => Some(c),
        Err(why) => missing(why),
    }
}

/// A cluster of the caller's own, for a test that stops and starts its server; `None`
/// (said loudly) or a panic under [`REQUIRE_VAR`] when it cannot start, as [`shared`].
pub fn own() -> Option<TempCluster> {
    match TempCluster::start() {
        Ok(c) => Some(c),
        Err(why) => missing(&why),
    }
}

/// No cluster: a failure where PostgreSQL is required, else a loud note (once) and `None`.
// Test support: a missing server that is required must fail the test loudly.
#[allow(clippy::panic)]
fn missing<T>(why: &str) -> Option<T> {
    let required = std::env::var(REQUIRE_VAR).is_ok_and(|v| !v.is_empty() && v != "0");
    if required {
        panic!("PostgreSQL is required ({REQUIRE_VAR} is set) but cannot start: {why}");
    }
    static SAID: OnceLock<()> = OnceLock::new();
    SAID.get_or_init(|| {
        // Straight to stderr, past the test harness's capture, so it shows.
        let _ = writeln!(
            std::io::stderr(),
            "\n*** The PostgreSQL tests did NOT run: {why}.\n*** Install the `postgresql` package to run them; set {REQUIRE_VAR}=1 to make this a failure.\n"
        );
    });
    None
}

/// Settings for a new schema of the shared cluster, nothing created yet; `None` as
/// [`shared`] is. Two stores opened with one such settings are two nodes.
pub fn fresh_settings() -> Option<super::PgSettings> {
    let cluster = shared()?;
    let schema = format!(
        "t_{}",
        crate::crypto::random_token(9)
            .to_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect::<String>()
    );
    let mut settings = super::PgSettings::new(cluster.url("postgres"));
    settings.schema = schema;
    settings.max_connections = 8;
    Some(settings)
}

/// A fresh, empty, migrated store in its own schema of the shared cluster (contract
/// tests); `None` as [`shared`] is.
#[allow(clippy::panic)]
pub async fn fresh_store() -> Option<super::PgStore> {
    let settings = fresh_settings()?;
    Some(
        super::PgStore::open(&settings)
            .await
            .unwrap_or_else(|e| panic!("cannot open a test schema: {e}")),
    )
}
