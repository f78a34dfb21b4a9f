//! The PostgreSQL the bench runs Usher on: a throwaway cluster started the way the
//! tests start theirs (removed afterwards), or a running database named with
//! `--store-url`, where the run gets a schema of its own that is dropped afterwards.
//!
//! When the database runs on this machine (always, for the throwaway cluster), its
//! processes' CPU time is read from `/proc`, so a scenario can say what an operation
//! costs the database as well as Usher.

use std::time::Duration;

use crate::store::postgres::cluster::TempCluster;

/// What a scenario reads of the database before and after its measured run.
#[derive(Debug, Clone)]
pub struct DbProbe {
    /// The server process, when it runs on this machine.
    pub pid: Option<u32>,
    /// To read the WAL position and transaction counter.
    pub url: String,
}

/// The database at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct DbMark {
    pub cpu: Option<Duration>,
    /// The transaction id counter: it moves by one for each transaction that wrote.
    pub xid: Option<u64>,
    /// The WAL insert position, in bytes.
    pub wal: Option<u64>,
}

impl DbProbe {
    pub async fn mark(&self) -> DbMark {
        let (xid, wal) = match wal_and_xid(&self.url).await {
            Some((x, w)) => (Some(x), Some(w)),
            None => (None, None),
        };
        DbMark {
            cpu: self.pid.map(tree_cpu),
            xid,
            wal,
        }
    }
}

/// (transaction id, WAL position): the query takes a transaction id of its own, which
/// the caller subtracts.
async fn wal_and_xid(url: &str) -> Option<(u64, u64)> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .ok()?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let row = client
        .query_one(
            "SELECT txid_current()::bigint, (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint",
            &[],
        )
        .await
        .ok();
    drop(client);
    let _ = driver.await;
    let row = row?;
    let xid: i64 = row.try_get(0).ok()?;
    let wal: i64 = row.try_get(1).ok()?;
    Some((u64::try_from(xid).ok()?, u64::try_from(wal).ok()?))
}

/// A database for one run.
pub struct PgBackend {
    /// The URL Usher's config gets (the password, if any, stays out of what is printed).
    pub url: String,
    /// The schema of this run's tables.
    pub schema: String,
    /// The server process (postmaster), whose children are the database's backends.
    pub postmaster: Option<u32>,
    /// With `--store-url`: drop the run's schema when done.
    drop_schema: bool,
    /// Last, so the cluster goes after everything that used it.
    cluster: Option<TempCluster>,
}

impl PgBackend {
    /// A throwaway cluster, or (with `url`) a schema of its own in a running database.
    pub fn start(url: Option<&str>, postmaster: Option<u32>) -> anyhow::Result<PgBackend> {
        match url {
            None => {
                let cluster = TempCluster::start().map_err(|e| {
                    anyhow::anyhow!(
                        "cannot start a throwaway PostgreSQL cluster ({e}); install Debian's \
                         `postgresql` package, or give --store-url"
                    )
                })?;
                let url = cluster
                    .create_database("usher_bench")
                    .map_err(|e| anyhow::anyhow!("cannot create the bench database: {e}"))?;
                let postmaster = postmaster.or_else(|| postmaster_on_port(cluster.port()));
                Ok(PgBackend {
                    url,
                    schema: "public".into(),
                    postmaster,
                    drop_schema: false,
                    cluster: Some(cluster),
                })
            }
            Some(url) => {
                let schema = format!(
                    "usher_bench_{}",
                    crate::crypto::random_token(6)
                        .to_ascii_lowercase()
                        .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
                );
                let port = crate::store::postgres::parse_url(url)
                    .ok()
                    .and_then(|c| c.get_ports().first().copied());
                let postmaster = postmaster.or_else(|| port.and_then(postmaster_on_port));
                Ok(PgBackend {
                    url: url.to_string(),
                    schema,
                    postmaster,
                    drop_schema: true,
                    cluster: None,
                })
            }
        }
    }

    pub fn probe(&self) -> DbProbe {
        DbProbe {
            pid: self.postmaster,
            url: self.url.clone(),
        }
    }

    /// What the report says about the database (no password), with the version the
    /// server reports.
    pub async fn describe(&self) -> String {
        let what = match &self.cluster {
            Some(_) => "a throwaway cluster on this machine".to_string(),
            None => crate::store::postgres::redact(&self.url),
        };
        let version = match self.connect().await {
            Ok((client, driver)) => {
                let v = client
                    .query_one("SHOW server_version", &[])
                    .await
                    .ok()
                    .and_then(|r| r.try_get::<_, String>(0).ok());
                drop(client);
                let _ = driver.await;
                v.map(|v| format!(" {v}")).unwrap_or_default()
            }
            Err(_) => String::new(),
        };
        format!(
            "PostgreSQL{version} ({what}, schema {}); database CPU time {}",
            self.schema,
            match self.postmaster {
                Some(pid) => format!("from server process {pid} and its children"),
                None => "not measured (give --db-pid)".into(),
            }
        )
    }

    async fn connect(
        &self,
    ) -> anyhow::Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>)> {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to the bench database: {e}"))?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok((client, driver))
    }

    /// Drop the run's schema from a database someone else runs (`--store-url`).
    pub async fn clean_up(&self) -> anyhow::Result<()> {
        if !self.drop_schema {
            return Ok(());
        }
        let (client, driver) = self.connect().await?;
        let dropped = client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema))
            .await;
        drop(client);
        let _ = driver.await;
        dropped.map_err(|e| anyhow::anyhow!("cannot drop schema {}: {e}", self.schema))
    }
}

/// Fields of `/proc/<pid>/stat` after the command name: (ppid, utime + stime, cutime +
/// cstime), in clock ticks.
fn stat_of(pid: u32) -> Option<(u32, u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count from its end.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): ppid is field 4, utime..cstime fields 14..17.
    let num = |field: usize| fields.get(field - 3)?.parse::<u64>().ok();
    let ppid = u32::try_from(num(4)?).ok()?;
    Some((ppid, num(14)? + num(15)?, num(16)? + num(17)?))
}

fn ticks(t: u64) -> Duration {
    // SAFETY: sysconf reads a constant of the system and touches no memory of ours.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|h| *h > 0).unwrap_or(100);
    Duration::from_nanos(t.saturating_mul(1_000_000_000) / hz)
}

/// The CPU time of a server process and its children: the live ones (backends, WAL
/// writer, checkpointer…) and those that have exited (counted into the parent's).
pub fn tree_cpu(postmaster: u32) -> Duration {
    let Some((_, own, reaped)) = stat_of(postmaster) else {
        return Duration::ZERO;
    };
    let mut total = own + reaped;
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for entry in procs.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some((ppid, t, _)) = stat_of(pid) {
                if ppid == postmaster {
                    total += t;
                }
            }
        }
    }
    ticks(total)
}

/// The PostgreSQL server process listening on `port` of this machine, found by its
/// command line (`postgres … -p PORT …`, as `pg_ctl -o` starts it).
pub fn postmaster_on_port(port: u16) -> Option<u32> {
    let port = port.to_string();
    let procs = std::fs::read_dir("/proc").ok()?;
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_server = args
            .first()
            .is_some_and(|a| a.ends_with("/postgres") || a == "postgres");
        let on_port = args.windows(2).any(|w| w[0] == "-p" && w[1] == port);
        if is_server && on_port {
            return Some(pid);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_a_parent() {
        let (ppid, _, _) = stat_of(std::process::id()).expect("own stat");
        assert!(ppid > 0);
        // Busy for a moment, so some ticks show.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(tree_cpu(std::process::id()) > Duration::ZERO);
    }
}
