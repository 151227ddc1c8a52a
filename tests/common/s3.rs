//! A fake S3 on 127.0.0.1 that serves a few objects slowly, or never completely: for tests that must catch
//! a process in the middle of a download, or hold it there for a while.
#![allow(dead_code)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A local S3 endpoint (path-style, plain HTTP) serving a few objects, whole or by `Range`. The first
/// GetObject of each object that reaches its last byte sends what lies before the object's middle at once,
/// then one byte every 100 ms (enough for the SDK's stalled-stream protection, never enough to finish),
/// until the client goes away; later ones send it whole. A decrypt fed by it cannot finish, however fast
/// the machine: the process is caught mid-decrypt by construction. Each object has an `ETag`.
pub struct TricklingS3 {
    /// `http://127.0.0.1:port`.
    pub url: String,
}

/// How the first complete GetObject of each object is sent.
#[derive(Clone, Copy)]
enum Pace {
    /// Half at once, then a byte every 100 ms, never finishing.
    Trickle,
    /// Half at once, then nothing for this long, then the rest.
    Pause(Duration),
    /// Whole at once, and without an `ETag` header (nor on any other answer).
    WholeWithoutEtag,
}

impl TricklingS3 {
    pub fn start(objects: Vec<(&'static str, Vec<u8>)>) -> Self {
        Self::serving(objects, Pace::Trickle)
    }

    /// The same endpoint, but the first complete GetObject of each object stops halfway for `pause`, then
    /// finishes: a download that takes at least `pause`, however fast the machine.
    pub fn pausing(objects: Vec<(&'static str, Vec<u8>)>, pause: Duration) -> Self {
        Self::serving(objects, Pace::Pause(pause))
    }

    /// The same endpoint, sending every object whole at once and no `ETag` header.
    pub fn without_etag(objects: Vec<(&'static str, Vec<u8>)>) -> Self {
        Self::serving(objects, Pace::WholeWithoutEtag)
    }

    fn serving(objects: Vec<(&'static str, Vec<u8>)>, pace: Pace) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let objects: Arc<Vec<(&'static str, Vec<u8>, AtomicUsize)>> =
            Arc::new(objects.into_iter().map(|(key, body)| (key, body, AtomicUsize::new(0))).collect());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let objects = objects.clone();
                std::thread::spawn(move || Self::serve(stream, &objects, pace));
            }
        });
        Self { url }
    }

    fn serve(stream: TcpStream, objects: &[(&'static str, Vec<u8>, AtomicUsize)], pace: Pace) {
        use std::io::BufRead as _;
        let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        loop {
            let mut request = String::new();
            if reader.read_line(&mut request).unwrap_or(0) == 0 {
                return;
            }
            let mut line = String::new();
            let mut range = None;
            while reader.read_line(&mut line).unwrap_or(0) > 0 && !line.trim_end().is_empty() {
                if let Some(value) = line.to_ascii_lowercase().trim_end().strip_prefix("range: bytes=") {
                    let (first, last) = value.split_once('-').unwrap();
                    range = Some((first.parse::<usize>().unwrap(), last.parse::<usize>().unwrap()));
                }
                line.clear();
            }
            let mut words = request.split_whitespace();
            let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            let key = target.split('?').next().unwrap_or("").rsplit('/').next().unwrap_or("");
            let Some((_, body, gets)) = objects.iter().find(|(name, _, _)| *name == key) else {
                let _ = writer.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
                continue;
            };
            let (status, start, end) = match range {
                Some((first, last)) if method != "HEAD" => ("206 Partial Content", first, last + 1),
                _ => ("200 OK", 0, body.len()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\n{}\
                 content-type: application/octet-stream\r\n\r\n",
                end - start,
                match pace {
                    Pace::WholeWithoutEtag => String::new(),
                    Pace::Trickle | Pace::Pause(_) => format!("etag: \"trickling-{key}\"\r\n"),
                },
            );
            if writer.write_all(head.as_bytes()).is_err() {
                return;
            }
            if method == "HEAD" {
                continue;
            }
            let first_whole = end == body.len() && gets.fetch_add(1, Ordering::SeqCst) == 0;
            if matches!(pace, Pace::WholeWithoutEtag) || !first_whole {
                if writer.write_all(&body[start..end]).is_err() {
                    return;
                }
                continue;
            }
            let half = (body.len() / 2).max(start);
            if writer.write_all(&body[start..half]).is_err() {
                return;
            }
            if let Pace::Pause(pause) = pace {
                std::thread::sleep(pause);
                if writer.write_all(&body[half..]).is_err() {
                    return;
                }
                continue;
            }
            for byte in &body[half..] {
                std::thread::sleep(Duration::from_millis(100));
                if writer.write_all(std::slice::from_ref(byte)).and_then(|()| writer.flush()).is_err() {
                    return; // the client is gone
                }
            }
        }
    }
}
