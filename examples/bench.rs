//! The bench harness: the machinery the bench scripts shared (load average before and after, alternated
//! rounds, medians, peak RSS, one goal-line format, building what is timed), with each benchmark a short
//! description of the commands it times, its peers and its goals.
//!
//! ```text
//! cargo run -q --no-default-features --example bench -- NAME    NAME from `--list`:
//!   throughput goals reencrypt range cache batch lambda extension s3 s3-model hierarchy
//! ```
//!
//! scripts/*bench*.sh are wrappers of this, one per benchmark, as the README names them.
//!
//! It is an example rather than a `[[bench]]`: `cargo bench` would run it with every other bench, and it
//! times whole processes (the CLI against `cp`, the Python ESDK, ...), so it needs none of the crate; as an
//! example it builds with the dev-dependencies (`libc`, for `wait4`) and is checked by
//! `clippy --all-targets`, and it is never installed. It builds the binaries it times itself
//! (`cargo build --profile profiling`, line tables for `perf`) unless `BIN` names the CLI (`LAMBDA`,
//! `EXTENSION`, `MODEL`, `NULL` the other binaries). Benchmarks that talk to AWS get moto
//! (`KMS_ENVELOPE_MOTO_ENDPOINT`'s, or one started here) and the venv's Python (`KMS_ENVELOPE_PYTHON`, or
//! `.venv/bin/python`, which scripts/test.sh builds).
//!
//! Variables, as the scripts had them: `RUNS` (rounds; medians), `WORK` (scratch directory), `BENCH_MIB`
//! (input size), `FRAME`, and per benchmark those `--list` names. Every goal line reads
//!
//! ```text
//!   <what>   ratio 0.93x  goal >= 0.9x  MET
//! ```
//!
//! where the ratio is the one its text names: mostly the peer's time over ours (above 1: we are faster),
//! some ours over a baseline's (goal `<=`); a memory line gives the peak RSS in MiB against its bound.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

type Result<T, E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

/// A benchmark: what it times, in a line, and how to run it.
struct Benchmark {
    name: &'static str,
    what: &'static str,
    run: fn(&Env) -> Result<()>,
}

const BENCHMARKS: &[Benchmark] = &[
    Benchmark {
        name: "throughput",
        what: "issue #3 (was scripts/bench.sh): on one BENCH_MIB (1024) MiB file, openssl speed (one core), cp, \
               cp + fsync, the Python ESDK, the CLI file to file (aes-gcm, aws-lc), in memory on 1 and 2 threads \
               (benches/inmemory.rs); peak RSS <= 12 MiB (also at 4x the size); issue #12's goals with the aws-lc \
               CLI. RUNS (3), BENCH_FRAME (65536), BENCH_QUICK=1 (256 MiB, no 4x RSS, no Python decrypt), \
               BENCH_BY_FRAME=1 (then benches/throughput.rs, by frame length and threads, both backends)",
        run: throughput,
    },
    Benchmark {
        name: "goals",
        what: "issue #12 (was scripts/bench-goals.sh): CLI file to file --no-fsync vs cp, durable vs cp + sync, \
               pipes and stdout vs file to file, unpinned and on one core; peak RSS <= 12 MiB. \
               BENCH_MIB (64), RUNS (3), PLAIN (input), RSS_4GIB=1 (also a 4 GiB input)",
        run: goals,
    },
    Benchmark {
        name: "reencrypt",
        what: "issue #26 (was scripts/reencrypt-bench.sh): reencrypt vs cp, cp + sync, decrypt + encrypt; \
               peak RSS <= 16 MiB. BENCH_MIB (1024), RUNS (5)",
        run: reencrypt,
    },
    Benchmark {
        name: "range",
        what: "issue #13 (was scripts/range-bench.sh): decrypt_range of LEN (1 MiB) bytes from the middle of a \
               SIZE (4 GiB) message: bytes read vs what it must read, time vs a full decrypt. RUNS (3)",
        run: range,
    },
    Benchmark {
        name: "cache",
        what: "issue #14 (was scripts/cache-bench.sh): 1 KiB raw-AES round trips on one core (benches/small.rs) vs \
               the Python ESDK and the fixed-cost floor; KMS (moto) with and without the data-key cache. \
               BENCH_SECONDS (3), BENCH_CARGO_FLAGS (e.g. --no-default-features: raw keys only), \
               KMS_ENVELOPE_MOTO_ENDPOINT (else moto is started)",
        run: cache,
    },
    Benchmark {
        name: "batch",
        what: "issue #26 (was scripts/batch-bench.sh): benches/batch.rs, the kms-envelope-batch binary under the \
               Lambda emulator on moto; KMS calls per object with and without the cache. \
               BENCH_OBJECTS (1000), BENCH_ENVIRONMENTS (2), BENCH_PROFILE (bench; dev builds quicker), \
               BENCH_CARGO_FLAGS (--no-default-features --features batch), KMS_ENVELOPE_MOTO_ENDPOINT, \
               KMS_ENVELOPE_RIE",
        run: batch,
    },
    Benchmark {
        name: "lambda",
        what: "issue #12 (was scripts/lambda-bench.sh): a cold examples/lambda_cold_start --once decrypting a \
               BENCH_MIB (100) MiB bundle (KMS key in moto) vs cp + one KMS Decrypt and vs the Python ESDK, \
               unpinned and on one core; peak RSS at a tenth of the size. RUNS (5), LAMBDA (the example)",
        run: lambda,
    },
    Benchmark {
        name: "extension",
        what: "issue #15 (was scripts/extension-bench.sh): a Python function's cold start under the Lambda \
               emulator with the extension decrypting a BENCH_MIB (100) MiB bundle, with no secrets, and with the \
               Python ESDK in its init; vs cp + one KMS Decrypt. Needs root. RUNS (5), EXTENSION (the binary), \
               KMS_ENVELOPE_RIE",
        run: extension,
    },
    Benchmark {
        name: "s3",
        what: "issue #13 (was scripts/s3-bench.sh), through moto: encrypt to and decrypt from S3 of S3_BENCH_MIB \
               (1024) MiB vs boto3's transfer manager, peak RSS vs the transfer's bound; decrypt --range of 1 MiB: \
               requests, KMS calls and bytes, counted by a proxy. RUNS (1), BIN, KMS_ENVELOPE_MOTO_ENDPOINT",
        run: s3,
    },
    Benchmark {
        name: "s3-model",
        what: "issue #27 (was scripts/s3-model-bench.sh), on examples/s3_model.rs (datacenter and Lambda-like): \
               encrypt/decrypt of S3_BENCH_MIB (1024) MiB vs boto3, vs the network's limit (a null client), peak \
               RSS vs the bound; faults; the Lambda decryptor's S3 source (LAMBDA_MIB, 100) vs null GETs + one \
               KMS Decrypt. RUNS (3), S3_CONCURRENCY, S3_PART_SIZE, FAULT_LIMIT (120), BIN + MODEL + NULL \
               (+ LAMBDA), KMS_ENVELOPE_MOTO_ENDPOINT",
        run: s3_model,
    },
    Benchmark {
        name: "hierarchy",
        what: "issue #29, through moto (benches/small.rs): HIERARCHY_MESSAGES (10000) encrypts of 1 KiB with the \
               Hierarchical keyring (DynamoDB branch key store, cache TTL 600 s) vs the plain KMS keyring, same \
               run: store fetches (each one GetItem + one KMS Decrypt) and KMS keyring calls counted, messages/s. \
               BENCH_CARGO_FLAGS, KMS_ENVELOPE_MOTO_ENDPOINT (else moto is started)",
        run: hierarchy,
    },
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let list = || {
        for b in BENCHMARKS {
            eprintln!("{:<10} {}", b.name, b.what);
        }
    };
    if args.iter().any(|a| a == "--list" || a == "--help" || a == "-h") {
        list();
        return;
    }
    let [name] = &args[..] else {
        eprintln!("usage: cargo run --example bench -- NAME (or --list)");
        list();
        std::process::exit(2);
    };
    let Some(bench) = BENCHMARKS.iter().find(|b| b.name == name) else {
        eprintln!("bench: no benchmark named {name:?}");
        list();
        std::process::exit(2);
    };
    let result = Env::new().and_then(|env| {
        let result = (bench.run)(&env);
        env.clean_up();
        result
    });
    if let Err(e) = result {
        eprintln!("bench {name}: error: {e}");
        std::process::exit(1);
    }
}

/// What every benchmark is given: its settings, a scratch directory, and where the binaries are built.
struct Env {
    runs: usize,
    work: PathBuf,
    own_work: bool,
    repo: PathBuf,
}

impl Env {
    fn new() -> Result<Env> {
        let runs = var_or("RUNS", 0)?;
        let (work, own_work) = match std::env::var_os("WORK") {
            Some(w) => (PathBuf::from(w), false),
            None => {
                let tmp = std::env::var_os("TMPDIR").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
                let dir = tmp.join(format!("kms-envelope-bench.{}", std::process::id()));
                std::fs::create_dir_all(&dir)?;
                (dir, true)
            }
        };
        Ok(Env { runs, work, own_work, repo: PathBuf::from(env!("CARGO_MANIFEST_DIR")) })
    }

    /// `RUNS`, or the benchmark's own default.
    fn runs(&self, default: usize) -> usize {
        if self.runs == 0 { default } else { self.runs }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.work.join(name)
    }

    fn clean_up(&self) {
        if self.own_work {
            let _ = std::fs::remove_dir_all(&self.work);
        }
    }

    /// Builds `targets` (cargo arguments such as `--bin kms-envelope`) with the `profiling` profile and
    /// returns that profile's output directory.
    fn build(&self, features: &str, targets: &[&str]) -> Result<PathBuf> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(&self.repo)
            .args(["build", "-q", "--profile", "profiling", "--no-default-features", "--features", features])
            .args(targets)
            .status()?;
        if !status.success() {
            return Err(format!("cargo build {targets:?} failed").into());
        }
        let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| self.repo.join("target"), PathBuf::from);
        Ok(target.join("profiling"))
    }

    /// The CLI to time: `BIN`, or the profiling build with `features`.
    fn cli(&self, features: &str) -> Result<PathBuf> {
        match std::env::var_os("BIN") {
            Some(bin) => Ok(PathBuf::from(bin)),
            None => Ok(self.build(features, &["--bin", "kms-envelope"])?.join("kms-envelope")),
        }
    }
}

/// The test venv's Python (scripts/test.sh builds it): `KMS_ENVELOPE_PYTHON`, or `.venv/bin/python`.
fn python(env: &Env) -> Result<PathBuf> {
    let py = std::env::var_os("KMS_ENVELOPE_PYTHON").map_or_else(|| env.repo.join(".venv/bin/python"), PathBuf::from);
    if !py.exists() {
        return Err(format!(
            "no Python venv at {} (run scripts/test.sh once, or set KMS_ENVELOPE_PYTHON)",
            py.display()
        )
        .into());
    }
    Ok(py)
}

/// A process started for a benchmark (moto, the modelled S3, a counting proxy), killed and reaped on drop.
struct Background {
    child: std::process::Child,
    /// Its stdout, once its first line is read: kept open, so that the process may write more.
    _stdout: Option<std::io::BufReader<std::process::ChildStdout>>,
}

