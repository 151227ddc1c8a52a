#!/usr/bin/env python3
"""Interop oracle for kms-envelope: encrypt/decrypt with the official AWS Encryption SDK for Python (4.x).

Rust integration tests shell out to this script (via $KMS_ENVELOPE_PYTHON) to prove that messages we
write are readable by the reference implementation and vice versa. It deliberately uses the Material
Providers Library (MPL) keyring API, which is what ESDK-Python 4.x recommends and what the other official
implementations share, so that "the oracle accepts it" means "the MPL accepts it".

Usage (see tests/peers/README.md for more):

  esdk_peer.py encrypt --in PT --out CT --raw-key-hex HEX --key-namespace NS --key-name NAME \
      [--suite 0x0478] [--frame-length 4096] [--context-json '{"k":"v"}'] [--commitment-policy ...]
  esdk_peer.py decrypt --in CT --out PT --kms-key ARN --kms-endpoint URL [--context-json ...]
  esdk_peer.py encrypt --in PT --out CT --ecdh-scheme static --ecdh-curve ECC_NIST_P384 \
      --ecdh-private-pem SENDER.pem --ecdh-public-der RECIPIENT.der

Exit codes: 0 success; 1 the SDK (or the context check) rejected the operation, with one line on stderr;
2 bad command line (argparse).

  esdk_peer.py batch < jobs.jsonl > results.jsonl

runs many command lines in one process (see run_batch); use it when a test has many cases.

  esdk_peer.py cached-encrypt --in PT --out-dir DIR --count N --max-messages M --raw-key-hex HEX \
      --key-namespace NS --key-name NAME [--suite 0x0478] [--context-json ...]

encrypts PT N times (DIR/0.esdk ...) through one legacy caching CMM (see run_cached_encrypt).

  esdk_peer.py encrypt|decrypt ... --hierarchy-table T --kms-key ARN --logical-name N --branch-key-id ID
  esdk_peer.py branch-key create-store|create|version --hierarchy-table T --kms-key ARN --logical-name N \
      [--branch-key-id ID] [--context-json '{"k":"v"}'] [--out FILE] --kms-endpoint URL

use the MPL's Hierarchical keyring and KeyStore (DynamoDB and KMS both at --kms-endpoint, e.g. moto);
`branch-key create` writes the new branch key id to --out (see run_branch_key).
"""

import argparse
import io
import json
import logging
import os
import sys

# Kept as plain strings so that argument parsing (and --help) needs no SDK import; the SDK import costs
# ~0.4 s and this script runs many times per test run.
POLICIES = {
    "forbid-encrypt-allow-decrypt": "FORBID_ENCRYPT_ALLOW_DECRYPT",
    "require-encrypt-allow-decrypt": "REQUIRE_ENCRYPT_ALLOW_DECRYPT",
    "require-encrypt-require-decrypt": "REQUIRE_ENCRYPT_REQUIRE_DECRYPT",
}

# MPL raw AES keyrings pick the wrapping algorithm explicitly; it must agree with the key length.
AES_WRAPPING_BY_LEN = {
    16: "ALG_AES128_GCM_IV12_TAG16",
    24: "ALG_AES192_GCM_IV12_TAG16",
    32: "ALG_AES256_GCM_IV12_TAG16",
}

# Our --rsa-padding names (kms-envelope's CLI spelling) -> the MPL's PaddingScheme members.
RSA_PADDINGS = {
    "pkcs1": "PKCS1",
    "oaep-sha1": "OAEP_SHA1_MGF1",
    "oaep-sha256": "OAEP_SHA256_MGF1",
    "oaep-sha384": "OAEP_SHA384_MGF1",
    "oaep-sha512": "OAEP_SHA512_MGF1",
}


class PeerError(Exception):
    """A failure to report as one line and exit 1 (as opposed to a usage error, exit 2)."""


