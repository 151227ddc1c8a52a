//! The null client of scripts/s3-model-bench.sh: what the network (a modelled S3, on this machine) allows
//! with the CLI's own request pattern and nothing else. It moves an object the way `kms-envelope` does, on
//! the same SDK, HTTP stack and runtime shape (two workers), but without crypto, files or ordering:
//!
//! ```text
//! s3_null_client get BUCKET KEY PART_SIZE CONCURRENCY      ranged GETs of PART_SIZE, CONCURRENCY in flight,
//!                                                         bytes counted and dropped
//! s3_null_client put BUCKET KEY BYTES PART_SIZE CONCURRENCY  a multipart upload of BYTES zeros (one shared
//!                                                         buffer, no copy), CONCURRENCY parts in flight
//! ```
//!
//! The endpoint is `AWS_ENDPOINT_URL_S3`, path-style addressing. Prints `bytes=N seconds=S` (wall time of
//! the transfer, the HeadObject or CreateMultipartUpload included, as in the CLI's).

use std::time::Instant;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use tokio::task::JoinSet;

type Failure = Box<dyn std::error::Error + Send + Sync>;

fn number(text: Option<&String>, what: &str) -> Result<u64, Failure> {
    let text = text.ok_or_else(|| format!("missing {what}"))?;
    Ok(kms_envelope::s3::parse_size(text)?)
}

async fn get(
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    part: u64,
    concurrency: usize,
) -> Result<u64, Failure> {
    let head = client.head_object().bucket(&bucket).key(&key).send().await?;
    let len = u64::try_from(head.content_length().unwrap_or(0))?;
    let mut tasks = JoinSet::new();
    let (mut next, mut total) = (0, 0);
    loop {
        while tasks.len() < concurrency && next < len {
            let last = (next + part).min(len) - 1;
            let request = client.get_object().bucket(&bucket).key(&key).range(format!("bytes={next}-{last}"));
            tasks.spawn(async move {
                let mut body = request.send().await?.body;
                let mut bytes = 0u64;
                while let Some(chunk) = body.try_next().await? {
                    bytes += chunk.len() as u64;
                }
                Ok::<u64, Failure>(bytes)
            });
            next = last + 1;
        }
        match tasks.join_next().await {
            Some(done) => total += done??,
            None => return Ok(total),
        }
    }
}

async fn put(
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    len: u64,
    part: u64,
    concurrency: usize,
) -> Result<u64, Failure> {
    let created = client.create_multipart_upload().bucket(&bucket).key(&key).send().await?;
    let upload_id = created.upload_id().ok_or("no upload id")?.to_owned();
    // One buffer of zeros, each part a slice of it (a reference count, no copy).
    let zeros = ByteStream::from(vec![0u8; usize::try_from(part)?]).collect().await?.into_bytes();
    let mut tasks = JoinSet::new();
    let (mut next, mut number, mut parts) = (0u64, 0i32, Vec::new());
    loop {
        while tasks.len() < concurrency && next < len {
            let size = usize::try_from(part.min(len - next))?;
            number += 1;
            let request = client.upload_part().bucket(&bucket).key(&key).upload_id(&upload_id).part_number(number);
            let body = ByteStream::from(zeros.slice(..size));
            tasks.spawn(async move {
                let uploaded = request.body(body).send().await?;
                Ok::<CompletedPart, Failure>(
                    CompletedPart::builder().part_number(number).set_e_tag(uploaded.e_tag().map(str::to_owned)).build(),
                )
            });
            next += size as u64;
        }
        match tasks.join_next().await {
            Some(done) => parts.push(done??),
            None => break,
        }
    }
    parts.sort_by_key(|part| part.part_number());
    let completed = CompletedMultipartUpload::builder().set_parts(Some(parts)).build();
    let complete = client.complete_multipart_upload().bucket(&bucket).key(&key).upload_id(&upload_id);
    complete.multipart_upload(completed).send().await?;
    Ok(len)
}

fn main() -> Result<(), Failure> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage =
        "usage: s3_null_client get BUCKET KEY PART_SIZE CONCURRENCY | put BUCKET KEY BYTES PART_SIZE CONCURRENCY";
    let (mode, bucket, key) = match &args[..] {
        [mode, bucket, key, ..] => (mode.as_str(), bucket.clone(), key.clone()),
        _ => return Err(usage.into()),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let config = runtime.block_on(aws_config::load_defaults(aws_config::BehaviorVersion::latest()));
    let client =
        aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
    let concurrency = |at: usize| Ok::<usize, Failure>(usize::try_from(number(args.get(at), "CONCURRENCY")?)?.max(1));
    let started = Instant::now();
    let bytes = match mode {
        "get" => runtime.block_on(get(client, bucket, key, number(args.get(3), "PART_SIZE")?, concurrency(4)?))?,
        "put" => {
            let (len, part) = (number(args.get(3), "BYTES")?, number(args.get(4), "PART_SIZE")?);
            runtime.block_on(put(client, bucket, key, len, part, concurrency(5)?))?
        }
        _ => return Err(usage.into()),
    };
    println!("bytes={bytes} seconds={:.3}", started.elapsed().as_secs_f64());
    Ok(())
}
