//! The modelled S3's own tests (a module of tests/s3.rs: no test binary of its own): real clients, the Rust
//! SDK and boto3's transfer manager, with their default checksums (`aws-chunked` bodies with a CRC trailer),
//! round-trip through it byte for byte; conditional writes refuse; a fault fires where told.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use crate::common::s3model::{Fault, Knobs, S3Model};

const BUCKET: &str = "model";
const MIB: usize = 1024 * 1024;

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| ((i as u32).wrapping_mul(2654435761) >> 11) as u8 ^ seed).collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// The Rust SDK against the model, default checksums on (CRC32, `aws-chunked` with a trailer).
fn client(model: &S3Model) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(&crate::support::sdk_config(&model.url))
        .force_path_style(true)
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::standard())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

fn started() -> S3Model {
    let model = S3Model::start(Knobs::default());
    model.create_bucket(BUCKET);
    model
}

/// A request written by hand, and the answer's status line and body.
fn raw(model: &S3Model, request: &[u8]) -> (String, String) {
    let mut stream = TcpStream::connect(model.url.trim_start_matches("http://")).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (head.lines().next().unwrap_or("").to_owned(), body.to_owned())
}

#[test]
fn the_rust_sdk_puts_uploads_parts_and_reads_ranges_byte_for_byte() {
    let model = started();
    let client = client(&model);
    let runtime = runtime();
    let small = bytes(300 * 1024, 1);
    let parts = [bytes(5 * MIB, 2), bytes(MIB + 17, 3)];
    let work = tempfile::tempdir().unwrap();
    let last_part = work.path().join("last-part");
    std::fs::write(&last_part, &parts[1]).unwrap();
    runtime.block_on(async {
        client.put_object().bucket(BUCKET).key("small").body(small.clone().into()).send().await.unwrap();
        let upload = client.create_multipart_upload().bucket(BUCKET).key("multi").send().await.unwrap();
        let id = upload.upload_id().unwrap();
        let mut completed = Vec::new();
        for (number, body) in
            [(1, ByteStream::from(parts[0].clone())), (2, ByteStream::from_path(&last_part).await.unwrap())]
        {
            let part = client.upload_part().bucket(BUCKET).key("multi").upload_id(id).part_number(number).body(body);
            let etag = part.send().await.unwrap().e_tag().unwrap().to_owned();
            completed.push(CompletedPart::builder().part_number(number).e_tag(etag).build());
        }
        let listed = client.list_parts().bucket(BUCKET).key("multi").upload_id(id).send().await.unwrap();
        assert_eq!(
            listed.parts().iter().map(|p| p.size().unwrap()).collect::<Vec<_>>(),
            [5 * MIB as i64, MIB as i64 + 17]
        );
        let done = CompletedMultipartUpload::builder().set_parts(Some(completed)).build();
        let complete =
            client.complete_multipart_upload().bucket(BUCKET).key("multi").upload_id(id).multipart_upload(done);
        let etag = complete.send().await.unwrap().e_tag().unwrap().to_owned();
        assert!(etag.ends_with("-2\""), "a multipart ETag ends in -N: {etag}");

        let whole = [parts[0].as_slice(), parts[1].as_slice()].concat();
        let got = client.get_object().bucket(BUCKET).key("multi").send().await.unwrap();
        assert_eq!(got.e_tag(), Some(etag.as_str()));
        assert!(got.body.collect().await.unwrap().into_bytes() == whole, "the multipart object's bytes differ");
        for (first, last) in [(0, 0), (5 * MIB - 3, 5 * MIB + 2), (whole.len() - 10, whole.len() - 1)] {
            let range = format!("bytes={first}-{last}");
            let got = client.get_object().bucket(BUCKET).key("multi").range(&range).send().await.unwrap();
            assert_eq!(got.content_range(), Some(format!("bytes {first}-{last}/{}", whole.len()).as_str()));
            assert!(got.body.collect().await.unwrap().into_bytes() == whole[first..=last], "{range} differs");
        }
        let got = client.get_object().bucket(BUCKET).key("small").send().await.unwrap();
        assert!(got.body.collect().await.unwrap().into_bytes() == small, "the small object's bytes differ");
        let head = client.head_object().bucket(BUCKET).key("multi").send().await.unwrap();
        assert_eq!(head.content_length(), Some(whole.len() as i64));
        let listed = client.list_objects_v2().bucket(BUCKET).max_keys(1).send().await.unwrap();
        assert_eq!(listed.contents().iter().filter_map(|o| o.key()).collect::<Vec<_>>(), ["multi"]);
        let token = listed.next_continuation_token().unwrap();
        let rest = client.list_objects_v2().bucket(BUCKET).continuation_token(token).send().await.unwrap();
        assert_eq!(rest.contents().iter().filter_map(|o| o.key()).collect::<Vec<_>>(), ["small"]);
    });
    assert!(model.get(BUCKET, "small").unwrap() == small, "the model stored other bytes than were put");
    // The SDK streams a file body `aws-chunked` with a CRC32 trailer (an in-memory one gets a header).
    assert!(model.aws_chunked_bodies() >= 1, "the SDK's bodies were not aws-chunked: the decoder went untested");
    assert_eq!(model.open_uploads(BUCKET), 0);
}

