//! The services every test shares: one PostgreSQL with a migrated template
//! database, and one Redis. Started once per test run (or taken from
//! DATABASE_URL / REDIS_URL), and stopped by a watchdog when the test
//! process exits, however it exits.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use tollgate::db::{
    local_postgres::{self, LocalPostgres, LocalPostgresOptions, socket_url},
    migrations,
};

/// What the shared services look like to a test.
pub struct Services {
    /// Builds a connection URL for a database on the shared server.
    database_url: DatabaseUrl,
    /// The migrated template every test database is copied from.
    template: String,
    /// Redis for every app (each app gets its own key prefix).
    pub redis_url: String,
    /// Prefix of every database this process creates.
    run_prefix: String,
    next_database: AtomicU32,
}

enum DatabaseUrl {
    /// The private server's Unix socket folder.
    Socket(PathBuf),
    /// DATABASE_URL, whose database part is replaced.
    External(url::Url),
}

impl DatabaseUrl {
    fn for_database(&self, name: &str) -> String {
        match self {
            Self::Socket(dir) => socket_url(dir, name),
            Self::External(url) => {
                let mut url = url.clone();
                url.set_path(&format!("/{name}"));
                url.to_string()
            }
        }
    }
}

static SERVICES: OnceLock<Services> = OnceLock::new();

/// The shared services, started on first use.
pub fn services() -> &'static Services {
    SERVICES.get_or_init(|| {
        // Each #[tokio::test] has its own runtime; start-up gets one of its
        // own on a plain thread so nothing it spawns dies with a test.
        std::thread::spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(start())
        })
        .join()
        .expect("starting the test services")
    })
}

impl Services {
    /// A fresh database copied from the migrated template.
    pub async fn create_database(&self) -> (String, String) {
        let n = self.next_database.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}_{n}", self.run_prefix);
        create_database(&self.database_url.for_database("postgres"), &name, Some(&self.template)).await;
        let url = self.database_url.for_database(&name);
        (name, url)
    }

    /// An empty database (no migrations), for testing `tollgate migrate`.
    pub async fn create_empty_database(&self) -> String {
        let n = self.next_database.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}_{n}_empty", self.run_prefix);
        create_database(&self.database_url.for_database("postgres"), &name, None).await;
        self.database_url.for_database(&name)
    }
}

async fn start() -> Services {
    install_missing_packages();
    let pid = std::process::id();
    let work_dir = PathBuf::from(format!("/tmp/tollgate-test-{pid}"));
    std::fs::create_dir_all(&work_dir).expect("creating the test work folder");
    let mut watched = Watched::default();

    let database_url = match std::env::var("DATABASE_URL").ok().filter(|v| !v.is_empty()) {
        Some(url) => {
            let url = url::Url::parse(&url).expect("DATABASE_URL is not a URL");
            drop_leftovers(&DatabaseUrl::External(url.clone())).await;
            DatabaseUrl::External(url)
        }
        None => {
            let dir = work_dir.join("pg");
            let options = LocalPostgresOptions {
                durable: false,
                max_connections: 400,
            };
            let server = LocalPostgres::ensure_running(&dir, options)
                .await
                .unwrap_or_else(|e| panic!("starting the private PostgreSQL: {e}"));
            watched.postgres_pid = server.postmaster_pid();
            DatabaseUrl::Socket(dir)
        }
    };

    let redis_url = match std::env::var("REDIS_URL").ok().filter(|v| !v.is_empty()) {
        Some(url) => url,
        None => {
            let (url, redis_pid) = start_redis(&work_dir);
            watched.redis_pid = Some(redis_pid);
            url
        }
    };
    watched.spawn_watchdog(pid, &work_dir);

    // PIDs repeat across containers sharing a server, so the prefix also
    // names the host and a random run id.
    let run_prefix = format!("tg_{}_{pid}_{:08x}", host_id(), rand::random::<u32>());
    let template = format!("{run_prefix}_template");
    create_database(&database_url.for_database("postgres"), &template, None).await;
    migrations::run_pending(&database_url.for_database(&template))
        .await
        .unwrap_or_else(|e| panic!("migrating the template database: {e:#}"));

    Services {
        database_url,
        template,
        redis_url,
        run_prefix,
        next_database: AtomicU32::new(0),
    }
}