impl Background {
    /// Starts `cmd` with its stdin held open (the modelled S3 serves until it closes) and returns the
    /// process with the first line it prints (the address it serves on).
    fn serve(cmd: &mut Command) -> Result<(Background, String)> {
        use std::io::BufRead as _;
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let process = Background { child, _stdout: Some(stdout) };
        if line.trim().is_empty() {
            return Err(format!("{cmd:?} printed no address").into());
        }
        Ok((process, line.trim().to_string()))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A moto server (KMS, S3) on 127.0.0.1: `KMS_ENVELOPE_MOTO_ENDPOINT`'s, or one started here on a free port
/// with the venv's Python and stopped on drop.
struct Moto {
    endpoint: String,
    _process: Option<Background>,
}

impl Moto {
    fn start(env: &Env) -> Result<Moto> {
        if let Ok(endpoint) = std::env::var("KMS_ENVELOPE_MOTO_ENDPOINT") {
            return Ok(Moto { endpoint, _process: None });
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = std::fs::File::create(env.path("moto.log"))?;
        let child = Command::new(python(env)?)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let moto =
            Moto { endpoint: format!("http://127.0.0.1:{port}"), _process: Some(Background { child, _stdout: None }) };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(moto);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Err(format!("moto did not listen on port {port} (see {})", env.path("moto.log").display()).into())
    }

    /// A new KMS key in moto and a data key wrapped by it (base64): the key ARN and the blob that one bare
    /// `Decrypt` unwraps.
    fn key_and_blob(&self, env: &Env) -> Result<(String, String)> {
        let out =
            output(&format!("AWS_ENDPOINT_URL_KMS={} {} -c {}", self.endpoint, q(python(env)?), q(PYTHON_KMS_KEY)))?;
        let mut words = out.split_whitespace().map(str::to_string);
        match (words.next(), words.next()) {
            (Some(arn), Some(blob)) => Ok((arn, blob)),
            _ => Err(format!("no key ARN and data key from moto: {out:?}").into()),
        }
    }

    /// One bare KMS `Decrypt` of `blob` under `arn`, signed by curl: the KMS part of a baseline.
    fn decrypt_command(&self, arn: &str, blob: &str) -> String {
        format!(
            "curl -fsS -o /dev/null --aws-sigv4 aws:amz:us-east-1:kms --user testing:testing \
             -H 'X-Amz-Target: TrentService.Decrypt' -H 'Content-Type: application/x-amz-json-1.1' \
             -d '{{\"CiphertextBlob\":\"{blob}\",\"KeyId\":\"{arn}\"}}' {}/",
            self.endpoint
        )
    }
}

/// Sets what the AWS clients of every process started from here read: moto's test credentials, us-east-1,
/// no instance metadata, and the S3 and KMS endpoints.
fn aws_environment(s3: &str, kms: &str) {
    let set = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_ENDPOINT_URL_S3", s3),
        ("AWS_ENDPOINT_URL_KMS", kms),
    ];
    // SAFETY: the harness has one thread here (`measure` joins the one it starts before returning), so
    // nothing reads the environment while it changes.
    unsafe {
        for name in ["AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL"] {
            std::env::remove_var(name);
        }
        for (name, value) in set {
            std::env::set_var(name, value);
        }
    }
}

/// Lambda's Runtime Interface Emulator: `KMS_ENVELOPE_RIE`, or the one scripts/rie.sh fetches.
fn rie(env: &Env) -> Result<PathBuf> {
    if let Some(rie) = std::env::var_os("KMS_ENVELOPE_RIE") {
        return Ok(rie.into());
    }
    let out = Command::new(env.repo.join("scripts/rie.sh")).stderr(Stdio::inherit()).output()?;
    if !out.status.success() {
        return Err("cannot fetch the Lambda Runtime Interface Emulator (scripts/rie.sh)".into());
    }
    Ok(String::from_utf8(out.stdout)?.trim().into())
}

/// Encrypts `plain` into `message` with the Python ESDK (tests/peers/esdk_peer.py) under the KMS key `arn`,
/// as a bundle is made: suite 0x0478, 64 KiB frames, context `purpose=bench`.
fn peer_encrypt(env: &Env, moto: &Moto, arn: &str, plain: &Path, message: &Path) -> Result<()> {
    sh(&format!(
        "{} {} encrypt --in {} --out {} --kms-key {arn} --kms-endpoint {} --suite 0x0478 --frame-length 65536 \
         --context-json '{{\"purpose\":\"bench\"}}'",
        q(python(env)?),
        q(env.repo.join("tests/peers/esdk_peer.py")),
        q(plain),
        q(message),
        moto.endpoint
    ))
}

/// Fails unless the files `a` and `b` hold the same bytes; `what` names the run that wrote `b`.
fn same_bytes(a: &Path, b: &Path, what: &str) -> Result<()> {
    sh(&format!("cmp -s {} {}", q(a), q(b))).map_err(|_| format!("{what}: the bytes differ from the input's").into())
}

/// The number a default of the CLI's `decrypt --help` starts with, for the option `flag`
/// (`--s3-part-size <SIZE>` ... `[default: 8MiB]` gives 8).
fn cli_default(bin: &Path, flag: &str) -> Result<u64> {
    let help = output(&format!("{} decrypt --help", q(bin)))?;
    let missing = || format!("the CLI's decrypt --help states no default for {flag}");
    let after = help.split(flag).nth(1).ok_or_else(missing)?;
    let default = after[after.find('[').ok_or_else(missing)?..].strip_prefix("[default: ").ok_or_else(missing)?;
    let digits: String = default.chars().take_while(char::is_ascii_digit).collect();
    Ok(digits.parse().map_err(|_| missing())?)
}

/// Builds `benches/NAME.rs` (`cargo bench --no-run`, with the cargo arguments `flags`) and returns its
/// executable.
fn bench_executable(env: &Env, name: &str, flags: &str) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(cargo)
        .current_dir(&env.repo)
        .args(["bench", "-q", "--bench", name, "--no-run", "--message-format=json"])
        .args(flags.split_whitespace())
        .stderr(Stdio::inherit())
        .output()?;
    if !built.status.success() {
        return Err(format!("cargo bench --bench {name} --no-run {flags} failed").into());
    }
    String::from_utf8(built.stdout)?
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["executable"].as_str().map(PathBuf::from))
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(name)))
        .ok_or_else(|| format!("no executable for benches/{name}.rs in cargo's output").into())
}

/// An environment variable parsed, or `default` when unset.
fn var_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Ok(v) => v.parse().map_err(|_| format!("{name}={v:?} is not a number").into()),
        Err(_) => Ok(default),
    }
}

fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// The number on the line `KEY NUMBER` of a bench's output.
fn value(out: &str, key: &str) -> Option<f64> {
    out.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A file name or argument quoted for `bash -c`.
fn q(path: impl AsRef<Path>) -> String {
    format!("'{}'", path.as_ref().display().to_string().replace('\'', r"'\''"))
}

/// `bytes` random bytes in `path`.
fn random_file(path: &Path, bytes: u64) -> Result<()> {
    sh(&format!("head -c {bytes} /dev/urandom >{}", q(path)))
}

/// Runs a shell command line untimed; its failure is the benchmark's.
fn sh(cmd: &str) -> Result<()> {
    measure(None, cmd).map(|_| ())
}

/// Runs a shell command line untimed and returns its stdout.
fn output(cmd: &str) -> Result<String> {
    let out = Command::new("bash").args(["-c", cmd]).stderr(Stdio::piped()).output()?;
    if !out.status.success() {
        return Err(format!("{}: {cmd}\n{}", out.status, String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// One run of a shell command line: its wall time and its peak RSS.
struct Run {
    seconds: f64,
    rss_kib: u64,
}

/// Runs `bash -c CMD` (under `pin`, e.g. `taskset -c 0`), output discarded, and reaps it with `wait4` for
/// its own peak RSS (that of the process and the children it waited for, as `/usr/bin/time` reports).
// The child is reaped by `wait4` (for its rusage), which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn measure(pin: Option<&str>, cmd: &str) -> Result<Run> {
    use std::os::unix::process::ExitStatusExt;
    let mut argv: Vec<&str> = pin.map(|p| p.split_whitespace().collect()).unwrap_or_default();
    argv.extend(["bash", "-c", cmd]);
    let t0 = Instant::now();
    let mut child = Command::new(argv[0]).args(&argv[1..]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
    let pid = child.id() as libc::pid_t;
    // The pipe is drained while the child runs, so a chatty child cannot block on it.
    let mut stderr = child.stderr.take().expect("piped");
    let drain = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let mut status = 0;
    // SAFETY: `rusage` is plain data, for which all zeros is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet waited for (`child` is never waited on: dropping it does not wait).
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let seconds = t0.elapsed().as_secs_f64();
    if waited != pid {
        return Err(format!("wait4: {}", std::io::Error::last_os_error()).into());
    }
    let stderr = drain.join().unwrap_or_default();
    let status = std::process::ExitStatus::from_raw(status);
    if !status.success() {
        return Err(format!("{status}: {cmd}\n{stderr}").into());
    }
    // Linux reports ru_maxrss in KiB.
    Ok(Run { seconds, rss_kib: usage.ru_maxrss as u64 })
}

/// The median time and the largest peak RSS of one command's runs.
#[derive(Clone, Copy)]
struct Timing {
    seconds: f64,
    rss_kib: u64,
}

/// Alternated rounds: one run of every name per round, `runs` rounds, so that a noisy stretch of the
/// shared machine spreads over all of them instead of landing on one; the median time of each name.
fn rounds(runs: usize, names: &[&str], mut run: impl FnMut(&str) -> Result<Run>) -> Result<HashMap<String, Timing>> {
    let mut all: HashMap<String, Vec<Run>> = HashMap::new();
    for _ in 0..runs {
        for name in names {
            all.entry((*name).to_string()).or_default().push(run(name)?);
        }
    }
    let timing = |r: Vec<Run>| Timing {
        rss_kib: r.iter().map(|r| r.rss_kib).max().unwrap_or(0),
        seconds: median(r.into_iter().map(|r| r.seconds).collect()),
    };
    Ok(all.into_iter().map(|(name, r)| (name, timing(r))).collect())
}

/// [`rounds`] of named shell commands. Each run starts after `before` (untimed: a fresh output directory,
/// say) and a `sync`; a command that writes a file removes it first, as `cp`'s does.
fn alternated(
    runs: usize,
    pin: Option<&str>,
    before: &str,
    commands: &[(&str, String)],
) -> Result<HashMap<String, Timing>> {
    let names: Vec<&str> = commands.iter().map(|(name, _)| *name).collect();
    rounds(runs, &names, |name| {
        sh(&format!("{before}\nsync"))?;
        let (_, cmd) = commands.iter().find(|(n, _)| *n == name).expect("a named command");
        measure(pin, cmd)
    })
}

/// The median of `values` (the lower one of an even count, as the scripts' `sort | awk` took).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len().div_ceil(2) - 1]
}

/// How a goal compares its figure with its target.
#[derive(Clone, Copy)]
enum Op {
    AtLeast,
    AtMost,
    /// Equal at the printed decimals.
    Equal,
}

/// One goal line, in the one format every benchmark prints.
struct Goal<'a> {
    what: &'a str,
    ratio: f64,
    op: Op,
    target: f64,
    /// Decimals of the ratio (2 but where a script printed more); the verdict compares the printed figure.
    decimals: usize,
    /// What the target allows besides the ratio, e.g. `(+4000 B of header guess)`.
    note: &'a str,
    /// Whether the goal is met, when the printed ratio alone does not say (the range's byte allowance).
    met: Option<bool>,
}

impl<'a> Goal<'a> {
    fn new(what: &'a str, ratio: f64, op: Op, target: f64) -> Self {
        Goal { what, ratio, op, target, decimals: 2, note: "", met: None }
    }

    /// `peer` seconds over `ours`: above 1, we are faster.
    fn faster(what: &'a str, peer: f64, ours: f64, target: f64) -> Self {
        Goal::new(what, peer / ours, Op::AtLeast, target)
    }

    fn print(&self) {
        let shown = format!("{:.*}", self.decimals, self.ratio);
        let r: f64 = shown.parse().unwrap_or(self.ratio);
        let (op, met) = match self.op {
            Op::AtLeast => (">=", r >= self.target),
            Op::AtMost => ("<=", r <= self.target),
            Op::Equal => ("=", shown == format!("{:.*}", self.decimals, self.target)),
        };
        let verdict = if self.met.unwrap_or(met) { "MET" } else { "MISSED" };
        let note = if self.note.is_empty() { String::new() } else { format!(" {}", self.note) };
        println!("  {:<64} ratio {shown:>5}x  goal {op} {}x{note}  {verdict}", self.what, self.target);
    }
}

/// A ratio printed beside the goals, without one.
fn info(what: &str, peer: f64, ours: f64) {
    println!("  {what:<64} ratio {:>5.2}x  (no goal)", peer / ours);
}

/// A peak-RSS line: `kib` against `max_mib`.
fn rss_goal(what: &str, kib: u64, max_mib: f64) {
    let mib: f64 = format!("{:.1}", kib as f64 / 1024.0).parse().unwrap_or(f64::MAX);
    let verdict = if mib <= max_mib { "MET" } else { "MISSED" };
    println!("  {what:<64} {mib:>6.1} MiB  goal <= {max_mib} MiB  {verdict}");
}

// ----------------------------------------------------------------------------------------- the benchmarks

/// Issue #3's throughput targets, on one file: `openssl speed` (one core) as the reference, `cp` and
/// `cp` + fsync, the Python ESDK, the CLI file to file with either AES-GCM backend, in-memory encrypt and
/// decrypt (benches/inmemory.rs) on 1 and 2 threads, peak RSS; and issue #12's goal lines (aws-lc CLI).
fn throughput(env: &Env) -> Result<()> {
    let quick = var_or("BENCH_QUICK", 0)? == 1;
    let mib: u64 = var_or("BENCH_MIB", if quick { 256 } else { 1024 })?;
    let frame: u64 = var_or("BENCH_FRAME", 65536)?;
    let runs = env.runs(3);
    let py = python(env)?;
    let backends = [("aes-gcm", "cli", ""), ("aws-lc", "cli,aws-lc", "--features aws-lc")];
    let mut inmemory = Vec::new();
    for (backend, features, bench_features) in backends {
        let built = env.build(features, &["--bin", "kms-envelope"])?.join("kms-envelope");
        std::fs::copy(built, env.path(&format!("kms-envelope-{backend}")))?;
        inmemory
            .push((backend, bench_executable(env, "inmemory", &format!("--no-default-features {bench_features}"))?));
    }
    let cli = |backend: &str| env.path(&format!("kms-envelope-{backend}"));

    let (plain, key) = (env.path("plain"), env.path("key"));
    let size = mib << 20;
    println!("inputs: {mib} MiB of random bytes in {}", env.work.display());
    random_file(&plain, size)?;
    random_file(&key, 32)?;
    let key_hex: String = std::fs::read(&key)?.iter().map(|b| format!("{b:02x}")).collect();
    let k = format!("--raw-key-file {} --key-namespace bench --key-name key", q(&key));
    let p = q(&plain);
    sh(&format!("cat {p} >/dev/null"))?; // warm the page cache
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model =
        cpu.lines().find_map(|l| l.strip_prefix("model name")).map_or("", |m| m.trim_start_matches([' ', '\t', ':']));
    println!(
        "machine: {} cores, {model}, load {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_average()
    );
    println!("frame length {frame}, input {size} bytes");
    let gbps = |seconds: f64| size as f64 / seconds / 1e9;

    let speed = output(&format!("openssl speed -elapsed -seconds 3 -bytes {frame} -evp aes-256-gcm 2>/dev/null"))?;
    let openssl = speed
        .lines()
        .find(|l| l.starts_with("AES-256-GCM"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.trim_end_matches('k').parse::<f64>().ok())
        .ok_or("could not parse openssl speed's output")?
        * 1000.0
        / 1e9;
    println!("openssl speed -evp aes-256-gcm, one core, {frame}-byte blocks: {openssl:.2} GB/s");

    let copy = q(env.path("copy"));
    let mut commands = vec![
        ("cp", format!("rm -f {copy} && cp {p} {copy}")),
        ("cp_sync", format!("rm -f {copy} && cp {p} {copy} && sync {copy}")),
    ];
    let names = [("enc_aes-gcm", "dec_aes-gcm"), ("enc_aws-lc", "dec_aws-lc")];
    for ((backend, _, _), (enc, dec)) in backends.iter().zip(names) {
        let (bin, ct, out) =
            (q(cli(backend)), q(env.path(&format!("{backend}.enc"))), q(env.path(&format!("{backend}.dec"))));
        commands.push((enc, format!("rm -f {ct} && {bin} encrypt {k} --frame-length {frame} {p} {ct}")));
        commands.push((dec, format!("rm -f {out} && {bin} decrypt {k} {ct} {out}")));
    }
    let t = alternated(runs, None, "", &commands)?;
    for (backend, _, _) in backends {
        same_bytes(&plain, &env.path(&format!("{backend}.dec")), &format!("the CLI ({backend})"))?;
        sh(&format!("rm -f {}", q(env.path(&format!("{backend}.dec")))))?;
    }
    sh(&format!("rm -f {copy} {}", q(env.path("aws-lc.enc"))))?;

    println!("\nissue #12 goals (aws-lc CLI, unpinned and taskset -c 0):");
    issue_12_goals(env, &cli("aws-lc"), &plain, frame, false)?;

    let version = output(&format!("{} -c 'import aws_encryption_sdk as e; print(e.__version__)'", q(&py)))?;
    let peer = format!("{} {}", q(&py), q(env.repo.join("tests/peers/esdk_peer.py")));
    let peer_key = format!("--raw-key-hex {key_hex} --key-namespace bench --key-name key");
    let (py_enc, py_dec) = (env.path("py.enc"), env.path("py.dec"));
    let py_enc =
        measure(None, &format!("{peer} encrypt --in {p} --out {} {peer_key} --frame-length {frame}", q(&py_enc)))?;
    sh(&format!("rm -f {}", q(env.path("py.enc"))))?;
    let py_dec = if quick {
        None
    } else {
        let run = measure(
            None,
            &format!("{peer} decrypt --in {} --out {} {peer_key}", q(env.path("aes-gcm.enc")), q(&py_dec)),
        )?;
        same_bytes(&plain, &py_dec, "the Python ESDK")?;
        std::fs::remove_file(&py_dec)?;
        Some(run.seconds)
    };
    println!("\nPython ESDK {}, frame {frame}, raw AES keyring (including interpreter start-up)", version.trim());

    // In memory: the lines of benches/inmemory.rs, each ending in GB/s.
    let mut memory: HashMap<(&str, usize, &str), f64> = HashMap::new();
    for (backend, exe) in &inmemory {
        for threads in [1, 2] {
            let out = Command::new(exe)
                .env("BENCH_INPUT", &plain)
                .env("BENCH_FRAME", frame.to_string())
                .env("BENCH_THREADS", threads.to_string())
                .stderr(Stdio::inherit())
                .output()?;
            if !out.status.success() {
                return Err(format!("{}: {}", exe.display(), out.status).into());
            }
            let out = String::from_utf8(out.stdout)?;
            println!("\nin memory ({backend}, {threads} threads)\n{}", out.trim_end());
            for api in ["encrypt", "decrypt", "stream-encrypt", "stream-decrypt"] {
                let line = out.lines().find(|l| l.starts_with(&format!("in-memory {api} ")));
                let gbps = line.and_then(|l| l.split_whitespace().rev().nth(1)).and_then(|v| v.parse().ok());
                memory
                    .insert((backend, threads, api), gbps.ok_or(format!("benches/inmemory.rs printed no {api} line"))?);
            }
        }
    }

    // Peak RSS of the aes-gcm CLI, and of a 4x larger input but in a quick run.
    let (bin, ct, out) = (q(cli("aes-gcm")), q(env.path("aes-gcm.enc")), q(env.path("rss.out")));
    let rss = |input: &str| -> Result<(u64, u64)> {
        let e = measure(None, &format!("exec {bin} encrypt {k} --frame-length {frame} --force {input} {ct}"))?.rss_kib;
        Ok((e, measure(None, &format!("exec {bin} decrypt {k} --force {ct} {out}"))?.rss_kib))
    };
    let rss_1 = rss(&p)?;
    sh(&format!("rm -f {out}"))?;
    let rss_4 = if quick {
        None
    } else {
        let plain4 = q(env.path("plain4"));
        sh(&format!("for _ in 1 2 3 4; do cat {p}; done >{plain4} && rm -f {p}"))?;
        let r = rss(&plain4)?;
        sh(&format!("rm -f {plain4} {out}"))?;
        Some(r)
    };

    println!("\nsummary (GB/s = 10^9 bytes/s; ratios against this run's figures)");
    let row = |what: &str, a: f64, b: Option<f64>| {
        println!("{what:<44} {a:8.2} {}", b.map_or("       -".into(), |b| format!("{b:8.2}")));
    };
    println!("{:<44} {openssl:8.2}", "openssl speed aes-256-gcm, one core");
    println!("{:<44} {:8.2}", "cp", gbps(t["cp"].seconds));
    println!("{:<44} {:8.2}", "cp + fsync", gbps(t["cp_sync"].seconds));
    row("Python ESDK (encrypt, decrypt)", gbps(py_enc.seconds), py_dec.map(gbps));
    for ((backend, _, _), (enc, dec)) in backends.iter().zip(names) {
        row(
            &format!("CLI file to file, {backend} (encrypt, decrypt)"),
            gbps(t[enc].seconds),
            Some(gbps(t[dec].seconds)),
        );
        for threads in [1, 2] {
            let m = |api| memory[&(*backend, threads, api)];
            row(&format!("in memory, {backend}, {threads} threads (enc, dec)"), m("encrypt"), Some(m("decrypt")));
            row(
                &format!("  streaming API, {threads} threads (enc, dec)"),
                m("stream-encrypt"),
                Some(m("stream-decrypt")),
            );
        }
    }
    println!("\ntargets:");
    for (d, api) in [("enc", "encrypt"), ("dec", "decrypt")] {
        for (backend, target) in [("aes-gcm", 1.3), ("aws-lc", 3.0)] {
            let what = format!("in-memory {d}, 2 threads, {backend} / openssl one core");
            Goal::new(&what, memory[&(backend, 2, api)] / openssl, Op::AtLeast, target).print();
        }
    }
    for ((backend, _, _), (enc, dec)) in backends.iter().zip(names) {
        for (peer, peer_name) in [("cp", "cp"), ("cp_sync", "(cp + fsync)")] {
            for (verb, ours) in [("encrypt", enc), ("decrypt", dec)] {
                let what = format!("CLI {verb} ({backend}) / {peer_name}");
                Goal::faster(&what, t[peer].seconds, t[ours].seconds, 0.7).print();
            }
        }
    }
    Goal::faster("CLI encrypt (aes-gcm) / Python ESDK encrypt", py_enc.seconds, t["enc_aes-gcm"].seconds, 10.0).print();
    if let Some(py_dec) = py_dec {
        Goal::faster("CLI decrypt (aes-gcm) / Python ESDK decrypt", py_dec, t["dec_aes-gcm"].seconds, 10.0).print();
    }
    for (m, (e, d)) in [(mib, rss_1)].into_iter().chain(rss_4.map(|r| (4 * mib, r))) {
        rss_goal(&format!("peak RSS, {m} MiB encrypt"), e, 12.0);
        rss_goal(&format!("peak RSS, {m} MiB decrypt"), d, 12.0);
    }
    println!("load average after: {}", load_average());

    if var_or("BENCH_BY_FRAME", 0)? == 1 {
        for features in ["", "--features aws-lc"] {
            println!("\nbenches/throughput.rs {features}");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .current_dir(&env.repo)
                .args(["bench", "--no-default-features", "--bench", "throughput"])
                .args(features.split_whitespace())
                .status()?;
            if !status.success() {
                return Err(format!("cargo bench --bench throughput {features}: {status}").into());
            }
        }
    }
    Ok(())
}

/// Issue #12's goal lines, each unpinned and on one core.
fn goals(env: &Env) -> Result<()> {
    let bin = env.cli("cli")?;
    let plain = match std::env::var_os("PLAIN") {
        Some(p) => PathBuf::from(p),
        None => {
            let p = env.path("goals.plain");
            random_file(&p, var_or::<u64>("BENCH_MIB", 64)? << 20)?;
            p
        }
    };
    issue_12_goals(env, &bin, &plain, var_or("FRAME", 65536)?, var_or("RSS_4GIB", 0)? == 1)
}

/// Issue #12's goal lines for the CLI `bin` on the file `plain`; with `rss_4gib`, also the peak RSS of a
/// 4 GiB input.
fn issue_12_goals(env: &Env, bin: &Path, plain: &Path, frame: u64, rss_4gib: bool) -> Result<()> {
    let bin = q(bin);
    let runs = env.runs(3);
    let key = env.path("goals.key");
    if !key.exists() {
        random_file(&key, 32)?;
    }
    let size = std::fs::metadata(plain)?.len();
    let k = format!("--raw-key-file {} --key-namespace bench --key-name key", q(&key));
    let (input, ct, out) = (q(plain), q(env.path("goals.enc")), q(env.path("goals.out")));
    let enc = format!("{bin} encrypt {k} --frame-length {frame}");
    let dec = format!("{bin} decrypt {k}");
    let rm = format!("rm -f {out} &&");
    let commands = [
        ("cp", format!("{rm} cp {input} {out}")),
        ("cp_sync", format!("{rm} cp {input} {out} && sync {out}")),
        ("cat", format!("{rm} cat {input} >{out}")),
        ("cat_pipe", format!("{rm} cat {input} | cat | cat >{out}")),
        ("cat_cat", format!("{rm} cat {input} | cat >{out}")),
        ("enc", format!("{rm} {enc} --no-fsync {input} {out}")),
        ("dec", format!("{rm} {dec} --no-fsync {ct} {out}")),
        ("enc_durable", format!("{rm} {enc} {input} {out}")),
        ("dec_durable", format!("{rm} {dec} {ct} {out}")),
        ("enc_pipe", format!("{rm} cat {input} | {enc} - - | cat >{out}")),
        ("dec_pipe", format!("{rm} cat {ct} | {dec} - - | cat >{out}")),
        ("enc_stdout", format!("{rm} {enc} {input} - >{out}")),
        ("dec_stdout", format!("{rm} {dec} {ct} - >{out}")),
    ];

    println!(
        "issue #12 goals: {}, input {size} bytes, frame {frame}, median of {runs} interleaved runs",
        bin.trim_matches('\'').rsplit('/').next().unwrap_or_default()
    );
    println!("load average before: {}", load_average());
    sh(&format!("cat {input} >/dev/null"))?; // warm the page cache
    sh(&format!("{enc} --no-fsync --force {input} {ct}"))?;
    let unpinned = alternated(runs, None, "", &commands)?;
    let pinned = alternated(runs, Some("taskset -c 0"), "", &commands)?;
    let rss_enc = measure(None, &format!("exec {enc} --force {input} {out}"))?.rss_kib;
    let rss_dec = measure(None, &format!("exec {dec} --force {ct} {out}"))?.rss_kib;
    let rss_4gib = if rss_4gib {
        let plain4 = q(env.path("goals.plain4"));
        sh(&format!("for _ in $(seq {}); do cat {input}; done >{plain4}", (4u64 << 30) / size))?;
        let e = measure(None, &format!("exec {enc} --force {plain4} {ct}"))?.rss_kib;
        sh(&format!("rm -f {plain4}"))?;
        Some((e, measure(None, &format!("exec {dec} --force {ct} {out}"))?.rss_kib))
    } else {
        None
    };
    // The throughput benchmark's WORK keeps its input, not our message and output: it needs the disk next.
    sh(&format!("rm -f {out} {ct}"))?;

    for (label, t, min) in [("unpinned", &unpinned, 0.9), ("taskset -c 0", &pinned, 0.6)] {
        let mut line = format!("{label}:");
        for (name, _) in &commands {
            let _ = write!(line, " {name} {:.4}s", t[*name].seconds);
        }
        println!("{line}");
        let g = |what: &str, peer: &str, ours: &str, min: f64| {
            Goal::faster(&format!("[{label}] {what}"), t[peer].seconds, t[ours].seconds, min).print();
        };
        g("encrypt --no-fsync vs cp", "cp", "enc", min);
        g("decrypt --no-fsync vs cp", "cp", "dec", min);
        g("encrypt durable vs cp + sync", "cp_sync", "enc_durable", min);
        g("decrypt durable vs cp + sync", "cp_sync", "dec_durable", min);
        g("encrypt pipe to pipe vs file to file --no-fsync", "enc", "enc_pipe", 0.9);
        g("decrypt pipe to pipe vs file to file --no-fsync", "dec", "dec_pipe", 0.9);
        g("encrypt to stdout (>file) vs file to file --no-fsync", "enc", "enc_stdout", 0.9);
        g("decrypt to stdout (>file) vs file to file --no-fsync", "dec", "dec_stdout", 0.9);
        let i =
            |what: &str, peer: &str, ours: &str| info(&format!("[{label}] {what}"), t[peer].seconds, t[ours].seconds);
        i("encrypt --no-fsync vs cat >file", "cat", "enc");
        i("decrypt --no-fsync vs cat >file", "cat", "dec");
        // `cat | cat | cat` moves each byte through as many pipes as the pipe-to-pipe run: its
        // like-for-like peer.
        i("encrypt pipe to pipe vs cat | cat | cat", "cat_pipe", "enc_pipe");
        i("decrypt pipe to pipe vs cat | cat | cat", "cat_pipe", "dec_pipe");
        // `cat | cat` is `cat | kms-envelope | cat` with a middle that costs nothing: file to file over it
        // bounds the pipe-to-pipe ratio from above.
        i("bound: encrypt file to file vs cat | cat", "enc", "cat_cat");
        i("bound: decrypt file to file vs cat | cat", "dec", "cat_cat");
    }
    let mib = size >> 20;
    rss_goal(&format!("peak RSS, {mib} MiB encrypt"), rss_enc, 12.0);
    rss_goal(&format!("peak RSS, {mib} MiB decrypt"), rss_dec, 12.0);
    if let Some((e, d)) = rss_4gib {
        rss_goal("peak RSS, 4096 MiB encrypt", e, 12.0);
        rss_goal("peak RSS, 4096 MiB decrypt", d, 12.0);
    }
    println!("load average after: {}", load_average());
    Ok(())
}

/// Issue #26's re-encryption goals: 0x0478 to 0x0478, and the signed 0x0578 case without a goal.
fn reencrypt(env: &Env) -> Result<()> {
    let bin = q(env.cli("cli")?);
    let runs = env.runs(5);
    let (old_key, new_key) = (env.path("old.key"), env.path("new.key"));
    random_file(&old_key, 32)?;
    random_file(&new_key, 32)?;
    let old = format!("--raw-key-file {} --key-namespace bench --key-name old", q(&old_key));
    let new_as_enc = format!("--raw-key-file {} --key-namespace bench --key-name new", q(&new_key));
    let new = format!("--new-raw-key-file {} --new-key-namespace bench --new-key-name new", q(&new_key));
    let plain = env.path("plain");
    let size = var_or::<u64>("BENCH_MIB", 1024)? << 20;
    random_file(&plain, size)?;
    let (src, signed) = (q(env.path("src.esdk")), q(env.path("src-signed.esdk")));
    sh(&format!("{bin} encrypt {old} --no-fsync {} {src}", q(&plain)))?;
    sh(&format!("{bin} encrypt {old} --no-fsync --suite 0x0578 {} {signed}", q(&plain)))?;
    std::fs::remove_file(&plain)?; // the peers copy and re-encrypt the message, not the plaintext
    let (out, tmp) = (q(env.path("out")), q(env.path("plain.tmp")));
    let commands = [
        ("cp", format!("rm -f {out} && cp {src} {out}")),
        ("cp_sync", format!("rm -f {out} && cp {src} {out} && sync {out}")),
        ("reenc", format!("rm -f {out} && {bin} reencrypt {old} {new} --no-fsync {src} {out}")),
        ("reenc_durable", format!("rm -f {out} && {bin} reencrypt {old} {new} {src} {out}")),
        (
            "dec_enc",
            format!(
                "rm -f {out} {tmp} && {bin} decrypt {old} --no-fsync {src} {tmp} && \
                 {bin} encrypt {new_as_enc} --no-fsync {tmp} {out} && rm -f {tmp}"
            ),
        ),
        ("reenc_signed", format!("rm -f {out} && {bin} reencrypt {old} {new} --no-fsync {signed} {out}")),
    ];
    println!("load average before: {}", load_average());
    let t = alternated(runs, None, "", &commands)?;
    let rss = measure(None, &format!("exec {bin} reencrypt {old} {new} --force {src} {out}"))?.rss_kib;
    println!(
        "issue #26 re-encryption: message of {size} plaintext bytes (64 KiB frames), {} cores, median of {runs} \
         interleaved runs",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "  cp {:.4}s, cp+sync {:.4}s; reencrypt {:.4}s, durable {:.4}s, decrypt+encrypt {:.4}s, signed reencrypt {:.4}s",
        t["cp"].seconds,
        t["cp_sync"].seconds,
        t["reenc"].seconds,
        t["reenc_durable"].seconds,
        t["dec_enc"].seconds,
        t["reenc_signed"].seconds
    );
    Goal::faster("reencrypt --no-fsync vs cp (at most 1.2x)", t["cp"].seconds, t["reenc"].seconds, 0.83).print();
    Goal::faster(
        "reencrypt durable vs cp + sync (at most 1.2x)",
        t["cp_sync"].seconds,
        t["reenc_durable"].seconds,
        0.83,
    )
    .print();
    Goal::faster(
        "reencrypt vs decrypt to a file + encrypt (at most 0.6x)",
        t["dec_enc"].seconds,
        t["reenc"].seconds,
        1.67,
    )
    .print();
    info("signed 0x0578 reencrypt vs cp", t["cp"].seconds, t["reenc_signed"].seconds);
    rss_goal("peak RSS of reencrypt", rss, 16.0);
    println!("load average after: {}", load_average());
    Ok(())
}

/// Issue #13's file range goals: what `decrypt_range` reads (examples/range_bench.rs counts it), and its
/// time against the CLI's full decrypt of the same file.
fn range(env: &Env) -> Result<()> {
    let size: u64 = var_or("SIZE", 4 << 30)?;
    let len: u64 = var_or("LEN", 1 << 20)?;
    let frame: u64 = var_or("FRAME", 65536)?;
    let runs = env.runs(3);
    if len > size {
        return Err(format!("LEN ({len}) exceeds SIZE ({size})").into());
    }
    let dir = env.build("cli", &["--bin", "kms-envelope", "--example", "range_bench"])?;
    let bin = match std::env::var_os("BIN") {
        Some(b) => q(PathBuf::from(b)),
        None => q(dir.join("kms-envelope")),
    };
    let key = env.path("range.key");
    random_file(&key, 32)?;
    let k = format!("--raw-key-file {} --key-namespace bench --key-name key", q(&key));
    let (message, out) = (env.path("range.enc"), q(env.path("range.out")));
    eprintln!("range: encrypting {size} bytes (frame length {frame}) into {}", message.display());
    sh(&format!(
        "head -c {size} /dev/urandom | {bin} encrypt {k} --frame-length {frame} --no-fsync - {}",
        q(&message)
    ))?;
    println!("load average before: {}", load_average());
    let full = alternated(
        runs,
        None,
        "",
        &[("full", format!("rm -f {out} && {bin} decrypt {k} --no-fsync {} {out}", q(&message)))],
    )?["full"]
        .seconds;
    sh(&format!("rm -f {out}"))?;
    let start = size / 2 - len / 2;
    let example = dir.join("examples").join("range_bench");
    let output = Command::new(&example)
        .args([message.as_os_str(), key.as_os_str()])
        .args([start.to_string(), len.to_string(), runs.to_string()])
        .output()?;
    if !output.status.success() {
        return Err(format!("range_bench: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    let line = String::from_utf8(output.stdout)?;
    eprintln!("range: {} (full decrypt {full:.4}s)", line.trim());
    let field = |name: &str| -> Result<f64> {
        let prefix = format!("{name}=");
        let value = line.split_whitespace().find_map(|w| w.strip_prefix(prefix.as_str()));
        Ok(value.ok_or_else(|| format!("range_bench printed no {name}"))?.parse()?)
    };
    let (read, header) = (field("bytes_read")?, field("header_len")?);
    let bound = header + field("frames_bytes")? + field("final_bytes")?;
    // The header is read by a first guess of 4 KiB, so up to 4 KiB past a short header is read too.
    let guess = (4096.0 - header).max(0.0);
    let note = format!("(+{guess} B of header guess)");
    let what = format!("file range {len} B of {size} B: bytes read / (header+frames+final)");
    let mut g = Goal::new(&what, read / bound, Op::AtMost, 1.0);
    (g.decimals, g.note, g.met) = (4, &note, Some(read <= bound + guess));
    g.print();
    let what = format!("file range {len} B of {size} B: full decrypt time / range time");
    let mut g = Goal::new(&what, full / field("seconds")?, Op::AtLeast, 100.0);
    g.decimals = 1;
    g.print();
    println!("load average after: {}", load_average());
    Ok(())
}

/// Issue #14's small-message goals: benches/small.rs on one core, the Python ESDK beside it, and the KMS
/// keyring through moto with and without the cache.
fn cache(env: &Env) -> Result<()> {
    let seconds: u64 = var_or("BENCH_SECONDS", 3)?;
    let py = python(env)?;
    // The floor is measured with the crate's internals, public only with `fuzzing` ([[bench]] small).
    let flags = std::env::var("BENCH_CARGO_FLAGS").unwrap_or_default();
    let bench = bench_executable(env, "small", &format!("--features fuzzing {flags}"))?;
    let moto = Moto::start(env)?;
    println!("load average before: {}", load_average());
    let ours = Command::new("taskset")
        .args(["-c", "0"])
        .arg(&bench)
        .env("BENCH_SECONDS", seconds.to_string())
        .env("BENCH_KMS_ENDPOINT", &moto.endpoint)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stderr(Stdio::inherit())
        .output()?;
    if !ours.status.success() {
        return Err(format!("{}: {}", bench.display(), ours.status).into());
    }
    let ours = String::from_utf8(ours.stdout)?;
    print!("{ours}");
    let get = |key: &str| value(&ours, key);
    let peer = Command::new("taskset")
        .args(["-c", "0"])
        .arg(&py)
        .args(["-c", PYTHON_ROUND_TRIPS, &seconds.to_string()])
        .stderr(Stdio::inherit())
        .output()?;
    if !peer.status.success() {
        return Err(format!("the Python ESDK's round trips: {}", peer.status).into());
    }
    let python_rate: f64 = String::from_utf8(peer.stdout)?.trim().parse()?;
    let (rate, floor) = (
        get("raw_aes_round_trips_per_s").ok_or("no raw_aes_round_trips_per_s")?,
        get("floor_per_s").ok_or("no floor_per_s")?,
    );
    println!("1 KiB raw AES round trips/s, one core: ours {rate}, Python ESDK {python_rate:.1}, floor {floor}");
    println!("context (AWS published, 12-CPU machine, not this run): ESDK-C 1597/s, ESDK-Rust 1061/s");
    Goal::new("ours vs Python ESDK (1 KiB round trips)", rate / python_rate, Op::AtLeast, 100.0).print();
    Goal::new("floor vs ours (fixed cost over the floor)", floor / rate, Op::AtMost, 3.0).print();
    if let (Some(uc), Some(cc), Some(ur), Some(cr)) = (
        get("kms_uncached_calls_per_1000"),
        get("kms_cached_calls_per_1000"),
        get("kms_uncached_round_trips_per_s"),
        get("kms_cached_round_trips_per_s"),
    ) {
        println!(
            "KMS (moto): uncached {ur} round trips/s, {uc} calls per 1000; cached {cr} round trips/s, {cc} calls per 1000"
        );
        Goal::new("KMS calls: uncached / cached", uc / cc, Op::AtLeast, 50.0).print();
        Goal::new("KMS round trips/s: cached / uncached", cr / ur, Op::AtLeast, 20.0).print();
    }
    println!("load average after: {}", load_average());
    Ok(())
}

/// Issue #29's lines: the Hierarchical keyring against the plain KMS keyring, both over moto, in one run
/// of benches/small.rs.
fn hierarchy(env: &Env) -> Result<()> {
    let messages: u64 = var_or("HIERARCHY_MESSAGES", 10_000)?;
    let flags = std::env::var("BENCH_CARGO_FLAGS").unwrap_or_default();
    let bench = bench_executable(env, "small", &format!("--features fuzzing {flags}"))?;
    let moto = Moto::start(env)?;
    println!("load average before: {}", load_average());
    let out = Command::new(&bench)
        .env("BENCH_KMS_ENDPOINT", &moto.endpoint)
        .env("BENCH_HIERARCHY_MESSAGES", messages.to_string())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("{}: {}", bench.display(), out.status).into());
    }
    let out = String::from_utf8(out.stdout)?;
    let get = |key: &str| value(&out, key).ok_or(format!("benches/small.rs printed no {key}"));
    let (rate, fetches) = (get("hierarchy_encrypts_per_s")?, get("hierarchy_store_calls")?);
    let (kms_rate, kms_calls) = (get("kms_encrypts_per_s")?, get("kms_keyring_calls")?);
    println!(
        "{messages} encrypts of 1 KiB: Hierarchical {rate:.0}/s, {fetches} store fetches ({fetches} GetItem + \
         {fetches} KMS Decrypt); plain KMS keyring {kms_rate:.0}/s, {kms_calls} KMS calls"
    );
    // One branch key version, one TTL: the run is shorter than the 600 s TTL.
    Goal::new("kms calls per branch key version per TTL", fetches, Op::AtMost, 1.0).print();
    Goal::new("hierarchy vs kms throughput", rate / kms_rate, Op::AtLeast, 20.0).print();
    println!("load average after: {}", load_average());
    Ok(())
}

/// Issue #26's S3 Batch Operations lines: benches/batch.rs prints them itself; the harness gives it moto
/// and the Lambda Runtime Interface Emulator.
fn batch(env: &Env) -> Result<()> {
    let moto = Moto::start(env)?;
    let rie = rie(env)?;
    let profile = std::env::var("BENCH_PROFILE").unwrap_or_else(|_| "bench".into());
    let flags = std::env::var("BENCH_CARGO_FLAGS").unwrap_or_else(|_| "--no-default-features --features batch".into());
    println!("load average before: {}", load_average());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(&env.repo)
        .args(["bench", "--profile", &profile, "--bench", "batch"])
        .args(flags.split_whitespace())
        .env("KMS_ENVELOPE_MOTO_ENDPOINT", &moto.endpoint)
        .env("KMS_ENVELOPE_RIE", rie)
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("cargo bench --bench batch: {}", out.status).into());
    }
    let out = String::from_utf8(out.stdout)?;
    print!("{}", out.lines().filter(|l| !l.starts_with("kms_calls_")).map(|l| format!("{l}\n")).collect::<String>());
    let per_object = |key: &str| value(&out, key).ok_or(format!("benches/batch.rs printed no {key}"));
    Goal::new("KMS calls per object with cache", per_object("kms_calls_per_object_cached")?, Op::AtMost, 1.1).print();
    let uncached = per_object("kms_calls_per_object_uncached")?;
    Goal::new("KMS calls per object without cache", uncached, Op::Equal, 2.0).print();
    println!("load average after: {}", load_average());
    Ok(())
}

/// Issue #12's Lambda cold start: a cold process (examples/lambda_cold_start --once) decrypting a bundle of
/// KMS-wrapped random bytes into a fresh directory, against `cp` of the plaintext plus one bare KMS
/// `Decrypt`, and against the Python ESDK; unpinned and on one core (Lambda's common case).
fn lambda(env: &Env) -> Result<()> {
    let mib: u64 = var_or("BENCH_MIB", 100)?;
    let small = mib.div_ceil(10);
    let runs = env.runs(5);
    let example = match std::env::var_os("LAMBDA") {
        Some(example) => PathBuf::from(example),
        None => env.build("default,lambda,s3", &["--example", "lambda_cold_start"])?.join("examples/lambda_cold_start"),
    };
    let moto = Moto::start(env)?;
    aws_environment(&moto.endpoint, &moto.endpoint);
    let (arn, blob) = moto.key_and_blob(env)?;
    let (plain, message) = (|n: &str| env.path(&format!("{n}.pt")), |n: &str| env.path(&format!("{n}.esdk")));
    for (n, size) in [("big", mib), ("small", small)] {
        random_file(&plain(n), size << 20)?;
        peer_encrypt(env, &moto, &arn, &plain(n), &message(n))?;
    }
    let (out, bundle) = (env.path("out"), env.path("out/bundle.bin"));
    let fresh = format!("rm -rf {o} && mkdir {o}", o = q(&out));
    let rust = |n: &str| {
        format!(
            "KMS_ENVELOPE_BUNDLES={}=bundle.bin KMS_ENVELOPE_ROOT={} KMS_ENVELOPE_KMS_KEY_ARN={arn} \
             KMS_ENVELOPE_CONTEXT=purpose=bench RUST_LOG=warn {} --once",
            q(message(n)),
            q(&out),
            q(&example)
        )
    };
    let decrypt = moto.decrypt_command(&arn, &blob);
    let base = format!("cp {} {} && {decrypt}", q(plain("big")), q(&bundle));
    let python = format!(
        "{} {} decrypt --in {} --out {} --kms-key {arn} --kms-endpoint {} --context-json '{{\"purpose\":\"bench\"}}'",
        q(python(env)?),
        q(env.repo.join("tests/peers/esdk_peer.py")),
        q(message("big")),
        q(&bundle),
        moto.endpoint
    );

    println!("load average before: {}", load_average());
    sh(&format!("{fresh} && {}", rust("big")))?; // also warms the page cache and the binary
    same_bytes(&plain("big"), &bundle, "lambda_cold_start")?;
    let t = alternated(runs, None, &fresh, &[("rust", rust("big")), ("decrypt", decrypt), ("base", base.clone())])?;
    let p = alternated(1, None, &fresh, &[("python", python)])?["python"]; // slow: once
    same_bytes(&plain("big"), &bundle, "the Python ESDK")?;
    let pinned = alternated(runs, Some("taskset -c 0"), &fresh, &[("rust", rust("big")), ("base", base)])?;
    let s = alternated(runs, None, &fresh, &[("small", rust("small"))])?["small"];
    let (r, b) = (t["rust"], t["base"]);
    let (pr, pb) = (pinned["rust"].seconds, pinned["base"].seconds);
    let m = |t: Timing| t.rss_kib as f64 / 1024.0;
    println!("cold start, {mib} MiB bundle (median of {runs} interleaved runs; peak RSS)");
    println!(
        "  rust  lambda_cold_start --once   {:8.3} s  {:7.1} MiB RSS  {:6.0} MiB/s",
        r.seconds,
        m(r),
        mib as f64 / r.seconds
    );
    println!("  base  cp + one KMS Decrypt        {:8.3} s  (Decrypt alone {:.3} s)", b.seconds, t["decrypt"].seconds);
    println!("  python ESDK decrypt               {:8.3} s  {:7.1} MiB RSS", p.seconds, m(p));
    println!("  rust, {small} MiB bundle                {:8.3} s  {:7.1} MiB RSS", s.seconds, m(s));
    println!("  rust, taskset -c 0                {pr:8.3} s");
    println!("  base, taskset -c 0                {pb:8.3} s");
    println!(
        "peak RSS: {:.1} MiB at {small} MiB, {:.1} MiB at {mib} MiB (goal: constant in the bundle size)",
        m(s),
        m(r)
    );
    println!("issue #12 goals:");
    Goal::new("[unpinned] rust / (cp + one KMS Decrypt)", r.seconds / b.seconds, Op::AtMost, 1.2).print();
    Goal::new("[taskset -c 0] rust / (cp + one KMS Decrypt)", pr / pb, Op::AtMost, 1.5).print();
    Goal::faster("[unpinned] python ESDK / rust", p.seconds, r.seconds, 20.0).print();
    println!("load average after: {}", load_average());
    Ok(())
}

/// Issue #15's Lambda extension cold start: a Python function (awslambdaric) under the Runtime Interface
/// Emulator, timed from the emulator's start to the first invoke's response, with no secrets (the floor),
/// with the extension decrypting a bundle first, and with the Python ESDK decrypting it in the function's
/// init; against `cp` of the plaintext plus one bare KMS `Decrypt`. Needs root (a private mount namespace
/// puts the extension at /opt/extensions).
fn extension(env: &Env) -> Result<()> {
    let mib: u64 = var_or("BENCH_MIB", 100)?;
    let runs = env.runs(5);
    let py = python(env)?;
    sh(&format!("{} -c 'import awslambdaric'", q(&py))).map_err(|_| "awslambdaric is missing from the venv")?;
    let rie = rie(env)?;
    let built = match std::env::var_os("EXTENSION") {
        Some(extension) => PathBuf::from(extension),
        None => env.build("extension,rsa", &["--bin", "kms-envelope-extension"])?.join("kms-envelope-extension"),
    };
    println!("load average before: {}", load_average());
    let moto = Moto::start(env)?;
    aws_environment(&moto.endpoint, &moto.endpoint);
    let (task, opt, empty) = (env.path("task"), env.path("opt"), env.path("empty-opt"));
    for dir in [&task, &opt.join("extensions"), &empty] {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::copy(&built, opt.join("extensions/kms-envelope"))?;
    let (arn, blob) = moto.key_and_blob(env)?;
    let plain = env.path("bundle.pt");
    random_file(&plain, mib << 20)?;
    peer_encrypt(env, &moto, &arn, &plain, &task.join("bundle.esdk"))?;
    let peers = env.repo.join("tests/peers");
    let pyesdk = PYTHON_ESDK_FUNCTION
        .replace("@PEERS@", &peers.display().to_string())
        .replace("@MESSAGE@", &task.join("bundle.esdk").display().to_string())
        .replace("@ARN@", &arn)
        .replace("@ENDPOINT@", &moto.endpoint);
    for (file, text) in [
        ("none.py", PYTHON_NO_SECRETS_FUNCTION),
        ("ext.py", PYTHON_EXTENSION_FUNCTION),
        ("pyesdk.py", &pyesdk),
        ("cold.py", PYTHON_COLD_START),
        ("base.py", PYTHON_BASE),
    ] {
        std::fs::write(task.join(file), text)?;
    }
    std::fs::write(env.path("ns.sh"), "#!/bin/bash\nmount --bind \"$BENCH_OPT\" /opt || exit 9\nexec \"$@\"\n")?;
    sh(&format!("chmod +x {}", q(env.path("ns.sh"))))?;

    let root = env.path("root");
    let cold = |module: &str, opt: &Path| -> Result<Run> {
        let seconds = output(&format!(
            "rm -rf {root} && mkdir {root} && BENCH_OPT={} KMS_ENVELOPE_ROOT={root} \
             KMS_ENVELOPE_BUNDLES=bundle.esdk=bundle.bin KMS_ENVELOPE_KMS_KEY_ARN={arn} \
             KMS_ENVELOPE_CONTEXT=purpose=bench LAMBDA_TASK_ROOT={task} {py} {task}/cold.py {} {task} {} {py} {module} {}",
            q(opt),
            q(env.path("ns.sh")),
            q(&rie),
            q(&plain),
            root = q(&root),
            task = q(&task),
            py = q(&py),
        ))?;
        Ok(Run { seconds: seconds.trim().parse()?, rss_kib: 0 })
    };
    let base = || -> Result<Run> {
        let seconds = output(&format!(
            "rm -rf {root} && mkdir {root} && {} {} {} {} {arn} {blob} {}",
            q(&py),
            q(task.join("base.py")),
            q(&plain),
            q(root.join("bundle.bin")),
            moto.endpoint,
            root = q(&root),
        ))?;
        Ok(Run { seconds: seconds.trim().parse()?, rss_kib: 0 })
    };
    cold("ext", &opt)?; // warms the page cache, the binary and moto
    let t = rounds(runs, &["none", "extension", "base"], |name| match name {
        "none" => cold("none", &empty),
        "extension" => cold("ext", &opt),
        _ => base(),
    })?;
    let p = rounds(runs.min(3), &["python"], |_| cold("pyesdk", &empty))?["python"].seconds;
    let (n, e, b) = (t["none"].seconds, t["extension"].seconds, t["base"].seconds);
    println!("load average after: {}", load_average());
    println!("extension cold start, Python function under the emulator, {mib} MiB bundle (medians)");
    println!("  none       no secrets                           {n:8.3} s");
    println!("  extension  kms-envelope decrypts first          {e:8.3} s  (+{:.3} s)", e - n);
    println!("  python     Python ESDK in the function init     {p:8.3} s  (+{:.3} s)", p - n);
    println!("  base       cp + one KMS Decrypt (no emulator)   {b:8.3} s");
    println!("issue #15 goals:");
    Goal::new("extension adds / base (cp + one KMS Decrypt)", (e - n) / b, Op::AtMost, 1.3).print();
    let mut g = Goal::new("python adds / what the extension adds", (p - n) / (e - n), Op::AtLeast, 10.0);
    g.decimals = 1;
    g.print();
    Ok(())
}

/// Issue #13's S3 goals, through moto: whole-object encrypt to S3 (multipart upload) and decrypt from S3
/// (parallel ranged GETs) against boto3's transfer manager, with our peak RSS against the transfer's
/// bound; then 1 MiB from the middle of a KMS-wrapped message, its requests counted by a proxy.
fn s3(env: &Env) -> Result<()> {
    let mib: u64 = var_or("S3_BENCH_MIB", 1024)?;
    let runs = env.runs(1);
    let bin = env.cli("default,lambda,s3")?; // the build s3-model and lambda time too
    let moto = Moto::start(env)?;
    aws_environment(&moto.endpoint, &moto.endpoint);
    let bucket = format!("kms-envelope-s3-bench-{}", std::process::id());
    let boto = Boto::new(env, &moto.endpoint, &bucket, "8MiB,4")?;
    sh(&boto.run("mkbucket"))?;
    let (key, plain) = (env.path("s3.key"), env.path("s3.plain"));
    random_file(&key, 32)?;
    random_file(&plain, mib << 20)?;
    let k = format!("--raw-key-file {} --key-namespace bench --key-name key", q(&key));
    let (b, p, boto_out, dec_out) = (q(&bin), q(&plain), env.path("boto.out"), env.path("dec.out"));
    let (bo, do_) = (q(&boto_out), q(&dec_out));
    let message = format!("s3://{bucket}/plain.bin.esdk");
    println!("load average before: {}", load_average());
    let t = alternated(
        runs,
        None,
        "",
        &[
            ("boto_up", boto.run(&format!("upload {p} plain.bin"))),
            ("enc", format!("{b} encrypt -q --force {k} {p} {message}")),
            ("boto_down", format!("rm -f {bo} && {}", boto.run(&format!("download plain.bin {bo}")))),
            ("dec", format!("rm -f {do_} && {b} decrypt -q --no-fsync {k} {message} {do_}")),
        ],
    )?;
    same_bytes(&plain, &dec_out, "the S3 round trip")?;
    same_bytes(&plain, &boto_out, "the boto3 round trip")?;
    println!("S3 through moto, {mib} MiB (wall seconds, MiB/s, peak RSS; median of {runs})");
    for name in ["boto_up", "enc", "boto_down", "dec"] {
        let Timing { seconds, rss_kib } = t[name];
        println!(
            "  {name:<10} {seconds:8.2} s  {:8.1} MiB/s  {:7.1} MiB RSS",
            mib as f64 / seconds,
            rss_kib as f64 / 1024.0
        );
    }
    Goal::faster("encrypt to S3 vs boto3 upload (boto3 time / ours)", t["boto_up"].seconds, t["enc"].seconds, 0.8)
        .print();
    Goal::faster(
        "decrypt from S3 vs boto3 download (boto3 time / ours)",
        t["boto_down"].seconds,
        t["dec"].seconds,
        0.8,
    )
    .print();
    // The transfer's bound from the CLI's own defaults, as its --help states them.
    let bound = (cli_default(&bin, "--s3-concurrency <N>")? + 2) * cli_default(&bin, "--s3-part-size <SIZE>")? + 64;
    for (way, name) in [("encrypt to S3", "enc"), ("decrypt from S3", "dec")] {
        let what = format!("{way}: peak RSS / ((N + 2) x part + 64 MiB = {bound} MiB)");
        Goal::new(&what, t[name].rss_kib as f64 / 1024.0 / bound as f64, Op::AtMost, 1.0).print();
    }

    // 1 MiB from the middle of a KMS-wrapped message, through a proxy that counts requests and bytes.
    let (arn, _) = moto.key_and_blob(env)?;
    sh(&format!("{b} encrypt -q --kms-key {arn} {p} s3://{bucket}/kms.esdk"))?;
    std::fs::write(env.path("proxy.py"), PYTHON_COUNTING_PROXY)?;
    let (_proxy, port) = Background::serve(Command::new(python(env)?).arg(env.path("proxy.py")).arg(&moto.endpoint))?;
    let proxy = format!("http://127.0.0.1:{port}");
    let size = mib << 20;
    let (start, end) = (size / 2 - (1 << 19), size / 2 + (1 << 19) - 1);
    let range_out = env.path("range.out");
    let range = measure(
        None,
        &format!(
            "AWS_ENDPOINT_URL_S3={proxy} AWS_ENDPOINT_URL_KMS={proxy} {b} decrypt -q --range {start}-{end} \
             --kms-key {arn} s3://{bucket}/kms.esdk {}",
            q(&range_out)
        ),
    )?;
    let slice = &std::fs::read(&plain)?[start as usize..=end as usize];
    if std::fs::read(&range_out)? != slice {
        return Err("the range differs from the plaintext's slice".into());
    }
    let counts: serde_json::Value = serde_json::from_str(&output(&format!("curl -fsS {proxy}/counts"))?)?;
    let count = |name: &str| counts[name].as_u64().unwrap_or(u64::MAX);
    println!(
        "1 MiB from the middle of {mib} MiB (decrypt --range, KMS key): {:.2} s, {} GET + {} HEAD, {} KMS call(s), \
         {} bytes transferred, {:.1} MiB RSS",
        range.seconds,
        count("GET"),
        count("HEAD"),
        count("KMS"),
        count("bytes"),
        range.rss_kib as f64 / 1024.0
    );
    Goal::new("range: GetObject requests / 3", count("GET") as f64 / 3.0, Op::AtMost, 1.0).print();
    Goal::new("range: KMS calls / 1", count("KMS") as f64, Op::AtMost, 1.0).print();
    let what = "range: bytes transferred / (1 MiB + 64 KiB)";
    Goal::new(what, count("bytes") as f64 / f64::from((1 << 20) + (64 << 10)), Op::AtMost, 1.0).print();
    println!("load average after: {}", load_average());
    Ok(())
}

/// Issue #27's S3 goals on the modelled S3 (examples/s3_model.rs), for a datacenter-like and a Lambda-like
/// network: encrypt to and decrypt from S3 against boto3's transfer manager, against the network's limit
/// (the model's, or what a null client moving the same bytes the same way achieves), and peak RSS against
/// the memory bound; a download with faults; the Lambda decryptor's S3 source against null GETs plus one
/// KMS `Decrypt`.
fn s3_model(env: &Env) -> Result<()> {
    let mib: u64 = var_or("S3_BENCH_MIB", 1024)?;
    let runs = env.runs(3);
    let given = |name: &str| std::env::var_os(name).map(PathBuf::from);
    let (bin, model, null, lambda) = match (given("BIN"), given("MODEL"), given("NULL")) {
        (Some(bin), Some(model), Some(null)) => (bin, model, null, given("LAMBDA")),
        _ => {
            let targets = ["--bin", "kms-envelope", "--example", "s3_model", "--example", "s3_null_client"];
            let dir = env.build("default,lambda,s3", &[&targets[..], &["--example", "lambda_cold_start"]].concat())?;
            let examples = dir.join("examples");
            (
                dir.join("kms-envelope"),
                examples.join("s3_model"),
                examples.join("s3_null_client"),
                Some(examples.join("lambda_cold_start")),
            )
        }
    };
    // What the CLI is asked for, and what it then uses (its own defaults unless set).
    let mut flags = String::new();
    let concurrency = match std::env::var("S3_CONCURRENCY") {
        Ok(n) => {
            let _ = write!(flags, " --s3-concurrency {n}");
            n.parse()?
        }
        Err(_) => cli_default(&bin, "--s3-concurrency <N>")?,
    };
    let part_mib = match std::env::var("S3_PART_SIZE") {
        Ok(size) => {
            let _ = write!(flags, " --s3-part-size {size}");
            size.chars().take_while(char::is_ascii_digit).collect::<String>().parse()?
        }
        Err(_) => cli_default(&bin, "--s3-part-size <SIZE>")?,
    };
    let (part, per_connection, size) = (part_mib << 20, 90_000_000u64, mib << 20);
    let (key, plain) = (env.path("s3.key"), env.path("s3.plain"));
    random_file(&key, 32)?;
    random_file(&plain, size)?;
    let k = format!("--raw-key-file {} --key-namespace bench --key-name key", q(&key));
    let (b, n, p) = (q(&bin), q(&null), q(&plain));
    let objects = env.path("objects");
    let start_model = |knobs: &str| -> Result<(Background, String)> {
        sh(&format!("rm -rf {o} && mkdir {o}", o = q(&objects)))?;
        let mut cmd = Command::new(&model);
        cmd.args(["--bucket", "bench", "--dir"]).arg(&objects).args(knobs.split_whitespace());
        Background::serve(&mut cmd)
    };
    let mbs = |seconds: f64| (size as f64 / seconds / 1e6).round();

    println!(
        "S3 on the model, {mib} MiB, {runs} runs; CLI: {concurrency} in flight, {part_mib} MiB parts and GETs; load \
         average before: {}",
        load_average()
    );
    for (name, aggregate) in [("datacenter", 1_000_000_000u64), ("lambda", 600_000_000)] {
        let (server, endpoint) = start_model(&format!(
            "--latency-ms 20 --conn-mbps {} --aggregate-mbps {}",
            per_connection / 1_000_000,
            aggregate / 1_000_000
        ))?;
        aws_environment(&endpoint, &endpoint);
        let boto = Boto::new(env, &endpoint, "bench", "default")?;
        sh(&boto.run(&format!("upload {p} plain.bin")))?;
        sh(&format!("{b} encrypt -q{flags} {k} {p} s3://bench/message.esdk"))?;
        let (boto_out, dec_out) = (env.path("boto.out"), env.path("dec.out"));
        let (bo, do_) = (q(&boto_out), q(&dec_out));
        let t = alternated(
            runs,
            None,
            "",
            &[
                ("boto_up", boto.run(&format!("upload {p} boto-up.bin"))),
                ("enc", format!("{b} encrypt -q --force{flags} {k} {p} s3://bench/enc.esdk")),
                ("null_put", format!("{n} put bench null-up.bin {size} {part} {concurrency}")),
                ("boto_down", format!("rm -f {bo} && {}", boto.run(&format!("download plain.bin {bo}")))),
                ("dec", format!("rm -f {do_} && {b} decrypt -q --no-fsync{flags} {k} s3://bench/message.esdk {do_}")),
                ("null_get", format!("{n} get bench message.esdk {part} {concurrency}")),
            ],
        )?;
        drop(server);
        same_bytes(&plain, &dec_out, "the S3 round trip")?;
        same_bytes(&plain, &boto_out, "the boto3 round trip")?;
        let configured = aggregate.min(concurrency * per_connection) / 1_000_000;
        println!(
            "\n{name}: 20 ms first byte, {} MB/s per connection, {} MB/s aggregate; configured limit at {concurrency} \
             in flight: {configured} MB/s",
            per_connection / 1_000_000,
            aggregate / 1_000_000
        );
        for what in ["boto_up", "enc", "null_put", "boto_down", "dec", "null_get"] {
            let Timing { seconds, rss_kib } = t[what];
            println!(
                "  {what:<10} {seconds:7.2} s  {:>6} MB/s  {:7.1} MiB peak RSS",
                mbs(seconds),
                rss_kib as f64 / 1024.0
            );
        }
        for (boto, ours, null, verb) in
            [("upload_file", "enc", "null_put", "encrypt"), ("download_file", "dec", "null_get", "decrypt")]
        {
            let theirs = t[if verb == "encrypt" { "boto_up" } else { "boto_down" }].seconds;
            let what = format!("{name}: {verb} vs boto3 {boto} (boto3 time / ours)");
            Goal::faster(&what, theirs, t[ours].seconds, 1.0).print();
            let limit = mbs(t[null].seconds).min(configured as f64);
            let what = format!("{name}: {verb} vs the network's limit ({limit} MB/s; ours / limit)");
            Goal::new(&what, mbs(t[ours].seconds) / limit, Op::AtLeast, 0.9).print();
            let bound = (concurrency + 2) * part_mib + 40 + 64;
            let what = format!("{name}: {verb} peak RSS / ((N + 2) x part + 40 + 64 MiB = {bound} MiB)");
            Goal::new(&what, t[ours].rss_kib as f64 / 1024.0 / bound as f64, Op::AtMost, 1.0).print();
        }
    }

    // Faults: 1 % SlowDown on every request and the 3rd GET trickling (half its body, then 1 byte per 100 ms).
    let (server, endpoint) = start_model(&format!(
        "--latency-ms 20 --conn-mbps {} --aggregate-mbps 1000 --slow-down-per-mille 10 --trickle-once-get 3",
        per_connection / 1_000_000
    ))?;
    aws_environment(&endpoint, &endpoint);
    if let Err(e) = sh(&format!("{b} encrypt -q{flags} {k} {p} s3://bench/message.esdk")) {
        println!("faults: the upload failed: {e}");
    }
    // Bounded: without a per-request deadline, the trickling GET never ends (its bytes keep the read timeout quiet).
    let limit: u64 = var_or("FAULT_LIMIT", 120)?;
    let dec_out = env.path("dec.out");
    let started = Instant::now();
    let decrypt = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "rm -f {o} && exec timeout {limit} {b} decrypt -q --no-fsync{flags} {k} s3://bench/message.esdk {o}",
            o = q(&dec_out)
        ))
        .stdout(Stdio::null())
        .output()?;
    let seconds = started.elapsed().as_secs_f64();
    let outcome = match decrypt.status.code() {
        Some(0) if same_bytes(&plain, &dec_out, "").is_ok() => "completed, same bytes".to_string(),
        Some(0) => "completed, BYTES DIFFER".to_string(),
        Some(124) => format!("DID NOT COMPLETE within {limit} s (stopped; the trickling GET was not cut off)"),
        _ => format!("FAILED: {}", String::from_utf8_lossy(&decrypt.stderr).lines().last().unwrap_or_default()),
    };
    println!("\nfaults (1 % SlowDown, one trickling GET), decrypt of {mib} MiB: {seconds:.2} s, {outcome}");
    drop(server);

    // The Lambda decryptor's S3 source (a cold lambda_cold_start --once) on the Lambda-like setting, for a
    // LAMBDA_MIB (100) MiB bundle under a KMS key in moto, against the null client's GETs of the same object
    // plus one bare KMS Decrypt.
    let Some(lambda) = lambda else {
        println!(
            "\nlambda cold start: skipped (needs LAMBDA, the lambda_cold_start example, when BIN, MODEL, NULL are given)"
        );
        println!("load average after: {}", load_average());
        return Ok(());
    };
    let lmib: u64 = var_or("LAMBDA_MIB", 100)?;
    let moto = Moto::start(env)?;
    let (_server, endpoint) =
        start_model(&format!("--latency-ms 20 --conn-mbps {} --aggregate-mbps 600", per_connection / 1_000_000))?;
    aws_environment(&endpoint, &moto.endpoint);
    let (arn, blob) = moto.key_and_blob(env)?;
    let bundle = env.path("lambda.pt");
    sh(&format!("head -c {} {p} >{}", lmib << 20, q(&bundle)))?;
    sh(&format!("{b} encrypt -q --kms-key {arn} {} s3://bench/lambda.esdk", q(&bundle)))?;
    let root = env.path("root");
    let fresh = format!("rm -rf {r} && mkdir -m 700 {r}", r = q(&root));
    let cold = format!(
        "KMS_ENVELOPE_BUNDLES=s3://bench/lambda.esdk=bundle.bin KMS_ENVELOPE_ROOT={} KMS_ENVELOPE_KMS_KEY_ARN={arn} \
         RUST_LOG=warn {} --once",
        q(&root),
        q(&lambda)
    );
    sh(&format!("{fresh} && {cold}"))?; // also warms the page cache and the binary
    same_bytes(&bundle, &root.join("bundle.bin"), "the cold start")?;
    let t = alternated(
        runs,
        None,
        &fresh,
        &[
            ("cold", cold),
            ("null_cold", format!("{n} get bench lambda.esdk {part} {concurrency}")),
            ("kms", moto.decrypt_command(&arn, &blob)),
        ],
    )?;
    let base = t["null_cold"].seconds + t["kms"].seconds;
    println!(
        "\nlambda cold start, {lmib} MiB bundle from S3 (600 MB/s aggregate): {:.2} s, {:.1} MiB peak RSS; null GETs \
         {:.2} s + KMS Decrypt {:.3} s",
        t["cold"].seconds,
        t["cold"].rss_kib as f64 / 1024.0,
        t["null_cold"].seconds,
        t["kms"].seconds
    );
    Goal::faster("lambda: cold start vs null GETs + one KMS Decrypt (theirs / ours)", base, t["cold"].seconds, 0.9)
        .print();
    println!("load average after: {}", load_average());
    Ok(())
}

/// boto3 against one S3 endpoint and bucket, through tests' transfer manager settings.
struct Boto {
    prefix: String,
}

impl Boto {
    /// `config` is `default` (boto3's TransferConfig) or `PARTS,CONCURRENCY` (`8MiB,4`).
    fn new(env: &Env, endpoint: &str, bucket: &str, config: &str) -> Result<Boto> {
        let script = env.path("s3.py");
        std::fs::write(&script, PYTHON_S3)?;
        Ok(Boto { prefix: format!("{} {} {endpoint} {bucket} {config}", q(python(env)?), q(script)) })
    }

    /// The command line of `op` (mkbucket, upload FILE KEY, download KEY FILE).
    fn run(&self, op: &str) -> String {
        format!("{} {op}", self.prefix)
    }
}

/// The Python ESDK's 1 KiB round trips per second (MPL raw AES keyring, suite 0x0478 as ours) for
/// `sys.argv[1]` seconds, after 20 warm-up round trips.
const PYTHON_ROUND_TRIPS: &str = r#"
import sys, time
import aws_encryption_sdk
from aws_encryption_sdk.identifiers import CommitmentPolicy
from aws_cryptographic_material_providers.mpl import AwsCryptographicMaterialProviders
from aws_cryptographic_material_providers.mpl import models as m
from aws_cryptographic_material_providers.mpl.config import MaterialProvidersConfig
mpl = AwsCryptographicMaterialProviders(config=MaterialProvidersConfig())
keyring = mpl.create_raw_aes_keyring(input=m.CreateRawAesKeyringInput(
    key_namespace="bench", key_name="key", wrapping_key=bytes([7] * 32),
    wrapping_alg=m.AesWrappingAlg.ALG_AES256_GCM_IV12_TAG16))
client = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
suite = aws_encryption_sdk.Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY
data = bytes(i * 131 % 251 for i in range(1024))
def once():
    ct, _ = client.encrypt(source=data, keyring=keyring, algorithm=suite)
    pt, _ = client.decrypt(source=ct, keyring=keyring)
    assert pt == data
for _ in range(20):
    once()
start, n = time.perf_counter(), 0
while time.perf_counter() - start < float(sys.argv[1]):
    once()
    n += 1
print(f"{n / (time.perf_counter() - start):.1f}")
"#;

/// A new KMS key and a data key wrapped by it (base64), printed on one line (boto3, through moto).
const PYTHON_KMS_KEY: &str = r#"
import base64, boto3
kms = boto3.client("kms")
arn = kms.create_key()["KeyMetadata"]["Arn"]
blob = kms.generate_data_key(KeyId=arn, NumberOfBytes=32)["CiphertextBlob"]
print(arn, base64.b64encode(blob).decode())
"#;

/// The extension benchmark's floor: a function with no secrets.
const PYTHON_NO_SECRETS_FUNCTION: &str = "def handler(event, context):\n    return {\"ok\": True}\n";

/// A function reading the bundle the extension decrypted before it started.
const PYTHON_EXTENSION_FUNCTION: &str = r#"import os
with open(os.path.join(os.environ["KMS_ENVELOPE_ROOT"], "bundle.bin"), "rb") as f:
    SIZE = len(f.read())
def handler(event, context):
    return {"bytes": SIZE}
"#;

/// A function decrypting the bundle in its own init with the Python ESDK (`@...@` filled in).
const PYTHON_ESDK_FUNCTION: &str = r#"import os, sys
sys.path.insert(0, "@PEERS@")
import esdk_peer
esdk_peer.run_one(["decrypt", "--in", "@MESSAGE@", "--out",
    os.path.join(os.environ["KMS_ENVELOPE_ROOT"], "bundle.bin"), "--kms-key", "@ARN@",
    "--kms-endpoint", "@ENDPOINT@", "--context-json", '{"purpose":"bench"}'])
with open(os.path.join(os.environ["KMS_ENVELOPE_ROOT"], "bundle.bin"), "rb") as f:
    SIZE = len(f.read())
def handler(event, context):
    return {"bytes": SIZE}
"#;

/// Seconds from the emulator's start (in a private mount namespace: `ns.sh` binds `$BENCH_OPT` on /opt)
/// to the first invoke's response; the answer must be the plaintext's size. Arguments: ns.sh, the task
/// directory, the emulator, Python, the function's module, the plaintext.
const PYTHON_COLD_START: &str = r#"
import json, os, socket, subprocess, sys, time, urllib.request
ns, task, rie, py, module, plain = sys.argv[1:7]
def port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
log_path = os.path.join(os.path.dirname(ns), "rie.log")
for attempt in range(5):
    rp, ap = port(), port()
    log = open(log_path, "w")
    t0 = time.perf_counter()
    p = subprocess.Popen(["unshare", "-m", ns, rie,
        "--runtime-interface-emulator-address", f"127.0.0.1:{rp}", "--runtime-api-address", f"127.0.0.1:{ap}",
        py, "-m", "awslambdaric", module + ".handler"], cwd=task, stdout=log, stderr=log)
    while p.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", rp), timeout=1).close(); break
        except OSError:
            time.sleep(0.002)
    if p.poll() is not None:
        continue
    body = urllib.request.urlopen(urllib.request.Request(
        f"http://127.0.0.1:{rp}/2015-03-31/functions/function/invocations", data=b"{}"), timeout=300).read()
    dt = time.perf_counter() - t0
    p.terminate(); p.wait()
    if module != "none" and json.loads(body).get("bytes") != os.path.getsize(plain):
        sys.exit(f"{module}: wrong answer {body!r}\n" + open(log_path).read())
    print(f"{dt:.4f}")
    break
else:
    sys.exit("the emulator never listened")
"#;

/// The extension benchmark's base: seconds to copy the plaintext and make one KMS `Decrypt` with a warm
/// boto3 client. Arguments: the plaintext, the copy, the key ARN, the wrapped data key, moto's URL.
const PYTHON_BASE: &str = r#"
import base64, shutil, sys, time, boto3
plain, copy, arn, blob, url = sys.argv[1:6]
kms = boto3.client("kms", endpoint_url=url)
kms.decrypt(CiphertextBlob=base64.b64decode(blob), KeyId=arn)  # warm the client: the base is one call
t0 = time.perf_counter()
shutil.copyfile(plain, copy)
kms.decrypt(CiphertextBlob=base64.b64decode(blob), KeyId=arn)
print(f"{time.perf_counter() - t0:.4f}")
"#;

/// boto3's S3 client: `mkbucket`, `upload FILE KEY`, `download KEY FILE` (the transfer manager), with path
/// addressing. Arguments before the operation: the endpoint, the bucket, and the transfer configuration
/// (`default`, or `8MiB,4`: 8 MiB parts, 4 in flight).
const PYTHON_S3: &str = r#"
import sys, boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
endpoint, bucket, config, op, *args = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=endpoint, config=Config(s3={"addressing_style": "path"}))
if config == "default":
    config = TransferConfig()
else:
    parts, concurrency = config.split(",")
    config = TransferConfig(multipart_chunksize=int(parts.removesuffix("MiB")) << 20, max_concurrency=int(concurrency))
if op == "mkbucket":
    s3.create_bucket(Bucket=bucket)
elif op == "upload":
    s3.upload_file(args[0], bucket, args[1], Config=config)
elif op == "download":
    s3.download_file(bucket, args[0], args[1], Config=config)
"#;

/// An HTTP proxy in front of moto that counts GETs, HEADs, KMS calls and the bytes of GET/HEAD responses;
/// prints its port, and serves the counts as JSON at /counts.
const PYTHON_COUNTING_PROXY: &str = r#"
import http.client, http.server, json, sys, threading, urllib.parse
upstream = urllib.parse.urlparse(sys.argv[1])
counts, lock = {"GET": 0, "HEAD": 0, "KMS": 0, "bytes": 0}, threading.Lock()
class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def forward(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/counts":
            out = json.dumps(counts).encode()
            self.send_response(200); self.send_header("Content-Length", str(len(out))); self.end_headers()
            self.wfile.write(out); return
        conn = http.client.HTTPConnection(upstream.hostname, upstream.port)
        conn.request(self.command, self.path, body, dict(self.headers))
        resp = conn.getresponse()
        data = resp.read()
        with lock:
            if "TrentService" in (self.headers.get("X-Amz-Target") or ""):
                counts["KMS"] += 1
            elif self.command in ("GET", "HEAD"):
                counts[self.command] += 1
                counts["bytes"] += len(data)
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            # A HEAD's Content-Length is the object's, not that of the (empty) body.
            if k.lower() not in ("transfer-encoding", "connection") and (k.lower() != "content-length" or self.command == "HEAD"):
                self.send_header(k, v)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
    do_GET = do_HEAD = do_POST = do_PUT = forward
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;
