//! The `tollgate` binary as an operator uses it.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::harness::services;

fn tollgate() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    // The operator's environment must not leak into these runs.
    for var in [
        "DATABASE_URL",
        "REDIS_URL",
        "JWT_SECRET",
        "APP_ENV",
        "PORT",
        "HOST",
        "DATA_DIR",
        "PUBLIC_URL",
        "SECRETS_KEY",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
    ] {
        command.env_remove(var);
    }
    command.env("RUST_LOG", "warn");
    command
}

fn run(command: &mut Command) -> (bool, String, String) {
    let output = command.output().expect("running tollgate");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn export_schema_writes_the_sdl() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("schema.graphql");
    let (ok, _, stderr) = run(tollgate().args(["export-schema", "--out"]).arg(&out));
    assert!(ok, "{stderr}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), tollgate::graphql::export_sdl());

    let (ok, stdout, _) = run(tollgate().arg("export-schema"));
    assert!(ok);
    assert!(stdout.contains("type Query"));
}

#[test]
fn a_bad_setting_stops_start_up_naming_the_variable() {
    let output = tollgate().arg("serve").env("PORT", "eighty").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("PORT"), "{stderr}");
}

#[tokio::test]
async fn migrate_applies_every_migration_once() {
    let url = services().create_empty_database().await;
    let (ok, stdout, stderr) = run(tollgate().arg("migrate").env("DATABASE_URL", &url));
    assert!(ok, "{stderr}");
    let applied = stdout.lines().filter(|l| l.starts_with("applied ")).count();
    let on_disk = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .count();
    assert_eq!(applied, on_disk, "{stdout}");

    let (ok, stdout, _) = run(tollgate().arg("migrate").env("DATABASE_URL", &url));
    assert!(ok);
    assert!(stdout.contains("up to date"), "{stdout}");
}

#[tokio::test]
async fn every_migration_reverts_cleanly() {
    use diesel::Connection;
    use diesel_async::{AsyncPgConnection, async_connection_wrapper::AsyncConnectionWrapper};
    use diesel_migrations::MigrationHarness;

    let url = services().create_empty_database().await;
    tokio::task::spawn_blocking(move || {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url).unwrap();
        use tollgate::db::migrations::MIGRATIONS;
        conn.run_pending_migrations(MIGRATIONS).unwrap();
        conn.revert_all_migrations(MIGRATIONS).expect("every down.sql runs");
        conn.run_pending_migrations(MIGRATIONS).expect("and up again");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn create_admin_creates_then_promotes() {
    let (_, url) = services().create_database().await;
    let (ok, stdout, stderr) = run(tollgate()
        .args([
            "create-admin",
            "--email",
            " Root@Example.com ",
            "--password",
            "a long admin password",
            "--name",
            "Root",
        ])
        .env("DATA_DIR", tempfile::tempdir().unwrap().path())
        .env("DATABASE_URL", &url));
    assert!(ok, "{stderr}");
    assert!(stdout.contains("created admin root@example.com"), "{stdout}");

    let (ok, stdout, stderr) = run(tollgate()
        .args([
            "create-admin",
            "--email",
            "root@example.com",
            "--password",
            "another long password",
        ])
        .env("DATA_DIR", tempfile::tempdir().unwrap().path())
        .env("DATABASE_URL", &url));
    assert!(ok, "{stderr}");
    assert!(stdout.contains("promoted root@example.com"), "{stdout}");

    let (ok, _, stderr) = run(tollgate()
        .args(["create-admin", "--email", "x@example.com", "--password", "short"])
        .env("DATA_DIR", tempfile::tempdir().unwrap().path())
        .env("DATABASE_URL", &url));
    assert!(!ok);
    assert!(stderr.contains("8 to 128"), "{stderr}");

    use diesel::prelude::*;
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    use tollgate::db::schema::users;
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
    let rows: Vec<(String, String, bool)> = users::table
        .select((users::email, users::role, users::email_verified_at.is_not_null()))
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows, [("root@example.com".to_owned(), "ADMIN".to_owned(), true)]);
    let personal: i64 = tollgate::db::schema::organizations::table
        .filter(tollgate::db::schema::organizations::personal_user_id.is_not_null())
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(personal, 1, "like every user, the admin has a personal organization");
}

/// `cargo run` on a machine with nothing configured: the binary starts its
/// own PostgreSQL, migrates, serves, and stops it all on SIGTERM.
#[tokio::test]
async fn serve_with_no_configuration_runs_its_own_postgres_and_stops_it() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    // When the tests run as root, PostgreSQL runs as an unprivileged user
    // who must be able to enter the data folder's parent.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = tollgate()
        .arg("serve")
        // No .env of the developer's checkout: the run is what CI sees.
        .current_dir(dir.path())
        .env("DATA_DIR", dir.path())
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = StopOnDrop {
        child,
        data_dir: dir.path().join("postgres"),
    };
    let child = &mut guard.child;

    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = client.get(format!("{base}/ready")).send().await
            && response.status().is_success()
        {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
            panic!("tollgate exited with {status}: {stderr}");
        }
        assert!(Instant::now() < deadline, "not ready within 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let plans: serde_json::Value = client
        .post(format!("{base}/graphql"))
        .json(&serde_json::json!({ "query": "{ plans { key } }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(plans["data"]["plans"][0]["key"], "free");
    let pid_file = dir.path().join("postgres/postmaster.pid");
    assert!(pid_file.exists(), "the embedded PostgreSQL runs in DATA_DIR/postgres");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "tollgate did not stop within 30 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status}");
    assert!(!pid_file.exists(), "the embedded PostgreSQL was stopped");
}

/// Kills the server and its PostgreSQL if the test fails half-way, so
/// nothing outlives the run.
struct StopOnDrop {
    child: std::process::Child,
    data_dir: std::path::PathBuf,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let pid = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).unwrap_or_default();
        if let Some(pid) = pid.lines().next().and_then(|p| p.trim().parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGINT);
        }
    }
}
