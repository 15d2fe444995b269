//! Exit statuses by whose fault it is (README, "Exit status"): 2 for usage errors, 1 when the work
//! ran and part of it failed (caption.rs checks an unreadable image among good ones), 130 for an
//! interrupted training (train_cli.rs); and signals to a server, alone or after `demo`'s
//! training in the same process: the first drains, later ones are ignored, the exit is 0.

use crate::common::exe;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn status_of(cmd: &mut Command) -> (Option<i32>, String) {
    let out = cmd.output().expect("captioner runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn usage_errors_exit_2_and_name_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name);
    std::fs::create_dir(p("empty")).unwrap();
    std::fs::write(p("x.png"), b"not even an image").unwrap();
    std::fs::write(
        p("junk.db"),
        b"not a database, not at all; long enough to be read",
    )
    .unwrap();
    let cases: Vec<(Vec<std::ffi::OsString>, &str)> = vec![
        (
            vec![
                "caption".into(),
                "--model".into(),
                p("missing.safetensors").into(),
                p("x.png").into(),
            ],
            "missing.safetensors",
        ),
        (
            vec![
                "eval".into(),
                "--model".into(),
                p("missing.safetensors").into(),
                "--data".into(),
                p("empty").into(),
            ],
            "--data",
        ),
        (
            vec![
                "train".into(),
                "--data".into(),
                p("nope").into(),
                "--run".into(),
                p("run").into(),
            ],
            "nope",
        ),
        (
            vec![
                "train".into(),
                "--data".into(),
                p("empty").into(),
                "--run".into(),
                p("run").into(),
            ],
            "no corpus",
        ),
        (
            vec![
                "features".into(),
                "--data".into(),
                p("nope").into(),
                "--backbone".into(),
                p("b").into(),
                "--cache".into(),
                p("c").into(),
            ],
            "nope",
        ),
        (
            vec![
                "search".into(),
                "beach".into(),
                "--db".into(),
                p("missing.db").into(),
            ],
            "missing.db",
        ),
        (
            vec![
                "search".into(),
                "beach".into(),
                "--db".into(),
                p("junk.db").into(),
            ],
            "junk.db",
        ),
        (
            vec![
                "serve".into(),
                "--fake-engine".into(),
                "--timeout-s".into(),
                "0".into(),
                "--addr".into(),
                "127.0.0.1:0".into(),
            ],
            "--timeout-s",
        ),
        (
            vec![
                "serve".into(),
                "--library".into(),
                p("missing.db").into(),
                "--addr".into(),
                "127.0.0.1:0".into(),
            ],
            "missing.db",
        ),
        (
            vec![
                "caption".into(),
                "--beam".into(),
                "0".into(),
                "--model".into(),
                p("m").into(),
                p("x.png").into(),
            ],
            "--beam",
        ),
    ];
    for (args, names) in cases {
        let (code, stderr) = status_of(exe().args(&args));
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(names), "{args:?}: {stderr}");
    }
    assert!(
        !p("run").exists(),
        "a refused command leaves nothing behind"
    );
}

/// A running `captioner` whose stderr is watched for the address it serves on.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
}

pub(crate) fn spawn_until_serving(cmd: &mut Command, startup: Duration) -> Server {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("captioner starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.split("serving on http://").nth(1) {
                let _ = tx.send(at.trim().to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(startup)
        .unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("no `serving on` line within {startup:?}")
        })
        .parse()
        .unwrap();
    Server { child, addr }
}

pub(crate) fn signal(child: &Child, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name}");
}

/// Opens a connection and sends the start of an upload that never completes: the graceful drain
/// waits for it (at most --timeout-s + 5 s) until the connection is dropped.
fn unfinished_upload(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /api/caption HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\nPNG"
    )
    .unwrap();
    s.flush().unwrap();
    s
}

pub(crate) fn wait_exit(child: &mut Child, within: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if start.elapsed() > within {
            let _ = child.kill();
            panic!("did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The first signal starts the drain; a second and a third (Ctrl-C twice more, SIGTERM) while a
/// request is still in flight are ignored; once it ends the process exits 0.
fn drains_and_ignores_later_signals(mut server: Server) {
    let upload = unfinished_upload(server.addr);
    std::thread::sleep(Duration::from_millis(300));
    signal(&server.child, "INT");
    std::thread::sleep(Duration::from_millis(300));
    signal(&server.child, "INT");
    signal(&server.child, "TERM");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "a later signal during the drain ended the process: {:?}",
        server.child.try_wait()
    );
    assert!(
        TcpStream::connect_timeout(&server.addr, Duration::from_millis(500)).is_err(),
        "the listener is closed once draining"
    );
    drop(upload);
    assert_eq!(
        wait_exit(&mut server.child, Duration::from_secs(20)),
        Some(0)
    );
}

#[test]
fn serve_drains_on_the_first_signal_and_ignores_the_next() {
    let server = spawn_until_serving(
        exe().args(["serve", "--fake-engine", "--addr", "127.0.0.1:0"]),
        Duration::from_secs(30),
    );
    drains_and_ignores_later_signals(server);

    // SIGHUP (the terminal closed) ends it as gracefully.
    let mut server = spawn_until_serving(
        exe().args(["serve", "--fake-engine", "--addr", "127.0.0.1:0"]),
        Duration::from_secs(30),
    );
    signal(&server.child, "HUP");
    assert_eq!(
        wait_exit(&mut server.child, Duration::from_secs(20)),
        Some(0)
    );
}

#[test]
fn demo_serve_handles_signals_as_serve_does() {
    // Training ran first in this process, under the same signal handler.
    let tmp = tempfile::tempdir().unwrap();
    let out: &Path = &tmp.path().join("demo");
    let server = spawn_until_serving(
        exe()
            .args([
                "demo",
                "--no-progress",
                "--images",
                "20",
                "--epochs",
                "1",
                "--serve",
                "--addr",
                "127.0.0.1:0",
                "--out",
            ])
            .arg(out),
        Duration::from_secs(600),
    );
    drains_and_ignores_later_signals(server);
}