class UsageError(Exception):
    """A bad command line (exit 2). Raised instead of argparse's sys.exit so batch mode can go on."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{self.prog}: error: {message}")


def parse_args(argv):
    p = _Parser(
        prog="esdk_peer.py",
        description=__doc__.split("\n\n")[0],
        epilog="`esdk_peer.py batch` runs many such command lines, one JSON array per stdin line.",
    )
    p.add_argument("op", choices=["encrypt", "decrypt"])
    p.add_argument("--in", dest="inp", required=True, help="input file, or - for stdin")
    p.add_argument("--out", required=True, help="output file, or - for stdout")
    p.add_argument("--raw-key-hex", action="append", default=[], help="raw AES wrapping key (16/24/32 bytes)")
    p.add_argument("--key-namespace", action="append", default=[], help="raw AES key namespace (provider ID)")
    p.add_argument("--key-name", action="append", default=[], help="raw AES key name (provider info prefix)")
    p.add_argument(
        "--rsa-private-pem",
        action="append",
        default=[],
        help="raw RSA keyring from a PKCS#8 PEM private key file (its public half encrypts); takes the next "
        "--key-namespace/--key-name after those of the --raw-key-hex keys; repeatable",
    )
    p.add_argument(
        "--rsa-padding",
        choices=sorted(RSA_PADDINGS),
        default="oaep-sha256",
        help="padding of every --rsa-private-pem keyring",
    )
    p.add_argument(
        "--ecdh-scheme",
        choices=["static", "ephemeral", "discovery"],
        help="raw ECDH keyring (MPL RawPrivateKeyToStaticPublicKey, EphemeralPrivateKeyToStaticPublicKey, "
        "PublicKeyDiscovery) on --ecdh-curve, from --ecdh-private-pem and/or --ecdh-public-der",
    )
    p.add_argument("--ecdh-curve", choices=["ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521"])
    p.add_argument("--ecdh-private-pem", help="static: the sender's (our) key; discovery: the recipient's (PKCS#8 PEM)")
    p.add_argument("--ecdh-public-der", help="static, ephemeral: the other party's public key (DER SPKI file)")
    p.add_argument("--kms-key", action="append", default=[], help="KMS key ARN (strict keyring); repeatable")
    add_hierarchy_args(p)
    p.add_argument("--kms-endpoint", help="KMS endpoint URL (e.g. moto); default $AWS_ENDPOINT_URL_KMS")
    p.add_argument(
        "--kms-rsa-key",
        help="AWS KMS RSA keyring for this key ARN: encrypt with --kms-rsa-public-pem alone (no KMS call), "
        "decrypt with KMS Decrypt at --kms-endpoint",
    )
    p.add_argument(
        "--kms-rsa-public-pem", help="encrypt: the KMS RSA key's public key (PEM SubjectPublicKeyInfo file)"
    )
    p.add_argument(
        "--kms-rsa-algorithm",
        choices=["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"],
        default="RSAES_OAEP_SHA_256",
        help="the KMS RSA keyring's encryption algorithm",
    )
    p.add_argument("--kms-discovery", action="store_true", help="decrypt: add a KMS discovery keyring")
    p.add_argument(
        "--kms-discovery-account",
        action="append",
        default=[],
        help="decrypt: restrict discovery to these accounts (partition aws); repeatable",
    )
    p.add_argument("--suite", help="algorithm suite id in hex, e.g. 0x0478; default: the SDK default for the policy")
    p.add_argument(
        "--frame-length", type=int, help="frame length; 0 = non-framed (legacy); Python needs a multiple of 16"
    )
    p.add_argument("--context-json", help="encrypt: encryption context; decrypt: reproduced context to require")
    p.add_argument(
        "--required-context-keys",
        help="encrypt: comma-separated EC keys to authenticate but not store (Required EC CMM)",
    )
    p.add_argument("--commitment-policy", choices=sorted(POLICIES), default="require-encrypt-require-decrypt")
    p.add_argument("--header-out", help="write a JSON summary of the message header to this file")
    p.add_argument("--max-edks", type=int, help="decrypt: reject messages with more encrypted data keys")
    p.add_argument(
        "--allow-trailing",
        action="store_true",
        help="decrypt: accept bytes after the end of the message (Python's own behaviour; the spec forbids it)",
    )
    args = p.parse_args(argv)

    n = len(args.raw_key_hex) + len(args.rsa_private_pem)
    if len(args.key_namespace) != n or len(args.key_name) != n:
        p.error("each --raw-key-hex and --rsa-private-pem needs one --key-namespace and one --key-name")
    if args.ecdh_scheme:
        needs = {"static": ("private", "public"), "ephemeral": ("public",), "discovery": ("private",)}[args.ecdh_scheme]
        given = tuple(k for k, v in (("private", args.ecdh_private_pem), ("public", args.ecdh_public_der)) if v)
        if given != needs or not args.ecdh_curve:
            p.error(f"--ecdh-scheme {args.ecdh_scheme} needs --ecdh-curve and exactly: {', '.join(needs)}")
    if args.hierarchy_table and (len(args.kms_key) != 1 or not args.logical_name or not args.branch_key_id):
        p.error("--hierarchy-table needs one --kms-key (the key store's), --logical-name and --branch-key-id")
    if n == 0 and not args.kms_key and not args.kms_discovery and not args.kms_rsa_key and not args.ecdh_scheme:
        p.error(
            "no keyring: give --raw-key-hex/--key-namespace/--key-name, --kms-key, --kms-rsa-key or --kms-discovery"
        )
    if args.op == "encrypt" and args.kms_rsa_key and not args.kms_rsa_public_pem:
        p.error("--kms-rsa-key encrypts with --kms-rsa-public-pem (the peer never fetches the public key)")
    if args.kms_rsa_public_pem and not args.kms_rsa_key:
        p.error("--kms-rsa-public-pem needs --kms-rsa-key")
    if args.kms_discovery_account and not args.kms_discovery:
        p.error("--kms-discovery-account needs --kms-discovery")
    if args.op == "encrypt" and args.kms_discovery:
        p.error("--kms-discovery is decrypt-only (discovery keyrings cannot encrypt)")
    if args.op == "decrypt" and (args.suite or args.frame_length is not None or args.required_context_keys):
        p.error("--suite, --frame-length and --required-context-keys are encrypt-only")
    if args.op == "encrypt" and (args.max_edks is not None or args.allow_trailing):
        p.error("--max-edks and --allow-trailing are decrypt-only")
    return args


def read_input(path):
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as f:
        return f.read()


def write_output(path, data):
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    # Write-then-rename so a failed run never leaves a half-written output for the test to pick up.
    tmp = path + ".peer.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def parse_context(text):
    if text is None:
        return {}
    try:
        ec = json.loads(text)
    except json.JSONDecodeError as e:
        raise PeerError(f"--context-json is not valid JSON: {e}") from e
    if not isinstance(ec, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in ec.items()):
        raise PeerError("--context-json must be a JSON object of string to string")
    return ec


def add_hierarchy_args(p):
    p.add_argument(
        "--hierarchy-table",
        help="Hierarchical keyring over the MPL KeyStore in this DynamoDB table (then --kms-key is the store's key)",
    )
    p.add_argument("--logical-name", help="the KeyStore's logical name")
    p.add_argument("--branch-key-id", help="the branch key id")


def key_store(args):
    """The MPL KeyStore of --hierarchy-table, DynamoDB and KMS at --kms-endpoint."""
    import boto3
    from aws_cryptographic_material_providers.keystore import KeyStore
    from aws_cryptographic_material_providers.keystore.config import KeyStoreConfig
    from aws_cryptographic_material_providers.keystore.models import KMSConfigurationKmsKeyArn

    endpoint = args.kms_endpoint or os.environ.get("AWS_ENDPOINT_URL_KMS")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return KeyStore(
        config=KeyStoreConfig(
            ddb_table_name=args.hierarchy_table,
            kms_configuration=KMSConfigurationKmsKeyArn(args.kms_key[0]),
            logical_key_store_name=args.logical_name,
            ddb_client=boto3.client("dynamodb", region_name=region, endpoint_url=endpoint),
            kms_client=boto3.client("kms", region_name=region, endpoint_url=endpoint),
        )
    )


def run_branch_key(argv):
    """`branch-key create-store|create|version`: the MPL KeyStore's CreateKeyStore, CreateKey (the new id
    written to --out) and VersionKey."""
    p = _Parser(prog="esdk_peer.py branch-key")
    p.add_argument("action", choices=["create-store", "create", "version"])
    add_hierarchy_args(p)
    p.add_argument("--kms-key", action="append", default=[], required=True)
    p.add_argument("--kms-endpoint")
    p.add_argument("--context-json")
    p.add_argument("--out")
    args = p.parse_args(argv)
    if not args.hierarchy_table or not args.logical_name or len(args.kms_key) != 1:
        p.error("branch-key needs --hierarchy-table, --logical-name and one --kms-key")
    from aws_cryptographic_material_providers.keystore import models as km

    store = key_store(args)
    if args.action == "create-store":
        store.create_key_store(km.CreateKeyStoreInput())
    elif args.action == "create":
        context = parse_context(args.context_json) or None
        out = store.create_key(
            km.CreateKeyInput(branch_key_identifier=args.branch_key_id, encryption_context=context)
        )
        if args.out:
            write_output(args.out, out.branch_key_identifier.encode())
    else:
        if not args.branch_key_id:
            p.error("branch-key version needs --branch-key-id")
        store.version_key(km.VersionKeyInput(branch_key_identifier=args.branch_key_id))


def build_keyring(args):
    # Imported here, not at the top, so usage errors stay fast.
    from aws_cryptographic_material_providers.mpl import AwsCryptographicMaterialProviders
    from aws_cryptographic_material_providers.mpl import models as m
    from aws_cryptographic_material_providers.mpl.config import MaterialProvidersConfig

    mpl = AwsCryptographicMaterialProviders(config=MaterialProvidersConfig())
    keyrings = []

    names = list(zip(args.key_namespace, args.key_name))
    for key_hex, (ns, name) in zip(args.raw_key_hex, names):
        try:
            key = bytes.fromhex(key_hex)
        except ValueError as e:
            raise PeerError(f"--raw-key-hex is not hex: {e}") from e
        alg = AES_WRAPPING_BY_LEN.get(len(key))
        if alg is None:
            raise PeerError(f"raw AES wrapping key must be 16, 24 or 32 bytes, got {len(key)}")
        keyrings.append(
            mpl.create_raw_aes_keyring(
                input=m.CreateRawAesKeyringInput(
                    key_namespace=ns, key_name=name, wrapping_key=key, wrapping_alg=getattr(m.AesWrappingAlg, alg)
                )
            )
        )

    for pem_path, (ns, name) in zip(args.rsa_private_pem, names[len(args.raw_key_hex) :]):
        from cryptography.hazmat.primitives import serialization

        with open(pem_path, "rb") as f:
            private_pem = f.read()
        private = serialization.load_pem_private_key(private_pem, password=None)
        public_pem = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        keyrings.append(
            mpl.create_raw_rsa_keyring(
                input=m.CreateRawRsaKeyringInput(
                    key_namespace=ns,
                    key_name=name,
                    padding_scheme=getattr(m.PaddingScheme, RSA_PADDINGS[args.rsa_padding]),
                    public_key=public_pem,
                    private_key=private_pem,
                )
            )
        )

    if args.ecdh_scheme:
        def read(path):
            with open(path, "rb") as f:
                return f.read()

        if args.ecdh_scheme == "static":
            scheme = m.RawEcdhStaticConfigurationsRawPrivateKeyToStaticPublicKey(
                m.RawPrivateKeyToStaticPublicKeyInput(
                    sender_static_private_key=read(args.ecdh_private_pem),
                    recipient_public_key=read(args.ecdh_public_der),
                )
            )
        elif args.ecdh_scheme == "ephemeral":
            scheme = m.RawEcdhStaticConfigurationsEphemeralPrivateKeyToStaticPublicKey(
                m.EphemeralPrivateKeyToStaticPublicKeyInput(recipient_public_key=read(args.ecdh_public_der))
            )
        else:
            scheme = m.RawEcdhStaticConfigurationsPublicKeyDiscovery(
                m.PublicKeyDiscoveryInput(recipient_static_private_key=read(args.ecdh_private_pem))
            )
        keyrings.append(
            mpl.create_raw_ecdh_keyring(
                input=m.CreateRawEcdhKeyringInput(key_agreement_scheme=scheme, curve_spec=args.ecdh_curve)
            )
        )

    if args.hierarchy_table:
        keyrings.append(
            mpl.create_aws_kms_hierarchical_keyring(
                input=m.CreateAwsKmsHierarchicalKeyringInput(
                    key_store=key_store(args), branch_key_id=args.branch_key_id, ttl_seconds=600
                )
            )
        )
    elif args.kms_key or args.kms_discovery or args.kms_rsa_key:
        import boto3

        endpoint = args.kms_endpoint or os.environ.get("AWS_ENDPOINT_URL_KMS")
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        # One client for every key: against moto every ARN lives behind the same endpoint. Real multi-region
        # use would need a client per ARN region (the MPL's ClientSupplier), which these tests don't exercise.
        kms = boto3.client("kms", region_name=region, endpoint_url=endpoint)
        if args.kms_rsa_key:
            public_pem = None
            if args.kms_rsa_public_pem:
                with open(args.kms_rsa_public_pem, "rb") as f:
                    public_pem = f.read()
            # On encrypt no client: the MPL wraps with the public key alone, as a pipeline without KMS would.
            keyrings.append(
                mpl.create_aws_kms_rsa_keyring(
                    input=m.CreateAwsKmsRsaKeyringInput(
                        kms_key_id=args.kms_rsa_key,
                        encryption_algorithm=args.kms_rsa_algorithm,
                        public_key=public_pem,
                        kms_client=kms if args.op == "decrypt" else None,
                    )
                )
            )
        for arn in args.kms_key:
            keyrings.append(
                mpl.create_aws_kms_keyring(input=m.CreateAwsKmsKeyringInput(kms_key_id=arn, kms_client=kms))
            )
        if args.kms_discovery:
            flt = None
            if args.kms_discovery_account:
                flt = m.DiscoveryFilter(account_ids=args.kms_discovery_account, partition="aws")
            keyrings.append(
                mpl.create_aws_kms_discovery_keyring(
                    input=m.CreateAwsKmsDiscoveryKeyringInput(kms_client=kms, discovery_filter=flt)
                )
            )

    if len(keyrings) == 1:
        keyring = keyrings[0]
    else:
        # Order is: raw keys in command-line order, then KMS keys, then discovery. The first is the
        # generator, as in every ESDK multi-keyring.
        keyring = mpl.create_multi_keyring(
            input=m.CreateMultiKeyringInput(generator=keyrings[0], child_keyrings=keyrings[1:])
        )

    if args.op == "encrypt" and args.required_context_keys:
        keys = [k for k in args.required_context_keys.split(",") if k]
        cmm = mpl.create_required_encryption_context_cmm(
            input=m.CreateRequiredEncryptionContextCMMInput(
                required_encryption_context_keys=keys,
                underlying_cmm=mpl.create_default_cryptographic_materials_manager(
                    input=m.CreateDefaultCryptographicMaterialsManagerInput(keyring=keyring)
                ),
            )
        )
        return {"materials_manager": cmm}
    return {"keyring": keyring}


def header_summary(header):
    return {
        "version": header.version.value,
        "suite": f"0x{header.algorithm.algorithm_id:04X}",
        "message_id": header.message_id.hex(),
        "content_type": header.content_type.value,
        "frame_length": header.frame_length,
        "encryption_context": dict(header.encryption_context),
        # The SDK holds EDKs in a set, so their on-wire order is lost; sort for stable comparisons.
        "encrypted_data_keys": sorted(
            [
                {
                    "provider_id": edk.key_provider.provider_id,
                    "provider_info": edk.key_provider.key_info.decode("utf-8", "backslashreplace")
                    if isinstance(edk.key_provider.key_info, bytes)
                    else str(edk.key_provider.key_info),
                    "ciphertext_len": len(edk.encrypted_data_key),
                }
                for edk in header.encrypted_data_keys
            ],
            key=lambda d: (d["provider_id"], d["provider_info"]),
        ),
    }


def run(args):
    ec = parse_context(args.context_json)
    data = read_input(args.inp)

    import aws_encryption_sdk
    from aws_encryption_sdk.identifiers import Algorithm, CommitmentPolicy

    client_kw = {"commitment_policy": getattr(CommitmentPolicy, POLICIES[args.commitment_policy])}
    if args.max_edks is not None:
        # A client-level setting in Python: passed per call it is ignored with only a warning.
        client_kw["max_encrypted_data_keys"] = args.max_edks
    client = aws_encryption_sdk.EncryptionSDKClient(**client_kw)
    kw = build_keyring(args)

    if args.op == "encrypt":
        if args.suite:
            try:
                kw["algorithm"] = Algorithm.get_by_id(int(args.suite, 16))
            except (KeyError, ValueError) as e:
                raise PeerError(f"unknown --suite {args.suite}") from e
        if args.frame_length is not None:
            kw["frame_length"] = args.frame_length
        out, header = client.encrypt(source=data, encryption_context=ec, **kw)
    else:
        # Passing the context to the SDK makes it a *reproduced* EC (MPL semantics: values must match the
        # header, extra keys become required-EC and are checked by header auth). The explicit check below
        # additionally insists that each pair is in the stored header context or in the required-EC pairs.
        if ec:
            kw["encryption_context"] = ec
        source = io.BytesIO(data)
        # client.stream rather than client.decrypt: only the decryptor object exposes the required-EC pairs
        # (authenticated but not stored in the header), which count as "in the context" for this check.
        with client.stream(mode="d", source=source, **kw) as decryptor:
            out = decryptor.read()
            header = decryptor.header
            got = dict(header.encryption_context)
            got.update(getattr(decryptor, "_required_encryption_context", None) or {})
        # The Python SDK silently ignores anything after the footer; the spec (and our notes, section 17)
        # make that an error, so the oracle does too unless told otherwise. The SDK reads the source
        # exactly, never ahead, so its position is the end of the message.
        if not args.allow_trailing and source.tell() != len(data):
            raise PeerError(f"{len(data) - source.tell()} trailing bytes after the end of the message")
        missing = {k: v for k, v in ec.items() if got.get(k) != v}
        if missing:
            raise PeerError(f"encryption context mismatch: expected {missing}, header has {header.encryption_context}")

    if args.header_out:
        with open(args.header_out, "w") as f:
            json.dump(header_summary(header), f, indent=1, sort_keys=True)
    write_output(args.out, out)


def run_one(argv):
    """Runs one encrypt/decrypt (or branch-key) command line; returns (exit status, one-line error or None)."""
    if argv[:1] == ["branch-key"]:
        try:
            run_branch_key(argv[1:])
        except UsageError as e:
            return 2, str(e)
        except Exception as e:  # noqa: BLE001 - as below
            msg = " ".join(str(e).split()) or "(no message)"
            return 1, f"esdk_peer branch-key failed: {type(e).__name__}: {msg}"[:2000]
        return 0, None
    try:
        args = parse_args(argv)
    except UsageError as e:
        return 2, str(e)
    try:
        run(args)
    except Exception as e:  # noqa: BLE001 - any SDK failure is a verdict for the caller, not a crash
        msg = " ".join(str(e).split()) or "(no message)"
        return 1, f"esdk_peer {args.op} failed: {type(e).__name__}: {msg}"[:2000]
    return 0, None


def run_batch():
    """`batch`: one JSON array of arguments per stdin line, one JSON result per stdout line.

    Each call of this script spends ~0.4 s importing the SDK; a batch pays that once, so tests with many
    cases should use it. Input line: ["encrypt", "--in", "a", "--out", "b", ...]. Output line:
    {"status": 0|1|2, "error": null|"..."} with the same meaning as the single-command exit status.
    """
    import aws_encryption_sdk  # noqa: F401 - pay the import before the first job, not inside it

    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            argv = json.loads(line)
            if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
                raise ValueError("expected a JSON array of strings")
        except ValueError as e:
            status, err = 2, f"esdk_peer batch: bad input line: {e}"
        else:
            if "-" in argv:
                status, err = 2, "esdk_peer batch: '-' (stdin/stdout) is not available inside a batch"
            else:
                status, err = run_one(argv)
        sys.stdout.write(json.dumps({"status": status, "error": err}) + "\n")
        sys.stdout.flush()
    return 0


def run_cached_encrypt(argv):
    """`cached-encrypt`: COUNT messages of one plaintext through one CachingCryptoMaterialsManager over a raw
    AES master key, in one process so that the messages share cached data keys. This is ESDK-Python's only
    data-key cache: it works with master key providers, not with MPL keyrings, which have none."""
    p = _Parser(prog="esdk_peer.py cached-encrypt")
    p.add_argument("--in", dest="inp", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--max-messages", type=int, required=True)
    p.add_argument("--raw-key-hex", required=True)
    p.add_argument("--key-namespace", required=True)
    p.add_argument("--key-name", required=True)
    p.add_argument("--suite")
    p.add_argument("--context-json")
    args = p.parse_args(argv)

    import aws_encryption_sdk
    from aws_encryption_sdk.caches.local import LocalCryptoMaterialsCache
    from aws_encryption_sdk.identifiers import Algorithm, CommitmentPolicy, EncryptionKeyType, WrappingAlgorithm
    from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
    from aws_encryption_sdk.key_providers.raw import RawMasterKeyProvider

    key = bytes.fromhex(args.raw_key_hex)
    wrapping = getattr(WrappingAlgorithm, f"AES_{len(key) * 8}_GCM_IV12_TAG16_NO_PADDING")

    class Provider(RawMasterKeyProvider):
        provider_id = args.key_namespace

        def _get_raw_key(self, key_id):
            return WrappingKey(
                wrapping_algorithm=wrapping, wrapping_key=key, wrapping_key_type=EncryptionKeyType.SYMMETRIC
            )

    provider = Provider()
    provider.add_master_key(args.key_name.encode())
    cmm = aws_encryption_sdk.CachingCryptoMaterialsManager(
        master_key_provider=provider,
        cache=LocalCryptoMaterialsCache(16),
        max_age=600.0,
        max_messages_encrypted=args.max_messages,
    )
    client = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
    kw = {"materials_manager": cmm, "encryption_context": parse_context(args.context_json)}
    if args.suite:
        kw["algorithm"] = Algorithm.get_by_id(int(args.suite, 16))
    data = read_input(args.inp)
    for i in range(args.count):
        out, _ = client.encrypt(source=data, **kw)
        write_output(os.path.join(args.out_dir, f"{i}.esdk"), out)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    # The SDK logs a full traceback ("Error on closing") when a failed decryptor is closed; the caller wants
    # one line per failure, and this script reports every failure itself.
    logging.disable(logging.CRITICAL)
    if argv[:1] == ["batch"]:
        if len(argv) > 1:
            print("esdk_peer.py: error: batch takes no arguments (jobs come on stdin)", file=sys.stderr)
            return 2
        return run_batch()
    if argv[:1] == ["cached-encrypt"]:
        try:
            run_cached_encrypt(argv[1:])
        except UsageError as e:
            print(e, file=sys.stderr)
            return 2
        return 0
    status, err = run_one(argv)
    if err:
        print(err, file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
