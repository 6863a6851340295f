//! The newcomer's one command, `scripts/demo.sh`, run as a user would run it from a
//! terminal: the curl lines it prints work when pasted, and Ctrl-C stops everything it
//! started. (Its own ports are free ones here, passed through its `DEMO_*` knobs, so the
//! test never collides with anything on the shipped 8000/8080/9090.)

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// The script and whatever it started: its own process group, killed when dropped (a
/// failed test leaves nothing running).
struct Demo {
    child: Child,
}

impl Drop for Demo {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group this test created.
        unsafe { libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    crate::support::port_to_bind_later()
}

fn answers(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// Runs one printed line in a shell, in `dir`, as a user pasting it would.
fn paste(line: &str, dir: &Path) -> String {
    let out = Command::new("bash")
        .args(["-c", line])
        .current_dir(dir)
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{line}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn demo_script_prints_curl_lines_that_work_and_ctrl_c_stops_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, public, internal) = (free_port(), free_port(), free_port());
    let mut cmd = Command::new("bash");
    cmd.arg(Path::new(REPO).join("scripts/demo.sh"))
        .env("DEMO_APP_PORT", app.to_string())
        .env("DEMO_PORT", public.to_string())
        .env("DEMO_INTERNAL_PORT", internal.to_string())
        .env("DEMO_DIR", dir.path().join("demo"))
        .env(
            "LABEL_GATEWAY_STORAGE__LOCAL_ROOT",
            dir.path().join("store"),
        )
        // The binary under test, not a release build of its own.
        .env("LABEL_GATEWAY_BIN", env!("CARGO_BIN_EXE_label-gateway"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    {
        use std::os::unix::process::CommandExt;
        // A process group of its own, with SIGINT handled by default as a terminal's
        // shell starts a command (a test runner may have it ignored).
        cmd.process_group(0);
        // SAFETY: signal(2) is async-signal-safe and touches only the child's own state.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                Ok(())
            });
        }
    }
    let mut demo = Demo {
        child: cmd.spawn().expect("start scripts/demo.sh"),
    };
    let (tx, rx) = mpsc::channel();
    let stdout = demo.child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut stderr = demo.child.stderr.take().expect("stderr");
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });

    // Up to the "running" banner and the first access-log line it shows.
    let mut printed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    while !printed.iter().any(|l: &String| l.contains("user=\"demo\"")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => printed.push(line),
            Err(_) => {
                // SAFETY: kill(2) on the process group this test created; stops the
                // script so that its stderr ends and can be shown.
                unsafe { libc::kill(-(demo.child.id() as libc::pid_t), libc::SIGKILL) };
                panic!(
                    "the demo never got ready:\n{}\n{}",
                    printed.join("\n"),
                    errors.join().unwrap_or_default()
                );
            }
        }
    }
    let line = |start: &str| {
        printed
            .iter()
            .map(|l| l.trim())
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no `{start}` line in:\n{}", printed.join("\n")))
            .to_string()
    };
    let with_session = line("curl -o DEMO123.pdf");
    assert!(
        with_session.contains("Cookie: sessionid="),
        "{with_session}"
    );
    let without = line("curl -i ");
    assert!(!without.contains("Cookie"), "{without}");
    let regenerated = line("curl -o REGEN-DEMO.pdf");

    let here = tempfile::tempdir().expect("tempdir");
    paste(&with_session, here.path());
    let pdf = std::fs::read(here.path().join("DEMO123.pdf")).expect("the label was saved");
    assert!(pdf.starts_with(b"%PDF-"), "a PDF");
    let refused = paste(&without, here.path());
    assert!(refused.starts_with("HTTP/1.1 404"), "{refused}");
    paste(&regenerated, here.path());
    let pdf = std::fs::read(here.path().join("REGEN-DEMO.pdf")).expect("regenerated label");
    assert!(pdf.starts_with(b"%PDF-"), "a regenerated PDF");
    assert!(answers(app) && answers(public) && answers(internal));

    // Ctrl-C, as a terminal sends it: to the whole foreground process group.
    // SAFETY: kill(2) on the process group this test created.
    let rc = unsafe { libc::kill(-(demo.child.id() as libc::pid_t), libc::SIGINT) };
    assert_eq!(rc, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = demo.child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the demo did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        status.code(),
        Some(130),
        "exit status of an interrupted script"
    );
    for (what, port) in [
        ("test app", app),
        ("gateway", public),
        ("internal", internal),
    ] {
        assert!(
            !answers(port),
            "the {what} still answers on {port} after Ctrl-C"
        );
    }
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(
        rest.iter()
            .any(|l| l.contains("stopping the gateway and the test app")),
        "{rest:?}"
    );
}