#[test]
fn a_checksum_trailer_is_verified_and_the_chunk_framing_never_stored() {
    let model = started();
    // CRC32("123456789") = 0xCBF43926, the CRC catalogue's check value; base64 "y/Q5Jg==".
    let chunked = |trailer: &str| {
        let body = format!("4;chunk-signature=00\r\n1234\r\n5\r\n56789\r\n0\r\nx-amz-checksum-crc32:{trailer}\r\n\r\n");
        format!(
            "PUT /{BUCKET}/digits HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-encoding: aws-chunked\r\n\
             x-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER\r\nx-amz-trailer: x-amz-checksum-crc32\r\n\
             x-amz-decoded-content-length: 9\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let (status, body) = raw(&model, chunked("AAAAAA==").as_bytes());
    assert!(status.contains(" 400 ") && body.contains("<Code>BadDigest</Code>"), "{status} {body}");
    assert_eq!(model.get(BUCKET, "digits"), None, "a body with a bad checksum was stored");
    let (status, _) = raw(&model, chunked("y/Q5Jg==").as_bytes());
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(model.get(BUCKET, "digits").as_deref(), Some(&b"123456789"[..]));
}

#[test]
fn boto3s_transfer_manager_round_trips_through_the_model() {
    let Some(python) = crate::common::python() else { return };
    let model = started();
    let work = tempfile::tempdir().unwrap();
    let (source, fetched) = (work.path().join("source"), work.path().join("fetched"));
    let original = bytes(11 * MIB + 12_345, 4);
    std::fs::write(&source, &original).unwrap();
    let script = r#"
import sys, boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
url, source, fetched = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                  aws_secret_access_key="testing", config=Config(s3={"addressing_style": "path"}))
config = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024, max_concurrency=3)
s3.upload_file(source, "model", "via-boto3", Config=config)
s3.download_file("model", "via-boto3", fetched, Config=config)
s3.put_object(Bucket="model", Key="small-via-boto3", Body=b"small body")
assert s3.get_object(Bucket="model", Key="small-via-boto3")["Body"].read() == b"small body"
"#;
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(&model.url)
        .arg(&source)
        .arg(&fetched)
        .env_remove("AWS_ENDPOINT_URL_S3")
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .unwrap();
    assert!(out.status.success(), "boto3 failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(model.get(BUCKET, "via-boto3").unwrap() == original, "what boto3 uploaded was stored with other bytes");
    assert!(std::fs::read(&fetched).unwrap() == original, "what boto3 downloaded differs");
    assert_eq!(model.get(BUCKET, "small-via-boto3").as_deref(), Some(&b"small body"[..]));
    assert!(model.count("UploadPart") >= 3, "boto3 did not upload in parts: {}", model.count("UploadPart"));
    assert!(model.count("GetObject") >= 3, "boto3 did not download by ranges: {}", model.count("GetObject"));
    assert_eq!(model.open_uploads(BUCKET), 0);
}

/// The HTTP status of an SDK call's answer.
fn status<E>(result: Result<(), aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>>) -> u16 {
    match result {
        Ok(()) => 200,
        Err(error) => error.raw_response().map_or(0, |response| response.status().as_u16()),
    }
}

#[test]
fn if_none_match_refuses_a_put_and_a_completion_over_an_existing_key_and_a_race_conflicts() {
    let model = started();
    let client = client(&model);
    let runtime = runtime();
    model.put(BUCKET, "taken", b"first");
    runtime.block_on(async {
        let put = client.put_object().bucket(BUCKET).key("taken").if_none_match("*").body(b"second".to_vec().into());
        assert_eq!(status(put.send().await.map(|_| ())), 412);
        let put = client
            .put_object()
            .bucket(BUCKET)
            .key("taken")
            .if_match("\"not-the-etag\"")
            .body(b"second".to_vec().into());
        assert_eq!(status(put.send().await.map(|_| ())), 412);
        let put = client.put_object().bucket(BUCKET).key("free").if_none_match("*").body(b"new".to_vec().into());
        assert_eq!(status(put.send().await.map(|_| ())), 200);

        let upload = client.create_multipart_upload().bucket(BUCKET).key("taken").send().await.unwrap();
        let id = upload.upload_id().unwrap();
        let part =
            client.upload_part().bucket(BUCKET).key("taken").upload_id(id).part_number(1).body(b"part".to_vec().into());
        let etag = part.send().await.unwrap().e_tag().unwrap().to_owned();
        let done = CompletedMultipartUpload::builder()
            .parts(CompletedPart::builder().part_number(1).e_tag(etag).build())
            .build();
        let complete =
            client.complete_multipart_upload().bucket(BUCKET).key("taken").upload_id(id).multipart_upload(done);
        assert_eq!(status(complete.if_none_match("*").send().await.map(|_| ())), 412);
    });
    assert_eq!(model.get(BUCKET, "taken").as_deref(), Some(&b"first"[..]));

    // A conditional put that passed its check, then another write committed before its body ended: 409.
    let mut racing = TcpStream::connect(model.url.trim_start_matches("http://")).unwrap();
    let head = format!(
        "PUT /{BUCKET}/raced HTTP/1.1\r\nhost: x\r\nconnection: close\r\nif-none-match: *\r\ncontent-length: 6\r\n\r\nlos"
    );
    racing.write_all(head.as_bytes()).unwrap();
    while model.count("PutObject") < 4 {
        std::thread::sleep(Duration::from_millis(5));
    }
    // The model checks the condition as the request arrives, before reading its body; this is margin for that.
    std::thread::sleep(Duration::from_millis(100));
    model.put(BUCKET, "raced", b"winner");
    racing.write_all(b"ser").unwrap();
    let mut answer = String::new();
    let _ = racing.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 409") && answer.contains("ConditionalRequestConflict"), "{answer}");
    assert_eq!(model.get(BUCKET, "raced").as_deref(), Some(&b"winner"[..]));
}

#[test]
fn a_slow_down_fault_fires_on_the_request_it_names_and_the_sdk_retries() {
    let model = started();
    model.put(BUCKET, "object", b"contents");
    model.set_knobs(Knobs { slow_down: (Fault::Once(1), vec!["GetObject"]), ..Knobs::default() });
    let client = client(&model);
    let got = runtime().block_on(async {
        client.head_object().bucket(BUCKET).key("object").send().await.unwrap();
        let got = client.get_object().bucket(BUCKET).key("object").send().await.unwrap();
        got.body.collect().await.unwrap().into_bytes()
    });
    assert_eq!(&got[..], b"contents");
    assert_eq!((model.count("GetObject"), model.count("HeadObject"), model.faults_injected()), (2, 1, 1));
}

#[test]
fn a_reset_cuts_a_get_halfway_and_refuses_a_put_before_any_answer() {
    let model = started();
    let contents = bytes(MIB, 5);
    model.put(BUCKET, "object", &contents);
    model.set_knobs(Knobs { reset: (Fault::Once(1), vec!["GetObject", "PutObject"]), ..Knobs::default() });
    let client = client(&model);
    runtime().block_on(async {
        // The status line and half the body arrived, then the connection went: the body is an error.
        let cut = client.get_object().bucket(BUCKET).key("object").send().await.unwrap();
        assert!(cut.body.collect().await.is_err(), "a reset body read to its end");
        let whole = client.get_object().bucket(BUCKET).key("object").send().await.unwrap();
        assert!(whole.body.collect().await.unwrap().into_bytes() == contents, "the second GET's bytes differ");
    });
    model.set_knobs(Knobs { reset: (Fault::Once(1), vec!["PutObject"]), ..Knobs::default() });
    runtime().block_on(async {
        client.put_object().bucket(BUCKET).key("put").body(b"retried".to_vec().into()).send().await.unwrap();
    });
    assert_eq!(model.get(BUCKET, "put").as_deref(), Some(&b"retried"[..]));
    assert_eq!((model.count("GetObject"), model.count("PutObject"), model.faults_injected()), (2, 2, 2));
}

#[test]
fn this_crates_multipart_upload_and_ranged_download_round_trip_through_the_model() {
    use kms_envelope::s3::{MIN_PART_SIZE, S3Object, TransferOptions};
    use kms_envelope::{DecryptOptions, EncryptOptions, OutputOptions};
    let model = started();
    let runtime = runtime();
    let data = super::plaintext(MIN_PART_SIZE * 2 + 4321, 6);
    let transfer = TransferOptions::new().part_size(MIN_PART_SIZE).concurrency(3);
    let object = S3Object::new(client(&model), BUCKET, "crate.esdk");
    let (keyring, handle) = (super::keyring(), runtime.handle().clone());
    let uploaded = object
        .encrypt_from_blocking(handle.clone(), keyring.as_ref(), &EncryptOptions::new(), &transfer, &data[..])
        .unwrap();
    assert_eq!(uploaded.parts, 3);
    assert_eq!(model.open_uploads(BUCKET), 0);
    let destination = tempfile::tempdir().unwrap();
    let destination = destination.path().join("plain");
    let (options, output) = (DecryptOptions::new(), OutputOptions::new());
    let transfer = TransferOptions::new().chunk_size(1 << 20).concurrency(3);
    // Each answer waits 50 ms, so GETs sent together are served together.
    model.set_knobs(Knobs { first_byte: Duration::from_millis(50), ..Knobs::default() });
    object.decrypt_to_path_blocking(handle, keyring.as_ref(), &options, &destination, &output, &transfer).unwrap();
    assert!(std::fs::read(&destination).unwrap() == data, "the plaintext differs after the round trip");
    assert!(model.count("GetObject") >= 10, "not by ranges: {} GETs", model.count("GetObject"));
    let peak = model.peak_in_flight("GetObject");
    assert!((2..=3).contains(&peak), "GETs at once: {peak}, concurrency 3");
}

#[test]
fn a_trickled_get_sends_half_its_body_then_a_byte_at_a_time() {
    let model = started();
    model.put(BUCKET, "object", &bytes(100_000, 7));
    model.set_knobs(Knobs { trickle: (Fault::Once(1), vec!["GetObject"]), ..Knobs::default() });
    let mut stream = TcpStream::connect(model.url.trim_start_matches("http://")).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(format!("GET /{BUCKET}/object HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes()).unwrap();
    let mut received = Vec::new();
    let mut buf = vec![0; 1 << 16];
    let body_start = loop {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the connection closed");
        received.extend_from_slice(&buf[..n]);
        let at = received.windows(4).position(|w| w == b"\r\n\r\n").map(|at| at + 4);
        if let Some(at) = at.filter(|at| received.len() - at >= 50_000) {
            break at;
        }
    };
    assert!(String::from_utf8_lossy(&received[..body_start]).contains("content-length: 100000"));
    let body = received.len() - body_start;
    assert!(body < 50_010, "{body} bytes came at once, not half of 100000");
    let n = stream.read(&mut buf).unwrap();
    assert!((1..10).contains(&n), "after the half, {n} bytes in one read, not a trickle");
}
