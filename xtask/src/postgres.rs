//! The PostgreSQL server `cargo xtask test` runs the PostgreSQL half of the suite
//! against: a throwaway cluster under `target/test-postgres`, on a free loopback port,
//! stopped when the tests end. The tests find it through `CONDUIT_TEST_DATABASE_URL`.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A running test server; stopped on drop.
pub struct TestServer {
    pg_ctl: PathBuf,
    data: PathBuf,
    as_postgres: bool,
}

/// Starts a server unless `CONDUIT_TEST_DATABASE_URL` names one already. Without
/// PostgreSQL on the machine the PostgreSQL tests are skipped, except under CI
/// (`CI` set), where that is an error.
pub fn start(target: &Path) -> Result<Option<TestServer>> {
    if std::env::var_os("CONDUIT_TEST_DATABASE_URL").is_some() {
        eprintln!("xtask: PostgreSQL tests use CONDUIT_TEST_DATABASE_URL");
        require_in_tests();
        return Ok(None);
    }
    let Some(bin) = find_bin_dir() else {
        if std::env::var_os("CI").is_some() {
            bail!("PostgreSQL (initdb, pg_ctl) not found; install postgresql");
        }
        eprintln!("xtask: PostgreSQL not found: its tests are skipped");
        return Ok(None);
    };
    let dir = target.join("test-postgres");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).context("creating target/test-postgres")?;
    // initdb refuses root: as root, the cluster belongs to the `postgres` user.
    let as_postgres = is_root();
    if as_postgres {
        crate::run(Command::new("chown").arg("postgres").arg(&dir))?;
    }
    let server = TestServer {
        pg_ctl: bin.join("pg_ctl"),
        data: dir.join("data"),
        as_postgres,
    };
    server
        .command(&bin.join("initdb"))
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            "-D",
        ])
        .arg(&server.data)
        .stdout(std::process::Stdio::null())
        .status()
        .context("running initdb")?
        .success()
        .then_some(())
        .context("initdb failed")?;
    let port = free_port()?;
    let options = format!(
        "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c max_connections=400",
        dir.display()
    );
    let started = server
        .command(&server.pg_ctl)
        .args(["start", "-w", "-t", "60", "-D"])
        .arg(&server.data)
        .arg("-o")
        .arg(options)
        .arg("-l")
        .arg(dir.join("server.log"))
        .status()
        .context("running pg_ctl start")?;
    if !started.success() {
        let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
        bail!("the test PostgreSQL server did not start:\n{log}");
    }
    eprintln!("xtask: PostgreSQL test server on 127.0.0.1:{port}");
    std::env::set_var(
        "CONDUIT_TEST_DATABASE_URL",
        format!("postgres://postgres@127.0.0.1:{port}/postgres"),
    );
    require_in_tests();
    Ok(Some(server))
}

/// With a server, a PostgreSQL test that finds none fails instead of skipping.
fn require_in_tests() {
    std::env::set_var("CONDUIT_REQUIRE_POSTGRES", "1");
}

impl TestServer {
    fn command(&self, program: &Path) -> Command {
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self
            .command(&self.pg_ctl)
            .args(["stop", "-m", "fast", "-D"])
            .arg(&self.data)
            .stdout(std::process::Stdio::null())
            .status();
    }
}

/// `initdb` on the PATH, else Debian's `/usr/lib/postgresql/<version>/bin`, newest first.
fn find_bin_dir() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).find(|dir| dir.join("initdb").is_file()));
    on_path.or_else(|| {
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let version = entry.file_name().to_str()?.parse().ok()?;
                let bin = entry.path().join("bin");
                bin.join("initdb").is_file().then_some((version, bin))
            })
            .collect();
        versions.sort();
        versions.pop().map(|(_, bin)| bin)
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}
