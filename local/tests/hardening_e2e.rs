//! The local server's defences (issue 11, items 11, 13 and 17), against the real `hookline
//! serve`: no network listener but the API's and a private data directory; a header-read
//! timeout and a cap on open connections; the environment's admin key replacing a generated
//! one, and a short one refused.

mod common;

use common::*;
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Inodes of the TCP sockets in LISTEN state on this machine (IPv4 and IPv6).
fn listening_socket_inodes() -> HashSet<u64> {
    let mut inodes = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if fields.len() > 9 && fields[3] == "0A" {
                inodes.insert(fields[9].parse().unwrap());
            }
        }
    }
    inodes
}

/// The TCP ports `pid` listens on: its socket file descriptors that are listening sockets.
fn listening_ports_of(pid: u32) -> Vec<u16> {
    let listening = listening_socket_inodes();
    let mut own = HashSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let Ok(target) = std::fs::read_link(fd.unwrap().path()) else {
            continue;
        };
        let target = target.to_string_lossy().to_string();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|rest| rest.strip_suffix(']'))
        {
            let inode: u64 = inode.parse().unwrap();
            if listening.contains(&inode) {
                own.insert(inode);
            }
        }
    }
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() > 9 && own.contains(&fields[9].parse::<u64>().unwrap()) {
                let port = fields[1].rsplit(':').next().unwrap();
                ports.push(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports
}

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_listens_only_on_its_api_port_and_keeps_its_data_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("private");
    // A data directory as an older version (or a umask of 022) left it: readable by everyone.
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let stray = dir.join("notes.txt");
    std::fs::write(&stray, "left by hand").unwrap();
    std::fs::set_permissions(&stray, std::fs::Permissions::from_mode(0o644)).unwrap();

    let server = Server::start(&dir);
    let http = reqwest::Client::new();
    // The store in use: an account and a webhook written, read back.
    let (_, key) = new_account(&http, &server, "Private Clinic").await;
    new_webhook(
        &http,
        &server,
        &key,
        serde_json::json!({"type": "patient.created", "url": "http://127.0.0.1:9/hook"}),
    )
    .await;
    let (status, _) = call(&http, "GET", server.api("/webhook"), Some(&key), None).await;
    assert_eq!(status, 200);

    let api_port: u16 = server.base.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(
        listening_ports_of(server.child.id()),
        vec![api_port],
        "hookline serve listens on its API port and nothing else"
    );

    assert_eq!(
        mode_of(&dir),
        0o700,
        "the data directory is its owner's alone"
    );
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            files.push(entry.file_name().to_string_lossy().to_string());
            assert_eq!(
                mode_of(&entry.path()),
                0o600,
                "{} is readable by its owner only",
                entry.path().display()
            );
        }
    }
    for expected in ["hookline.sqlite3", "hookline.sqlite3-wal", "notes.txt"] {
        assert!(
            files.iter().any(|f| f == expected),
            "{expected} in {files:?}"
        );
    }
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Connects and sends the start of a request, never its end.
fn partial_request(base: &str) -> TcpStream {
    let mut stream = TcpStream::connect(base.trim_start_matches("http://")).unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .unwrap();
    stream
}

