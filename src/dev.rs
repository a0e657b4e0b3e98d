//! `tenantry dev`: throwaway PostgreSQL and NATS under `.tenantry/`, from the binaries
//! installed on the machine, on loopback only, stopped when the command stops.
//!
//! `make test` uses it too (`--services-only`), so tests and development run on services
//! provisioned one way.

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::Rng;
use sqlx::{Connection, PgConnection};
use tenantry_eventstore::{MasterKey, Vault};

use crate::app::shutdown_signal;
use crate::cli::DevArgs;
use crate::{Application, Settings};

/// The running services.
pub struct Services {
    dir: PathBuf,
    pg_data: PathBuf,
    pg_bin: PathBuf,
    postgres: Child,
    nats: Child,
    pub database_url: String,
    pub superuser_url: String,
    pub nats_url: String,
}

fn running_as_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// PostgreSQL refuses to run as root: as root, run its programs as `postgres`.
fn pg_command(pg_bin: &Path, program: &str) -> Command {
    let path = pg_bin.join(program);
    if running_as_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(path);
        cmd
    } else {
        Command::new(path)
    }
}

/// The newest PostgreSQL server installed (`TENANTRY_PG_BIN` overrides).
pub fn pg_bin_dir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("TENANTRY_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!("no PostgreSQL server found under /usr/lib/postgresql: run `make dev`, which installs it"),
    }
}

fn nats_binary() -> anyhow::Result<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/bin")])
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.exists())
        .context("nats-server not found: run `make dev`, which installs it")
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<(Stdio, Stdio)> {
    let file = File::create(dir.join(name))?;
    Ok((file.try_clone()?.into(), file.into()))
}

fn run_checked(mut cmd: Command, what: &str) -> anyhow::Result<()> {
    let output = cmd.output().with_context(|| format!("running {what}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

impl Services {
    /// Starts PostgreSQL and NATS under `dir` (initialising them on first use), PostgreSQL
    /// with `settings` (`name=value`) over its defaults.
    ///
    /// # Errors
    /// When a binary is missing or a service does not come up.
    pub async fn start(
        dir: &Path,
        pg_port: u16,
        nats_port: u16,
        fresh: bool,
        settings: &[&str],
    ) -> anyhow::Result<Self> {
        let pg_bin = pg_bin_dir()?;
        let nats_bin = nats_binary()?;
        fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
        let pg_data = pg_data_dir(&dir)?;
        let nats_data = dir.join("nats");
        stop_leftovers(&dir, &pg_data, &pg_bin);
        if fresh {
            let _ = fs::remove_dir_all(&pg_data);
            let _ = fs::remove_dir_all(&nats_data);
        }

        if !pg_data.join("PG_VERSION").exists() {
            fs::create_dir_all(&pg_data)?;
            if running_as_root() {
                run_checked(
                    {
                        let mut c = Command::new("chown");
                        c.args(["-R", "postgres:postgres"]).arg(&pg_data);
                        c
                    },
                    "chown",
                )?;
            }
            let mut initdb = pg_command(&pg_bin, "initdb");
            initdb.arg("-D").arg(&pg_data).args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-instructions",
            ]);
            run_checked(initdb, "initdb")?;
        }

        let (out, err) = log_file(&dir, "postgres.log")?;
        let mut postgres = pg_command(&pg_bin, "postgres");
        postgres
            .arg("-D")
            .arg(&pg_data)
            .args(["-p", &pg_port.to_string()])
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "unix_socket_directories=",
            ])
            .args(["-c", "max_connections=300"]);
        for setting in settings {
            postgres.args(["-c", setting]);
        }
        let postgres = postgres
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .context("starting postgres")?;

        fs::create_dir_all(&nats_data)?;
        let (out, err) = log_file(&dir, "nats.log")?;
        let nats = Command::new(nats_bin)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &nats_port.to_string(),
                "-sd",
            ])
            .arg(&nats_data)
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .context("starting nats-server")?;
        fs::write(dir.join("nats.pid"), nats.id().to_string())?;

        let services = Services {
            dir: dir.clone(),
            pg_data: pg_data.clone(),
            pg_bin,
            postgres,
            nats,
            database_url: format!("postgres://tenantry@127.0.0.1:{pg_port}/tenantry"),
            superuser_url: format!("postgres://postgres@127.0.0.1:{pg_port}/postgres"),
            nats_url: format!("nats://127.0.0.1:{nats_port}"),
        };
        services.provision().await.inspect_err(|_| {
            eprintln!(
                "see {} and {}",
                dir.join("postgres.log").display(),
                dir.join("nats.log").display()
            );
        })?;
        Ok(services)
    }

    /// Waits for both services and creates the `tenantry` user (CREATEDB, CREATEROLE; it owns
    /// the schema and creates the application roles) and its database.
    async fn provision(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut admin = loop {
            match PgConnection::connect(&self.superuser_url).await {
                Ok(conn) => break conn,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(err) => return Err(err).context("PostgreSQL did not come up"),
            }
        };
        let (role_exists,): (bool,) =
            sqlx::query_as("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tenantry')")
                .fetch_one(&mut admin)
                .await?;
        if !role_exists {
            sqlx::query("CREATE ROLE tenantry LOGIN CREATEDB CREATEROLE")
                .execute(&mut admin)
                .await?;
        }
        let (db_exists,): (bool,) =
            sqlx::query_as("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'tenantry')")
                .fetch_one(&mut admin)
                .await?;
        if !db_exists {
            sqlx::query("CREATE DATABASE tenantry OWNER tenantry")
                .execute(&mut admin)
                .await?;
        }
        admin.close().await?;

        let nats_addr = self.nats_url.trim_start_matches("nats://").to_owned();
        loop {
            match tokio::net::TcpStream::connect(&nats_addr).await {
                Ok(_) => break,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(err) => return Err(err).context("nats-server did not come up"),
            }
        }
        Ok(())
    }

    /// Stops both services and waits for them.
    pub fn stop(mut self) {
        let _ = pg_command(&self.pg_bin, "pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(&self.pg_data)
            .args(["-m", "fast", "-w"])
            .output();
        let _ = Command::new("kill")
            .args(["-TERM", &self.nats.id().to_string()])
            .status();
        let _ = self.postgres.wait();
        let _ = self.nats.wait();
        let _ = fs::remove_file(self.dir.join("nats.pid"));
    }
}

