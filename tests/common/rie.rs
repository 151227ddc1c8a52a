//! AWS's Lambda Runtime Interface Emulator (RIE) around a runtime binary of ours, on loopback ports: started,
//! invoked as the Lambda Invoke API is (`POST /2015-03-31/functions/function/invocations`), stopped on drop.
//! One emulator is one execution environment: it runs one invocation at a time, as Lambda does.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The emulator named by `KMS_ENVELOPE_RIE`, or `None` after the skip line (a failure under CI=true).
pub fn emulator() -> Option<PathBuf> {
    std::env::var_os("KMS_ENVELOPE_RIE").map(PathBuf::from).filter(|p| p.is_file()).or_else(|| {
        crate::common::missing("the Lambda Runtime Interface Emulator (KMS_ENVELOPE_RIE; scripts/rie.sh fetches it)")
    })
}

/// The RIE running `runtime`, stopped on drop: SIGTERM first, so that it shuts its runtime process down
/// (which runs in a process group of its own), then SIGKILL if it is still there after a few seconds.
pub struct Rie {
    child: Child,
    /// The port the Invoke API listens on.
    pub port: u16,
    /// What the emulator and the runtime printed.
    pub log: PathBuf,
}

impl Drop for Rie {
    fn drop(&mut self) {
        crate::common::stop_gracefully(&mut self.child, Duration::from_secs(5));
    }
}

impl Rie {
    /// Starts `rie` around `runtime`, its environment set by `configure`, its output in `log`.
    ///
    /// Two free ports are released before the emulator binds them, so another process may take one
    /// meanwhile; then the emulator exits at once and a fresh pair is tried.
    pub fn start(rie: &Path, runtime: &Path, log: &Path, configure: impl Fn(&mut Command)) -> Self {
        for _attempt in 0..5 {
            let (api_port, port) = (free_port(), free_port());
            let log_file = std::fs::File::create(log).unwrap();
            let mut command = Command::new(rie);
            configure(&mut command);
            command
                .arg("--runtime-interface-emulator-address")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--runtime-api-address")
                .arg(format!("127.0.0.1:{api_port}"))
                .arg(runtime)
                .stdout(log_file.try_clone().unwrap())
                .stderr(log_file);
            let mut started = Rie { child: command.spawn().unwrap(), port, log: log.to_owned() };
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return started;
                }
                if matches!(started.child.try_wait(), Ok(Some(_))) || Instant::now() >= deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("the RIE never listened: {}", std::fs::read_to_string(log).unwrap_or_default());
    }

    /// Invokes the function with `event` (JSON); returns the status and the response body.
    pub fn invoke(&self, event: &str) -> (u16, String) {
        post(self.port, "/2015-03-31/functions/function/invocations", event)
    }

    /// What the emulator and the runtime printed so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// POSTs `body` to `url_path` on 127.0.0.1:`port`; returns (status, body).
fn post(port: u16, url_path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(
        stream,
        "POST {url_path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.into() };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}