/// Reads until the server closes the connection (or `limit` passes); how long it took, and
/// what was read.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Option<Duration>, Vec<u8>) {
    let start = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        stream
            .set_read_timeout(Some(
                limit - start.elapsed().min(limit) + Duration::from_millis(1),
            ))
            .unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return (Some(start.elapsed()), received),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            // Reset by the server: closed too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (Some(start.elapsed()), received);
            }
            Err(_) => break,
        }
    }
    (None, received)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_that_never_finishes_its_headers_is_closed() {
    let dir = temp_dir("header-timeout");
    let server = Server::start_with_env(&dir, &[("HOOKLINE_HEADER_TIMEOUT", "1s")]);
    let base = server.base.clone();
    let (closed_after, _) = tokio::task::spawn_blocking(move || {
        let mut partial = partial_request(&base);
        read_until_closed(&mut partial, Duration::from_secs(6))
    })
    .await
    .unwrap();
    let closed_after = closed_after.expect("the server closes a connection stuck in its headers");
    assert!(
        closed_after < Duration::from_secs(4),
        "closed after {closed_after:?}, with a 1 s header timeout"
    );
    // A connection that sends nothing at all is closed too.
    let base = server.base.clone();
    let (silent_closed, _) = tokio::task::spawn_blocking(move || {
        let mut silent = TcpStream::connect(base.trim_start_matches("http://")).unwrap();
        read_until_closed(&mut silent, Duration::from_secs(6))
    })
    .await
    .unwrap();
    assert!(
        silent_closed.is_some_and(|t| t < Duration::from_secs(4)),
        "silent connection closed after {silent_closed:?}"
    );
    // And the server still answers.
    let (status, _) = call(
        &reqwest::Client::new(),
        "GET",
        format!("{}/health", server.base),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_connection_cap_new_connections_wait_until_one_closes() {
    let dir = temp_dir("connection-cap");
    let server = Server::start_with_env(
        &dir,
        &[
            ("HOOKLINE_HEADER_TIMEOUT", "2s"),
            ("HOOKLINE_MAX_CONNECTIONS", "2"),
        ],
    );
    let base = server.base.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let opened = Instant::now();
        let mut stuck: Vec<TcpStream> = (0..2)
            .map(|_| {
                let stream = partial_request(&base);
                std::thread::sleep(Duration::from_millis(100));
                stream
            })
            .collect();
        // A whole request, past the cap: the kernel takes the connection, the server does not.
        let mut waiting = TcpStream::connect(base.trim_start_matches("http://")).unwrap();
        waiting
            .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let (early, early_bytes) = read_until_closed(&mut waiting, Duration::from_millis(800));
        let unanswered_while_capped = early.is_none() && early_bytes.is_empty();
        let capped_for = opened.elapsed();
        // The stuck ones are closed by the header timeout; then the waiting one is served.
        for stream in &mut stuck {
            assert!(
                read_until_closed(stream, Duration::from_secs(6))
                    .0
                    .is_some(),
                "a stuck connection is closed by the header timeout"
            );
        }
        let (_, answer) = read_until_closed(&mut waiting, Duration::from_secs(6));
        (
            unanswered_while_capped,
            capped_for,
            String::from_utf8_lossy(&answer).to_string(),
        )
    })
    .await
    .unwrap();
    let (unanswered_while_capped, capped_for, answer) = outcome;
    assert!(
        capped_for < Duration::from_secs(2),
        "the check ran within the timeout"
    );
    assert!(
        unanswered_while_capped,
        "a connection past the cap is not served while the cap's worth are open"
    );
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "the waiting connection is served once the stuck ones are closed: {answer:?}"
    );
    let (status, _) = call(
        &reqwest::Client::new(),
        "GET",
        format!("{}/health", server.base),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200, "normal requests are served again");
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// `hookline serve` with `admin_key` (`None`: the variable unset); the server and what it
/// printed before its URL.
fn start_with_admin_key(dir: &Path, admin_key: Option<&str>) -> (Server, Vec<String>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hookline"));
    command
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env_remove("HOOKLINE_ADMIN_KEY")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(key) = admin_key {
        command.env("HOOKLINE_ADMIN_KEY", key);
    }
    let mut child = command.spawn().expect("hookline starts");
    let mut printed = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("hookline prints its URL")
            .expect("stdout is text");
        if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
            break url.to_string();
        }
        printed.push(line);
    };
    (Server { child, base }, printed)
}

async fn accounts_status(server: &Server, key: &str) -> u16 {
    let http = reqwest::Client::new();
    call(&http, "GET", server.api("/accounts"), Some(key), None)
        .await
        .0
}

#[tokio::test(flavor = "multi_thread")]
async fn the_environment_admin_key_replaces_the_generated_one() {
    let dir = temp_dir("admin-key");
    let (server, printed) = start_with_admin_key(&dir, None);
    let generated = printed
        .iter()
        .find_map(|line| line.strip_prefix("Admin key (shown once, keep it): "))
        .expect("the first start prints a generated key")
        .to_string();
    assert_eq!(accounts_status(&server, &generated).await, 200);
    server.stop();

    let (server, printed) = start_with_admin_key(&dir, Some(ADMIN_KEY));
    assert!(
        printed.iter().any(|l| l.contains("no longer works")),
        "{printed:?}"
    );
    assert_eq!(
        accounts_status(&server, &generated).await,
        401,
        "the generated key stops working once HOOKLINE_ADMIN_KEY is set"
    );
    assert_eq!(accounts_status(&server, ADMIN_KEY).await, 200);
    server.stop();

    // It stays revoked on later starts, with or without the variable (a new key is generated
    // and printed when the variable is unset again).
    let (server, printed) = start_with_admin_key(&dir, None);
    let second = printed
        .iter()
        .find_map(|line| line.strip_prefix("Admin key (shown once, keep it): "))
        .expect("a new key is generated once the environment's is gone")
        .to_string();
    assert_eq!(accounts_status(&server, &generated).await, 401);
    assert_eq!(accounts_status(&server, ADMIN_KEY).await, 401);
    assert_eq!(accounts_status(&server, &second).await, 200);
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_short_admin_key_is_refused_at_start() {
    let dir = temp_dir("short-admin-key");
    let short = "short-key-31-characters-long-xx";
    assert_eq!(short.len(), 31);
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookline"))
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .env("HOOKLINE_ADMIN_KEY", short)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hookline runs");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Still running means it accepted the key: stop it, then fail below.
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("HOOKLINE_ADMIN_KEY"), "{stderr}");
    assert!(stderr.contains("32"), "{stderr}");
    assert!(!stderr.contains(short), "the key is never echoed: {stderr}");
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("http://"),
        "it never starts serving"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