/// Where PostgreSQL keeps its data: `<dir>/pg`, unless this runs as root in a directory the
/// `postgres` user cannot reach (a checkout under `/root`, say); then a directory of its own
/// under `/var/tmp`, named after `dir`.
fn pg_data_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    if !running_as_root() {
        return Ok(dir.join("pg"));
    }
    let reachable = Command::new("runuser")
        .args(["-u", "postgres", "--", "test", "-x"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    if reachable {
        return Ok(dir.join("pg"));
    }
    let mut name: u64 = 0xcbf29ce484222325;
    for byte in dir.as_os_str().as_encoded_bytes() {
        name = (name ^ u64::from(*byte)).wrapping_mul(0x100000001b3);
    }
    let fallback = PathBuf::from(format!("/var/tmp/tenantry-{name:016x}"));
    fs::create_dir_all(&fallback)?;
    eprintln!(
        "note: the postgres user cannot reach {}; PostgreSQL data goes to {}",
        dir.display(),
        fallback.display()
    );
    Ok(fallback.join("pg"))
}

/// Stops services a killed earlier run left behind in `dir`.
fn stop_leftovers(dir: &Path, pg_data: &Path, pg_bin: &Path) {
    if pg_data.join("postmaster.pid").exists() {
        let _ = pg_command(pg_bin, "pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(pg_data)
            .args(["-m", "immediate", "-w"])
            .output();
    }
    if let Ok(pid) = fs::read_to_string(dir.join("nats.pid")) {
        let _ = Command::new("kill").args(["-TERM", pid.trim()]).status();
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The admin key: `TENANTRY_ADMIN_KEY`, or one generated once and kept in `<dir>/admin-key`.
fn dev_admin_key(dir: &Path) -> anyhow::Result<String> {
    if let Ok(key) = std::env::var("TENANTRY_ADMIN_KEY") {
        return Ok(key);
    }
    let path = dir.join("admin-key");
    if let Ok(key) = fs::read_to_string(&path) {
        return Ok(key.trim().to_owned());
    }
    let bytes: [u8; 24] = rand::rng().random();
    let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let key = format!("adm_{key}");
    fs::write(&path, &key)?;
    Ok(key)
}

/// The master key: `TENANTRY_MASTER_KEY`, or one generated once and kept in
/// `<dir>/master-key` (readable by its owner only).
fn dev_master_key(dir: &Path) -> anyhow::Result<MasterKey> {
    if let Ok(key) = std::env::var("TENANTRY_MASTER_KEY") {
        return MasterKey::parse(&key).map_err(|e| anyhow::anyhow!("TENANTRY_MASTER_KEY: {e}"));
    }
    let path = dir.join("master-key");
    if let Ok(key) = fs::read_to_string(&path) {
        return MasterKey::parse(&key).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
    }
    let key = MasterKey::generate();
    fs::write(&path, key.to_hex())?;
    fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(key)
}

/// PostgreSQL settings for the services the tests run against: throwaway data, so durability
/// buys nothing.
const TEST_SETTINGS: &[&str] = &[
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
];

/// Runs `tenantry dev`.
///
/// # Errors
/// When the services or the application cannot start.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let services = Services::start(
        &args.dir,
        args.pg_port,
        args.nats_port,
        args.fresh,
        if args.services_only {
            TEST_SETTINGS
        } else {
            &[]
        },
    )
    .await?;
    let master_key = dev_master_key(&args.dir)?;
    let env = format!(
        "DATABASE_URL={}\nNATS_URL={}\nTENANTRY_SUPERUSER_URL={}\nTENANTRY_MASTER_KEY={}\n",
        services.database_url,
        services.nats_url,
        services.superuser_url,
        master_key.to_hex()
    );
    fs::write(args.dir.join("env"), &env)?;

    if args.services_only {
        println!(
            "services ready ({}):\n{env}",
            args.dir.join("env").display()
        );
        shutdown_signal().await;
        services.stop();
        return Ok(());
    }

    let admin_key = dev_admin_key(&args.dir)?;
    let mut settings = Settings::new(
        services.database_url.clone(),
        services.nats_url.clone(),
        admin_key.clone(),
    );
    settings.listen = args.listen.clone();
    settings.vault = Vault::new(&master_key);
    let result = async {
        let app = Application::build(settings).await?;
        println!(
            "\nTenantry is running on http://{}\n  platform admin key: {admin_key}\n  try: curl -H 'Authorization: Bearer {admin_key}' http://{}/v1/organizations\n  PostgreSQL: {}\n  NATS: {}\nCtrl-C stops everything.\n",
            args.listen, args.listen, services.database_url, services.nats_url
        );
        app.run_until_stopped(shutdown_signal()).await
    }
    .await;
    services.stop();
    result
}