/// A short, stable id of this host, so runs on other hosts sharing an
/// external server are never mistaken for this host's leftovers.
fn host_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let digest = <sha2::Sha256 as sha2::Digest>::digest(host.as_bytes());
    hex::encode(&digest[..3])
}

/// Creates a database that must not exist yet (a clash means two runs
/// picked one name, which must fail loudly rather than share).
async fn create_database(admin_url: &str, name: &str, template: Option<&str>) {
    local_postgres::create_database(admin_url, name, template)
        .await
        .unwrap_or_else(|e| panic!("creating database {name}: {e}"));
}

/// `cargo test` on a fresh machine: the project's script installs the
/// PostgreSQL server binaries and redis-server when they are missing (and
/// not replaced by DATABASE_URL / REDIS_URL).
fn install_missing_packages() {
    let external = |var: &str| std::env::var(var).is_ok_and(|v| !v.is_empty());
    let need_postgres = !external("DATABASE_URL") && tollgate::db::local_postgres::find_bin_dir().is_none();
    let need_redis = !external("REDIS_URL") && Command::new("redis-server").arg("--version").output().is_err();
    if !need_postgres && !need_redis {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install-deps.sh");
    let status = Command::new("bash").arg(&script).status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "{} could not install PostgreSQL / redis-server; install them or set DATABASE_URL and REDIS_URL",
        script.display()
    );
}

/// A private redis-server on a Unix socket (no port to collide on). It
/// lives as long as the test process; the watchdog stops it.
#[allow(clippy::zombie_processes)]
fn start_redis(work_dir: &Path) -> (String, u32) {
    let socket = work_dir.join("redis.sock");
    let child = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--save",
            "",
            "--appendonly",
            "no",
            "--unixsocketperm",
            "700",
        ])
        .arg("--unixsocket")
        .arg(&socket)
        .arg("--dir")
        .arg(work_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("starting redis-server ({e}): install redis-server (.ci/run does) or set REDIS_URL")
        });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(
            Instant::now() < deadline,
            "redis-server did not open {}",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (format!("redis+unix://{}", socket.display()), child.id())
}

/// Processes to stop when the test process is gone.
#[derive(Default)]
struct Watched {
    postgres_pid: Option<u32>,
    redis_pid: Option<u32>,
}

impl Watched {
    /// Rust tests have no teardown hook, so a detached shell waits for the
    /// test process to exit, then stops what it started and removes its
    /// folder. SIGINT is PostgreSQL's fast shutdown.
    #[allow(clippy::zombie_processes)] // detached on purpose: it outlives us
    fn spawn_watchdog(&self, test_pid: u32, work_dir: &Path) {
        let mut stops = String::new();
        if let Some(pid) = self.postgres_pid {
            stops.push_str(&format!("kill -INT {pid} 2>/dev/null; "));
        }
        if let Some(pid) = self.redis_pid {
            stops.push_str(&format!("kill -TERM {pid} 2>/dev/null; "));
        }
        let script = format!(
            "while kill -0 {test_pid} 2>/dev/null; do sleep 0.5; done; {stops} sleep 3; rm -rf '{}'",
            work_dir.display()
        );
        let spawned = {
            use std::os::unix::process::CommandExt;
            Command::new("sh")
                .args(["-c", &script])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
        };
        spawned.expect("starting the test watchdog");
    }
}

/// Drops databases left on an external server by earlier runs on this
/// host whose process is gone.
async fn drop_leftovers(database_url: &DatabaseUrl) {
    use diesel::{QueryableByName, sql_types::Text};
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

    #[derive(QueryableByName)]
    struct Name {
        #[diesel(sql_type = Text)]
        datname: String,
    }
    let Ok(mut conn) = AsyncPgConnection::establish(&database_url.for_database("postgres")).await else {
        return;
    };
    let ours = format!("tg\\_{}\\_%", host_id());
    let names: Vec<Name> = diesel::sql_query("SELECT datname FROM pg_database WHERE datname LIKE $1")
        .bind::<Text, _>(ours)
        .load(&mut conn)
        .await
        .unwrap_or_default();
    for Name { datname } in names {
        // tg_<host>_<pid>_<run>[_<n>]: only this host's dead runs are dropped.
        let pid = datname.split('_').nth(2).and_then(|p| p.parse::<i32>().ok());
        let alive = pid.is_some_and(|p| nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_ok());
        if !alive {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{datname}\" WITH (FORCE)"))
                .execute(&mut conn)
                .await;
        }
    }
}
